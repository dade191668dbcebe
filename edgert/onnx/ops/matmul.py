"""ONNX importers: MatMul and Gemm → MatrixMultiply (+ ElementWise for alpha, beta and C).

Gemm computes alpha * A' @ B' + beta * C. A constant alpha or beta is folded into a constant operand
(B, else A; C) so the common `alpha = beta = 1` and constant-weight cases are one MatrixMultiply and
one bias add.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError, ShapeError
from edgert.ir.kinds import ElementWiseOp, LayerKind
from edgert.onnx.registry import onnx_op


def _check_same_type(ctx, a, b) -> None:
    if a.dtype != b.dtype:
        raise ModelError(f"{ctx.where}: inputs {a.name!r} ({a.dtype.value}) and {b.name!r} ({b.dtype.value}) "
                         "must have the same type")


@onnx_op("MatMul")
def matmul(ctx, node):
    a, b = ctx.input(0), ctx.input(1)
    _check_same_type(ctx, a, b)
    return ctx.add(LayerKind.MATRIX_MULTIPLY, [a, b], {"trans_a": False, "trans_b": False})


def _scaled(ctx, value, factor: float):
    """value * factor: a new constant when value is constant, else an ElementWise product."""
    if factor == 1.0:
        return value
    scalar = np.array(factor, value.dtype.numpy)
    if value.is_const:
        return ctx.constant((value.const * scalar).astype(value.dtype.numpy), name=f"{value.name}_scaled")
    (y,) = ctx.add(LayerKind.ELEMENTWISE, [value, ctx.constant(scalar)], {"op": ElementWiseOp.PROD})
    return y


@onnx_op("Gemm")
def gemm(ctx, node):
    a, b, c = ctx.input(0), ctx.input(1), ctx.input(2, required=ctx.opset < 11)
    attrs = ctx.attrs()
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
    ctx.check_rank(a, (2,), "A")
    ctx.check_rank(b, (2,), "B")
    _check_same_type(ctx, a, b)
    if alpha != 1.0 and (b.is_const or a.is_const):
        if b.is_const:
            b = _scaled(ctx, b, alpha)
        else:
            a = _scaled(ctx, a, alpha)
        alpha = 1.0
    (y,) = ctx.add(LayerKind.MATRIX_MULTIPLY, [a, b], {"trans_a": trans_a, "trans_b": trans_b})
    y = _scaled(ctx, y, alpha)
    if c is None or beta == 0.0:
        return [y]
    _check_same_type(ctx, a, c)
    try:
        fits = np.broadcast_shapes(c.shape, y.shape) == y.shape
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"{ctx.where}: C {c.name!r} of shape {c.shape} does not broadcast to the product's "
                         f"shape {y.shape}")
    return ctx.add(LayerKind.ELEMENTWISE, [y, _scaled(ctx, c, beta)], {"op": ElementWiseOp.SUM})
