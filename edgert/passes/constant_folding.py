"""Constant folding.

Rewrites:
- a layer whose inputs are all constants → its outputs become constants computed by the CPU
  kernels (the numeric reference), and the layer is removed;
- except an Identity that publishes a constant as a graph output (it gives the output its own buffer),
  and layers with a data-dependent size (NMS, NonZero: the importer folds those to exact constants).
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import BOUNDED_KINDS, LayerKind
from edgert.kernels.registry import lookup


def evaluate(node: Node) -> list[np.ndarray]:
    """Run ``node`` on its constant inputs with the CPU kernel."""
    outputs = [np.empty(v.shape, v.dtype.numpy) for v in node.outputs]
    with np.errstate(all="ignore"):
        lookup(node.kind)(node.attrs, [v.const if v is not None else None for v in node.inputs], outputs)
    return outputs


def fold(graph: Graph, node: Node) -> list[Value]:
    """Replace ``node`` by constants holding its outputs; return them."""
    folded = [graph.constant(array, name=v.name) for v, array in zip(node.outputs, evaluate(node))]
    for old, new in zip(node.outputs, folded):
        graph.replace_all_uses(old, new)
    graph.remove_node(node)
    return folded


def foldable(graph: Graph, node: Node) -> bool:
    if node.kind in BOUNDED_KINDS or not all(v is None or v.is_const for v in node.inputs):
        return False
    publishes_output = any(v is out for v in node.outputs for out in graph.outputs)
    return not (node.kind == LayerKind.IDENTITY and publishes_output)


def run(graph: Graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if foldable(graph, node):
            fold(graph, node)
            count += 1
    _republish_constant_outputs(graph)
    return count


def _republish_constant_outputs(graph: Graph) -> None:
    """A graph output that became a constant is published through an Identity layer."""
    for index, value in enumerate(graph.outputs):
        if value.is_const:
            node = graph.add_node(LayerKind.IDENTITY, [value], name=f"{graph.output_names[index]}_copy")
            node.outputs[0].dtype, node.outputs[0].shape = value.dtype, value.shape
            graph.outputs[index] = node.outputs[0]
