"""Data movement kinds: Shuffle, Slice, Expand, Tile, Concatenation, Padding, Gather, Resize, and the
linear Quantize / Dequantize (per tensor, per axis or blocked scales).

Each output element is one thread; where it reads from is an index expression with the shapes
baked in (strides of a view: transposes, slices with any step, broadcasts), or, for shuffles
whose reshape mixes transposed axes so no strides describe them, a table of source indices the
plan ships. Resize reads per-axis tap tables (indices and weights) computed at build time by the
CPU reference's own coordinate code, so both backends agree on every coordinate mode.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind, PaddingMode
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr


def copy_kernel(ctx: LowerContext, src: int, dst: int, count: int, src_index: str, dst_index: str = "i",
                table: list | None = None, tactic: str = "copy", dst_offset: int = 0) -> Launch:
    """out[dst_index(i)] = in[src_index(i)] for i < count (``tab`` holds a source index table)."""
    src_t, dst_t = cg.ctype(ctx.dtype(src)), cg.ctype(ctx.dtype(dst))
    itype = cg.index_type(count, cg.numel(ctx.shape(src)), cg.numel(ctx.shape(dst)))
    value = "in[" + src_index + "]"
    if src_t != dst_t:
        value = cg.store_value(cg.cast_expr(f"to_compute({value})" if src_t == "half_t" else value,
                                            cg.compute_ctype(ctx.dtype(src)), ctx.dtype(dst)), ctx.dtype(dst))
    table_arg = f", const {'i32' if count < 2**31 else 'i64'}* __restrict__ tab" if table else ""
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({dst_t}* out, const {src_t}* __restrict__ in{table_arg}) {{
    const {itype} i = {itype}(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    out[{dst_index}] = {value};
}}
"""
    name = ctx.kernel("copy", source)
    params = [ptr(dst, dst_offset), ptr(src)] + ([table] if table else [])
    return Launch(name, grid_for(count), (BLOCK, 1, 1), params, tactic=tactic)


def affine_strides(index: np.ndarray) -> list[int] | None:
    """Strides s with index[c] == index[0] + sum(c_d * s_d) for every coordinate c, or None."""
    base = int(index.flat[0]) if index.size else 0
    strides = []
    for axis, size in enumerate(index.shape):
        unit = [0] * index.ndim
        if size > 1:
            unit[axis] = 1
            strides.append(int(index[tuple(unit)]) - base)
        else:
            strides.append(0)
    predicted = np.full(index.shape, base, dtype=np.int64)
    for axis, stride in enumerate(strides):
        shape = [1] * index.ndim
        shape[axis] = index.shape[axis]
        predicted = predicted + (np.arange(index.shape[axis], dtype=np.int64) * stride).reshape(shape)
    return strides if np.array_equal(predicted, index) else None


def gather_by_index(ctx: LowerContext, src: int, dst: int, index: np.ndarray, tactic: str) -> Launch:
    """Copy where out[i] = in[index[i]]: strided when the index map is affine, else through a table."""
    count = int(index.size)
    strides = affine_strides(index)
    if strides is not None:
        base = int(index.flat[0]) if count else 0
        return copy_kernel(ctx, src, dst, count, cg.index_expr("i", index.shape, strides, base), tactic=tactic)
    table = ctx.add_aux(index.astype(np.int32 if count < 2**31 else np.int64).reshape(-1))
    return copy_kernel(ctx, src, dst, count, "tab[i]", table=table, tactic=tactic + "-table")


@lowering(LayerKind.SHUFFLE)
def lower_shuffle(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    from edgert.kernels.cpu.shuffle import shuffled
    src, dst = layer["inputs"][0], layer["outputs"][0]
    count = cg.numel(ctx.shape(src))
    if count == 0:
        return []
    index = np.ascontiguousarray(shuffled(layer.get("attrs") or {}, np.arange(count).reshape(ctx.shape(src))))
    return [gather_by_index(ctx, src, dst, index.reshape(ctx.shape(dst)), "shuffle")]


@lowering(LayerKind.SLICE)
def lower_slice(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    src, dst = layer["inputs"][0], layer["outputs"][0]
    attrs, out_shape = layer["attrs"], ctx.shape(dst)
    if cg.numel(out_shape) == 0:
        return []
    base_strides = cg.contiguous_strides(ctx.shape(src))
    strides = [s * int(step) for s, step in zip(base_strides, attrs["steps"])]
    offset = sum(int(start) * s for start, s in zip(attrs["starts"], base_strides))
    return [copy_kernel(ctx, src, dst, cg.numel(out_shape), cg.index_expr("i", out_shape, strides, offset),
                        tactic="slice")]


@lowering(LayerKind.EXPAND)
def lower_expand(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    src, dst = layer["inputs"][0], layer["outputs"][0]
    out_shape = ctx.shape(dst)
    if cg.numel(out_shape) == 0:
        return []
    strides = cg.broadcast_strides(ctx.shape(src), out_shape)
    return [copy_kernel(ctx, src, dst, cg.numel(out_shape), cg.index_expr("i", out_shape, strides),
                        tactic="expand")]


@lowering(LayerKind.TILE)
def lower_tile(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    src, dst = layer["inputs"][0], layer["outputs"][0]
    in_shape, repeats = ctx.shape(src), [int(r) for r in layer["attrs"]["repeats"]]
    if cg.numel(ctx.shape(dst)) == 0:
        return []
    # The output seen as (r0, d0, r1, d1, ...): the input repeats along every r axis (stride 0).
    shape = [n for pair in zip(repeats, in_shape) for n in pair]
    strides = [n for s in cg.contiguous_strides(in_shape) for n in (0, s)]
    return [copy_kernel(ctx, src, dst, cg.numel(shape), cg.index_expr("i", shape, strides), tactic="tile")]


@lowering(LayerKind.CONCATENATION)
def lower_concatenation(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    dst = layer["outputs"][0]
    out_shape = ctx.shape(dst)
    axis = int(layer["attrs"]["axis"]) % len(out_shape)
    out_strides = cg.contiguous_strides(out_shape)
    launches, start = [], 0
    for src in layer["inputs"]:
        in_shape = ctx.shape(src)
        offset = start * out_strides[axis]
        start += in_shape[axis]
        count = cg.numel(in_shape)
        if count == 0 or ctx.placed_at(src, dst, offset * ctx.itemsize(dst)):
            continue   # the memory planner already made the producer write into its slice
        launches.append(copy_kernel(ctx, src, dst, count, "i", cg.index_expr("i", in_shape, out_strides),
                                    tactic="concat", dst_offset=offset * ctx.itemsize(dst)))
    return launches


def _pad_axis(mode: PaddingMode, name: str, size: int, begin: int, end: int) -> tuple[list[str], str | None]:
    """Statements mapping output coordinate ``name`` to the input's, and the validity test (constant mode)."""
    core_begin, core = max(0, -begin), size - max(0, -begin) - max(0, -end)
    pad_begin = max(0, begin)
    lines = [f"i32 {name}s = {name} - {pad_begin};"]
    valid = None
    if mode == PaddingMode.CONSTANT:
        valid = f"((u32){name}s < {core}u)"
    elif mode == PaddingMode.EDGE:
        lines.append(f"{name}s = {name}s < 0 ? 0 : ({name}s >= {core} ? {core - 1} : {name}s);")
    elif mode == PaddingMode.WRAP:
        lines.append(f"{name}s = (({name}s % {core}) + {core}) % {core};")
    elif mode == PaddingMode.REFLECT:
        if core == 1:
            lines.append(f"{name}s = 0;")
        else:
            period = 2 * (core - 1)
            lines.append(f"{name}s = (({name}s % {period}) + {period}) % {period};")
            lines.append(f"if ({name}s >= {core}) {name}s = {period} - {name}s;")
    lines.append(f"{name}s += {core_begin};")
    return lines, valid


@lowering(LayerKind.PADDING)
def lower_padding(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    if len(layer["inputs"]) > 1 and layer["inputs"][1] >= 0:   # pads computed at run time from a count
        from edgert.kernels.cuda.lower_detect import lower_run_time_padding
        return lower_run_time_padding(ctx, layer)
    src, dst = layer["inputs"][0], layer["outputs"][0]
    attrs = layer["attrs"]
    in_shape, out_shape = ctx.shape(src), ctx.shape(dst)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    rank = len(in_shape)
    pads = [int(p) for p in attrs["pads"]]
    mode = PaddingMode(attrs.get("mode", PaddingMode.CONSTANT))
    if mode != PaddingMode.CONSTANT and cg.numel(in_shape) == 0:
        raise UnsupportedError(f"layer {layer['name']!r}: {mode.value} padding of an empty tensor")
    lines, checks = ["i64 rest = i;"], []
    for axis in range(rank - 1, -1, -1):
        lines.append(f"const i32 c{axis} = i32(rest % {out_shape[axis]}); rest /= {out_shape[axis]};")
    for axis in range(rank):
        axis_lines, valid = _pad_axis(mode, f"c{axis}", in_shape[axis], pads[axis], pads[rank + axis])
        lines += axis_lines
        if valid:
            checks.append(valid)
    in_strides = cg.contiguous_strides(in_shape)
    offset = " + ".join(f"i64(c{a}s) * {in_strides[a]}" for a in range(rank)) or "0"
    dtype = ctx.dtype(dst)
    t = cg.ctype(dtype)
    value = cg.store_value(cg.literal(float(attrs.get("value", 0) or 0), cg.compute_ctype(dtype)), dtype)
    read = f"in[{offset}]"
    result = f"({' && '.join(checks)}) ? {read} : {value}" if checks else read
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({t}* out, const {t}* __restrict__ in) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = {result};
}}
"""
    return [Launch(ctx.kernel("pad", source), grid_for(count), (BLOCK, 1, 1), [ptr(dst), ptr(src)],
                   tactic=f"pad-{mode.value}")]


@lowering(LayerKind.GATHER)
def lower_gather(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    data, indices = layer["inputs"][0], layer["inputs"][1]
    dst = layer["outputs"][0]
    data_shape = ctx.shape(data)
    axis = int(layer["attrs"]["axis"]) % len(data_shape)
    count = cg.numel(ctx.shape(dst))
    if count == 0:
        return []
    dim, inner = data_shape[axis], cg.numel(data_shape[axis + 1:])
    positions = cg.numel(ctx.shape(indices))
    t, it = cg.ctype(ctx.dtype(data)), cg.ctype(ctx.dtype(indices))
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({t}* out, const {t}* __restrict__ data,
                                                   const {it}* __restrict__ indices) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    const i64 inner = i % {inner}, j = (i / {inner}) % {positions}, outer = i / {inner * positions};
    i64 index = i64(indices[j]);
    if (index < 0) index += {dim};
    index = index < 0 ? 0 : (index >= {dim} ? {dim - 1} : index);   // out-of-range indices clamp
    out[i] = data[(outer * {dim} + index) * {inner} + inner];
}}
"""
    return [Launch(ctx.kernel("gather", source), grid_for(count), (BLOCK, 1, 1), [ptr(dst), ptr(data), ptr(indices)],
                   tactic="gather")]


def _resize_tables(attrs: dict, in_len: int, out_len: int, scale: float, roi, wide: bool):
    """(indices (out, K), weights (out, K) or None, extrapolate mask or None) of one resized axis."""
    from edgert.kernels.cpu import resize as ref
    x, extrapolate = ref._source_coords(attrs.get("coordinate_mode", "half_pixel"), out_len, in_len, scale, roi)
    if attrs.get("mode", "nearest") == "nearest":
        indices, weights = ref._nearest_taps(x, attrs.get("nearest_mode", "round_prefer_floor"), scale)
    else:
        indices, weights = ref._filter_taps(x, attrs["mode"], scale, attrs)
        if attrs.get("exclude_outside"):
            weights = np.where((indices < 0) | (indices >= in_len), 0.0, weights)
            total = weights.sum(axis=1, keepdims=True)
            weights = weights / np.where(total == 0, 1.0, total)
        weights = weights.astype(np.float64 if wide else np.float32)
    indices = np.clip(indices, 0, in_len - 1).astype(np.int32)
    mask = extrapolate.astype(np.uint8) if extrapolate is not None and extrapolate.any() else None
    return indices, weights, mask


@lowering(LayerKind.RESIZE)
def lower_resize(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    from edgert.kernels.cpu import resize as ref
    src, dst = layer["inputs"][0], layer["outputs"][0]
    attrs = layer["attrs"]
    in_shape, out_shape = ctx.shape(src), ctx.shape(dst)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    rank, roi = len(in_shape), attrs.get("roi")
    dtype = ctx.dtype(src)
    wide = dtype in ("float64", "int32", "int64", "uint32", "uint64")
    acc = "double" if wide else "float"
    nearest = attrs.get("mode", "nearest") == "nearest"
    in_strides = cg.contiguous_strides(in_shape)
    lines, params, args = ["i64 rest = i;"], [ptr(dst), ptr(src)], []
    for axis in range(rank - 1, -1, -1):
        lines.append(f"const i32 c{axis} = i32(rest % {out_shape[axis]}); rest /= {out_shape[axis]};")
    fixed, loops, closing, weight_terms, masks = [], [], [], [], []
    for axis in range(rank):
        axis_roi = None if roi is None else (float(roi[axis]), float(roi[rank + axis]))
        scale = float(attrs["scales"][axis])
        if ref._is_identity(scale, in_shape[axis], out_shape[axis], axis_roi):
            fixed.append(f"i64(c{axis}) * {in_strides[axis]}")
            continue
        indices, weights, mask = _resize_tables(attrs, in_shape[axis], out_shape[axis], scale, axis_roi, wide)
        taps = indices.shape[1]
        params.append(ctx.add_aux(indices))
        args.append(f"const i32* __restrict__ idx{axis}")
        if weights is not None:
            params.append(ctx.add_aux(weights))
            args.append(f"const {acc}* __restrict__ wt{axis}")
            weight_terms.append(f"wt{axis}[c{axis} * {taps} + t{axis}]")
        if mask is not None:
            params.append(ctx.add_aux(mask))
            args.append(f"const u8* __restrict__ ex{axis}")
            masks.append(f"ex{axis}[c{axis}]")
        loops.append(f"for (i32 t{axis} = 0; t{axis} < {taps}; ++t{axis}) {{")
        fixed.append(f"i64(idx{axis}[c{axis} * {taps} + t{axis}]) * {in_strides[axis]}")
        closing.append("}")
    t = cg.ctype(dtype)
    offset = " + ".join(fixed) or "0"
    if nearest:
        value = f"in[{offset}]"
        body = loops + [f"result = {value};"] + closing
        lines += [f"{t} result = in[0];"] + body
        store = "result"
    else:
        weight = " * ".join(weight_terms) or "1"
        lines += [f"{acc} acc = 0;"] + loops + [f"acc += {acc}(to_compute(in[{offset}])) * {weight};"] + closing
        store = _round_store("acc", acc, ctx.dtype(dst))
    if masks:
        fill = cg.store_value(cg.literal(float(attrs.get("extrapolation", 0.0)), acc), ctx.dtype(dst))
        store = f"({' || '.join(masks)}) ? {fill} : {store}"
    body = "\n    ".join(lines)
    extra = "".join(", " + a for a in args)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({t}* out, const {t}* __restrict__ in{extra}) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = {store};
}}
"""
    return [Launch(ctx.kernel("resize", source), grid_for(count), (BLOCK, 1, 1), params,
                   tactic=f"resize-{attrs.get('mode', 'nearest')}")]


def _round_store(value: str, acc: str, dtype: str) -> str:
    """Store an interpolated value: integers round half to even and saturate, as the CPU kernel does."""
    if dtype in ("float16", "float32", "float64"):
        return cg.store_value(value, dtype)
    if dtype == "bool":
        return f"(rint({value}) != 0)"
    info = np.iinfo(dtype)
    return (f"({cg.ctype(dtype)})(rint({value}) < {float(info.min)} ? {float(info.min)} : "
            f"(rint({value}) > {float(info.max)} ? {float(info.max)} : rint({value})))")


def _quant_param(ctx: LowerContext, tensor: int, x_shape, attrs: dict, var: str) -> str:
    """Index of a per-tensor / per-axis / blocked scale or zero point for element ``var`` of x."""
    if cg.numel(ctx.shape(tensor)) == 1 or not x_shape:
        return "0"
    axis = int(attrs.get("axis", 1)) % len(x_shape)
    inner = cg.numel(x_shape[axis + 1:])
    coordinate = f"(({var} / {inner}) % {x_shape[axis]})"
    block = int(attrs.get("block_size", 0) or 0)
    return f"({coordinate} / {block})" if block else coordinate


@lowering(LayerKind.QUANTIZE, LayerKind.DEQUANTIZE)
def lower_quantization(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    inputs, out = layer["inputs"], layer["outputs"][0]
    x, scale = inputs[0], inputs[1]
    zero = inputs[2] if len(inputs) > 2 and inputs[2] >= 0 else None
    attrs, x_shape, out_dtype = layer.get("attrs") or {}, ctx.shape(x), ctx.dtype(out)
    count = cg.numel(x_shape)
    if count == 0:
        return []
    quantize = LayerKind(layer["kind"]) == LayerKind.QUANTIZE
    wide = "double" if "float64" in (ctx.dtype(x), ctx.dtype(scale), out_dtype) else "float"
    fn = (lambda name: name + "f" if wide == "float" else name)
    s_index = _quant_param(ctx, scale, x_shape, attrs, "i")
    args = [f"{cg.ctype(out_dtype)}* out", f"const {cg.ctype(ctx.dtype(x))}* __restrict__ x",
            f"const {cg.ctype(ctx.dtype(scale))}* __restrict__ scale"]
    params = [ptr(out), ptr(x), ptr(scale)]
    zp = "0"
    if zero is not None:
        args.append(f"const {cg.ctype(ctx.dtype(zero))}* __restrict__ zero")
        params.append(ptr(zero))
        zp = f"{wide}({cg.load('zero', _quant_param(ctx, zero, x_shape, attrs, 'i'), ctx.dtype(zero))})"
    s_value = f"{wide}({cg.load('scale', s_index, ctx.dtype(scale))})"
    x_value = f"{wide}({cg.load('x', 'i', ctx.dtype(x))})"
    if quantize:   # round half to even, add the zero point, saturate
        info = np.iinfo(out_dtype)
        value = f"{fn('rint')}({x_value} / {s_value}) + {zp}"
        result = f"({cg.ctype(out_dtype)})(v < {float(info.min)} ? {float(info.min)} : (v > {float(info.max)} ? {float(info.max)} : v))"
    else:
        value = f"({x_value} - {zp}) * {s_value}"
        result = cg.store_value("v", out_dtype)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    const {wide} v = {value};
    out[i] = {result};
}}
"""
    name = ctx.kernel("quantize" if quantize else "dequantize", source)
    return [Launch(name, grid_for(count), (BLOCK, 1, 1), params, tactic=layer["kind"].lower())]
