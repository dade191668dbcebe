"""Cumulative (prefix sums): one thread per line along the axis, summing serially in the compute type
(float for float16), as the CPU reference does element after element; exclusive sums write the running
total before adding, reverse ones walk the line from its end."""

from __future__ import annotations

from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr


@lowering(LayerKind.CUMULATIVE)
def lower_cumulative(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    x, out = layer["inputs"][0], layer["outputs"][0]
    attrs, shape, dtype = layer["attrs"], ctx.shape(x), ctx.dtype(x)
    if cg.numel(shape) == 0:
        return []
    axis = int(attrs["axis"]) if shape else 0
    length = shape[axis] if shape else 1
    inner = cg.numel(shape[axis + 1:]) if shape else 1
    lines = cg.numel(shape) // length
    t, ct = cg.ctype(dtype), cg.compute_ctype(dtype)
    step = f"-{inner}" if attrs.get("reverse") else f"{inner}"
    first = f"(i64)({length - 1}) * {inner}" if attrs.get("reverse") else "0"
    value = cg.load("x", "at", dtype)
    if attrs.get("exclusive"):
        body = f"out[at] = {cg.store_value('total', dtype)}; total += {value};"
    else:
        body = f"total += {value}; out[at] = {cg.store_value('total', dtype)};"
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({t}* out, const {t}* __restrict__ x) {{
    const i64 line = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (line >= {lines}) return;
    i64 at = (line / {inner}) * {length * inner} + line % {inner} + {first};
    {ct} total = {ct}(0);
    for (i64 e = 0; e < {length}; ++e, at += {step}) {{ {body} }}
}}
"""
    return [Launch(ctx.kernel("cumsum", source), grid_for(lines), (BLOCK, 1, 1), [ptr(out), ptr(x)],
                   tactic="scan-serial")]
