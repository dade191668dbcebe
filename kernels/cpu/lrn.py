"""CPU kernel: LRN, cross-channel local response normalization.

attrs: size, alpha, beta, bias. y = x / (bias + alpha / size * sum of x² over the channel window) ** beta,
the window running from c - floor((size - 1) / 2) to c + ceil((size - 1) / 2).

The prepare hook runs float32/float64 LRN over blocks of positions (all channels of each), its squares and
window sums in the context's scratch: no allocation per run, and right when the output is the input itself
(each block is read whole before its output is written), which the memory planner allows on the CPU.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.convolution import compute_dtype
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare

BLOCK_ELEMENTS = 1 << 18   # per scratch array (1 MiB of float32): a few blocks per layer, each call long


def _parameters(attrs):
    size = int(attrs["size"])
    return size, float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))


def _window_taps(size: int, channels: int) -> list[int]:
    """Channel offsets of the window's taps other than the centre that reach another channel."""
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    return [offset for offset in range(-before, after + 1) if offset != 0 and abs(offset) < channels]


@register(LayerKind.LRN)
def lrn(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    size, alpha, beta, bias = _parameters(attrs)
    dtype = compute_dtype(x.dtype)
    squares = np.square(x, dtype=dtype)
    channels = x.shape[1]
    window = squares.copy()
    for offset in _window_taps(size, channels):   # loop over the window's taps, each one shifted slab
        if offset > 0:
            window[:, :channels - offset] += squares[:, offset:]
        else:
            window[:, -offset:] += squares[:, :channels + offset]
    window *= dtype.type(alpha / size)
    window += dtype.type(bias)
    np.power(window, dtype.type(-beta), out=window)
    np.multiply(x, window, out=out, casting="unsafe")


@register_prepare(LayerKind.LRN)
def prepare_lrn(attrs, inputs, outputs, workspace):
    x, out = inputs[0], outputs[0]
    if x.dtype not in (np.float32, np.float64) or out.dtype != x.dtype or x.ndim < 3 \
            or not (x.flags.c_contiguous and out.flags.c_contiguous):
        return None
    size, alpha, beta, bias = _parameters(attrs)
    n, channels, positions = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    block = max(1, min(positions, BLOCK_ELEMENTS // channels))
    squares, window = (workspace.scratch((channels, block), x.dtype) for _ in range(2))
    source, target = x.reshape(n, channels, positions), out.reshape(n, channels, positions)
    scale, power, shift = x.dtype.type(alpha / size), x.dtype.type(-beta), x.dtype.type(bias)
    calls = []
    for image in range(n):
        for start in range(0, positions, block):
            length = min(block, positions - start)
            xs, sq, win = source[image, :, start:start + length], squares[:, :length], window[:, :length]
            calls += [functools.partial(np.square, xs, out=sq), functools.partial(np.copyto, win, sq)]
            for offset in _window_taps(size, channels):
                into, taps = (win[:channels - offset], sq[offset:]) if offset > 0 else \
                    (win[-offset:], sq[:channels + offset])
                calls.append(functools.partial(np.add, into, taps, out=into))
            calls += [functools.partial(np.multiply, win, scale, out=win), functools.partial(np.add, win, shift, out=win),
                      functools.partial(np.power, win, power, out=win),
                      functools.partial(np.multiply, xs, win, out=target[image, :, start:start + length])]
    return sequence(calls)
