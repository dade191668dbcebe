"""CPU kernel: ElementWise (attrs: op), two inputs with NumPy broadcasting."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import ElementWiseOp as E, LayerKind
from edgert.kernels.registry import register


def _div(a, b, out):
    if np.issubdtype(out.dtype, np.integer):
        # ONNX integer Div truncates toward zero (C semantics), NumPy's // floors.
        np.copyto(out, np.trunc(np.divide(a, np.where(b == 0, 1, b))).astype(out.dtype), casting="unsafe")
    else:
        np.divide(a, b, out=out)


def _pow(a, b, out):
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        np.copyto(out, np.power(a, b.astype(a.dtype)), casting="unsafe")
    else:
        np.copyto(out, np.power(a.astype(np.float64) if a.dtype != b.dtype else a, b), casting="unsafe")


def _mod(a, b, out):
    np.copyto(out, np.mod(a, np.where(b == 0, 1, b)) if np.issubdtype(a.dtype, np.integer) else np.mod(a, b),
              casting="unsafe")


def _fmod(a, b, out):
    np.copyto(out, np.fmod(a, np.where(b == 0, 1, b)) if np.issubdtype(a.dtype, np.integer) else np.fmod(a, b),
              casting="unsafe")


_UFUNCS = {
    E.SUM: np.add, E.SUB: np.subtract, E.PROD: np.multiply, E.MAX: np.maximum, E.MIN: np.minimum,
    E.EQUAL: np.equal, E.GREATER: np.greater, E.GREATER_EQUAL: np.greater_equal, E.LESS: np.less,
    E.LESS_EQUAL: np.less_equal, E.AND: np.logical_and, E.OR: np.logical_or, E.XOR: np.logical_xor,
}
_SPECIAL = {E.DIV: _div, E.POW: _pow, E.MOD: _mod, E.FMOD: _fmod}


def apply(op, a, b, out) -> None:
    """out = a <op> b (shared with fused kernels)."""
    op = E(op)
    ufunc = _UFUNCS.get(op)
    if ufunc is not None:
        ufunc(a, b, out=out)
    else:
        _SPECIAL[op](a, b, out)


@register(LayerKind.ELEMENTWISE)
def elementwise(attrs, inputs, outputs):
    apply(attrs["op"], inputs[0], inputs[1], outputs[0])
