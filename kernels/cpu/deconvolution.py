"""CPU kernel: Deconvolution (transposed convolution).

attrs: kernel, strides, pads (begin..., end...), dilations, group, output_padding;
inputs: x (N, C_in, *spatial), w (C_in, C_out/group, *kernel), [bias (C_out,)].

One batched matmul per group makes every input pixel's contribution to every kernel tap (the column
tensor); col2im then adds each tap's slab into the strided output positions it lands on (a loop over
taps only). The full, uncropped result lives in a scratch buffer that also covers negative pads.
"""

from __future__ import annotations

import itertools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.blas import gemm_threads
from edgert.kernels.cpu.convolution import compute_dtype, conv_params
from edgert.kernels.registry import register


def _columns(x: np.ndarray, w: np.ndarray, group: int) -> np.ndarray:
    """(N, C_out, *kernel, *in_spatial): the product of every input pixel with every kernel tap."""
    n, channels = x.shape[:2]
    kernel = w.shape[2:]
    out_per_group = w.shape[1]
    weights = w.reshape(group, channels // group, -1).transpose(0, 2, 1)   # (g, C_out/g * K, C_in/g)
    pixels = x.reshape(n, group, channels // group, -1)                    # (N, g, C_in/g, P)
    gemm_threads(2 * n * weights.size * pixels.shape[-1])
    cols = np.matmul(weights, pixels)                                      # (N, g, C_out/g * K, P)
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
