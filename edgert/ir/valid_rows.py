"""Valid rows: how data-dependent output sizes (NMS, NonZero) flow through a static-shaped plan.

A bounded layer (``BOUNDED_KINDS``) writes an output sized to its static upper bound, as TensorRT's
output allocator bounds it, and its last output, an int64 scalar, says how many rows along one axis
are real; the rows past that count hold zeros (valid indices). Downstream layers run on the whole
bound, which is harmless when they act **row-wise** along that axis: row i of their output depends only
on row i of their bounded inputs, so the first ``count`` rows stay exactly the real result. This
module follows each bounded value through such layers, tracking ``Rows`` (count value, axis, scale):

- per-element layers (ElementWise, Unary, Activation, Cast, Select, PointWise, Scale, ...), with
  broadcasting (the axis shifts by the rank difference; other inputs may be full-size or broadcast);
- Shuffle: transposes carry the axis along, reshapes keep it when the dims before and after it
  regroup on their own (squeeze, unsqueeze, flatten of the other axes); a reshape that merges the rows with
  the axes after them (``[n, 6] -> [n*6]``) counts ``scale`` elements per row, one that splits such a merged
  axis again (``[n*6] -> [n, 6]``) divides the scale back;
- Padding on other axes, and Padding with run-time pads (computed from the count: the output is static,
  sized at the bound, its valid part placed by the pads; edgert/onnx/count_inputs.py checks that);
- Slice on other axes or of the first rows, and Concatenation on other axes;
- Gather of a bounded index tensor (its rows become the output's), or of bounded data along another axis,
  or both: bounded rows picked by indices bounded by another count (valid indices address valid rows);
- Reduce, Softmax and TopK over other axes, and TopK along the rows when it reads their count (input 1:
  a k computed from the count, k = min(K, n), as torchvision's detection heads do); Reduce over the rows
  when it reads their count (input 1, ``rows_axis``: a static result); MatrixMultiply with bounded rows of A;
- Scatter of bounded indices and updates that reads their count (input 3): a static output;
- Expand with a count (input 1, ``rows_axis``): a constant-filled value shaped by a count (a ConstantOfShape)
  whose rows that count counts.

Compact is itself bounded: it reads bounded rows along its axis, each with its count as its own count input
(a Concat of counted rows; an If on a count, with ``select``), and its count counts its packed rows. Compacts
of the same counts over values of the same sizes share one count (the first one's): torchvision concatenates
its boxes, scores and labels apart and then adds boxes to offsets computed from labels.

A value's valid rows are the first min(count * scale, its static size) along the axis: a prefix Slice keeps the
count of its input, and the runtime's trimming, Shape and NMS clamp it. Two bounded inputs must share their count (but for that Gather). A bounded layer may read bounded
rows only where it reads their count too: NMS over data-dependent boxes (its input 2), Compact. Anything else that reads a bounded value (a reduction over
the rows, a slice of them, a convolution...) is a build error naming the layer. The runtime returns
each bounded graph output trimmed to its count (plan: ``bindings.outputs[i].rows``).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import BOUNDED_KINDS, ElementWiseOp, LayerKind, bounded_axis

class Rows(NamedTuple):
    """The valid rows of a bounded value: the first min(count * scale, static size) along ``axis``; ``scale`` > 1
    after a Reshape merged the rows with the axes after them (``scale`` elements per counted row)."""
    count: Value   # the int64 scalar a bounded layer wrote
    axis: int
    scale: int = 1

_RULES: dict[LayerKind, Callable[[Node, dict[int, Rows]], "list[int | None] | None"]] = {}


def _rule(*kinds: LayerKind):
    def register(fn):
        for kind in kinds:
            _RULES[kind] = fn
        return fn
    return register


def bounded_values(graph: Graph, strict: bool = True) -> dict[int, Rows]:
    """{id(value): Rows} for every value with a data-dependent row count; UnsupportedError naming
    the layer when one is read by a layer that is not row-wise along its axis (``strict=False``: such a
    layer's outputs are left out instead, for the importer's questions about a graph still being built)."""
    rows: dict[int, Rows] = {}
    compacted: dict[tuple, Value] = {}   # a Compact's inputs -> the first such layer's count
    for node in graph.nodes:
        if node.kind in BOUNDED_KINDS:
            if strict and not _reads_its_valid_rows(node, rows):
                _reject_bounded_inputs(node, rows)
            count = node.outputs[-1]
            if node.kind == LayerKind.COMPACT:
                # Compacts of the same counts over values of the same sizes count the same rows (torchvision
                # concatenates the boxes, scores and labels of its 90 classes apart, then adds boxes to labels)
                key = (bounded_axis(node), bool(node.attrs.get("select")),
                       tuple(id(v) for v in node.inputs[len(node.inputs) // 2:]),
                       tuple(v.shape[bounded_axis(node)] for v in node.inputs[:len(node.inputs) // 2]))
                count = compacted.setdefault(key, count)
            rows[id(node.outputs[0])] = Rows(count, bounded_axis(node))
            continue
        if node.kind == LayerKind.EXPAND and node.attrs.get("rows_axis") is not None:
            rows[id(node.outputs[0])] = Rows(node.inputs[1], int(node.attrs["rows_axis"]))   # sized by a count
            continue
        inputs = {i: rows[id(v)] for i, v in enumerate(node.inputs) if v is not None and id(v) in rows}
        if node.kind == LayerKind.GATHER and len(inputs) == 2 and inputs[0].axis == int(node.attrs["axis"]):
            del inputs[0]   # bounded rows picked by bounded indices: valid indices address valid rows only
        if not inputs:
            continue
        counts = {(id(r.count), r.scale) for r in inputs.values()}
        rule = _RULES.get(node.kind)
        axes = rule(node, inputs) if rule is not None and len(counts) == 1 else None
        if axes is None:
            if not strict:
                continue
            _fail(node, inputs, "mixes different row counts" if len(counts) > 1 else None)
        first = next(iter(inputs.values()))
        for value, axis in zip(node.outputs, axes):
            if isinstance(axis, tuple):   # (axis, scale): a reshape merged or split the rows
                rows[id(value)] = Rows(first.count, *axis)
            elif axis is not None:
                rows[id(value)] = Rows(first.count, axis, first.scale)
    return rows


def graph_output_rows(graph: Graph) -> list[tuple[Value, int] | None]:
    """Per graph output, its (count, axis) when its size is data-dependent, else None. An output whose rows
    were merged with the axes after them (scale > 1) gets a layer computing count * scale, the plan's count."""
    rows = bounded_values(graph)
    result = []
    for value in graph.outputs:
        found = rows.get(id(value))
        if found is not None and found.scale != 1:
            found = Rows(scaled_count(graph, found), found.axis)
        result.append(None if found is None else (found.count, found.axis))
    return result


def scaled_count(graph: Graph, rows: Rows) -> Value:
    """A Value holding count * scale (the count itself when the scale is 1)."""
    if rows.scale == 1:
        return rows.count
    from edgert.ir.shape_inference import infer_node
    scale = graph.constant(np.array(rows.scale, np.int64), name=f"{rows.count.name}_scale")
    node = graph.add_node(LayerKind.ELEMENTWISE, [rows.count, scale], {"op": ElementWiseOp.PROD},
                          name=f"{rows.count.name}_times_{rows.scale}")
    infer_node(node)
    return node.outputs[0]


def _reads_its_valid_rows(node: Node, rows: dict[int, Rows]) -> bool:
    """An NMS whose boxes (axis 1) and scores (axis 2) are bounded rows, with their count as its input 2; a
    Compact whose values have bounded rows (if any) along its axis, each with its count as its own count input."""
    if node.kind == LayerKind.COMPACT:
        values = len(node.inputs) // 2
        return all(rows.get(id(value)) in (None, Rows(count, bounded_axis(node)))
                   for value, count in zip(node.inputs[:values], node.inputs[values:2 * values]))
    if node.kind != LayerKind.NMS or len(node.inputs) < 3:
        return False
    boxes, scores, count = node.inputs[:3]
    return rows.get(id(boxes)) == Rows(count, 1) and rows.get(id(scores)) == Rows(count, 2)


def _reject_bounded_inputs(node: Node, rows: dict[int, Rows]) -> None:
    inputs = {i: rows[id(v)] for i, v in enumerate(node.inputs) if v is not None and id(v) in rows}
    if inputs:
        _fail(node, inputs, None)


def _fail(node: Node, inputs: dict[int, Rows], why: str | None) -> None:
    index, (count, axis, _) = next(iter(inputs.items()))
    source = count.producer()
    value = node.inputs[index]
    raise UnsupportedError(
        f"layer {node.name!r} ({node.kind.value}) reads {value.name!r}, whose rows along axis {axis} are "
        f"data-dependent (from {source.kind.value} layer {source.name!r}, bounded at {value.shape[axis]}); "
        f"{why or 'it does not act row by row along that axis'}. Only row-wise layers may follow it "
        "(elementwise, Cast, Gather by it, Slice/Concat/Reduce on other axes, transposes, squeeze/unsqueeze); "
        "make the model's post-processing row-wise or cut the graph before this layer")


@_rule(LayerKind.ELEMENTWISE, LayerKind.UNARY, LayerKind.ACTIVATION, LayerKind.CAST, LayerKind.SELECT,
       LayerKind.POINTWISE, LayerKind.SCALE, LayerKind.PARAMETRIC_RELU, LayerKind.IDENTITY, LayerKind.QUANTIZE,
       LayerKind.DEQUANTIZE, LayerKind.EXPAND)
def _per_element(node, inputs):
    out_shape = node.outputs[0].shape
    axes = {r.axis + len(out_shape) - len(node.inputs[i].shape) for i, r in inputs.items()}
    if len(axes) != 1:
        return None
    (axis,) = axes
    if any(node.inputs[i].shape[r.axis] != out_shape[axis] for i, r in inputs.items()):
        return None
    return [axis] + [None] * (len(node.outputs) - 1)


@_rule(LayerKind.REFORMAT)
def _reformat(node, inputs):
    """A precision / device change keeps rows where it keeps the layout."""
    if node.attrs.get("from_layout") != node.attrs.get("to_layout"):
        return None
    return _per_element(node, inputs)


def map_axis_through_reshape(shape, target, axis: int, scale: int = 1) -> tuple[int, int] | None:
    """(axis of ``target``, its scale) holding ``shape``'s ``axis`` rows, or None when the reshape mixes them.

    Per index of the axes before it, the valid rows are a prefix of the ``size * after`` elements; a target
    axis b with the same product before it holds them as whole rows when its inner size divides ``after``
    (a merge: ``after / inner`` elements per counted row more) or when ``inner / after`` divides the scale (a
    split of an axis merged before) — the same row size first, then merges, then splits."""
    before, size, after = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    candidates = []
    for b in range(len(target)):
        if math.prod(target[:b]) != before:
            continue
        inner = math.prod(target[b + 1:])
        if inner == after and target[b] == size:
            return b, scale
        if inner and after % inner == 0:
            candidates.append((1, b, scale * (after // inner)))
        elif after and inner % after == 0 and scale % (inner // after) == 0 and size % (inner // after) == 0:
            candidates.append((2, b, scale // (inner // after)))
    return min(candidates)[1:] if candidates else None


@_rule(LayerKind.SHUFFLE)
def _shuffle(node, inputs):
    (_, axis, scale), = inputs.values()
    shape = list(node.inputs[0].shape)
    first, target, second = node.attrs.get("first_perm"), node.attrs.get("reshape"), node.attrs.get("second_perm")
    if first:
        axis, shape = list(first).index(axis), [shape[p] for p in first]
    if target is not None:
        mapped = map_axis_through_reshape(shape, list(target), axis, scale)
        if mapped is None:
            return None
        axis, scale = mapped
    if second:
        axis = list(second).index(axis)
    return [(axis, scale)]


@_rule(LayerKind.SLICE)
def _slice(node, inputs):
    """The whole bounded axis, or its first rows (``[:k]``: the valid rows are then the first min(count, k))."""
    (_, axis, _), = inputs.values()
    attrs = node.attrs
    prefix = attrs["starts"][axis] == 0 and attrs["steps"][axis] == 1
    return [axis] if prefix else None


@_rule(LayerKind.CONCATENATION)
def _concatenation(node, inputs):
    axes = {r.axis for r in inputs.values()}
    if len(axes) != 1 or int(node.attrs["axis"]) in axes:
        return None
    return [axes.pop()]


@_rule(LayerKind.GATHER)
def _gather(node, inputs):
    data, indices = node.inputs
    gather_axis = int(node.attrs["axis"])
    if len(inputs) != 1:
        return None
    (index, (_, axis, _)), = inputs.items()
    if index == 1:
        return [gather_axis + axis]
    if axis == gather_axis:
        return None
    return [axis if axis < gather_axis else axis + len(indices.shape) - 1]


def _after_reducing(axis: int, reduced, keepdims: bool) -> int | None:
    if axis in reduced:
        return None
    return axis if keepdims else axis - sum(1 for a in reduced if a < axis)


@_rule(LayerKind.REDUCE)
def _reduce(node, inputs):
    """Over other axes; or over the rows too when it reads their count (input 1): a static result."""
    (count, axis, scale), = inputs.values()
    if list(inputs) == [0] and len(node.inputs) > 1 and node.inputs[1] is count and scale == 1 \
            and node.attrs.get("rows_axis") == axis and axis in [int(a) for a in node.attrs["axes"]]:
        return [None]
    result = _after_reducing(axis, [int(a) for a in node.attrs["axes"]], bool(node.attrs.get("keepdims", True)))
    return None if result is None else [result]


@_rule(LayerKind.SOFTMAX)
def _softmax(node, inputs):
    (_, axis, _), = inputs.values()
    return None if axis in [int(a) for a in node.attrs["axes"]] else [axis]


@_rule(LayerKind.TOPK)
def _topk(node, inputs):
    (count, axis, scale), = inputs.values()
    if "k" in node.attrs:
        if axis != int(node.attrs["axis"]):
            return [axis, axis]
        # the best of the valid rows, given their count (input 1): the first min(count, k) rows are valid
        reads_count = list(inputs) == [0] and len(node.inputs) > 1 and node.inputs[1] is count and scale == 1
        return [axis, axis] if reads_count else None
    result = _after_reducing(axis, [int(node.attrs["axis"])], bool(node.attrs.get("keepdims", True)))
    return None if result is None else [result]


@_rule(LayerKind.MATRIX_MULTIPLY)
def _matrix_multiply(node, inputs):
    if list(inputs) != [0] or node.attrs.get("trans_a"):
        return None
    (_, axis, _), = inputs.values()
    a = node.inputs[0]
    if len(a.shape) < 2 or axis == len(a.shape) - 1:
        return None
    out_rank = len(node.outputs[0].shape)
    if axis < len(a.shape) - 2 and a.shape[axis] != node.outputs[0].shape[axis + out_rank - len(a.shape)]:
        return None
    return [axis + out_rank - len(a.shape)]


@_rule(LayerKind.PADDING)
def _padding(node, inputs):
    """Pads on other axes keep the rows; run-time pads (input 1, computed from the count) make the output
    static: the valid rows placed by the pads, the pad value everywhere else."""
    if list(inputs) != [0]:
        return None
    if len(node.inputs) > 1:
        return [None]
    (_, axis, _), = inputs.values()
    pads, rank = node.attrs["pads"], len(node.inputs[0].shape)
    return None if pads[axis] or pads[rank + axis] else [axis]


@_rule(LayerKind.SCATTER)
def _scatter(node, inputs):
    """Indices and updates with data-dependent rows along ``rows_axis``, their count as input 3: only the valid
    rows apply, and the output (data's shape) is static."""
    if sorted(inputs) != [1, 2] or len(node.inputs) < 4:
        return None
    count, axis = node.inputs[3], node.attrs.get("rows_axis")
    valid = all(r.count is count and r.axis == axis and r.scale == 1 for r in inputs.values())
    return [None] if valid else None
