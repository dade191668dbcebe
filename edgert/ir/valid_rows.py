"""Valid rows: how data-dependent output sizes (NMS, NonZero) flow through a static-shaped plan.

A bounded layer (``BOUNDED_KINDS``) writes an output sized to its static upper bound, as TensorRT's
output allocator bounds it, and its last output, an int64 scalar, says how many rows along one axis
are real; the rows past that count hold zeros (valid indices). Downstream layers run on the whole
bound, which is harmless when they act **row-wise** along that axis: row i of their output depends only
on row i of their bounded inputs, so the first ``count`` rows stay exactly the real result. This
module follows each bounded value through such layers, tracking (count value, axis):

- per-element layers (ElementWise, Unary, Activation, Cast, Select, PointWise, Scale, ...), with
  broadcasting (the axis shifts by the rank difference; other inputs may be full-size or broadcast);
- Shuffle: transposes carry the axis along, reshapes keep it when the dims before and after it
  regroup on their own (squeeze, unsqueeze, flatten of the other axes);
- Slice on other axes or of the first rows, and Concatenation on other axes;
- Gather of a bounded index tensor (its rows become the output's), or of bounded data along another axis,
  or both: bounded rows picked by indices bounded by another count (valid indices address valid rows);
- Reduce, Softmax and TopK over other axes; MatrixMultiply with bounded rows of A.

A value's valid rows are the first min(count, its static size) along the axis: a prefix Slice keeps the
count of its input, and the runtime's trimming, Shape and NMS clamp it. Two bounded inputs must share their count (but for that Gather). A bounded layer may read bounded
rows only where it reads their count too: NMS over data-dependent boxes (its input 2). Anything else that reads a bounded value (a reduction over
the rows, a slice of them, a convolution...) is a build error naming the layer. The runtime returns
each bounded graph output trimmed to its count (plan: ``bindings.outputs[i].rows``).
"""

from __future__ import annotations

import math
from typing import Callable

from edgert.errors import UnsupportedError
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import BOUNDED_KINDS, LayerKind

Rows = tuple[Value, int]   # (the int64 scalar count, the bounded axis)
_RULES: dict[LayerKind, Callable[[Node, dict[int, Rows]], "list[int | None] | None"]] = {}


def _rule(*kinds: LayerKind):
    def register(fn):
        for kind in kinds:
            _RULES[kind] = fn
        return fn
    return register


def bounded_values(graph: Graph, strict: bool = True) -> dict[int, Rows]:
    """{id(value): (count, axis)} for every value with a data-dependent row count; UnsupportedError naming
    the layer when one is read by a layer that is not row-wise along its axis (``strict=False``: such a
    layer's outputs are left out instead, for the importer's questions about a graph still being built)."""
    rows: dict[int, Rows] = {}
    for node in graph.nodes:
        if node.kind in BOUNDED_KINDS:
            if strict and not _reads_its_valid_rows(node, rows):
                _reject_bounded_inputs(node, rows)
            rows[id(node.outputs[0])] = (node.outputs[-1], BOUNDED_KINDS[node.kind])
            continue
        inputs = {i: rows[id(v)] for i, v in enumerate(node.inputs) if v is not None and id(v) in rows}
        if node.kind == LayerKind.GATHER and len(inputs) == 2 and inputs[0][1] == int(node.attrs["axis"]):
            del inputs[0]   # bounded rows picked by bounded indices: valid indices address valid rows only
        if not inputs:
            continue
        counts = {id(count) for count, _ in inputs.values()}
        rule = _RULES.get(node.kind)
        axes = rule(node, inputs) if rule is not None and len(counts) == 1 else None
        if axes is None:
            if not strict:
                continue
            _fail(node, inputs, "mixes different row counts" if len(counts) > 1 else None)
        count = next(iter(inputs.values()))[0]
        for value, axis in zip(node.outputs, axes):
            if axis is not None:
                rows[id(value)] = (count, axis)
    return rows


def graph_output_rows(graph: Graph) -> list[Rows | None]:
    """Per graph output, its (count, axis) when its size is data-dependent, else None."""
    rows = bounded_values(graph)
    return [rows.get(id(value)) for value in graph.outputs]


def _reads_its_valid_rows(node: Node, rows: dict[int, Rows]) -> bool:
    """An NMS whose boxes (axis 1) and scores (axis 2) are bounded rows, with their count as its input 2."""
    if node.kind != LayerKind.NMS or len(node.inputs) < 3:
        return False
    boxes, scores, count = node.inputs[:3]
    return rows.get(id(boxes)) == (count, 1) and rows.get(id(scores)) == (count, 2)


def _reject_bounded_inputs(node: Node, rows: dict[int, Rows]) -> None:
    inputs = {i: rows[id(v)] for i, v in enumerate(node.inputs) if v is not None and id(v) in rows}
    if inputs:
        _fail(node, inputs, None)


def _fail(node: Node, inputs: dict[int, Rows], why: str | None) -> None:
    index, (count, axis) = next(iter(inputs.items()))
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
    axes = {axis + len(out_shape) - len(node.inputs[i].shape) for i, (_, axis) in inputs.items()}
    if len(axes) != 1:
        return None
    (axis,) = axes
    if any(node.inputs[i].shape[a] != out_shape[axis] for i, (_, a) in inputs.items()):
        return None
    return [axis] + [None] * (len(node.outputs) - 1)


@_rule(LayerKind.REFORMAT)
def _reformat(node, inputs):
    """A precision / device change keeps rows where it keeps the layout."""
    if node.attrs.get("from_layout") != node.attrs.get("to_layout"):
        return None
    return _per_element(node, inputs)


def map_axis_through_reshape(shape, target, axis: int) -> int | None:
    """The axis of ``target`` that holds ``shape``'s ``axis`` row for row, or None when the reshape mixes it."""
    before, size, after = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    for b, dim in enumerate(target):
        if dim == size and math.prod(target[:b]) == before and math.prod(target[b + 1:]) == after:
            return b
    return None


@_rule(LayerKind.SHUFFLE)
def _shuffle(node, inputs):
    (_, axis), = inputs.values()
    shape = list(node.inputs[0].shape)
    first, target, second = node.attrs.get("first_perm"), node.attrs.get("reshape"), node.attrs.get("second_perm")
    if first:
        axis, shape = list(first).index(axis), [shape[p] for p in first]
    if target is not None:
        axis = map_axis_through_reshape(shape, list(target), axis)
        if axis is None:
            return None
    if second:
        axis = list(second).index(axis)
    return [axis]


@_rule(LayerKind.SLICE)
def _slice(node, inputs):
    """The whole bounded axis, or its first rows (``[:k]``: the valid rows are then the first min(count, k))."""
    (_, axis), = inputs.values()
    attrs = node.attrs
    prefix = attrs["starts"][axis] == 0 and attrs["steps"][axis] == 1
    return [axis] if prefix else None


@_rule(LayerKind.CONCATENATION)
def _concatenation(node, inputs):
    axes = {axis for _, axis in inputs.values()}
    if len(axes) != 1 or int(node.attrs["axis"]) in axes:
        return None
    return [axes.pop()]


@_rule(LayerKind.GATHER)
def _gather(node, inputs):
    data, indices = node.inputs
    gather_axis = int(node.attrs["axis"])
    if len(inputs) != 1:
        return None
    (index, (_, axis)), = inputs.items()
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
    (_, axis), = inputs.values()
    result = _after_reducing(axis, [int(a) for a in node.attrs["axes"]], bool(node.attrs.get("keepdims", True)))
    return None if result is None else [result]


@_rule(LayerKind.SOFTMAX)
def _softmax(node, inputs):
    (_, axis), = inputs.values()
    return None if axis in [int(a) for a in node.attrs["axes"]] else [axis]


@_rule(LayerKind.TOPK)
def _topk(node, inputs):
    (_, axis), = inputs.values()
    if "k" in node.attrs:
        return None if axis == int(node.attrs["axis"]) else [axis, axis]
    result = _after_reducing(axis, [int(node.attrs["axis"])], bool(node.attrs.get("keepdims", True)))
    return None if result is None else [result]


@_rule(LayerKind.MATRIX_MULTIPLY)
def _matrix_multiply(node, inputs):
    if list(inputs) != [0] or node.attrs.get("trans_a"):
        return None
    (_, axis), = inputs.values()
    a = node.inputs[0]
    if len(a.shape) < 2 or axis == len(a.shape) - 1:
        return None
    out_rank = len(node.outputs[0].shape)
    if axis < len(a.shape) - 2 and a.shape[axis] != node.outputs[0].shape[axis + out_rank - len(a.shape)]:
        return None
    return [axis + out_rank - len(a.shape)]
