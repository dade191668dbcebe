"""CPU kernels: Quantize and Dequantize (linear, per-tensor or per-axis scales and zero points)."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


def _along(param: np.ndarray | None, x: np.ndarray, axis: int, block_size: int = 0):
    """A per-tensor, per-axis or blocked parameter shaped to broadcast against ``x``."""
    if param is None or param.ndim == 0 or param.size == 1:
        return None if param is None else param.reshape(())
    if block_size:  # one value per block of `block_size` elements along the axis
        repeated = np.repeat(param, block_size, axis=axis % x.ndim)
        return repeated[tuple(slice(0, d) for d in x.shape)]
    shape = [1] * x.ndim
    shape[axis % x.ndim] = param.size
    return param.reshape(shape)


@register(LayerKind.QUANTIZE)
def quantize(attrs, inputs, outputs):
    x, scale = inputs[0], inputs[1]
    zero_point = inputs[2] if len(inputs) > 2 else None
    out = outputs[0]
    axis, block = int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
    # ONNX computes in float32 at least: x / scale, round half to even, add the zero point, saturate.
    wide = np.promote_types(x.dtype, np.float32)
    scaled = np.rint(x.astype(wide) / _along(scale, x, axis, block).astype(wide))
    if zero_point is not None:
        scaled += _along(zero_point, x, axis, block).astype(wide)
    info = np.iinfo(out.dtype)
    np.copyto(out, np.clip(scaled, info.min, info.max), casting="unsafe")


@register(LayerKind.DEQUANTIZE)
def dequantize(attrs, inputs, outputs):
    x, scale = inputs[0], inputs[1]
    zero_point = inputs[2] if len(inputs) > 2 else None
    axis, block = int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
    values = x.astype(np.int64) if x.dtype.kind in "iu" else x.astype(np.float64)
    if zero_point is not None:
        values = values - _along(zero_point, x, axis, block).astype(values.dtype)
    np.copyto(outputs[0], values.astype(outputs[0].dtype) * _along(scale, x, axis, block), casting="unsafe")
