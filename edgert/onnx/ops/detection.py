"""ONNX importers: TopK → TopK; NonMaxSuppression → NMS; RoiAlign → RoiAlign; GridSample → GridSample.

NonMaxSuppression's output size depends on the data: the layer's output is sized to its static bound
(batch × classes × max_output_boxes_per_class rows) and it also yields the real row count (see
edgert/ir/valid_rows.py). Its limits and thresholds must be constants, as TensorRT's INMSLayer wants.
Its boxes may themselves be data-dependent rows (the candidates a score filter's NonZero kept): their
count is then the layer's third input.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError, UnsupportedError
from edgert.ir.kinds import BOUNDED_KINDS, LayerKind
from edgert.onnx.ops.reduce import normalize_axes
from edgert.onnx.registry import onnx_op


def scalar_input(ctx, index: int, what: str, default):
    """A constant scalar (or one-element) input as a Python number, ``default`` when absent."""
    array = ctx.const_input(index, what, required=False)
    if array is None or array.size == 0:
        return default
    if array.size != 1:
        raise ModelError(f"{ctx.where}: {what} must hold one value, found shape {array.shape}")
    return array.reshape(-1)[0].item()


def bounded_layer(ctx, kind, inputs, attrs):
    """A layer with a data-dependent size: its bounded output (and count) — or, when every input is a
    constant and the layer folds, the constant trimmed to its real size."""
    bounded, count = ctx.add(kind, inputs, attrs, num_outputs=2)
    if bounded.is_const and count.is_const:
        axis = BOUNDED_KINDS[kind]
        return ctx.constant(np.take(bounded.const, np.arange(int(count.const)), axis=axis), name=bounded.name)
    return bounded


@onnx_op("TopK")
def topk(ctx, node):
    x = ctx.input(0)
    attrs = ctx.attrs()
    if ctx.opset < 10:
        k = int(attrs.get("k", 1))
    else:
        ctx.input(1)  # required
        k = int(scalar_input(ctx, 1, "k", 0))
    (axis,) = normalize_axes(ctx, [attrs.get("axis", -1)], len(x.shape), "axis")
    largest = bool(attrs.get("largest", 1)) if ctx.opset >= 11 else True
    return ctx.add(LayerKind.TOPK, [x], {"op": "max" if largest else "min", "axis": axis, "k": k,
                                         "sorted": bool(attrs.get("sorted", 1))}, num_outputs=2)


@onnx_op("NonMaxSuppression")
def non_max_suppression(ctx, node):
    boxes, scores = ctx.input(0), ctx.input(1)
    ctx.check_rank(boxes, (3,), "boxes")
    ctx.check_rank(scores, (3,), "scores")
    limit = int(scalar_input(ctx, 2, "max_output_boxes_per_class", 0))
    iou_threshold = float(scalar_input(ctx, 3, "iou_threshold", 0.0))
    score_threshold = scalar_input(ctx, 4, "score_threshold", None)
    center = int(ctx.attrs().get("center_point_box", 0))
    if center not in (0, 1):
        raise ModelError(f"{ctx.where}: center_point_box must be 0 or 1, found {center}")
    attrs = {"center_point_box": center, "max_output_boxes_per_class": max(limit, 0), "iou_threshold": iou_threshold,
             "score_threshold": None if score_threshold is None else float(score_threshold)}
    return [bounded_layer(ctx, LayerKind.NMS, [boxes, scores] + _valid_boxes(ctx, boxes, scores), attrs)]


def _valid_boxes(ctx, boxes, scores) -> list:
    """[count] when the boxes are data-dependent rows (say, the candidates a NonZero kept): NMS then reads only
    the first ``count`` boxes and scores (input 2 of the layer); [] otherwise."""
    from edgert.onnx.ops.constant import data_dependent_rows
    box_rows, score_rows = data_dependent_rows(ctx, boxes), data_dependent_rows(ctx, scores)
    if box_rows is None and score_rows is None:
        return []
    if box_rows is None or score_rows is None or box_rows[0] is not score_rows[0] or box_rows[1] != 1 \
            or score_rows[1] != 2:
        raise UnsupportedError(
            f"{ctx.where}: boxes {boxes.name!r} and scores {scores.name!r} have data-dependent sizes along axes "
            f"{box_rows and box_rows[1]} and {score_rows and score_rows[1]}; NMS takes data-dependent rows only as "
            "its box axis (1 of boxes, 2 of scores), with the same count on both")
    return [box_rows[0]]


@onnx_op("RoiAlign")
def roi_align(ctx, node):
    x, rois, batch_indices = ctx.input(0), ctx.input(1), ctx.input(2)
    attrs = ctx.attrs()
    ctx.check_rank(x, (4,), "X")
    transform = attrs.get("coordinate_transformation_mode", b"half_pixel" if ctx.opset >= 16 else b"output_half_pixel")
    transform = transform.decode() if isinstance(transform, bytes) else transform
    mode = attrs.get("mode", b"avg")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if transform not in ("half_pixel", "output_half_pixel") or mode not in ("avg", "max"):
        raise ModelError(f"{ctx.where}: mode {mode!r} / coordinate_transformation_mode {transform!r} unknown "
                         "(expected avg|max and half_pixel|output_half_pixel)")
    return ctx.add(LayerKind.ROI_ALIGN, [x, rois, batch_indices], {
        "mode": mode, "output_height": int(attrs.get("output_height", 1)),
        "output_width": int(attrs.get("output_width", 1)), "sampling_ratio": int(attrs.get("sampling_ratio", 0)),
        "spatial_scale": float(attrs.get("spatial_scale", 1.0)), "half_pixel": transform == "half_pixel"})


_GRID_MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest", "bicubic": "cubic", "cubic": "cubic"}


@onnx_op("GridSample")
def grid_sample(ctx, node):
    x, grid = ctx.input(0), ctx.input(1)
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ctx.attrs().items()}
    mode = attrs.get("mode", "bilinear" if ctx.opset < 20 else "linear")
    padding = attrs.get("padding_mode", "zeros")
    if mode not in _GRID_MODES or padding not in ("zeros", "border", "reflection"):
        raise ModelError(f"{ctx.where}: mode {mode!r} / padding_mode {padding!r} unknown (expected "
                         "bilinear|linear|nearest|bicubic|cubic and zeros|border|reflection)")
    if ctx.opset < 20 and len(x.shape) != 4:
        raise UnsupportedError(f"{ctx.where}: GridSample before opset 20 takes 4-D inputs, found {x.shape}")
    return ctx.add(LayerKind.GRID_SAMPLE, [x, grid], {"mode": _GRID_MODES[mode], "padding_mode": padding,
                                                      "align_corners": bool(attrs.get("align_corners", 0))})
