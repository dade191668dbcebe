"""Activation recognition: a written-out activation (as exporters emit it) becomes one Activation layer.

Rewrites a cluster of per-element layers (Activation, arithmetic ElementWise, float Unary) that reads one
tensor x and scalar constants only, whose intermediate results nobody outside the cluster reads, when it
computes one of these functions of x (checked by evaluating the cluster with the CPU kernels in float64
on sample points from -12 to 12, so every spelling of a formula matches: Div by √2 or Mul by 1/√2, the
factor 0.5 on either side, Clip or Relu6 or Min/Max):
- x·sigmoid(x)                                → Activation(swish)      (SiLU; conv_fusion absorbs it)
- x·relu6(x + 3)/6, x·HardSigmoid(x; 1/6, ½)  → Activation(hard_swish)
- relu6(x + 3)/6                              → Activation(hard_sigmoid, alpha=1/6, beta=½)
- 0.5·x·(1 + erf(x/√2))                       → Activation(gelu_erf)
- 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))  → Activation(gelu_tanh)
- x·tanh(softplus(x))                         → Activation(mish)
The new layer keeps the names of the layers it replaces in ``origin``. Does not fire for a single layer,
when the cluster reads a second tensor or a non-scalar constant, across a value another layer or the
graph output reads, for non-float tensors, or for any other function (x·sigmoid(1.702·x) stays as it is).
"""

from __future__ import annotations

import math

import numpy as np

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import ActivationType as A, LayerKind
from edgert.kernels.registry import lookup
from edgert.passes import is_graph_output
from edgert.passes.elementwise_fusion import eligible

MAX_DEPTH = 10          # layers between x and the cluster's last layer
SAMPLES = np.concatenate([np.linspace(-12.0, 12.0, 961), [-3.0, 3.0, 0.0, 1e-3, -1e-3]])
TOLERANCE = 1e-5        # relative to 1 + |f(x)|: float32 constants (0.044715, 1/√2) are exact to ~1e-7


def _erf(x):
    return np.vectorize(math.erf)(x)


# (activation, its attrs, the function in float64): tried in order, the first that matches wins
TARGETS = (
    (A.SWISH, {}, lambda x: x / (1.0 + np.exp(-x))),
    (A.HARD_SWISH, {}, lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0),
    (A.HARD_SIGMOID, {"alpha": 1.0 / 6.0, "beta": 0.5}, lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0)),
    (A.GELU_ERF, {}, lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))),
    (A.GELU_TANH, {}, lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))),
    (A.MISH, {}, lambda x: x * np.tanh(np.log1p(np.exp(x)))),
)
_EXPECTED = [(kind, attrs, f(SAMPLES)) for kind, attrs, f in TARGETS]


def _is_scalar_const(value: Value | None) -> bool:
    return value is not None and value.is_const and value.size == 1


def _ancestors(root: Node) -> list[Node]:
    """Eligible per-element producers within MAX_DEPTH of root, root included, nearest first."""
    found, frontier = {id(root): root}, [root]
    for _ in range(MAX_DEPTH):
        frontier = [v.producer() for n in frontier for v in n.inputs if v is not None and v.producer() is not None]
        frontier = [p for p in frontier if id(p) not in found and eligible(p)]
        found.update((id(p), p) for p in frontier)
    return list(found.values())


def _cluster(graph: Graph, x: Value, root: Node, candidates: list[Node]) -> list[Node] | None:
    """The layers between x and root, if they read only x, each other and scalar constants."""
    depends: dict[int, bool] = {}

    def reads_x(node: Node) -> bool:
        if id(node) not in depends:
            depends[id(node)] = False   # no cycles in a DAG; a placeholder for the recursion
            depends[id(node)] = any(v is x or (v is not None and v.producer() is not None
                                               and id(v.producer()) in members and reads_x(v.producer()))
                                    for v in node.inputs)
        return depends[id(node)]

    members = {id(n): n for n in candidates}
    cluster = [n for n in candidates if reads_x(n)]
    inside = {id(n) for n in cluster}
    for node in cluster:
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if value is not x and not _is_scalar_const(value) and (producer is None or id(producer) not in inside):
                return None
        if node is not root:
            out = node.outputs[0]
            if is_graph_output(graph, out) or any(id(user) not in inside for user, _ in out.uses()):
                return None
    return cluster if root in cluster and len(cluster) >= 2 else None


def _evaluate(cluster: list[Node], x: Value) -> np.ndarray | None:
    """The cluster's function of x on SAMPLES, in float64, with the CPU kernels."""
    values = {id(x): SAMPLES}
    with np.errstate(all="ignore"):
        for node in cluster:
            args = [values[id(v)] if id(v) in values else np.asarray(v.const, np.float64).reshape(())
                    for v in node.inputs]
            out = np.empty(SAMPLES.shape, np.float64)
            lookup(node.kind)(node.attrs, args, [out])
            values[id(node.outputs[0])] = out
    return values[id(cluster[-1].outputs[0])]


def _recognize(computed: np.ndarray):
    for kind, attrs, expected in _EXPECTED:
        if np.all(np.abs(computed - expected) <= TOLERANCE * (1.0 + np.abs(expected))):
            return kind, attrs
    return None


def _rewrite(graph: Graph, cluster: list[Node], x: Value, kind: A, attrs: dict) -> None:
    root = cluster[-1]
    origin = [name for node in cluster for name in node.origin]
    node = graph.add_node(LayerKind.ACTIVATION, [x], {"type": kind, **attrs}, name=root.name, origin=origin)
    node.outputs[0].dtype, node.outputs[0].shape = root.outputs[0].dtype, root.outputs[0].shape
    graph.nodes.remove(node)
    graph.nodes.insert(graph.nodes.index(root) + 1, node)
    graph.replace_all_uses(root.outputs[0], node.outputs[0])
    for member in reversed(cluster):
        graph.remove_node(member)


def _match(graph: Graph, root: Node) -> list[Node] | None:
    """The layers replaced by one Activation, if those ending at root compute one of TARGETS."""
    candidates = _ancestors(root)
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    candidates.sort(key=lambda n: position[id(n)])
    dtype = root.outputs[0].dtype
    sources = [v for n in candidates for v in n.inputs if v is not None and not v.is_const]
    for x in dict.fromkeys(sources):   # farthest first: the largest cluster wins
        if x.dtype != dtype or x.shape != root.outputs[0].shape:
            continue
        cluster = _cluster(graph, x, root, candidates)
        found = _recognize(_evaluate(cluster, x)) if cluster else None
        if found:
            _rewrite(graph, cluster, x, *found)
            return cluster
    return None


def run(graph: Graph) -> int:
    count = 0
    removed: set[int] = set()
    for root in reversed(list(graph.nodes)):
        if id(root) in removed or not eligible(root):
            continue
        replaced = _match(graph, root)
        if replaced:
            count += 1
            removed.update(map(id, replaced))
    return count
