"""CUDA kernels for int8 layers (attrs carrying ``int8`` scales), with the numerics of the CPU reference
``kernels/cpu/int8.py``: tensors hold dequantized float32 values, each layer quantizes what it reads and
saturates what it writes to int8 at its output scale.

- Convolution (1-D and 2-D, groups, strides, pads, dilations) and MatrixMultiply with a constant 2-D weight
  (Gemm): the integer GEMM of ``int8.cuh``, dp4a on sm_61+, s8 tensor cores (mma.m16n8k32) on sm_80+.
  Activations quantize while a tile loads; weights are quantized here, at build time, by the reference's
  own ``weight_codes`` and shipped as aux tables of packed words, with per-channel int32 biases (at scale
  s_x * s_c), rescales and the output dequantization table. A matrix product runs transposed (channels as
  GEMM rows) so per-channel weight scales are per-row in both cases. Depthwise and 3-D convolutions run a
  direct kernel, one thread per output, with the same integer accumulation.
- A generated epilogue functor per layer: bias added in int64 and saturated to int32, rescale, the layer's
  epilogue steps (residuals quantized at their input scales), saturation at the output scale; then the
  per-element consumer the plan folded in (``fusion``), quantizing and saturating it as its own layer would.
- Pooling, Concatenation and the per-element kinds (Activation, ElementWise, PointWise, Scale,
  ParametricReLU, Unary): one thread per output element, inputs quantized, the program computed, the result
  saturated.

Rounding. The reference computes in float64; these kernels compute each value in float and round it to
an int8 code, unless the float estimate lies within 2^-12 code units of a rounding boundary: then that value
is recomputed in double in the reference's order (``segment``; ``i8_code`` / ``i8_round`` in int8.cuh).
Codes therefore match the reference exactly, except where a fused chain loses more than 2^-12 code units
to float rounding (cancellation between large operands), where one code may differ; the double path sums
an average pool's window as (sum of codes) * scale where the reference adds the dequantized values, so an
exact tie there may also round the other way. NaN activations become code 0 in the integer products (as on
integer hardware) and stay NaN elsewhere. No split-K: int32 partial sums of a tile stay in one block.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind, PoolingType
from edgert.kernels.cpu.int8 import weight_codes
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import (BLOCK, Launch, LowerContext, grid_for, input_index, layer_program,
                                         program_body, ptr)

DP4A_ARCH, MMA_ARCH = 61, 80
MAX_POINTERS = 16
MAX_K = (2 ** 31 - 1) // (128 * 127)   # the longest dot product whose int32 sum cannot overflow
FLOATS = ("float16", "float32", "float64")
PER_ELEMENT = {LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.POINTWISE, LayerKind.SCALE,
               LayerKind.PARAMETRIC_RELU, LayerKind.UNARY}


def lower_int8_layer(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    """Launches for one int8 layer (``fusion``: a per-element consumer to finish in a conv/matmul epilogue)."""
    kind = LayerKind(layer["kind"])
    if ctx.arch < DP4A_ARCH:
        raise UnsupportedError(f"layer {layer['name']!r}: int8 kernels need dp4a (sm_61 or newer), the target is "
                               f"sm_{ctx.arch}; build this layer fp16 or fp32")
    if fusion and kind not in (LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY):
        raise UnsupportedError(f"layer {layer['name']!r}: only int8 convolutions and matrix products take a "
                               "folded consumer")
    if kind == LayerKind.CONVOLUTION:
        return _convolution(ctx, layer, fusion)
    if kind == LayerKind.MATRIX_MULTIPLY:
        return _matrix_multiply(ctx, layer, fusion)
    if kind == LayerKind.POOLING:
        return _pooling(ctx, layer)
    if kind == LayerKind.CONCATENATION:
        return _concatenation(ctx, layer)
    if kind in PER_ELEMENT:
        return _per_element(ctx, layer)
    raise UnsupportedError(f"layer {layer['name']!r}: {kind.value} has no int8 kernel (the CPU int8 reference has "
                           "none either); build it fp16 or fp32 with a precision rule")


# -- scales, pointers, register sources ----------------------------------------------------------------------
class Scale:
    """One int8 scale as kernels spell it: its float inverse, its double value, its dequantization table."""

    def __init__(self, layer: dict, value):
        value = float(value)
        inverse = np.float32(1.0 / value) if value > 0 else np.float32(np.inf)
        if not (math.isfinite(value) and value > 0 and np.isfinite(inverse)):
            raise UnsupportedError(f"layer {layer['name']!r}: int8 scale {value!r} must be positive and finite "
                                   "(and above 1e-38); recalibrate")
        self.value, self.inverse = value, float(inverse)

    def code(self, x: str) -> str:
        """C expression: the int8 code of float ``x`` (a float holding an integer in [-128, 127])."""
        return f"i8_code({x}, {cg.literal(self.inverse, 'float')}, {cg.literal(self.value, 'double')})"

    def values(self, code: str) -> tuple:
        """(float pass, double pass) register sources dequantizing ``code``."""
        return ((f"({code} * {cg.literal(float(np.float32(self.value)), 'float')})", "float"),
                (f"(double({code}) * {cg.literal(self.value, 'double')})", "double"))

    def table(self, ctx: LowerContext) -> list:
        """Aux table of the stored values float32(q * scale), q = -128..127, rounded as the reference does."""
        return ctx.add_aux(np.asarray(np.arange(-128, 128, dtype=np.float64) * self.value, np.float32))


def input_scale(layer: dict, slot: int, dtype: str) -> Scale | None:
    """The scale an int8 layer quantizes input ``slot`` at (None: the reference reads it wide)."""
    scales = (layer.get("attrs") or {}).get("int8", {}).get("input_scales") or []
    if dtype not in FLOATS or slot >= len(scales) or not scales[slot]:
        return None
    if dtype == "float64":   # codes come from a float estimate of x / s: exact for float32 and float16 x only
        raise UnsupportedError(f"layer {layer['name']!r}: int8 kernels quantize float32 or float16 tensors, input "
                               f"{slot} is float64")
    return Scale(layer, scales[slot])


class Pointers:
    """Slots of a kernel's ``I8Args`` (int8.cuh): the pointer params, in order."""

    def __init__(self):
        self.params: list = []

    def expr(self, param: list, ctype: str) -> str:
        if param not in self.params:
            if len(self.params) == MAX_POINTERS:
                raise UnsupportedError(f"an int8 kernel would read more than {MAX_POINTERS} tensors and tables")
            self.params.append(param)
        return f"((const {ctype}*)e.p[{self.params.index(param)}])"

    def packed(self) -> list:
        return [["align", 8]] + [list(p) for p in self.params] + [["0"]] * (MAX_POINTERS - len(self.params))


PLACEHOLDER = (("0.f", "float"), ("0.0", "double"))


def tensor_source(ctx: LowerContext, pointers: Pointers, tensor: int, index: str, scale: Scale | None,
                  name: str) -> tuple[list[str], tuple]:
    """(lines computing its code, (float pass, double pass) source) of input ``tensor`` at ``index``."""
    dtype = ctx.dtype(tensor)
    load = cg.load(pointers.expr(ptr(tensor), cg.ctype(dtype)), index, dtype)
    if dtype not in FLOATS:
        ctype = cg.compute_ctype(dtype)
        return [], ((load, ctype), (load, ctype))
    if scale is None:
        return [], ((load, cg.compute_ctype(dtype)), (f"double({load})", "double"))
    return [f"const float {name} = {scale.code(f'float({load})')};"], scale.values(name)


def epilogue_steps(layer: dict, current: int, first: int) -> list:
    """The layer's ``attrs["epilogue"]`` as instructions on register ``current``, the k-th landing in register
    ``first + k``. An add of input i reads register i (a convolution's register 0 is its accumulator)."""
    program = []
    for step in (layer.get("attrs") or {}).get("epilogue") or []:
        if step.get("op") == "activation":
            attrs = {"type": ActivationType(step["type"]), "alpha": step.get("alpha", 0.0),
                     "beta": step.get("beta", 0.0)}
            program.append({"kind": LayerKind.ACTIVATION.value, "attrs": attrs, "args": [current]})
        elif step.get("op") == "add":
            program.append({"kind": LayerKind.ELEMENTWISE.value, "attrs": {"op": ElementWiseOp.SUM},
                            "args": [current, int(step["input"])]})
        else:
            raise UnsupportedError(f"layer {layer['name']!r}: unknown epilogue step {step!r}")
        current = first + len(program) - 1
    return program


def segment(ctx: LowerContext, program: list, sources: list, scale: Scale | None, table: str, result: str,
            out_dtype: str = "float32") -> list[str]:
    """C lines setting ``result`` (declared by the caller): ``program`` over ``sources`` in float, saturated at
    ``scale`` and dequantized through ``table``; recomputed in double when the float estimate sits within
    2^-12 code units of a rounding boundary. ``scale`` None: the program's value in ``out_dtype``."""
    float_lines, float_value = program_body(ctx, program, [s[0] for s in sources], out_dtype if scale is None
                                            else "float32")
    if scale is None:
        return ["{", *float_lines, f"{result} = {float_value};", "}"]
    double_lines, double_value = program_body(ctx, program, [s[1] for s in sources], "float64")
    return ["{", "bool near = false;", "float q;",
            "{", *float_lines, f"q = i8_round({float_value} * {cg.literal(scale.inverse, 'float')}, near);", "}",
            "if (near) {", *double_lines, f"q = i8_round_exact({double_value}, {cg.literal(scale.value, 'double')});",
            "}", f"{result} = i8_value(q, {table});", "}"]


def output_scale(ctx: LowerContext, layer: dict, out: int) -> Scale | None:
    """The saturation scale of an int8 layer's float output (None for a non-float output: stored as computed)."""
    if ctx.dtype(out) not in FLOATS:
        return None
    if ctx.dtype(out) != "float32":   # the dequantization tables hold float32 values, as int8 plans store
        raise UnsupportedError(f"layer {layer['name']!r}: int8 outputs are float32 tensors (precision.py makes "
                               f"them so), this one is {ctx.dtype(out)}")
    return Scale(layer, layer["attrs"]["int8"]["output_scale"])


def _element_kernel(ctx: LowerContext, base: str, count: int, out: int, lines: list[str], out_index: str,
                    pointers: Pointers, out_offset: int = 0, tactic: str = "") -> Launch:
    """One thread per element ``i`` < count: ``lines`` compute ``y``, stored at ``out[out_index]``."""
    itype = cg.index_type(count, cg.numel(ctx.shape(out)))
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({cg.ctype(ctx.dtype(out))}* out, I8Args e) {{
    const {itype} i = {itype}(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {cg.compute_ctype(ctx.dtype(out))} y;
    {body}
    out[{out_index}] = {cg.store_value("y", ctx.dtype(out))};
}}
"""
    ctx.need("int8.cuh")
    params = [ptr(out, out_offset)] + pointers.packed()
    return Launch(ctx.kernel(base, source), grid_for(count), (BLOCK, 1, 1), params, tactic=tactic)


# -- per-element kinds, concatenation, pooling ----------------------------------------------------------------
def _per_element(ctx: LowerContext, layer: dict) -> list[Launch]:
    out = layer["outputs"][0]
    out_shape = ctx.shape(out)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    pointers, lines, sources = Pointers(), [], []
    for slot, tensor in enumerate(layer["inputs"]):
        if tensor < 0:
            sources.append(PLACEHOLDER)
            continue
        index = input_index(ctx, tensor, out_shape, "i")
        pre, source = tensor_source(ctx, pointers, tensor, index, input_scale(layer, slot, ctx.dtype(tensor)),
                                    f"c{slot}")
        lines += pre
        sources.append(source)
    program = layer_program(layer)
    last = len(sources) + len(program) - 1
    program += epilogue_steps(layer, last, last + 1)
    scale = output_scale(ctx, layer, out)
    table = pointers.expr(scale.table(ctx), "float") if scale else ""
    lines += segment(ctx, program, sources, scale, table, "y", ctx.dtype(out))
    return [_element_kernel(ctx, "int8_pointwise", count, out, lines, "i", pointers, tactic="int8-pointwise")]


def _concatenation(ctx: LowerContext, layer: dict) -> list[Launch]:
    """One requantizing copy per input into its slice of the output; in place where the memory planner
    already made the producer write there (the reference still saturates those at the output scale)."""
    dst = layer["outputs"][0]
    out_shape = ctx.shape(dst)
    axis = int(layer["attrs"]["axis"]) % len(out_shape)
    out_strides = cg.contiguous_strides(out_shape)
    scale = output_scale(ctx, layer, dst)
    launches, start = [], 0
    for slot, src in enumerate(layer["inputs"]):
        in_shape = ctx.shape(src)
        offset = start * out_strides[axis]
        start += in_shape[axis]
        count = cg.numel(in_shape)
        if count == 0:
            continue
        pointers = Pointers()
        lines, source = tensor_source(ctx, pointers, src, "i", input_scale(layer, slot, ctx.dtype(src)), "c")
        table = pointers.expr(scale.table(ctx), "float") if scale else ""
        lines += segment(ctx, [], [source], scale, table, "y", ctx.dtype(dst))
        launches.append(_element_kernel(ctx, "int8_concat", count, dst, lines,
                                        cg.index_expr("i", in_shape, out_strides), pointers,
                                        offset * ctx.itemsize(dst), tactic="int8-concat"))
    return launches


def _pooling(ctx: LowerContext, layer: dict) -> list[Launch]:
    """Max: the largest code; average: the sum of codes over the counted taps; LP: on dequantized values."""
    from edgert.kernels.cuda.lower_reduce import _window_loops
    x, outputs = layer["inputs"][0], layer["outputs"]
    out, attrs = outputs[0], layer["attrs"]
    x_shape, out_shape = ctx.shape(x), ctx.shape(out)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    kind, in_spatial = PoolingType(attrs["type"]), list(x_shape[2:])
    opening, closing, offset, index, inside, padded = _window_loops(attrs, in_spatial,
                                                                    int(attrs.get("storage_order", 0)))
    scale_in = input_scale(layer, 0, ctx.dtype(x))
    if scale_in is None:
        raise UnsupportedError(f"layer {layer['name']!r}: int8 pooling needs a float input with an input scale")
    pointers, plane = Pointers(), cg.numel(in_spatial)
    lines = ["i64 rest = i;"]
    names = ["bc"] + [f"o{d}" for d in range(len(in_spatial))]
    for axis in range(len(out_shape) - 1, 1, -1):
        lines.append(f"const i32 {names[axis - 1]} = i32(rest % {out_shape[axis]}); rest /= {out_shape[axis]};")
    x_pointer = pointers.expr(ptr(x), cg.ctype(ctx.dtype(x)))
    lines += ["const i64 bc = rest;", f"const auto* xc = {x_pointer} + bc * {plane};"]
    code = scale_in.code(f"float({cg.load('xc', offset, ctx.dtype(x))})")
    if kind == PoolingType.MAX:
        lines.append("float c = -inf_f(); i64 where = -1;")
        first = f"if (where < 0 || v > c) {{ c = v; where = {index}; }}"   # the first maximum, as the reference
        step = f"if ({inside}) {{ const float v = {code}; {first} }}" if len(outputs) > 1 else \
            f"if ({inside}) c = fmax_nan(c, {code});"
        lines += opening + [step] + closing
        source = scale_in.values("c")
        if len(outputs) > 1:
            indices = ctx.dtype(outputs[1])
            lines.append(f"(({cg.ctype(indices)}*){pointers.expr(ptr(outputs[1]), cg.ctype(indices))})[i] = "
                         f"where < 0 ? 0 : where + bc * {plane};")
    elif kind == PoolingType.AVERAGE:
        counted = padded if attrs.get("count_include_pad", False) else inside
        lines += ["float c = 0.f; i32 count = 0;"] + opening + [f"if ({inside}) c += {code};",
                                                                f"if ({counted}) ++count;"] + closing
        lines.append("const i32 divisor = count > 0 ? count : 1;")
        (fv, _), (dv, _) = scale_in.values("c")
        source = ((f"({fv} / float(divisor))", "float"), (f"({dv} / double(divisor))", "double"))
    else:
        source, more = _lp_pool(attrs, scale_in, code, inside)
        lines += more[0] + opening + more[1] + closing
    scale = output_scale(ctx, layer, out)
    lines += segment(ctx, [], [source], scale, pointers.expr(scale.table(ctx), "float"), "y")
    return [_element_kernel(ctx, "int8_pool", count, out, lines, "i", pointers, tactic=f"int8-pool-{kind.value}")]


def _lp_pool(attrs: dict, scale: Scale, code: str, inside: str) -> tuple:
    """(source, (lines before the window, lines per tap)) of LP pooling, summed in float and in double."""
    p = float(attrs.get("p", 2))
    (fv, _), (dv, _) = scale.values("v")

    def term(value, f):   # f: the float suffix of libm names ("f" or "")
        return {1.0: f"fabs{f}({value})", 2.0: f"({value} * {value})"}.get(
            p, f"pow{f}(fabs{f}({value}), {cg.literal(p, 'float' if f else 'double')})")

    def root(total, f):
        inverse = cg.literal(1 / p, "float" if f else "double")
        return {1.0: total, 2.0: f"sqrt{f}({total})"}.get(p, f"pow{f}({total}, {inverse})")
    tap = [f"if ({inside}) {{ const float v = {code}; fs += {term(fv, 'f')}; ds += {term(dv, '')}; }}"]
    source = ((root("fs", "f"), "float"), (root("ds", ""), "double"))
    return source, (["float fs = 0.f; double ds = 0.0;"], tap)


# -- convolution and matrix multiply --------------------------------------------------------------------------
def constant(ctx: LowerContext, tensor: int, layer: dict, what: str) -> np.ndarray:
    """A plan constant's values (weights and biases are quantized at build time, so they must be constants)."""
    entry = next((c for c in ctx.document.get("constants", []) if int(c["tensor"]) == tensor), None)
    if entry is None:
        raise UnsupportedError(f"layer {layer['name']!r}: the int8 kernels need constant {what} (quantized at build "
                               f"time); {ctx.tensors[tensor]['name']!r} is computed at run time")
    dtype, shape = np.dtype(ctx.dtype(tensor)), ctx.shape(tensor)
    return np.frombuffer(ctx.document["blob"], dtype, cg.numel(shape), int(entry["offset"])).reshape(shape)


def functor(ctx: LowerContext, layer: dict, fusion: dict, out_shape, channel_axis: int, rescale: np.ndarray,
            bias_codes: np.ndarray | None, pointers: Pointers) -> str:
    """The epilogue functor ``static float apply(i32 acc, i64 flat, i32 m, const I8Args& e)`` of an int8
    Convolution / MatrixMultiply (m: the output channel), followed by its folded consumer."""
    inputs, coordinates = list(layer["inputs"]), {channel_axis: "m"}
    lines = ["const i32 acc = raw;"]
    if bias_codes is not None:
        bias = pointers.expr(ctx.add_aux(bias_codes), "i64")
        lines = [f"const i64 wide = i64(raw) + {bias}[m];",
                 "const i32 acc = i32(wide < -2147483648LL ? -2147483648LL : "
                 "(wide > 2147483647LL ? 2147483647LL : wide));"]
    r32 = pointers.expr(ctx.add_aux(rescale.astype(np.float32)), "float")
    r64 = pointers.expr(ctx.add_aux(rescale.astype(np.float64)), "double")
    sources = [((f"(float(acc) * {r32}[m])", "float"), (f"(double(acc) * {r64}[m])", "double"))]
    added = {int(s["input"]) for s in (layer["attrs"].get("epilogue") or []) if s.get("op") == "add"}
    for slot in range(1, len(inputs)):
        if slot not in added or inputs[slot] < 0:
            sources.append(PLACEHOLDER)
            continue
        tensor = inputs[slot]
        pre, source = tensor_source(ctx, pointers, tensor, input_index(ctx, tensor, out_shape, "flat", coordinates),
                                    input_scale(layer, slot, ctx.dtype(tensor)), f"c{slot}")
        lines += pre
        sources.append(source)
    # Register 0 (the accumulator) is the result unless epilogue steps follow: a program's value is its last register.
    program = epilogue_steps(layer, 0, len(sources)) or [{"kind": LayerKind.IDENTITY.value, "attrs": {}, "args": [0]}]
    scale = output_scale(ctx, layer, layer["outputs"][0])
    lines += ["float y;"] + segment(ctx, program, sources, scale, pointers.expr(scale.table(ctx), "float"), "y")
    if fusion:
        lines += _consumer(ctx, fusion, out_shape, coordinates, pointers)
    body = "\n        ".join(lines)
    source = f"""
struct EPI {{
    static EDGERT_FN float apply(i32 raw, i64 flat, i32 m, const I8Args& e) {{
        {body}
        return y;
    }}
}};
"""
    name = "I8Epi_" + hashlib.sha256(source.encode()).hexdigest()[:12]
    return ctx.define(name, source.replace("EPI", name))


def _consumer(ctx: LowerContext, fusion: dict, out_shape, coordinates: dict, pointers: Pointers) -> list[str]:
    """Lines replacing ``y`` (the producer's stored value) by the folded consumer's; an int8 consumer
    quantizes its inputs and saturates its result as its own kernel would."""
    consumer = ctx.document["layers"][fusion["consumer"]]
    int8 = bool((consumer.get("attrs") or {}).get("int8"))
    lines, sources = [], []
    for slot, tensor in enumerate(fusion["inputs"]):
        scale = input_scale(consumer, slot, ctx.dtype(tensor)) if int8 and tensor >= 0 else None
        if tensor == fusion["source"]:
            if scale is not None:
                lines.append(f"const float k{slot} = {scale.code('y')};")
            sources.append(scale.values(f"k{slot}") if scale else (("y", "float"), ("double(y)", "double")))
        elif tensor < 0:
            sources.append(PLACEHOLDER)
        else:
            pre, source = tensor_source(ctx, pointers, tensor, input_index(ctx, tensor, out_shape, "flat", coordinates),
                                        scale, f"k{slot}")
            lines += pre
            sources.append(source)
    program = list(fusion["program"])
    if int8:
        last = len(sources) + len(program) - 1
        program += epilogue_steps(consumer, last, last + 1)
    scale = output_scale(ctx, consumer, fusion["output"]) if int8 else None
    table = pointers.expr(scale.table(ctx), "float") if scale else ""
    return lines + ["float z;"] + segment(ctx, program, sources, scale, table, "z") + ["y = z;"]


def weight_words(codes: np.ndarray, bm: int) -> np.ndarray:
    """(groups, M, K) int8 codes → uint32 words of four consecutive k, [group][K/4][M], K padded to a k-tile
    (32) and M to the block tile with zeros, so the kernel's weight loads need no bounds checks."""
    groups, m, k = codes.shape
    k_padded, m_padded = max(32, -(-k // 32) * 32), -(-m // bm) * bm
    padded = np.zeros((groups, m_padded, k_padded), np.int8)
    padded[:, :m, :k] = codes
    words = padded.reshape(groups, m_padded, k_padded // 4, 4).view("<u4")[..., 0]
    return np.ascontiguousarray(words.transpose(0, 2, 1))


def choose_tiles(M: int, N: int, Z: int, sm_count: int, mma: bool) -> tuple[int, int, int]:
    """(BM, BN, threads): the largest tiles the problem fills, shrunk (the larger side first) until every SM
    has a block; dp4a threads own 4x4 outputs, tensor-core warps 32x32 (at most 8 warps)."""
    sizes = (32, 64, 128) if mma else (32, 64)
    def fit(dim):
        return next((s for s in sizes if dim <= s), sizes[-1])
    bm, bn = fit(M), fit(N)
    if bm * bn > 8192:
        bm, bn = (bm, bn // 2) if M >= N else (bm // 2, bn)
    while math.ceil(M / bm) * math.ceil(N / bn) * Z < sm_count and max(bm, bn) > 32:
        bm, bn = (bm // 2, bn) if bm > bn else (bm, bn // 2)
    return bm, bn, bm * bn // (32 if mma else 16)


def geometry_struct(ctx: LowerContext, fields: dict, offset: str) -> str:
    """A struct of the layer's constants (int8.cuh's G) with ``offset(m, n)``: where output (m, n) lives."""
    def declare(key, value):
        if isinstance(value, bool):
            return f"static constexpr bool {key} = {str(value).lower()};"
        if isinstance(value, float):   # X_INV multiplies in float, X_SCALE divides in double
            ctype = "double" if key.endswith("SCALE") else "float"
            return f"static constexpr {ctype} {key} = {cg.literal(value, ctype)};"
        return f"static constexpr {'i64' if key in _WIDE_FIELDS else 'i32'} {key} = {int(value)};"
    body = "\n    ".join(declare(key, value) for key, value in fields.items())
    source = f"struct GEO {{\n    {body}\n    static EDGERT_FN i64 offset(i32 m, i64 n) {{ return {offset}; }}\n}};\n"
    name = "I8Geo_" + hashlib.sha256(source.encode()).hexdigest()[:12]
    return ctx.define(name, source.replace("GEO", name))


_WIDE_FIELDS = {"IN_IMG", "GROUP_IN", "OUT_IMG", "ROWS", "BATCH_STRIDE", "ROW_STRIDE", "K_STRIDE", "CHANNELS"}


def emit_gemm(ctx: LowerContext, layer: dict, *, codes: np.ndarray, x: int, out: int, fields: dict, offset: str,
              loader: str, epi: str, pointers: Pointers, ktab: list, tactic: str) -> list[Launch]:
    """Pick tiles and the math (tensor cores on sm_80+ unless M is tiny), instantiate ``i8_gemm``, launch it."""
    groups, M, K = codes.shape
    N = fields["N"]
    if K > MAX_K:
        raise UnsupportedError(f"layer {layer['name']!r}: an int8 dot product of {K} terms could overflow int32 "
                               f"(at most {MAX_K}); build this layer fp16")
    mma = ctx.arch >= MMA_ARCH and M > 16
    bm, bn, threads = choose_tiles(M, N, groups, ctx.sm_count, mma)
    words = weight_words(codes, bm)
    geo = geometry_struct(ctx, {"BM": bm, "BN": bn, "THREADS": threads, "M": M, "K": K, "KW": words.shape[1],
                                "MP": words.shape[2], **fields}, offset)
    math_name = "I8Mma" if mma else "I8Dp4a"
    t, o = cg.ctype(ctx.dtype(x)), cg.ctype(ctx.dtype(out))
    ctx.need("int8.cuh")
    source = f"""
extern "C" __global__ void __launch_bounds__({threads}) KERNEL(const u32* __restrict__ a, const {t}* __restrict__ x,
                                                   {o}* out, const i32* __restrict__ ktab, I8Args e) {{
    i8_gemm<{geo}, {math_name}<{geo}>, {loader}<{geo}, {t}>, {epi}>(a, x, out, ktab, e);
}}
"""
    grid = (math.ceil(N / bn), words.shape[2] // bm, groups)
    if grid[1] > 65535 or grid[2] > 65535:
        raise UnsupportedError(f"layer {layer['name']!r}: int8 GEMM grid {grid} exceeds CUDA limits")
    params = [ctx.add_aux(words), ptr(x), ptr(out), ktab, ["align", 8]] + pointers.packed()
    label = f"{tactic} {'mma' if mma else 'dp4a'} {bm}x{bn}"
    return [Launch(ctx.kernel("int8_gemm", source), grid, (threads, 1, 1), params, tactic=label)]


def _quantized_weights(ctx: LowerContext, layer: dict, axis: int) -> tuple:
    """(weight codes, rescale s_x * s_c per channel, int32-code biases or None), as the reference computes them."""
    inputs, spec = layer["inputs"], layer["attrs"]["int8"]
    x_scale = Scale(layer, spec["input_scales"][0])
    codes, w_scales = weight_codes(constant(ctx, inputs[1], layer, "weights"), axis, spec.get("weight_scales"))
    rescale = x_scale.value * w_scales
    bias_codes = None
    if LayerKind(layer["kind"]) == LayerKind.CONVOLUTION and len(inputs) > 2 and inputs[2] >= 0:
        bias = np.asarray(constant(ctx, inputs[2], layer, "bias"), np.float64)
        # Beyond +-2^40 the int32 saturation decides anyway; NaN has no integer code.
        bias_codes = np.clip(np.nan_to_num(np.rint(bias / rescale)), -2.0 ** 40, 2.0 ** 40).astype(np.int64)
    return codes.astype(np.int8), rescale, bias_codes, x_scale


def conv_geometry(attrs: dict, w_shape, spatial: int) -> dict:
    return {"kernel": [int(k) for k in attrs.get("kernel") or w_shape[2:]],
            "strides": [int(s) for s in attrs.get("strides") or [1] * spatial],
            "dilations": [int(d) for d in attrs.get("dilations") or [1] * spatial],
            "begins": [int(p) for p in attrs.get("pads") or [0] * 2 * spatial][:spatial]}


def _convolution(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, out = layer["inputs"][0], fusion.get("output", layer["outputs"][0])
    attrs, x_shape = layer["attrs"], ctx.shape(x)
    w_shape, out_shape = ctx.shape(layer["inputs"][1]), ctx.shape(layer["outputs"][0])
    if cg.numel(out_shape) == 0:
        return []
    spatial = len(x_shape) - 2
    group, cg_in = int(attrs.get("group", 1)), w_shape[1]
    codes, rescale, bias_codes, x_scale = _quantized_weights(ctx, layer, 0)
    pointers = Pointers()
    epi = functor(ctx, layer, fusion, ctx.shape(out), 1, rescale, bias_codes, pointers)
    if spatial > 2 or cg_in == 1:
        return _direct_convolution(ctx, layer, x, out, codes, epi, pointers, x_scale)
    geometry = conv_geometry(attrs, w_shape, spatial)
    if spatial == 1:   # a 1-D convolution is a 2-D one with H = 1
        geometry = {key: [0 if key == "begins" else 1] + value for key, value in geometry.items()}
    kernel, strides, dilations, begins = (geometry[key] for key in ("kernel", "strides", "dilations", "begins"))
    H, W = ([1] + list(x_shape[2:]))[-2:]
    OH, OW = ([1] + list(out_shape[2:]))[-2:]
    k = np.arange(cg_in * kernel[0] * kernel[1])
    dy, dx = (k // kernel[1]) % kernel[0] * dilations[0], k % kernel[1] * dilations[1]
    table = np.stack([k // (kernel[0] * kernel[1]) * H * W + dy * W + dx, dy, dx, np.zeros_like(k)], axis=1)
    oc = w_shape[0]
    fields = {"N": x_shape[0] * OH * OW, "OHW": OH * OW, "OW": OW, "H": H, "W": W, "SH": strides[0],
              "SW": strides[1], "PH": begins[0], "PW": begins[1], "IN_IMG": x_shape[1] * H * W,
              "GROUP_IN": cg_in * H * W, "OUT_IMG": oc * OH * OW, "X_INV": x_scale.inverse, "X_SCALE": x_scale.value}
    offset = "(n / OHW) * OUT_IMG + i64(m) * OHW + n % OHW"
    return emit_gemm(ctx, layer, codes=codes.reshape(group, oc // group, -1), x=x, out=out, fields=fields,
                     offset=offset, loader="I8Im2col", epi=epi, pointers=pointers,
                     ktab=ctx.add_aux(table.astype(np.int32)), tactic="int8-implicit-gemm")


def _direct_convolution(ctx: LowerContext, layer: dict, x: int, out: int, codes: np.ndarray, epi: str,
                        pointers: Pointers, x_scale: Scale) -> list[Launch]:
    """Depthwise and 3-D convolutions: one thread per output, codes multiplied and summed in int32."""
    from edgert.kernels.cuda.lower_conv import _decompose, _tap_index, _tap_loops
    attrs, x_shape, out_shape = layer["attrs"], ctx.shape(x), ctx.shape(layer["outputs"][0])
    spatial, w_shape = len(x_shape) - 2, codes.shape
    geometry = conv_geometry(attrs, w_shape, spatial)
    in_spatial, cg_in = list(x_shape[2:]), w_shape[1]
    plane, taps = cg.numel(in_spatial), cg.numel(geometry["kernel"])
    opening, closing, offset = _tap_loops(geometry, in_spatial, transposed=False)
    x_value = cg.load("xb", f"ic * {plane} + {offset}", ctx.dtype(x))
    body = _decompose(out_shape, ["b", "oc"] + [f"o{d}" for d in range(spatial)]) + [
        f"const i32 g = oc / {w_shape[0] // int(attrs.get('group', 1))};",
        f"const auto* xb = x + (i64(b) * {x_shape[1]} + g * {cg_in}) * {plane};",
        f"const i8* wb = w + i64(oc) * {cg_in * taps};",
        "i32 acc = 0;",
        f"for (i32 ic = 0; ic < {cg_in}; ++ic) {{", *opening,
        f"acc += i8_int(float({x_value}), {cg.literal(x_scale.inverse, 'float')}, "
        f"{cg.literal(x_scale.value, 'double')}) * i32(wb[ic * {taps} + {_tap_index(geometry)}]);",
        *closing, "}"]
    count = cg.numel(out_shape)
    text = "\n    ".join(body)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL(const {cg.ctype(ctx.dtype(x))}* __restrict__ x,
        const i8* __restrict__ w, {cg.ctype(ctx.dtype(out))}* out, I8Args e) {{
    const i32 flat = i32(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (flat >= {count}) return;
    {text}
    out[flat] = {cg.store_value(f"{epi}::apply(acc, flat, oc, e)", ctx.dtype(out))};
}}
"""
    ctx.need("int8.cuh")
    params = [ptr(x), ctx.add_aux(codes.reshape(-1)), ptr(out), ["align", 8]] + pointers.packed()
    tactic = "int8-depthwise" if cg_in == 1 and int(attrs.get("group", 1)) > 1 else "int8-direct"
    return [Launch(ctx.kernel("int8_directconv", source), grid_for(count), (BLOCK, 1, 1), params, tactic=tactic)]


def _matrix_multiply(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    """out (..., M, C) = x (..., M, K) @ W (K, C), computed as out^T = W^T x^T: GEMM rows are the channels
    (per-row weight scales), columns the rows of x over every batch."""
    x, w = layer["inputs"][0], layer["inputs"][1]
    out, attrs = fusion.get("output", layer["outputs"][0]), layer.get("attrs") or {}
    if len(ctx.shape(w)) != 2:
        raise UnsupportedError(f"layer {layer['name']!r}: int8 matrix products need a 2-D constant weight, "
                               f"got shape {list(ctx.shape(w))}")
    trans_a, trans_b = bool(attrs.get("trans_a")) and len(ctx.shape(x)) > 1, bool(attrs.get("trans_b"))
    codes, rescale, _, x_scale = _quantized_weights(ctx, layer, 0 if trans_b else 1)
    channel_codes = codes if trans_b else codes.T          # (C, K)
    channels, K = channel_codes.shape
    x_shape = list(ctx.shape(x)) if len(ctx.shape(x)) > 1 else [1] + list(ctx.shape(x))
    rows = x_shape[-1] if trans_a else x_shape[-2]
    columns = cg.numel(x_shape) // K
    if cg.numel(ctx.shape(out)) == 0:
        return []
    pointers = Pointers()
    epi = functor(ctx, layer, fusion, ctx.shape(out), len(ctx.shape(out)) - 1, rescale, None, pointers)
    if trans_a:    # x^T per batch: column n = (batch, row), k strides over the rows of x
        layout = {"ROWS": rows, "BATCH_STRIDE": K * rows, "ROW_STRIDE": 1, "K_STRIDE": rows, "VEC": False}
    else:
        vec = K % 4 == 0 and ctx.dtype(x) == "float32" and ctx.aligned(x)
        layout = {"ROWS": columns, "BATCH_STRIDE": 0, "ROW_STRIDE": K, "K_STRIDE": 1, "VEC": vec}
    fields = {"N": columns, **layout, "X_INV": x_scale.inverse, "X_SCALE": x_scale.value, "CHANNELS": channels}
    return emit_gemm(ctx, layer, codes=np.ascontiguousarray(channel_codes)[None], x=x, out=out, fields=fields,
                     offset="n * CHANNELS + m", loader="I8Rows", epi=epi, pointers=pointers, ktab=["0"],
                     tactic="int8-gemm")
