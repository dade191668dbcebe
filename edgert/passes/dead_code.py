"""Dead-layer elimination.

Rewrites:
- a layer none of whose outputs is read by another layer or is a graph output → removed.
"""

from __future__ import annotations

from edgert.ir.graph import Graph


def run(graph: Graph) -> int:
    live = {id(v) for v in graph.outputs}
    removed = 0
    for node in reversed(list(graph.nodes)):
        if any(id(v) in live or v.uses() for v in node.outputs):
            live.update(id(v) for v in node.inputs if v is not None)
            continue
        graph.remove_node(node)
        removed += 1
    return removed
