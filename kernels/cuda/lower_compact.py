"""Compact: the valid rows of k values packed one after another along ``axis`` (kernels/cpu/compact.py).

Inputs: k values, their k row counts (int64 scalars in device memory, written by the layers before it inside the
CUDA graph) and, with ``select`` (k = 2), a bool condition in device memory: only value 0 counts when it is true,
only value 1 when it is false (an If on a count). Output 0 holds the valid rows (the first min(max(count, 0),
bound) of each value along ``axis``) one after another, zeros past them; output 1 is their total.

One kernel, one thread per element of output 0. Each block first reads the k counts (one thread each, clamped to
each value's bound, a table this plan ships) and their prefix sums into shared memory, with the k value pointers;
each thread then finds the value whose rows cover its position along ``axis`` by a binary search of the prefix
sums and copies its element (a copy: bit-identical with the CPU kernel in every dtype), or writes a zero past the
total. The first thread of the grid writes the total. The values are kernel parameters, so k is limited by CUDA's 4 KiB of
parameters (``MAX_VALUES``); SSDlite's per-class Concat has k = 90.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr

MAX_VALUES = 240   # 2 pointers per value + the outputs, the condition and the bounds table within 4 KiB of parameters


@lowering(LayerKind.COMPACT)
def lower_compact(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    attrs, inputs = layer["attrs"], list(layer["inputs"])
    out, total_out = layer["outputs"][:2]
    select = bool(attrs.get("select", False))
    k = len(inputs) // 2
    values, counts = inputs[:k], inputs[k:2 * k]
    condition = inputs[2 * k] if select else None
    if k > MAX_VALUES:
        raise UnsupportedError(f"layer {layer['name']!r}: a Compact of {k} values needs more than CUDA's 4 KiB of "
                               f"kernel parameters (at most {MAX_VALUES} values); run it on the CPU")
    for tensor in values + counts + ([condition] if select else []):
        if ctx.overlaps(tensor, out) or ctx.overlaps(tensor, total_out):
            raise UnsupportedError(f"layer {layer['name']!r}: the Compact's output shares memory with its input "
                                   f"{ctx.tensors[tensor]['name']!r}, which its parallel copy cannot allow")
    axis = int(attrs["axis"])
    out_shape, dtype = ctx.shape(out), ctx.dtype(out)
    bound = max(out_shape[axis], 1)
    inner = max(cg.numel(out_shape[axis + 1:]), 1)
    elements = cg.numel(out_shape)
    bounds = [ctx.shape(v)[axis] for v in values]
    vt = cg.ctype(dtype)
    chosen = "(condition[0] ? 0 : 1)" if select else None
    clamp = (f"i64 c = cnt[j][0]; c = c < 0 ? 0 : (c > bounds[j] ? bounds[j] : c);"
             + (f" if (j != {chosen}) c = 0;" if select else ""))
    pointer_table = " ".join(f"src[{j}] = v{j}; cnt[{j}] = c{j};" for j in range(k))
    args = ([f"{vt}* out", "i64* total_out", "const i64* __restrict__ bounds"]
            + (["const bool* __restrict__ condition"] if select else [])
            + [f"const {vt}* __restrict__ v{j}" for j in range(k)]
            + [f"const i64* __restrict__ c{j}" for j in range(k)])
    params = ([ptr(out), ptr(total_out), ctx.add_aux(np.asarray(bounds, np.int64))]
              + ([ptr(condition)] if select else []) + [ptr(v) for v in values] + [ptr(c) for c in counts])
    zero = cg.store_value(cg.literal(0, cg.compute_ctype(dtype)), dtype)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    __shared__ const {vt}* src[{k}];
    __shared__ const i64* cnt[{k}];
    __shared__ i64 start[{k + 1}];
    if (threadIdx.x == 0) {{ {pointer_table} }}
    __syncthreads();
    for (i32 j = threadIdx.x; j < {k}; j += {BLOCK}) {{ {clamp} start[j + 1] = c; }}   // the counts, in parallel
    __syncthreads();
    if (threadIdx.x == 0) {{   // their exclusive prefix sums: where each value's rows start
        start[0] = 0;
        for (i32 j = 1; j <= {k}; ++j) start[j] += start[j - 1];
    }}
    __syncthreads();
    const i64 total = start[{k}];
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i == 0) total_out[0] = total;
    if (i >= {elements}) return;
    const i64 in = i % {inner}, p = (i / {inner}) % {bound}, outer = i / {inner * bound};
    if (p >= total) {{ out[i] = {zero}; return; }}
    i32 lo = 0, hi = {k - 1};   // the last value starting at or before p: its rows cover p
    while (lo < hi) {{ const i32 mid = (lo + hi + 1) / 2; if (start[mid] <= p) lo = mid; else hi = mid - 1; }}
    out[i] = src[lo][(outer * bounds[lo] + (p - start[lo])) * {inner} + in];
}}
"""
    return [Launch(ctx.kernel("compact", source), grid_for(max(elements, 1)), (BLOCK, 1, 1), params,
                   tactic=f"compact-{k}{' select' if select else ''}")]
