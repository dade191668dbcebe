"""Elementary functions NumPy lacks (erf) or computes unsafely (sigmoid, softplus), shared by kernels."""

from __future__ import annotations

import functools

import numpy as np

from edgert.kernels.cpu.prepared import sequence

try:  # the clip ufunc itself: np.clip's Python wrapper costs more than the work on small tensors
    from numpy._core.umath import clip as clip_ufunc
except ImportError:  # NumPy 1.x
    try:
        from numpy.core.umath import clip as clip_ufunc
    except ImportError:
        clip_ufunc = np.clip

# Chebyshev expansion of erfc (Numerical Recipes, 3rd ed., Erf::erfccheb): |error| < 1e-15 in float64.
_ERFC_COEFFICIENTS = (
    -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3,
    -9.46595344482036e-4, 3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5,
    -1.624290004647e-6, 1.303655835580e-6, 1.5626441722e-8, -8.5238095915e-8, 6.529054439e-9,
    5.059343495e-9, -9.91364156e-10, -2.27365122e-10, 9.6467911e-11, 2.394038e-12,
    -6.886027e-12, 8.94487e-13, 3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15, -1.523e-15,
    -9.4e-17, 1.21e-16, -2.8e-17)

# Rational minimax approximation of erf on [-4, 4] in float32 (Eigen's generic_fast_erf_float):
# erf(x) = x * P(x^2) / Q(x^2), relative error < 5e-7; |x| > 4 rounds to +-1 in float32.
_ERF32_NUMERATOR = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                    -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                    -1.60960333262415e-02)
_ERF32_DENOMINATOR = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                      -7.37332916720468e-03, -1.42647390514189e-02)


def _erf64(x: np.ndarray) -> np.ndarray:
    z = np.abs(x)
    t = 2.0 / (2.0 + z)
    ty = 4.0 * t - 2.0
    d = np.zeros_like(z)
    dd = np.zeros_like(z)
    for c in reversed(_ERFC_COEFFICIENTS[1:]):
        d, dd = ty * d - dd + c, d
    erfc = t * np.exp(-z * z + 0.5 * (_ERFC_COEFFICIENTS[0] + ty * d) - dd)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


_CHUNK = 32768  # elements per pass of a multi-pass formula: its temporaries stay in the L2 cache


def _horner_into(x2: np.ndarray, coefficients, acc: np.ndarray) -> np.ndarray:
    np.multiply(x2, np.float32(coefficients[0]), out=acc)
    np.add(acc, np.float32(coefficients[1]), out=acc)
    for c in coefficients[2:]:
        np.multiply(acc, x2, out=acc)
        np.add(acc, np.float32(c), out=acc)
    return acc


def _erf32_into(x: np.ndarray, out: np.ndarray) -> None:
    """erf of flat float32 ``x`` into flat float32 ``out`` (may alias), a cache-sized chunk at a time."""
    size = min(_CHUNK, x.size)
    scratch = np.empty((4, size), np.float32)
    for start in range(0, x.size, _CHUNK):
        stop = min(start + _CHUNK, x.size)
        clipped, x2, numerator, denominator = scratch[:, :stop - start]
        clip_ufunc(x[start:stop], np.float32(-4.0), np.float32(4.0), out=clipped)
        np.multiply(clipped, clipped, out=x2)
        _horner_into(x2, _ERF32_NUMERATOR, numerator)
        np.multiply(numerator, clipped, out=numerator)
        np.divide(numerator, _horner_into(x2, _ERF32_DENOMINATOR, denominator), out=out[start:stop])


def bind_erf32(x: np.ndarray, out: np.ndarray, workspace):
    """run() writing erf of the fixed flat float32 ``x`` into ``out`` (may alias), for a prepare hook.

    The rational function of _erf32_into, with each polynomial summed as powers of x^2 times its
    coefficients in one matrix-vector product instead of a Horner loop: 13 NumPy calls per chunk, not 24.
    """
    size = min(_CHUNK, x.size)
    scratch = workspace.scratch((9, size), np.float32)
    numerator = np.array(_ERF32_NUMERATOR[-2::-1], np.float32)      # for x^2, x^4, ... x^12
    denominator = np.array(_ERF32_DENOMINATOR[-2::-1], np.float32)  # for x^2 ... x^8
    calls = []
    for start in range(0, x.size, _CHUNK):
        stop = min(start + _CHUNK, x.size)
        block = scratch[:, :stop - start]
        clipped, top, bottom, powers = block[0], block[1], block[2], block[3:]   # powers: x^2 ... x^12
        calls += [functools.partial(clip_ufunc, x[start:stop], np.float32(-4.0), np.float32(4.0), clipped),
                  functools.partial(np.multiply, clipped, clipped, powers[0]),
                  functools.partial(np.multiply, powers[0], powers[0], powers[1])]
        calls += [functools.partial(np.multiply, powers[low], powers[high], powers[low + high + 1])
                  for low, high in ((0, 1), (1, 1), (0, 3), (1, 3))]   # x^6 = x^2 x^4, x^8, x^10, x^12
        calls += [functools.partial(np.matmul, numerator, powers, top),
                  functools.partial(np.add, top, np.float32(_ERF32_NUMERATOR[-1]), top),
                  functools.partial(np.multiply, top, clipped, top),
                  functools.partial(np.matmul, denominator, powers[:4], bottom),
                  functools.partial(np.add, bottom, np.float32(_ERF32_DENOMINATOR[-1]), bottom),
                  functools.partial(np.divide, top, bottom, out[start:stop])]
    return sequence(calls)


def erf(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """erf of a float array in x's dtype (or into ``out``): float64 to ~1e-15, float32/float16 to
    float32 precision."""
    x = np.asarray(x)
    if x.dtype == np.float32 and out is not None and out.dtype == np.float32 and out.flags.c_contiguous:
        _erf32_into(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
        return out
    if x.dtype.kind == "f" and x.dtype != np.float64:
        result = np.empty(x.shape, np.float32)
        _erf32_into(np.ascontiguousarray(x, dtype=np.float32).reshape(-1), result.reshape(-1))
    else:
        result = _erf64(x.astype(np.float64, copy=False))
    if out is None:
        return result.astype(x.dtype, copy=False)
    np.copyto(out, result, casting="unsafe")
    return out


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)); exp overflowing to inf gives the right limit 0, so no sign split is needed."""
    with np.errstate(over="ignore"):
        out = np.negative(x, out=out)
        np.exp(out, out=out)
        np.add(out, out.dtype.type(1), out=out)
        return np.reciprocal(out, out=out)


def log1p_small(e: np.ndarray) -> np.ndarray:
    """log(1 + e) for e >= 0, accurate for tiny e (NumPy's own log1p is ~10x slower than log).

    With u = 1 + e rounded, log(u) - ((u - 1) - e) / u corrects the rounding of u (Goldberg's trick);
    where u rounds to 1 the result is e itself.
    """
    u = e + e.dtype.type(1)
    correction = (u - e.dtype.type(1)) - e
    correction /= u
    result = np.log(u)
    result -= correction
    return result


def softplus(x: np.ndarray) -> np.ndarray:
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) never overflows.
    return (np.maximum(x, 0) + log1p_small(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)
