"""CPU kernel: TopK.

ArgMax / ArgMin form (no ``k`` attr; attrs: op, axis, keepdims, select_last_index): the output holds
int64 indices. With ``select_last_index`` the last of equal extremes wins: the axis is reversed,
searched, and the index mapped back.

Full form (attrs: op, axis, k, sorted): outputs the k largest (op "max") or smallest values along the
axis and their int64 indices, best first; equal values keep the lower index first, as ONNX says. A
stable sort gives that order for "min"; for "max" the axis is reversed before a stable ascending sort
and the order reversed after, so ties still come out lowest index first (no negation: integer types).
``sorted = 0`` allows any order, and this order is one. With a second input, the count of data-dependent rows
along the axis (edgert/ir/valid_rows.py), only those rows compete: the first min(k, count) rows of the
outputs are the result, the rest zeros.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register

_SEARCH = {"max": np.argmax, "min": np.argmin}


@register(LayerKind.TOPK)
def topk(attrs, inputs, outputs):
    if "k" in attrs:
        if len(inputs) > 1 and inputs[1] is not None:
            _top_k_of_valid_rows(attrs, inputs[0], int(inputs[1]), outputs)
        else:
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


def _top_k_of_valid_rows(attrs, x, count: int, outputs):
    """Data-dependent rows along the axis: the best min(k, count) of the first ``count`` rows, zeros after them."""
    axis = int(attrs["axis"])
    valid = min(max(count, 0), x.shape[axis])
    k = min(int(attrs["k"]), valid)
    for out in outputs:
        out[...] = 0
    rows = (slice(None),) * axis
    _top_k(attrs, x[rows + (slice(0, valid),)], [out[rows + (slice(0, k),)] for out in outputs], k)


def _top_k(attrs, x, outputs, k: int | None = None):
    values, indices = outputs
    axis, k = int(attrs["axis"]), int(attrs["k"]) if k is None else k
    if attrs["op"] == "min":
        order = np.argsort(x, axis=axis, kind="stable")
    else:
        last = x.shape[axis] - 1
        order = last - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    best = np.take(order, np.arange(k), axis=axis)
    np.copyto(indices, best, casting="unsafe")
    np.copyto(values, np.take_along_axis(x, best, axis=axis))
