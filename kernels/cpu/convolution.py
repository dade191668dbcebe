"""CPU kernel: Convolution (attrs: kernel, strides, pads (begin..., end...), dilations, group; inputs x, w, [bias]).

Three tactics, picked from the attrs:
- pointwise (1x1, no padding): the input itself (subsampled for strides) is the column matrix: one matmul;
- depthwise (group == C_in == C_out): multiply-accumulate over kernel taps, each tap one vectorized pass
  over a cache-sized block of channel planes;
- general: im2col (one copy per kernel tap) then one batched BLAS matmul over groups.

Both tap-based tactics (and pooling) read the input through a TapLayout: the padded input split into its
stride phases (input rows/columns congruent modulo the stride), each phase a flat 1-D row per plane. Every
kernel tap then reads one contiguous run of one phase, so copies and tap passes run over long contiguous
memory whatever the stride. Outputs are computed on the phase's row width and the few extra columns are
cropped at the end.

Tap loops and column copies work on blocks of channel planes spread over a few worker threads (NumPy
releases the GIL inside its loops) on the shared worker pool (threads.py), products by column blocks there too.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.epilogue import apply_epilogue
from edgert.kernels.cpu.padding import fill_border
from edgert.kernels.cpu import threads
from edgert.kernels.cpu.blas import gemm_threads, matmul
from edgert.kernels.registry import register

CHUNK_BYTES = 1 << 20          # working set of one block of a tap loop: fits a core's L2 (or a cluster's L3)
PARALLEL_MIN_BYTES = 1 << 18   # below this, threads cost more than they save
COLUMN_TILE_BYTES = 1 << 24    # largest im2col tile (bounds memory for big images)
SMALL_TAP_ELEMENTS = 1 << 19   # below this many (output x tap) elements, one call over all taps beats a tap loop
DIRECT_COLUMN_BYTES = 1 << 22  # up to this column-matrix size, the lean strided-view im2col is faster


def parallel_chunks(fn, count: int, unit_bytes: int) -> None:
    """Call ``fn(lo, hi)`` over [0, count) in blocks of about CHUNK_BYTES of work, on the shared worker pool."""
    per_chunk = max(1, CHUNK_BYTES // max(1, unit_bytes))
    chunks = [(lo, min(count, lo + per_chunk)) for lo in range(0, count, per_chunk)]
    workers = threads.thread_count()
    if len(chunks) == 1 or workers == 1 or count * unit_bytes < PARALLEL_MIN_BYTES:
        for lo, hi in chunks:
            fn(lo, hi)
        return
    settings = np.geterr()   # error state is per thread: carry the caller's into the workers

    def work(part):
        with np.errstate(**settings):
            for lo, hi in part:
                fn(lo, hi)

    threads.pool().run_parts([functools.partial(work, chunks[i::workers]) for i in range(min(workers, len(chunks)))])


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """Arithmetic type for a tensor type: float16 is computed in float32 (BLAS has no float16 path)."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def conv_params(attrs: dict, spatial: int):
    kernel = [int(k) for k in attrs["kernel"]]
    strides = [int(s) for s in attrs.get("strides") or [1] * spatial]
    dilations = [int(d) for d in attrs.get("dilations") or [1] * spatial]
    pads = [int(p) for p in attrs.get("pads") or [0] * 2 * spatial]
    return kernel, strides, dilations, pads[:spatial], pads[spatial:]


def tap_slices(tap, strides, dilations, out_spatial) -> tuple:
    """Index of the input elements that kernel tap ``tap`` meets, for every output position."""
    return (Ellipsis,) + tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                               for t, s, d, o in zip(tap, strides, dilations, out_spatial))


class TapGroup(NamedTuple):
    """Kernel taps that read the same stride phase: their runs form a strided grid, copied in one call."""
    first: int             # position of the group's first tap in TapGeometry.order
    counts: tuple          # taps per kernel axis
    offset: int            # flat start of the first tap's run
    steps: tuple           # flat distance between neighbouring taps, per kernel axis


class TapGeometry(NamedTuple):
    extents: tuple         # spatial extent of one phase
    sources: tuple         # per phase: (index into the phase, index into the input) that copies it
    out_spatial: tuple
    length: int            # flat output positions per plane (output rows x phase row width)
    offsets: tuple         # per kernel tap: where its run starts in the plane's row of phases
    order: tuple           # kernel taps grouped by phase (the order of gathered columns)
    groups: tuple          # TapGroup per phase that some tap reads
    crop: tuple            # index of the real outputs in the (output rows, *extents[1:]) grid


def _phase_sources(in_spatial, begins, strides, extents) -> tuple:
    """For every stride phase: the slices of the phase and of the input that fill it."""
    sources = []
    for phase in itertools.product(*(range(s) for s in strides)):
        into, take = [], []
        for size, b, s, f, q in zip(in_spatial, begins, strides, phase, extents):
            first = (f - b) % s                      # first input index landing in this phase
            count = len(range(first, size, s))
            into.append(slice((b + first) // s, (b + first) // s + count))
            take.append(slice(first, size, s))
        sources.append((tuple(into), tuple(take)))
    return tuple(sources)


def _tap_groups(kernel, strides, dilations, phase_size, row_strides):
    per_axis = []   # per axis: phase -> (kernel indices reading it, first shift, shift step)
    for k, s, d in zip(kernel, strides, dilations):
        by_phase = {}
        for index in range(k):
            by_phase.setdefault(index * d % s, []).append(index)
        per_axis.append({f: (ks, ks[0] * d // s, d // math.gcd(d, s)) for f, ks in by_phase.items()})
    order, groups = [], []
    for phase in itertools.product(*(range(s) for s in strides)):
        if not all(f in axis for f, axis in zip(phase, per_axis)):
            continue
        parts = [axis[f] for f, axis in zip(phase, per_axis)]
        offset = int(np.ravel_multi_index(phase, strides)) * phase_size + \
            sum(shift * r for (_, shift, _), r in zip(parts, row_strides))
        groups.append(TapGroup(len(order), tuple(len(ks) for ks, _, _ in parts), offset,
                               tuple(step * r for (_, _, step), r in zip(parts, row_strides))))
        order.extend(int(np.ravel_multi_index(tap, kernel)) for tap in itertools.product(*(ks for ks, _, _ in parts)))
    return tuple(order), tuple(groups)


@functools.lru_cache(maxsize=1024)
def tap_geometry(in_spatial: tuple, kernel: tuple, strides: tuple, dilations: tuple, begins: tuple, ends: tuple,
                 out_spatial: tuple) -> TapGeometry:
    extents = [-(-(i + b + e) // s) for i, b, e, s in zip(in_spatial, begins, ends, strides)]
    extents[0] += 1   # spare row: the runs of the last taps read a few elements past the phase's end
    row_strides = [math.prod(extents[a + 1:]) for a in range(len(extents))]
    phase_size = math.prod(extents)
    order, groups = _tap_groups(kernel, strides, dilations, phase_size, row_strides)
    offsets = [0] * len(order)
    for group in groups:
        for i, tap in enumerate(itertools.product(*(range(c) for c in group.counts))):
            offsets[order[group.first + i]] = group.offset + sum(t * step for t, step in zip(tap, group.steps))
    return TapGeometry(tuple(extents), _phase_sources(in_spatial, begins, strides, extents), tuple(out_spatial),
                       out_spatial[0] * row_strides[0], tuple(offsets), order, groups,
                       (Ellipsis,) + tuple(slice(0, o) for o in out_spatial[1:]))


class TapLayout:
    """The padded input as (planes, phases x phase elements): tap t reads ``run(t)`` = planes[:, o_t : o_t + length].

    Phase f of an axis with stride s holds the padded input's elements f, f + s, f + 2s... so the taps of a
    strided window all read contiguous runs.
    """

    def __init__(self, x, kernel, strides, dilations, begins, ends, out_spatial, dtype, fill=0):
        g = tap_geometry(x.shape[2:], tuple(kernel), tuple(strides), tuple(dilations), tuple(begins), tuple(ends),
                         tuple(out_spatial))
        self.geometry, self.length, self.offsets = g, g.length, g.offsets
        count = x.shape[0] * x.shape[1]
        phases = math.prod(strides)
        shape = (count, phases) + g.extents
        # zeros come from calloc for free; another fill value is written around each phase's copy only
        buffer = np.zeros(shape, dtype) if fill == 0 else np.empty(shape, dtype)
        source = x.reshape((count,) + x.shape[2:])
        for phase, (into, take) in enumerate(g.sources):
            if fill != 0:
                fill_border(buffer[:, phase], (Ellipsis,) + into, 1, fill)
            np.copyto(buffer[(slice(None), phase) + into], source[(slice(None),) + take], casting="unsafe")
        self.planes = buffer.reshape(count, -1)

    def run(self, tap: int, lo: int, hi: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Planes [lo, hi) of tap ``tap``'s run over flat output positions [start, stop)."""
        offset = self.offsets[tap]
        return self.planes[lo:hi, offset + start:offset + (self.length if stop is None else stop)]

    def gather(self, lo: int, hi: int, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """out (hi - lo, taps, stop - start) = every tap's run, taps in ``geometry.order`` (one copy per phase)."""
        planes = self.planes
        item = planes.itemsize
        for group in self.geometry.groups:
            shape = (hi - lo,) + group.counts + (stop - start,)
            view = np.ndarray(shape, planes.dtype, buffer=planes, offset=(lo * planes.shape[1] + group.offset + start)
                              * item, strides=(planes.strides[0],) + tuple(st * item for st in group.steps) + (item,))
            taps = math.prod(group.counts)
            np.copyto(out[:, group.first:group.first + taps].reshape(shape), view)
        return out

    def crop(self, rows: np.ndarray) -> np.ndarray:
        """View (..., *out_spatial) of results computed on the flat (..., length) grid."""
        g = self.geometry
        return rows.reshape(rows.shape[:-1] + (g.out_spatial[0],) + g.extents[1:])[g.crop]


def _result_buffer(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Where to compute: ``out`` itself when it has the compute type and is contiguous, else a scratch array."""
    if out.dtype == dtype and out.flags.c_contiguous:
        return out
    return np.empty(out.shape, dtype)


def _pointwise(x, w, strides, group, result) -> None:
    n, m = result.shape[:2]
    subsampled = x[(Ellipsis,) + tuple(slice(None, None, s) for s in strides)]
    cols = subsampled.reshape(n, group, x.shape[1] // group, -1)
    weights = w.reshape(group, m // group, -1)
    matmul(weights, cols, result.reshape(n, group, m // group, -1), 2 * n * m * cols.shape[2] * cols.shape[3])


def _depthwise(layout: TapLayout, w, result) -> None:
    n, c = result.shape[:2]
    taps = len(layout.offsets)
    weights = np.tile(w.reshape(c, -1), (n, 1))              # (planes, taps)
    out_planes = result.reshape((n * c,) + result.shape[2:])
    length = layout.length
    if n * c * length * taps <= SMALL_TAP_ELEMENTS:
        # small: gathering the runs and one batched matrix-vector product beat a Python loop of tap passes
        runs = layout.gather(0, n * c, 0, length, np.empty((n * c, taps, length), result.dtype))
        ordered = weights[:, list(layout.geometry.order)]
        out_planes[...] = layout.crop(np.matmul(ordered[:, None, :], runs)[:, 0])
        return

    def block(lo, hi):
        acc = np.empty((hi - lo, length), result.dtype)
        scratch = np.empty_like(acc)
        for t in range(taps):
            np.multiply(layout.run(t, lo, hi), weights[lo:hi, t:t + 1], out=acc if t == 0 else scratch)
            if t:
                acc += scratch
        out_planes[lo:hi] = layout.crop(acc)

    parallel_chunks(block, n * c, 2 * length * result.itemsize)


def _im2col(layout: TapLayout, w, group, result) -> None:
    n, m = result.shape[:2]
    c = w.shape[1] * group
    taps = len(layout.offsets)
    order = list(layout.geometry.order)
    weights = w.reshape(m, c // group, taps)
    if order != sorted(order):   # the columns come grouped by stride phase: put the weights in that order
        weights = weights[:, :, order]
    weights = weights.reshape(group, m // group, -1)
    length = layout.length
    gemm_threads(0)
    tile = max(1, COLUMN_TILE_BYTES // (c * taps * result.itemsize))
    flat = np.empty((n, m, length), result.dtype)
    for image in range(n):
        for start in range(0, length, tile):
            stop = min(length, start + tile)
            cols = np.empty((c, taps, stop - start), result.dtype)
            first = image * c
            parallel_chunks(lambda lo, hi: layout.gather(first + lo, first + hi, start, stop, cols[lo:hi]),
                            c, taps * (stop - start) * result.itemsize)
            cols = cols.reshape(group, -1, stop - start)
            flops = 2 * m * (c // group) * taps * (stop - start)
            if stop - start == length:
                matmul(weights, cols, flat[image].reshape(group, m // group, length), flops)
            else:
                flat[image, :, start:stop] = matmul(weights, cols, flops=flops).reshape(m, -1)
    np.copyto(result, layout.crop(flat))


def _padded(x: np.ndarray, begins, ends, dtype) -> np.ndarray:
    """x with zero padding (one zeroed buffer and one copy; negative pads crop)."""
    spatial = x.shape[2:]
    shape = x.shape[:2] + tuple(d + b + e for d, b, e in zip(spatial, begins, ends))
    if not any(begins) and not any(ends) and x.dtype == dtype:
        return x
    buffer = np.zeros(shape, dtype)
    into = tuple(slice(max(b, 0), max(b, 0) + d + min(b, 0) + min(e, 0)) for d, b, e in zip(spatial, begins, ends))
    take = tuple(slice(max(-b, 0), d - max(-e, 0)) for d, b, e in zip(spatial, begins, ends))
    np.copyto(buffer[(Ellipsis,) + into], x[(Ellipsis,) + take], casting="unsafe")
    return buffer


def _shifted_im2col(x, w, kernel, dilations, begins, ends, group, result) -> None:
    """Stride-1 2-D convolution on the flattened padded planes.

    Every kernel tap reads one contiguous run of the flattened padded input (output rows times the
    padded width), so the column matrix is copied in long runs; the product computes the few
    padding columns too, and the crop drops them.
    """
    n, c, height, width = x.shape
    m, (kh, kw), (dh, dw) = result.shape[1], kernel, dilations
    padded_w = width + begins[1] + ends[1]
    padded_h = height + begins[0] + ends[0]
    oh, ow = result.shape[2:]
    run = oh * padded_w
    plane = padded_h * padded_w + (kw - 1) * dw      # tail so the last tap's run stays inside
    buffer = np.zeros((n, c, plane), result.dtype)
    view = buffer[:, :, :padded_h * padded_w].reshape(n, c, padded_h, padded_w)
    into = tuple(slice(max(b, 0), max(b, 0) + d + min(b, 0) + min(e, 0))
                 for d, b, e in zip((height, width), begins, ends))
    take = tuple(slice(max(-b, 0), d - max(-e, 0)) for d, b, e in zip((height, width), begins, ends))
    np.copyto(view[(Ellipsis,) + into], x[(Ellipsis,) + take], casting="unsafe")
    item = buffer.itemsize
    # np.ndarray over the buffer: the same view as as_strided at a fraction of its Python overhead
    taps = np.ndarray((n, c, kh, kw, run), buffer.dtype, buffer,
                      strides=buffer.strides[:2] + (dh * padded_w * item, dw * item, item))
    cols = taps.reshape(n, group, (c // group) * kh * kw, run)        # the one copy, in long runs
    weights = w.reshape(group, m // group, -1)
    wide = matmul(weights, cols, flops=2 * n * m * cols.shape[2] * run).reshape(n, m, oh, padded_w)
    np.copyto(result, wide[..., :ow])


def _direct_im2col(x, w, kernel, strides, dilations, begins, ends, group, result) -> None:
    """Columns from a strided window view of the padded input, copied once, then one GEMM per group.

    The lean path for moderate sizes: few NumPy calls, so small convolutions pay little overhead.
    """
    if x.ndim == 4 and strides == [1, 1]:
        _shifted_im2col(x, w, kernel, dilations, begins, ends, group, result)
        return
    xp = np.ascontiguousarray(_padded(x, begins, ends, result.dtype))
    n, c = xp.shape[:2]
    m = result.shape[1]
    out_spatial = result.shape[2:]
    st = xp.strides
    shape = (n, c) + tuple(kernel) + tuple(out_spatial)
    strides_ = st[:2] + tuple(s * d for s, d in zip(st[2:], dilations)) + tuple(s * k for s, k in zip(st[2:], strides))
    windows = np.ndarray(shape, xp.dtype, xp, strides=strides_)
    positions = math.prod(out_spatial)
    cols = windows.reshape(n, group, (c // group) * math.prod(kernel), positions)   # the one copy
    weights = w.reshape(group, m // group, -1)
    flat = result.reshape(n, group, m // group, positions)
    flops = 2 * n * m * cols.shape[2] * positions
    if n == 1 and group == 1:
        matmul(weights[0], cols[0, 0], flat[0, 0], flops)
    else:
        matmul(weights, cols, flat, flops)


def convolve(attrs: dict, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """conv(x, w) + bias, computed in ``out`` itself when it is contiguous and of the compute type, else in a
    scratch array of the compute type; returns where the result is (the caller copies it to ``out``)."""
    spatial = x.ndim - 2
    kernel, strides, dilations, begins, ends = conv_params(attrs, spatial)
    group = int(attrs.get("group", 1))
    dtype = compute_dtype(out.dtype)
    w = w.astype(dtype, copy=False)
    result = _result_buffer(out, dtype)
    if all(k == 1 for k in kernel) and not any(begins) and not any(ends):
        _pointwise(x.astype(dtype, copy=False), w, strides, group, result)
    else:
        depthwise = group == x.shape[1] == w.shape[0] and group > 1
        column_bytes = x.shape[0] * x.shape[1] * math.prod(kernel) * math.prod(out.shape[2:]) * dtype.itemsize
        if not depthwise and column_bytes <= DIRECT_COLUMN_BYTES:
            _direct_im2col(x, w, kernel, strides, dilations, begins, ends, group, result)
        else:
            layout = TapLayout(x, kernel, strides, dilations, begins, ends, out.shape[2:], dtype)
            if depthwise:
                _depthwise(layout, w, result)
            else:
                _im2col(layout, w, group, result)
    if bias is not None:
        result += bias.astype(dtype, copy=False).reshape((-1,) + (1,) * spatial)
    return result


@register(LayerKind.CONVOLUTION)
def convolution(attrs, inputs, outputs):
    out = outputs[0]
    result = convolve(attrs, inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None, out)
    apply_epilogue(attrs, inputs, result)   # fused activation / residual add steps, if any
    if result is not out:
        np.copyto(out, result, casting="unsafe")
