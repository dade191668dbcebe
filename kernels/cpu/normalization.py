"""CPU kernel: Normalization.

y = (x - mean) / sqrt(var + epsilon) * scale + bias, the statistics taken over ``axes`` (and, with
``groups`` > 1, also over the channels of each of the groups that axis 1 splits into); scale and bias
are already shaped to broadcast against x. Optional outputs 1 and 2 receive the mean and 1/sqrt(var + eps)
with the reduced axes kept as size 1 (LayerNormalization's extra outputs).
attrs: axes, epsilon, groups (default 1).

The prepare hook binds float32 normalization over trailing axes with per-row scale/bias (LayerNorm) to the
native kernel (native.bind_layernorm: statistics and affine per row in one vectorized pass), else the same
passes (float32/float64, no groups, one output) to the layer's fixed arrays, the statistics and squares in scratch and the centered values in the output itself.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu import native
from edgert.kernels.cpu.convolution import compute_dtype
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


def _grouped(x: np.ndarray, axes, groups: int):
    """A view of x and the axes to reduce: with groups, (N, C, ...) is seen as (N, G, C/G, ...)."""
    rank = x.ndim
    axes = sorted(a + rank if a < 0 else a for a in axes)
    if groups == 1:
        return x, tuple(axes)
    view = x.reshape((x.shape[0], groups, x.shape[1] // groups) + x.shape[2:])
    return view, (2,) + tuple(a + 1 for a in axes)


def normalize(x: np.ndarray, axes, epsilon: float, groups: int = 1):
    """(normalized x in the compute type, mean, inverse standard deviation) — shared with fused kernels."""
    dtype = compute_dtype(x.dtype)
    view, reduce_axes = _grouped(x.astype(dtype, copy=False), axes, groups)
    mean = np.mean(view, axis=reduce_axes, keepdims=True)
    centered = view - mean
    variance = np.mean(np.square(centered), axis=reduce_axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(variance + dtype.type(epsilon))
    centered *= inv_std
    return centered.reshape(x.shape), mean, inv_std


@register(LayerKind.NORMALIZATION)
def normalization(attrs, inputs, outputs):
    x = inputs[0]
    scale = inputs[1] if len(inputs) > 1 else None
    bias = inputs[2] if len(inputs) > 2 else None
    groups = int(attrs.get("groups", 1))
    y, mean, inv_std = normalize(x, attrs["axes"], float(attrs["epsilon"]), groups)
    if scale is not None:
        y *= scale
    if bias is not None:
        y += bias
    np.copyto(outputs[0], y, casting="unsafe")
    if len(outputs) == 3:
        np.copyto(outputs[1], mean.reshape(outputs[1].shape), casting="unsafe")
        np.copyto(outputs[2], inv_std.reshape(outputs[2].shape), casting="unsafe")


@register_prepare(LayerKind.NORMALIZATION)
def prepare_normalization(attrs, inputs, outputs, workspace):
    x, out = inputs[0], outputs[0]
    affine = [a for a in inputs[1:3] if a is not None]
    if len(outputs) != 1 or int(attrs.get("groups", 1)) != 1 or x.dtype != out.dtype \
            or x.dtype not in (np.float32, np.float64) or any(a.dtype != x.dtype for a in affine):
        return None
    axes = tuple(sorted(int(a) % x.ndim for a in attrs["axes"]))
    if x.dtype == np.float32:   # LayerNorm over trailing axes: one native pass per row
        fused = native.bind_layernorm(x, out, axes, inputs[1] if len(inputs) > 1 else None,
                                      inputs[2] if len(inputs) > 2 else None, float(attrs["epsilon"]))
        if fused is not None:
            return fused
    count = np.asarray(math.prod(x.shape[a] for a in axes), x.dtype)
    stats = tuple(1 if a in axes else d for a, d in enumerate(x.shape))
    mean, inv_std, squares = workspace.scratch(stats, x.dtype), workspace.scratch(stats, x.dtype), \
        workspace.scratch(x.shape, x.dtype)
    calls = [functools.partial(np.add.reduce, x, axis=axes, keepdims=True, out=mean),
             functools.partial(np.divide, mean, count, mean),
             functools.partial(np.subtract, x, mean, out),            # centered, in the output
             functools.partial(np.multiply, out, out, squares),
             functools.partial(np.add.reduce, squares, axis=axes, keepdims=True, out=inv_std),
             functools.partial(np.divide, inv_std, count, inv_std),   # the variance
             functools.partial(np.add, inv_std, x.dtype.type(attrs["epsilon"]), inv_std),
             functools.partial(np.sqrt, inv_std, inv_std),
             functools.partial(np.divide, x.dtype.type(1), inv_std, inv_std),
             functools.partial(np.multiply, out, inv_std, out)]
    calls += [functools.partial(op, out, a, out) for op, a in zip((np.multiply, np.add), inputs[1:3])
              if a is not None]
    return sequence(calls)
