"""Vertical fusion: a Convolution or MatrixMultiply absorbs the per-element layers after it.

Rewrites, while the layer's output is read by exactly one layer and is not a graph output:
- + Activation (ReLU, ReLU6/Clip, LeakyReLU, Sigmoid, HardSigmoid, HardSwish, Gelu, ...) → an
  ``activation`` epilogue step;
- + x·sigmoid(x) (SiLU / Swish: a Sigmoid and a Mul both reading the output) → a ``swish`` step;
- + ElementWise SUM with a tensor of the output's shape (a residual) or, for MatrixMultiply, a
  constant broadcast along the last axis (a Gemm bias) → an ``add`` step reading that tensor as an
  extra input; activations after the add follow as further steps (conv + bias + add + relu).
The fused layer keeps the names of the layers it absorbed in ``origin``. BatchNorm/Scale are
folded into the weights first by ``scale_folding``.
Does not fire when the output has another reader or is a graph output, on a type change, or for
a second residual add.
"""

from __future__ import annotations

from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind
from edgert.passes import is_graph_output

HOSTS = (LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY)


def _sole_reader(graph: Graph, node: Node) -> Node | None:
    out = node.outputs[0]
    uses = out.uses()
    if len(uses) != 1 or is_graph_output(graph, out):
        return None
    return uses[0][0]


def _absorb(graph: Graph, host: Node, layer: Node, step: dict, extra=None) -> None:
    """Append ``step`` to the host's epilogue and let the host's output stand for ``layer``'s."""
    if extra is not None:
        while host.kind == LayerKind.CONVOLUTION and len(host.inputs) < 3:
            host.append_input(None)  # keep slot 2 for the bias
        step = dict(step, input=len(host.inputs))
        host.append_input(extra)
    host.attrs["epilogue"] = list(host.attrs.get("epilogue") or []) + [step]
    host.origin = host.origin + layer.origin
    graph.replace_all_uses(layer.outputs[0], host.outputs[0])
    graph.remove_node(layer)


def _activation_step(layer: Node) -> dict:
    return {"op": "activation", "type": layer.attrs["type"], "alpha": float(layer.attrs.get("alpha", 0.0)),
            "beta": float(layer.attrs.get("beta", 0.0))}


def _try_swish(graph: Graph, host: Node) -> bool:
    out = host.outputs[0]
    readers = out.users()
    if len(readers) != 2 or is_graph_output(graph, out):
        return False
    sigmoid = next((r for r in readers if r.kind == LayerKind.ACTIVATION
                    and ActivationType(r.attrs["type"]) == ActivationType.SIGMOID), None)
    mul = next((r for r in readers if r.kind == LayerKind.ELEMENTWISE
                and ElementWiseOp(r.attrs["op"]) == ElementWiseOp.PROD), None)
    if sigmoid is None or mul is None or set(map(id, mul.inputs)) != {id(out), id(sigmoid.outputs[0])}:
        return False
    if len(sigmoid.outputs[0].uses()) != 1 or is_graph_output(graph, sigmoid.outputs[0]):
        return False
    host.attrs["epilogue"] = list(host.attrs.get("epilogue") or []) + [
        {"op": "activation", "type": ActivationType.SWISH.value, "alpha": 0.0, "beta": 0.0}]
    host.origin = host.origin + sigmoid.origin + mul.origin
    graph.replace_all_uses(mul.outputs[0], out)
    graph.remove_node(mul)
    graph.remove_node(sigmoid)
    return True


def _residual(layer: Node, out, host: Node):
    """The other operand of a SUM that can be fused as an ``add`` step, else None."""
    if layer.kind != LayerKind.ELEMENTWISE or ElementWiseOp(layer.attrs["op"]) != ElementWiseOp.SUM:
        return None
    a, b = layer.inputs
    other = b if a is out else a
    if other is out or layer.outputs[0].shape != out.shape or other.dtype != out.dtype:
        return None
    if other.shape == out.shape:
        return other
    if host.kind == LayerKind.MATRIX_MULTIPLY and other.is_const and len(other.shape) <= len(out.shape) \
            and all(d == 1 for d in other.shape[:-1]):
        return other  # a bias along the last axis
    return None


def fuse_into(graph: Graph, host: Node) -> int:
    count = 0
    while True:
        if _try_swish(graph, host):
            count += 1
            continue
        reader = _sole_reader(graph, host)
        if reader is None or reader.outputs[0].dtype != host.outputs[0].dtype:
            return count
        out = host.outputs[0]
        if reader.kind == LayerKind.ACTIVATION:
            _absorb(graph, host, reader, _activation_step(reader))
        else:
            extra = _residual(reader, out, host)
            adds = sum(1 for step in host.attrs.get("epilogue") or [] if step["op"] == "add")
            if extra is None or adds >= 1 + (host.kind == LayerKind.MATRIX_MULTIPLY):
                return count
            _absorb(graph, host, reader, {"op": "add"}, extra)
        count += 1


def run(graph: Graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.kind in HOSTS and node in graph.nodes and node.outputs[0].dtype.is_float:
            count += fuse_into(graph, node)
    if count:
        graph.toposort()
    return count
