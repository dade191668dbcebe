"""Identity and no-op removal.

Rewrites (each layer's readers then read its input directly):
- Identity (except one that gives a graph input or constant its own output buffer);
- Cast to the type the input already has;
- Shuffle whose output shape equals its input shape and which permutes nothing (Reshape to the same shape);
- Slice that takes every element; Padding with all-zero pads; Expand to the input's shape; Tile by ones;
- Concatenation of a single input.
"""

from __future__ import annotations

from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import LayerKind


def _identity_perm(perm) -> bool:
    return perm is None or list(perm) == list(range(len(perm)))


# kind -> predicate on a layer whose output has its input's shape and dtype: is it a no-op?
NO_OPS = {
    LayerKind.IDENTITY: lambda node: True,
    LayerKind.CAST: lambda node: True,
    LayerKind.SHUFFLE: lambda node: _identity_perm(node.attrs.get("first_perm"))
    and _identity_perm(node.attrs.get("second_perm")),
    LayerKind.SLICE: lambda node: all(s == 0 for s in node.attrs["starts"]) and all(s == 1 for s in node.attrs["steps"]),
    LayerKind.PADDING: lambda node: not any(node.attrs["pads"]) and len(node.inputs) == 1,   # else run-time pads
    LayerKind.EXPAND: lambda node: len(node.inputs) == 1,   # else it also carries a row count
    LayerKind.TILE: lambda node: all(r == 1 for r in node.attrs["repeats"]),
    LayerKind.CONCATENATION: lambda node: len(node.inputs) == 1,
}


def is_no_op(node: Node) -> bool:
    rule = NO_OPS.get(node.kind)
    if rule is None or not node.inputs or node.inputs[0] is None or len(node.outputs) != 1:
        return False
    source, out = node.inputs[0], node.outputs[0]
    return source.shape == out.shape and source.dtype == out.dtype and rule(node)


def bypass(graph: Graph, node: Node) -> bool:
    """Make the readers of ``node``'s output read its input; False when the layer must stay."""
    source, out = node.inputs[0], node.outputs[0]
    if any(v is out for v in graph.outputs):
        # The layer publishes a graph output. Drop it only if the input can take over that role.
        if source.producer() is None or any(v is source for v in graph.outputs):
            if node.kind != LayerKind.IDENTITY:
                node.kind, node.attrs = LayerKind.IDENTITY, {}
                return True
            return False
    graph.replace_all_uses(out, source)
    graph.remove_node(node)
    return True


def run(graph: Graph) -> int:
    return sum(1 for node in list(graph.nodes) if is_no_op(node) and bypass(graph, node))
