"""CPU kernel: Softmax (attrs: axes, log; optional hard for Hardmax).

Softmax runs over the product of ``axes``: exp(x - max) / sum, or (x - max) - log(sum) when ``log``.
Subtracting the max keeps exp from overflowing. ``hard`` gives Hardmax: 1 at the first maximum
over ``axes`` (in row-major order), 0 elsewhere. float16 runs step by step in float16 (each NumPy
step rounds once), which is what ONNX's reference computes. The prepare hook binds float32
softmax over trailing axes to the native kernel (native.bind_softmax: max, exp and sum per row in one
vectorized pass), else (and log-softmax always) the same passes to the layer's fixed arrays, with the row
statistics and exponentials in scratch.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu import native
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


def softmax_into(x: np.ndarray, axes: tuple, log: bool, out: np.ndarray) -> None:
    """Write softmax (or log-softmax) of ``x`` over ``axes`` into ``out``; ``out`` may alias ``x``."""
    # A row whose max is infinite gives NaN (inf - inf), as in onnxruntime and ONNX's reference.
    peak = np.maximum.reduce(x, axis=axes, keepdims=True)
    np.subtract(x, peak, out=out)
    if log:
        total = np.add.reduce(np.exp(out), axis=axes, keepdims=True)
        np.subtract(out, np.log(total), out=out)
    else:
        np.exp(out, out=out)
        np.divide(out, np.add.reduce(out, axis=axes, keepdims=True), out=out)


def hardmax_into(x: np.ndarray, axes: tuple, out: np.ndarray) -> None:
    rest = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, rest + list(axes))
    rows = moved.reshape(-1, int(np.prod([x.shape[a] for a in axes], dtype=np.int64)))
    one_hot = np.zeros(rows.shape, out.dtype)
    if rows.shape[1]:
        one_hot[np.arange(rows.shape[0]), np.argmax(rows, axis=1)] = 1
    order = rest + list(axes)
    np.copyto(out, np.transpose(one_hot.reshape(moved.shape), np.argsort(order)))


@register(LayerKind.SOFTMAX)
def softmax(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    axes = tuple(int(a) for a in attrs["axes"])
    if attrs.get("hard", False):
        hardmax_into(x, axes, out)
    else:
        softmax_into(x, axes, bool(attrs.get("log", False)), out)


@register_prepare(LayerKind.SOFTMAX)
def prepare_softmax(attrs, inputs, outputs, workspace):
    x, out = inputs[0], outputs[0]
    if attrs.get("hard", False) or x.dtype != out.dtype or x.dtype.kind != "f" or x.size == 0:
        return None
    axes = tuple(int(a) % x.ndim for a in attrs["axes"])
    log = bool(attrs.get("log", False))
    fused = None if log else native.bind_softmax(x, out, axes)   # float32 over trailing axes: one native pass per row
    if fused is not None:
        return fused
    stats = workspace.scratch(tuple(1 if a in axes else d for a, d in enumerate(x.shape)), x.dtype)
    if log:   # softmax_into's passes over fixed arrays (CRNN's CTC head: 30 -> 8 µs)
        exps = workspace.scratch(x.shape, x.dtype)
        return sequence([functools.partial(np.maximum.reduce, x, axis=axes, keepdims=True, out=stats),
                         functools.partial(np.subtract, x, stats, out),
                         functools.partial(np.exp, out, exps),
                         functools.partial(np.add.reduce, exps, axis=axes, keepdims=True, out=stats),
                         functools.partial(np.log, stats, stats),
                         functools.partial(np.subtract, out, stats, out)])
    return sequence([functools.partial(np.maximum.reduce, x, axis=axes, keepdims=True, out=stats),
                     functools.partial(np.subtract, x, stats, out),
                     functools.partial(np.exp, out, out),
                     functools.partial(np.add.reduce, out, axis=axes, keepdims=True, out=stats),
                     functools.partial(np.divide, out, stats, out)])
