"""Shape rules: per-element kinds (Activation, Unary, ElementWise, Scale, ParametricReLU, Select, Cast, Identity)."""

from __future__ import annotations

import numpy as np

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import ElementWiseOp, LayerKind, UnaryOp
from edgert.ir.shape_inference import shape_rule

_COMPARISONS = {ElementWiseOp.EQUAL, ElementWiseOp.GREATER, ElementWiseOp.GREATER_EQUAL, ElementWiseOp.LESS,
                ElementWiseOp.LESS_EQUAL, ElementWiseOp.AND, ElementWiseOp.OR, ElementWiseOp.XOR}


def broadcast(node, *shapes) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"layer {node.name!r} ({node.kind.value}): shapes "
                         f"{' and '.join(str(tuple(s)) for s in shapes)} do not broadcast") from None


@shape_rule(LayerKind.ACTIVATION, LayerKind.IDENTITY)
def same_as_input(node):
    x = node.inputs[0]
    return [(x.dtype, x.shape)]


@shape_rule(LayerKind.REFORMAT)
def reformat(node):
    """A Reformat keeps its input's type unless it quantizes to / dequantizes from int8 codes (``to_dtype``)."""
    x = node.inputs[0]
    to_dtype = node.attrs.get("to_dtype")
    return [(DataType(to_dtype) if to_dtype is not None else x.dtype, x.shape)]


@shape_rule(LayerKind.UNARY)
def unary(node):
    x = node.inputs[0]
    op = UnaryOp(node.attrs["op"])
    dtype = DataType.BOOL if op in (UnaryOp.ISNAN, UnaryOp.ISINF) else x.dtype
    return [(dtype, x.shape)]


@shape_rule(LayerKind.ELEMENTWISE)
def elementwise(node):
    a, b = node.inputs
    op = ElementWiseOp(node.attrs["op"])
    if op != ElementWiseOp.POW and a.dtype != b.dtype:
        raise ShapeError(f"layer {node.name!r}: {op.value} of mismatched types {a.dtype.value} and {b.dtype.value}")
    dtype = DataType.BOOL if op in _COMPARISONS else a.dtype
    return [(dtype, broadcast(node, a.shape, b.shape))]


@shape_rule(LayerKind.SCALE)
def scale(node):
    x = node.inputs[0]
    return [(x.dtype, broadcast(node, *(v.shape for v in node.inputs if v is not None)))]


@shape_rule(LayerKind.PARAMETRIC_RELU)
def parametric_relu(node):
    x, slope = node.inputs
    if broadcast(node, x.shape, slope.shape) != tuple(x.shape):
        raise ShapeError(f"layer {node.name!r}: slope of shape {slope.shape} must broadcast to the input's "
                         f"shape {x.shape} (unidirectional broadcasting)")
    return [(x.dtype, x.shape)]


@shape_rule(LayerKind.SELECT)
def select(node):
    condition, a, b = node.inputs
    if condition.dtype != DataType.BOOL:
        raise ShapeError(f"layer {node.name!r}: Select condition has type {condition.dtype.value}, expected bool")
    if a.dtype != b.dtype:
        raise ShapeError(f"layer {node.name!r}: Select branches have types {a.dtype.value} and {b.dtype.value}")
    return [(a.dtype, broadcast(node, condition.shape, a.shape, b.shape))]


@shape_rule(LayerKind.CAST)
def cast(node):
    return [(DataType(node.attrs["to"]), node.inputs[0].shape)]
