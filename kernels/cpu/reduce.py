"""CPU kernel: Reduce (attrs: op, axes, keepdims; with a second input, the count of data-dependent rows along
``rows_axis``: only those rows are reduced).

``axes`` lists the reduced axes (the importer normalizes them); an empty list reduces nothing, so
the op's per-element part still applies (ReduceSumSquare → x*x, ReduceL2 → |x|), as in ONNX's
reference for noop_with_empty_axes. Reducing an empty axis gives the op's identity: 0 for sums,
1 for products, -inf / the type's lowest value for max, +inf / highest for min, NaN for a mean.
float16 accumulates in float32.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind, ReduceOp as R
from edgert.kernels.registry import register


def _accumulator(dtype):
    return np.float32 if dtype == np.float16 else dtype


def _sum(x, axes):
    return np.add.reduce(x, axis=axes, keepdims=True, dtype=_accumulator(x.dtype))


def _extreme(ufunc, x, axes, lowest: bool):
    if x.size == 0 or any(x.shape[a] == 0 for a in axes):
        if x.dtype == np.bool_:
            initial = not lowest
        elif x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            initial = info.min if lowest else info.max
        else:
            initial = -np.inf if lowest else np.inf
        return ufunc.reduce(x, axis=axes, keepdims=True, initial=initial)
    return ufunc.reduce(x, axis=axes, keepdims=True)


def _mean(x, axes):
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    total = _sum(x, axes)
    if x.dtype.kind in "iu":
        # Integer mean truncates toward zero, like C division (NumPy's // floors).
        return np.sign(total) * (np.abs(total) // count) if count else total
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(total, total.dtype.type(count))


def _log_sum_exp(x, axes):
    wide = x.astype(_accumulator(x.dtype), copy=False)
    peak = _extreme(np.maximum, wide, axes, lowest=True)
    peak = np.where(np.isfinite(peak), peak, 0).astype(wide.dtype, copy=False)
    with np.errstate(divide="ignore"):
        return np.log(np.add.reduce(np.exp(wide - peak), axis=axes, keepdims=True)) + peak


def _square_sum(x, axes):
    wide = x.astype(_accumulator(x.dtype), copy=False)
    return np.add.reduce(wide * wide, axis=axes, keepdims=True)


# op -> f(x, axes) with keepdims=True; the kernel casts the result into the output.
_REDUCTIONS = {
    R.SUM: _sum,
    R.PROD: lambda x, axes: np.multiply.reduce(x, axis=axes, keepdims=True, dtype=_accumulator(x.dtype)),
    R.MAX: lambda x, axes: _extreme(np.maximum, x, axes, lowest=True),
    R.MIN: lambda x, axes: _extreme(np.minimum, x, axes, lowest=False),
    R.AVG: _mean,
    R.L1: lambda x, axes: _sum(np.abs(x), axes),
    R.L2: lambda x, axes: np.sqrt(_square_sum(x, axes)),
    R.SUM_SQUARE: _square_sum,
    R.LOG_SUM: lambda x, axes: np.log(_sum(x, axes)),
    R.LOG_SUM_EXP: _log_sum_exp,
}


def reduce(op, x: np.ndarray, axes, out: np.ndarray) -> None:
    """Reduce ``x`` over ``axes`` into ``out`` (keepdims or not: only the element count matters)."""
    axes = tuple(int(a) for a in axes)
    kept_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        result = _REDUCTIONS[R(op)](x, axes)
    np.copyto(out.reshape(kept_shape), result, casting="unsafe")


@register(LayerKind.REDUCE)
def reduce_kernel(attrs, inputs, outputs):
    x = inputs[0]
    if len(inputs) > 1:   # data-dependent rows along rows_axis (edgert/ir/valid_rows.py): only the valid ones
        axis = int(attrs["rows_axis"])
        x = x[(slice(None),) * axis + (slice(0, max(int(inputs[1]), 0)),)]
    reduce(attrs["op"], x, attrs["axes"], outputs[0])
