"""The order the importer walks an ONNX graph's nodes in, and the graph errors found on the way.

ONNX graphs are single-assignment and topologically sorted, but files in the wild are not always:
- two nodes writing one tensor name (the last writer used to win silently) → ModelError naming both;
- a node writing a graph input's or an initializer's name → ModelError naming both;
- nodes listed before the producers of their inputs → reordered (stable: a sorted graph keeps its order);
- a cycle → ModelError naming the nodes on it, instead of "not produced by any earlier node".
Names no node produces are left for the importer to report (graph inputs it lacks, typos).
"""

from __future__ import annotations

from edgert.errors import ModelError


def _label(node) -> str:
    return f"{node.op_type} node {node.name or (node.output[0] if node.output else '?')!r}"


def ordered_nodes(graph) -> list:
    """``graph.node`` in an order where each node follows the producers of its inputs."""
    nodes = list(graph.node)
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    writer: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if not name:
                continue
            if name in writer:
                raise ModelError(f"tensor {name!r} is written by two nodes, {_label(nodes[writer[name]])} and "
                                 f"{_label(node)}; every tensor needs exactly one producer (rename one output)")
            if name in defined:
                raise ModelError(f"{_label(node)} writes {name!r}, which is already a graph input or initializer; "
                                 "rename the node's output")
            writer[name] = index
    producers = [sorted({writer[name] for name in node.input if name in writer}) for node in nodes]
    if all(p < index for index, deps in enumerate(producers) for p in deps):
        return nodes
    return [nodes[i] for i in _stable_topological_order(nodes, producers)]


def _stable_topological_order(nodes: list, producers: list[list[int]]) -> list[int]:
    placed: set[int] = set()
    order: list[int] = []
    progress = True
    while progress and len(order) < len(nodes):
        progress = False
        for index in range(len(nodes)):
            if index not in placed and all(p in placed for p in producers[index] if p != index):
                if index in producers[index]:
                    continue   # reads its own output: a cycle of one
                placed.add(index)
                order.append(index)
                progress = True
    if len(order) < len(nodes):
        cycle = _find_cycle(producers, placed)
        names = " -> ".join(_label(nodes[i]) for i in cycle + cycle[:1])
        raise ModelError(f"the graph has a cycle: {names}; a tensor cannot depend on itself (ONNX graphs are "
                         "acyclic; loops belong in a Loop node)")
    return order


def _find_cycle(producers: list[list[int]], placed: set[int]) -> list[int]:
    """Walk producer edges from an unplaced node until a node repeats: the nodes between are a cycle."""
    start = next(i for i in range(len(producers)) if i not in placed)
    path, seen = [], {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in producers[node] if p not in placed)
    return path[seen[node]:][::-1]   # producer before consumer
