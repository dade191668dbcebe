"""CPU kernel: Select; inputs condition (bool), x, y broadcast together: condition ? x : y."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.SELECT)
def select(attrs, inputs, outputs):
    condition, x, y = inputs
    np.copyto(outputs[0], np.where(condition, x, y), casting="unsafe")
