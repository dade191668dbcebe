"""ONNX importers: Reduce* → Reduce; Softmax, LogSoftmax, Hardmax → Softmax; ArgMax, ArgMin → TopK.

Axes are normalized to sorted non-negative ints here, so the IR never sees negative axes. Reduce
ops take `axes` as an attribute up to one opset (ReduceSum 12, the others 17) and as an optional
constant input after it, where `noop_with_empty_axes` also appears. A reduction over data-dependent rows
(edgert/ir/valid_rows.py) reads their count and reduces only the valid ones.
"""

from __future__ import annotations

from edgert.errors import ModelError, UnsupportedError
from edgert.ir.kinds import LayerKind, ReduceOp as R
from edgert.onnx.registry import onnx_op

# ONNX op -> (reduce op, first opset that takes axes as an input).
_REDUCTIONS = {
    "ReduceSum": (R.SUM, 13), "ReduceMean": (R.AVG, 18), "ReduceMax": (R.MAX, 18), "ReduceMin": (R.MIN, 18),
    "ReduceProd": (R.PROD, 18), "ReduceL1": (R.L1, 18), "ReduceL2": (R.L2, 18), "ReduceLogSum": (R.LOG_SUM, 18),
    "ReduceLogSumExp": (R.LOG_SUM_EXP, 18), "ReduceSumSquare": (R.SUM_SQUARE, 18),
}
# Reductions that leave an element unchanged when no axis is reduced (noop_with_empty_axes).
_NOOP_IS_IDENTITY = {R.SUM, R.AVG, R.MAX, R.MIN, R.PROD}


def normalize_axes(ctx, axes, rank: int, what: str = "axes") -> list[int]:
    """Sorted non-negative axes; ModelError for out-of-range or repeated ones."""
    axes = [int(a) for a in axes]
    normalized = sorted(a + rank if a < 0 else a for a in axes)
    if any(not 0 <= a < rank for a in normalized) or len(set(normalized)) != len(normalized):
        raise ModelError(f"{ctx.where}: {what} {axes} must be distinct and in [-{rank}, {rank - 1}] for an input "
                         f"of rank {rank}")
    return normalized


def _reduce_axes(ctx, first_input_opset: int, rank: int):
    """The reduced axes, or None when nothing is reduced (empty axes with noop_with_empty_axes)."""
    attrs = ctx.attrs()
    if ctx.opset < first_input_opset:
        axes = attrs.get("axes")
        noop = False
    else:
        given = ctx.input(1, required=False)
        # An empty axes tensor needs no data to be known, even when it is a runtime input.
        empty = given is None or given.size == 0
        axes = None if empty else ctx.const_input(1, "axes").reshape(-1).tolist()
        noop = bool(attrs.get("noop_with_empty_axes", 0))
    if not axes:
        return None if noop else list(range(rank))
    return normalize_axes(ctx, axes, rank)


@onnx_op(*_REDUCTIONS)
def reduce(ctx, node):
    op, first_input_opset = _REDUCTIONS[node.op_type]
    x = ctx.input(0)
    axes = _reduce_axes(ctx, first_input_opset, len(x.shape))
    if axes is None:
        if op in _NOOP_IS_IDENTITY:
            return [x]
        axes = []
    keepdims = bool(ctx.attrs().get("keepdims", 1))
    attrs = {"op": op, "axes": axes, "keepdims": keepdims}
    return ctx.add(LayerKind.REDUCE, [x] + _counted_rows(ctx, x, axes, attrs), attrs)


def _counted_rows(ctx, x, axes, attrs) -> list:
    """[count] when the reduction takes in data-dependent rows (torchvision's max over the kept boxes): the layer
    then reads their count (input 1, ``rows_axis``) and reduces only the valid rows; [] otherwise."""
    from edgert.onnx.ops.constant import data_dependent_rows
    rows = data_dependent_rows(ctx, x)
    if rows is None or rows.axis not in axes:
        return []
    if rows.scale != 1:
        raise UnsupportedError(
            f"{ctx.where}: the reduction takes in data-dependent rows {x.name!r} merged with the axes after them "
            f"(axis {rows.axis}, {rows.scale} elements per counted row); edgert reduces counted rows only along "
            "their own axis: reduce before the reshape, or cut the graph before this node")
    attrs["rows_axis"] = rows.axis
    return [rows.count]


def _softmax(ctx, extra: dict):
    x = ctx.input(0)
    rank = len(x.shape)
    if ctx.opset < 13:
        # Before opset 13 the input is coerced to 2-D at `axis`: softmax over all axes from `axis` on.
        (axis,) = normalize_axes(ctx, [ctx.attrs().get("axis", 1)], max(rank, 1), "axis")
        axes = list(range(axis, rank))
    else:
        axes = normalize_axes(ctx, [ctx.attrs().get("axis", -1)], max(rank, 1), "axis")[:rank]
    if not x.dtype.is_float:
        raise ModelError(f"{ctx.where}: input {x.name!r} has type {x.dtype.value}; expected a float type")
    return ctx.add(LayerKind.SOFTMAX, [x], {"axes": axes, **extra})


@onnx_op("Softmax")
def softmax(ctx, node):
    return _softmax(ctx, {"log": False})


@onnx_op("LogSoftmax")
def log_softmax(ctx, node):
    return _softmax(ctx, {"log": True})


@onnx_op("Hardmax")
def hardmax(ctx, node):
    return _softmax(ctx, {"log": False, "hard": True})


@onnx_op("ArgMax", "ArgMin")
def arg_extreme(ctx, node):
    x = ctx.input(0)
    attrs = ctx.attrs()
    (axis,) = normalize_axes(ctx, [attrs.get("axis", 0)], len(x.shape), "axis")
    return ctx.add(LayerKind.TOPK, [x], {
        "op": "max" if node.op_type == "ArgMax" else "min", "axis": axis,
        "keepdims": bool(attrs.get("keepdims", 1)), "select_last_index": bool(attrs.get("select_last_index", 0)),
    })
