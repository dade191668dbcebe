"""Elementary functions NumPy lacks (erf) or computes unsafely (sigmoid, softplus), shared by kernels."""

from __future__ import annotations

import numpy as np

# Chebyshev expansion of erfc (Numerical Recipes, 3rd ed., Erf::erfccheb): |error| < 1e-15 in float64.
_ERFC_COEFFICIENTS = (
    -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3,
    -9.46595344482036e-4, 3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5,
    -1.624290004647e-6, 1.303655835580e-6, 1.5626441722e-8, -8.5238095915e-8, 6.529054439e-9,
    5.059343495e-9, -9.91364156e-10, -2.27365122e-10, 9.6467911e-11, 2.394038e-12,
    -6.886027e-12, 8.94487e-13, 3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15, -1.523e-15,
    -9.4e-17, 1.21e-16, -2.8e-17)


def erf(x: np.ndarray) -> np.ndarray:
    """erf of a float array, evaluated in float64 and returned in x's dtype."""
    xd = np.asarray(x, dtype=np.float64)
    z = np.abs(xd)
    t = 2.0 / (2.0 + z)
    ty = 4.0 * t - 2.0
    d = np.zeros_like(z)
    dd = np.zeros_like(z)
    for c in reversed(_ERFC_COEFFICIENTS[1:]):
        d, dd = ty * d - dd + c, d
    erfc = t * np.exp(-z * z + 0.5 * (_ERFC_COEFFICIENTS[0] + ty * d) - dd)
    return np.where(xd >= 0, 1.0 - erfc, erfc - 1.0).astype(np.asarray(x).dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number never overflows: split by sign.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def softplus(x: np.ndarray) -> np.ndarray:
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)
