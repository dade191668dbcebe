"""CPU kernel: Pooling.

attrs: type (PoolingType), kernel, strides, pads (begin..., end...), dilations, ceil_mode, count_include_pad,
p (LP pooling), storage_order (indices of max pooling: 0 row-major, 1 column-major).
A second output, when present, receives max pooling's int64 indices into the flattened input.

Windows covering the whole input reduce directly. Others are boxes, so max and sum pool one spatial axis
after the other (k strided passes per axis instead of one per kernel tap), over cache-sized blocks of planes
spread on worker threads; padding is never materialized: each tap only meets the outputs for which it
reads inside the input. Average divisors are likewise products of per-axis counts.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from edgert.ir.kinds import LayerKind, PoolingType
from edgert.kernels.cpu.convolution import compute_dtype, conv_params, parallel_chunks, tap_slices
from edgert.kernels.cpu.padding import pad_constant
from edgert.kernels.registry import register


def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else (np.iinfo(dtype).min if dtype.kind in "iu" else False)


@functools.lru_cache(maxsize=512)
def _divisor(in_spatial, kernel, strides, dilations, begins, ends, out_spatial, include_pad) -> np.ndarray | int:
    """How many taps of each window fall inside the input (or inside the pads too, when they count)."""
    counts = []
    for size, k, s, d, b, e, o in zip(in_spatial, kernel, strides, dilations, begins, ends, out_spatial):
        positions = np.arange(o)[:, None] * s - b + np.arange(k)[None, :] * d
        low, high = (-b, size + e) if include_pad else (0, size)
        counts.append(((positions >= low) & (positions < high)).sum(axis=1))
    divisor = functools.reduce(np.multiply.outer, counts)
    full = math.prod(kernel)
    return full if np.all(divisor == full) else np.maximum(divisor, 1)


def _is_global(x, attrs, out) -> bool:
    kernel, _, _, begins, ends = conv_params(attrs, x.ndim - 2)
    return (list(kernel) == list(x.shape[2:]) and not any(begins) and not any(ends)
            and all(o == 1 for o in out.shape[2:]))


def _lp_power(p):
    if p == 1:
        return np.abs
    if p == 2:
        return np.square
    return lambda v, out=None: np.power(np.abs(v, out=out), p, out=out)


def _pool_axis(data: np.ndarray, axis: int, window: tuple, out_len: int, combine, identity) -> np.ndarray:
    """1-D pooling of one axis, padding implied: each kernel tap folds in the strided slice of the input it
    meets, over the outputs for which that slice is inside the input (the rest would read padding)."""
    kernel, stride, dilation, begin = window
    in_len = data.shape[axis]
    acc = None
    for t in range(kernel):
        first = max(0, -(-(begin - t * dilation) // stride))               # outputs whose tap t is inside
        last = min(out_len - 1, (in_len - 1 + begin - t * dilation) // stride)
        if last < first:
            continue
        start = first * stride - begin + t * dilation
        index = [slice(None)] * data.ndim
        index[axis] = slice(start, start + (last - first) * stride + 1, stride)
        taps = data[tuple(index)]
        if acc is None:
            shape = list(data.shape)
            shape[axis] = out_len
            if first == 0 and last == out_len - 1:
                acc = np.array(taps, copy=True)
                continue
            acc = np.full(shape, identity, data.dtype)
        index[axis] = slice(first, last + 1)
        region = acc[tuple(index)]
        combine(region, taps, out=region)
    return acc


def _fold_windows(x: np.ndarray, attrs, out_spatial, kind: PoolingType) -> np.ndarray:
    """(planes, *out_spatial): max or sum over every window, one spatial axis after the other (a window is a box),
    over cache-sized blocks of planes spread on worker threads."""
    kernel, strides, dilations, begins, _ = conv_params(attrs, x.ndim - 2)
    planes = x.reshape((-1,) + x.shape[2:])
    total = np.empty((planes.shape[0],) + tuple(out_spatial), x.dtype)
    combine, identity = (np.maximum, _lowest(x.dtype)) if kind == PoolingType.MAX else (np.add, 0)

    def block(lo, hi):
        data = planes[lo:hi]
        for axis, window in enumerate(zip(kernel, strides, dilations, begins)):
            data = _pool_axis(data, 1 + axis, window, out_spatial[axis], combine, identity)
        total[lo:hi] = data

    parallel_chunks(block, planes.shape[0], 2 * math.prod(x.shape[2:]) * x.itemsize)
    return total


def _pool(x, attrs, out, kind: PoolingType) -> None:
    dtype = out.dtype if kind == PoolingType.MAX else compute_dtype(x.dtype)
    p = float(attrs.get("p", 2))
    values = x.astype(dtype, copy=False)
    if kind == PoolingType.LP:
        values = _lp_power(p)(values)     # a new array: pooling then sums |x|^p
    if _is_global(x, attrs, out):
        flat = values.reshape(x.shape[:2] + (-1,))
        total = np.max(flat, axis=-1) if kind == PoolingType.MAX else np.sum(flat, axis=-1, dtype=dtype)
    else:
        total = _fold_windows(values, attrs, out.shape[2:], kind)
    _finish(total, attrs, x, out, kind, p)


def _finish(total, attrs, x, out, kind, p) -> None:
    total = total.reshape(out.shape)
    if kind == PoolingType.AVERAGE:
        kernel, strides, dilations, begins, ends = conv_params(attrs, x.ndim - 2)
        divisor = _divisor(tuple(x.shape[2:]), tuple(kernel), tuple(strides), tuple(dilations), tuple(begins),
                           tuple(ends), tuple(out.shape[2:]), bool(attrs.get("count_include_pad", False)))
        np.divide(total, np.asarray(divisor, total.dtype), out=out, casting="unsafe")
    elif kind == PoolingType.LP:
        np.copyto(out, np.sqrt(total) if p == 2 else total if p == 1 else total ** total.dtype.type(1 / p),
                  casting="unsafe")
    else:
        np.copyto(out, total, casting="unsafe")


def _max_with_indices(x, attrs, out, indices):
    """Max pooling that also records where each maximum came from (first one on ties)."""
    spatial = x.ndim - 2
    kernel, strides, dilations, begins, _ = conv_params(attrs, spatial)
    out_spatial = out.shape[2:]
    reach = [max(0, (o - 1) * s + d * (k - 1) + 1 - i - b)   # end padding the last window reaches
             for o, s, d, k, i, b in zip(out_spatial, strides, dilations, kernel, x.shape[2:], begins)]
    xp = pad_constant(x, begins, reach, _lowest(x.dtype))
    in_spatial = x.shape[2:]
    order = range(spatial) if int(attrs.get("storage_order", 0)) == 0 else range(spatial - 1, -1, -1)
    element_strides = [0] * spatial
    step = 1
    for axis in reversed(order):
        element_strides[axis] = step
        step *= in_spatial[axis]
    best = best_index = None
    for tap in itertools.product(*(range(k) for k in kernel)):
        slab = xp[tap_slices(tap, strides, dilations, out_spatial)]
        where = np.zeros((1,) * spatial, np.int64)
        for axis in range(spatial):
            positions = np.arange(out_spatial[axis]) * strides[axis] - begins[axis] + tap[axis] * dilations[axis]
            where = where + (positions * element_strides[axis]).reshape((-1,) + (1,) * (spatial - axis - 1))
        if best is None:
            best, best_index = slab.copy(), np.broadcast_to(where, slab.shape).copy()
        else:
            better = slab > best
            np.copyto(best, slab, where=better)
            np.copyto(best_index, np.broadcast_to(where, slab.shape), where=better)
    planes = np.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(x.shape[:2] + (1,) * spatial)
    np.copyto(out, best)
    np.add(best_index, planes * math.prod(in_spatial), out=indices, casting="unsafe")


@register(LayerKind.POOLING)
def pooling(attrs, inputs, outputs):
    kind = PoolingType(attrs["type"])
    if len(outputs) == 2:
        _max_with_indices(inputs[0], attrs, outputs[0], outputs[1])
    else:
        _pool(inputs[0], attrs, outputs[0], kind)
