"""ONNX importers: binary arithmetic and comparisons → ElementWise layers."""

from __future__ import annotations

from edgert.ir.kinds import ElementWiseOp, LayerKind
from edgert.onnx.registry import onnx_op


@onnx_op("Add")
def add(ctx, node):
    return ctx.add(LayerKind.ELEMENTWISE, [ctx.input(0), ctx.input(1)], {"op": ElementWiseOp.SUM})
