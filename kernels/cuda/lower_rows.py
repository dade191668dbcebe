"""Compact: the valid rows of several counted values packed one after another (kernels/cpu/compact.py), the layer
a Concat of data-dependent rows (torchvision's per-class detections) or an If on a count (``select``) becomes.

One thread per output element finds, from the counts in device memory (clamped to each value's rows; with
``select`` only the chosen value counts), which value's row it holds, or writes 0 past their total; thread 0
writes the total, the layer's own count. Bit-exact: a copy.
"""

from __future__ import annotations

from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr


@lowering(LayerKind.COMPACT)
def lower_compact(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    attrs, inputs = layer["attrs"], layer["inputs"]
    out, count = layer["outputs"][:2]
    axis = int(attrs["axis"])
    values = len(inputs) // 2
    select = bool(attrs.get("select"))
    out_shape, dtype = ctx.shape(out), ctx.dtype(out)
    total = cg.numel(out_shape)
    outer, rows = cg.numel(out_shape[:axis]), out_shape[axis]
    inner = cg.numel(out_shape[axis + 1:])
    t = cg.ctype(dtype)
    args = [f"{t}* out", "i64* count"]
    args += [f"const {cg.ctype(ctx.dtype(inputs[v]))}* __restrict__ v{v}" for v in range(values)]
    args += [f"const i64* __restrict__ n{v}" for v in range(values)]
    if select:
        args.append(f"const {cg.ctype(ctx.dtype(inputs[-1]))}* __restrict__ condition")
    lines = []
    for v in range(values):
        size = ctx.shape(inputs[v])[axis]
        lines.append(f"i64 c{v} = n{v}[0]; c{v} = c{v} < 0 ? 0 : (c{v} > {size} ? {size} : c{v});")
    if select:   # only value 0 when the condition holds, only value 1 otherwise
        lines.append("if (bool(condition[0])) c1 = 0; else c0 = 0;")
    lines.append("const i64 all = " + " + ".join(f"c{v}" for v in range(values)) + ";")
    lines += ["if (i == 0) count[0] = all;", "if (i >= " + str(total) + ") return;",
              f"const i64 in_ = i % {inner}, r = (i / {inner}) % {rows}, o = i / {inner * rows};",
              f"{t} value = {cg.store_value('0', dtype)};", "i64 start = 0;"]
    for v in range(values):
        size = ctx.shape(inputs[v])[axis]
        lines.append(f"if (r >= start && r < start + c{v}) value = {cg.store_value(cg.load(f'v{v}', f'(o * {size} + (r - start)) * {inner} + in_', ctx.dtype(inputs[v])), dtype)};")
        lines.append(f"start += c{v};")
    lines.append("out[i] = value;")
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    {body}
}}
"""
    params = [ptr(out), ptr(count)] + [ptr(tensor) for tensor in inputs]
    return [Launch(ctx.kernel("compact", source), grid_for(max(total, 1)), (BLOCK, 1, 1), params, tactic="compact")]
