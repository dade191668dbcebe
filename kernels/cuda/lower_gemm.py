"""Lowering of MatrixMultiply and Convolution to the GEMM templates of ``gemm.cuh``.

Tactics: fp16 runs on tensor cores (``gemm_mma``), fp32/fp64 on the FMA kernel (``gemm_fma``);
convolutions with one input channel per group (depthwise) or more than two spatial dims go to the
direct kernels of ``lower_conv``. Each product is a ``tactics.GemmProblem``: the context's tactic
policy picks its tile, K split and loader among the candidates (``tactics.select``: a timing cache,
autotuning or the cost model); split products sum their partials in the last block of each tile.
"""

from __future__ import annotations

import math

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.epilogue import Epilogue
from edgert.kernels.cuda.library import Launch, LowerContext, lowering, ptr
from edgert.kernels.cuda.tactics import GemmProblem, select


def gemm_params(*, a, b, out, ws=("0",), counters=("0",), ktab=("0",), M, N, K, k_per_split, a_sm=0, a_sk=0, b_sk=0, b_sn=0,
                o_sm=0, o_sn=0, batch=(), a_bs=(), b_bs=(), o_bs=(), conv=(0,) * 12, in_img=0, out_img=0,
                epi=()) -> list:
    """Kernel parameters laid out as ``struct GemmParams``."""
    def pad4(values, kind):
        values = list(values) + [0] * (4 - len(values))
        return [[kind, int(v)] for v in values]

    params = [["align", 8], list(a), list(b), list(out), list(ws), list(counters), list(ktab)]
    params += [["i32", M], ["i32", N], ["i32", K], ["i32", k_per_split]]
    params += [["i64", v] for v in (a_sm, a_sk, b_sk, b_sn, o_sm, o_sn)]
    params += [["i32", len(batch)]] + pad4(batch, "i32") + pad4(a_bs, "i64") + pad4(b_bs, "i64") + pad4(o_bs, "i64")
    params += [["i32", v] for v in conv] + [["i64", in_img], ["i64", out_img]]
    params += [list(p) for p in epi] + [["align", 8]]
    return params


def _kernel_source(ctx: LowerContext, dtype: str, engine: str, bm: int, bn: int, bk: int, avec: int, a_mfast: bool,
                   bload: str, conv: bool, split: bool, epi_name: str, pair: bool, nj: int = 4) -> tuple[str, int]:
    """(kernel name, threads) of one GEMM instantiation; ``engine``: "mma" (fp16 tensor cores),
    "tf32" (fp32 data on tensor cores) or "fma" (exact fp32/fp64); ``nj``: n8 fragments per warp."""
    conv_flag, split_flag, pair_flag = str(conv).lower(), str(split).lower(), str(pair).lower()
    t, vec = cg.ctype(dtype), 16 // np.dtype(dtype).itemsize
    if engine == "fma":
        tm, tn = bm // 16, bn // 16
        threads, ld = (bm // tm) * (bn // tn), bn + 4
    else:
        wm, wn = bm // 32, bn // (8 * nj)
        threads, ld = wm * wn * 32, bn + 8
    loader = {"strided": f"BStrided<{t}, {bk}, {bn}, {threads}, 1, {ld}>",
              "strided_vec": f"BStrided<{t}, {bk}, {bn}, {threads}, {vec}, {ld}>",
              "pointwise": f"BPointwiseConv<{t}, {bk}, {bn}, {threads}, {vec}, {ld}>",
              "im2col": f"BIm2col<{t}, {bk}, {bn}, {threads}, {ld}>",
              "tapmajor": f"BTapMajor<{t}, {bk}, {bn}, {threads}, {ld}>"}[bload]
    if engine == "fma":
        call = (f"gemm_fma<{t}, {bm}, {bn}, {tm}, {tn}, {avec}, {str(a_mfast).lower()}, {loader}, {conv_flag}, "
                f"{split_flag}, {epi_name}, {pair_flag}>(p);")
    else:
        call = (f"gemm_mma<{t}, {wm}, {wn}, {nj}, {bk}, {avec}, {str(a_mfast).lower()}, {loader}, {conv_flag}, "
                f"{split_flag}, {epi_name}, {pair_flag}>(p);")
    source = f"""
extern "C" __global__ void __launch_bounds__({threads}) KERNEL(GemmParams p) {{
    {call}
}}
"""
    return ctx.kernel("conv" if conv else "gemm", source), threads


def emit_gemm(ctx: LowerContext, layer: dict, *, dtype: str, M: int, N: int, K: int, Z: int, epilogue: Epilogue,
              conv: bool, algorithms: list, operands, a_mfast: bool, allow_split: bool, signature: tuple = (),
              pair: bool = False, tap_channels: int = 0) -> list[Launch]:
    """Pick the tactic, instantiate the kernel and return the launches. ``algorithms``: (loader, name)
    pairs the layer may use, preferred first; ``operands(loader)``: (GemmParams fields, A vector width)
    for that loader, called for the chosen one only (it may register re-laid-out weights)."""
    if dtype not in ("float16", "float32", "float64"):
        raise UnsupportedError(f"CUDA matrix kernels support float16/32/64, not {dtype}")
    engine = "mma" if dtype == "float16" else "tf32" if dtype == "float32" and ctx.tf32 else "fma"
    bk = 32 if dtype == "float16" else 16
    ctx.need("gemm_loaders.cuh", "gemm.cuh")
    acc = "double" if dtype == "float64" else "float"
    epi_name, epi_source, epi_params = epilogue.code(acc)
    problem = GemmProblem(ctx.arch, "conv" if conv else "matmul", dtype, engine, bk, M, N, K, Z,
                          allow_split and dtype != "float64", tuple(algorithms), tuple(signature), epi_name,
                          tap_channels)
    tactic = select(ctx, layer, problem)
    bm, bn, splits, bload, bk = tactic.bm, tactic.bn, tactic.splits, tactic.loader, tactic.bk
    fields, avec = operands(bload)
    ctx.define(epi_name, epi_source)
    k_per_split = math.ceil(math.ceil(K / bk) / splits) * bk
    splits = math.ceil(K / k_per_split) if K else 1
    split = splits > 1
    name, threads = _kernel_source(ctx, dtype, engine, bm, bn, bk, avec, a_mfast, bload, conv, split, epi_name, pair,
                                   tactic.nj)
    grid = (math.ceil(N / bn), math.ceil(M / bm), splits if split else Z)
    if split:   # fp32 partial tiles (whole tiles, edges included), and one arrival counter per output tile
        ctx.need_workspace(splits * grid[0] * bn * grid[1] * bm * 4)
        ctx.need_counters(grid[0] * grid[1])
    params = gemm_params(M=M, N=N, K=K, k_per_split=k_per_split, ws=["w", 0] if split else ["0"],
                         counters=["c", 0] if split else ["0"], epi=epi_params, **fields)
    if grid[1] > 65535 or grid[2] > 65535:
        raise UnsupportedError(f"GEMM grid {grid} exceeds CUDA limits")
    return [Launch(name, grid, (threads, 1, 1), params, tactic=tactic.name)]


# -- convolution -------------------------------------------------------------------------------------
def conv_geometry(layer: dict, x_shape, w_shape, out_shape) -> dict:
    attrs = layer["attrs"]
    spatial = len(x_shape) - 2
    kernel = [int(k) for k in attrs.get("kernel") or w_shape[2:]]
    strides = [int(s) for s in attrs.get("strides") or [1] * spatial]
    dilations = [int(d) for d in attrs.get("dilations") or [1] * spatial]
    pads = [int(p) for p in attrs.get("pads") or [0] * 2 * spatial]
    return {"spatial": spatial, "kernel": kernel, "strides": strides, "dilations": dilations,
            "begins": pads[:spatial], "ends": pads[spatial:], "group": int(attrs.get("group", 1)),
            "x": tuple(x_shape), "w": tuple(w_shape), "out": tuple(out_shape)}


def conv_epilogue(ctx: LowerContext, layer: dict, fusion: dict, out_shape, out_dtype, channel_var: str) -> Epilogue:
    """Bias (input 2), the layer's own epilogue steps and a folded consumer, as one chain."""
    inputs = list(layer["inputs"])
    epilogue = Epilogue(ctx, out_shape, out_dtype, {1: channel_var})
    if len(inputs) > 2 and inputs[2] >= 0:
        epilogue.add_bias(inputs[2], 1)
    epilogue.add_layer_epilogue(layer)
    if fusion:
        epilogue.add_consumer(fusion)
    return epilogue


def k_table(geometry: dict, H: int, W: int) -> np.ndarray:
    """Per k = (channel, ky, kx): offset in the input plane stack and the (dy, dx) of the tap."""
    (kh, kw), (dh, dw) = geometry["kernel2"], geometry["dilations2"]
    cg_in = geometry["w"][1]
    k = np.arange(cg_in * kh * kw)
    c, ky, kx = k // (kh * kw), (k // kw) % kh, k % kw
    dy, dx = ky * dh, kx * dw
    table = np.stack([c * H * W + dy * W + dx, dy, dx, np.zeros_like(k)], axis=1)
    return table.astype(np.int32)


@lowering(LayerKind.CONVOLUTION)
def lower_convolution(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    from edgert.kernels.cuda.lower_conv import direct_convolution
    x, w = layer["inputs"][0], layer["inputs"][1]
    out = fusion.get("output", layer["outputs"][0])
    geometry = conv_geometry(layer, ctx.shape(x), ctx.shape(w), ctx.shape(layer["outputs"][0]))
    dtype, group = ctx.dtype(x), geometry["group"]
    cg_in = geometry["w"][1]
    if geometry["spatial"] > 2 or cg_in == 1 or dtype not in ("float16", "float32", "float64"):
        return direct_convolution(ctx, layer, fusion, geometry, out)
    if geometry["spatial"] == 1:  # a 1-D convolution is a 2-D one with H = 1
        for key in ("kernel", "strides", "dilations", "begins", "ends"):
            geometry[key] = [1 if key != "begins" and key != "ends" else 0] + geometry[key]
        geometry["x"] = geometry["x"][:2] + (1,) + geometry["x"][2:]
        geometry["out"] = geometry["out"][:2] + (1,) + geometry["out"][2:]
    geometry["kernel2"], geometry["dilations2"] = geometry["kernel"], geometry["dilations"]
    if ctx.dtype(out) != dtype:
        raise UnsupportedError(f"layer {layer['name']!r}: convolution from {dtype} to {ctx.dtype(out)} on CUDA")
    n_img, c_total, H, W = geometry["x"]
    oc_total, OH, OW = geometry["out"][1], geometry["out"][2], geometry["out"][3]
    kh, kw = geometry["kernel"]
    (sh, sw), (ph, pw) = geometry["strides"], geometry["begins"]
    M, N, K = oc_total // group, n_img * OH * OW, cg_in * kh * kw
    itemsize = np.dtype(dtype).itemsize
    vec = 16 // itemsize
    pointwise = (not ctx.conservative and kh == kw == 1 and sh == sw == 1 and not any(geometry["begins"])
                 and (OH * OW) % vec == 0
                 and ctx.aligned(x) and (cg_in * H * W * itemsize) % 16 == 0)
    bk = 32 if dtype == "float16" else 16
    tap_major = not pointwise and cg_in % bk == 0 and ctx.is_constant(w)
    epilogue = conv_epilogue(ctx, layer, fusion, ctx.shape(out), ctx.dtype(out), "m")
    (dh, dw) = geometry["dilations"]
    conv_fields = (cg_in, H, W, OH * OW, OW, sh, sw, ph, pw, kw, dh, dw)

    def operands(loader: str):
        if loader == "tapmajor":   # weights (OC, Cg, kh, kw) -> (OC, kh, kw, Cg): k runs over channels within a tap
            rank = len(ctx.shape(w))
            weights, table = ctx.derive(w, [0] + list(range(2, rank)) + [1], dtype), ["0"]
        else:
            weights = ctx.operand(w, dtype)
            table = ctx.add_aux(k_table(geometry, H, W)) if loader == "im2col" else ["0"]
        avec = vec if K % vec == 0 and (weights[0] == "d" or ctx.aligned(w)) else 1
        return {"a": weights, "b": ptr(x), "out": ptr(out), "ktab": table, "a_sm": K, "a_sk": 1, "conv": conv_fields,
                "in_img": c_total * H * W, "out_img": oc_total * OH * OW}, avec

    # The 1x1 vector loader and the tap-major one are faster where they apply; im2col always does.
    algorithms = [("pointwise", "conv1x1")] if pointwise else [("tapmajor", "implicit-gemm-tap")] if tap_major else []
    algorithms.append(("im2col", "implicit-gemm"))
    pair = not ctx.conservative and (OH * OW) % 2 == 0 and ctx.aligned(out, alignment=2 * itemsize)
    signature = (f"conv {','.join(map(str, conv_fields))} kh{kh} in{c_total * H * W} out{oc_total * OH * OW}",
                 f"w {ctx.dtype(w)}{' aligned' if ctx.aligned(w) else ''}", f"pair {int(pair)}")
    return emit_gemm(ctx, layer, dtype=dtype, M=M, N=N, K=K, Z=group, epilogue=epilogue, conv=True,
                     algorithms=algorithms, operands=operands, a_mfast=False, allow_split=group == 1,
                     signature=signature, pair=pair, tap_channels=cg_in if tap_major else 0)


# -- matrix multiply -----------------------------------------------------------------------------------
def _batch_strides(shape, batch_shape) -> list[int]:
    """Element strides of ``shape``'s batch dims seen from ``batch_shape`` (0 where broadcast)."""
    full = cg.contiguous_strides(shape)
    rank = len(shape) - 2
    lead = len(batch_shape) - rank
    strides = []
    for axis, size in enumerate(batch_shape):
        own = axis - lead
        strides.append(0 if own < 0 or shape[own] == 1 and size != 1 else full[own])
    return strides


@lowering(LayerKind.MATRIX_MULTIPLY)
def lower_matrix_multiply(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    a, b = layer["inputs"][0], layer["inputs"][1]
    out = fusion.get("output", layer["outputs"][0])
    attrs = layer.get("attrs") or {}
    a_shape, b_shape = list(ctx.shape(a)), list(ctx.shape(b))
    trans_a, trans_b = bool(attrs.get("trans_a")) and len(a_shape) > 1, bool(attrs.get("trans_b")) and len(b_shape) > 1
    if len(a_shape) == 1:
        a_shape = [1] + a_shape
    if len(b_shape) == 1:
        b_shape = b_shape + [1]
    a_st, b_st = cg.contiguous_strides(a_shape), cg.contiguous_strides(b_shape)
    M, K = (a_shape[-1], a_shape[-2]) if trans_a else (a_shape[-2], a_shape[-1])
    N = b_shape[-2] if trans_b else b_shape[-1]
    a_sm, a_sk = (a_st[-1], a_st[-2]) if trans_a else (a_st[-2], a_st[-1])
    b_sk, b_sn = (b_st[-1], b_st[-2]) if trans_b else (b_st[-2], b_st[-1])
    batch = list(np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2])))
    a_bs, b_bs = _batch_strides(a_shape, batch), _batch_strides(b_shape, batch)
    o_bs = cg.contiguous_strides(batch + [M, N])[:len(batch)]
    if batch and not any(b_bs) and not trans_a and a_bs == cg.contiguous_strides(batch + [M, K])[:len(batch)]:
        M, batch, a_bs, b_bs, o_bs = M * int(np.prod(batch)), [], [], [], []   # one GEMM over all rows
    keep = [i for i, size in enumerate(batch) if size != 1]
    batch, a_bs, b_bs, o_bs = ([batch[i] for i in keep], [a_bs[i] for i in keep], [b_bs[i] for i in keep],
                               [o_bs[i] for i in keep])
    if len(batch) > 4:
        raise UnsupportedError(f"layer {layer['name']!r}: more than 4 batch dims in a matrix product")
    Z = int(np.prod(batch)) if batch else 1
    dtype = next((ctx.dtype(t) for t in (a, b) if not ctx.is_constant(t)), ctx.dtype(a))   # the activations' type
    itemsize = np.dtype(dtype).itemsize
    vec = 16 // itemsize
    out_shape = ctx.shape(out)
    last = len(out_shape) - 1
    # Weights stored (N, K) as in Gemm(transB=1): compute out^T = B^T A^T so the big operand loads in vectors.
    swap = not ctx.conservative and not batch and b_sn != 1 and b_sk == 1 and K % vec == 0 and M < N
    o_sm, o_sn = N, 1
    if swap:
        M, N = N, M
        a, b = b, a
        a_sm, a_sk, b_sk, b_sn = b_sn, b_sk, a_sk, a_sm
        o_sm, o_sn = 1, M
    epilogue = Epilogue(ctx, out_shape, ctx.dtype(out), {last: "m" if swap else "n"})
    epilogue.add_layer_epilogue(layer)
    if fusion:
        epilogue.add_consumer(fusion)
    aligned_batches = all((s * itemsize) % 16 == 0 for s in a_bs)
    avec = vec if not ctx.conservative and a_sk == 1 and K % vec == 0 and a_sm % vec == 0 and (ctx.aligned(a) or ctx.dtype(a) != dtype) \
        and aligned_batches else 1
    bvec = (not ctx.conservative and b_sn == 1 and N % vec == 0 and b_sk % vec == 0 and (ctx.aligned(b) or ctx.dtype(b) != dtype)
            and all((s * itemsize) % 16 == 0 for s in b_bs))
    a_param, b_param = ctx.operand(a, dtype), ctx.operand(b, dtype)
    fields = {"a": a_param, "b": b_param, "out": ptr(out), "a_sm": a_sm, "a_sk": a_sk, "b_sk": b_sk, "b_sn": b_sn,
              "o_sm": o_sm, "o_sn": o_sn, "batch": batch, "a_bs": a_bs, "b_bs": b_bs, "o_bs": o_bs}
    if swap:
        fields["a_bs"], fields["b_bs"] = b_bs, a_bs
    if ctx.dtype(out) != dtype:
        raise UnsupportedError(f"layer {layer['name']!r}: matrix product from {dtype} to {ctx.dtype(out)} on CUDA")
    pair = not ctx.conservative and o_sn == 1 and N % 2 == 0 and all(b % 2 == 0 for b in o_bs) and ctx.aligned(out, alignment=2 * itemsize)
    signature = (f"strides {a_sm},{a_sk},{b_sk},{b_sn},{o_sm},{o_sn}", f"batch {batch} {a_bs} {b_bs} {o_bs}",
                 f"avec {avec}", f"pair {int(pair)}")
    algorithms = [("strided_vec" if bvec else "strided", "gemm-swapped" if swap else "gemm")]
    return emit_gemm(ctx, layer, dtype=dtype, M=M, N=N, K=K, Z=Z, epilogue=epilogue, conv=False,
                     algorithms=algorithms, operands=lambda loader: (fields, avec), a_mfast=(avec == 1 and a_sm == 1),
                     allow_split=not batch, signature=signature, pair=pair)
