"""ONNX importers: data movement → Shuffle, Concatenation, Slice, Gather, Expand, Tile layers.

Reshape, Flatten, Transpose, Squeeze, Unsqueeze, DepthToSpace and SpaceToDepth are Shuffles
(transpose, reshape, transpose) with every dim resolved; Split is one Slice per output; Slice's
starts/ends are clamped here exactly as the ONNX spec says, so the Slice kernel is a strided copy.
Shape-like inputs (target shapes, axes, repeats, slice bounds) must be constant once the input
shapes are static; ``ctx.add`` folds layers whose inputs are all constant, which collapses the
Shape → Gather → Unsqueeze → Concat → Reshape chains that exporters emit.
"""

from __future__ import annotations

import math

import numpy as np

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.kinds import BOUNDED_KINDS, ElementWiseOp, LayerKind
from edgert.onnx.count_inputs import CountInput, check_probes, count_input, counts_of, real_shape, rows_of
from edgert.onnx.registry import onnx_op

# -- helpers ---------------------------------------------------------------------------------------
def normalize_axis(ctx, axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in [-rank, rank) as a non-negative axis, else a ModelError naming the node."""
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ModelError(f"{ctx.where}: {what} {axis} is out of range for rank {rank} (expected {-rank}..{rank - 1})")
    return axis + rank if axis < 0 else axis


def normalize_axes(ctx, axes, rank: int, what: str = "axes") -> list[int]:
    normalized = [normalize_axis(ctx, a, rank, what) for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ModelError(f"{ctx.where}: {what} {list(axes)} repeat an axis")
    return normalized


def shuffle(ctx, x, first_perm=None, target=None, second_perm=None):
    """A Shuffle layer: transpose by ``first_perm``, reshape to ``target``, transpose by ``second_perm``
    (steps that change nothing are dropped; ``x`` itself when nothing is left)."""
    rank = len(x.shape)
    first_perm = None if first_perm is None or list(first_perm) == list(range(rank)) else [int(p) for p in first_perm]
    target = None if target is None else [int(d) for d in target]
    after_first = tuple(x.shape[p] for p in first_perm) if first_perm else tuple(x.shape)
    if target is not None and tuple(target) == after_first:
        target = None
    rank = len(target) if target is not None else rank
    second_perm = None if second_perm is None or list(second_perm) == list(range(rank)) \
        else [int(p) for p in second_perm]
    if first_perm is None and target is None and second_perm is None:
        return x
    return ctx.add(LayerKind.SHUFFLE, [x], {"first_perm": first_perm, "reshape": target,
                                            "second_perm": second_perm})[0]


def reshape_to(ctx, x, shape):
    return shuffle(ctx, x, target=shape)


def slice_layer(ctx, x, starts, sizes, steps=None):
    """A Slice layer over every axis (or ``x`` itself when it takes everything)."""
    steps = list(steps) if steps is not None else [1] * len(x.shape)
    if list(starts) == [0] * len(x.shape) and tuple(sizes) == tuple(x.shape) and steps == [1] * len(x.shape):
        return x
    attrs = {"starts": [int(s) for s in starts], "sizes": [int(s) for s in sizes], "steps": [int(s) for s in steps]}
    return ctx.add(LayerKind.SLICE, [x], attrs)[0]


def _ints(ctx, index: int, what: str, required: bool = True) -> list[int] | None:
    """A constant 1-D integer input as Python ints."""
    array = ctx.const_input(index, what, required)
    if array is None:
        return None
    if not np.issubdtype(array.dtype, np.integer) or array.ndim > 1:
        raise ModelError(f"{ctx.where}: {what} must be a 1-D integer tensor, found {array.dtype} of shape {array.shape}")
    return [int(v) for v in array.reshape(-1)]


def _axes_input_or_attr(ctx, first_input_opset: int, input_index: int, required: bool) -> list[int] | None:
    """Axes from the attribute (before ``first_input_opset``) or from an input (from it on)."""
    if ctx.opset < first_input_opset:
        axes = ctx.attrs().get("axes")
        if axes is None and required:
            raise ModelError(f"{ctx.where}: attribute 'axes' is required")
        return None if axes is None else list(axes)
    return _ints(ctx, input_index, "axes", required)


# -- shuffles ------------------------------------------------------------------------------------
def _shape_input(ctx, index: int, what: str):
    """(a constant 1-D integer input as ints — evaluated at the bound when it is computed from run-time counts —,
    its CountInput or None)."""
    value = count_input(ctx, index, what)
    if not isinstance(value, CountInput):
        return _ints(ctx, index, what), None
    return [int(v) for v in np.asarray(value.at_bound()).reshape(-1)], value


def _at(value: CountInput | None, static, probe):
    return static if value is None else [int(v) for v in np.asarray(value.at(probe)).reshape(-1)]


@onnx_op("Reshape")
def reshape(ctx, node):
    x = ctx.input(0)
    target, counted = _shape_input(ctx, 1, "the target shape")
    allow_zero = ctx.opset >= 14 and ctx.attrs().get("allowzero", 0) == 1
    out = reshape_to(ctx, x, _resolve_at_bound(ctx, x.shape, target, allow_zero, counted))
    x_rows = rows_of(ctx, x)
    if counted is not None or x_rows is not None:   # the real reshape at every count is the static one's rows
        check_probes(ctx, out, lambda p: resolve_reshape(ctx, real_shape(x, x_rows, p), _at(counted, target, p),
                                                         allow_zero),
                     counts_of(ctx, x) + (counted.counts if counted else []), "the reshape of data-dependent rows")
    return [out]


def _resolve_at_bound(ctx, shape, target, allow_zero: bool, counted) -> list[int]:
    try:
        return resolve_reshape(ctx, shape, target, allow_zero)
    except ShapeError:
        if counted is not None:   # a target the static rows do not fit: say where it comes from
            ctx.const_input(1, "the target shape")
        raise


def resolve_reshape(ctx, shape, target, allow_zero: bool) -> list[int]:
    """ONNX Reshape's target with 0 (copy the input dim unless allowzero) and -1 (inferred) resolved."""
    dims = []
    for i, d in enumerate(target):
        if d == 0 and not allow_zero:
            if i >= len(shape):
                raise ShapeError(f"{ctx.where}: target shape {target} copies dim {i} (0), but the input "
                                 f"{tuple(shape)} has rank {len(shape)}")
            d = shape[i]
        elif d < -1:
            raise ShapeError(f"{ctx.where}: target shape {target} has invalid dim {d}")
        dims.append(d)
    total = math.prod(shape)
    if dims.count(-1) > 1 or (-1 in dims and allow_zero and 0 in dims):
        raise ShapeError(f"{ctx.where}: target shape {target} has more than one inferred (-1) dim, or -1 "
                         "together with 0 under allowzero=1")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or total % known:
            raise ShapeError(f"{ctx.where}: cannot infer the -1 dim of {target} for an input of shape {tuple(shape)} "
                             f"({total} elements)")
        dims[dims.index(-1)] = total // known
    if math.prod(dims) != total:
        raise ShapeError(f"{ctx.where}: cannot reshape {tuple(shape)} ({total} elements) to {target} "
                         f"(resolved to {dims}, {math.prod(dims)} elements)")
    return dims


@onnx_op("Flatten")
def flatten(ctx, node):
    x = ctx.input(0)
    rank = len(x.shape)
    axis = int(ctx.attrs().get("axis", 1))
    if not -rank <= axis <= rank:
        raise ModelError(f"{ctx.where}: axis {axis} is out of range for rank {rank} (expected {-rank}..{rank})")
    axis = axis + rank if axis < 0 else axis
    return [reshape_to(ctx, x, [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])])]


@onnx_op("Transpose")
def transpose(ctx, node):
    x = ctx.input(0)
    rank = len(x.shape)
    perm = list(ctx.attrs().get("perm", range(rank - 1, -1, -1)))
    if sorted(perm) != list(range(rank)):
        raise ModelError(f"{ctx.where}: perm {perm} is not a permutation of the {rank} axes of {x.shape}")
    return [shuffle(ctx, x, first_perm=perm)]


@onnx_op("Squeeze")
def squeeze(ctx, node):
    x = ctx.input(0)
    axes = _axes_input_or_attr(ctx, 13, 1, required=False)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    axes = normalize_axes(ctx, axes, len(x.shape))
    wrong = [a for a in axes if x.shape[a] != 1]
    if wrong:
        raise ShapeError(f"{ctx.where}: cannot squeeze axes {wrong} of shape {x.shape}: their dims are not 1")
    return [reshape_to(ctx, x, [d for i, d in enumerate(x.shape) if i not in axes])]


@onnx_op("Unsqueeze")
def unsqueeze(ctx, node):
    x = ctx.input(0)
    axes = _axes_input_or_attr(ctx, 13, 1, required=True)
    out_rank = len(x.shape) + len(axes)
    axes = set(normalize_axes(ctx, axes, out_rank))
    dims = iter(x.shape)
    return [reshape_to(ctx, x, [1 if i in axes else next(dims) for i in range(out_rank)])]


def _block_args(ctx, x):
    ctx.check_rank(x, (4,))
    attrs = ctx.attrs()
    block = int(attrs.get("blocksize", 0))
    if block <= 0:
        raise ModelError(f"{ctx.where}: attribute 'blocksize' must be a positive integer, found {block}")
    mode = attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("DCR", "CRD"):
        raise ModelError(f"{ctx.where}: mode {mode!r} is not one of 'DCR', 'CRD'")
    return block, mode


@onnx_op("DepthToSpace")
def depth_to_space(ctx, node):
    x = ctx.input(0)
    block, mode = _block_args(ctx, x)
    n, c, h, w = x.shape
    if c % (block * block):
        raise ShapeError(f"{ctx.where}: {c} channels do not divide by blocksize² = {block * block}")
    depth = c // (block * block)
    if mode == "DCR":
        split, perm = [n, block, block, depth, h, w], [0, 3, 4, 1, 5, 2]
    else:
        split, perm = [n, depth, block, block, h, w], [0, 1, 4, 2, 5, 3]
    blocks = shuffle(ctx, x, target=split, second_perm=perm)
    return [reshape_to(ctx, blocks, [n, depth, h * block, w * block])]


@onnx_op("SpaceToDepth")
def space_to_depth(ctx, node):
    x = ctx.input(0)
    block, mode = _block_args(ctx, x)
    n, c, h, w = x.shape
    if h % block or w % block:
        raise ShapeError(f"{ctx.where}: spatial dims {h}x{w} do not divide by blocksize {block}")
    perm = [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4]
    blocks = shuffle(ctx, x, target=[n, c, h // block, block, w // block, block], second_perm=perm)
    return [reshape_to(ctx, blocks, [n, c * block * block, h // block, w // block])]


# -- concatenation, splitting, slicing -------------------------------------------------------------
@onnx_op("Concat")
def concat(ctx, node):
    inputs = [v for v in ctx.inputs() if v is not None]
    if not inputs:
        raise ModelError(f"{ctx.where}: Concat needs at least one input")
    if "axis" not in ctx.attrs():
        raise ModelError(f"{ctx.where}: attribute 'axis' is required")
    axis = normalize_axis(ctx, ctx.attrs()["axis"], len(inputs[0].shape))
    if len(inputs) == 1:
        return inputs
    counted = _rows_along(ctx, inputs, axis)
    if counted is not None:
        return [counted]
    return ctx.add(LayerKind.CONCATENATION, inputs, {"axis": axis})


def _rows_along(ctx, inputs, axis: int):
    """A Concat along the data-dependent rows of some inputs (torchvision's per-class detections, each with its
    own count): a Compact layer packing the valid rows of each input one after another (its count is their
    sum; static inputs count all their rows); None when no input has data-dependent rows along ``axis``."""
    from edgert.ir.valid_rows import bounded_values
    from edgert.onnx.ops.detection import bounded_layer
    if not any(n.kind in BOUNDED_KINDS for n in ctx.graph.nodes):
        return None
    known = bounded_values(ctx.graph, strict=False)
    found = [known.get(id(v)) for v in inputs]
    if not any(rows is not None and rows.axis == axis for rows in found):
        return None
    counts = []
    for value, rows in zip(inputs, found):
        if rows is not None and (rows.axis != axis or rows.scale != 1):
            raise UnsupportedError(
                f"{ctx.where}: input {value.name!r} has data-dependent rows along axis {rows.axis}"
                f"{f' ({rows.scale} elements per counted row)' if rows.scale != 1 else ''} while others have them "
                f"along the concatenated axis {axis}; edgert concatenates counted rows along their own axis only; "
                "cut the graph before this node")
        counts.append(rows.count if rows is not None else ctx.constant(np.array(value.shape[axis], np.int64)))
    return bounded_layer(ctx, LayerKind.COMPACT, list(inputs) + counts, {"axis": axis, "select": False})


@onnx_op("Split")
def split(ctx, node):
    x = ctx.input(0)
    attrs = ctx.attrs()
    axis = normalize_axis(ctx, attrs.get("axis", 0), len(x.shape))
    dim = x.shape[axis]
    sizes = attrs.get("split") if ctx.opset < 13 else _ints(ctx, 1, "split", required=False)
    if sizes is None:
        sizes = _equal_split(ctx, dim, attrs.get("num_outputs", len(node.output)) if ctx.opset >= 18
                             else len(node.output))
    sizes = [int(s) for s in sizes]
    if sum(sizes) != dim or min(sizes, default=0) < 0 or len(sizes) != len(node.output):
        raise ShapeError(f"{ctx.where}: split sizes {sizes} must be {len(node.output)} non-negative sizes "
                         f"summing to dim {dim} of axis {axis}")
    outputs, start = [], 0
    for size in sizes:
        starts = [start if i == axis else 0 for i in range(len(x.shape))]
        shape = [size if i == axis else d for i, d in enumerate(x.shape)]
        outputs.append(slice_layer(ctx, x, starts, shape))
        start += size
    return outputs


def _equal_split(ctx, dim: int, parts: int) -> list[int]:
    """Equal chunks; from opset 18 the last one may be smaller (ceil-sized chunks)."""
    if parts <= 0:
        raise ModelError(f"{ctx.where}: cannot split into {parts} outputs")
    chunk = -(-dim // parts) if ctx.opset >= 18 else dim // parts
    last = dim - chunk * (parts - 1)
    if last < 0 or (ctx.opset < 18 and last != chunk):
        raise ShapeError(f"{ctx.where}: dim {dim} does not split into {parts} "
                         f"{'equal ' if ctx.opset < 18 else ''}chunks; give explicit split sizes")
    return [chunk] * (parts - 1) + [last]


@onnx_op("Slice")
def slice_(ctx, node):
    x = ctx.input(0)
    if ctx.opset < 10:
        attrs = ctx.attrs()
        if "starts" not in attrs or "ends" not in attrs:
            raise ModelError(f"{ctx.where}: attributes 'starts' and 'ends' are required")
        starts, ends, axes, steps = list(attrs["starts"]), list(attrs["ends"]), attrs.get("axes"), None
    else:
        starts, ends = _ints(ctx, 1, "starts"), _ints(ctx, 2, "ends")
        axes, steps = _ints(ctx, 3, "axes", required=False), _ints(ctx, 4, "steps", required=False)
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ModelError(f"{ctx.where}: starts {starts}, ends {ends}, axes {axes} and steps {steps} "
                         "must have the same length")
    axes = normalize_axes(ctx, axes, len(x.shape))
    full = [(0, d, 1) for d in x.shape]
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise ModelError(f"{ctx.where}: step 0 on axis {axis}; steps must be non-zero")
        full[axis] = clamp_slice(x.shape[axis], start, end, step)
    return [slice_layer(ctx, x, *zip(*full))]


def clamp_slice(dim: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """(start, size, step) of ONNX Slice on one axis: negatives count from the end, then clamp by step sign."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        size = max(0, -(-(end - start) // step))
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        size = max(0, -(-(start - end) // -step))
    return (start if size else 0), size, step


# -- gathers ---------------------------------------------------------------------------------------
@onnx_op("Gather")
def gather(ctx, node):
    data, indices = ctx.input(0), ctx.input(1)
    axis = normalize_axis(ctx, ctx.attrs().get("axis", 0), len(data.shape))
    return ctx.add(LayerKind.GATHER, [data, indices], {"axis": axis})


@onnx_op("GatherElements")
def gather_elements(ctx, node):
    """Gather on the flattened data with flat indices: coordinates·strides, the axis's from ``indices``."""
    data, indices = ctx.input(0), ctx.input(1)
    rank = len(data.shape)
    axis = normalize_axis(ctx, ctx.attrs().get("axis", 0), rank)
    if len(indices.shape) != rank or any(i > d for n, (i, d) in enumerate(zip(indices.shape, data.shape))
                                         if n != axis):
        raise ShapeError(f"{ctx.where}: indices of shape {indices.shape} do not fit data of shape {data.shape} "
                         f"(same rank, dims no larger off axis {axis})")
    strides = _strides(data.shape)
    grid = np.indices(indices.shape, dtype=np.int64)
    base = sum((grid[d] * strides[d] for d in range(rank) if d != axis), np.zeros(indices.shape, np.int64))
    scaled = _scaled_axis_indices(ctx, indices, data.shape[axis], strides[axis])
    flat = _add_base(ctx, scaled, base)
    return ctx.add(LayerKind.GATHER, [reshape_to(ctx, data, [data.size]), flat], {"axis": 0})


@onnx_op("GatherND")
def gather_nd(ctx, node):
    """Gather along the flattened leading (batch + indexed) dims, with flat indices built from ``indices``."""
    data, indices = ctx.input(0), ctx.input(1)
    batch = int(ctx.attrs().get("batch_dims", 0)) if ctx.opset >= 12 else 0
    depth = indices.shape[-1] if indices.shape else 0
    if (not indices.shape or batch + depth > len(data.shape) or batch >= len(indices.shape)
            or tuple(indices.shape[:batch]) != tuple(data.shape[:batch])):
        raise ShapeError(f"{ctx.where}: indices of shape {indices.shape} (batch_dims {batch}) do not fit data "
                         f"of shape {data.shape}")
    lead, rest = data.shape[:batch + depth], list(data.shape[batch + depth:])
    strides = _strides(lead)
    positions = tuple(indices.shape[:-1])
    batch_grid = np.indices(positions, dtype=np.int64)[:batch]
    base = sum((batch_grid[d] * strides[d] for d in range(batch)), np.zeros(positions, np.int64))
    terms = []
    for j in range(depth):
        column = slice_layer(ctx, indices, [0] * len(positions) + [j], list(positions) + [1])
        column = reshape_to(ctx, column, list(positions))
        terms.append(_scaled_axis_indices(ctx, column, lead[batch + j], strides[batch + j]))
    flat = terms[0] if terms else ctx.constant(np.zeros(positions, indices.dtype.numpy))
    for term in terms[1:]:
        flat = ctx.add(LayerKind.ELEMENTWISE, [flat, term], {"op": ElementWiseOp.SUM})[0]
    flat = _add_base(ctx, flat, base)
    table = reshape_to(ctx, data, [math.prod(lead)] + rest)
    return ctx.add(LayerKind.GATHER, [table, flat], {"axis": 0})


def _strides(shape) -> list[int]:
    """Row-major element strides of ``shape``."""
    return [math.prod(shape[i + 1:]) for i in range(len(shape))]


def _scaled_axis_indices(ctx, indices, dim: int, stride: int):
    """(indices mod dim) * stride, in the indices' own type: negative indices count from the end."""
    dtype = indices.dtype.numpy
    if indices.is_const and indices.const.size and not (-dim <= indices.const.min() and indices.const.max() < dim):
        raise ShapeError(f"{ctx.where}: constant indices range over [{indices.const.min()}, "
                         f"{indices.const.max()}], outside [-{dim}, {dim - 1}]")
    wrapped = ctx.add(LayerKind.ELEMENTWISE, [indices, ctx.constant(np.array(dim, dtype))], {"op": ElementWiseOp.MOD})[0]
    if stride == 1:
        return wrapped
    return ctx.add(LayerKind.ELEMENTWISE, [wrapped, ctx.constant(np.array(stride, dtype))],
                   {"op": ElementWiseOp.PROD})[0]


def _add_base(ctx, flat, base: np.ndarray):
    if not base.any():
        return flat
    if flat.dtype.numpy == np.int32 and base.max() > np.iinfo(np.int32).max:
        raise ShapeError(f"{ctx.where}: data too large for int32 indices; use int64 indices")
    return ctx.add(LayerKind.ELEMENTWISE, [flat, ctx.constant(base.astype(flat.dtype.numpy))],
                   {"op": ElementWiseOp.SUM})[0]


# -- broadcasting ----------------------------------------------------------------------------------
@onnx_op("Expand")
def expand(ctx, node):
    x = ctx.input(0)
    target, counted = _shape_input(ctx, 1, "the target shape")
    try:
        shape = tuple(int(d) for d in np.broadcast_shapes(x.shape, tuple(target)))
    except ValueError:
        raise ShapeError(f"{ctx.where}: input of shape {x.shape} and target shape {target} do not broadcast") \
            from None
    out = x if shape == tuple(x.shape) else ctx.add(LayerKind.EXPAND, [x], {"shape": list(shape)})[0]
    if counted is not None:   # e.g. [n, 4] from Shape of n rows: the static layer expands the bound's rows
        x_rows = rows_of(ctx, x)
        check_probes(ctx, out, lambda p: np.broadcast_shapes(real_shape(x, x_rows, p), tuple(_at(counted, target, p))),
                     counts_of(ctx, x) + counted.counts, "the target shape (input 1)")
    return [out]


@onnx_op("Tile")
def tile(ctx, node):
    x = ctx.input(0)
    repeats = _ints(ctx, 1, "repeats")
    if len(repeats) != len(x.shape) or min(repeats, default=0) < 0:
        raise ShapeError(f"{ctx.where}: repeats {repeats} must be one non-negative count per axis of {x.shape}")
    if repeats == [1] * len(repeats):
        return [x]
    return ctx.add(LayerKind.TILE, [x], {"repeats": repeats})
