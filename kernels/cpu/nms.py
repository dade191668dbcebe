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


def iou_between(box_corners: tuple[np.ndarray, ...], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (indices) against boxes ``b``, (len(a), len(b)); 0 where either box has no area."""
    y1, x1, y2, x2 = box_corners
    area_a, area_b = (y2[a] - y1[a]) * (x2[a] - x1[a]), (y2[b] - y1[b]) * (x2[b] - x1[b])
    height = np.clip(np.minimum(y2[a][:, None], y2[b][None]) - np.maximum(y1[a][:, None], y1[b][None]), 0, None)
    width = np.clip(np.minimum(x2[a][:, None], x2[b][None]) - np.maximum(x1[a][:, None], x1[b][None]), 0, None)
    inter = height * width
    union = area_a[:, None] + area_b[None] - inter
    valid = (area_a[:, None] > 0) & (area_b[None] > 0) & (union > 0)
    return np.where(valid, inter / np.where(valid, union, 1.0), 0.0)


_BLOCK = 256   # candidates settled at once: memory O(block x boxes), not O(boxes^2) (27 000 boxes in SSDlite)
_WINDOWED = 4096   # from this many candidates, a kept box compares only with those its x-extent can reach


def select_boxes(scores: np.ndarray, box_corners: tuple[np.ndarray, ...], limit: int, iou_threshold: float,
                 score_threshold) -> list[int]:
    """Greedy selection over one class's scores; the selected box indices in selection order.

    A box only drops boxes it overlaps, so the candidates split into groups whose x-extents do not overlap
    (torchvision's batched NMS shifts each class apart) and each group is settled alone; merged back in score
    order and cut at ``limit``, that is the greedy result over all of them."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    if score_threshold is not None:
        order = order[scores[order] > score_threshold]
    if not order.size or limit <= 0:
        return []
    rank = np.empty(scores.shape[0], np.int64)
    rank[order] = np.arange(order.size)
    chosen = [group[_greedy(box_corners, group, limit, iou_threshold)]
              for group in _overlap_groups(box_corners, order, iou_threshold)]
    merged = np.concatenate(chosen)
    return [int(i) for i in merged[np.argsort(rank[merged], kind="stable")][:limit]]


def _overlap_groups(box_corners, order: np.ndarray, iou_threshold: float) -> list[np.ndarray]:
    """``order`` split into groups of boxes that cannot overlap a box of another group, each in score order."""
    y1, x1, y2, x2 = box_corners
    if iou_threshold < 0 or not (np.isfinite(x1[order]).all() and np.isfinite(x2[order]).all()):
        return [order]   # every pair may suppress (IoU 0 > threshold), or extents unknown
    by_x = order[np.argsort(x1[order], kind="stable")]
    reach = np.maximum.accumulate(x2[by_x])
    groups = np.split(by_x, np.flatnonzero(x1[by_x][1:] >= reach[:-1]) + 1)
    position = np.empty(int(order.max()) + 1, np.int64)
    position[order] = np.arange(order.size)
    return [group[np.argsort(position[group], kind="stable")] for group in groups]


def _greedy(box_corners, order: np.ndarray, limit: int, iou_threshold: float) -> np.ndarray:
    """Positions in ``order`` (boxes by descending score) that greedy NMS keeps, at most ``limit``. Blocked: the
    next ``_BLOCK`` live candidates are settled among themselves in order, then each box kept there drops the
    later candidates it overlaps (among many candidates, only those whose x-extent can reach it: a window of
    the candidates sorted by x1): the same result as taking one box at a time."""
    local = tuple(np.asarray(c[order]) for c in box_corners)   # (y1, x1, y2, x2) by position in ``order``
    x1, x2 = local[1], local[3]
    by_x = np.argsort(x1, kind="stable")
    x1_sorted, widest = x1[by_x], float(np.max(x2 - x1))
    windowed = order.size > _WINDOWED and iou_threshold >= 0 and np.isfinite(widest) and np.isfinite(x1).all()
    alive = np.ones(order.size, bool)
    kept_all: list[np.ndarray] = []
    total = start = 0
    while total < limit:
        pending = np.flatnonzero(alive[start:]) + start
        if not pending.size:
            break
        block = pending[:_BLOCK]
        overlaps = iou_between(local, block, block) > iou_threshold
        live, kept = np.ones(block.size, bool), []
        for i in range(block.size):
            if live[i]:
                kept.append(i)
                if total + len(kept) == limit:
                    break
                live[i + 1:] &= ~overlaps[i, i + 1:]
        chosen = block[kept]
        kept_all.append(chosen)
        total += chosen.size
        alive[block] = False
        start = int(block[-1]) + 1
        if not windowed:
            rest = pending[block.size:]
            alive[rest[(iou_between(local, chosen, rest) > iou_threshold).any(axis=0)]] = False
            continue
        for box in chosen:
            reach = np.searchsorted(x1_sorted, [x1[box] - widest, x2[box]], side="right")
            near = by_x[reach[0]:reach[1]]   # x1 in (x1 - widest, x2]: the boxes that may overlap this one
            near = near[alive[near]]
            alive[near[iou_between(local, box[None], near)[0] > iou_threshold]] = False
    return np.concatenate(kept_all) if kept_all else np.zeros(0, np.int64)


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
        box_corners = corners(boxes[batch], int(attrs.get("center_point_box", 0)))
        for cls in range(scores.shape[1]):
            if limit > 0:
                rows += [(batch, cls, box) for box in select_boxes(scores[batch, cls], box_corners, limit,
                                                                   iou_threshold, score_threshold)]
    selected_out[...] = 0
    if rows:
        selected_out[:len(rows)] = np.array(rows, np.int64)
    count_out[...] = len(rows)
