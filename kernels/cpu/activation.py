"""CPU kernel: Activation (attrs: type, alpha, beta)."""

from __future__ import annotations

import math

import numpy as np

from edgert.ir.kinds import ActivationType as A, LayerKind
from edgert.kernels.cpu._math import erf, sigmoid, softplus
from edgert.kernels.registry import register


def _expm1_neg(x, t):
    return np.expm1(np.minimum(x, t(0)))


# type -> f(x, alpha, beta, scalar type); every formula keeps x's dtype.
_FORMULAS = {
    A.RELU: lambda x, a, b, t: np.maximum(x, t(0)),
    A.SIGMOID: lambda x, a, b, t: sigmoid(x),
    A.TANH: lambda x, a, b, t: np.tanh(x),
    A.LEAKY_RELU: lambda x, a, b, t: np.where(x >= 0, x, x * t(a)),
    A.ELU: lambda x, a, b, t: np.where(x > 0, x, t(a) * _expm1_neg(x, t)),
    A.SELU: lambda x, a, b, t: t(b) * np.where(x > 0, x, t(a) * _expm1_neg(x, t)),
    A.CELU: lambda x, a, b, t: np.maximum(x, t(0)) + np.minimum(t(0), t(a) * np.expm1(np.minimum(x, t(0)) / t(a))),
    A.SOFTSIGN: lambda x, a, b, t: x / (t(1) + np.abs(x)),
    A.SOFTPLUS: lambda x, a, b, t: softplus(x),
    A.CLIP: lambda x, a, b, t: np.minimum(np.maximum(x, t(a)), t(b)),
    A.HARD_SIGMOID: lambda x, a, b, t: np.clip(x * t(a) + t(b), t(0), t(1)),
    A.HARD_SWISH: lambda x, a, b, t: x * np.clip(x * t(1 / 6) + t(0.5), t(0), t(1)),
    A.THRESHOLDED_RELU: lambda x, a, b, t: np.where(x > t(a), x, t(0)),
    A.GELU_ERF: lambda x, a, b, t: t(0.5) * x * (t(1) + erf(x * t(1 / math.sqrt(2)))),
    A.GELU_TANH: lambda x, a, b, t: t(0.5) * x * (t(1) + np.tanh(t(math.sqrt(2 / math.pi)) * (x + t(0.044715) * x ** 3))),
    A.SWISH: lambda x, a, b, t: x * sigmoid(x),
    A.MISH: lambda x, a, b, t: x * np.tanh(softplus(x)),
}


def activate(kind, x: np.ndarray, alpha: float = 0.0, beta: float = 0.0) -> np.ndarray:
    """The activation ``kind`` of ``x`` (shared with fused kernels and the DLA simulator)."""
    return _FORMULAS[A(kind)](x, alpha, beta, x.dtype.type)


@register(LayerKind.ACTIVATION)
def activation(attrs, inputs, outputs):
    result = activate(attrs["type"], inputs[0], attrs.get("alpha", 0.0), attrs.get("beta", 0.0))
    np.copyto(outputs[0], result, casting="unsafe")
