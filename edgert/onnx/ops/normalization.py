"""ONNX importers: BatchNormalization → Scale; Instance/Layer/Group/MeanVariance normalization → Normalization;
LRN → LRN.

Per-channel parameters are reshaped to (C, 1, ..., 1) so they broadcast against (N, C, spatial...) inputs:
with NumPy when they are constants, with a Shuffle layer when they are computed.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.kinds import ElementWiseOp, LayerKind, UnaryOp
from edgert.onnx.context import ONNX_DTYPES
from edgert.onnx.registry import onnx_op


def _check_float(ctx, x) -> None:
    if not x.dtype.is_float:
        raise UnsupportedError(f"{ctx.where}: input type {x.dtype.value} is not supported (expected float16/32/64)")


def _reshape(ctx, value, shape):
    if value.is_const:
        return ctx.constant(value.const.reshape(shape), name=f"{value.name}_reshaped")
    return ctx.add(LayerKind.SHUFFLE, [value], {"first_perm": None, "reshape": list(shape), "second_perm": None})[0]


def channel_param(ctx, value, x, what: str, channels: int | None = None):
    """A per-channel (C,) parameter reshaped to broadcast along axis 1 of x, in x's type."""
    if value is None:
        return None
    channels = x.shape[1] if channels is None else channels
    if value.size != channels or len(value.shape) != 1:
        raise ShapeError(f"{ctx.where}: {what} {value.name!r} has shape {value.shape}, expected ({channels},)")
    if value.dtype != x.dtype:
        if not value.is_const:
            raise UnsupportedError(f"{ctx.where}: {what} is {value.dtype.value} but the input is {x.dtype.value}")
        value = ctx.constant(value.const.astype(x.dtype.numpy), name=f"{value.name}_cast")
    return _reshape(ctx, value, (channels,) + (1,) * (len(x.shape) - 2))


# -- BatchNormalization ----------------------------------------------------------------------------

def _batch_norm_constants(ctx, x, gamma, beta, mean, var, epsilon):
    scale = gamma.const.astype(np.float64) / np.sqrt(var.const.astype(np.float64) + epsilon)
    shift = beta.const.astype(np.float64) - mean.const.astype(np.float64) * scale
    dtype = x.dtype.numpy
    shape = scale.shape if scale.ndim > 1 else (scale.size,) + (1,) * (len(x.shape) - 2)
    return (ctx.constant(scale.astype(dtype).reshape(shape), name="bn_scale"),
            ctx.constant(shift.astype(dtype).reshape(shape), name="bn_shift"))


def _batch_norm_layers(ctx, x, gamma, beta, mean, var, epsilon):
    """scale = gamma / sqrt(var + eps), shift = beta - mean * scale, computed by layers (parameters not constant)."""
    def binary(op, a, b):
        return ctx.add(LayerKind.ELEMENTWISE, [a, b], {"op": op})[0]

    eps = ctx.constant(np.asarray(epsilon, dtype=var.dtype.numpy), name="bn_epsilon")
    std = ctx.add(LayerKind.UNARY, [binary(ElementWiseOp.SUM, var, eps)], {"op": UnaryOp.SQRT})[0]
    scale = binary(ElementWiseOp.DIV, gamma, std)
    shift = binary(ElementWiseOp.SUB, beta, binary(ElementWiseOp.PROD, mean, scale))
    if len(scale.shape) == 1:
        shape = (scale.shape[0],) + (1,) * (len(x.shape) - 2)
        scale, shift = _reshape(ctx, scale, shape), _reshape(ctx, shift, shape)
    return scale, shift


@onnx_op("BatchNormalization")
def batch_normalization(ctx, node):
    x = ctx.input(0)
    _check_float(ctx, x)
    attrs = ctx.attrs()
    if int(attrs.get("training_mode", 0)) or any(node.output[1:]):
        raise UnsupportedError(f"{ctx.where}: training mode (batch statistics, running mean/var outputs) is not "
                               "supported; export the model in inference mode (model.eval())")
    if len(x.shape) < 2:
        raise ShapeError(f"{ctx.where}: input {x.name!r} has shape {x.shape}; expected (N, C, ...)")
    params = [ctx.input(i) for i in range(1, 5)]
    channel_shape = (x.shape[1],) if int(attrs.get("spatial", 1)) else tuple(x.shape[1:])
    for value, what in zip(params, ("scale", "B", "mean", "var")):
        if tuple(value.shape) != channel_shape:
            raise ShapeError(f"{ctx.where}: {what} {value.name!r} has shape {value.shape}, expected {channel_shape}")
    epsilon = float(attrs.get("epsilon", 1e-5))
    if all(v.is_const for v in params):
        scale, shift = _batch_norm_constants(ctx, x, *params, epsilon)
    else:
        scale, shift = _batch_norm_layers(ctx, x, *params, epsilon)
    return ctx.add(LayerKind.SCALE, [x, scale, shift], {"axis": 1})


# -- Normalization family --------------------------------------------------------------------------

def _normalize(ctx, x, axes, epsilon, scale=None, bias=None, groups: int = 1, stats_dtype=None, num_outputs=1):
    attrs = {"axes": list(axes), "epsilon": float(epsilon), "groups": int(groups)}
    if stats_dtype is not None:
        attrs["stats_dtype"] = stats_dtype
    inputs = [x, scale, bias]
    while inputs[-1] is None:
        inputs.pop()
    return ctx.add(LayerKind.NORMALIZATION, inputs, attrs, num_outputs=num_outputs)


@onnx_op("InstanceNormalization")
def instance_normalization(ctx, node):
    x = ctx.input(0)
    _check_float(ctx, x)
    if len(x.shape) < 3:
        raise ShapeError(f"{ctx.where}: input {x.name!r} has shape {x.shape}; expected (N, C, spatial...)")
    scale = channel_param(ctx, ctx.input(1), x, "scale")
    bias = channel_param(ctx, ctx.input(2), x, "B")
    return _normalize(ctx, x, range(2, len(x.shape)), ctx.attrs().get("epsilon", 1e-5), scale, bias)


def _stash_dtype(ctx, attrs):
    stash = int(attrs.get("stash_type", 1))
    if stash not in ONNX_DTYPES or not ONNX_DTYPES[stash].is_float:
        raise UnsupportedError(f"{ctx.where}: stash_type {stash} is not supported (expected a float type)")
    return ONNX_DTYPES[stash]


@onnx_op("LayerNormalization")
def layer_normalization(ctx, node):
    x = ctx.input(0)
    _check_float(ctx, x)
    attrs = ctx.attrs()
    rank = len(x.shape)
    axis = int(attrs.get("axis", -1))
    if not -rank <= axis < rank:
        raise ModelError(f"{ctx.where}: axis {axis} is out of range for input rank {rank}")
    axis %= rank
    scale, bias = ctx.input(1), ctx.input(2, required=False)
    for value, what in ((scale, "Scale"), (bias, "B")):
        if value is not None and value.dtype != x.dtype:
            raise ModelError(f"{ctx.where}: {what} is {value.dtype.value} but X is {x.dtype.value}")
    wants_stats = any(node.output[1:])
    stats_dtype = _stash_dtype(ctx, attrs)
    return _normalize(ctx, x, range(axis, rank), attrs.get("epsilon", 1e-5), scale, bias,
                      stats_dtype=stats_dtype if wants_stats else None, num_outputs=3 if wants_stats else 1)


def _group_param(ctx, value, x, groups: int, what: str):
    """GroupNormalization's scale/bias: per channel (opset 21), or per group (opset 18, repeated over its channels)."""
    channels = x.shape[1]
    if tuple(value.shape) == (channels,):
        return channel_param(ctx, value, x, what)
    if tuple(value.shape) == (groups,) and ctx.opset < 21:
        if not value.is_const:
            raise UnsupportedError(f"{ctx.where}: a computed per-group {what} (opset 18 semantics) is not "
                                   "supported; make it a constant or use opset 21 per-channel parameters")
        repeated = ctx.constant(np.repeat(value.const, channels // groups), name=f"{value.name}_per_channel")
        return channel_param(ctx, repeated, x, what)
    expected = f"({channels},)" + (f" or ({groups},)" if ctx.opset < 21 else "")
    raise ShapeError(f"{ctx.where}: {what} {value.name!r} has shape {value.shape}, expected {expected}")


@onnx_op("GroupNormalization")
def group_normalization(ctx, node):
    x = ctx.input(0)
    _check_float(ctx, x)
    attrs = ctx.attrs()
    if "num_groups" not in attrs:
        raise ModelError(f"{ctx.where}: attribute num_groups is required")
    groups = int(attrs["num_groups"])
    if len(x.shape) < 3 or groups < 1 or x.shape[1] % groups:
        raise ShapeError(f"{ctx.where}: input {x.name!r} of shape {x.shape} does not split into {groups} channel "
                         "groups; expected (N, C, spatial...) with C divisible by num_groups")
    _stash_dtype(ctx, attrs)
    scale = _group_param(ctx, ctx.input(1), x, groups, "scale")
    bias = _group_param(ctx, ctx.input(2), x, groups, "bias")
    return _normalize(ctx, x, range(2, len(x.shape)), attrs.get("epsilon", 1e-5), scale, bias, groups=groups)


@onnx_op("MeanVarianceNormalization")
def mean_variance_normalization(ctx, node):
    x = ctx.input(0)
    _check_float(ctx, x)
    rank = len(x.shape)
    axes = [int(a) for a in ctx.attrs().get("axes", [0, 2, 3])]
    if any(not -rank <= a < rank for a in axes):
        raise ModelError(f"{ctx.where}: axes {axes} are out of range for input rank {rank}")
    return _normalize(ctx, x, sorted({a % rank for a in axes}), 1e-9)


@onnx_op("LRN")
def lrn(ctx, node):
    x = ctx.input(0)
    _check_float(ctx, x)
    attrs = ctx.attrs()
    if "size" not in attrs or int(attrs["size"]) < 1:
        raise ModelError(f"{ctx.where}: attribute size (a positive odd window length) is required")
    layer = {"size": int(attrs["size"]), "alpha": float(attrs.get("alpha", 1e-4)),
             "beta": float(attrs.get("beta", 0.75)), "bias": float(attrs.get("bias", 1.0))}
    return ctx.add(LayerKind.LRN, [x], layer)
