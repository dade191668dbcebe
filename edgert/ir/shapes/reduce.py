"""Shape rules: Reduce and Softmax (TopK is in detection.py)."""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule


def _check_axes(node, axes, rank: int) -> list[int]:
    axes = [int(a) for a in axes]
    bad = [a for a in axes if not 0 <= a < rank]
    if bad or len(set(axes)) != len(axes):
        raise ShapeError(f"layer {node.name!r} ({node.kind.value}): axes {axes} must be distinct and in "
                         f"[0, {rank}) for an input of rank {rank}")
    return axes


def reduced_shape(shape, axes, keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


@shape_rule(LayerKind.REDUCE)
def reduce(node):
    x = node.inputs[0]
    axes = _check_axes(node, node.attrs["axes"], len(x.shape))
    if len(node.inputs) > 1:
        check_row_count(node, node.inputs[1], len(x.shape))
    return [(x.dtype, reduced_shape(x.shape, axes, bool(node.attrs.get("keepdims", True))))]


def check_row_count(node, count, rank: int) -> None:
    """A row count input (edgert/ir/valid_rows.py): an int64 scalar, and ``rows_axis`` one of the input's axes."""
    axis = node.attrs.get("rows_axis")
    if count is None or count.dtype != DataType.INT64 or tuple(count.shape) != () or not isinstance(axis, int) \
            or not 0 <= axis < rank:
        raise ShapeError(f"layer {node.name!r} ({node.kind.value}): a row count (input 1) needs an int64 scalar and "
                         f"rows_axis in 0..{rank - 1}, found {count and count.dtype.value} "
                         f"{count and tuple(count.shape)} and rows_axis {axis}")


@shape_rule(LayerKind.SOFTMAX)
def softmax(node):
    x = node.inputs[0]
    axes = _check_axes(node, node.attrs["axes"], len(x.shape))
    if not axes and x.shape:
        raise ShapeError(f"layer {node.name!r} (Softmax): needs at least one axis")
    if not x.dtype.is_float and not node.attrs.get("hard", False):
        raise ShapeError(f"layer {node.name!r} (Softmax): input type {x.dtype.value} is not a float type")
    return [(x.dtype, x.shape)]
