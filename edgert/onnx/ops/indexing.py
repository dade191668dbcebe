"""ONNX importers: NonZero → NonZero; ScatterND, ScatterElements (and Scatter, opset 9-10) → Scatter;
CumSum → Cumulative; Trilu → Select with a constant mask.

Scatter of data-dependent rows of indices and updates (their count as the layer's input 3) applies the valid
rows only. NonZero's output size depends on the data: the layer's output is sized to its bound (numel columns)
and it also yields the real count (see edgert/ir/valid_rows.py); on a constant input it folds here to
the exact constant.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError
from edgert.ir.kinds import LayerKind
from edgert.onnx.ops.detection import bounded_layer, scalar_input
from edgert.onnx.ops.tensor import normalize_axis
from edgert.onnx.registry import onnx_op

_REDUCTIONS = {"none", "add", "mul", "max", "min"}


@onnx_op("NonZero")
def non_zero(ctx, node):
    return [bounded_layer(ctx, LayerKind.NON_ZERO, [ctx.input(0)], {})]


def _reduction(ctx) -> str:
    reduction = ctx.attrs().get("reduction", b"none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction not in _REDUCTIONS:
        raise ModelError(f"{ctx.where}: reduction {reduction!r} unknown (expected {', '.join(sorted(_REDUCTIONS))})")
    return reduction


@onnx_op("ScatterND")
def scatter_nd(ctx, node):
    data, indices, updates = ctx.input(0), ctx.input(1), ctx.input(2)
    return _scatter(ctx, [data, indices, updates], {"mode": "nd", "axis": 0, "reduction": _reduction(ctx)})


@onnx_op("ScatterElements", "Scatter")
def scatter_elements(ctx, node):
    data, indices, updates = ctx.input(0), ctx.input(1), ctx.input(2)
    axis = normalize_axis(ctx, ctx.attrs().get("axis", 0), len(data.shape))
    return _scatter(ctx, [data, indices, updates], {"mode": "elements", "axis": axis, "reduction": _reduction(ctx)})


def _scatter(ctx, inputs, attrs):
    """A Scatter layer; when its indices and updates are data-dependent rows (say, positions a NonZero found and
    values gathered there), only their valid rows apply: the count is its input 3 and ``rows_axis`` their axis."""
    from edgert.onnx.ops.constant import data_dependent_rows
    _, indices, updates = inputs
    index_rows, update_rows = data_dependent_rows(ctx, indices), data_dependent_rows(ctx, updates)
    rows_axis = None
    if index_rows is not None and index_rows == update_rows and index_rows.scale == 1 and \
            (attrs["mode"] == "elements" or index_rows.axis < len(indices.shape) - 1):
        inputs, rows_axis = inputs + [index_rows.count], index_rows.axis
    return ctx.add(LayerKind.SCATTER, inputs, dict(attrs, rows_axis=rows_axis))


@onnx_op("CumSum")
def cumsum(ctx, node):
    x = ctx.input(0)
    axis = normalize_axis(ctx, scalar_input(ctx, 1, "axis", None), max(len(x.shape), 1))
    attrs = ctx.attrs()
    return ctx.add(LayerKind.CUMULATIVE, [x], {"op": "sum", "axis": axis, "exclusive": bool(attrs.get("exclusive", 0)),
                                               "reverse": bool(attrs.get("reverse", 0))})


@onnx_op("Trilu")
def trilu(ctx, node):
    x = ctx.input(0)
    if len(x.shape) < 2:
        raise ModelError(f"{ctx.where}: input {x.name!r} has rank {len(x.shape)}; Trilu needs rank >= 2")
    k = int(scalar_input(ctx, 1, "k", 0))
    rows, cols = x.shape[-2:]
    offset = np.arange(cols)[None, :] - np.arange(rows)[:, None]
    keep = offset >= k if ctx.attrs().get("upper", 1) else offset <= k
    zero = ctx.constant(np.zeros((), x.dtype.numpy), name="trilu_zero")
    return ctx.add(LayerKind.SELECT, [ctx.constant(keep, name="trilu_mask"), x, zero])
