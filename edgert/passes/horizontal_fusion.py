"""Horizontal fusion: sibling convolutions reading one input become one convolution.

Rewrites:
- two or more Convolutions that read the same tensor with the same kernel, strides, pads,
  dilations, group 1, the same epilogue (no residual input) and constant weights/bias of one type
  → one Convolution whose weights are theirs stacked along the output channels, writing one
  output; each original output becomes a channel Slice of it (a view of the merged output when
  the batch is 1, so no copy). The merged layer's ``origin`` lists the convolutions it replaces
  (e.g. an inception block's 1x1 branches).
Does not fire for a single convolution, grouped convolutions, differing geometry or epilogues, or
non-constant weights.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import LayerKind

_GEOMETRY = ("kernel", "strides", "pads", "dilations")


def signature(node: Node):
    """Convolutions with equal signatures may be merged; None when this one cannot be."""
    attrs = node.attrs
    epilogue = attrs.get("epilogue") or []
    if (node.kind != LayerKind.CONVOLUTION or int(attrs.get("group", 1)) != 1 or len(node.inputs) > 3
            or any(step.get("op") == "add" for step in epilogue) or not node.inputs[1].is_const
            or (len(node.inputs) > 2 and node.inputs[2] is not None and not node.inputs[2].is_const)):
        return None
    geometry = tuple(tuple(attrs.get(key) or ()) for key in _GEOMETRY)
    return geometry, repr(epilogue), node.inputs[1].dtype, node.device, node.precision


def merge(graph: Graph, siblings: list[Node]) -> Node:
    weights = np.concatenate([n.inputs[1].const for n in siblings], axis=0)
    biases = np.concatenate([n.inputs[2].const if len(n.inputs) > 2 and n.inputs[2] is not None
                             else np.zeros(n.inputs[1].shape[0], weights.dtype) for n in siblings])
    first = siblings[0]
    name = " + ".join(n.name for n in siblings)
    merged = graph.add_node(LayerKind.CONVOLUTION, [first.inputs[0], graph.constant(weights, f"{first.name}_hw"),
                                                    graph.constant(biases, f"{first.name}_hb")],
                            dict(first.attrs), name=name, origin=[o for n in siblings for o in n.origin])
    merged.device, merged.precision = first.device, first.precision
    out = merged.outputs[0]
    out.dtype = first.outputs[0].dtype
    out.shape = (first.outputs[0].shape[0], weights.shape[0]) + tuple(first.outputs[0].shape[2:])
    graph.nodes.remove(merged)
    graph.nodes.insert(min(graph.nodes.index(n) for n in siblings), merged)
    offset = 0
    for node in siblings:
        old = node.outputs[0]
        channels = old.shape[1]
        starts = [0, offset] + [0] * (len(old.shape) - 2)
        piece = graph.add_node(LayerKind.SLICE, [out], {"starts": starts, "sizes": list(old.shape),
                                                        "steps": [1] * len(old.shape)}, name=f"{node.name}_slice",
                               origin=node.origin)
        piece.outputs[0].dtype, piece.outputs[0].shape = old.dtype, old.shape
        piece.device, piece.precision = node.device, node.precision
        graph.nodes.remove(piece)
        graph.nodes.insert(graph.nodes.index(merged) + 1, piece)
        graph.replace_all_uses(old, piece.outputs[0])
        graph.remove_node(node)
        offset += channels
    return merged


def run(graph: Graph) -> int:
    groups: dict = defaultdict(list)
    for node in graph.nodes:
        key = signature(node)
        if key is not None:
            groups[(id(node.inputs[0]), key)].append(node)
    count = 0
    for siblings in groups.values():
        if len(siblings) >= 2:
            merge(graph, siblings)
            count += 1
    return count
