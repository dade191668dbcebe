import numpy as np

from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind
from edgert.passes import conv_fusion, scale_folding
from passes_util import assert_same_outputs, layer, new_graph

RNG = np.random.default_rng()


def _conv(graph, x, channels_out, name="conv", bias=True):
    channels_in = x.shape[1]
    w = graph.constant(RNG.standard_normal((channels_out, channels_in, 3, 3)).astype(np.float32) * 0.2)
    inputs = [x, w] + ([graph.constant(RNG.standard_normal(channels_out).astype(np.float32))] if bias else [])
    return layer(graph, LayerKind.CONVOLUTION, inputs, {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
                                                        "dilations": [1, 1], "group": 1}, name=name)


def _act(graph, x, kind=ActivationType.RELU, name="act", **params):
    return layer(graph, LayerKind.ACTIVATION, [x], {"type": kind, **params}, name=name)


def _add(graph, a, b, name="add"):
    return layer(graph, LayerKind.ELEMENTWISE, [a, b], {"op": ElementWiseOp.SUM}, name=name)


def test_conv_bn_residual_relu_is_one_layer():
    graph, (x,) = new_graph((1, 8, 10, 10))
    c = _conv(graph, x, 8, bias=False)
    scale = graph.constant(RNG.uniform(0.5, 1.5, (8, 1, 1)).astype(np.float32))
    shift = graph.constant(RNG.standard_normal((8, 1, 1)).astype(np.float32))
    bn = layer(graph, LayerKind.SCALE, [c, scale, shift], {"axis": 1}, name="bn")
    r = _act(graph, bn, name="relu1")
    d = _conv(graph, r, 8, name="conv2")
    y = _act(graph, _add(graph, d, x), name="relu2")
    graph.add_output(y, "y")
    assert_same_outputs(graph, 1e-5)
    assert scale_folding.run(graph) == 1
    assert conv_fusion.run(graph) == 3
    graph.verify()
    assert [n.kind for n in graph.nodes] == [LayerKind.CONVOLUTION] * 2
    assert graph.nodes[1].origin == ["conv2", "add", "relu2"]
    assert [s["op"] for s in graph.nodes[1].attrs["epilogue"]] == ["add", "activation"]


def test_swish_and_clip():
    graph, (x,) = new_graph((1, 4, 6, 6))
    c = _conv(graph, x, 4)
    s = _act(graph, c, ActivationType.SIGMOID, name="sig")
    m = layer(graph, LayerKind.ELEMENTWISE, [c, s], {"op": ElementWiseOp.PROD}, name="mul")
    graph.add_output(_act(graph, m, ActivationType.CLIP, name="relu6", alpha=0.0, beta=6.0), "y")
    assert_same_outputs(graph, 1e-5)
    assert conv_fusion.run(graph) == 2
    assert len(graph.nodes) == 1


def test_does_not_fuse_when_the_raw_output_has_another_reader():
    graph, (x,) = new_graph((1, 4, 6, 6))
    c = _conv(graph, x, 4)
    graph.add_output(_act(graph, c), "y")
    graph.add_output(_act(graph, c, ActivationType.SIGMOID, name="other"), "z")
    assert conv_fusion.run(graph) == 0


def test_does_not_fuse_into_a_published_output_or_a_broadcast_add():
    graph, (x, bias) = new_graph((1, 4, 6, 6), (1, 4, 1, 1))
    c = _conv(graph, x, 4)
    graph.add_output(c, "raw")
    graph.add_output(_act(graph, c), "y")
    d = _conv(graph, x, 4, name="conv2")
    graph.add_output(_add(graph, d, bias), "z")
    assert conv_fusion.run(graph) == 0


def test_scale_folding_does_not_fire_on_non_channel_factors():
    graph, (x,) = new_graph((1, 4, 6, 6))
    c = _conv(graph, x, 4)
    spatial = graph.constant(RNG.standard_normal((1, 1, 6, 6)).astype(np.float32))
    graph.add_output(layer(graph, LayerKind.ELEMENTWISE, [c, spatial], {"op": ElementWiseOp.PROD}), "y")
    assert scale_folding.run(graph) == 0
