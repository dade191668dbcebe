"""CPU kernel: Expand (attrs: shape): broadcast the input to ``shape``. A second input (with ``rows_axis``) only
counts the valid rows of the output for the layers after it (edgert/ir/valid_rows.py): the whole bound is filled."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.EXPAND)
def expand(attrs, inputs, outputs):
    np.copyto(outputs[0], inputs[0])
