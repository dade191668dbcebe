"""Detection and data-dependent kinds: TopK with k, NonZero, NonMaxSuppression, Scatter and the run-time Padding.

Each result equals the CPU reference's (kernels/cpu/topk.py, non_zero.py, nms.py, scatter.py, padding.py) bit for
bit: orders are ranks counted with the reference's comparison (ties: lower index first; NaN where NumPy's sorts put
it), IoUs are computed in double with the reference's operations and no fused multiply-add.

Counts live in device memory (an int64 scalar, edgert/ir/valid_rows.py): a bounded layer writes its count, a
layer reading counted rows reads it there, so nothing waits for the host inside the CUDA graph; the runtime reads
the counts of bounded graph outputs after the run to trim them.

- TopK with k: one thread per element counts the elements better than its own (shared-memory tiles of the row),
  and the first k ranks write themselves; O(L^2) per row of L elements, as the IoU mask of NMS is. The counted
  form (input 1) ranks only the first min(count, L) elements and zeroes the rows past min(k, count).
- NonZero: per-block counts, then each block adds the counts before it and scans its own flags.
- NonMaxSuppression: an IoU bitmask per batch (torchvision's CUDA nms, blocks of 64 boxes against 64), the
  candidates of each (batch, class) ranked by score, one block per (batch, class) walking them greedily with a
  bitset of removed boxes in shared memory, and one block writing the selected rows in (batch, class) order.
- Scatter: a copy of the data, then one thread per independent target applying its updates in index order (the
  reference's order, so repeated indices combine the same way). Out-of-range indices, which the CPU kernel
  reports as an InputError, are skipped: a kernel cannot raise.
- Padding with run-time pads: one thread per output element, the pads read from their tensor.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr
from edgert.kernels.cuda.lower_reduce import row_layout

_NMS_TILE = 64          # boxes per IoU tile (one u64 word of the mask)
_SHARED_LIMIT = 40 * 1024
_MASK_LIMIT = 1 << 30   # workspace bytes of one NMS's IoU bitmask (8400 boxes: 8.9 MB)

# double products that the compiler may not contract into an FMA (the reference rounds each operation)
_DOUBLE_OPS = r"""
#ifdef EDGERT_EMU
EDGERT_FN double dmul_rn(double a, double b) { return a * b; }
#else
EDGERT_FN double dmul_rn(double a, double b) { return __dmul_rn(a, b); }
#endif
EDGERT_FN double nan_min(double a, double b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); }
EDGERT_FN double nan_max(double a, double b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); }
"""


def _clamped_count(name: str, bound: int) -> str:
    return f"i64 {name} = count[0]; {name} = {name} < 0 ? 0 : ({name} > {bound} ? {bound} : {name});"


def _order(t: str, op: str, nan_first: bool) -> str:
    """C lambda better(w, j, v, e): element (w, index j) comes before (v, index e)."""
    floating = t in ("float", "double")
    relation = ">" if op == "max" else "<"
    if floating:
        ahead = f"(w {relation} v || (w != w && v == v))" if nan_first else f"(w {relation} v || (w == w && v != v))"
        equal = "(w == v || (w != w && v != v))"
    else:
        ahead, equal = f"(w {relation} v)", "(w == v)"
    return f"[](const {t} w, const i64 j, const {t} v, const i64 e) {{ return {ahead} || ({equal} && j < e); }}"


def _rank_loop(t: str, load_at: str, limit: str, early: str | None = None, competes: str | None = None) -> list[str]:
    """Statements counting into ``rank`` the elements (of ``limit``) better than this thread's ``v`` (index ``e``,
    counted when ``mine``); ``load_at`` loads element JJ; ``competes(w)``, when given, says which elements count.
    Every thread of the block runs them (barriers inside)."""
    stop = f" && rank < {early}" if early else ""
    store = f"tile[threadIdx.x] = {load_at.replace('JJ', 'start + threadIdx.x')};"
    if competes:
        store += f" ok[threadIdx.x] = {competes}(tile[threadIdx.x]);"
    test = "ok[j] && " if competes else ""
    return [f"__shared__ {t} tile[{BLOCK}];"] + ([f"__shared__ bool ok[{BLOCK}];"] if competes else []) + [
            "i64 rank = 0;",
            f"for (i64 start = 0; start < {limit}; start += {BLOCK}) {{",
            "    __syncthreads();",
            f"    if (start + threadIdx.x < {limit}) {{ {store} }}",
            "    __syncthreads();",
            f"    const i64 m = {limit} - start < {BLOCK} ? {limit} - start : {BLOCK};",
            f"    if (mine{stop}) for (i64 j = 0; j < m; ++j) rank += ({test}better(tile[j], start + j, v, e)) ? 1 : 0;",
            "}"]


# -- TopK with k -------------------------------------------------------------------------------------------
def lower_topk_k(ctx: LowerContext, layer: dict) -> list[Launch]:
    """TopK's full form (attr k): values and int64 indices of the k best along the axis, best first."""
    x, (values, indices) = layer["inputs"][0], layer["outputs"][:2]
    attrs, dtype = layer["attrs"], ctx.dtype(x)
    shape, out_shape = ctx.shape(x), ctx.shape(values)
    axis = int(attrs["axis"]) % len(shape)
    counted = len(layer["inputs"]) > 1 and layer["inputs"][1] >= 0
    k = int(attrs["k"])
    if cg.numel(out_shape) == 0:
        return []
    layout, out_layout = row_layout(shape, [axis]), row_layout(out_shape, [axis])
    length, tiles = layout["length"], -(-layout["length"] // BLOCK)
    t = "i32" if dtype == "bool" else cg.compute_ctype(dtype)
    valid = "n"
    lines = ([_clamped_count("n", length)] if counted else [f"const i64 n = {length};"]) + [
        f"const i64 k = {k} < n ? {k} : n;",
        f"const i64 row = blockIdx.x / {tiles}, e = i64(blockIdx.x % {tiles}) * {BLOCK} + threadIdx.x;",
        f"const i64 base = {cg.index_expr('row', *layout['kept'])}, out_base = {cg.index_expr('row', *out_layout['kept'])};",
        f"auto better = {_order(t, attrs['op'], attrs['op'] == 'max')};",   # NaN counts as the largest
        f"const bool mine = e < {valid};",
        f"const {t} v = mine ? {t}({cg.load('x', 'base + ' + cg.index_expr('e', *layout['red']), dtype)}) : {t}(0);"]
    lines += _rank_loop(t, f"{t}({cg.load('x', 'base + ' + cg.index_expr('(JJ)', *layout['red']), dtype)})", valid, "k")
    out_at = "out_base + " + cg.index_expr("p", *out_layout["red"])
    lines += [f"if (mine && rank < k) {{ const i64 p = rank; values[{out_at}] = x[base + "
              f"{cg.index_expr('e', *layout['red'])}]; indices[{out_at}] = e; }}"]
    if counted:   # rows past min(k, count) hold zeros, as the reference's
        lines += [f"if (e >= k && e < {k}) {{ const i64 p = e; values[{out_at}] = "
                  f"{cg.store_value('0', ctx.dtype(values))}; indices[{out_at}] = 0; }}"]
    body = "\n    ".join(lines)
    args = [f"{cg.ctype(ctx.dtype(values))}* values", f"{cg.ctype(ctx.dtype(indices))}* indices",
            f"const {cg.ctype(dtype)}* __restrict__ x"] + (["const i64* __restrict__ count"] if counted else [])
    params = [ptr(values), ptr(indices), ptr(x)] + ([ptr(layer["inputs"][1])] if counted else [])
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    {body}
}}
"""
    grid = (layout["rows"] * tiles, 1, 1)
    return [Launch(ctx.kernel("topk_rank", source), grid, (BLOCK, 1, 1), params,
                   tactic=f"topk-rank{' counted' if counted else ''}")]


# -- NonZero -----------------------------------------------------------------------------------------------
@lowering(LayerKind.NON_ZERO)
def lower_non_zero(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, (indices, count) = layer["inputs"][0], layer["outputs"][:2]
    shape, dtype = ctx.shape(x) or (1,), ctx.dtype(x)
    total = cg.numel(shape)
    blocks = max(1, -(-total // BLOCK))
    ctx.need("reduce.cuh")
    ctx.need_workspace(8 * blocks)
    xt = cg.ctype(dtype)
    flag = (f"const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;\n"
            f"    const bool flag = i < {total} && {cg.load('x', 'i', dtype)} != 0;")
    counting = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL(i64* block_counts, const {xt}* __restrict__ x) {{
    {flag}
    const i64 found = reduce_group<{BLOCK}>(i64(flag ? 1 : 0), [](const i64 a, const i64 b) {{ return a + b; }});
    if (threadIdx.x == 0) block_counts[blockIdx.x] = found;
}}
"""
    strides = cg.contiguous_strides(shape)
    coordinates = "\n        ".join(f"indices[{d * total}LL + place] = (i / {strides[d]}) % {shape[d]};"
                                   for d in range(len(shape)))
    zeros = "\n        ".join(f"indices[{d * total}LL + i] = 0;" for d in range(len(shape)))
    writing = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL(i64* indices, i64* count, const i64* __restrict__ block_counts,
                                                   const {xt}* __restrict__ x) {{
    {flag}
    i64 before = 0, all = 0;
    for (i64 b = threadIdx.x; b < {blocks}; b += {BLOCK}) {{ all += block_counts[b]; if (b < blockIdx.x) before += block_counts[b]; }}
    auto sum = [](const i64 a, const i64 b) {{ return a + b; }};
    before = reduce_group<{BLOCK}>(before, sum);
    all = reduce_group<{BLOCK}>(all, sum);
    __shared__ i32 scan[{BLOCK}];
    scan[threadIdx.x] = flag ? 1 : 0;
    for (int step = 1; step < {BLOCK}; step <<= 1) {{   // inclusive scan of the block's flags
        __syncthreads();
        const i32 add = threadIdx.x >= step ? scan[threadIdx.x - step] : 0;
        __syncthreads();
        scan[threadIdx.x] += add;
    }}
    if (flag) {{
        const i64 place = before + scan[threadIdx.x] - 1;
        {coordinates}
    }}
    if (i < {total} && i >= all) {{
        {zeros}
    }}
    if (blockIdx.x == 0 && threadIdx.x == 0) count[0] = all;
}}
"""
    work = ["w", 0]
    return [Launch(ctx.kernel("nonzero_count", counting), (blocks, 1, 1), (BLOCK, 1, 1), [work, ptr(x)],
                   tactic="nonzero-count"),
            Launch(ctx.kernel("nonzero_write", writing), (blocks, 1, 1), (BLOCK, 1, 1),
                   [ptr(indices), ptr(count), work, ptr(x)], tactic="nonzero-scan")]


# -- NonMaxSuppression -------------------------------------------------------------------------------------
def _corner_lines(center: int, bt: str) -> list[str]:
    """(y1, x1, y2, x2) in double of box ``p`` (pointer to its 4 coordinates), as kernels/cpu/nms.py corners()."""
    load = (lambda k: f"double({cg.load('p', str(k), bt)})")
    if center:
        return [f"const double cx = {load(0)}, cy = {load(1)}, hw = dmul_rn({load(2)}, 0.5), hh = dmul_rn({load(3)}, 0.5);",
                "c[0] = cy - hh; c[1] = cx - hw; c[2] = cy + hh; c[3] = cx + hw;"]
    return [f"const double a0 = {load(0)}, a1 = {load(1)}, b0 = {load(2)}, b1 = {load(3)};",
            "c[0] = nan_min(a0, b0); c[1] = nan_min(a1, b1); c[2] = nan_max(a0, b0); c[3] = nan_max(a1, b1);"]


def _nms_mask_kernel(ctx: LowerContext, boxes_dtype: str, n_boxes: int, words: int, center: int, iou: float,
                     counted: bool) -> str:
    bt = cg.ctype(boxes_dtype)
    corners = "\n        ".join(_corner_lines(center, boxes_dtype))
    count = _clamped_count("n", n_boxes) if counted else f"const i64 n = {n_boxes};"
    source = f"""
extern "C" __global__ void __launch_bounds__({_NMS_TILE}) KERNEL(u64* mask, const {bt}* __restrict__ boxes{", const i64* __restrict__ count" if counted else ""}) {{
    {count}
    const i64 batch = blockIdx.y, row_tile = blockIdx.x / {words}, col_tile = blockIdx.x % {words};
    if (row_tile * {_NMS_TILE} >= n) return;   // rows past the count are never read
    __shared__ double cols[{_NMS_TILE}][5];
    const i64 j = col_tile * {_NMS_TILE} + threadIdx.x;
    if (j < n) {{
        const {bt}* p = boxes + (batch * {n_boxes} + j) * 4;
        double c[4];
        {corners}
        for (int q = 0; q < 4; ++q) cols[threadIdx.x][q] = c[q];
        cols[threadIdx.x][4] = dmul_rn(c[2] - c[0], c[3] - c[1]);
    }}
    __syncthreads();
    const i64 i = row_tile * {_NMS_TILE} + threadIdx.x;
    if (i >= n) return;
    const {bt}* p = boxes + (batch * {n_boxes} + i) * 4;
    double c[4];
    {corners}
    const double area = dmul_rn(c[2] - c[0], c[3] - c[1]);
    u64 bits = 0;
    const i64 columns = n - col_tile * {_NMS_TILE} < {_NMS_TILE} ? n - col_tile * {_NMS_TILE} : {_NMS_TILE};
    for (i64 t = 0; t < columns; ++t) {{
        double h = nan_min(c[2], cols[t][2]) - nan_max(c[0], cols[t][0]);
        double w = nan_min(c[3], cols[t][3]) - nan_max(c[1], cols[t][1]);
        h = h < 0.0 ? 0.0 : h;
        w = w < 0.0 ? 0.0 : w;
        const double inter = dmul_rn(h, w), other = cols[t][4];
        const double uni = area + other - inter;
        const bool valid = area > 0.0 && other > 0.0 && uni > 0.0;
        const double overlap = valid ? inter / uni : 0.0;
        if (!(overlap <= {float(iou)!r})) bits |= 1ULL << t;   // the reference keeps boxes with IoU <= threshold
    }}
    mask[(batch * {n_boxes} + i) * {words} + col_tile] = bits;
}}
"""
    ctx.define("detect_double_ops", _DOUBLE_OPS)
    return ctx.kernel("nms_iou_mask", source)


def _nms_rank_kernel(ctx: LowerContext, scores_dtype: str, classes: int, n_boxes: int, threshold, counted: bool) -> str:
    st = cg.ctype(scores_dtype)
    t = cg.compute_ctype(scores_dtype)
    tiles = -(-n_boxes // BLOCK)
    if threshold is None:
        passes = "true"
    else:   # the reference compares in the scores' dtype (NumPy casts the Python threshold to it)
        passes = f"s > {cg.literal(float(np.asarray(threshold, dtype=scores_dtype)), t)}"
    load = f"{t}({cg.load('scores', 'seg * ' + str(n_boxes) + ' + (JJ)', scores_dtype)})"
    count = _clamped_count("n", n_boxes) if counted else f"const i64 n = {n_boxes};"
    lines = [count,
             f"const i64 seg = blockIdx.x / {tiles}, e = i64(blockIdx.x % {tiles}) * {BLOCK} + threadIdx.x;",
             f"auto better = {_order(t, 'max', False)};",
             f"auto candidate = [](const {t} s) {{ return {passes}; }};",
             f"const {t} v = e < n ? {load.replace('JJ', 'e')} : {t}(0);",
             "const bool mine = e < n && candidate(v);",
             ]
    lines += _rank_loop(t, load, "n", competes="candidate")
    lines.append(f"if (mine) order[seg * {n_boxes} + rank] = i32(e);")
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL(i32* order, const {st}* __restrict__ scores{", const i64* __restrict__ count" if counted else ""}) {{
    {body}
}}
"""
    return ctx.kernel("nms_rank", source), (tiles * classes, 1, 1)


@lowering(LayerKind.NMS)
def lower_nms(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    boxes, scores = layer["inputs"][:2]
    counted = len(layer["inputs"]) > 2 and layer["inputs"][2] >= 0
    selected, count = layer["outputs"][:2]
    attrs = layer["attrs"]
    batches, n_boxes = ctx.shape(boxes)[:2]
    classes = ctx.shape(scores)[1]
    rows = ctx.shape(selected)[0]
    limit = min(int(attrs["max_output_boxes_per_class"]), n_boxes)
    segments = batches * classes
    words = max(1, -(-n_boxes // _NMS_TILE))
    if 8 * words > _SHARED_LIMIT:
        raise UnsupportedError(f"layer {layer['name']!r}: NMS over {n_boxes} boxes needs a {8 * words}-byte bitset in "
                               f"shared memory, more than {_SHARED_LIMIT}; split the boxes or run it on the CPU")
    # workspace: IoU mask (u64), candidate order (i32), selections (i32), selection counts (i32)
    mask_bytes = 8 * batches * n_boxes * words
    if mask_bytes > _MASK_LIMIT:
        raise UnsupportedError(f"layer {layer['name']!r}: NMS over {batches} x {n_boxes} boxes needs a "
                               f"{mask_bytes / 2**20:.0f} MiB IoU bitmask, more than {_MASK_LIMIT >> 20} MiB; filter "
                               "the boxes by score first (fewer rows) or run it on the CPU")
    order_at = mask_bytes
    selected_at = order_at + 4 * segments * n_boxes
    counts_at = selected_at + 4 * segments * max(limit, 1)
    ctx.need_workspace(counts_at + 4 * segments)
    ctx.need("reduce.cuh")
    count_param = [ptr(layer["inputs"][2])] if counted else []
    launches = []
    if limit > 0 and n_boxes > 0:
        mask_kernel = _nms_mask_kernel(ctx, ctx.dtype(boxes), n_boxes, words, int(attrs.get("center_point_box", 0)),
                                       float(attrs.get("iou_threshold") or 0.0), counted)
        launches.append(Launch(mask_kernel, (words * words, batches, 1), (_NMS_TILE, 1, 1),
                               [["w", 0], ptr(boxes)] + count_param, tactic="nms-iou-mask"))
        rank_kernel, grid = _nms_rank_kernel(ctx, ctx.dtype(scores), segments, n_boxes, attrs.get("score_threshold"),
                                             counted)
        launches.append(Launch(rank_kernel, grid, (BLOCK, 1, 1), [["w", order_at], ptr(scores)] + count_param,
                               tactic="nms-rank"))
        launches.append(_nms_select(ctx, ctx.dtype(scores), segments, classes, n_boxes, words, limit, attrs, counted,
                                    [["w", 0], ["w", order_at], ["w", selected_at], ["w", counts_at], ptr(scores)]
                                    + count_param))
    launches.append(_nms_write(ctx, batches, classes, limit, rows, selected, count, selected_at, counts_at))
    return launches


def _nms_select(ctx, scores_dtype, segments, classes, n_boxes, words, limit, attrs, counted, params) -> Launch:
    """One block per (batch, class): the greedy walk over its candidates in score order."""
    threshold = attrs.get("score_threshold")
    t = cg.compute_ctype(scores_dtype)
    passes = "true" if threshold is None else \
        f"s > {cg.literal(float(np.asarray(threshold, dtype=scores_dtype)), t)}"
    count = _clamped_count("n", n_boxes) if counted else f"const i64 n = {n_boxes};"
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL(const u64* __restrict__ mask, const i32* __restrict__ order,
        i32* picked, i32* picked_counts, const {cg.ctype(scores_dtype)}* __restrict__ scores{", const i64* __restrict__ count" if counted else ""}) {{
    {count}
    const i64 seg = blockIdx.x, batch = seg / {classes};
    __shared__ u64 removed[{words}];
    for (i64 w = threadIdx.x; w < {words}; w += {BLOCK}) removed[w] = 0;
    i64 candidates = 0;
    for (i64 e = threadIdx.x; e < n; e += {BLOCK}) {{
        const {t} s = {cg.load('scores', f'seg * {n_boxes} + e', scores_dtype)};
        if ({passes}) ++candidates;
    }}
    candidates = reduce_group<{BLOCK}>(candidates, [](const i64 a, const i64 b) {{ return a + b; }});
    __syncthreads();
    __shared__ i32 chunk[{BLOCK}];   // the next candidates, read from global memory together
    i32 kept = 0;
    for (i64 start = 0; start < candidates && kept < {limit}; start += {BLOCK}) {{
        __syncthreads();
        if (start + threadIdx.x < candidates) chunk[threadIdx.x] = order[seg * {n_boxes} + start + threadIdx.x];
        __syncthreads();
        const i64 m = candidates - start < {BLOCK} ? candidates - start : {BLOCK};
        for (i64 r = 0; r < m && kept < {limit}; ++r) {{
            const i32 box = chunk[r];
            if ((removed[box >> 6] >> (box & 63)) & 1ULL) continue;   // the same test in every thread
            if (threadIdx.x == 0) picked[seg * {limit} + kept] = box;
            ++kept;
            __syncthreads();   // every thread has tested this candidate before the bitset changes
            const u64* row = mask + (batch * {n_boxes} + box) * {words};
            for (i64 w = threadIdx.x; w < {words}; w += {BLOCK}) removed[w] |= row[w];
            __syncthreads();
        }}
    }}
    if (threadIdx.x == 0) picked_counts[seg] = kept;
}}
"""
    return Launch(ctx.kernel("nms_select", source), (segments, 1, 1), (BLOCK, 1, 1), params, tactic="nms-greedy")


def _nms_write(ctx, batches, classes, limit, rows, selected, count, selected_at, counts_at) -> Launch:
    """One block: the selections as (batch, class, box) rows in (batch, class) order, zeros after them, the count."""
    segments = batches * classes
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL(i64* out, i64* count, const i32* __restrict__ picked,
                                                   const i32* __restrict__ picked_counts) {{
    i64 base = 0;
    for (i64 seg = 0; seg < {segments}; ++seg) {{
        const i64 kept = {"picked_counts[seg]" if limit > 0 else "0"};
        for (i64 p = threadIdx.x; p < kept; p += {BLOCK}) {{
            i64* row = out + (base + p) * 3;
            row[0] = seg / {classes}; row[1] = seg % {classes}; row[2] = picked[seg * {max(limit, 1)} + p];
        }}
        base += kept;
    }}
    for (i64 p = base * 3 + threadIdx.x; p < {rows * 3}; p += {BLOCK}) out[p] = 0;
    if (threadIdx.x == 0) count[0] = base;
}}
"""
    return Launch(ctx.kernel("nms_write", source), (1, 1, 1), (BLOCK, 1, 1),
                  [ptr(selected), ptr(count), ["w", selected_at], ["w", counts_at]], tactic="nms-write")


# -- Scatter -----------------------------------------------------------------------------------------------
_COMBINE = {"none": "u", "add": "a + u", "mul": "a * u",
            "max": "(a != a || u != u) ? a + u : (a > u ? a : u)", "min": "(a != a || u != u) ? a + u : (a < u ? a : u)"}


def _row_test(shape, rows_axis: int | None, var: str, counted: bool) -> str:
    """C test that flat index ``var`` of ``shape`` lies in the first ``n`` rows along ``rows_axis``."""
    if not counted:
        return "true"
    inner = cg.numel(shape[rows_axis + 1:])
    return f"(({var} / {inner}) % {shape[rows_axis]} < n)"


@lowering(LayerKind.SCATTER)
def lower_scatter(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    data, indices, updates = layer["inputs"][:3]
    counted = len(layer["inputs"]) > 3 and layer["inputs"][3] >= 0
    out = layer["outputs"][0]
    attrs = layer["attrs"]
    data_shape, index_shape, dtype = ctx.shape(data), ctx.shape(indices), ctx.dtype(data)
    t, vt, it = cg.compute_ctype(dtype), cg.ctype(dtype), cg.ctype(ctx.dtype(indices))
    reduction = attrs.get("reduction", "none")
    launches = []
    if cg.numel(data_shape) and not ctx.placed_at(out, data, 0):
        from edgert.kernels.cuda.lower_copy import copy_kernel
        launches.append(copy_kernel(ctx, data, out, cg.numel(data_shape), "i", tactic="scatter-copy"))
    rows_axis = attrs.get("rows_axis")
    count_line = "i64 n = count[0];" if counted else ""
    combine = _COMBINE[reduction]
    strides = cg.contiguous_strides(data_shape)
    if attrs["mode"] == "nd":
        depth = index_shape[-1]
        slices, inner = cg.numel(index_shape[:-1]), cg.numel(data_shape[depth:])
        threads = inner
        target = " ".join(f"{{ i64 q = i64(indices[u * {depth} + {d}]); if (q < 0) q += {data_shape[d]}; "
                           f"if (q < 0 || q >= {data_shape[d]}) continue; at += q * {strides[d]}; }}"
                           for d in range(depth))
        loop = f"""for (i64 u = 0; u < {slices}; ++u) {{
        if (!{_row_test(index_shape[:-1], rows_axis, 'u', counted)}) continue;
        i64 at = s;
        {target}
        const {t} a = {cg.load('out', 'at', dtype)}, u_ = {cg.load('updates', f'u * {inner} + s', dtype)};
        {{ const {t} u = u_; out[at] = {cg.store_value(combine, dtype)}; }}
    }}"""
    else:
        axis = int(attrs["axis"]) % len(data_shape)
        length = index_shape[axis]
        after = cg.numel(index_shape[axis + 1:])
        threads = cg.numel(index_shape) // max(length, 1)
        other = [d for d in range(len(index_shape)) if d != axis]
        others_shape = [index_shape[d] for d in other]
        ostrides = cg.contiguous_strides(others_shape)
        # s enumerates the positions with the axis removed: its data offset and its updates offset
        data_offset = " + ".join(f"((s / {ostrides[p]}) % {others_shape[p]}) * {strides[d]}"
                                 for p, d in enumerate(other)) or "0"
        update_offset = " + ".join(f"((s / {ostrides[p]}) % {others_shape[p]}) * {cg.contiguous_strides(index_shape)[d]}"
                                   for p, d in enumerate(other)) or "0"
        loop = f"""const i64 base = {data_offset}, from = {update_offset};
    for (i64 r = 0; r < {length}; ++r) {{
        const i64 at_update = from + r * {after};
        if (!{_row_test(index_shape, rows_axis, 'at_update', counted)}) continue;
        i64 q = i64(indices[at_update]);
        if (q < 0) q += {data_shape[axis]};
        if (q < 0 || q >= {data_shape[axis]}) continue;
        const i64 at = base + q * {strides[axis]};
        const {t} a = {cg.load('out', 'at', dtype)}, u_ = {cg.load('updates', 'at_update', dtype)};
        {{ const {t} u = u_; out[at] = {cg.store_value(combine, dtype)}; }}
    }}"""
    if threads == 0 or cg.numel(index_shape) == 0:
        return launches
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({vt}* out, const {it}* __restrict__ indices,
        const {vt}* __restrict__ updates{", const i64* __restrict__ count" if counted else ""}) {{
    const i64 s = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (s >= {threads}) return;
    {count_line}
    {loop}
}}
"""
    params = [ptr(out), ptr(indices), ptr(updates)] + ([ptr(layer["inputs"][3])] if counted else [])
    launches.append(Launch(ctx.kernel("scatter", source), grid_for(threads), (BLOCK, 1, 1), params,
                           tactic=f"scatter-{attrs['mode']}-{reduction}"))
    return launches


# -- Padding with run-time pads ----------------------------------------------------------------------------
def lower_run_time_padding(ctx: LowerContext, layer: dict) -> list[Launch]:
    """Constant padding by pads read from input 1 at run time into the static output (kernels/cpu/padding.py
    pad_run_time): along each axis the input's real extent is what the output size leaves after the pads."""
    src, pads, dst = layer["inputs"][0], layer["inputs"][1], layer["outputs"][0]
    in_shape, out_shape, dtype = ctx.shape(src), ctx.shape(dst), ctx.dtype(dst)
    count, rank = cg.numel(out_shape), len(in_shape)
    if count == 0:
        return []
    lines = ["i64 rest = i, at = 0; bool inside = true;"]
    in_strides = cg.contiguous_strides(in_shape)
    for axis in range(rank - 1, -1, -1):
        lines += [f"{{ const i64 c = rest % {out_shape[axis]}; rest /= {out_shape[axis]};",
                  f"  const i64 begin = i64(pads[{axis}]), end = i64(pads[{rank + axis}]);",
                  f"  const i64 extent = {out_shape[axis]} - begin - end;",
                  "  const i64 start = begin < 0 ? -begin : 0, stop = extent - (end < 0 ? -end : 0);",
                  "  const i64 s = c - (begin > 0 ? begin : 0) + start;",
                  f"  inside = inside && s >= start && s < stop && s < {in_shape[axis]};",
                  f"  at += s * {in_strides[axis]}; }}"]
    value = cg.store_value(cg.literal(float(layer["attrs"].get("value", 0) or 0), cg.compute_ctype(dtype)), dtype)
    body = "\n    ".join(lines)
    t = cg.ctype(dtype)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({t}* out, const {t}* __restrict__ in,
                                                   const {cg.ctype(ctx.dtype(pads))}* __restrict__ pads) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = inside ? in[at] : {value};
}}
"""
    return [Launch(ctx.kernel("pad_run_time", source), grid_for(count), (BLOCK, 1, 1), [ptr(dst), ptr(src), ptr(pads)],
                   tactic="pad-run-time")]
