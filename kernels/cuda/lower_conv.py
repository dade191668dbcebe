"""Direct convolution kernels, generated per layer with the geometry baked in as constants.

- ``direct_convolution``: one thread per output element, summing over its group's input channels
  and the kernel taps. The tactic for depthwise convolutions (one input channel per group, the
  MobileNet case: the taps are few and each output reads a small window), for 3-D convolutions
  and for non-float types.
- Deconvolution (transposed convolution) as a gather: each output element collects the input
  pixels whose strided taps land on it, so no atomics and no scratch buffer are needed.
"""

from __future__ import annotations

from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr


def _decompose(out_shape, names) -> list[str]:
    """Statements splitting ``flat`` into the coordinates named ``names`` (one per output axis)."""
    lines = ["i32 rest = flat;"]
    for axis in range(len(out_shape) - 1, 0, -1):
        lines.append(f"const i32 {names[axis]} = rest % {out_shape[axis]}; rest /= {out_shape[axis]};")
    lines.append(f"const i32 {names[0]} = rest;")
    return lines


def _tap_loops(geometry: dict, in_spatial, transposed: bool) -> tuple[list[str], list[str], str]:
    """(opening lines, closing lines, spatial input offset expression) of the nested tap loops."""
    opening, closing = [], []
    spatial = len(in_spatial)
    for d in range(spatial):
        k, s, dil, p = geometry["kernel"][d], geometry["strides"][d], geometry["dilations"][d], geometry["begins"][d]
        opening.append(f"#pragma unroll\nfor (i32 k{d} = 0; k{d} < {k}; ++k{d}) {{")
        if transposed:
            opening.append(f"const i32 t{d} = o{d} + {p} - k{d} * {dil};")
            opening.append(f"if (t{d} < 0 || t{d} % {s} != 0) continue;")
            opening.append(f"const i32 i{d} = t{d} / {s};")
            opening.append(f"if (i{d} >= {in_spatial[d]}) continue;")
        else:
            opening.append(f"const i32 i{d} = o{d} * {s} - {p} + k{d} * {dil};")
            opening.append(f"if ((u32)i{d} >= {in_spatial[d]}u) continue;")
        closing.append("}")
    in_strides = cg.contiguous_strides(in_spatial)
    offset = " + ".join(f"i{d} * {in_strides[d]}" for d in range(spatial)) or "0"
    return opening, closing, offset


def _tap_index(geometry: dict) -> str:
    strides = cg.contiguous_strides(geometry["kernel"])
    return " + ".join(f"k{d} * {strides[d]}" for d in range(len(strides))) or "0"


def _kernel(ctx: LowerContext, base: str, dtype: str, out_dtype: str, epi_name: str, body: list[str],
            count: int) -> str:
    t = cg.ctype(dtype)
    text = "\n    ".join(body)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL(const {t}* __restrict__ x, const {t}* __restrict__ w,
                                                   {cg.ctype(out_dtype)}* out, EpiArgs e) {{
    const i32 flat = i32(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (flat >= {count}) return;
    {text}
    out[flat] = {cg.store_value(f"{epi_name}::apply(acc, flat, oc, flat, e)", out_dtype)};
}}
"""
    return ctx.kernel(base, source)


def direct_convolution(ctx: LowerContext, layer: dict, fusion: dict, geometry: dict, out: int) -> list[Launch]:
    from edgert.kernels.cuda.lower_gemm import conv_epilogue
    x, w = layer["inputs"][0], layer["inputs"][1]
    dtype, out_dtype, out_shape = ctx.dtype(x), ctx.dtype(out), ctx.shape(out)
    x_shape, w_shape = geometry["x"], geometry["w"]
    channels, cg_in, oc_total = x_shape[1], w_shape[1], w_shape[0]
    oc_per_group = oc_total // geometry["group"]
    in_spatial = list(x_shape[2:])
    acc = "double" if dtype == "float64" else ("float" if dtype in ("float16", "float32") else "double")
    ctx.need("gemm_loaders.cuh", "gemm.cuh")
    epilogue = conv_epilogue(ctx, layer, fusion, out_shape, out_dtype, "m")
    epi_name, epi_source, epi_params = epilogue.code(acc)
    ctx.define(epi_name, epi_source)
    names = ["b", "oc"] + [f"o{d}" for d in range(len(in_spatial))]
    opening, closing, offset = _tap_loops(geometry, in_spatial, transposed=False)
    plane, taps = cg.numel(in_spatial), cg.numel(geometry["kernel"])
    body = _decompose(out_shape, names) + [
        f"const i32 g = oc / {oc_per_group};",
        f"const auto* xb = x + (i64(b) * {channels} + g * {cg_in}) * {plane};",
        f"const auto* wb = w + i64(oc) * {cg_in * taps};",
        f"{acc} acc = 0;",
        f"for (i32 ic = 0; ic < {cg_in}; ++ic) {{",
        *opening,
        f"acc += {acc}(to_compute(xb[ic * {plane} + {offset}])) * {acc}(to_compute(wb[ic * {taps} + {_tap_index(geometry)}]));",
        *closing, "}"]
    count = cg.numel(out_shape)
    name = _kernel(ctx, "dwconv" if cg_in == 1 else "directconv", dtype, out_dtype, epi_name, body, count)
    params = [ptr(x), ctx.operand(w, dtype), ptr(out), ["align", 8]] + epi_params
    tactic = "depthwise" if cg_in == 1 else "direct"
    return [Launch(name, grid_for(count), (BLOCK, 1, 1), params, tactic=tactic)]


@lowering(LayerKind.DECONVOLUTION)
def lower_deconvolution(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    from edgert.kernels.cuda.lower_gemm import conv_epilogue, conv_geometry
    x, w = layer["inputs"][0], layer["inputs"][1]
    out = layer["outputs"][0]
    geometry = conv_geometry(layer, ctx.shape(x), ctx.shape(w), ctx.shape(out))
    dtype, out_shape = ctx.dtype(x), ctx.shape(out)
    channels, oc_per_group = geometry["x"][1], geometry["w"][1]
    cg_in = channels // geometry["group"]
    in_spatial = list(geometry["x"][2:])
    acc = "double" if dtype == "float64" else "float"
    ctx.need("gemm_loaders.cuh", "gemm.cuh")
    epilogue = conv_epilogue(ctx, layer, {}, out_shape, ctx.dtype(out), "m")
    epi_name, epi_source, epi_params = epilogue.code(acc)
    ctx.define(epi_name, epi_source)
    names = ["b", "oc"] + [f"o{d}" for d in range(len(in_spatial))]
    opening, closing, offset = _tap_loops(geometry, in_spatial, transposed=True)
    plane, taps = cg.numel(in_spatial), cg.numel(geometry["kernel"])
    body = _decompose(out_shape, names) + [
        f"const i32 g = oc / {oc_per_group}, ocl = oc % {oc_per_group};",
        f"{acc} acc = 0;",
        f"for (i32 icl = 0; icl < {cg_in}; ++icl) {{",
        f"const i32 ic = g * {cg_in} + icl;",
        f"const auto* xc = x + (i64(b) * {channels} + ic) * {plane};",
        f"const auto* wc = w + (i64(ic) * {oc_per_group} + ocl) * {taps};",
        *opening,
        f"acc += {acc}(to_compute(xc[{offset}])) * {acc}(to_compute(wc[{_tap_index(geometry)}]));",
        *closing, "}"]
    count = cg.numel(out_shape)
    name = _kernel(ctx, "deconv", dtype, ctx.dtype(out), epi_name, body, count)
    params = [ptr(x), ctx.operand(w, dtype), ptr(out), ["align", 8]] + epi_params
    return [Launch(name, grid_for(count), (BLOCK, 1, 1), params, tactic="gather")]
