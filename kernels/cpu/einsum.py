"""CPU kernel: Einsum (attrs: equation, explicit "...->..." form) with NumPy's einsum semantics."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.EINSUM)
def einsum(attrs, inputs, outputs):
    out = outputs[0]
    np.copyto(out, np.einsum(attrs["equation"], *inputs, optimize=len(inputs) > 2), casting="unsafe")
