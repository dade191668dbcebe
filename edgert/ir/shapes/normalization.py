"""Shape rules: Normalization and LRN (same shape out as in)."""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule
from edgert.ir.shapes.elementwise import broadcast


def normalized_axes(node, rank: int) -> list[int]:
    axes = sorted(a + rank if a < 0 else a for a in node.attrs["axes"])
    if not axes or len(set(axes)) != len(axes) or axes[0] < 0 or axes[-1] >= rank:
        raise ShapeError(f"layer {node.name!r} (Normalization): axes {list(node.attrs['axes'])} are not distinct "
                         f"axes of a rank-{rank} input")
    return axes


@shape_rule(LayerKind.NORMALIZATION)
def normalization(node):
    x = node.inputs[0]
    rank = len(x.shape)
    axes = normalized_axes(node, rank)
    groups = int(node.attrs.get("groups", 1))
    if groups != 1 and (rank < 2 or groups < 1 or x.shape[1] % groups or 1 in axes or 0 in axes):
        raise ShapeError(f"layer {node.name!r} (Normalization): {groups} groups need an (N, C, ...) input whose "
                         f"C divides into them and axes after the channel axis; got shape {x.shape}, axes {axes}")
    shape = broadcast(node, *(v.shape for v in node.inputs if v is not None))
    if shape != tuple(x.shape):
        raise ShapeError(f"layer {node.name!r} (Normalization): scale/bias shapes "
                         f"{[v.shape for v in node.inputs[1:] if v is not None]} broadcast the input {x.shape} "
                         f"to {shape}")
    results = [(x.dtype, x.shape)]
    if len(node.outputs) == 3:
        # Mean and inverse standard deviation, kept with size-1 reduced axes (LayerNormalization's extra outputs).
        default = DataType.FLOAT if x.dtype == DataType.HALF else x.dtype
        stats_dtype = DataType(node.attrs.get("stats_dtype") or default)
        stats_shape = tuple(1 if a in axes else d for a, d in enumerate(x.shape))
        results += [(stats_dtype, stats_shape)] * 2
    return results


@shape_rule(LayerKind.LRN)
def lrn(node):
    x = node.inputs[0]
    if len(x.shape) < 2:
        raise ShapeError(f"layer {node.name!r} (LRN): input {x.name!r} has shape {x.shape}; expected (N, C, ...)")
    if int(node.attrs["size"]) < 1:
        raise ShapeError(f"layer {node.name!r} (LRN): size {node.attrs['size']} must be positive")
    return [(x.dtype, x.shape)]
