"""Reductions and windows: Reduce, Softmax (and Hardmax), Normalization, TopK (ArgMax/ArgMin here; the form
with k in lower_detect.py),
Pooling, LRN.

Row kinds see their input as rows (the kept axes) of elements (the reduced axes), both addressed
through baked index expressions, and reduce a row with one thread, one warp or one block
depending on its length (``choose_group``). Softmax and Normalization make two passes over the row
(max then sum, mean then variance) as the CPU reference does, and write in a third.
Pooling and LRN run one thread per output element over their window.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind, PoolingType, ReduceOp as R
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, input_index, lowering, ptr

_ROWS_PER_BLOCK = {1: BLOCK, 32: BLOCK // 32, BLOCK: 1}


def choose_group(rows: int, length: int, sm_count: int) -> int:
    if length <= 16:
        return 1
    if length >= 2048 and rows < sm_count * 8:
        return BLOCK
    return 32


def row_layout(shape, axes) -> dict:
    axes = sorted(int(a) % len(shape) for a in axes) if len(shape) else []
    strides = cg.contiguous_strides(shape)
    kept = [a for a in range(len(shape)) if a not in axes]
    return {"rows": cg.numel([shape[a] for a in kept]), "length": cg.numel([shape[a] for a in axes]),
            "kept": ([shape[a] for a in kept], [strides[a] for a in kept]),
            "red": ([shape[a] for a in axes], [strides[a] for a in axes])}


def row_kernel(ctx: LowerContext, base: str, layout: dict, args: list[str], body: list[str], params: list,
               tactic: str) -> Launch:
    ctx.need("reduce.cuh")
    rows, length = layout["rows"], layout["length"]
    group = choose_group(rows, length, ctx.sm_count)
    per_block = _ROWS_PER_BLOCK[group]
    position = {1: f"const i64 row = i64(blockIdx.x) * {BLOCK} + threadIdx.x; const int lane = 0;",
                32: f"const i64 row = i64(blockIdx.x) * {per_block} + threadIdx.x / 32; const int lane = threadIdx.x % 32;",
                BLOCK: "const i64 row = blockIdx.x; const int lane = threadIdx.x;"}[group]
    kept = cg.index_expr("row", *layout["kept"])
    red = cg.index_expr("e", *layout["red"])
    text = "\n    ".join(body).replace("GROUP", str(group)).replace("STRIDE", str(group))
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    {position}
    if (row >= {rows}) return;
    const i64 base = {kept};
    const i64 L = {length};
    #define AT(e) (base + ({red}))
    {text}
    #undef AT
}}
"""
    return Launch(ctx.kernel(base, source), grid_for(rows, per_block), (BLOCK, 1, 1), params,
                  tactic=f"{tactic} {({1: 'thread', 32: 'warp', BLOCK: 'block'})[group]}/row")


def _limits(t: str, dtype: str) -> tuple[str, str]:
    if t in ("float", "double"):
        return cg.literal(-np.inf, t), cg.literal(np.inf, t)
    if dtype == "bool":
        return "0", "1"
    info = np.iinfo(dtype)
    return cg.literal(info.min, t), cg.literal(info.max, t)


def _reduce_spec(op: R, t: str, dtype: str, length: int, count: str | None = None) -> tuple[str, str, str, str]:
    """(init, map of v, combine of a and b, final of a) as C expressions; ``count``: a C expression of the number
    of reduced elements when only some take part (a Reduce over counted rows), else ``length`` of them."""
    floating = t in ("float", "double")
    lowest, highest = _limits(t, dtype)
    fn = (lambda name: name + "f" if t == "float" else name)
    bigger = "fmax_nan(a, b)" if floating else "(a > b ? a : b)"
    smaller = "fmin_nan(a, b)" if floating else "(a < b ? a : b)"
    absolute = f"{fn('fabs')}(v)" if floating else f"(v < 0 ? ({t})-v : v)"
    if count is not None and count != str(length):   # a run-time count: NaN for none in floats, 0 in integers
        mean = f"a / {t}({count})" if floating else f"({count} ? a / {t}({count}) : ({t})0)"
    else:
        mean = f"a / {cg.literal(length, t)}" if floating else ("a / " + str(length) if length else f"({t})0")
    return {
        R.SUM: ("0", "v", "a + b", "a"), R.PROD: ("1", "v", "a * b", "a"),
        R.MAX: (lowest, "v", bigger, "a"), R.MIN: (highest, "v", smaller, "a"),
        R.AVG: ("0", "v", "a + b", mean), R.L1: ("0", absolute, "a + b", "a"),
        R.L2: ("0", "v * v", "a + b", f"{fn('sqrt')}(a)"), R.SUM_SQUARE: ("0", "v * v", "a + b", "a"),
        R.LOG_SUM: ("0", "v", "a + b", f"{fn('log')}(a)"),
    }[op]


@lowering(LayerKind.REDUCE)
def lower_reduce(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, out = layer["inputs"][0], layer["outputs"][0]
    counted = len(layer["inputs"]) > 1 and layer["inputs"][1] >= 0
    dtype, out_dtype = ctx.dtype(x), ctx.dtype(out)
    if cg.numel(ctx.shape(out)) == 0:
        return []
    layout = row_layout(ctx.shape(x), layer["attrs"]["axes"])
    t = "i32" if dtype == "bool" else cg.compute_ctype(dtype)
    op = R(layer["attrs"]["op"])
    load = f"{t}({cg.load('x', 'AT(e)', dtype)})"
    args = [f"{cg.ctype(out_dtype)}* out", f"const {cg.ctype(dtype)}* __restrict__ x"]
    params = [ptr(out), ptr(x)]
    prologue, loop_end, skip, mean_count = [], "L", "", str(layout["length"])
    if counted:   # data-dependent rows along rows_axis (edgert/ir/valid_rows.py): only the first `count` reduce
        prologue, loop_end, skip, mean_count = _counted_rows(ctx, layer, layout)
        args.append("const i64* __restrict__ count")
        params.append(ptr(layer["inputs"][1]))
    loop = f"for (i64 e = lane; e < {loop_end}; e += STRIDE) {{ {skip}"
    if op == R.LOG_SUM_EXP:
        lowest, _ = _limits(t, dtype)
        fn = (lambda name: name + "f" if t == "float" else name)
        body = prologue + [
                f"{t} peak = {lowest};",
                f"{loop} peak = fmax_nan(peak, {load}); }}",
                f"peak = reduce_group<GROUP>(peak, [](const {t} a, const {t} b) {{ return fmax_nan(a, b); }});",
                "if (!(peak > -inf_f() && peak < inf_f())) peak = 0;",
                f"{t} total = 0;",
                f"{loop} total += {fn('exp')}({load} - peak); }}",
                f"total = reduce_group<GROUP>(total, [](const {t} a, const {t} b) {{ return a + b; }});",
                f"if (lane == 0) out[row] = {cg.store_value(fn('log') + '(total) + peak', out_dtype)};"]
    else:
        init, mapped, combine, final = _reduce_spec(op, t, dtype, layout["length"], mean_count)
        body = prologue + [
                f"auto combine = [](const {t} a, const {t} b) -> {t} {{ return {combine}; }};",
                f"{t} acc = {init};",
                f"{loop} const {t} v = {load}; acc = combine(acc, {mapped}); }}",
                "acc = reduce_group<GROUP>(acc, combine);",
                f"if (lane == 0) {{ const {t} a = acc; out[row] = {cg.store_value(final, out_dtype)}; }}"]
    return [row_kernel(ctx, "reduce", layout, args, body, params, f"reduce-{op.value}{' counted' if counted else ''}")]


def _counted_rows(ctx: LowerContext, layer: dict, layout: dict) -> tuple[list[str], str, str, str]:
    """(prologue, loop end, skip test, element count) of a Reduce that reads the count of the data-dependent rows
    along ``rows_axis`` (input 1; kernels/cpu/reduce.py): only reduced elements whose coordinate along that axis
    is below the clamped count take part. When it is the outermost reduced axis they are the first n * (elements
    per row) of each row, so the loop stops there; otherwise each element is tested."""
    shape = ctx.shape(layer["inputs"][0])
    rank = len(shape)
    rows_axis = int(layer["attrs"]["rows_axis"])
    axes = sorted(int(a) % rank for a in layer["attrs"]["axes"])
    if rows_axis not in axes:
        raise UnsupportedError(f"layer {layer['name']!r}: a Reduce reading the count of rows along axis {rows_axis} "
                               f"must reduce that axis (axes {axes})")
    position = axes.index(rows_axis)
    per_row = cg.numel([shape[a] for a in axes[position + 1:]])
    dim = shape[rows_axis]
    prologue = [f"i64 n = count[0]; n = n < 0 ? 0 : (n > {dim} ? {dim} : n);",
                f"const i64 valid = {cg.numel([shape[a] for a in axes if a != rows_axis])} * n;"]
    if position == 0:
        return prologue, f"n * {per_row}", "", "valid"
    return prologue, "L", f"if ((e / {per_row}) % {dim} >= n) continue;", "valid"


@lowering(LayerKind.SOFTMAX)
def lower_softmax(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, out = layer["inputs"][0], layer["outputs"][0]
    dtype, attrs = ctx.dtype(x), layer["attrs"]
    if cg.numel(ctx.shape(x)) == 0:
        return []
    layout = row_layout(ctx.shape(x), attrs["axes"])
    t = cg.compute_ctype(dtype)
    fn = (lambda name: name + "f" if t == "float" else name)
    load = cg.load("x", "AT(e)", dtype)
    one, zero = cg.literal(1, t), cg.literal(0, t)
    if attrs.get("hard"):
        body = [f"Arg<{t}> best; best.v = {cg.literal(-np.inf, t)}; best.i = L;",
                f"auto better = [](const Arg<{t}>& b, const Arg<{t}>& a) {{ return b.v > a.v || "
                "(b.v == a.v && b.i < a.i) || (b.v != b.v && a.v == a.v); };",
                f"for (i64 e = lane; e < L; e += STRIDE) {{ Arg<{t}> c; c.v = {load}; c.i = e; "
                "if (better(c, best)) best = c; }",
                "best = reduce_arg<GROUP>(best, better);",
                f"for (i64 e = lane; e < L; e += STRIDE) out[AT(e)] = {cg.store_value(f'e == best.i ? {one} : {zero}', dtype)};"]
    else:
        result = f"(v - peak) - {fn('log')}(total)" if attrs.get("log") else f"{fn('exp')}(v - peak) / total"
        body = [f"{t} peak = {cg.literal(-np.inf, t)};",
                f"for (i64 e = lane; e < L; e += STRIDE) peak = fmax_nan(peak, {load});",
                f"peak = reduce_group<GROUP>(peak, [](const {t} a, const {t} b) {{ return fmax_nan(a, b); }});",
                f"{t} total = 0;",
                f"for (i64 e = lane; e < L; e += STRIDE) total += {fn('exp')}({load} - peak);",
                f"total = reduce_group<GROUP>(total, [](const {t} a, const {t} b) {{ return a + b; }});",
                f"for (i64 e = lane; e < L; e += STRIDE) {{ const {t} v = {load}; out[AT(e)] = "
                f"{cg.store_value(result, dtype)}; }}"]
    args = [f"{cg.ctype(dtype)}* out", f"const {cg.ctype(dtype)}* x"]
    return [row_kernel(ctx, "softmax", layout, args, body, [ptr(out), ptr(x)], "softmax")]


@lowering(LayerKind.NORMALIZATION)
def lower_normalization(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    inputs, outputs = layer["inputs"], layer["outputs"]
    x = inputs[0]
    shape, dtype, attrs = ctx.shape(x), ctx.dtype(x), layer["attrs"]
    if cg.numel(shape) == 0:
        return []
    groups = int(attrs.get("groups", 1))
    rank = len(shape)
    axes = sorted(int(a) % rank for a in attrs["axes"])
    if groups > 1:
        view = (shape[0], groups, shape[1] // groups) + tuple(shape[2:])
        layout = row_layout(view, [2] + [a + 1 for a in axes])
    else:
        layout = row_layout(shape, axes)
    t = cg.compute_ctype(dtype)
    fn = (lambda name: name + "f" if t == "float" else name)
    load = f"{t}({cg.load('x', 'AT(e)', dtype)})"
    args, params = [f"{cg.ctype(dtype)}* out", f"const {cg.ctype(dtype)}* x"], [ptr(outputs[0]), ptr(x)]
    terms = ["y"]
    for slot, name in ((1, "scale"), (2, "bias")):
        if len(inputs) > slot and inputs[slot] >= 0:
            tensor = inputs[slot]
            args.append(f"const {cg.ctype(ctx.dtype(tensor))}* __restrict__ {name}")
            params.append(ptr(tensor))
            value = f"{t}({cg.load(name, input_index(ctx, tensor, shape, 'pos'), ctx.dtype(tensor))})"
            terms = [f"({terms[0]}) * {value}"] if name == "scale" else [f"{terms[0]} + {value}"]
    stats = []
    for slot, name, value in ((1, "mean_out", "mean"), (2, "inv_out", "inv")):
        if len(outputs) > slot:
            args.append(f"{cg.ctype(ctx.dtype(outputs[slot]))}* {name}")
            params.append(ptr(outputs[slot]))
            stats.append(f"if (lane == 0) {name}[row] = {cg.store_value(value, ctx.dtype(outputs[slot]))};")
    epsilon = cg.literal(float(attrs["epsilon"]), t)
    body = [f"auto sum = [](const {t} a, const {t} b) {{ return a + b; }};",
            f"{t} mean = 0;",
            f"for (i64 e = lane; e < L; e += STRIDE) mean += {load};",
            f"mean = reduce_group<GROUP>(mean, sum) / {t}(L);",
            f"{t} var = 0;",
            f"for (i64 e = lane; e < L; e += STRIDE) {{ const {t} d = {load} - mean; var += d * d; }}",
            f"var = reduce_group<GROUP>(var, sum) / {t}(L);",
            f"const {t} inv = {cg.literal(1, t)} / {fn('sqrt')}(var + {epsilon});",
            f"for (i64 e = lane; e < L; e += STRIDE) {{ const i64 pos = AT(e); const {t} y = ({load} - mean) * inv; "
            f"out[pos] = {cg.store_value(terms[0], dtype)}; }}"] + stats
    return [row_kernel(ctx, "norm", layout, args, body, params, "normalization")]


@lowering(LayerKind.TOPK)
def lower_topk(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, out = layer["inputs"][0], layer["outputs"][0]
    attrs, dtype = layer["attrs"], ctx.dtype(x)
    if "k" in attrs:   # the full form: values and indices of the k best (kernels/cuda/lower_detect.py)
        from edgert.kernels.cuda.lower_detect import lower_topk_k
        return lower_topk_k(ctx, layer)
    if cg.numel(ctx.shape(out)) == 0:
        return []
    layout = row_layout(ctx.shape(x), [int(attrs["axis"])])
    t = "i32" if dtype == "bool" else cg.compute_ctype(dtype)
    relation = ">" if attrs["op"] == "max" else "<"
    tie = ">" if attrs.get("select_last_index") else "<"
    nan = "(b.v != b.v && a.v == a.v) || " if t in ("float", "double") else ""
    body = [f"Arg<{t}> best; best.v = {t}({cg.load('x', 'AT(0)', dtype)}); best.i = 0;",
            f"auto better = [](const Arg<{t}>& b, const Arg<{t}>& a) {{ return {nan}b.v {relation} a.v || "
            f"(b.v == a.v && b.i {tie} a.i); }};",
            f"for (i64 e = lane; e < L; e += STRIDE) {{ Arg<{t}> c; c.v = {t}({cg.load('x', 'AT(e)', dtype)}); c.i = e; "
            "if (better(c, best)) best = c; }",
            "best = reduce_arg<GROUP>(best, better);",
            f"if (lane == 0) out[row] = {cg.store_value('best.i', ctx.dtype(out))};"]
    args = [f"{cg.ctype(ctx.dtype(out))}* out", f"const {cg.ctype(dtype)}* __restrict__ x"]
    return [row_kernel(ctx, "argextreme", layout, args, body, [ptr(out), ptr(x)], f"arg{attrs['op']}")]


# -- windows -------------------------------------------------------------------------------------------
def _window_loops(attrs: dict, in_spatial, storage_order: int):
    """Nested tap loops over a pooling window: (opening lines, closing lines, spatial offset, index)."""
    spatial = len(in_spatial)
    kernel = [int(k) for k in attrs["kernel"]]
    strides = [int(s) for s in attrs.get("strides") or [1] * spatial]
    dilations = [int(d) for d in attrs.get("dilations") or [1] * spatial]
    pads = [int(p) for p in attrs.get("pads") or [0] * 2 * spatial]
    opening, closing = [], []
    for d in range(spatial):
        opening += [f"#pragma unroll\nfor (i32 k{d} = 0; k{d} < {kernel[d]}; ++k{d}) {{",
                    f"const i32 i{d} = o{d} * {strides[d]} - {pads[d]} + k{d} * {dilations[d]};",
                    f"const bool in{d} = (u32)i{d} < {in_spatial[d]}u;",
                    f"const bool padded{d} = i{d} >= -{pads[d]} && i{d} < {in_spatial[d] + pads[spatial + d]};"]
        closing.append("}")
    row_major = cg.contiguous_strides(in_spatial)
    offset = " + ".join(f"i{d} * {row_major[d]}" for d in range(spatial)) or "0"
    order = range(spatial) if storage_order == 0 else range(spatial - 1, -1, -1)
    element, step = [0] * spatial, 1
    for d in reversed(list(order)):
        element[d] = step
        step *= in_spatial[d]
    index = " + ".join(f"i{d} * {element[d]}" for d in range(spatial)) or "0"
    inside = " && ".join(f"in{d}" for d in range(spatial)) or "true"
    padded = " && ".join(f"padded{d}" for d in range(spatial)) or "true"
    return opening, closing, offset, index, inside, padded


@lowering(LayerKind.POOLING)
def lower_pooling(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, outputs = layer["inputs"][0], layer["outputs"]
    out = outputs[0]
    attrs, dtype = layer["attrs"], ctx.dtype(x)
    x_shape, out_shape = ctx.shape(x), ctx.shape(out)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    in_spatial = list(x_shape[2:])
    kind = PoolingType(attrs["type"])
    opening, closing, offset, index, inside, padded = _window_loops(attrs, in_spatial, int(attrs.get("storage_order", 0)))
    plane = cg.numel(in_spatial)
    t = "i32" if dtype == "bool" else cg.compute_ctype(dtype)
    load = f"{t}({cg.load('xc', offset, dtype)})"
    lines = ["i64 rest = i;"]
    names = ["bc"] + [f"o{d}" for d in range(len(in_spatial))]
    for axis in range(len(out_shape) - 1, 1, -1):
        lines.append(f"const i32 {names[axis - 1]} = i32(rest % {out_shape[axis]}); rest /= {out_shape[axis]};")
    lines += ["const i64 bc = rest;", f"const auto* xc = x + bc * {plane};"]
    args = [f"{cg.ctype(ctx.dtype(out))}* out", f"const {cg.ctype(dtype)}* __restrict__ x"]
    params = [ptr(out), ptr(x)]
    fn = (lambda name: name + "f" if t == "float" else name)
    if kind == PoolingType.MAX:
        lowest, _ = _limits(t, dtype)
        lines.append(f"{t} acc = {lowest}; i64 where = -1;")
        if len(outputs) > 1:   # first maximum wins, as in the CPU reference
            step = f"if ({inside}) {{ const {t} v = {load}; if (where < 0 || v > acc) {{ acc = v; where = {index}; }} }}"
        else:
            step = f"if ({inside}) {{ const {t} v = {load}; acc = {'fmax_nan(acc, v)' if t in ('float', 'double') else '(v > acc ? v : acc)'}; }}"
        lines += opening + [step] + closing
        result = "acc"
        if len(outputs) > 1:
            args.append(f"{cg.ctype(ctx.dtype(outputs[1]))}* indices")
            params.append(ptr(outputs[1]))
            lines.append(f"indices[i] = where < 0 ? 0 : where + bc * {plane};")
    else:
        include_pad = bool(attrs.get("count_include_pad", False))
        p = float(attrs.get("p", 2))
        term = {PoolingType.AVERAGE: "v", PoolingType.LP: "v * v" if p == 2 else
                (f"{fn('fabs')}(v)" if p == 1 else f"{fn('pow')}({fn('fabs')}(v), {cg.literal(p, t)})")}[kind]
        lines += [f"{t} acc = 0; i32 count = 0;"] + opening + [
            f"if ({inside}) {{ const {t} v = {load}; acc += {term}; }}",
            f"if ({padded if include_pad else inside}) ++count;"] + closing
        if kind == PoolingType.AVERAGE:
            result = f"acc / {t}(count > 0 ? count : 1)"
        else:
            result = f"{fn('sqrt')}(acc)" if p == 2 else (
                "acc" if p == 1 else f"{fn('pow')}(acc, {cg.literal(1 / p, t)})")
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = {cg.store_value(result, ctx.dtype(out))};
}}
"""
    return [Launch(ctx.kernel("pool", source), grid_for(count), (BLOCK, 1, 1), params, tactic=f"pool-{kind.value}")]


@lowering(LayerKind.LRN)
def lower_lrn(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, out = layer["inputs"][0], layer["outputs"][0]
    attrs, dtype, shape = layer["attrs"], ctx.dtype(x), ctx.shape(x)
    count = cg.numel(shape)
    if count == 0:
        return []
    size = int(attrs["size"])
    alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    channels, plane = shape[1], cg.numel(shape[2:])
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    t = cg.compute_ctype(dtype)
    fn = (lambda name: name + "f" if t == "float" else name)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({cg.ctype(dtype)}* out, const {cg.ctype(dtype)}* __restrict__ x) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    const i32 c = i32((i / {plane}) % {channels});
    {t} sum = 0;
    for (i32 d = -{before}; d <= {after}; ++d) {{
        if ((u32)(c + d) >= {channels}u) continue;
        const {t} v = {cg.load('x', f'i + i64(d) * {plane}', dtype)};
        sum += v * v;
    }}
    const {t} scale = {fn('pow')}({cg.literal(bias, t)} + {cg.literal(alpha / size, t)} * sum, {cg.literal(-beta, t)});
    out[i] = {cg.store_value(f"{cg.load('x', 'i', dtype)} * scale", dtype)};
}}
"""
    return [Launch(ctx.kernel("lrn", source), grid_for(count), (BLOCK, 1, 1), [ptr(out), ptr(x)], tactic="lrn")]
