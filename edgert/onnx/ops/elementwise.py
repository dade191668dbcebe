"""ONNX importers: binary arithmetic, comparisons and logic → ElementWise; math functions → Unary;
Where → Select; Cast / CastLike → Cast.

Variadic Sum / Max / Min / Mean become a chain of two-input ElementWise layers (Mean divides the sum
by the input count). Opsets before 7 (the `broadcast` attribute) are out of the importer's range.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError, UnsupportedError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import ElementWiseOp as E, LayerKind, UnaryOp as U
from edgert.onnx.context import onnx_dtype
from edgert.onnx.registry import onnx_op

_BINARY = {
    "Add": E.SUM, "Sub": E.SUB, "Mul": E.PROD, "Div": E.DIV, "Pow": E.POW,
    "Equal": E.EQUAL, "Greater": E.GREATER, "GreaterOrEqual": E.GREATER_EQUAL, "Less": E.LESS,
    "LessOrEqual": E.LESS_EQUAL, "And": E.AND, "Or": E.OR, "Xor": E.XOR,
}
_VARIADIC = {"Sum": E.SUM, "Max": E.MAX, "Min": E.MIN, "Mean": E.SUM}
_LOGICAL = {E.AND, E.OR, E.XOR}

_UNARY = {
    "Sqrt": U.SQRT, "Exp": U.EXP, "Log": U.LOG, "Neg": U.NEG, "Abs": U.ABS, "Reciprocal": U.RECIP,
    "Erf": U.ERF, "Sin": U.SIN, "Cos": U.COS, "Tan": U.TAN, "Asin": U.ASIN, "Acos": U.ACOS, "Atan": U.ATAN,
    "Sinh": U.SINH, "Cosh": U.COSH, "Asinh": U.ASINH, "Acosh": U.ACOSH, "Atanh": U.ATANH, "Ceil": U.CEIL,
    "Floor": U.FLOOR, "Round": U.ROUND, "Sign": U.SIGN, "Not": U.NOT, "IsNaN": U.ISNAN, "IsInf": U.ISINF,
}
# Unary ops whose ONNX type constraint admits only float tensors.
_FLOAT_ONLY = {U.SQRT, U.EXP, U.LOG, U.RECIP, U.ERF, U.SIN, U.COS, U.TAN, U.ASIN, U.ACOS, U.ATAN, U.SINH,
               U.COSH, U.ASINH, U.ACOSH, U.ATANH, U.CEIL, U.FLOOR, U.ROUND, U.ISINF, U.ISNAN}


def _check_same_type(ctx, a, b) -> None:
    if a.dtype != b.dtype:
        raise ModelError(f"{ctx.where}: inputs {a.name!r} ({a.dtype.value}) and {b.name!r} ({b.dtype.value}) "
                         "must have the same type; insert a Cast")


def elementwise(ctx, op: E, a, b):
    if op != E.POW:
        _check_same_type(ctx, a, b)
    if op in _LOGICAL and a.dtype != DataType.BOOL:
        raise ModelError(f"{ctx.where}: logical op on {a.dtype.value} tensors; And/Or/Xor take bool tensors")
    (y,) = ctx.add(LayerKind.ELEMENTWISE, [a, b], {"op": op})
    return y


@onnx_op(*_BINARY)
def binary(ctx, node):
    return [elementwise(ctx, _BINARY[node.op_type], ctx.input(0), ctx.input(1))]


@onnx_op(*_VARIADIC)
def variadic(ctx, node):
    operands = [v for v in ctx.inputs() if v is not None]
    if not operands:
        raise ModelError(f"{ctx.where}: needs at least one input")
    y = operands[0]
    for operand in operands[1:]:
        y = elementwise(ctx, _VARIADIC[node.op_type], y, operand)
    if node.op_type == "Mean" and len(operands) > 1:
        y = elementwise(ctx, E.DIV, y, ctx.constant(np.array(len(operands), y.dtype.numpy)))
    return [y]


@onnx_op("Mod")
def mod(ctx, node):
    a, b = ctx.input(0), ctx.input(1)
    fmod = bool(ctx.attrs().get("fmod", 0))
    if not fmod and a.dtype.is_float and ctx.opset < 28:
        raise ModelError(f"{ctx.where}: Mod of {a.dtype.value} tensors needs fmod=1 (before opset 28 ONNX "
                         "defines fmod=0 only for integers)")
    return [elementwise(ctx, E.FMOD if fmod else E.MOD, a, b)]


@onnx_op(*_UNARY)
def unary(ctx, node):
    op = _UNARY[node.op_type]
    x = ctx.input(0)
    if op in _FLOAT_ONLY and not x.dtype.is_float:
        raise UnsupportedError(f"{ctx.where}: input {x.name!r} has type {x.dtype.value}; {node.op_type} takes "
                               "float16/float32/float64 tensors")
    if op == U.NOT and x.dtype != DataType.BOOL:
        raise ModelError(f"{ctx.where}: Not takes bool tensors, got {x.dtype.value}")
    attrs = {"op": op}
    if op == U.ISINF:
        given = ctx.attrs()
        attrs.update(detect_positive=bool(given.get("detect_positive", 1)),
                     detect_negative=bool(given.get("detect_negative", 1)))
    return ctx.add(LayerKind.UNARY, [x], attrs)


@onnx_op("Where")
def where(ctx, node):
    condition, a, b = ctx.input(0), ctx.input(1), ctx.input(2)
    if condition.dtype != DataType.BOOL:
        raise ModelError(f"{ctx.where}: condition {condition.name!r} has type {condition.dtype.value}, "
                         "expected bool")
    _check_same_type(ctx, a, b)
    return ctx.add(LayerKind.SELECT, [condition, a, b])


def cast(ctx, x, to: DataType):
    if x.dtype == to:
        return [x]
    return ctx.add(LayerKind.CAST, [x], {"to": to.value})


@onnx_op("Cast")
def cast_op(ctx, node):
    attrs = ctx.attrs()
    if "to" not in attrs:
        raise ModelError(f"{ctx.where}: the 'to' attribute is required")
    return cast(ctx, ctx.input(0), onnx_dtype(attrs["to"], f"{ctx.where}: target type"))


@onnx_op("CastLike")
def cast_like(ctx, node):
    return cast(ctx, ctx.input(0), ctx.input(1).dtype)
