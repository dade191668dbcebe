"""Shuffle cancellation: merge consecutive Shuffles (reshape / transpose chains) into one, or none.

Rewrites, for a Shuffle whose input is another Shuffle's output read by nobody else:
- the two layers' transpose/reshape steps are concatenated and simplified: adjacent transposes
  compose, adjacent reshapes keep the last, a transpose that only moves size-1 axes becomes a
  reshape, and steps that change nothing disappear;
- if what remains fits one Shuffle (transpose, reshape, transpose), it replaces both layers;
  if nothing remains (e.g. a transpose followed by its inverse), both layers disappear.
"""

from __future__ import annotations

from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import LayerKind
from edgert.passes import is_graph_output


def steps_of(attrs: dict) -> list[tuple[str, tuple]]:
    steps = []
    if attrs.get("first_perm") is not None:
        steps.append(("T", tuple(attrs["first_perm"])))
    if attrs.get("reshape") is not None:
        steps.append(("R", tuple(attrs["reshape"])))
    if attrs.get("second_perm") is not None:
        steps.append(("T", tuple(attrs["second_perm"])))
    return steps


def _apply(shape: tuple, step) -> tuple:
    op, arg = step
    return tuple(shape[p] for p in arg) if op == "T" else tuple(arg)


def simplify(shape: tuple, steps: list) -> list:
    """Simplify a transpose/reshape sequence applied to ``shape`` until no rule applies."""
    while True:
        out, current = [], tuple(shape)
        for step in steps:
            op, arg = step
            if op == "T" and [p for p in arg if current[p] != 1] == [i for i, d in enumerate(current) if d != 1]:
                step = op, arg = ("R", _apply(current, step))  # only size-1 axes move: a reshape
            after = _apply(current, step)
            if after == current and (op == "R" or list(arg) == sorted(arg)):
                continue  # changes nothing
            if out and out[-1][0] == op:
                previous = out.pop()
                step = ("T", tuple(previous[1][p] for p in arg)) if op == "T" else step
            out.append(step)
            current = after
        if out == steps:
            return out
        steps = out


def as_attrs(steps: list) -> dict | None:
    """The single-Shuffle attrs for ``steps``, or None if they need more than one Shuffle."""
    ops = "".join(op for op, _ in steps)
    layouts = {"": (None, None, None), "T": (0, None, None), "R": (None, 0, None), "TR": (0, 1, None),
               "RT": (None, 0, 1), "TRT": (0, 1, 2)}
    if ops not in layouts:
        return None
    first, reshape, second = layouts[ops]
    pick = lambda index: None if index is None else list(steps[index][1])  # noqa: E731
    return {"first_perm": pick(first), "reshape": pick(reshape), "second_perm": pick(second)}


def merge(graph: Graph, node: Node) -> bool:
    source = node.inputs[0]
    first = source.producer()
    if (first is None or first.kind != LayerKind.SHUFFLE or len(source.uses()) != 1
            or is_graph_output(graph, source)):
        return False
    steps = simplify(first.inputs[0].shape, steps_of(first.attrs) + steps_of(node.attrs))
    attrs = as_attrs(steps)
    if attrs is None:
        return False
    node.set_input(0, first.inputs[0])
    node.attrs = attrs
    node.origin = first.origin + node.origin
    graph.remove_node(first)
    return True


def run(graph: Graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.kind == LayerKind.SHUFFLE and node in graph.nodes and merge(graph, node):
            count += 1
    return count
