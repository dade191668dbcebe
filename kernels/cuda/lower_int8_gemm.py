"""int8 Convolution and MatrixMultiply on CUDA: the integer GEMM of ``int8.cuh`` (dp4a on sm_61+, s8
tensor cores on sm_80+) and a direct kernel for depthwise and 3-D convolutions, with weights quantized at
build time and a generated epilogue per layer. Numerics and conventions: ``lower_int8`` (its docstring),
which dispatches here and holds the shared helpers (scales, pointers, register sources, segments).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.int8 import weight_codes
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, input_index, ptr
from edgert.kernels.cuda.lower_int8 import (MAX_K, MMA_ARCH, PLACEHOLDER, Pointers, Scale, epilogue_steps,
                                            input_scale, output_scale, segment, tensor_source, value_table)


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
    lines += ["float y;"] + segment(ctx, program, sources, scale, value_table(ctx, pointers, scale), "y")
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
    return lines + ["float z;"] + segment(ctx, program, sources, scale, value_table(ctx, pointers, scale), "z") + \
        ["y = z;"]


def weight_words(codes: np.ndarray, bm: int) -> np.ndarray:
    """(groups, M, K) int8 codes → uint32 words of four consecutive k, [group][K/4][M], K padded to a k-tile
    (32) and M to the block tile with zeros, so the kernel's weight loads need no bounds checks."""
    groups, m, k = codes.shape
    k_padded, m_padded = max(32, -(-k // 32) * 32), -(-m // bm) * bm
    padded = np.zeros((groups, m_padded, k_padded), np.int8)
    padded[:, :m, :k] = codes
    words = padded.reshape(groups, m_padded, k_padded // 4, 4).view("<u4")[..., 0]
    return np.ascontiguousarray(words.transpose(0, 2, 1))


def choose_tiles(M: int, N: int, Z: int, K: int, sm_count: int, mma: bool) -> tuple[int, int, int, int]:
    """(BM, BN, threads, splits): the largest tiles the problem fills, shrunk (the larger side first) while some
    SM has no block, but not below 64x64 for tensor cores when K has 8 k-tiles or more; then K split over enough
    blocks (split-K, at least 4 k-tiles of 32 each) that every SM has one. dp4a threads own 4x4 outputs,
    tensor-core warps 32x32 (at most 8 warps)."""
    sizes = (32, 64, 128) if mma else (32, 64)
    k_tiles = max(1, math.ceil(K / 32))
    floor = 64 if mma and k_tiles >= 8 else 32   # a K long enough to split fills the SMs with 4-warp blocks
    def fit(dim):
        return next((s for s in sizes if dim <= s), sizes[-1])
    def blocks(bm, bn):
        return math.ceil(M / bm) * math.ceil(N / bn) * Z
    bm, bn = fit(M), fit(N)
    if bm * bn > 8192:
        bm, bn = (bm, bn // 2) if M >= N else (bm // 2, bn)
    while blocks(bm, bn) < sm_count and max(bm, bn) > floor:
        bm, bn = (bm // 2, bn) if bm > bn else (bm, bn // 2)
    splits = max(1, min(16, math.ceil(sm_count / blocks(bm, bn)), k_tiles // 4))
    splits = math.ceil(k_tiles / math.ceil(k_tiles / splits))   # as the kernel runs it: whole k-tiles per split
    return bm, bn, bm * bn // (32 if mma else 16), splits


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


_WIDE_FIELDS = {"IN_IMG", "GROUP_IN", "OUT_IMG", "ROWS", "BATCH_STRIDE", "ROW_STRIDE", "K_STRIDE", "CHANNELS", "PLANE"}
TAP_CHANNELS = 32   # channels per group that make a convolution tap-major (one k-tile = 32 k)


def emit_gemm(ctx: LowerContext, layer: dict, *, codes: np.ndarray, x: int, out: int, fields: dict, offset: str,
              loader: str, epi: str, pointers: Pointers, ktab: list, tactic: str) -> list[Launch]:
    """Pick tiles, split-K and the math (tensor cores on sm_80+ unless M is tiny), instantiate ``i8_gemm``,
    launch it."""
    groups, M, K = codes.shape
    N = fields["N"]
    if K > MAX_K:
        raise UnsupportedError(f"layer {layer['name']!r}: an int8 dot product of {K} terms could overflow int32 "
                               f"(at most {MAX_K}); build this layer fp16")
    mma = ctx.arch >= MMA_ARCH and M > 16
    bm, bn, threads, splits = choose_tiles(M, N, groups, K, ctx.sm_count, mma)
    words = weight_words(codes, bm)
    geo = geometry_struct(ctx, {"BM": bm, "BN": bn, "THREADS": threads, "M": M, "K": K, "KW": words.shape[1],
                                "MP": words.shape[2], "SPLITS": splits, **fields}, offset)
    math_name = "I8Mma" if mma else "I8Dp4a"
    t, o = cg.ctype(ctx.dtype(x)), cg.ctype(ctx.dtype(out))
    ctx.need("int8.cuh")
    source = f"""
extern "C" __global__ void __launch_bounds__({threads}) KERNEL(const u32* __restrict__ a, const {t}* __restrict__ x,
        {o}* out, const i32* __restrict__ ktab, i32* ws, u32* counters, I8Args e) {{
    i8_gemm<{geo}, {math_name}<{geo}>, {loader}<{geo}, {t}>, {epi}>(a, x, out, ktab, ws, counters, e);
}}
"""
    grid = (math.ceil(N / bn), words.shape[2] // bm, groups * splits)
    if grid[1] > 65535 or grid[2] > 65535:
        raise UnsupportedError(f"layer {layer['name']!r}: int8 GEMM grid {grid} exceeds CUDA limits")
    split_params = [["0"], ["0"]]
    if splits > 1:
        tiles = grid[0] * grid[1] * groups
        ctx.need_workspace(tiles * splits * threads * (32 if mma else 16) * 4)
        ctx.need_counters(tiles)
        split_params = [["w", 0], ["c", 0]]
    params = [ctx.add_aux(words), ptr(x), ptr(out), ktab, *split_params, ["align", 8]] + pointers.packed()
    label = f"{tactic} {'mma' if mma else 'dp4a'} {bm}x{bn}" + (f" splitk{splits}" if splits > 1 else "")
    return [Launch(ctx.kernel("int8_gemm", source), grid, (threads, 1, 1), params, tactic=label)]


def x_fields(ctx: LowerContext, x: int, x_scale: Scale) -> dict:
    """How the activation loader quantizes: at the input's scale, or, for an input of int8 codes
    (``edgert.int8_codes``), at scale 1 (i8_code of an integer-valued float is that integer)."""
    if ctx.dtype(x) == "int8":
        return {"X_INV": 1.0, "X_SCALE": 1.0}
    return {"X_INV": x_scale.inverse, "X_SCALE": x_scale.value}


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


def convolution(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
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
    oc = w_shape[0]
    fields = {"N": x_shape[0] * OH * OW, "OHW": OH * OW, "OW": OW, "H": H, "W": W, "SH": strides[0],
              "SW": strides[1], "PH": begins[0], "PW": begins[1], "IN_IMG": x_shape[1] * H * W,
              "GROUP_IN": cg_in * H * W, "OUT_IMG": oc * OH * OW, **x_fields(ctx, x, x_scale)}
    offset = "(n / OHW) * OUT_IMG + i64(m) * OHW + n % OHW"
    codes = codes.reshape(oc, cg_in, kernel[0], kernel[1])
    if cg_in % TAP_CHANNELS == 0:   # k = (ky, kx, channel): a k-tile is 32 channels of one tap, no table
        fields.update({"C": cg_in, "KX": kernel[1], "DH": dilations[0], "DW": dilations[1], "PLANE": H * W})
        return emit_gemm(ctx, layer, codes=codes.transpose(0, 2, 3, 1).reshape(group, oc // group, -1), x=x,
                         out=out, fields=fields, offset=offset, loader="I8Tap", epi=epi, pointers=pointers,
                         ktab=["0"], tactic="int8-implicit-gemm-tap")
    k = np.arange(cg_in * kernel[0] * kernel[1])
    dy, dx = (k // kernel[1]) % kernel[0] * dilations[0], k % kernel[1] * dilations[1]
    table = np.stack([k // (kernel[0] * kernel[1]) * H * W + dy * W + dx, dy, dx, np.zeros_like(k)], axis=1)
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
    quantizer = x_fields(ctx, x, x_scale)
    body = _decompose(out_shape, ["b", "oc"] + [f"o{d}" for d in range(spatial)]) + [
        f"const i32 g = oc / {w_shape[0] // int(attrs.get('group', 1))};",
        f"const auto* xb = x + (i64(b) * {x_shape[1]} + g * {cg_in}) * {plane};",
        f"const i8* wb = w + i64(oc) * {cg_in * taps};",
        "i32 acc = 0;",
        f"for (i32 ic = 0; ic < {cg_in}; ++ic) {{", *opening,
        f"acc += i8_int(float({x_value}), {cg.literal(quantizer['X_INV'], 'float')}, "
        f"{cg.literal(quantizer['X_SCALE'], 'double')}) * i32(wb[ic * {taps} + {_tap_index(geometry)}]);",
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


def matrix_multiply(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
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
    fields = {"N": columns, **layout, **x_fields(ctx, x, x_scale), "CHANNELS": channels}
    return emit_gemm(ctx, layer, codes=np.ascontiguousarray(channel_codes)[None], x=x, out=out, fields=fields,
                     offset="n * CHANNELS + m", loader="I8Rows", epi=epi, pointers=pointers, ktab=["0"],
                     tactic="int8-gemm")
