"""ONNX importers: If, Loop and Scan, resolved at build time into plain layers (no control flow in the plan).

- If with a condition known at build time imports only the taken branch. With a condition known only
  at run time both branches are imported and each output becomes a Select(cond, then, else): both
  branches are evaluated on every run, so both must give outputs of the same shapes and types.
- Loop with a constant trip count (or a condition that stays constant) and Scan with scan lengths
  known at build time are unrolled: the body is imported once per iteration with the loop-carried
  values bound to the previous iteration's results; scan outputs are stacked with Concatenation.
  Scan-8 (opset 8: a batch axis) unrolls each batch row apart, with sequence_lens absent or full.
  Unrolling stops with an UnsupportedError beyond MAX_UNROLLED_NODES layers or iterations.

Bodies and branches see the enclosing scopes' values (outer-scope references, nested subgraphs): a
subgraph is imported with a scope of its own chained in front of the enclosing one, so its names
shadow outer names and never leak out.
"""

from __future__ import annotations

import collections

import numpy as np

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.onnx.context import tensor_to_array
from edgert.onnx.ops.tensor import normalize_axis, shuffle, slice_layer
from edgert.onnx.registry import onnx_op

MAX_UNROLLED_NODES = 20_000


def import_subgraph(ctx, graph, bindings: dict) -> list:
    """Import the nodes of ``graph`` (a GraphProto) into ctx.graph with its inputs bound to ``bindings``
    (name -> Value); returns the values of its outputs. Enclosing names stay visible."""
    from edgert.onnx.importer import _import_node
    outer_values, outer_node = ctx.values, ctx.node
    where = ctx.where
    missing = [i.name for i in graph.input if i.name not in bindings]
    if missing:
        raise ModelError(f"{where}: subgraph {graph.name!r} input(s) {missing} are not bound")
    scope = collections.ChainMap({}, dict(bindings), outer_values)
    for tensor in graph.initializer:
        scope[tensor.name] = ctx.constant(tensor_to_array(tensor, f"{where}: initializer {tensor.name!r}"),
                                          name=tensor.name)
    ctx.values = scope
    try:
        for node in graph.node:
            _import_node(ctx, node)
        outputs = []
        for info in graph.output:
            if info.name not in scope:
                raise ModelError(f"{where}: subgraph {graph.name!r} output {info.name!r} is not produced by any node")
            outputs.append(scope[info.name])
        return outputs
    finally:
        ctx.values, ctx.node = outer_values, outer_node


def _scalar_bool(ctx, value, what: str):
    if value.dtype != DataType.BOOL or value.size != 1:
        raise ModelError(f"{ctx.where}: {what} {value.name!r} is {value.dtype.value} {value.shape}, "
                         "expected one bool")
    return bool(np.asarray(value.const).reshape(-1)[0]) if value.is_const else None


@onnx_op("If")
def if_(ctx, node):
    cond = ctx.input(0)
    attrs = ctx.attrs()
    known = _scalar_bool(ctx, cond, "condition")
    if known is not None:
        return import_subgraph(ctx, attrs["then_branch" if known else "else_branch"], {})
    then_outputs = import_subgraph(ctx, attrs["then_branch"], {})
    else_outputs = import_subgraph(ctx, attrs["else_branch"], {})
    if len(then_outputs) != len(else_outputs):
        raise ModelError(f"{ctx.where}: then_branch gives {len(then_outputs)} outputs, else_branch "
                         f"{len(else_outputs)}")
    selector = shuffle(ctx, cond, target=[])
    outputs = []
    for index, (a, b) in enumerate(zip(then_outputs, else_outputs)):
        if a is b:
            outputs.append(a)
            continue
        counted = _select_rows(ctx, selector, a, b)
        if counted is not None:
            outputs.append(counted)
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            raise UnsupportedError(
                f"{ctx.where}: the condition {cond.name!r} is only known at run time and output {index} differs "
                f"between the branches (then: {a.dtype.value} {a.shape}, else: {b.dtype.value} {b.shape}); edgert "
                "evaluates both branches and selects, so they must agree (make the condition constant, e.g. with "
                "static input shapes, or export a model whose branches give the same shapes)")
        outputs.append(ctx.add(LayerKind.SELECT, [selector, a, b])[0])
    return outputs


def _select_rows(ctx, selector, a, b):
    """A branch output with data-dependent rows (torchvision: no boxes left, an empty result; else the boxes NMS
    keeps): a Compact with ``select`` gives the valid rows of the branch the condition takes, along the axis
    that carries the count (the branches may differ only there); None when neither branch has counted rows."""
    from edgert.ir.kinds import BOUNDED_KINDS
    from edgert.ir.valid_rows import bounded_values
    from edgert.onnx.ops.detection import bounded_layer
    if not any(n.kind in BOUNDED_KINDS for n in ctx.graph.nodes):
        return None
    known = bounded_values(ctx.graph, strict=False)
    found = [known.get(id(a)), known.get(id(b))]
    axes = {rows.axis for rows in found if rows is not None}
    if not axes:
        return None
    axis = axes.pop()
    if axes or any(rows is not None and rows.scale != 1 for rows in found) or a.dtype != b.dtype \
            or len(a.shape) != len(b.shape) or any(x != y for i, (x, y) in enumerate(zip(a.shape, b.shape)) if i != axis):
        raise UnsupportedError(
            f"{ctx.where}: the condition is only known at run time and the branches give {a.dtype.value} {a.shape} "
            f"and {b.dtype.value} {b.shape} with data-dependent rows along axes {[r and r.axis for r in found]}; "
            "edgert selects a branch's counted rows only when the branches differ along that one axis")
    counts = [rows.count if rows is not None else ctx.constant(np.array(v.shape[axis], np.int64))
              for v, rows in zip((a, b), found)]
    return bounded_layer(ctx, LayerKind.COMPACT, [a, b] + counts + [selector], {"axis": axis, "select": True})


class _Unroller:
    """Counts the layers and iterations an unrolled loop adds, with a clear error beyond the bound."""

    def __init__(self, ctx, what: str):
        self.ctx, self.what = ctx, what
        self.start = len(ctx.graph.nodes)
        self.iterations = 0

    def step(self) -> None:
        self.iterations += 1
        added = len(self.ctx.graph.nodes) - self.start
        if added > MAX_UNROLLED_NODES or self.iterations > MAX_UNROLLED_NODES:
            raise UnsupportedError(
                f"{self.ctx.where}: unrolling this {self.what} gave {added} layers after {self.iterations} "
                f"iterations, more than the bound of {MAX_UNROLLED_NODES}; edgert unrolls loops at build time "
                "(export the model with fewer iterations, or with the loop written out)")


def _stack(ctx, items: list, axis: int):
    """Stack same-shaped values along a new ``axis`` (Shuffle each to size 1 there, then Concatenation)."""
    expanded = []
    for value in items:
        shape = list(value.shape)
        if any(tuple(v.shape) != tuple(shape) or v.dtype != value.dtype for v in items):
            raise ShapeError(f"{ctx.where}: scan outputs of the iterations differ in shape or type "
                             f"({sorted({(v.dtype.value, v.shape) for v in items})})")
        expanded.append(shuffle(ctx, value, target=shape[:axis] + [1] + shape[axis:]))
    if len(expanded) == 1:
        return expanded[0]
    return ctx.add(LayerKind.CONCATENATION, expanded, {"axis": axis})[0]


@onnx_op("Loop")
def loop(ctx, node):
    body = ctx.attrs()["body"]
    # both must be known at build time (ctx.const_input's error says so, naming the input)
    trip = ctx.const_input(0, "the trip count (Loop is unrolled at build time)", required=False)
    cond = ctx.input(1, required=False)
    carried = [ctx.input(i) for i in range(2, len(node.input))]
    trips = int(np.asarray(trip).reshape(-1)[0]) if trip is not None else None
    if cond is not None:
        _scalar_bool(ctx, cond, "condition")
        cond = ctx.const_input(1, "the loop condition (Loop is unrolled at build time)")
    running = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
    if len(body.input) != 2 + len(carried) or len(body.output) < 1 + len(carried):
        raise ModelError(f"{ctx.where}: body has {len(body.input)} inputs and {len(body.output)} outputs for "
                         f"{len(carried)} loop-carried values (expected {2 + len(carried)} inputs)")
    scans = [[] for _ in range(len(body.output) - 1 - len(carried))]
    unroller = _Unroller(ctx, "Loop")
    while running and (trips is None or unroller.iterations < trips):
        bindings = {body.input[0].name: ctx.constant(np.array(unroller.iterations, np.int64), "iteration"),
                    body.input[1].name: ctx.constant(np.array(True), "cond")}
        bindings.update({info.name: value for info, value in zip(body.input[2:], carried)})
        outputs = import_subgraph(ctx, body, bindings)
        if not outputs[0].is_const:
            raise UnsupportedError(f"{ctx.where}: the body computes its condition {outputs[0].name!r} at run time; "
                                   "edgert unrolls loops at build time and needs it constant")
        running = _scalar_bool(ctx, outputs[0], "body condition")
        carried = outputs[1:1 + len(carried)]
        for items, value in zip(scans, outputs[1 + len(carried):]):
            items.append(value)
        unroller.step()
    if scans and not scans[0]:
        raise UnsupportedError(f"{ctx.where}: the loop runs no iteration, so its scan outputs have no known shape")
    return carried + [_stack(ctx, items, 0) for items in scans]


@onnx_op("Scan")
def scan(ctx, node):
    attrs = ctx.attrs()
    body, count = attrs["body"], int(attrs["num_scan_inputs"])
    if ctx.opset < 9:
        return _scan_8(ctx, node, body, count, attrs)
    inputs = [ctx.input(i) for i in range(len(node.input))]
    states, scanned = inputs[:len(inputs) - count], inputs[len(inputs) - count:]
    in_axes = [normalize_axis(ctx, a, len(v.shape), "scan_input_axes")
               for a, v in zip(attrs.get("scan_input_axes", [0] * count), scanned)]
    outputs_count = len(body.output) - len(states)
    out_directions = list(attrs.get("scan_output_directions", [0] * outputs_count))
    out_axes = list(attrs.get("scan_output_axes", [0] * outputs_count))
    states, scans = _unroll_scan(ctx, body, states, scanned, in_axes,
                                 list(attrs.get("scan_input_directions", [0] * count)))
    stacked = []
    for items, reverse, axis in zip(scans, out_directions, out_axes):
        axis = normalize_axis(ctx, axis, len(items[0].shape) + 1, "scan_output_axes")
        stacked.append(_stack(ctx, items[::-1] if reverse else items, axis))
    return states + stacked


def _unroll_scan(ctx, body, states: list, scanned: list, axes: list, directions: list):
    """(final states, per scan output the list of its per-step values) of the body run over the scan inputs."""
    lengths = {v.shape[a] for v, a in zip(scanned, axes)}
    if len(lengths) != 1:
        raise ShapeError(f"{ctx.where}: scan inputs have different lengths {sorted(lengths)} along their scan axes")
    length = lengths.pop()
    if length == 0:
        raise UnsupportedError(f"{ctx.where}: the scan inputs are empty, so the scan outputs have no known shape")
    scans = [[] for _ in range(len(body.output) - len(states))]
    unroller = _Unroller(ctx, "Scan")
    for step in range(length):
        bindings = {info.name: value for info, value in zip(body.input, states)}
        for info, value, axis, reverse in zip(body.input[len(states):], scanned, axes, directions):
            bindings[info.name] = _slice_step(ctx, value, axis, length - 1 - step if reverse else step)
        outputs = import_subgraph(ctx, body, bindings)
        states = outputs[:len(states)]
        for items, value in zip(scans, outputs[len(states):]):
            items.append(value)
        unroller.step()
    return states, scans


def _scan_8(ctx, node, body, count: int, attrs) -> list:
    """Scan-8: every input has a batch axis 0 (scan inputs scan along axis 1), each batch row scanned apart."""
    lens = ctx.input(0, required=False)
    inputs = [ctx.input(i) for i in range(1, len(node.input))]
    states, scanned = inputs[:len(inputs) - count], inputs[len(inputs) - count:]
    batch, length = scanned[0].shape[0], scanned[0].shape[1]
    if lens is not None and not (lens.is_const and (np.asarray(lens.const) == length).all()):
        raise UnsupportedError(f"{ctx.where}: Scan-8 with sequence_lens shorter than the scan inputs "
                               f"({length} steps) is not supported; convert the model to opset 9 or later")
    directions = list(attrs.get("directions", [0] * count))
    rows = []
    for row in range(batch):
        row_states, scans = _unroll_scan(ctx, body, [_slice_step(ctx, v, 0, row) for v in states],
                                         [_slice_step(ctx, v, 0, row) for v in scanned], [0] * count, directions)
        rows.append(row_states + [_stack(ctx, items, 0) for items in scans])
    return [_stack(ctx, list(values), 0) for values in zip(*rows)]


def _slice_step(ctx, value, axis: int, index: int):
    starts = [0] * len(value.shape)
    sizes = list(value.shape)
    starts[axis], sizes[axis] = index, 1
    part = slice_layer(ctx, value, starts, sizes)
    return shuffle(ctx, part, target=sizes[:axis] + sizes[axis + 1:])
