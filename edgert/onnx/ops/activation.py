"""ONNX importers: activations (Relu, Sigmoid, ...) → Activation layers."""

from __future__ import annotations

from edgert.ir.kinds import ActivationType, LayerKind
from edgert.onnx.registry import onnx_op


@onnx_op("Relu")
def relu(ctx, node):
    return ctx.add(LayerKind.ACTIVATION, [ctx.input(0)], {"type": ActivationType.RELU})
