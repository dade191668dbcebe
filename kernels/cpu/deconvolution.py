"""CPU kernel: Deconvolution (transposed convolution).

attrs: kernel, strides, pads (begin..., end...), dilations, group, output_padding;
inputs: x (N, C_in, *spatial), w (C_in, C_out/group, *kernel), [bias (C_out,)].

One batched matmul per group makes every input pixel's contribution to every kernel tap (the column
tensor); col2im then adds each tap's slab into the strided output positions it lands on (a loop over
taps only). The full, uncropped result lives in a scratch buffer that also covers negative pads.

The prepare hook binds the same steps (float32/float64) over the context's scratch; when the taps of
different kernel positions never meet (kernel <= stride, no dilation, no crop), each tap's slab is
copied straight into its strided positions of the output instead of added into a buffer.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.blas import bind_gemm, matmul
from edgert.kernels.cpu.convolution import compute_dtype, conv_params
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


def _columns(x: np.ndarray, w: np.ndarray, group: int) -> np.ndarray:
    """(N, C_out, *kernel, *in_spatial): the product of every input pixel with every kernel tap."""
    n, channels = x.shape[:2]
    kernel = w.shape[2:]
    out_per_group = w.shape[1]
    weights = w.reshape(group, channels // group, -1).transpose(0, 2, 1)   # (g, C_out/g * K, C_in/g)
    pixels = x.reshape(n, group, channels // group, -1)                    # (N, g, C_in/g, P)
    cols = matmul(weights, pixels, flops=2 * n * weights.size * pixels.shape[-1])                                     # (N, g, C_out/g * K, P)
    return cols.reshape((n, group * out_per_group) + tuple(kernel) + x.shape[2:])


def _col2im(cols, kernel, strides, dilations, begins, out_spatial, dtype) -> tuple[np.ndarray, tuple]:
    """Scratch buffer with every tap added in, and the index of the output region inside it."""
    spatial = len(kernel)
    in_spatial = cols.shape[2 + spatial:]
    natural = [s * (i - 1) + d * (k - 1) + 1 for s, i, d, k in zip(strides, in_spatial, dilations, kernel)]
    lows = [min(0, b) for b in begins]
    highs = [max(nat, b + o) for nat, b, o in zip(natural, begins, out_spatial)]
    buffer = np.zeros(cols.shape[:2] + tuple(h - lo for h, lo in zip(highs, lows)), dtype)
    for tap in itertools.product(*(range(k) for k in kernel)):
        index = (Ellipsis,) + tuple(slice(t * d - lo, t * d - lo + (i - 1) * s + 1, s)
                                    for t, d, lo, i, s in zip(tap, dilations, lows, in_spatial, strides))
        buffer[index] += cols[(slice(None), slice(None)) + tap]
    region = (Ellipsis,) + tuple(slice(b - lo, b - lo + o) for b, lo, o in zip(begins, lows, out_spatial))
    return buffer, region


@register(LayerKind.DECONVOLUTION)
def deconvolution(attrs, inputs, outputs):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    out = outputs[0]
    spatial = x.ndim - 2
    kernel, strides, dilations, begins, _ = conv_params(attrs, spatial)
    dtype = compute_dtype(out.dtype)
    cols = _columns(x.astype(dtype, copy=False), w.astype(dtype, copy=False), int(attrs.get("group", 1)))
    buffer, region = _col2im(cols, kernel, strides, dilations, begins, out.shape[2:], dtype)
    result = buffer[region]
    if bias is not None:
        result += bias.astype(dtype, copy=False).reshape((-1,) + (1,) * spatial)
    np.copyto(out, result, casting="unsafe")


def _bind_col2im(cols, params, out, workspace) -> list:
    """Calls adding (or, for disjoint taps, copying) every tap's slab of cols into out (bias aside)."""
    kernel, strides, dilations, begins, _ = params
    in_spatial = cols.shape[2 + len(kernel):]
    natural = [s * (i - 1) + d * (k - 1) + 1 for s, i, d, k in zip(strides, in_spatial, dilations, kernel)]
    lows = [min(0, b) for b in begins]
    highs = [max(nat, b + o) for nat, b, o in zip(natural, begins, out.shape[2:])]
    disjoint = all(d == 1 and k <= s for k, s, d in zip(kernel, strides, dilations))
    direct = disjoint and not any(begins) and tuple(highs) == out.shape[2:]
    buffer = out if direct else workspace.scratch(cols.shape[:2] + tuple(h - lo for h, lo in zip(highs, lows)),
                                                  out.dtype)
    # a copy per tap covers everything only when kernel == stride; otherwise zeros first
    covered = direct and tuple(kernel) == tuple(strides) and natural == highs
    calls = [] if covered else [functools.partial(buffer.fill, 0)]
    for tap in itertools.product(*(range(k) for k in kernel)):
        index = (Ellipsis,) + tuple(slice(t * d - lo, t * d - lo + (i - 1) * s + 1, s)
                                    for t, d, lo, i, s in zip(tap, dilations, lows, in_spatial, strides))
        slab = cols[(slice(None), slice(None)) + tap]
        target = buffer[index]
        calls.append(functools.partial(np.copyto, target, slab) if disjoint else
                     functools.partial(np.add, target, slab, target))
    if not direct:
        region = (Ellipsis,) + tuple(slice(b - lo, b - lo + o) for b, lo, o in zip(begins, lows, out.shape[2:]))
        calls.append(functools.partial(np.copyto, out, buffer[region]))
    return calls


@register_prepare(LayerKind.DECONVOLUTION)
def prepare_deconvolution(attrs, inputs, outputs, workspace):
    x, w, out = inputs[0], inputs[1], outputs[0]
    bias = inputs[2] if len(inputs) > 2 else None
    if out.dtype not in (np.float32, np.float64) or any(a is not None and a.dtype != out.dtype for a in (x, w, bias)):
        return None
    params = conv_params(attrs, x.ndim - 2)
    group, (n, channels) = int(attrs.get("group", 1)), x.shape[:2]
    weights = w.reshape(group, channels // group, -1).transpose(0, 2, 1)   # (g, C_out/g * K, C_in/g)
    pixels = x.reshape(n, group, channels // group, -1)
    cols = workspace.scratch((n, group, weights.shape[1], pixels.shape[-1]), out.dtype)
    product = bind_gemm(weights, pixels, cols, 2 * n * weights.size * pixels.shape[-1])
    tensor = cols.reshape((n, group * w.shape[1]) + tuple(params[0]) + x.shape[2:])
    calls = [product] + _bind_col2im(tensor, params, out, workspace)
    if bias is not None:
        calls.append(functools.partial(np.add, out, bias.reshape((-1,) + (1,) * (x.ndim - 2)), out))
    return sequence(calls)
