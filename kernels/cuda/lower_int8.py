"""CUDA kernels for int8 layers (attrs carrying ``int8`` scales), with the numerics of the CPU reference
``kernels/cpu/int8.py``: tensors hold dequantized float32 values, each layer quantizes what it reads and
saturates what it writes to int8 at its output scale.

- Convolution (1-D and 2-D, groups, strides, pads, dilations) and MatrixMultiply with a constant 2-D weight
  (Gemm), in ``lower_int8_gemm``: the integer GEMM of ``int8.cuh``, dp4a on sm_61+, s8 tensor cores (mma.m16n8k32) on sm_80+.
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
- Plans with int8 codes (``edgert.int8_codes``): an int8 input tensor holding codes is read as its codes
  (a GEMM tile packs them as they are), an int8 output receives the saturated code instead of its
  dequantized value, and the quantize / dequantize Reformat layers (``reformat_codes``) convert.

Rounding. The reference computes in float64; these kernels compute each value in float and round it to
an int8 code, unless the float estimate lies within 2^-12 code units of a rounding boundary: then that value
is recomputed in double in the reference's order (``segment``; ``i8_code`` / ``i8_round`` in int8.cuh).
Codes therefore match the reference exactly, except where a fused chain loses more than 2^-12 code units
to float rounding (cancellation between large operands), where one code may differ; the double path sums
an average pool's window as (sum of codes) * scale where the reference adds the dequantized values, so an
exact tie there may also round the other way. NaN activations become code 0 in the integer products (as on
integer hardware) and stay NaN elsewhere. Split-K sums int32 partials, exactly, so it changes no code.
"""

from __future__ import annotations

import math

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind, PoolingType
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
    if kind in (LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY):
        from edgert.kernels.cuda import lower_int8_gemm   # it imports this module's helpers
        return (lower_int8_gemm.convolution if kind == LayerKind.CONVOLUTION else
                lower_int8_gemm.matrix_multiply)(ctx, layer, fusion)
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

    def __init__(self, layer: dict, value, codes: bool = False):
        self.codes = codes   # the tensor holds int8 codes (edgert.int8_codes): read and written as they are
        value = float(value)
        inverse = np.float32(1.0 / value) if value > 0 else np.float32(np.inf)
        if not (math.isfinite(value) and value > 0 and np.isfinite(inverse)):
            raise UnsupportedError(f"layer {layer['name']!r}: int8 scale {value!r} must be positive and finite "
                                   "(and above 1e-38); recalibrate")
        self.value, self.inverse = value, float(inverse)

    def code(self, x: str) -> str:
        """C expression: the int8 code of float ``x`` (a float holding an integer in [-128, 127])."""
        if self.codes:
            return f"({x})"
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
    if slot >= len(scales) or not scales[slot]:
        return None
    if dtype == "int8":   # an int8 tensor an int8 layer reads at a scale holds codes
        return Scale(layer, scales[slot], codes=True)
    if dtype not in FLOATS:
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
    if dtype not in FLOATS and not (scale is not None and scale.codes):
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
            "}", f"{result} = {'q == q ? q : 0.f' if scale.codes else f'i8_value(q, {table})'};", "}"]


def output_scale(ctx: LowerContext, layer: dict, out: int) -> Scale | None:
    """The saturation scale of an int8 layer's float output (None for a non-float output: stored as computed);
    an int8 output of an int8 layer holds codes."""
    if ctx.dtype(out) == "int8":
        return Scale(layer, layer["attrs"]["int8"]["output_scale"], codes=True)
    if ctx.dtype(out) not in FLOATS:
        return None
    if ctx.dtype(out) != "float32":   # the dequantization tables hold float32 values, as int8 plans store
        raise UnsupportedError(f"layer {layer['name']!r}: int8 outputs are float32 tensors (precision.py makes "
                               f"them so), this one is {ctx.dtype(out)}")
    return Scale(layer, layer["attrs"]["int8"]["output_scale"])


def value_table(ctx: LowerContext, pointers: Pointers, scale: Scale | None) -> str:
    """The pointer expression of the dequantization table a float output stores through ("" for codes)."""
    return pointers.expr(scale.table(ctx), "float") if scale is not None and not scale.codes else ""


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
    lines += segment(ctx, program, sources, scale, value_table(ctx, pointers, scale), "y", ctx.dtype(out))
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
        lines += segment(ctx, [], [source], scale, value_table(ctx, pointers, scale), "y", ctx.dtype(dst))
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
    lines += segment(ctx, [], [source], scale, value_table(ctx, pointers, scale), "y")
    return [_element_kernel(ctx, "int8_pool", count, out, lines, "i", pointers, tactic=f"int8-pool-{kind.value}")]


def reformat_codes(ctx: LowerContext, layer: dict) -> list[Launch]:
    """A quantize (float → int8 codes) or dequantize (codes → float32) Reformat layer, as kernels/cpu/int8.py's
    ``reformat_codes``: q = clamp(rint(x / s), -128, 127) (NaN → 0), x = float32(double(q) * s)."""
    x, out = layer["inputs"][0], layer["outputs"][0]
    count = cg.numel(ctx.shape(out))
    if count == 0:
        return []
    scale, pointers = Scale(layer, layer["attrs"]["scale"]), Pointers()
    load = cg.load(pointers.expr(ptr(x), cg.ctype(ctx.dtype(x))), "i", ctx.dtype(x))
    if ctx.dtype(out) == "int8":
        if ctx.dtype(x) not in ("float32", "float16"):
            raise UnsupportedError(f"layer {layer['name']!r}: quantizes a {ctx.dtype(x)} tensor; the int8 kernels "
                                   "quantize float32 or float16")
        lines, verb = [f"const float q = {scale.code(f'float({load})')};", "y = q == q ? q : 0.f;"], "quantize"
    else:
        lines, verb = [f"y = float(double({load}) * {cg.literal(scale.value, 'double')});"], "dequantize"
    return [_element_kernel(ctx, f"int8_{verb}", count, out, lines, "i", pointers, tactic=f"int8-{verb}")]


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
