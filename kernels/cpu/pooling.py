"""CPU kernel: Pooling.

attrs: type (PoolingType), kernel, strides, pads (begin..., end...), dilations, ceil_mode, count_include_pad,
p (LP pooling), storage_order (indices of max pooling: 0 row-major, 1 column-major).
A second output, when present, receives max pooling's int64 indices into the flattened input.

Windows covering the whole input reduce directly. Others are boxes, so max and sum pool one spatial axis
after the other (k strided passes per axis instead of one per kernel tap), over cache-sized blocks of planes
spread on worker threads; padding is never materialized: each tap only meets the outputs for which it
reads inside the input. Average divisors are likewise products of per-axis counts.

The prepare hook binds 2-D float32 max and average pooling to the native kernel when it is built
(native.py), else, and for other float pooling, to a handful of ufunc calls over fixed views:
a global pool is one reduction; a windowed one folds one axis after the other as above, each kernel
tap one call over the outputs it meets (windows of two or three: pairs of neighbours first, in one
pass over contiguous memory), the intermediate results in the context's scratch.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from edgert.ir.kinds import LayerKind, PoolingType
from edgert.kernels.cpu import native
from edgert.kernels.cpu.convolution import compute_dtype, conv_params, parallel_chunks, tap_slices
from edgert.kernels.cpu.padding import pad_constant
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


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


def _bind_global(x, out, kind: PoolingType):
    planes, results = x.reshape(x.shape[:2] + (-1,)), out.reshape(out.shape[:2])
    if kind == PoolingType.MAX:
        return functools.partial(np.maximum.reduce, planes, axis=-1, out=results)
    if x.flags.c_contiguous and out.flags.c_contiguous:   # then the reshapes are views of the bound arrays
        means = native.bind_row_means(planes.reshape(-1, planes.shape[-1]), results.reshape(-1))
        if means is not None:
            return means
    count = np.asarray(planes.shape[-1], out.dtype)
    return sequence([functools.partial(np.add.reduce, planes, axis=-1, out=results),
                     functools.partial(np.divide, out, count, out)])


def _axis_taps(in_len: int, window: tuple) -> list:
    """Per kernel tap of one axis: (first, last) output it meets inside the input, and the input slice it reads."""
    kernel, stride, dilation, begin, count = window
    taps = []
    for t in range(kernel):
        first = max(0, -(-(begin - t * dilation) // stride))
        last = min(count - 1, (in_len - 1 + begin - t * dilation) // stride)
        if last >= first:
            start = first * stride - begin + t * dilation
            taps.append((first, last, slice(start, start + (last - first) * stride + 1, stride)))
    return taps


def _bind_axis(source, axis: int, window: tuple, target, combine, identity) -> list:
    """Calls folding ``source`` over the windows of one axis into ``target``, padding implied (as _pool_axis):
    taps meeting every output start it (no fill), the others fold in over the outputs they meet."""
    count = window[-1]

    def part(array, index):
        return array[(slice(None),) * axis + (index,)]

    taps = [(first, last, part(source, taken)) for first, last, taken in _axis_taps(source.shape[axis], window)]
    full = [i for i, tap in enumerate(taps) if tap[:2] == (0, count - 1)][:2]
    rest = [tap for i, tap in enumerate(taps) if i not in full]
    full = [taps[i] for i in full]
    if len(full) >= 2:
        calls = [functools.partial(combine, full[0][2], full[1][2], out=target)]
    elif full:
        calls = [functools.partial(np.copyto, target, full[0][2])]
    else:
        calls = [functools.partial(target.fill, identity)]
    for first, last, taken in rest:
        region = part(target, slice(first, last + 1))
        calls.append(functools.partial(combine, region, taken, out=region))
    return calls


def _bind_short(source, axis: int, window: tuple, target, combine, workspace) -> list | None:
    """Windows of two or three neighbours (dilation 1) along one axis of a contiguous ``source``.

    The combine of every pair of neighbours (then of every triple) is one pass over the flat array
    (1-D and contiguous: the strided slices of _bind_axis make NumPy buffer its operands); the outputs
    are then strided copies, of whole windows for those inside the input, of pairs or single elements
    for the windows that the input's ends cut.
    """
    kernel, stride, _, begin, count = window
    length = source.shape[axis]
    step = math.prod(source.shape[axis + 1:])   # elements between neighbours along the axis
    flat, folded = source.reshape(-1), workspace.scratch(source.shape, source.dtype)
    line = folded.reshape(-1)

    def part(array, index):
        return array[(slice(None),) * axis + (index,)]

    # folded[r] = combine(source[r], source[r + 1]); the last index along the axis pairs across a row or
    # a plane and is never read
    calls = [functools.partial(combine, flat[:flat.size - step], flat[step:], out=line[:flat.size - step])]
    inside = [j for j in range(count) if 0 <= j * stride - begin <= length - kernel]
    for j in sorted(set(range(count)) - set(inside)):   # cut windows: copied before pairs become triples
        low, high = max(0, j * stride - begin), min(length, j * stride - begin + kernel)
        if high - low not in (1, 2):
            return None   # a window outside the input: left to _bind_axis
        calls.append(functools.partial(np.copyto, part(target, j), part(folded if high - low == 2 else source, low)))
    if inside:
        if kernel == 3:   # folded[r] = combine(pair r, source[r + 2]), in place
            calls.append(functools.partial(combine, line[:flat.size - 2 * step], flat[2 * step:],
                                           out=line[:flat.size - 2 * step]))
        first, last, low = inside[0], inside[-1], inside[0] * stride - begin
        calls.append(functools.partial(np.copyto, part(target, slice(first, last + 1)),
                                       part(folded, slice(low, low + (last - first) * stride + 1, stride))))
    return calls


def _bind_windows(x, attrs, out, kind: PoolingType, workspace):
    spatial = x.ndim - 2
    kernel, strides, dilations, begins, ends = conv_params(attrs, spatial)
    out_spatial = out.shape[2:]
    divisor = None
    if kind == PoolingType.AVERAGE:
        divisor = _divisor(tuple(x.shape[2:]), tuple(kernel), tuple(strides), tuple(dilations), tuple(begins),
                           tuple(ends), tuple(out_spatial), bool(attrs.get("count_include_pad", False)))
    bound = native.bind_pool(x, out, kind == PoolingType.AVERAGE, divisor, (kernel, strides, dilations, begins, ends))
    if bound is not None:
        return bound
    combine, identity = (np.maximum, _lowest(x.dtype)) if kind == PoolingType.MAX else (np.add, 0)
    # outer axes first: the first, largest pass then reads whole contiguous rows
    axes = [a for a in range(spatial)
            if kernel[a] != 1 or strides[a] != 1 or begins[a] or x.shape[2 + a] != out_spatial[a]]
    if not axes or any(not _axis_taps(x.shape[2 + a], (kernel[a], strides[a], dilations[a], begins[a], out_spatial[a]))
                       for a in axes):
        return None
    calls, source = [], x
    for position, axis in enumerate(axes):
        shape = list(source.shape)
        shape[2 + axis] = out_spatial[axis]
        target = out if position == len(axes) - 1 else workspace.scratch(shape, x.dtype)
        window = (kernel[axis], strides[axis], dilations[axis], begins[axis], out_spatial[axis])
        short = None
        if kernel[axis] in (2, 3) and dilations[axis] == 1 and source.flags.c_contiguous \
                and source.shape[2 + axis] >= kernel[axis]:
            short = _bind_short(source, 2 + axis, window, target, combine, workspace)
        calls += short if short is not None else _bind_axis(source, 2 + axis, window, target, combine, identity)
        source = target
    if kind == PoolingType.AVERAGE:
        calls.append(functools.partial(np.divide, out, np.asarray(divisor, out.dtype), out))
    return sequence(calls)


@register_prepare(LayerKind.POOLING)
def prepare_pooling(attrs, inputs, outputs, workspace):
    kind = PoolingType(attrs["type"])
    x, out = inputs[0], outputs[0]
    if len(outputs) != 1 or kind == PoolingType.LP or x.dtype != out.dtype or x.dtype.kind != "f" \
            or x.dtype == np.float16 or x.ndim < 3:
        return None
    if _is_global(x, attrs, out):
        return _bind_global(x, out, kind)
    return _bind_windows(x, attrs, out, kind, workspace)
