import numpy as np

from edgert.ir.kinds import ActivationType, LayerKind
from edgert.passes import horizontal_fusion
from passes_util import assert_same_outputs, layer, new_graph

RNG = np.random.default_rng()


def _conv(graph, x, out_channels, kernel=1, group=1, name="conv", epilogue=None):
    w = graph.constant(RNG.standard_normal((out_channels, x.shape[1] // group, kernel, kernel)).astype(np.float32))
    b = graph.constant(RNG.standard_normal(out_channels).astype(np.float32))
    pad = kernel // 2
    attrs = {"kernel": [kernel, kernel], "strides": [1, 1], "pads": [pad] * 4, "dilations": [1, 1], "group": group}
    if epilogue:
        attrs["epilogue"] = epilogue
    return layer(graph, LayerKind.CONVOLUTION, [x, w, b], attrs, name=name)


def _relu(graph, x, name):
    return layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}, name=name)


def test_inception_style_siblings_merge_into_one_conv():
    graph, (x,) = new_graph((1, 16, 8, 8))
    relu = [{"op": "activation", "type": "relu", "alpha": 0.0, "beta": 0.0}]
    a = _conv(graph, x, 8, name="1x1", epilogue=relu)
    b = _conv(graph, x, 4, name="3x3_reduce", epilogue=relu)
    c = _conv(graph, x, 2, name="5x5_reduce", epilogue=relu)
    graph.add_output(a, "a")
    graph.add_output(_conv(graph, b, 6, kernel=3, name="3x3"), "b")
    graph.add_output(_conv(graph, c, 6, kernel=5, name="5x5"), "c")
    assert_same_outputs(graph)
    assert horizontal_fusion.run(graph) == 1
    graph.verify()
    merged = graph.nodes[0]
    assert merged.origin == ["1x1", "3x3_reduce", "5x5_reduce"] and merged.outputs[0].shape == (1, 14, 8, 8)
    assert sum(n.kind == LayerKind.SLICE for n in graph.nodes) == 3


def test_siblings_that_differ_do_not_merge():
    graph, (x,) = new_graph((1, 8, 8, 8))
    graph.add_output(_conv(graph, x, 4, kernel=1, name="a"), "a")
    graph.add_output(_conv(graph, x, 4, kernel=3, name="b"), "b")                     # other geometry
    graph.add_output(_conv(graph, x, 4, kernel=1, group=2, name="c"), "c")            # grouped
    graph.add_output(_conv(graph, x, 4, kernel=1, name="d", epilogue=[
        {"op": "activation", "type": "relu", "alpha": 0.0, "beta": 0.0}]), "d")     # other epilogue
    assert horizontal_fusion.run(graph) == 0


def test_a_single_conv_is_left_alone():
    graph, (x,) = new_graph((1, 8, 8, 8))
    graph.add_output(_relu(graph, _conv(graph, x, 4), "r"), "y")
    assert horizontal_fusion.run(graph) == 0
