"""CPU kernel: NonMaxSuppression (attrs: center_point_box, max_output_boxes_per_class, iou_threshold,
score_threshold; inputs: boxes (B, N, 4), scores (B, C, N), and when the boxes are data-dependent rows,
their count: only the first ``count`` boxes are read).

Per batch and class, as ONNX says: boxes scoring above ``score_threshold`` (strictly), taken by
descending score (equal scores: lower box index first), each dropping the later boxes whose IoU with
it exceeds ``iou_threshold`` (strictly), at most ``max_output_boxes_per_class`` of them. Output 0 is
sized to the bound B*C*min(max, N) rows of (batch, class, box); rows past the real count are 0 (valid
indices, so a Gather downstream stays in range); output 1 is the count.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


def corners(boxes: np.ndarray, center_point_box: int) -> tuple[np.ndarray, ...]:
    """(y1, x1, y2, x2) with y1 <= y2 and x1 <= x2, in float64 (the IoU test is a comparison)."""
    boxes = boxes.astype(np.float64)
    if center_point_box:
        x, y, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        return y - h / 2, x - w / 2, y + h / 2, x + w / 2
    a, b = boxes[:, 0:2], boxes[:, 2:4]
    low, high = np.minimum(a, b), np.maximum(a, b)
    return low[:, 0], low[:, 1], high[:, 0], high[:, 1]


def iou_matrix(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """IoU of every pair of boxes; 0 where either box has no area."""
    y1, x1, y2, x2 = corners(boxes, center_point_box)
    area = (y2 - y1) * (x2 - x1)
    height = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
    width = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
    inter = height * width
    union = area[:, None] + area[None] - inter
    valid = (area[:, None] > 0) & (area[None] > 0) & (union > 0)
    return np.where(valid, inter / np.where(valid, union, 1.0), 0.0)


def select_boxes(scores: np.ndarray, iou: np.ndarray, limit: int, iou_threshold: float,
                 score_threshold) -> list[int]:
    """Greedy selection over one class's scores; the selected box indices in selection order."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    if score_threshold is not None:
        order = order[scores[order] > score_threshold]
    selected = []
    while order.size and len(selected) < limit:
        best = int(order[0])
        selected.append(best)
        order = order[1:][iou[best, order[1:]] <= iou_threshold]
    return selected


@register(LayerKind.NMS)
def nms(attrs, inputs, outputs):
    boxes, scores = inputs[:2]
    if len(inputs) > 2:   # data-dependent boxes: only the first ``count`` are real
        valid = int(inputs[2])
        boxes, scores = boxes[:, :valid], scores[:, :, :valid]
    selected_out, count_out = outputs
    limit = int(attrs["max_output_boxes_per_class"])
    iou_threshold = float(attrs.get("iou_threshold") or 0.0)
    score_threshold = attrs.get("score_threshold")
    rows = []
    for batch in range(scores.shape[0]):
        iou = iou_matrix(boxes[batch], int(attrs.get("center_point_box", 0))) if limit > 0 else None
        for cls in range(scores.shape[1]):
            if limit > 0:
                rows += [(batch, cls, box) for box in select_boxes(scores[batch, cls], iou, limit, iou_threshold,
                                                                   score_threshold)]
    selected_out[...] = 0
    if rows:
        selected_out[:len(rows)] = np.array(rows, np.int64)
    count_out[...] = len(rows)
