"""CPU kernel: Identity and Reformat (a copy; Reformat may change the dtype)."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.IDENTITY)
@register(LayerKind.REFORMAT)
def copy(attrs, inputs, outputs):
    np.copyto(outputs[0], inputs[0], casting="unsafe")
