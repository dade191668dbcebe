"""CPU kernel: Scatter (attrs: mode "elements" | "nd", axis, reduction, rows_axis; inputs: data, indices, updates
and, when the indices and updates are data-dependent rows along ``rows_axis``, their count: only those rows apply).

The output starts as a copy of ``data``; "elements" writes ``updates[i]`` at ``i`` with its ``axis``
coordinate replaced by ``indices[i]`` (ScatterElements), "nd" writes ``updates[p]`` (a slice) at the
coordinates ``indices[p]`` (ScatterND). Reductions combine with what is there (ufunc.at, so repeated
indices accumulate); with "none", repeated indices leave one of their updates.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import InputError
from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register

_COMBINE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _wrapped(indices: np.ndarray, dim: int, where: str) -> np.ndarray:
    if indices.size and not (-dim <= indices.min() and indices.max() < dim):
        raise InputError(f"Scatter: {where} indices range over [{indices.min()}, {indices.max()}], outside "
                         f"[-{dim}, {dim - 1}]")
    return np.where(indices < 0, indices + dim, indices).astype(np.int64)


def _positions(attrs, data: np.ndarray, indices: np.ndarray) -> tuple:
    if attrs["mode"] == "elements":
        axis = int(attrs["axis"])
        grid = list(np.indices(indices.shape, sparse=True))
        grid[axis] = _wrapped(indices, data.shape[axis], f"axis {axis}")
        return tuple(grid)
    return tuple(_wrapped(indices[..., d], data.shape[d], f"axis {d}") for d in range(indices.shape[-1]))


@register(LayerKind.SCATTER)
def scatter(attrs, inputs, outputs):
    data, indices, updates = inputs[:3]
    if len(inputs) > 3 and inputs[3] is not None:   # data-dependent rows: only the first ``count`` apply
        rows = (slice(None),) * int(attrs["rows_axis"]) + (slice(0, max(int(inputs[3]), 0)),)
        indices, updates = indices[rows], updates[rows]
    out = outputs[0]
    np.copyto(out, data)
    positions = _positions(attrs, data, indices)
    reduction = attrs.get("reduction", "none")
    if reduction == "none":
        out[positions] = updates
    else:
        _COMBINE[reduction].at(out, positions, updates)
