"""CPU kernel: Unary (attrs: op; IsInf also detect_positive, detect_negative).

The prepare hook binds the ops that are one NumPy ufunc (and float32 Erf) to the layer's fixed arrays.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind, UnaryOp as U
from edgert.kernels.cpu import native
from edgert.kernels.cpu._math import bind_erf32, erf
from edgert.kernels.registry import register, register_prepare

# Ops NumPy computes directly into the output. Round is np.rint: halves go to the even neighbour.
_UFUNCS = {
    U.EXP: np.exp, U.LOG: np.log, U.SQRT: np.sqrt, U.RECIP: np.reciprocal, U.ABS: np.absolute,
    U.NEG: np.negative, U.SIN: np.sin, U.COS: np.cos, U.TAN: np.tan, U.ASIN: np.arcsin, U.ACOS: np.arccos,
    U.ATAN: np.arctan, U.SINH: np.sinh, U.COSH: np.cosh, U.ASINH: np.arcsinh, U.ACOSH: np.arccosh,
    U.ATANH: np.arctanh, U.CEIL: np.ceil, U.FLOOR: np.floor, U.ROUND: np.rint, U.NOT: np.logical_not,
    U.SIGN: np.sign, U.ISNAN: np.isnan,
}


def _recip(x, attrs, out):
    if out.dtype.kind in "iu":
        # Integer reciprocal is 1/x truncated: 1, -1 or 0 (and 0 for x = 0 rather than a trap).
        np.copyto(out, np.where(np.abs(x) == 1, x, x.dtype.type(0)), casting="unsafe")
    else:
        np.reciprocal(x, out=out)


def _erf(x, attrs, out):
    erf(x, out=out)


def _isinf(x, attrs, out):
    positive, negative = attrs.get("detect_positive", True), attrs.get("detect_negative", True)
    if x.dtype.kind != "f":
        out.fill(False)
    elif positive and negative:
        np.isinf(x, out=out)
    elif positive:
        np.equal(x, np.inf, out=out)
    elif negative:
        np.equal(x, -np.inf, out=out)
    else:
        out.fill(False)


def _integer_identity(ufunc):
    """Ceil, Floor and Round of integers are the integers themselves."""
    def kernel(x, attrs, out):
        if x.dtype.kind in "iub":
            np.copyto(out, x)
        else:
            ufunc(x, out=out)
    return kernel


_SPECIAL = {U.RECIP: _recip, U.ERF: _erf, U.ISINF: _isinf, U.CEIL: _integer_identity(np.ceil),
            U.FLOOR: _integer_identity(np.floor), U.ROUND: _integer_identity(np.rint)}


def apply(op, x, out, attrs=None) -> None:
    """out = op(x) (shared with fused kernels); safe when ``out`` aliases ``x``."""
    op = U(op)
    special = _SPECIAL.get(op)
    if special is not None:
        special(x, attrs or {}, out)
    elif x.dtype == out.dtype or op == U.ISNAN:
        _UFUNCS[op](x, out=out)
    else:
        np.copyto(out, _UFUNCS[op](x), casting="unsafe")


@register(LayerKind.UNARY)
def unary(attrs, inputs, outputs):
    apply(attrs["op"], inputs[0], outputs[0], attrs)


@register_prepare(LayerKind.UNARY)
def prepare_unary(attrs, inputs, outputs, workspace):
    op, x, out = U(attrs["op"]), inputs[0], outputs[0]
    if op == U.ERF and x.dtype == out.dtype == np.float32:   # one native pass, else NumPy's 13 calls per chunk
        fused = native.bind_program([{"kind": "Unary", "attrs": {"op": "erf"}, "args": [0]}], [x], out)
        return fused or bind_erf32(x.reshape(-1), out.reshape(-1), workspace)
    if op in _SPECIAL or op not in _UFUNCS or x.dtype != out.dtype:
        return None
    return functools.partial(_UFUNCS[op], x, out)
