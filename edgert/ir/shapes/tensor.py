"""Shape rules: data-movement kinds (Shuffle, Concatenation, Slice, Gather, Expand, Tile).

These kinds never change the element type; their attrs are fully resolved at import (no -1 or 0
placeholders, no negative axes), so a rule only checks that the attrs fit the input shapes.
"""

from __future__ import annotations

import math

import numpy as np

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule

_INDEX_TYPES = (DataType.INT32, DataType.INT64)


def _fail(node, message: str) -> ShapeError:
    return ShapeError(f"layer {node.name!r} ({node.kind.value}): {message}")


def _check_perm(node, perm, rank: int, which: str) -> None:
    if sorted(perm) != list(range(rank)):
        raise _fail(node, f"{which} {list(perm)} is not a permutation of the {rank} axes of its input")


def permuted(shape, perm):
    return tuple(shape[p] for p in perm) if perm is not None else tuple(shape)


@shape_rule(LayerKind.SHUFFLE)
def shuffle(node):
    x = node.inputs[0]
    attrs = node.attrs
    shape = tuple(x.shape)
    if attrs.get("first_perm") is not None:
        _check_perm(node, attrs["first_perm"], len(shape), "first_perm")
        shape = permuted(shape, attrs["first_perm"])
    if attrs.get("reshape") is not None:
        target = tuple(int(d) for d in attrs["reshape"])
        if any(d < 0 for d in target) or math.prod(target) != math.prod(shape):
            raise _fail(node, f"cannot reshape {shape} ({math.prod(shape)} elements) to {target}")
        shape = target
    if attrs.get("second_perm") is not None:
        _check_perm(node, attrs["second_perm"], len(shape), "second_perm")
        shape = permuted(shape, attrs["second_perm"])
    return [(x.dtype, shape)]


@shape_rule(LayerKind.CONCATENATION)
def concatenation(node):
    first = node.inputs[0]
    axis = int(node.attrs["axis"])
    rank = len(first.shape)
    if not 0 <= axis < rank:
        raise _fail(node, f"axis {axis} is out of range for rank {rank}")
    total = 0
    for value in node.inputs:
        if value.dtype != first.dtype:
            raise _fail(node, f"inputs have types {first.dtype.value} and {value.dtype.value}; all must match")
        same_rest = len(value.shape) == rank and all(a == b for i, (a, b) in enumerate(zip(value.shape, first.shape))
                                                     if i != axis)
        if not same_rest:
            raise _fail(node, f"input shapes {first.shape} and {value.shape} differ outside axis {axis}")
        total += value.shape[axis]
    shape = list(first.shape)
    shape[axis] = total
    return [(first.dtype, tuple(shape))]


@shape_rule(LayerKind.SLICE)
def slice_(node):
    x = node.inputs[0]
    starts, sizes, steps = (list(node.attrs[k]) for k in ("starts", "sizes", "steps"))
    if not len(starts) == len(sizes) == len(steps) == len(x.shape):
        raise _fail(node, f"starts/sizes/steps need one entry per axis of {x.shape}, "
                          f"got {starts}, {sizes}, {steps}")
    for axis, (dim, start, size, step) in enumerate(zip(x.shape, starts, sizes, steps)):
        if step == 0 or size < 0:
            raise _fail(node, f"axis {axis}: step {step} and size {size} are invalid (step != 0, size >= 0)")
        last = start + (size - 1) * step
        if size > 0 and not (0 <= start < dim and 0 <= last < dim):
            raise _fail(node, f"axis {axis}: {size} elements from {start} by {step} leave the dim of {dim}")
    return [(x.dtype, tuple(sizes))]


@shape_rule(LayerKind.GATHER)
def gather(node):
    data, indices = node.inputs
    axis = int(node.attrs["axis"])
    if not 0 <= axis < len(data.shape):
        raise _fail(node, f"axis {axis} is out of range for data of shape {data.shape}")
    if indices.dtype not in _INDEX_TYPES:
        raise _fail(node, f"indices must be int32 or int64, found {indices.dtype.value}")
    dim = data.shape[axis]
    if indices.is_const and indices.const.size and not (-dim <= indices.const.min() and indices.const.max() < dim):
        raise _fail(node, f"constant indices range over [{indices.const.min()}, {indices.const.max()}], "
                          f"outside [-{dim}, {dim - 1}] for axis {axis} of {data.shape}")
    return [(data.dtype, data.shape[:axis] + indices.shape + data.shape[axis + 1:])]


@shape_rule(LayerKind.EXPAND)
def expand(node):
    x = node.inputs[0]
    shape = tuple(int(d) for d in node.attrs["shape"])
    try:
        broadcast = tuple(np.broadcast_shapes(x.shape, shape))
    except ValueError:
        broadcast = None
    if broadcast != shape:
        raise _fail(node, f"input of shape {x.shape} does not broadcast to {shape}")
    if len(node.inputs) > 1:   # the count of the output's valid rows (a ConstantOfShape sized by a count)
        from edgert.ir.shapes.reduce import check_row_count
        check_row_count(node, node.inputs[1], len(shape))
    return [(x.dtype, shape)]


@shape_rule(LayerKind.TILE)
def tile(node):
    x = node.inputs[0]
    repeats = [int(r) for r in node.attrs["repeats"]]
    if len(repeats) != len(x.shape) or any(r < 0 for r in repeats):
        raise _fail(node, f"repeats {repeats} must be one non-negative count per axis of {x.shape}")
    return [(x.dtype, tuple(d * r for d, r in zip(x.shape, repeats)))]
