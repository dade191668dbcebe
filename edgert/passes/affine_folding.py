"""Affine-chain folding: consecutive per-channel affine layers become one Scale layer.

Rewrites a chain of two or more layers, each reading the previous one's output, where every layer
is y = x·m + a with constants m, a that vary only along the channel axis (axis 1) or not at all:
- Scale(x, s, t) (BatchNormalization becomes one at import);
- ElementWise PROD by a constant (either side), DIV by a constant (x / c);
- ElementWise SUM of a constant (either side), SUB of a constant (x − c);
→ one Scale(x, m, a) with m = m1·m2·…, a = (a1·m2 + a2)·m3 + …, computed in float64 and stored in
the tensor type; it keeps the names of the layers it replaces in ``origin``. DenseNet exports write
BatchNormalization → Mul → Add → Relu: three passes over the tensor become one (and elementwise
fusion then joins the Relu).

Does not fire for a single affine layer, across a value that another layer or the graph output also
reads, for constants that vary along another axis or broadcast the tensor to a larger shape, for
tensors of rank below 2 or of a non-float type, or where the layers' types differ.
A chain right after a convolution is scale_folding's (into the weights), which runs first.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import LayerKind
from edgert.passes import is_graph_output, single_use
from edgert.passes.scale_folding import affine_of


def data_input(node: Node) -> Value | None:
    """The tensor an affine candidate transforms: Scale's first input, or an ElementWise's only non-constant one."""
    if node.kind == LayerKind.SCALE:
        return node.inputs[0]
    if node.kind == LayerKind.ELEMENTWISE and len(node.inputs) == 2:
        variables = [v for v in node.inputs if v is not None and not v.is_const]
        return variables[0] if len(variables) == 1 else None
    return None


def affine(node: Node) -> tuple[Value, np.ndarray, np.ndarray] | None:
    """(x, multiplier, addend) when ``node`` is x·m + a with per-channel or scalar constants (float64), else None."""
    x = data_input(node)
    if x is None or len(node.outputs) != 1 or x.dtype is None or not x.dtype.is_float or len(x.shape) < 2:
        return None
    out = node.outputs[0]
    if out.dtype != x.dtype or tuple(out.shape) != tuple(x.shape) \
            or any(v is not None and v.dtype != x.dtype for v in node.inputs):
        return None
    factors = affine_of(node, x)
    if factors is None:
        return None
    multiplier, addend = factors
    return x, np.asarray(multiplier, np.float64), np.asarray(addend, np.float64)


def chain_from(graph: Graph, head: Node) -> list[tuple[Node, np.ndarray, np.ndarray]]:
    """The longest chain of affine layers starting at ``head`` whose intermediates only the next link reads."""
    first = affine(head)
    if first is None:
        return []
    links = [(head, first[1], first[2])]
    while True:
        value = links[-1][0].outputs[0]
        if not single_use(value) or is_graph_output(graph, value):
            return links
        user = value.uses()[0][0]
        step = affine(user)
        if step is None or step[0] is not value:
            return links
        links.append((user, step[1], step[2]))


def fold(graph: Graph, links: list) -> Node:
    head, last = links[0][0], links[-1][0]
    x = data_input(head)
    multiplier, addend = np.ones_like(links[0][1]), np.zeros_like(links[0][2])
    for _, m, a in links:
        multiplier, addend = multiplier * m, addend * m + a
    dtype, shape = x.dtype.numpy, (x.shape[1],) + (1,) * (len(x.shape) - 2)
    scale = graph.constant(multiplier.astype(dtype).reshape(shape), name=f"{head.name}_scale")
    shift = graph.constant(addend.astype(dtype).reshape(shape), name=f"{head.name}_shift")
    fused = graph.add_node(LayerKind.SCALE, [x, scale, shift], {"axis": 1}, name=f"{head.name}_affine",
                           origin=[name for node, _, _ in links for name in node.origin])
    fused.outputs[0].dtype, fused.outputs[0].shape = x.dtype, tuple(x.shape)
    graph.nodes.remove(fused)
    graph.nodes.insert(graph.nodes.index(last) + 1, fused)
    graph.replace_all_uses(last.outputs[0], fused.outputs[0])
    for node, _, _ in reversed(links):
        graph.remove_node(node)
    return fused


def run(graph: Graph) -> int:
    count, removed = 0, set()
    for node in list(graph.nodes):
        if id(node) in removed:
            continue
        links = chain_from(graph, node)
        if len(links) >= 2:
            fold(graph, links)
            removed.update(id(link) for link, _, _ in links)
            count += 1
    return count
