"""Einsum (the equations the importer does not lower to matrix products), GridSample and RoiAlign.

One thread per output element, as the CPU references compute it (kernels/cpu/einsum.py, grid_sample.py,
roi_align.py): Einsum sums the products over its contracted letters in nested loops (ellipses, broadcasting and
diagonals resolved at build time into per-operand strides); GridSample maps each coordinate to pixel space,
clamps or reflects it and sums its 1, 2 or 4 taps per spatial dim; RoiAlign averages (or takes the max of) its bin's
bilinear samples. They compute in float (double for float64), so they agree with the references within the
numerics contract, not bit for bit.
"""

from __future__ import annotations

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr


# -- Einsum ------------------------------------------------------------------------------------------------
def einsum_letters(equation: str, shapes: list) -> tuple[list[str], str, dict[str, int]]:
    """(operand letters, output letters, size of each letter) with ellipses spelled as digits ('0' the outermost
    broadcast dim), following NumPy's einsum: ellipsis dims align to the right and broadcast, an implicit output is
    the ellipsis dims then the letters used once, alphabetically."""
    left, arrow, right = equation.replace(" ", "").partition("->")
    terms = left.split(",")
    if len(terms) != len(shapes):
        raise UnsupportedError(f"Einsum {equation!r}: {len(terms)} operands in the equation, {len(shapes)} inputs")
    widths = [len(shape) - (len(term) - 3) if "..." in term else 0 for term, shape in zip(terms, shapes)]
    width = max(widths, default=0)
    ellipsis = "".join(str(d) for d in range(width))
    expanded = [term.replace("...", ellipsis[width - w:]) for term, w in zip(terms, widths)]
    if arrow:
        output = right.replace("...", ellipsis)
    else:
        letters = "".join(t for t in terms).replace("...", "")
        output = ellipsis + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    sizes: dict[str, int] = {}
    for term, shape in zip(expanded, shapes):
        if len(term) != len(shape):
            raise UnsupportedError(f"Einsum {equation!r}: operand letters {term!r} for a rank-{len(shape)} input")
        for letter, dim in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(dim))
    return expanded, output, sizes


@lowering(LayerKind.EINSUM)
def lower_einsum(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    inputs, out = layer["inputs"], layer["outputs"][0]
    shapes = [ctx.shape(t) for t in inputs]
    terms, output, sizes = einsum_letters(layer["attrs"]["equation"], shapes)
    out_shape, dtype = ctx.shape(out), ctx.dtype(out)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    t = cg.compute_ctype(dtype) if dtype != "bool" else "i32"
    names = {letter: f"c{index}" for index, letter in enumerate(sorted(sizes))}
    lines = ["i64 rest = i;"]
    for letter in reversed(output):
        lines.append(f"const i64 {names[letter]} = rest % {sizes[letter]}; rest /= {sizes[letter]};")
    contracted = [letter for letter in sorted(sizes) if letter not in output]
    offsets = []
    for term, shape in zip(terms, shapes):
        strides = cg.contiguous_strides(shape)
        parts = [f"{names[letter]} * {stride}" for letter, dim, stride in zip(term, shape, strides) if dim != 1]
        offsets.append(" + ".join(parts) or "0")
    product = " * ".join(f"{t}({cg.load(f'in{k}', offsets[k], ctx.dtype(tensor))})" for k, tensor in enumerate(inputs))
    loops = "".join(f"for (i64 {names[letter]} = 0; {names[letter]} < {sizes[letter]}; ++{names[letter]}) "
                    for letter in contracted)
    lines += [f"{t} total = 0;", f"{loops}total += {product};"]
    args = [f"{cg.ctype(dtype)}* out"] + [f"const {cg.ctype(ctx.dtype(tensor))}* __restrict__ in{k}"
                                          for k, tensor in enumerate(inputs)]
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = {cg.store_value('total', dtype)};
}}
"""
    return [Launch(ctx.kernel("einsum", source), grid_for(count), (BLOCK, 1, 1), [ptr(out)] + [ptr(t) for t in inputs],
                   tactic="einsum-direct")]


# -- GridSample --------------------------------------------------------------------------------------------
_GRID_HELPERS = r"""
template <class T> EDGERT_FN T grid_reflect(T v, T low, T high) {   // kernels/cpu/grid_sample.py reflect()
    const T span = high - low;
    if (span <= T(0)) return low;
    if (v >= low && v <= high) return v;
    const bool below = v < low;
    const T distance = below ? low - v : v - high;
    const T folds = floor(distance / span);
    const T rest = distance - folds * span;
    const bool even = fmod(folds, T(2)) == T(0);
    return below ? (even ? low + rest : high - rest) : (even ? high - rest : low + rest);
}
"""


def _grid_axis_lines(d: int, size: int, attrs: dict, t: str) -> list[str]:
    """Statements giving spatial dim ``d`` its taps: idx{d}[k], w{d}[k] for k < TAPS (kernels/cpu/grid_sample.py _taps)."""
    align, padding, mode = bool(attrs.get("align_corners")), attrs["padding_mode"], attrs["mode"]
    low, high = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    lit = (lambda v: cg.literal(v, t))
    fn = (lambda name: name + "f" if t == "float" else name)
    g = f"g{d}"
    if align:
        x = f"({g} + {lit(1)}) / {lit(2)} * {lit(size - 1)}"
    else:
        x = f"(({g} + {lit(1)}) * {lit(size)} - {lit(1)}) / {lit(2)}"
    lines = [f"{t} x{d} = {x};"]
    if mode == "nearest":
        lines.append(f"x{d} = {fn('rint')}(x{d});")
    if padding == "border":
        lines.append(f"if (x{d} < {lit(low)} || x{d} > {lit(high)}) x{d} = x{d} < {lit(0)} ? {lit(0)} : "
                     f"(x{d} > {lit(size - 1)} ? {lit(size - 1)} : x{d});")
    elif padding == "reflection":
        lines.append(f"x{d} = grid_reflect<{t}>(x{d}, {lit(low)}, {lit(high)});")
    if mode == "nearest":
        lines += [f"const {t} base{d} = {fn('trunc')}(x{d});", f"{t} w{d}[1] = {{{lit(1)}}};"]
        offsets = [0]
    else:
        lines += [f"const {t} base{d} = {fn('floor')}(x{d});", f"const {t} t{d} = x{d} - base{d};"]
        if mode == "linear":
            offsets = [0, 1]
            lines.append(f"{t} w{d}[2] = {{{lit(1)} - t{d}, t{d}}};")
        else:
            offsets = [-1, 0, 1, 2]
            a = -0.75

            def near(v):
                return f"(({lit(a + 2)} * ({v}) - {lit(a + 3)}) * ({v}) * ({v}) + {lit(1)})"

            def far(v):
                return f"((({lit(a)} * ({v}) - {lit(5 * a)}) * ({v}) + {lit(8 * a)}) * ({v}) - {lit(4 * a)})"
            lines.append(f"{t} w{d}[4] = {{{far(f't{d} + {lit(1)}')}, {near(f't{d}')}, {near(f'{lit(1)} - t{d}')}, "
                         f"{far(f'{lit(2)} - t{d}')}}};")
    lines.append(f"i64 idx{d}[{len(offsets)}];")
    for k, offset in enumerate(offsets):
        index = f"(base{d} + {lit(offset)})"
        if padding == "zeros":
            lines.append(f"if (!({index} >= {lit(0)} && {index} < {lit(size)})) w{d}[{k}] = {lit(0)};")
        elif padding == "border":
            index = f"({index} < {lit(0)} ? {lit(0)} : ({index} > {lit(size - 1)} ? {lit(size - 1)} : {index}))"
        else:
            index = f"{fn('trunc')}(grid_reflect<{t}>({index}, {lit(low)}, {lit(high)}))"
        lines.append(f"{{ const {t} v = {index}; idx{d}[{k}] = v < {lit(0)} ? 0 : (v > {lit(size - 1)} ? "
                     f"{size - 1} : i64(v)); }}")
    return lines, len(offsets)


@lowering(LayerKind.GRID_SAMPLE)
def lower_grid_sample(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, grid = layer["inputs"][:2]
    out = layer["outputs"][0]
    attrs, dtype = layer["attrs"], ctx.dtype(x)
    x_shape, out_shape = ctx.shape(x), ctx.shape(out)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    spatial = list(x_shape[2:])
    rank = len(spatial)
    if cg.numel(spatial) == 0:
        raise UnsupportedError(f"layer {layer['name']!r}: GridSample of an empty image")
    t = "double" if dtype == "float64" else "float"
    ctx.define("grid_reflect", _GRID_HELPERS)
    positions = cg.numel(out_shape[2:])
    lines = [f"const i64 o = i % {positions}, c = (i / {positions}) % {x_shape[1]}, n = i / ({positions} * {x_shape[1]});",
             f"const auto* gp = grid + (n * {positions} + o) * {rank};"]
    taps = []
    for d in range(rank):   # the grid's last axis lists coordinates innermost dim first
        lines.append(f"const {t} g{d} = {t}({cg.load('gp', str(rank - 1 - d), ctx.dtype(grid))});")
        axis_lines, count_taps = _grid_axis_lines(d, spatial[d], attrs, t)
        lines += axis_lines
        taps.append(count_taps)
    strides = cg.contiguous_strides(spatial)
    plane = cg.numel(spatial)
    lines += [f"const auto* xc = x + (n * {x_shape[1]} + c) * {plane};", f"{t} total = 0;"]
    loops = "".join(f"for (int k{d} = 0; k{d} < {taps[d]}; ++k{d}) " for d in range(rank))
    weight = " * ".join(f"w{d}[k{d}]" for d in range(rank))
    flat = " + ".join(f"idx{d}[k{d}] * {strides[d]}" for d in range(rank))
    lines.append(f"{loops}total += ({weight}) * {t}({cg.load('xc', flat, dtype)});")
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({cg.ctype(ctx.dtype(out))}* out, const {cg.ctype(dtype)}* __restrict__ x,
                                                   const {cg.ctype(ctx.dtype(grid))}* __restrict__ grid) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = {cg.store_value('total', ctx.dtype(out))};
}}
"""
    return [Launch(ctx.kernel("grid_sample", source), grid_for(count), (BLOCK, 1, 1), [ptr(out), ptr(x), ptr(grid)],
                   tactic=f"grid-sample-{attrs['mode']}-{attrs['padding_mode']}")]


# -- RoiAlign ----------------------------------------------------------------------------------------------
_ROI_HELPERS = r"""
struct RoiTap { i64 low, high; double w_low, w_high; bool outside; };
// One sample position along an axis, as kernels/cpu/roi_align.py _sample_axis() computes it (in double).
EDGERT_FN RoiTap roi_tap(double start, double bin_size, i64 bin, i64 sample, i64 grid, i64 size) {
    RoiTap tap;
    double pos = start + double(bin) * bin_size + (double(sample) + 0.5) * bin_size / double(grid);
    tap.outside = pos < -1.0 || pos > double(size);
    pos = pos < 0.0 ? 0.0 : pos;
    i64 low = i64(pos);
    const bool at_edge = low >= size - 1;
    if (at_edge) { low = size - 1; pos = double(low); }
    tap.low = low;
    tap.high = at_edge ? size - 1 : low + 1;
    tap.w_high = pos - double(low);
    tap.w_low = 1.0 - tap.w_high;
    return tap;
}
"""


@lowering(LayerKind.ROI_ALIGN)
def lower_roi_align(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, rois, batch_indices = layer["inputs"][:3]
    out = layer["outputs"][0]
    attrs, dtype = layer["attrs"], ctx.dtype(x)
    x_shape, out_shape = ctx.shape(x), ctx.shape(out)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    batch, channels, height, width = x_shape
    bins_h, bins_w = int(attrs["output_height"]), int(attrs["output_width"])
    half_pixel = bool(attrs.get("half_pixel"))
    ratio = int(attrs["sampling_ratio"])
    ctx.define("roi_tap", _ROI_HELPERS)
    grid = (lambda size, bins: str(ratio) if ratio > 0 else f"(i64)ceil({size} / {bins}.0) > 0 ? (i64)ceil({size} / {bins}.0) : 0")
    minimum = "" if half_pixel else "roi_w = roi_w > 1.0 ? roi_w : 1.0; roi_h = roi_h > 1.0 ? roi_h : 1.0;"
    if attrs["mode"] == "avg":
        init, step, final = "0.0", "acc += (t0 + t1) + t2 + t3;", "acc / double(grid_h * grid_w > 0 ? grid_h * grid_w : 1)"
    else:
        init = "-inf_d()"
        step = ("double m = t0 > t1 ? t0 : t1; m = m > t2 ? m : t2; m = m > t3 ? m : t3; acc = acc > m ? acc : m;")
        final = "acc"
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({cg.ctype(ctx.dtype(out))}* out, const {cg.ctype(dtype)}* __restrict__ x,
        const {cg.ctype(ctx.dtype(rois))}* __restrict__ rois, const {cg.ctype(ctx.dtype(batch_indices))}* __restrict__ batch_indices) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    const i64 pw = i % {bins_w}, ph = (i / {bins_w}) % {bins_h}, c = (i / {bins_w * bins_h}) % {channels};
    const i64 r = i / {bins_w * bins_h * channels};
    const i64 b = i64(batch_indices[r]);
    const double scale = {float(attrs["spatial_scale"])!r}, offset = {0.5 if half_pixel else 0.0};
    const double x1 = double({cg.load('rois', 'r * 4 + 0', ctx.dtype(rois))}) * scale - offset;
    const double y1 = double({cg.load('rois', 'r * 4 + 1', ctx.dtype(rois))}) * scale - offset;
    const double x2 = double({cg.load('rois', 'r * 4 + 2', ctx.dtype(rois))}) * scale - offset;
    const double y2 = double({cg.load('rois', 'r * 4 + 3', ctx.dtype(rois))}) * scale - offset;
    double roi_w = x2 - x1, roi_h = y2 - y1;
    {minimum}
    if (b < 0 || b >= {batch} || !(roi_w - roi_w == 0.0) || !(roi_h - roi_h == 0.0)) {{   // the CPU kernel raises
        out[i] = {cg.store_value('nan_f()', ctx.dtype(out))};
        return;
    }}
    const i64 grid_h = {grid('roi_h', bins_h)}, grid_w = {grid('roi_w', bins_w)};
    const auto* image = x + (b * {channels} + c) * {height * width};
    double acc = {init};
    for (i64 sy = 0; sy < grid_h; ++sy) {{
        const RoiTap ty = roi_tap(y1, roi_h / {bins_h}.0, ph, sy, grid_h, {height});
        for (i64 sx = 0; sx < grid_w; ++sx) {{
            const RoiTap tx = roi_tap(x1, roi_w / {bins_w}.0, pw, sx, grid_w, {width});
            const double keep = (ty.outside || tx.outside) ? 0.0 : 1.0;
            const double t0 = ty.w_low * tx.w_low * keep * double({cg.load('image', f'ty.low * {width} + tx.low', dtype)});
            const double t1 = ty.w_low * tx.w_high * keep * double({cg.load('image', f'ty.low * {width} + tx.high', dtype)});
            const double t2 = ty.w_high * tx.w_low * keep * double({cg.load('image', f'ty.high * {width} + tx.low', dtype)});
            const double t3 = ty.w_high * tx.w_high * keep * double({cg.load('image', f'ty.high * {width} + tx.high', dtype)});
            {step}
        }}
    }}
    if (grid_h * grid_w == 0) acc = 0.0;
    out[i] = {cg.store_value(final, ctx.dtype(out))};
}}
"""
    return [Launch(ctx.kernel("roi_align", source), grid_for(count), (BLOCK, 1, 1),
                   [ptr(out), ptr(x), ptr(rois), ptr(batch_indices)], tactic=f"roi-align-{attrs['mode']}")]
