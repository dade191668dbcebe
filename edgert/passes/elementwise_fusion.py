"""Elementwise-chain fusion: connected per-element layers become one PointWise layer.

Rewrites:
- a set of Activation / ElementWise (arithmetic) / Unary / Scale / ParametricReLU layers of one
  float type, where every intermediate result is read only inside the set and is not a graph
  output, becomes one PointWise layer whose ``program`` evaluates the whole expression (for
  example Erf-based GELU: Div, Erf, Add, Mul, Mul → one layer). The fused layer keeps the names of
  the layers it replaces in ``origin``.
Does not fire for a single layer, for comparisons (their output type differs), or across a value
that another layer or the graph output also reads.
"""

from __future__ import annotations

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import POINTWISE_KINDS, ElementWiseOp, LayerKind, UnaryOp
from edgert.passes import is_graph_output

_ARITHMETIC = {ElementWiseOp.SUM, ElementWiseOp.SUB, ElementWiseOp.PROD, ElementWiseOp.DIV, ElementWiseOp.POW,
               ElementWiseOp.MAX, ElementWiseOp.MIN}
_NON_FLOAT_UNARY = {UnaryOp.NOT, UnaryOp.ISNAN, UnaryOp.ISINF}


def eligible(node: Node) -> bool:
    if node.kind not in POINTWISE_KINDS or len(node.outputs) != 1:
        return False
    if node.kind == LayerKind.ELEMENTWISE and ElementWiseOp(node.attrs["op"]) not in _ARITHMETIC:
        return False
    if node.kind == LayerKind.UNARY and UnaryOp(node.attrs["op"]) in _NON_FLOAT_UNARY:
        return False
    dtype = node.outputs[0].dtype
    return dtype.is_float and all(v is None or v.dtype == dtype for v in node.inputs)


def grow_cluster(graph: Graph, root: Node, taken: set) -> list[Node]:
    """The root plus every eligible producer whose output is read only inside the cluster."""
    members = {id(root): root}
    changed = True
    while changed:
        changed = False
        for node in list(members.values()):
            for value in node.inputs:
                producer = value.producer() if value is not None else None
                if (producer is None or id(producer) in members or id(producer) in taken
                        or not eligible(producer) or producer.outputs[0].dtype != root.outputs[0].dtype
                        or is_graph_output(graph, value)
                        or any(id(user) not in members for user, _ in value.uses())):
                    continue
                members[id(producer)] = producer
                changed = True
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    return sorted(members.values(), key=lambda n: position[id(n)])


def fuse(graph: Graph, cluster: list[Node]) -> Node:
    produced = {id(v): index for index, node in enumerate(cluster) for v in node.outputs}
    externals: list[Value] = []
    slot: dict[int, int] = {}
    for node in cluster:
        for value in node.inputs:
            if value is not None and id(value) not in produced and id(value) not in slot:
                slot[id(value)] = len(externals)
                externals.append(value)
    register = lambda v: -1 if v is None else (slot[id(v)] if id(v) not in produced  # noqa: E731
                                               else len(externals) + produced[id(v)])
    program = [{"kind": node.kind.value, "attrs": dict(node.attrs), "args": [register(v) for v in node.inputs]}
               for node in cluster]
    last = cluster[-1]
    origin = [name for node in cluster for name in node.origin]
    fused = graph.add_node(LayerKind.POINTWISE, externals, {"program": program}, name=_name(cluster),
                           origin=origin)
    fused.outputs[0].dtype, fused.outputs[0].shape = last.outputs[0].dtype, last.outputs[0].shape
    graph.nodes.remove(fused)
    graph.nodes.insert(graph.nodes.index(last) + 1, fused)
    graph.replace_all_uses(last.outputs[0], fused.outputs[0])
    for node in reversed(cluster):
        graph.remove_node(node)
    return fused


def _name(cluster: list[Node]) -> str:
    names = [n.name for n in cluster]
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]}, ..., {names[-1]}"
    return f"PWN({shown})"


def run(graph: Graph) -> int:
    count = 0
    taken: set = set()
    for node in reversed(list(graph.nodes)):
        if id(node) in taken or node not in graph.nodes or not eligible(node):
            continue
        cluster = grow_cluster(graph, node, taken)
        taken.update(id(n) for n in cluster)
        if len(cluster) >= 2:
            fuse(graph, cluster)
            count += 1
    return count
