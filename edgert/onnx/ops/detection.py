"""ONNX importers: TopK → TopK; NonMaxSuppression → NMS; RoiAlign → RoiAlign; GridSample → GridSample.

TopK's k may be computed from the count of data-dependent rows it selects from (k = min(K, n)): the layer then
reads that count as its input 1 (edgert/onnx/count_inputs.py).

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
from edgert.onnx.count_inputs import CountInput, check_probes, count_input, counts_of, real_shape, rows_of
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
        axis = BOUNDED_KINDS[kind] if BOUNDED_KINDS[kind] is not None else int(attrs["axis"])
        return ctx.constant(np.take(bounded.const, np.arange(int(count.const)), axis=axis), name=bounded.name)
    return bounded


@onnx_op("TopK")
def topk(ctx, node):
    x = ctx.input(0)
    attrs = ctx.attrs()
    (axis,) = normalize_axes(ctx, [attrs.get("axis", -1)], len(x.shape), "axis")
    counted = None
    if ctx.opset < 10:
        k = int(attrs.get("k", 1))
    else:
        ctx.input(1)  # required
        counted = count_input(ctx, 1, "k")
        if not isinstance(counted, CountInput):
            counted, k = None, int(scalar_input(ctx, 1, "k", 0))
        else:
            k = int(np.asarray(counted.at_bound()).reshape(-1)[0])
    largest = bool(attrs.get("largest", 1)) if ctx.opset >= 11 else True
    attrs = {"op": "max" if largest else "min", "axis": axis, "k": k, "sorted": bool(attrs.get("sorted", 1))}
    if counted is None:
        return ctx.add(LayerKind.TOPK, [x], attrs, num_outputs=2)
    return _topk_of_counted_rows(ctx, x, counted, attrs)


def _topk_of_counted_rows(ctx, x, k: CountInput, attrs):
    """k computed from a count (torchvision: k = min(300, n) over the n rows a NonZero kept): the layer is sized
    by k at the bound and reads the rows' count (its input 1); the probes check that the real k is always the
    valid rows of that bound."""
    axis = attrs["axis"]
    rows = rows_of(ctx, x)
    inputs = [x, rows.count] if rows is not None and rows.axis == axis and rows.scale == 1 else [x]
    if not 0 <= attrs["k"] <= x.shape[axis]:
        ctx.const_input(1, "k")   # k at the bound exceeds the rows: say which count it comes from
    outputs = ctx.add(LayerKind.TOPK, inputs, attrs, num_outputs=2)

    def real_out(probe):
        shape = list(real_shape(x, rows, probe))
        shape[axis] = int(np.asarray(k.at(probe)).reshape(-1)[0])
        return shape
    check_probes(ctx, outputs[0], real_out, counts_of(ctx, x) + k.counts, "k (input 1)")
    return outputs


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
    limit = min(max(limit, 0), boxes.shape[1])   # no class keeps more boxes than there are (exporters write INT64_MAX)
    attrs = {"center_point_box": center, "max_output_boxes_per_class": limit, "iou_threshold": iou_threshold,
             "score_threshold": None if score_threshold is None else float(score_threshold)}
    return [bounded_layer(ctx, LayerKind.NMS, [boxes, scores] + _valid_boxes(ctx, boxes, scores), attrs)]


def _valid_boxes(ctx, boxes, scores) -> list:
    """[count] when the boxes are data-dependent rows (say, the candidates a NonZero kept): NMS then reads only
    the first ``count`` boxes and scores (input 2 of the layer); [] otherwise."""
    from edgert.onnx.ops.constant import data_dependent_rows
    box_rows, score_rows = data_dependent_rows(ctx, boxes), data_dependent_rows(ctx, scores)
    if box_rows is None and score_rows is None:
        return []
    if box_rows is None or score_rows is None or box_rows.count is not score_rows.count or box_rows.axis != 1 \
            or score_rows.axis != 2 or box_rows.scale != 1 or score_rows.scale != 1:
        raise UnsupportedError(
            f"{ctx.where}: boxes {boxes.name!r} and scores {scores.name!r} have data-dependent sizes along axes "
            f"{box_rows and box_rows[1]} and {score_rows and score_rows[1]}; NMS takes data-dependent rows only as "
            "its box axis (1 of boxes, 2 of scores), with the same count on both")
    return [box_rows.count]


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
