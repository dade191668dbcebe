"""layernorm_fusion: LayerNorm written out (TorchScript below opset 17, built with onnx.helper) → Normalization."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.ir.kinds import LayerKind
from edgert.onnx.importer import import_model
from edgert.passes import constant_folding, layernorm_fusion
from helpers import assert_matches_ort

N = helper.make_node
SHAPE = [2, 7, 48]


def _layer_norm_nodes(square="pow", divide="div", affine=True, axes=(-1,), second_axes=None):
    axes2 = axes if second_axes is None else second_axes
    nodes = [N("ReduceMean", ["x"], ["mean"], axes=list(axes)), N("Sub", ["x", "mean"], ["d"])]
    nodes.append(N("Pow", ["d", "two"], ["sq"]) if square == "pow" else N("Mul", ["d", "d"], ["sq"]))
    nodes += [N("ReduceMean", ["sq"], ["var"], axes=list(axes2)), N("Add", ["var", "eps"], ["ve"]),
              N("Sqrt", ["ve"], ["std"])]
    if divide == "div":
        nodes.append(N("Div", ["d", "std"], ["n"]))
    else:
        nodes += [N("Reciprocal", ["std"], ["r"]), N("Mul", ["d", "r"], ["n"])]
    if affine:
        nodes += [N("Mul", ["n", "gamma"], ["g"]), N("Add", ["g", "beta"], ["y"])]
    else:
        nodes.append(N("Identity", ["n"], ["y"]))
    return nodes


def _model(nodes, gamma_shape=(48,), extra_outputs=()):
    rng = np.random.default_rng()
    inits = [numpy_helper.from_array(np.array(v, np.float32), name) for name, v in
             {"two": 2.0, "eps": 1e-5, "gamma": rng.standard_normal(gamma_shape) + 1.0,
              "beta": rng.standard_normal(gamma_shape)}.items()]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", *extra_outputs)]
    graph = helper.make_graph(nodes, "layernorm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _fused(model):
    graph = import_model(model)
    constant_folding.run(graph)
    fired = layernorm_fusion.run(graph)
    graph.verify()
    return fired, [n for n in graph.nodes if n.kind != LayerKind.IDENTITY]


@pytest.mark.parametrize("square,divide,affine", [("pow", "div", True), ("mul", "div", True),
                                                  ("pow", "recip", True), ("pow", "div", False)])
def test_written_out_layer_norm_becomes_one_normalization(square, divide, affine):
    model = _model(_layer_norm_nodes(square, divide, affine))
    fired, nodes = _fused(model)
    assert fired == 1
    (node,) = nodes
    assert node.kind == LayerKind.NORMALIZATION and node.attrs["axes"] == [2]
    assert node.attrs["epsilon"] == pytest.approx(1e-5) and len(node.inputs) == (3 if affine else 1)
    assert_matches_ort(model)


def test_two_trailing_axes():
    model = _model(_layer_norm_nodes(axes=(-2, -1)), gamma_shape=(7, 48))
    fired, nodes = _fused(model)
    assert fired == 1 and nodes[0].attrs["axes"] == [1, 2]
    assert_matches_ort(model)


def test_inspect_shows_one_normalization_layer():
    plan = edgert.build(_model(_layer_norm_nodes()))
    (layer,) = plan.layers
    assert layer["kind"] == "Normalization" and len(layer["origin"]) == 9


def test_different_axes_do_not_fuse():
    model = _model(_layer_norm_nodes(axes=(-1,), second_axes=(1,)))
    fired, _ = _fused(model)
    assert fired == 0
    assert_matches_ort(model)


def test_gamma_along_another_axis_stays_separate():
    model = _model(_layer_norm_nodes(), gamma_shape=(7, 1))
    fired, nodes = _fused(model)
    assert fired == 1
    assert [n.kind for n in nodes] == [LayerKind.NORMALIZATION, LayerKind.ELEMENTWISE, LayerKind.ELEMENTWISE]
    assert len(nodes[0].inputs) == 1
    assert_matches_ort(model)


def test_centered_value_read_elsewhere_does_not_fuse():
    model = _model(_layer_norm_nodes(), extra_outputs=("d",))
    fired, _ = _fused(model)
    assert fired == 0
    assert_matches_ort(model)
