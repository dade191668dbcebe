"""CPU kernel: ElementWise (attrs: op), two inputs with NumPy broadcasting.

Integer semantics follow ONNX (C): Div truncates toward zero, Mod takes the divisor's sign and
FMod the dividend's; a zero integer divisor gives 0 instead of trapping. Pow's exponent may have
another type than the base; the result has the base's type. The prepare hook binds the ops that are
one NumPy ufunc (float Div included) to a single call on the layer's fixed arrays.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import ElementWiseOp as E, LayerKind
from edgert.kernels.registry import register, register_prepare


def _is_int(dtype) -> bool:
    return dtype.kind in "iu"


def _nonzero_divisor(b):
    return np.where(b == 0, b.dtype.type(1), b)


def _div(a, b, out):
    if not _is_int(out.dtype):
        np.divide(a, b, out=out)
        return
    divisor = _nonzero_divisor(b)
    quotient = np.floor_divide(a, divisor)
    if out.dtype.kind == "i":
        # floor → trunc: add one where the division is inexact and the operands' signs differ.
        inexact = np.remainder(a, divisor) != 0
        quotient = quotient + (inexact & ((a < 0) != (divisor < 0))).astype(quotient.dtype)
    np.copyto(out, np.where(b == 0, out.dtype.type(0), quotient), casting="unsafe")


# Float powers that have a much cheaper exact form (x**2 in decomposed LayerNorm and L2 norms).
_SCALAR_POWERS = {
    1.0: lambda a, out: np.copyto(out, a),
    2.0: lambda a, out: np.multiply(a, a, out=out),
    0.5: lambda a, out: np.sqrt(a, out=out),
}


def _pow(a, b, out):
    if _is_int(a.dtype) and _is_int(b.dtype):
        exponent = b.astype(a.dtype, copy=False)
        result = np.power(a, np.maximum(exponent, 0))
        # Negative integer exponents: C's pow(int, int) in double then truncated: 1, +-1 or 0.
        negative = np.broadcast_to(exponent < 0, result.shape)
        if negative.any():
            fraction = np.power(a.astype(np.float64), b.astype(np.float64))
            with np.errstate(all="ignore"):
                result = np.where(negative, np.trunc(np.nan_to_num(fraction)).astype(result.dtype), result)
        np.copyto(out, result, casting="unsafe")
    elif a.dtype == out.dtype and b.size == 1 and float(b.reshape(-1)[0]) in _SCALAR_POWERS:
        _SCALAR_POWERS[float(b.reshape(-1)[0])](a, out)
    elif a.dtype == b.dtype == out.dtype:
        np.power(a, b, out=out)
    else:
        np.copyto(out, np.power(a.astype(np.float64), b.astype(np.float64)), casting="unsafe")


def _mod(a, b, out):
    if _is_int(a.dtype):
        np.copyto(out, np.where(b == 0, a.dtype.type(0), np.mod(a, _nonzero_divisor(b))), casting="unsafe")
    else:
        np.mod(a, b, out=out)


def _fmod(a, b, out):
    if _is_int(a.dtype):
        np.copyto(out, np.where(b == 0, a.dtype.type(0), np.fmod(a, _nonzero_divisor(b))), casting="unsafe")
    else:
        np.fmod(a, b, out=out)


_UFUNCS = {
    E.SUM: np.add, E.SUB: np.subtract, E.PROD: np.multiply, E.MAX: np.maximum, E.MIN: np.minimum,
    E.EQUAL: np.equal, E.GREATER: np.greater, E.GREATER_EQUAL: np.greater_equal, E.LESS: np.less,
    E.LESS_EQUAL: np.less_equal, E.AND: np.logical_and, E.OR: np.logical_or, E.XOR: np.logical_xor,
}
_SPECIAL = {E.DIV: _div, E.POW: _pow, E.MOD: _mod, E.FMOD: _fmod}


def apply(op, a, b, out) -> None:
    """out = a <op> b (shared with fused kernels); safe when ``out`` aliases ``a`` or ``b``."""
    op = E(op)
    ufunc = _UFUNCS.get(op)
    if ufunc is not None:
        ufunc(a, b, out=out)
    else:
        _SPECIAL[op](a, b, out)


@register(LayerKind.ELEMENTWISE)
def elementwise(attrs, inputs, outputs):
    apply(attrs["op"], inputs[0], inputs[1], outputs[0])


@register_prepare(LayerKind.ELEMENTWISE)
def prepare_elementwise(attrs, inputs, outputs, workspace):
    op, out = E(attrs["op"]), outputs[0]
    ufunc = np.divide if op == E.DIV and not _is_int(out.dtype) else _UFUNCS.get(op)
    if ufunc is None:
        return None
    return functools.partial(ufunc, inputs[0], inputs[1], out=out)
