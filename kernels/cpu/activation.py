"""CPU kernel: Activation (attrs: type, alpha, beta).

The prepare hook binds the transcendental activations (GELU, SiLU, Mish, HardSwish, sigmoid...) of float32
arrays to one native pass (native.bind_program), the others (ReLU, Clip, Tanh) to one or a few ufunc
calls on fixed arrays; ``bind_activation`` is shared with fused epilogues.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from edgert.ir.kinds import ActivationType as A, LayerKind
from edgert.kernels.cpu import native
from edgert.kernels.cpu._math import clip_ufunc, erf, sigmoid, softplus
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


def _exp_minus_one(x, t):
    # exp(x) - 1 of the non-positive part, as onnxruntime and ONNX's reference compute it (NumPy's
    # expm1 is an order of magnitude slower than exp).
    result = np.exp(np.minimum(x, t(0)))
    result -= t(1)
    return result


def _leaky_relu(x, a, t):
    # For alpha <= 1, max(x, alpha*x) picks x for x >= 0 and alpha*x below; for alpha > 1, min does.
    scaled = x * t(a)
    return np.maximum(x, scaled, out=scaled) if a <= 1 else np.minimum(x, scaled, out=scaled)


def _hard_sigmoid(x, a, b, t):
    result = x * t(a)
    result += t(b)
    return clip_ufunc(result, t(0), t(1), out=result)


def _hard_swish(x, t):
    result = _hard_sigmoid(x, 1 / 6, 0.5, t)
    result *= x
    return result


def _gelu_erf(x, t):
    result = erf(x * t(1 / math.sqrt(2)))
    result += t(1)
    result *= x
    result *= t(0.5)
    return result


def _gelu_tanh(x, t):
    inner = x * x
    inner *= t(0.044715)
    inner += t(1)
    inner *= x
    inner *= t(math.sqrt(2 / math.pi))
    result = np.tanh(inner, out=inner)
    result += t(1)
    result *= x
    result *= t(0.5)
    return result


# type -> f(x, alpha, beta, scalar type); every formula keeps x's dtype and never writes into x.
_FORMULAS = {
    A.RELU: lambda x, a, b, t: np.maximum(x, t(0)),
    A.SIGMOID: lambda x, a, b, t: sigmoid(x),
    A.TANH: lambda x, a, b, t: np.tanh(x),
    A.LEAKY_RELU: lambda x, a, b, t: _leaky_relu(x, a, t),
    A.ELU: lambda x, a, b, t: np.where(x > 0, x, t(a) * _exp_minus_one(x, t)),
    A.SELU: lambda x, a, b, t: t(b) * np.where(x > 0, x, t(a) * _exp_minus_one(x, t)),
    A.CELU: lambda x, a, b, t: np.maximum(x, t(0)) + np.minimum(t(0), t(a) * _exp_minus_one(x / t(a), t)),
    A.SOFTSIGN: lambda x, a, b, t: x / (t(1) + np.abs(x)),
    A.SOFTPLUS: lambda x, a, b, t: softplus(x),
    A.CLIP: lambda x, a, b, t: np.minimum(np.maximum(x, t(a)), t(b)),
    A.HARD_SIGMOID: lambda x, a, b, t: _hard_sigmoid(x, a, b, t),
    A.HARD_SWISH: lambda x, a, b, t: _hard_swish(x, t),
    A.THRESHOLDED_RELU: lambda x, a, b, t: np.where(x > t(a), x, t(0)),
    A.GELU_ERF: lambda x, a, b, t: _gelu_erf(x, t),
    A.GELU_TANH: lambda x, a, b, t: _gelu_tanh(x, t),
    A.SWISH: lambda x, a, b, t: x * sigmoid(x),
    A.MISH: lambda x, a, b, t: x * np.tanh(softplus(x)),
}


def _relu_into(x, a, b, out):
    if out.dtype.kind == "f":
        clip_ufunc(x, out.dtype.type(0), out.dtype.type(np.inf), out=out)  # ~3x faster than maximum
    else:
        np.maximum(x, out.dtype.type(0), out=out)


def _clip_into(x, a, b, out):
    t = out.dtype.type
    if a <= b:
        clip_ufunc(x, t(a), t(b), out=out)
    else:  # ONNX: every element becomes max when min > max
        np.minimum(np.maximum(x, t(a)), t(b), out=out)


def _sigmoid_into(x, a, b, out):
    sigmoid(x, out=out)


def _tanh_into(x, a, b, out):
    np.tanh(x, out=out)


# The hot activations of CNNs and transformers write straight into the output (no temporaries).
# Each is safe when the output aliases the input (in-place execution).
_INTO = {A.RELU: _relu_into, A.CLIP: _clip_into, A.SIGMOID: _sigmoid_into, A.TANH: _tanh_into}


def activate(kind, x: np.ndarray, alpha: float = 0.0, beta: float = 0.0) -> np.ndarray:
    """The activation ``kind`` of ``x`` (shared with fused kernels and the DLA simulator)."""
    kind = A(kind)
    into = _INTO.get(kind)
    if into is None:
        return _FORMULAS[kind](x, alpha, beta, x.dtype.type)
    out = np.empty_like(x)
    into(x, alpha, beta, out)
    return out


@register(LayerKind.ACTIVATION)
def activation(attrs, inputs, outputs):
    kind, x, out = A(attrs["type"]), inputs[0], outputs[0]
    alpha, beta = attrs.get("alpha", 0.0), attrs.get("beta", 0.0)
    into = _INTO.get(kind)
    if into is not None and x.dtype == out.dtype:
        into(x, alpha, beta, out)
    else:
        np.copyto(out, activate(kind, x, alpha, beta), casting="unsafe")


# activations the native module computes in one pass, 2-7x faster than their NumPy passes (float32); ReLU, Clip
# and Tanh are single NumPy ufunc passes already as fast
NATIVE_TYPES = frozenset({A.SIGMOID, A.LEAKY_RELU, A.ELU, A.HARD_SIGMOID, A.HARD_SWISH, A.GELU_ERF, A.GELU_TANH,
                          A.SWISH, A.MISH})


def bind_activation(attrs: dict, x: np.ndarray, out: np.ndarray):
    """run() computing the activation ``attrs`` of the fixed array ``x`` into ``out`` (may alias ``x``)."""
    kind = A(attrs["type"])
    alpha, beta = attrs.get("alpha", 0.0), attrs.get("beta", 0.0)
    if kind in NATIVE_TYPES:
        fused = native.bind_program([{"kind": "Activation", "attrs": attrs, "args": [0]}], [x], out)
        if fused is not None:
            return fused
    if x.dtype == out.dtype and out.dtype.kind == "f":
        t = out.dtype.type
        if kind == A.RELU:
            return functools.partial(clip_ufunc, x, t(0), t(np.inf), out)
        if kind == A.CLIP and alpha <= beta:
            return functools.partial(clip_ufunc, x, t(alpha), t(beta), out)
        if kind == A.SIGMOID:   # sigmoid()'s passes, bound (execute() already ignores the overflow of exp)
            calls = [functools.partial(np.negative, x, out), functools.partial(np.exp, out, out),
                     functools.partial(np.add, out, t(1), out), functools.partial(np.reciprocal, out, out)]
            return sequence(calls)
        if kind in _INTO:
            return functools.partial(_INTO[kind], x, alpha, beta, out)
    return functools.partial(activation, attrs, [x], [out])


@register_prepare(LayerKind.ACTIVATION)
def prepare_activation(attrs, inputs, outputs, workspace):
    return bind_activation(attrs, inputs[0], outputs[0])
