"""CPU kernel: GridSample over any number of spatial dims (attrs: mode "linear" | "nearest" | "cubic",
padding_mode "zeros" | "border" | "reflection", align_corners; inputs: x (N, C, D1..Dr), grid
(N, O1..Or, r) whose last axis lists coordinates in [-1, 1] innermost dim first: (x, y[, z])).

As ONNX (and PyTorch) say: each coordinate is mapped to pixel space (corners or pixel edges at ±1),
coordinates outside the borders are clamped (border) or reflected (reflection); then each spatial dim
contributes 1 (nearest, rounded half to even), 2 (linear) or 4 (cubic, Keys a = -0.75) taps and their
weights, taps outside the image read 0 (zeros) or the clamped / reflected pixel. The result is the
sum over every combination of taps, which separates per dim.
"""

from __future__ import annotations

import itertools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register

CUBIC_A = -0.75


def reflect(v: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold coordinates outside [low, high] back in by repeated reflection at the borders."""
    span = high - low
    if span <= 0:
        return np.full_like(v, low)
    below, above = v < low, v > high
    distance = np.where(below, low - v, v - high)
    folds = np.floor(distance / span)
    rest = distance - folds * span
    even = folds % 2 == 0
    from_below = np.where(even, low + rest, high - rest)
    from_above = np.where(even, high - rest, low + rest)
    return np.where(below, from_below, np.where(above, from_above, v))


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    a = CUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):   # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _taps(coord: np.ndarray, size: int, attrs) -> list[tuple[np.ndarray, np.ndarray]]:
    """(index, weight) pairs of one spatial dim; indices in range, weight 0 for zeros padding outside."""
    align, padding, mode = bool(attrs.get("align_corners")), attrs["padding_mode"], attrs["mode"]
    low, high = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    x = (coord + 1) / 2 * (size - 1) if align else ((coord + 1) * size - 1) / 2
    if mode == "nearest":
        x = np.rint(x)
    if padding == "border":   # only coordinates beyond the border move (PyTorch/ONNX), those within it stay
        x = np.where((x < low) | (x > high), np.clip(x, 0, size - 1), x)
    elif padding == "reflection":
        x = reflect(x, low, high)
    if mode == "nearest":
        offsets, weights = [0], [np.ones_like(x)]
        base = np.trunc(x)
    else:
        base = np.floor(x)
        t = x - base
        offsets, weights = ([0, 1], [1 - t, t]) if mode == "linear" else ([-1, 0, 1, 2], _cubic_weights(t))
    taps = []
    for offset, weight in zip(offsets, weights):
        index = base + offset
        if padding == "zeros":
            inside = (index >= 0) & (index < size)
            weight = np.where(inside, weight, 0)
        elif padding == "border":
            index = np.clip(index, 0, size - 1)
        else:
            index = np.trunc(reflect(index, low, high))
        taps.append((np.clip(index, 0, size - 1).astype(np.int64), weight))
    return taps


@register(LayerKind.GRID_SAMPLE)
def grid_sample(attrs, inputs, outputs):
    x, grid = inputs
    out = outputs[0]
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    compute = np.float64 if x.dtype == np.float64 else np.float32
    grid = grid.astype(compute)
    per_dim = [_taps(grid[..., len(spatial) - 1 - d], size, attrs) for d, size in enumerate(spatial)]
    strides = [int(np.prod(spatial[d + 1:])) for d in range(len(spatial))]
    flat_x = x.reshape(batch, channels, -1).astype(compute)
    total = np.zeros((batch, channels) + grid.shape[1:-1], compute)
    for combination in itertools.product(*per_dim):
        flat = sum(index * stride for (index, _), stride in zip(combination, strides))
        weight = np.prod([w for _, w in combination], axis=0)
        values = np.take_along_axis(flat_x, flat.reshape(batch, 1, -1), axis=2).reshape(total.shape)
        total += weight[:, None] * values
    np.copyto(out, total, casting="unsafe")
