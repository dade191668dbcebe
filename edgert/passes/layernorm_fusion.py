"""LayerNorm fusion: layer normalization written out layer by layer becomes one Normalization layer.

Rewrites (the TorchScript exporter's pattern below opset 17, and TensorFlow / Paddle exports):
  mean = ReduceMean(x, axes, keepdims)    d = x − mean
  var  = ReduceMean(d² , axes, keepdims)  (d² as Pow(d, 2) or d·d)
  n    = d / Sqrt(var + ε)                (or d · Reciprocal(Sqrt(var + ε)))
  [y = n · γ] [+ β]                       (γ, β constants that vary only along the normalized axes)
→ Normalization(x, [γ], [β]; axes, epsilon=ε), keeping the replaced layers' names in ``origin``.
Does not fire when the two reductions differ in axes or do not keep dims, when an intermediate result
is read elsewhere or is a graph output, for a non-constant or non-scalar ε, for a power other than 2,
or for γ/β that vary along another axis (those stay separate layers after the Normalization).
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import ElementWiseOp as E, LayerKind, ReduceOp, UnaryOp
from edgert.passes import is_graph_output


def _op(node: Node | None, kind: LayerKind, op) -> bool:
    return node is not None and node.kind == kind and node.attrs.get("op") == op


def _only_reader(graph: Graph, value: Value) -> Node | None:
    users = value.users()
    if len(users) != 1 or len(value.uses()) != 1 or is_graph_output(graph, value):
        return None
    return users[0]


def _scalar(value: Value | None) -> float | None:
    return float(value.const.reshape(-1)[0]) if value is not None and value.is_const and value.size == 1 else None


def _other(node: Node, value: Value) -> Value | None:
    a, b = node.inputs
    return b if a is value else a if b is value else None


def _axes(node: Node, rank: int) -> tuple | None:
    if not _op(node, LayerKind.REDUCE, ReduceOp.AVG) or not node.attrs.get("keepdims", 1):
        return None
    axes = node.attrs.get("axes")
    return tuple(sorted(int(a) % rank for a in axes)) if axes else None


def _variance_branch(graph: Graph, d: Value, axes, rank: int):
    """(layers, epsilon, std) for var = mean(d²) → + ε → Sqrt, found from d's readers."""
    for square in d.users():
        is_pow = _op(square, LayerKind.ELEMENTWISE, E.POW) and square.inputs[0] is d \
            and _scalar(square.inputs[1]) == 2.0
        is_mul = _op(square, LayerKind.ELEMENTWISE, E.PROD) and square.inputs[0] is d and square.inputs[1] is d
        if not (is_pow or is_mul):
            continue
        reduce = _only_reader(graph, square.outputs[0])
        if reduce is None or _axes(reduce, rank) != axes:
            return None
        add = _only_reader(graph, reduce.outputs[0])
        if not _op(add, LayerKind.ELEMENTWISE, E.SUM):
            return None
        epsilon = _scalar(_other(add, reduce.outputs[0]))
        sqrt = _only_reader(graph, add.outputs[0])
        if epsilon is None or not _op(sqrt, LayerKind.UNARY, UnaryOp.SQRT):
            return None
        return [square, reduce, add, sqrt], epsilon, sqrt.outputs[0]
    return None


def _normalized(graph: Graph, d: Value, std: Value):
    """The layers that divide d by std: Div(d, std), or Mul(d, Reciprocal(std))."""
    reader = _only_reader(graph, std)
    if _op(reader, LayerKind.ELEMENTWISE, E.DIV) and reader.inputs == (d, std):
        return [reader]
    if _op(reader, LayerKind.UNARY, UnaryOp.RECIP):
        mul = _only_reader(graph, reader.outputs[0])
        if _op(mul, LayerKind.ELEMENTWISE, E.PROD) and _other(mul, reader.outputs[0]) is d:
            return [reader, mul]
    return None


def _affine(graph: Graph, value: Value, op: E, axes, x: Value):
    """(layer, constant) when value's only reader applies op with a constant varying only along axes."""
    reader = _only_reader(graph, value)
    if not _op(reader, LayerKind.ELEMENTWISE, op):
        return None
    const = _other(reader, value)
    if const is None or not const.is_const or const.dtype != x.dtype or len(const.shape) > len(x.shape):
        return None
    shape = (1,) * (len(x.shape) - len(const.shape)) + tuple(const.shape)
    if any(n != 1 and (i not in axes or n != x.shape[i]) for i, n in enumerate(shape)):
        return None
    return reader, const


def _match(graph: Graph, mean_node: Node):
    x = mean_node.inputs[0]
    rank = len(x.shape or ())
    axes = _axes(mean_node, rank)
    sub = _only_reader(graph, mean_node.outputs[0])
    if axes is None or not x.dtype.is_float or not _op(sub, LayerKind.ELEMENTWISE, E.SUB) \
            or sub.inputs != (x, mean_node.outputs[0]):
        return None
    d = sub.outputs[0]
    if is_graph_output(graph, d) or len(d.users()) != 2:
        return None
    variance = _variance_branch(graph, d, axes, rank)
    if variance is None:
        return None
    var_layers, epsilon, std = variance
    divide = _normalized(graph, d, std)
    if divide is None or len(d.uses()) != 2 + (var_layers[0].inputs[1] is d):
        return None
    layers = [mean_node, sub, *var_layers, *divide]
    params = []
    for op in (E.PROD, E.SUM):
        found = _affine(graph, layers[-1].outputs[0], op, axes, x)
        if found is None:
            break
        layers.append(found[0])
        params.append(found[1])
    return x, axes, epsilon, layers, params


def _rewrite(graph: Graph, x: Value, axes, epsilon: float, layers: list[Node], params: list[Value]) -> None:
    last = layers[-1]
    origin = [name for node in layers for name in node.origin]
    node = graph.add_node(LayerKind.NORMALIZATION, [x, *params], {"axes": list(axes), "epsilon": epsilon,
                                                                   "groups": 1}, name=last.name, origin=origin)
    node.outputs[0].dtype, node.outputs[0].shape = last.outputs[0].dtype, last.outputs[0].shape
    graph.nodes.remove(node)
    graph.nodes.insert(graph.nodes.index(last) + 1, node)
    graph.replace_all_uses(last.outputs[0], node.outputs[0])
    for member in sorted(layers, key=graph.nodes.index, reverse=True):
        graph.remove_node(member)


def run(graph: Graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if node in graph.nodes and _op(node, LayerKind.REDUCE, ReduceOp.AVG) and node.inputs[0].shape:
            match = _match(graph, node)
            if match is not None:
                _rewrite(graph, *match)
                count += 1
    return count
