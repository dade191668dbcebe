"""CPU kernel: TopK with k = 1, i.e. ArgMax / ArgMin (attrs: op, axis, keepdims, select_last_index).

The output holds int64 indices. With ``select_last_index`` the last of equal extremes wins: the
axis is reversed, searched, and the index mapped back.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register

_SEARCH = {"max": np.argmax, "min": np.argmin}


@register(LayerKind.TOPK)
def topk(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    axis = int(attrs["axis"])
    search = _SEARCH[attrs["op"]]
    kept_shape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
    if attrs.get("select_last_index", False):
        last = x.shape[axis] - 1
        index = last - search(np.flip(x, axis), axis=axis, keepdims=True)
    else:
        index = search(x, axis=axis, keepdims=True)
    np.copyto(out.reshape(kept_shape), index, casting="unsafe")
