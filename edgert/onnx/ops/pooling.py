"""ONNX importers: MaxPool, AveragePool, LpPool and their Global variants → Pooling layers.

A global pool is a pooling whose kernel is the whole spatial extent (one output per channel).
"""

from __future__ import annotations

from edgert.errors import ModelError, UnsupportedError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind, PoolingType
from edgert.onnx.ops.conv import check_spatial_input, window_attrs
from edgert.onnx.registry import onnx_op

_MAX_POOL_TYPES = {DataType.FLOAT, DataType.HALF, DataType.DOUBLE, DataType.INT8, DataType.UINT8}


def _check_type(ctx, x, pooling: PoolingType) -> None:
    allowed = _MAX_POOL_TYPES if pooling == PoolingType.MAX else {DataType.FLOAT, DataType.HALF, DataType.DOUBLE}
    if x.dtype not in allowed:
        raise UnsupportedError(f"{ctx.where}: input type {x.dtype.value} is not supported for "
                               f"{pooling.value} pooling (expected {', '.join(sorted(d.value for d in allowed))})")


def _lp_order(ctx, attrs) -> float:
    p = float(attrs.get("p", 2))
    if p <= 0:
        raise ModelError(f"{ctx.where}: p={p} must be positive")
    return p


def _pool(ctx, pooling: PoolingType, extra: dict | None = None, num_outputs: int = 1):
    x = ctx.input(0)
    spatial = check_spatial_input(ctx, x)
    _check_type(ctx, x, pooling)
    attrs = ctx.attrs()
    if "kernel_shape" not in attrs:
        raise ModelError(f"{ctx.where}: attribute kernel_shape is required")
    kernel = [int(k) for k in attrs["kernel_shape"]]
    if len(kernel) != spatial or min(kernel) < 1:
        raise ModelError(f"{ctx.where}: kernel_shape {kernel} must hold {spatial} positive sizes for input "
                         f"{x.shape}")
    layer = window_attrs(ctx, attrs, x.shape[2:], kernel)
    layer.update(type=pooling, ceil_mode=bool(attrs.get("ceil_mode", 0)), **(extra or {}))
    return ctx.add(LayerKind.POOLING, [x], layer, num_outputs=num_outputs)


@onnx_op("MaxPool")
def max_pool(ctx, node):
    attrs = ctx.attrs()
    storage_order = int(attrs.get("storage_order", 0))
    if storage_order not in (0, 1):
        raise ModelError(f"{ctx.where}: storage_order={storage_order} must be 0 (row major) or 1 (column major)")
    wants_indices = len(node.output) > 1 and bool(node.output[1])
    extra = {"storage_order": storage_order} if wants_indices else None
    return _pool(ctx, PoolingType.MAX, extra, num_outputs=2 if wants_indices else 1)


@onnx_op("AveragePool")
def average_pool(ctx, node):
    include_pad = bool(ctx.attrs().get("count_include_pad", 0))
    return _pool(ctx, PoolingType.AVERAGE, {"count_include_pad": include_pad})


@onnx_op("LpPool")
def lp_pool(ctx, node):
    return _pool(ctx, PoolingType.LP, {"p": _lp_order(ctx, ctx.attrs())})


def _global_pool(ctx, pooling: PoolingType, extra: dict | None = None):
    x = ctx.input(0)
    spatial = check_spatial_input(ctx, x)
    _check_type(ctx, x, pooling)
    layer = {"type": pooling, "kernel": list(x.shape[2:]), "strides": [1] * spatial, "pads": [0] * 2 * spatial,
             "dilations": [1] * spatial, "ceil_mode": False, **(extra or {})}
    return ctx.add(LayerKind.POOLING, [x], layer)


@onnx_op("GlobalMaxPool")
def global_max_pool(ctx, node):
    return _global_pool(ctx, PoolingType.MAX)


@onnx_op("GlobalAveragePool")
def global_average_pool(ctx, node):
    return _global_pool(ctx, PoolingType.AVERAGE, {"count_include_pad": False})


@onnx_op("GlobalLpPool")
def global_lp_pool(ctx, node):
    return _global_pool(ctx, PoolingType.LP, {"p": _lp_order(ctx, ctx.attrs())})
