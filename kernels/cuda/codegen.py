"""CUDA C code generation helpers: C types of plan dtypes, index arithmetic with baked shapes, and
the per-element instruction set (Activation, ElementWise, Unary, Scale, ParametricReLU, Select, Cast)
shared by PointWise kernels and the epilogues of convolution and matrix kernels.

Semantics follow the CPU reference kernels (``kernels/cpu``): integer Div truncates and gives 0 for
a zero divisor, Mod takes the divisor's sign, Round is half-to-even, ReLU/Clip pass NaN through.
float16 is stored as ``half_t`` and computed in float.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import ActivationType as A, ElementWiseOp as E, LayerKind, UnaryOp as U

CTYPES = {"float32": "float", "float16": "half_t", "float64": "double", "int8": "i8", "uint8": "u8",
          "int16": "i16", "uint16": "u16", "int32": "i32", "uint32": "u32", "int64": "i64", "uint64": "u64",
          "bool": "bool"}
_INT_RANK = {"bool": 0, "i8": 1, "u8": 1, "i16": 2, "u16": 2, "i32": 3, "u32": 3, "i64": 4, "u64": 4}


def ctype(dtype: str) -> str:
    try:
        return CTYPES[str(dtype)]
    except KeyError:
        raise UnsupportedError(f"no CUDA type for dtype {dtype!r}") from None


def compute_ctype(dtype: str) -> str:
    return "float" if str(dtype) == "float16" else ctype(dtype)


def load(pointer: str, index: str, dtype: str) -> str:
    return f"to_compute({pointer}[{index}])" if str(dtype) == "float16" else f"{pointer}[{index}]"


def store_value(value: str, dtype: str) -> str:
    """Expression converting a compute-typed value to the storage type of ``dtype``."""
    dtype = str(dtype)
    if dtype == "float16":
        return f"f2h(float({value}))"
    if dtype == "bool":
        return f"bool({value})"
    return f"({ctype(dtype)})({value})"


def literal(value: float, ctype_name: str) -> str:
    """A C literal of ``value`` in a compute type (inf/nan spelled through helper functions)."""
    if ctype_name in ("float", "double"):
        value = float(value)
        if math.isnan(value):
            return "nan_f()" if ctype_name == "float" else "double(nan_f())"
        if math.isinf(value):
            text = "inf_f()" if ctype_name == "float" else "inf_d()"
            return text if value > 0 else f"(-{text})"
        return repr(value) + ("f" if ctype_name == "float" else "")
    if ctype_name == "bool":
        return "true" if value else "false"
    return f"(({ctype_name}){int(value)}LL)"


# -- shapes and indices --------------------------------------------------------------------------
def numel(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    strides, step = [], 1
    for dim in reversed(list(shape)):
        strides.append(step)
        step *= int(dim)
    return strides[::-1]


def broadcast_strides(in_shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    """Element strides of ``in_shape`` read at every index of ``out_shape`` (NumPy broadcasting)."""
    in_shape = [1] * (len(out_shape) - len(in_shape)) + list(in_shape)
    strides = contiguous_strides(in_shape)
    return [0 if d == 1 and o != 1 else s for d, o, s in zip(in_shape, out_shape, strides)]


def merge_dims(shape: Sequence[int], strides: Sequence[int]) -> tuple[list[int], list[int]]:
    """Drop size-1 dims and fuse neighbours whose strides chain, so index math has fewer terms."""
    dims = [(int(n), int(s)) for n, s in zip(shape, strides) if int(n) != 1]
    merged: list[list[int]] = []
    for n, s in dims:
        if merged and merged[-1][1] == s * n:
            merged[-1] = [merged[-1][0] * n, s]
        else:
            merged.append([n, s])
    return [m[0] for m in merged], [m[1] for m in merged]


def index_expr(var: str, shape: Sequence[int], strides: Sequence[int], offset: int = 0) -> str:
    """C expression of sum(coordinate_d(var) * stride_d) + offset, var being a flat row-major index."""
    sizes, steps = merge_dims(shape, strides)
    terms, divisor = [], 1
    for position in range(len(sizes) - 1, -1, -1):
        n, s = sizes[position], steps[position]
        if s != 0:
            coordinate = var if divisor == 1 else f"({var} / {divisor})"
            if position > 0:
                coordinate = f"({coordinate} % {n})"
            terms.append(coordinate if s == 1 else f"{coordinate} * {s}")
        divisor *= n
    if offset:
        terms.append(str(int(offset)))
    return " + ".join(reversed(terms)) if terms else "0"


def index_type(*sizes: int) -> str:
    """i32 when every index fits (32-bit division by constants is much cheaper), else i64."""
    return "i32" if max(sizes, default=0) < 2**31 - 1 else "i64"


# -- per-element instructions --------------------------------------------------------------------
def _promote(types: Sequence[str]) -> str:
    if "double" in types:
        return "double"
    if "float" in types:
        return "float"
    return max(types, key=lambda t: _INT_RANK.get(t, 0))


def _is_float(t: str) -> bool:
    return t in ("float", "double")


def _fn(name: str, t: str) -> str:
    """A libm name for the compute type (expf for float, exp for double)."""
    return name + "f" if t == "float" else name


def _activation(kind: str, x: str, t: str, alpha: float, beta: float) -> str:
    if not _is_float(t):
        if A(kind) == A.RELU:
            return f"({x} < 0 ? ({t})0 : {x})"
        if A(kind) == A.CLIP:
            return f"({x} < {literal(alpha, t)} ? {literal(alpha, t)} : ({x} > {literal(beta, t)} ? " \
                   f"{literal(beta, t)} : {x}))"
        raise UnsupportedError(f"activation {kind} on integer type {t} is not supported on CUDA")
    a, b = literal(alpha, t), literal(beta, t)
    one, zero, half = literal(1, t), literal(0, t), literal(0.5, t)
    exp, tanh, log, erf, fabs = (_fn(n, t) for n in ("exp", "tanh", "log", "erf", "fabs"))
    sigmoid = f"({one} / ({one} + {exp}(-{x})))"
    softplus = f"(({x} > {zero} ? {x} : {zero}) + {_fn('log1p', t)}({exp}(-{fabs}({x}))))"
    hard_sigmoid = lambda scale, shift: f"clamp01({x} * {scale} + {shift})"  # noqa: E731
    formulas = {
        A.RELU: f"({x} < {zero} ? {zero} : {x})",
        A.SIGMOID: sigmoid,
        A.TANH: f"{tanh}({x})",
        A.LEAKY_RELU: f"({x} < {zero} ? {x} * {a} : {x})",
        A.ELU: f"({x} > {zero} ? {x} : {a} * ({exp}({x}) - {one}))",
        A.SELU: f"({b} * ({x} > {zero} ? {x} : {a} * ({exp}({x}) - {one})))",
        A.CELU: f"(({x} > {zero} ? {x} : {zero}) + ({a} * ({exp}({x} / {a}) - {one}) < {zero} ? "
                f"{a} * ({exp}({x} / {a}) - {one}) : {zero}))",
        A.SOFTSIGN: f"({x} / ({one} + {fabs}({x})))",
        A.SOFTPLUS: softplus,
        A.CLIP: (f"({x} != {x} ? {x} : {b})" if alpha > beta else
                 f"({x} < {a} ? {a} : ({x} > {b} ? {b} : {x}))"),
        A.HARD_SIGMOID: hard_sigmoid(a, b),
        A.HARD_SWISH: f"({x} * {hard_sigmoid(literal(1 / 6, t), half)})",
        A.THRESHOLDED_RELU: f"({x} > {a} ? {x} : {zero})",
        A.GELU_ERF: f"({half} * {x} * ({one} + {erf}({x} * {literal(1 / math.sqrt(2), t)})))",
        A.GELU_TANH: f"({half} * {x} * ({one} + {tanh}({literal(math.sqrt(2 / math.pi), t)} * "
                     f"({x} + {literal(0.044715, t)} * {x} * {x} * {x}))))",
        A.SWISH: f"({x} * {sigmoid})",
        A.MISH: f"({x} * {tanh}({softplus}))",
    }
    return formulas[A(kind)]


def _binary(op: str, a: str, b: str, t: str) -> tuple[str, str]:
    """(expression, result type) of ``a op b`` computed in type ``t``."""
    op = E(op)
    simple = {E.SUM: "+", E.SUB: "-", E.PROD: "*"}
    compare = {E.EQUAL: "==", E.GREATER: ">", E.GREATER_EQUAL: ">=", E.LESS: "<", E.LESS_EQUAL: "<="}
    logic = {E.AND: "&&", E.OR: "||", E.XOR: "!="}
    if op in simple:
        return f"({t})({a} {simple[op]} {b})", t
    if op in compare:
        return f"({a} {compare[op]} {b})", "bool"
    if op in logic:
        return f"(bool({a}) {logic[op]} bool({b}))", "bool"
    if op == E.MAX:
        return (f"fmax_nan({a}, {b})" if _is_float(t) else f"({a} > {b} ? {a} : {b})"), t
    if op == E.MIN:
        return (f"fmin_nan({a}, {b})" if _is_float(t) else f"({a} < {b} ? {a} : {b})"), t
    if op == E.DIV:
        return (f"({a} / {b})" if _is_float(t) else f"({b} == 0 ? ({t})0 : ({t})({a} / {b}))"), t
    if op == E.FMOD:
        return (f"{_fn('fmod', t)}({a}, {b})" if _is_float(t) else f"({b} == 0 ? ({t})0 : ({t})({a} % {b}))"), t
    if op == E.MOD:
        return f"py_mod({a}, {b})", t
    if op == E.POW:
        return (f"{_fn('pow', t)}({a}, {b})" if _is_float(t) else f"int_pow({a}, {b})"), t
    raise UnsupportedError(f"elementwise op {op.value} is not supported on CUDA")


def _unary(op: str, x: str, t: str, attrs: dict) -> tuple[str, str]:
    op = U(op)
    if op == U.NOT:
        return f"(!bool({x}))", "bool"
    if op == U.ISNAN:
        return (f"({x} != {x})" if _is_float(t) else "false"), "bool"
    if op == U.ISINF:
        if not _is_float(t):
            return "false", "bool"
        pos, neg = attrs.get("detect_positive", True), attrs.get("detect_negative", True)
        inf = "inf_f()" if t == "float" else "inf_d()"
        parts = ([f"{x} == {inf}"] if pos else []) + ([f"{x} == -{inf}"] if neg else [])
        return (f"({' || '.join(parts)})" if parts else "false"), "bool"
    if not _is_float(t):
        integer = {U.ABS: f"({x} < 0 ? ({t})-{x} : {x})", U.NEG: f"({t})(-{x})",
                   U.SIGN: f"({t})(({x} > 0) - ({x} < 0))", U.CEIL: x, U.FLOOR: x, U.ROUND: x,
                   U.RECIP: f"(({x} == 1 || {x} == ({t})-1) ? {x} : ({t})0)"}
        if op not in integer:
            raise UnsupportedError(f"unary op {op.value} on integer type {t} is not supported on CUDA")
        return integer[op], t
    one, zero = literal(1, t), literal(0, t)
    named = {U.EXP: "exp", U.LOG: "log", U.SQRT: "sqrt", U.ABS: "fabs", U.SIN: "sin", U.COS: "cos", U.TAN: "tan",
             U.ASIN: "asin", U.ACOS: "acos", U.ATAN: "atan", U.SINH: "sinh", U.COSH: "cosh", U.ASINH: "asinh",
             U.ACOSH: "acosh", U.ATANH: "atanh", U.CEIL: "ceil", U.FLOOR: "floor", U.ROUND: "rint", U.ERF: "erf"}
    if op in named:
        return f"{_fn(named[op], t)}({x})", t
    if op == U.RECIP:
        return f"({one} / {x})", t
    if op == U.NEG:
        return f"(-{x})", t
    if op == U.SIGN:
        return f"({x} > {zero} ? {one} : ({x} < {zero} ? -{one} : {x}))", t
    raise UnsupportedError(f"unary op {op.value} is not supported on CUDA")


def emit_instruction(kind: str, attrs: dict, args: list) -> tuple[str, str]:
    """(C expression, compute type) of one per-element instruction; args are (expr, type) or None."""
    kind = LayerKind(kind)
    present = [a for a in args if a is not None]
    if kind == LayerKind.ACTIVATION:
        (x, t), = present[:1]
        return _activation(attrs["type"], x, t, float(attrs.get("alpha", 0.0) or 0.0),
                           float(attrs.get("beta", 0.0) or 0.0)), t
    if kind == LayerKind.ELEMENTWISE:
        (a, ta), (b, tb) = present
        t = _promote([ta, tb])
        return _binary(attrs["op"], a, b, t)
    if kind == LayerKind.UNARY:
        (x, t), = present[:1]
        return _unary(attrs["op"], x, t, attrs)
    if kind == LayerKind.SCALE:
        x, t = args[0]
        expr = x
        if len(args) > 1 and args[1] is not None:
            expr = f"({expr} * ({t}){args[1][0]})"
        if len(args) > 2 and args[2] is not None:
            expr = f"({expr} + ({t}){args[2][0]})"
        return f"({t})({expr})", t
    if kind == LayerKind.PARAMETRIC_RELU:
        (x, t), (s, ts) = present
        t = _promote([t, ts])
        return f"({x} < 0 ? ({t})({x} * {s}) : ({t}){x})", t
    if kind == LayerKind.SELECT:
        (c, _), (x, tx), (y, ty) = present
        t = _promote([tx, ty])
        return f"(bool({c}) ? ({t}){x} : ({t}){y})", t
    if kind in (LayerKind.CAST, LayerKind.IDENTITY, LayerKind.REFORMAT):
        return present[0]
    raise UnsupportedError(f"layer kind {kind.value} cannot run as a per-element instruction")


def cast_expr(value: str, from_type: str, to_dtype: str) -> str:
    """Convert a compute value to the compute type of ``to_dtype`` with Cast semantics (nonzero → true)."""
    target = compute_ctype(to_dtype)
    if target == "bool":
        return f"({value} != 0)"
    return f"({target})({value})" if from_type != target else value


# Device helpers the generated expressions use (prepended once per module).
HELPERS = r"""
EDGERT_FN float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
EDGERT_FN double clamp01(double v) { return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v); }
template <class T> EDGERT_FN T fmax_nan(T a, T b) { return (a != a || b != b) ? a + b : (a > b ? a : b); }
template <class T> EDGERT_FN T fmin_nan(T a, T b) { return (a != a || b != b) ? a + b : (a < b ? a : b); }
EDGERT_FN float py_mod(float a, float b) { float r = fmodf(a, b); return (r != 0.f && ((r < 0.f) != (b < 0.f))) ? r + b : r; }
EDGERT_FN double py_mod(double a, double b) { double r = fmod(a, b); return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r; }
template <class T> EDGERT_FN T py_mod(T a, T b) {
    if (b == 0) return T(0);
    T r = T(a % b);
    return (r != 0 && ((r < 0) != (b < 0))) ? T(r + b) : r;
}
template <class T> EDGERT_FN T int_pow(T base, T exponent) {
    if (exponent < 0) return (base == 1) ? T(1) : (base == T(-1) ? ((exponent & 1) ? T(-1) : T(1)) : T(0));
    T result = T(1);
    while (exponent > 0) { if (exponent & 1) result = T(result * base); base = T(base * base); exponent >>= 1; }
    return result;
}
"""
