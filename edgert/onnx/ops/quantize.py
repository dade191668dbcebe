"""ONNX importers: QuantizeLinear / DequantizeLinear (explicit quantization, opsets 10, 13, 19, 21+).

Both become real layers (Quantize → int8/uint8/int16/uint16/int32 tensors, Dequantize → float), so a
Q/DQ model computes exactly what ONNX defines. For int8 builds, ``edgert.precision`` folds each
symmetric Quantize → Dequantize pair on an activation and keeps its scale for the int8 layers.
"""

from __future__ import annotations

from edgert.errors import UnsupportedError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.onnx.context import onnx_dtype
from edgert.onnx.registry import onnx_op

_QUANTIZED = {DataType.INT8, DataType.UINT8, DataType.INT16, DataType.UINT16, DataType.INT32}


def _layer_attrs(attrs: dict) -> dict:
    """axis and block_size (opset 21 blocked quantization) as the layer keeps them."""
    return {"axis": int(attrs.get("axis", 1)), "block_size": int(attrs.get("block_size", 0))}


@onnx_op("QuantizeLinear")
def quantize_linear(ctx, node):
    attrs = ctx.attrs()
    x, scale, zero_point = ctx.input(0), ctx.input(1), ctx.input(2, required=False)
    if zero_point is not None:
        to = zero_point.dtype
    elif "output_dtype" in attrs and attrs["output_dtype"]:
        to = onnx_dtype(attrs["output_dtype"], ctx.where)
    else:
        to = DataType.UINT8
    if to not in _QUANTIZED:
        raise UnsupportedError(f"{ctx.where}: quantizing to {to.value} is not supported "
                               f"(supported: {', '.join(sorted(d.value for d in _QUANTIZED))})")
    inputs = [x, scale] + ([zero_point] if zero_point is not None else [])
    return ctx.add(LayerKind.QUANTIZE, inputs, {**_layer_attrs(attrs), "to": to})


@onnx_op("DequantizeLinear")
def dequantize_linear(ctx, node):
    attrs = ctx.attrs()
    x, scale, zero_point = ctx.input(0), ctx.input(1), ctx.input(2, required=False)
    if x.dtype not in _QUANTIZED:
        raise UnsupportedError(f"{ctx.where}: dequantizing {x.dtype.value} tensors is not supported "
                               f"(supported: {', '.join(sorted(d.value for d in _QUANTIZED))})")
    inputs = [x, scale] + ([zero_point] if zero_point is not None else [])
    return ctx.add(LayerKind.DEQUANTIZE, inputs, _layer_attrs(attrs))
