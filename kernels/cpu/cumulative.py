"""CPU kernel: Cumulative (attrs: op "sum", axis, exclusive, reverse): running sums along ``axis``; exclusive
sums leave out the element itself, reverse ones run from the end."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.CUMULATIVE)
def cumulative(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    if x.ndim == 0:
        out[...] = 0 if attrs.get("exclusive") else x
        return
    axis = int(attrs["axis"])
    if attrs.get("reverse"):
        x, out = np.flip(x, axis), np.flip(out, axis)
    if attrs.get("exclusive"):
        head = [slice(None)] * x.ndim
        head[axis] = slice(0, 1)
        out[tuple(head)] = 0
        body, source = list(head), list(head)
        body[axis], source[axis] = slice(1, None), slice(0, -1)
        np.cumsum(x[tuple(source)], axis=axis, dtype=out.dtype, out=out[tuple(body)])
    else:
        np.cumsum(x, axis=axis, dtype=out.dtype, out=out)
