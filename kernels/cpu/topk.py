"""CPU kernel: TopK.

ArgMax / ArgMin form (no ``k`` attr; attrs: op, axis, keepdims, select_last_index): the output holds
int64 indices. With ``select_last_index`` the last of equal extremes wins: the axis is reversed,
searched, and the index mapped back.

Full form (attrs: op, axis, k, sorted): outputs the k largest (op "max") or smallest values along the
axis and their int64 indices, best first; equal values keep the lower index first, as ONNX says. A
stable sort gives that order for "min"; for "max" the axis is reversed before a stable ascending sort
and the order reversed after, so ties still come out lowest index first (no negation: integer types).
``sorted = 0`` allows any order, and this order is one.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register

_SEARCH = {"max": np.argmax, "min": np.argmin}


@register(LayerKind.TOPK)
def topk(attrs, inputs, outputs):
    if "k" in attrs:
        _top_k(attrs, inputs[0], outputs)
        return
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


def _top_k(attrs, x, outputs):
    values, indices = outputs
    axis, k = int(attrs["axis"]), int(attrs["k"])
    if attrs["op"] == "min":
        order = np.argsort(x, axis=axis, kind="stable")
    else:
        last = x.shape[axis] - 1
        order = last - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    best = np.take(order, np.arange(k), axis=axis)
    np.copyto(indices, best, casting="unsafe")
    np.copyto(values, np.take_along_axis(x, best, axis=axis))
