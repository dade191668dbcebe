"""Prepare hook of Convolution: a layer bound once per execution context to a few NumPy calls.

The generic kernel (convolution.py) picks its tactic, reshapes its weights and allocates its column
matrix on every call; on the small layers of embedded CNNs that bookkeeping costs more than the
arithmetic. Here it happens once, at context creation, over the layer's fixed arrays:

- 2-D float32 depthwise (group == C_in == C_out): the native kernel when it is built (native.py);
- other 2-D float32 single-image single-group ones whose output rows (or, at unit strides, runs of padded rows)
  fill the native direct kernel's vectors (_direct_pays): that kernel, straight from padded input rows, no column
  matrix;
- other 2-D float32 single-image single-group ones, when it is built: its im2col, then one GEMM; columns
  above PREPARED_COLUMN_BYTES in L2-sized tiles of output rows, each made and multiplied in turn, the tiles
  spread over the worker pool (no layer of this kind falls back to the generic kernel's allocations);
- pointwise (1x1, no padding), float32, single image and group, 16 or more output positions: the native pointwise
  kernel (_bind_native_pointwise) on the input itself (after one strided copy when strided), the epilogue's
  activations and residual add fused into it;
- other pointwise ones: one GEMM of the weights with the input itself (after one strided
  copy when strided), straight into the output;
- others: the input is copied into scratch laid out so that every kernel tap reads one contiguous
  run per plane; one copy per stride phase gathers the column matrix, one GEMM (one matrix-vector
  product per plane for depthwise layers, group == C_in == C_out) computes the output:
  - row layout (2-D, stride phases as wide as the output: 'same' padding, even sizes): each phase a
    plane of whole rows with zeros above and below. The product is the output itself; where a run
    wraps around a row end (the window leaves the input sideways) the gathered columns are zeroed;
  - phase layout (any other case): TapLayout's padded stride phases; the product covers each
    phase's whole row width and the crop to the output rides on the epilogue's first pass.

Where the weights allow it the bias is one more GEMM column over a row of ones, saving a pass over
the output; the fused epilogue then runs in place. Weights reordered for the gather order are derived
once per engine. Float16, weights that are not constants where they must be reordered, and layers
whose columns would exceed PREPARED_COLUMN_BYTES (DEPTHWISE_COLUMN_ELEMENTS) keep the generic kernel, which
tiles and threads its copies.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu import native, threads
from edgert.kernels.cpu.blas import bind_gemm, set_threads
from edgert.kernels.cpu.convolution import conv_params, tap_geometry
from edgert.kernels.cpu.epilogue import bind_epilogue
from edgert.kernels.cpu.prepared import overlap_safe, sequence
from edgert.kernels.registry import register_prepare

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Depthwise columns up to 2M elements (8 MiB of float32 scratch): gathered once and reduced by one
# matrix-vector product per plane, they beat the generic kernel's threaded tap loop 2-2.5x on 28x28x136
DEPTHWISE_COLUMN_ELEMENTS = 1 << 21
# Other columns up to 16 MiB: gathered whole and multiplied by one GEMM on every BLAS thread, they beat the
# generic kernel's tiled, threaded gather 1.25-1.9x (DenseNet-121's 128->32 3x3 at 56x56, 14.4 MiB: 2.7 ms
# against 3.3 ms; its 7x7 stem 1.9 ms against 2.9 ms), at the cost of that much context scratch
PREPARED_COLUMN_BYTES = 1 << 24
# Larger column matrices are made and multiplied in tiles of about this size (a core's L2), one tile per
# worker at a time; so are those of layers with few output channels from 1 MiB of columns up, whose GEMM is too
# thin to gain from one big call (measured, 2 threads: 96->24 3x3 at 80x80 2.52 -> 1.76 ms, 64->64 at 56x56
# 1.58 -> 1.41 ms, the 3->32 stride-2 stem at 224 0.41 -> 0.37 ms; 128->128 at 56x56 lost, 3.8 -> 4.5 ms)
COLUMN_TILE_BYTES = 1 << 21
TILED_MAX_OUTPUT_CHANNELS = 64
TILED_MIN_COLUMN_BYTES = 1 << 20
# the direct kernel's limit on input channels x kernel taps (see _direct_pays)
DIRECT_MAX_TAPS = 1536
# pointwise convolutions with fewer output positions (squeeze-excite's 1x1 ones) stay with BLAS: the native kernel's
# spans of 16-32 columns would be mostly empty
POINTWISE_MIN_COLUMNS = 16


def _bind_product(weights, cols, target, flops):
    """target (N, G, M/G, P) = weights (G, M/G, K) @ cols (N, G, K, P); one plain 2-D GEMM when N = G = 1."""
    if cols.shape[0] == 1 and cols.shape[1] == 1:
        return bind_gemm(weights[0], cols[0, 0], target[0, 0], flops)
    return bind_gemm(weights, cols, target, flops)


def _view(array, shape):
    """array.reshape(shape), which must be a view: a bound copy would never see the writes (or reads) meant for
    the array."""
    result = array.reshape(shape)
    if not np.may_share_memory(result, array):
        raise AssertionError(f"reshaping {array.shape} with strides {array.strides} to {shape} would copy")
    return result


def _bias_add(bias, out):
    if bias is None:
        return None
    return functools.partial(np.add, out, bias.reshape((-1,) + (1,) * (out.ndim - 2)), out)


def _bias_column(w, bias, workspace):
    """(M, C x taps + 1): the weights of a single-group convolution with the bias as a last column (None unless
    both are constants)."""
    m = w.shape[0]
    return workspace.derived((w, bias), "convolution weights, bias column",
                             lambda w, bias: np.concatenate([w.reshape(m, -1), bias.reshape(m, 1)], axis=1))


def _bind_native_pointwise(x, w, bias, attrs, inputs, strides, out, workspace):
    """A single-image, single-group float32 pointwise convolution on the native kernel (native.bind_conv_pointwise:
    weights packed once, the bias in its accumulators, the epilogue's activations and residual add applied to each
    column tile in cache), after one strided copy when strided; None where it does not apply or would not pay."""
    n, c = x.shape[:2]
    m, positions = out.shape[1], math.prod(out.shape[2:])
    if n != 1 or out.dtype != np.float32 or positions < POINTWISE_MIN_COLUMNS or not native.direct_span() \
            or (bias is not None and bias.dtype != np.float32):
        return None
    packed = workspace.derived((w,), "convolution weights, direct kernel blocks", native.pack_direct_weights)
    if packed is None:
        return None
    source = x[(Ellipsis,) + tuple(slice(None, None, s) for s in strides)]
    gather = None
    if any(s != 1 for s in strides):
        scratch = workspace.scratch(source.shape, x.dtype)
        gather = functools.partial(np.copyto, scratch, source)
        source = scratch
    records, residual, rest = native.epilogue_program(list(attrs.get("epilogue") or []), inputs, out)
    bound = native.bind_conv_pointwise(source.reshape(c, positions), packed, bias, out.reshape(m, positions), records,
                                       None if residual is None else residual.reshape(m, positions))
    if bound is None:
        return None
    return sequence([gather, bound, bind_epilogue({"epilogue": rest}, inputs, out)])


def _bind_pointwise(x, w, bias, strides, group, out, workspace):
    n, c = x.shape[:2]
    m = out.shape[1]
    positions = math.prod(out.shape[2:])
    source = x[(Ellipsis,) + tuple(slice(None, None, s) for s in strides)]
    strided = any(s != 1 for s in strides)
    # the bias as one more GEMM column over a row of ones saves a pass over the output; it costs a copy of
    # the input, free when the strides need one anyway and cheap when the output is the wider of the two
    folded = _bias_column(w, bias, workspace) if bias is not None and n * group == 1 and (strided or c < m) \
        else None
    if folded is not None:
        columns = workspace.scratch((c + 1, positions), x.dtype)
        calls = [functools.partial(np.copyto, columns[:c].reshape(source.shape), source),
                 functools.partial(columns[c].fill, 1),
                 bind_gemm(folded, columns, out.reshape(m, positions), 2 * out.size * (c + 1))]
        return sequence(calls)
    gather = None
    if strided:
        scratch = workspace.scratch(source.shape, x.dtype)
        gather = functools.partial(np.copyto, scratch, source)
        x = scratch
    cols = x.reshape(n, group, c // group, positions)
    weights = w.reshape(group, m // group, c // group)
    target = out.reshape(n, group, m // group, positions)
    product = _bind_product(weights, cols, target, 2 * out.size * (c // group))
    return sequence([gather, product, _bias_add(bias, out)])


class _Layout(NamedTuple):
    """Where a convolution's column matrix comes from: the padded input laid out so that every kernel tap
    reads one contiguous run of ``length`` flat positions per plane."""
    calls: list       # writing the padded input into the layout's scratch, each run
    gather: Callable  # gather(columns (planes, taps, length)) -> calls copying every tap's run there
    length: int       # flat positions per plane that the product computes
    order: tuple      # kernel taps in the order the gather writes them
    crop: tuple | None  # (rows shape, index) that crops the product's rows to the output; None when equal


def _axis_phases(kernel: int, stride: int, dilation: int, begin: int) -> dict:
    """Per stride phase of one axis: the (kernel index, shift) of the taps that read it; tap k reads phase row
    (or column) ``output index + shift``. A phase's shifts step evenly."""
    phases: dict = {}
    for k in range(kernel):
        offset = k * dilation - begin
        phases.setdefault(offset % stride, []).append((k, offset // stride))
    return phases


def _row_layout(x, params, out, workspace) -> _Layout | None:
    """2-D convolutions whose stride phases are exactly as wide as the output (even sizes, 'same' padding):
    each phase a plane of whole rows, zeros above and below, so every tap's run covers the output rows and
    the product is the output itself. A run wraps around row ends where its window leaves the input
    sideways: those columns are zeroed after the gather, which costs less than a padded width (a strided
    copy in, a crop out)."""
    kernel, strides, dilations, begins, _ = params
    if x.ndim != 4:
        return None
    (n, c, height, width), (oh, ow), (sh, sw) = x.shape, out.shape[2:], strides
    if height % sh or width % sw or width // sw != ow:
        return None
    rows, planes, item = height // sh, n * c, x.itemsize
    ys, xs = (_axis_phases(k, s, d, b) for k, s, d, b in zip(kernel, strides, dilations, begins))
    shifts = [[q for taps in axis.values() for _, q in taps] for axis in (ys, xs)]
    front = max(0, -min(shifts[0])) * ow + max(0, -min(shifts[1]))   # the first input element's place
    plane = max(front + rows * ow, front + (oh - 1 + max(shifts[0])) * ow + ow + max(shifts[1]))
    buffer = workspace.scratch((planes, sh * sw, plane), x.dtype)
    inside = _view(buffer[:, :, front:front + rows * ow], (planes, sh, sw, rows, ow))
    # the scratch is shared with other layers: the zeros above and below are written on every run
    calls = [functools.partial(part.fill, 0) for part in (buffer[:, :, :front], buffer[:, :, front + rows * ow:])
             if part.size]
    calls.append(functools.partial(np.copyto, inside, x.reshape(planes, rows, sh, ow, sw).transpose(0, 2, 4, 1, 3)))
    flat, length = buffer.reshape(planes, -1), oh * ow
    groups = [(a * sw + b, ys[a], xs[b]) for a in range(sh) for b in range(sw) if a in ys and b in xs]
    order = tuple(ky * kernel[1] + kx for _, kys, kxs in groups for kx, _ in kxs for ky, _ in kys)

    def gather(columns):
        # per phase one copy; taps kx-major, so the runs of one kx are consecutive rows and the wrapped
        # columns to zero for that kx are one stride-``ow`` line per plane
        bound, first, (row, line) = [], 0, columns.strides[:2]
        for phase, kys, kxs in groups:
            shape = (planes, len(kxs), len(kys), length)
            steps = [(taps[1][1] - taps[0][1]) if len(taps) > 1 else 0 for taps in (kxs, kys)]
            runs = as_strided(flat[:, phase * plane + front + kys[0][1] * ow + kxs[0][1]:], shape,
                              (flat.strides[0], steps[0] * item, steps[1] * ow * item, item))
            target = as_strided(columns[:, first:], shape, (row, len(kys) * line, line, item))
            bound.append(functools.partial(np.copyto, target, runs))
            for j, (_, shift) in enumerate(kxs):
                for low, high in ((0, min(ow, -shift)), (max(0, ow - shift), ow)):
                    if high > low:
                        band = as_strided(target[:, j, 0, low:], (planes, len(kys) * oh, high - low),
                                          (row, ow * item, item))
                        bound.append(functools.partial(band.fill, 0))
            first += len(kxs) * len(kys)
        return bound
    return _Layout(calls, gather, length, order, None)


def _phase_layout(x, params, out, workspace) -> _Layout:
    """Any stride and rank: the padded input split into its stride phases (TapLayout in convolution.py), each
    a flat plane with a spare row, so tap t reads phases[:, offsets[t]:offsets[t] + length]; the product
    then covers each phase's whole row width and is cropped."""
    kernel, strides, dilations, begins, ends = params
    g = tap_geometry(x.shape[2:], tuple(kernel), tuple(strides), tuple(dilations), tuple(begins), tuple(ends),
                     tuple(out.shape[2:]))
    n, c = x.shape[:2]
    buffer = workspace.scratch((n * c, len(g.sources)) + g.extents, x.dtype)
    source = x.reshape((n * c,) + x.shape[2:])
    # the scratch is shared with other layers: the zeros of the padding are written on every run
    calls = [functools.partial(buffer.fill, 0)]
    for phase, (into, take) in enumerate(g.sources):
        calls.append(functools.partial(np.copyto, buffer[(slice(None), phase) + into], source[(slice(None),) + take]))
    planes, item = buffer.reshape(n * c, -1), buffer.itemsize

    def gather(columns):   # one copy per phase: its taps' runs form a strided grid
        bound = []
        for group in g.groups:
            shape = (planes.shape[0],) + group.counts + (g.length,)
            runs = as_strided(planes[:, group.offset:], shape,
                              (planes.strides[0],) + tuple(step * item for step in group.steps) + (item,))
            taps = columns[:, group.first:group.first + math.prod(group.counts)]
            # the same taps split per kernel axis: a view, built from strides so it can never be a copy
            tap_strides = tuple(math.prod(group.counts[a + 1:]) * taps.strides[1] for a in range(len(group.counts)))
            target = as_strided(taps, shape, (taps.strides[0],) + tap_strides + (item,))
            bound.append(functools.partial(np.copyto, target, runs))
        return bound
    crop = None if g.extents[1:] == out.shape[3:] else ((out.shape[2],) + g.extents[1:], g.crop)
    return _Layout(calls, gather, g.length, g.order, crop)


def _weight_matrix(w, bias, order: tuple, group: int, workspace):
    """Weights as the product's left operand: (G, M/G, C/G x taps) or, depthwise, (C, 1, taps), taps in the
    gathered columns' order, with the bias as one more column when given. None when the constants needed
    are not constants."""
    m, taps, order = w.shape[0], len(order), list(order)
    rows = (group, m // group, -1)

    def make(w, bias=None):
        matrix = w.reshape(m, -1, taps)[:, :, order].reshape(rows)
        return matrix if bias is None else np.concatenate([matrix, bias.reshape(rows[:2] + (1,))], axis=2)
    if bias is None and order == sorted(order):
        return w.reshape(rows)
    sources = (w,) if bias is None else (w, bias)
    return workspace.derived(sources, ("convolution weights: taps in gather order, bias column", tuple(order), group),
                             make)


def _bind_columns(x, w, bias, attrs, inputs, params, group, depthwise, out, workspace):
    n, c = x.shape[:2]
    m, taps = out.shape[1], math.prod(params[0])
    layout = _row_layout(x, params, out, workspace) or _phase_layout(x, params, out, workspace)
    groups = c if depthwise else group
    # the bias rides in the product as a column of the weights times a row of ones after each group's columns,
    # where the gathered taps can leave that row: one group per plane (depthwise) or a single group
    fold = bias is not None and (depthwise or n * group == 1)
    weights = _weight_matrix(w, bias if fold else None, layout.order, groups, workspace)
    if weights is None and fold:
        fold, weights = False, _weight_matrix(w, None, layout.order, groups, workspace)
    if weights is None:
        return None
    length, per_group = layout.length, weights.shape[-1]   # (C/G) x taps (+ 1 with the bias)
    columns = workspace.scratch((n, groups, per_group, length), x.dtype)
    gathered = _view(columns[..., :per_group - fold, :] if depthwise or not fold else columns[0, 0, :-1],
                     (n * c, taps, length))
    calls = layout.calls + layout.gather(gathered)
    if fold:
        calls.append(functools.partial(columns[..., -1, :].fill, 1))
    rows = (n, groups, m // groups, length)
    target = out.reshape(rows) if layout.crop is None else workspace.scratch(rows, out.dtype)
    calls.append(_bind_product(weights, columns, target, 2 * n * m * per_group * length))
    if layout.crop is None:
        calls += [None if fold else _bias_add(bias, out), bind_epilogue(attrs, inputs, out)]
        return sequence(calls)
    flat = target.reshape(n, m, length)
    if bias is not None and not fold:   # on the contiguous wide rows; the crop rides on the epilogue's first pass
        calls.append(functools.partial(np.add, flat, bias.reshape(-1, 1), flat))
    shape, index = layout.crop
    calls.append(bind_epilogue(attrs, inputs, out, source=flat.reshape((n, m) + shape)[index]))
    return sequence(calls)


def _bind_native_columns(x, w, bias, params, out, workspace):
    """A single-image, single-group 2-D convolution: the native im2col (rows in the weights' own order), then
    one GEMM (native.bind_gemm's blocks over the native threads), the bias a last column of the weights over a row
    of ones when both are constants. Columns larger
    than PREPARED_COLUMN_BYTES are made and multiplied tile by tile (_bind_column_tiles)."""
    m, positions = out.shape[1], math.prod(out.shape[2:])
    taps = math.prod(w.shape[1:])
    folded = _bias_column(w, bias, workspace) if bias is not None else None
    column_bytes = taps * positions * out.itemsize
    if column_bytes > PREPARED_COLUMN_BYTES or (m <= TILED_MAX_OUTPUT_CHANNELS and column_bytes >= TILED_MIN_COLUMN_BYTES):
        return _bind_column_tiles(x, w, bias, folded, params, out, workspace)
    columns = workspace.scratch((taps + (folded is not None), positions), x.dtype)
    gather = native.bind_im2col(x, columns[:taps], out.shape[2:], params)
    if gather is None:
        return None
    weights = folded if folded is not None else w.reshape(m, taps)
    flat_out = out.reshape(m, positions)
    product = native.bind_gemm(weights, False, columns, False, flat_out, [], [])   # blocks over the native threads
    calls = [gather, functools.partial(columns[taps].fill, 1) if folded is not None else None,
             product[0] if product is not None else bind_gemm(weights, columns, flat_out, 2 * out.size * columns.shape[0])]
    if bias is not None and folded is None:
        calls.append(_bias_add(bias, out))
    return sequence(calls)


def _bind_column_tiles(x, w, bias, folded, params, out, workspace):
    """Columns made and multiplied COLUMN_TILE_BYTES of them at a time (a few output rows: the tile stays in L2
    while its GEMM reads it), the tiles dealt round-robin to the worker pool, each part with its own scratch
    tile: large convolutions need neither a column matrix of their size nor the generic kernel's allocations."""
    m, (oh, ow) = out.shape[1], out.shape[2:]
    taps = math.prod(w.shape[1:])
    rows = max(1, min(oh, COLUMN_TILE_BYTES // (taps * ow * out.itemsize)))
    tiles = [(row, min(rows, oh - row)) for row in range(0, oh, rows)]
    parts_count = min(threads.thread_count(), len(tiles))
    weights = folded if folded is not None else w.reshape(m, taps)
    flat_out = out.reshape(m, oh * ow)
    set_threads(1)   # the parts are the threads
    parts = []
    for part in range(parts_count):
        buffer = workspace.scratch(((taps + (folded is not None)) * rows * ow,), x.dtype)
        calls = []
        for row, count in tiles[part::parts_count]:
            columns = buffer[:(taps + (folded is not None)) * count * ow].reshape(-1, count * ow)
            gather = native.bind_im2col_rows(x, columns[:taps], (oh, ow), params, row, count)
            if gather is None:
                return None
            target = flat_out[:, row * ow:(row + count) * ow]
            calls += [gather, functools.partial(columns[taps].fill, 1) if folded is not None else None,
                      functools.partial(np.matmul, weights, columns, out=target)]
        parts.append(sequence(calls))
    calls = [threads.parallel(parts)]
    if bias is not None and folded is None:
        calls.append(_bias_add(bias, out))
    return sequence(calls)


def _direct_pays(x, w, out, strides=(1, 1), dilations=(1, 1)) -> bool:
    """Whether the native direct kernel beats im2col + GEMM for this layer. It computes rows of an output plane a span
    of 16 or 48 outputs at a time (native.direct_span; a row's last span only the vectors of 8 or 16 it needs), so a
    row narrower than the span wastes lanes, unless the
    strides are 1: then a tile of rows is one flat run over the padded input rows, wasting only their padding
    columns. Measured on one AVX-512 core against OpenBLAS (2026-12-05): rows filling >= 80 % of their spans win
    1.1-2.6x at any channel count (64->64 at 56x56 1.63 vs 2.21 ms, 64->144 at 80x80 7.0 vs 7.8 ms), as do
    few-input-channel layers (the 3->16 stride-2 stem at 640: 0.95 vs 2.4 ms) down to 60 %; 40-wide rows of 128
    or more channels lose as rows (4.1 vs 3.8 ms) and win as flat runs (2.9 vs 3.8 ms). The kernel takes input
    channels in blocks of 576 taps (one span's inputs stay in L1), and still GEMM is as fast or faster from 256
    input channels of 3x3 up (256->256 at 20x20: 8.1 vs 7.4 ms; 160->160 at 40x40: direct 8.3 vs 9.6 ms). These
    thresholds were measured with AVX-512 spans of 32 (two vectors); three vectors (2026-12-06) made the kernel 10-14 %
    faster (64->64 3x3 at 40x40: 128 -> 146 GFLOP/s on one core), so they err towards GEMM."""
    # measured with spans of 32; AVX-512's spans of 48 end a row with only the vectors it needs, so waste no more
    span = min(native.direct_span(), 32)
    if not span or x.ndim != 4 or math.prod(w.shape[1:]) > DIRECT_MAX_TAPS:
        return False
    width = out.shape[3]
    filled = width / (-(-width // span) * span)
    if tuple(strides) == (1, 1):   # the flat run: the padded row is the output's plus the kernel's reach
        filled = max(filled, width / (width + (w.shape[3] - 1) * dilations[1]))
    return filled >= 0.8 or (filled >= 0.6 and math.prod(w.shape[1:]) <= 256)


def _bind_direct(x, w, bias, attrs, inputs, params, out, workspace):
    """The native direct kernel (no column matrix; the bias in its accumulators; the epilogue's leading activations
    applied to each row tile in cache), then the rest of the epilogue."""
    packed = workspace.derived((w,), "convolution weights, direct kernel blocks", native.pack_direct_weights)
    if packed is None or (bias is not None and bias.dtype != np.float32):
        return None
    steps = list(attrs.get("epilogue") or [])
    leading = next((i for i, step in enumerate(steps) if step["op"] != "activation"), len(steps))
    program = native.activation_program(steps[:leading])
    bound = native.bind_conv_direct(x, packed, bias, out, params, program)
    if bound is None:
        return None
    rest = steps[leading:] if program is not None else steps   # such as a residual add after the activation
    return sequence([bound, bind_epilogue({"epilogue": rest}, inputs, out)])


def _column_elements(x, kernel, out) -> int:
    return x.shape[0] * x.shape[1] * math.prod(kernel) * math.prod(out.shape[2:])


@register_prepare(LayerKind.CONVOLUTION)
def prepare_convolution(attrs, inputs, outputs, workspace):
    x, w, out = inputs[0], inputs[1], outputs[0]
    bias = inputs[2] if len(inputs) > 2 else None
    if out.dtype not in _FLOATS or x.dtype != out.dtype or w.dtype != out.dtype or x.ndim < 3 \
            or (bias is not None and bias.dtype != out.dtype) \
            or not all(a.flags.c_contiguous for a in (x, w, out)):
        return None
    params = conv_params(attrs, x.ndim - 2)
    kernel, strides, _, begins, ends = params
    group = int(attrs.get("group", 1))
    if any(p < 0 for p in begins + ends):
        return None
    if all(k == 1 for k in kernel) and not any(begins) and not any(ends):
        if group == 1 and x.ndim >= 3:
            bound = _bind_native_pointwise(x, w, bias, attrs, inputs, strides, out, workspace)
            if bound is not None:
                return bound
        main = _bind_pointwise(x, w, bias, strides, group, out, workspace)
    else:
        depthwise = group == x.shape[1] == out.shape[1] and group > 1
        bound = native.bind_depthwise(x, w, bias, out, params) if depthwise else None
        if bound is not None:
            return overlap_safe(sequence([bound, bind_epilogue(attrs, inputs, out)]))   # epilogue: in place
        if group == 1 and x.shape[0] == 1 and out.dtype == np.float32 \
                and _direct_pays(x, w, out, strides, params[2]):
            bound = _bind_direct(x, w, bias, attrs, inputs, params, out, workspace)
            if bound is not None:
                return bound
        if group == 1 and x.shape[0] == 1:
            bound = _bind_native_columns(x, w, bias, params, out, workspace)
            if bound is not None:
                return sequence([bound, bind_epilogue(attrs, inputs, out)])
        elements = _column_elements(x, kernel, out)
        if elements > (DEPTHWISE_COLUMN_ELEMENTS if depthwise else PREPARED_COLUMN_BYTES // out.itemsize):
            return None   # large: the generic kernel tiles the columns and spreads copies over threads
        return _bind_columns(x, w, bias, attrs, inputs, params, group, depthwise, out, workspace)
    return sequence([main, bind_epilogue(attrs, inputs, out)])
