"""Shape rules: TopK (full form), and the detection / tensor kinds of issue 15 (NMS, NonZero, Scatter,
Cumulative, Einsum, GridSample, RoiAlign).

NMS and NonZero have data-dependent sizes: their first output is sized to a static upper bound (as
TensorRT's output allocator bounds it) and their last output is the int64 scalar count of real rows.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule
from edgert.ir.shapes.reduce import reduced_shape


def _fail(node, message: str):
    raise ShapeError(f"layer {node.name!r} ({node.kind.value}): {message}")


@shape_rule(LayerKind.TOPK)
def topk(node):
    x = node.inputs[0]
    axis = int(node.attrs["axis"])
    if not 0 <= axis < len(x.shape):
        _fail(node, f"axis {axis} is out of range for an input of shape {x.shape}")
    if "k" not in node.attrs:   # ArgMax / ArgMin
        if x.shape[axis] == 0:
            _fail(node, f"axis {axis} of shape {x.shape} is empty, no index to return")
        return [(DataType.INT64, reduced_shape(x.shape, [axis], bool(node.attrs.get("keepdims", True))))]
    k = int(node.attrs["k"])
    if len(node.inputs) > 1 and (node.inputs[1] is None or node.inputs[1].shape != ()
                                 or node.inputs[1].dtype != DataType.INT64):
        _fail(node, "the count of valid rows (input 1) must be an int64 scalar")
    if not 0 <= k <= x.shape[axis]:
        _fail(node, f"k = {k} must be in [0, {x.shape[axis]}] (the size of axis {axis} of {x.shape})")
    shape = tuple(k if i == axis else d for i, d in enumerate(x.shape))
    return [(x.dtype, shape), (DataType.INT64, shape)]


@shape_rule(LayerKind.NMS)
def nms(node):
    boxes, scores = node.inputs[:2]
    if len(node.inputs) > 2 and (node.inputs[2].shape != () or node.inputs[2].dtype != DataType.INT64):
        _fail(node, f"the count of valid boxes must be an int64 scalar, found {node.inputs[2].shape}")
    if len(boxes.shape) != 3 or boxes.shape[2] != 4 or len(scores.shape) != 3 \
            or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        _fail(node, f"boxes {boxes.shape} and scores {scores.shape} must be (B, N, 4) and (B, C, N)")
    batch, classes, count = scores.shape
    bound = batch * classes * min(int(node.attrs["max_output_boxes_per_class"]), count)
    return [(DataType.INT64, (bound, 3)), (DataType.INT64, ())]


@shape_rule(LayerKind.NON_ZERO)
def non_zero(node):
    x = node.inputs[0]
    return [(DataType.INT64, (max(len(x.shape), 1), x.size)), (DataType.INT64, ())]


@shape_rule(LayerKind.COMPACT)
def compact(node):
    """k values alike but along ``axis``, their k int64 scalar counts, with ``select`` a bool condition (k = 2)."""
    select = bool(node.attrs.get("select", False))
    values = len(node.inputs) // 2
    data, counts = node.inputs[:values], node.inputs[values:2 * values]
    extra = node.inputs[2 * values:]
    first, axis = data[0], int(node.attrs["axis"])
    if values < 1 or len(extra) != int(select) or (select and values != 2) or not 0 <= axis < len(first.shape):
        _fail(node, f"expects k values along axis {axis} of their rank, their k counts{' and a condition (k = 2)' if select else ''}, "
                    f"found {len(node.inputs)} inputs, the first of shape {first.shape}")
    for value in data:
        if value.dtype != first.dtype or len(value.shape) != len(first.shape) \
                or any(a != b for i, (a, b) in enumerate(zip(value.shape, first.shape)) if i != axis):
            _fail(node, f"values {[tuple(v.shape) for v in data]} ({first.dtype.value}) must agree but along axis {axis}")
    if any(c.dtype != DataType.INT64 or tuple(c.shape) != () for c in counts):
        _fail(node, "the counts must be int64 scalars")
    if select and (extra[0].dtype != DataType.BOOL or extra[0].size != 1):
        _fail(node, f"the condition must be one bool, found {extra[0].dtype.value} {extra[0].shape}")
    shape = tuple(sum(v.shape[axis] for v in data) if i == axis else d for i, d in enumerate(first.shape))
    return [(first.dtype, shape), (DataType.INT64, ())]


def _check_counted_rows(node, indices) -> None:
    """Input 3, when present, counts the valid rows of indices and updates along ``rows_axis`` (an int64 scalar)."""
    count, axis = node.inputs[3], node.attrs.get("rows_axis")
    last = len(indices.shape) - (1 if node.attrs["mode"] == "nd" else 0)
    if count is None or count.dtype != DataType.INT64 or tuple(count.shape) != () or not isinstance(axis, int) \
            or not 0 <= axis < last:
        _fail(node, f"a row count (input 3) needs an int64 scalar and rows_axis in 0..{last - 1}, found "
                    f"{count and count.dtype.value} {count and tuple(count.shape)} and rows_axis {axis}")


@shape_rule(LayerKind.SCATTER)
def scatter(node):
    data, indices, updates = node.inputs[:3]
    if len(node.inputs) > 3:
        _check_counted_rows(node, indices)
    if node.attrs["mode"] == "elements":
        if not 0 <= int(node.attrs.get("axis", 0)) < max(len(data.shape), 1):
            _fail(node, f"axis {node.attrs.get('axis')} is out of range for data of shape {data.shape}")
        if len(indices.shape) != len(data.shape) or tuple(indices.shape) != tuple(updates.shape):
            _fail(node, f"indices {indices.shape} and updates {updates.shape} must have one shape, of the rank "
                        f"of data {data.shape}")
    else:
        depth = indices.shape[-1] if indices.shape else 0
        expected = tuple(indices.shape[:-1]) + tuple(data.shape[depth:])
        if not indices.shape or depth > len(data.shape) or tuple(updates.shape) != expected:
            _fail(node, f"indices {indices.shape} must end in a depth <= rank of data {data.shape}, and updates "
                        f"{updates.shape} must be {expected}")
    if not indices.dtype.numpy.kind == "i":
        _fail(node, f"indices must be int32 or int64, found {indices.dtype.value}")
    return [(data.dtype, data.shape)]


@shape_rule(LayerKind.CUMULATIVE)
def cumulative(node):
    x = node.inputs[0]
    if not 0 <= int(node.attrs["axis"]) < max(len(x.shape), 1):
        _fail(node, f"axis {node.attrs['axis']} is out of range for an input of shape {x.shape}")
    return [(x.dtype, x.shape)]


@shape_rule(LayerKind.EINSUM)
def einsum(node):
    operands = [np.lib.stride_tricks.as_strided(np.zeros(1, v.dtype.numpy), v.shape, [0] * len(v.shape))
                for v in node.inputs]
    try:
        result = np.einsum(node.attrs["equation"], *operands)
    except ValueError as e:
        _fail(node, f"equation {node.attrs['equation']!r} does not fit inputs "
                    f"{[tuple(v.shape) for v in node.inputs]}: {e}")
    return [(node.inputs[0].dtype, np.shape(result))]


@shape_rule(LayerKind.GRID_SAMPLE)
def grid_sample(node):
    x, grid = node.inputs
    spatial = len(x.shape) - 2
    if spatial < 1 or len(grid.shape) != spatial + 2 or grid.shape[0] != x.shape[0] or grid.shape[-1] != spatial:
        _fail(node, f"x {x.shape} and grid {grid.shape} must be (N, C, D1..Dr) and (N, O1..Or, {max(spatial, 1)})")
    return [(x.dtype, tuple(x.shape[:2]) + tuple(grid.shape[1:-1]))]


@shape_rule(LayerKind.ROI_ALIGN)
def roi_align(node):
    x, rois, batch_indices = node.inputs
    if len(x.shape) != 4 or len(rois.shape) != 2 or rois.shape[1] != 4 or tuple(batch_indices.shape) != rois.shape[:1]:
        _fail(node, f"x {x.shape}, rois {rois.shape} and batch_indices {batch_indices.shape} must be (N, C, H, W), "
                    "(R, 4) and (R,)")
    shape = (rois.shape[0], x.shape[1], int(node.attrs["output_height"]), int(node.attrs["output_width"]))
    return [(x.dtype, shape)]
