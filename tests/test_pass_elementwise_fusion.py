import numpy as np

from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind, UnaryOp
from edgert.passes import elementwise_fusion
from passes_util import assert_same_outputs, layer, new_graph


def _gelu(graph, x):
    """x * 0.5 * (1 + erf(x / sqrt(2))), the way exporters write it."""
    c = lambda v: graph.constant(np.array(v, np.float32))  # noqa: E731
    d = layer(graph, LayerKind.ELEMENTWISE, [x, c(np.sqrt(2))], {"op": ElementWiseOp.DIV}, name="div")
    e = layer(graph, LayerKind.UNARY, [d], {"op": UnaryOp.ERF}, name="erf")
    f = layer(graph, LayerKind.ELEMENTWISE, [e, c(1.0)], {"op": ElementWiseOp.SUM}, name="add")
    g = layer(graph, LayerKind.ELEMENTWISE, [x, f], {"op": ElementWiseOp.PROD}, name="mul")
    return layer(graph, LayerKind.ELEMENTWISE, [g, c(0.5)], {"op": ElementWiseOp.PROD}, name="half")


def test_gelu_becomes_one_layer():
    graph, (x,) = new_graph((2, 8, 300))
    graph.add_output(_gelu(graph, x), "y")
    assert_same_outputs(graph)
    assert elementwise_fusion.run(graph) == 1
    (node,) = graph.nodes
    assert node.kind == LayerKind.POINTWISE and node.origin == ["div", "erf", "add", "mul", "half"]
    graph.verify()


def test_per_channel_scale_chain_with_broadcasting():
    graph, (x,) = new_graph((2, 64, 40, 40))
    scale = graph.constant(np.random.default_rng().standard_normal((64, 1, 1)).astype(np.float32))
    a = layer(graph, LayerKind.SCALE, [x, scale, scale], {"axis": 1})
    b = layer(graph, LayerKind.ACTIVATION, [a], {"type": ActivationType.LEAKY_RELU, "alpha": 0.1})
    graph.add_output(layer(graph, LayerKind.UNARY, [b], {"op": UnaryOp.ABS}), "y")
    assert_same_outputs(graph)


def test_does_not_fuse_across_a_shared_or_published_value():
    graph, (x,) = new_graph((4, 4))
    a = layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}, name="a")
    b = layer(graph, LayerKind.ACTIVATION, [a], {"type": ActivationType.SIGMOID}, name="b")
    graph.add_output(a, "a")
    graph.add_output(b, "b")
    assert elementwise_fusion.run(graph) == 0


def test_does_not_fuse_comparisons_or_single_layers():
    graph, (x, y) = new_graph((4, 4), (4, 4))
    a = layer(graph, LayerKind.ELEMENTWISE, [x, y], {"op": ElementWiseOp.GREATER})
    graph.add_output(a, "a")
    graph.add_output(layer(graph, LayerKind.ACTIVATION, [y], {"type": ActivationType.RELU}), "b")
    assert elementwise_fusion.run(graph) == 0
