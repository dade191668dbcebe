"""CPU kernel: LRN, cross-channel local response normalization.

attrs: size, alpha, beta, bias. y = x / (bias + alpha / size * sum of x² over the channel window) ** beta,
the window running from c - floor((size - 1) / 2) to c + ceil((size - 1) / 2).
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.convolution import compute_dtype
from edgert.kernels.registry import register


@register(LayerKind.LRN)
def lrn(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    size = int(attrs["size"])
    alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    dtype = compute_dtype(x.dtype)
    squares = np.square(x, dtype=dtype)
    channels = x.shape[1]
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    window = squares.copy()
    for offset in range(-before, after + 1):   # loop over the window's taps, each one shifted slab
        if offset == 0 or abs(offset) >= channels:
            continue
        if offset > 0:
            window[:, :channels - offset] += squares[:, offset:]
        else:
            window[:, -offset:] += squares[:, :channels + offset]
    window *= dtype.type(alpha / size)
    window += dtype.type(bias)
    np.power(window, dtype.type(-beta), out=window)
    np.multiply(x, window, out=out, casting="unsafe")
