"""ONNX importers: activations (Relu, Sigmoid, Gelu, Clip, ...) → Activation layers, PRelu → ParametricReLU.

Clip with constant float bounds is one Activation(clip); integer inputs, runtime bounds or a single
bound become ElementWise max/min layers (an omitted bound is no bound).
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.kinds import ActivationType as A, ElementWiseOp, LayerKind
from edgert.onnx.registry import onnx_op

_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875

# ONNX op -> (activation type, {edgert attr: (ONNX attr, default)}).
_ACTIVATIONS = {
    "Relu": (A.RELU, {}),
    "Sigmoid": (A.SIGMOID, {}),
    "Tanh": (A.TANH, {}),
    "Softplus": (A.SOFTPLUS, {}),
    "Softsign": (A.SOFTSIGN, {}),
    "HardSwish": (A.HARD_SWISH, {}),
    "Mish": (A.MISH, {}),
    "LeakyRelu": (A.LEAKY_RELU, {"alpha": ("alpha", 0.01)}),
    "Elu": (A.ELU, {"alpha": ("alpha", 1.0)}),
    "Celu": (A.CELU, {"alpha": ("alpha", 1.0)}),
    "ThresholdedRelu": (A.THRESHOLDED_RELU, {"alpha": ("alpha", 1.0)}),
    "HardSigmoid": (A.HARD_SIGMOID, {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}),
    "Selu": (A.SELU, {"alpha": ("alpha", _SELU_ALPHA), "beta": ("gamma", _SELU_GAMMA)}),
}
# Activations defined for integer tensors too; the rest take float tensors only.
_INTEGER_OK = {A.RELU}


def _activation(ctx, kind: A, attrs: dict):
    x = ctx.input(0)
    if not x.dtype.is_float and kind not in _INTEGER_OK:
        raise UnsupportedError(f"{ctx.where}: input {x.name!r} has type {x.dtype.value}; this activation "
                               "takes float16/float32/float64 tensors")
    return ctx.add(LayerKind.ACTIVATION, [x], {"type": kind, **attrs})


@onnx_op(*_ACTIVATIONS)
def simple_activation(ctx, node):
    kind, params = _ACTIVATIONS[node.op_type]
    given = ctx.attrs()
    # ONNX float attributes are float32, defaults included (LeakyRelu's 0.01 is 0.01f).
    return _activation(ctx, kind, {name: float(np.float32(given.get(onnx_name, default)))
                                   for name, (onnx_name, default) in params.items()})


@onnx_op("Gelu")
def gelu(ctx, node):
    approximate = ctx.attrs().get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    kinds = {"none": A.GELU_ERF, "tanh": A.GELU_TANH}
    if approximate not in kinds:
        raise ModelError(f"{ctx.where}: approximate={approximate!r}; expected 'none' or 'tanh'")
    return _activation(ctx, kinds[approximate], {})


def _clip_bounds(ctx, x):
    """(min, max) as Values of x's type, None for an omitted bound."""
    if ctx.opset < 11:
        attrs = ctx.attrs()
        return [ctx.constant(np.array(attrs[name], x.dtype.numpy)) if name in attrs else None
                for name in ("min", "max")]
    bounds = [ctx.input(i, required=False) for i in (1, 2)]
    for bound in bounds:
        if bound is not None and (bound.dtype != x.dtype or bound.size != 1):
            raise ModelError(f"{ctx.where}: bound {bound.name!r} is {bound.dtype.value} {bound.shape}; expected a "
                             f"scalar of the input's type {x.dtype.value}")
    # A constant one-element bound of shape (1,) becomes a scalar, so it never adds a dim to x.
    return [ctx.constant(b.const.reshape(())) if b is not None and b.is_const else b for b in bounds]


@onnx_op("Clip")
def clip(ctx, node):
    x = ctx.input(0)
    low, high = _clip_bounds(ctx, x)
    if x.dtype.is_float and low is not None and high is not None and low.is_const and high.is_const:
        return ctx.add(LayerKind.ACTIVATION, [x], {"type": A.CLIP, "alpha": float(low.const.reshape(-1)[0]),
                                                   "beta": float(high.const.reshape(-1)[0])})
    y = x
    if low is not None:
        (y,) = ctx.add(LayerKind.ELEMENTWISE, [y, low], {"op": ElementWiseOp.MAX})
    if high is not None:
        (y,) = ctx.add(LayerKind.ELEMENTWISE, [y, high], {"op": ElementWiseOp.MIN})
    return [y]


@onnx_op("PRelu")
def prelu(ctx, node):
    x, slope = ctx.input(0), ctx.input(1)
    if slope.dtype != x.dtype:
        raise ModelError(f"{ctx.where}: slope {slope.name!r} has type {slope.dtype.value}, the input "
                         f"{x.dtype.value}; they must match")
    try:
        fits = np.broadcast_shapes(x.shape, slope.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        hint = f"; a per-channel slope has shape ({x.shape[1]}, 1, 1)" if len(x.shape) == 4 else ""
        raise ShapeError(f"{ctx.where}: slope {slope.name!r} of shape {slope.shape} does not broadcast to the "
                         f"input's shape {x.shape} (NumPy rules, trailing dims first){hint}")
    return ctx.add(LayerKind.PARAMETRIC_RELU, [x, slope])
