"""Shape rules: Quantize and Dequantize (ONNX QuantizeLinear / DequantizeLinear)."""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule


def _check_scale(node) -> None:
    x, scale = node.inputs[0], node.inputs[1]
    axis = int(node.attrs.get("axis", 1))
    block = int(node.attrs.get("block_size", 0))
    if block:
        expected = list(x.shape)
        expected[axis % len(x.shape)] = -(-x.shape[axis % len(x.shape)] // block)
        if list(scale.shape) != expected:
            raise ShapeError(f"layer {node.name!r} ({node.kind.value}): blocked scale has shape {scale.shape}, "
                             f"expected {tuple(expected)} for blocks of {block} along axis {axis}")
        return
    if scale.shape not in ((), (1,)) and (len(scale.shape) != 1 or not -len(x.shape) <= axis < len(x.shape)
                                          or scale.shape[0] != x.shape[axis]):
        raise ShapeError(f"layer {node.name!r} ({node.kind.value}): scale of shape {scale.shape} fits neither "
                         f"per-tensor nor per-axis quantization of {x.shape} along axis {axis}")


@shape_rule(LayerKind.QUANTIZE)
def quantize(node):
    _check_scale(node)
    return [(DataType(node.attrs["to"]), node.inputs[0].shape)]


@shape_rule(LayerKind.DEQUANTIZE)
def dequantize(node):
    _check_scale(node)
    return [(node.inputs[1].dtype, node.inputs[0].shape)]
