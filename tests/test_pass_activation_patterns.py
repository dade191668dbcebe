"""activation_patterns: written-out activations (exporter style, built with onnx.helper) → one Activation."""

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.ir.kinds import LayerKind
from edgert.onnx.importer import import_model
from edgert.passes import activation_patterns, constant_folding
from helpers import assert_matches_ort

SHAPE = [2, 16, 9, 9]


def _model(nodes, constants, opset=13, extra_inputs=()):
    inits = [numpy_helper.from_array(np.array(v, np.float32), name) for name, v in constants.items()]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPE) for n in ("x", *extra_inputs)]
    graph = helper.make_graph(nodes, "pattern", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _rewritten(model):
    graph = import_model(model)
    constant_folding.run(graph)
    fired = activation_patterns.run(graph)
    graph.verify()
    return fired, graph


N = helper.make_node
PATTERNS = {
    "silu": ([N("Sigmoid", ["x"], ["s"]), N("Mul", ["x", "s"], ["y"])], {}, "swish"),
    "silu_swapped": ([N("Sigmoid", ["x"], ["s"]), N("Mul", ["s", "x"], ["y"])], {}, "swish"),
    "hardswish_paddle": ([N("HardSigmoid", ["x"], ["h"], alpha=1.0 / 6, beta=0.5), N("Mul", ["x", "h"], ["y"])], {},
                         "hard_swish"),
    "hardswish_relu6": ([N("Add", ["x", "three"], ["a"]), N("Clip", ["a", "zero", "six"], ["c"]),
                         N("Mul", ["x", "c"], ["m"]), N("Div", ["m", "six"], ["y"])],
                        {"three": 3.0, "zero": 0.0, "six": 6.0}, "hard_swish"),
    "hardsigmoid_relu6": ([N("Add", ["x", "three"], ["a"]), N("Clip", ["a", "zero", "six"], ["c"]),
                           N("Mul", ["c", "sixth"], ["y"])], {"three": 3.0, "zero": 0.0, "six": 6.0, "sixth": 1 / 6},
                          "hard_sigmoid"),
    "gelu_erf_div": ([N("Div", ["x", "sqrt2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["a"]),
                      N("Mul", ["x", "a"], ["m"]), N("Mul", ["m", "half"], ["y"])],
                     {"sqrt2": math.sqrt(2), "one": 1.0, "half": 0.5}, "gelu_erf"),
    "gelu_erf_mul_half_first": ([N("Mul", ["x", "half"], ["h"]), N("Mul", ["x", "rsqrt2"], ["d"]),
                                 N("Erf", ["d"], ["e"]), N("Add", ["one", "e"], ["a"]), N("Mul", ["h", "a"], ["y"])],
                                {"rsqrt2": 1 / math.sqrt(2), "one": 1.0, "half": 0.5}, "gelu_erf"),
    "gelu_tanh": ([N("Pow", ["x", "three"], ["p"]), N("Mul", ["p", "k"], ["q"]), N("Add", ["x", "q"], ["r"]),
                   N("Mul", ["r", "c"], ["s"]), N("Tanh", ["s"], ["t"]), N("Add", ["t", "one"], ["u"]),
                   N("Mul", ["x", "half"], ["h"]), N("Mul", ["h", "u"], ["y"])],
                  {"three": 3.0, "k": 0.044715, "c": math.sqrt(2 / math.pi), "one": 1.0, "half": 0.5}, "gelu_tanh"),
    "mish": ([N("Softplus", ["x"], ["s"]), N("Tanh", ["s"], ["t"]), N("Mul", ["x", "t"], ["y"])], {}, "mish"),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_written_out_activation_becomes_one_layer(name):
    nodes, constants, kind = PATTERNS[name]
    model = _model(nodes, constants)
    fired, graph = _rewritten(model)
    assert fired == 1
    (node,) = graph.nodes
    assert node.kind == LayerKind.ACTIVATION and node.attrs["type"] == kind
    assert len(node.origin) == len(nodes)
    assert_matches_ort(model)


def test_conv_absorbs_a_recognized_hardswish():
    rng = np.random.default_rng()
    nodes = [N("Conv", ["input", "w"], ["x"], pads=[1, 1, 1, 1]),
             N("HardSigmoid", ["x"], ["h"], alpha=1.0 / 6, beta=0.5), N("Mul", ["x", "h"], ["y"])]
    graph = helper.make_graph(nodes, "conv_hardswish", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                      [2, 8, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)],
                              [numpy_helper.from_array(rng.standard_normal((16, 8, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    plan = edgert.build(model)
    (layer,) = plan.layers
    assert layer["kind"] == "Convolution" and layer["attrs"]["epilogue"][-1]["type"] == "hard_swish"
    assert_matches_ort(model)


NOT_ACTIVATIONS = {
    # quick GELU x·sigmoid(1.702x) is not one of the targets
    "quick_gelu": ([N("Mul", ["x", "k"], ["a"]), N("Sigmoid", ["a"], ["s"]), N("Mul", ["x", "s"], ["y"])],
                   {"k": 1.702}, ()),
    # the sigmoid of another tensor
    "gated": ([N("Sigmoid", ["z"], ["s"]), N("Mul", ["x", "s"], ["y"])], {}, ("z",)),
    # a per-channel (non-scalar) constant inside
    "per_channel": ([N("Sigmoid", ["x"], ["s"]), N("Mul", ["s", "w"], ["t"]), N("Mul", ["x", "t"], ["y"])],
                    {"w": np.linspace(0.5, 2, 16).reshape(16, 1, 1)}, ()),
    # hard swish with the wrong offset
    "shifted": ([N("Add", ["x", "two"], ["a"]), N("Clip", ["a", "zero", "six"], ["c"]), N("Mul", ["x", "c"], ["m"]),
                 N("Div", ["m", "six"], ["y"])], {"two": 2.0, "zero": 0.0, "six": 6.0}, ()),
}


@pytest.mark.parametrize("name", sorted(NOT_ACTIVATIONS))
def test_other_functions_are_left_alone(name):
    nodes, constants, extra = NOT_ACTIVATIONS[name]
    model = _model(nodes, constants, extra_inputs=extra)
    fired, graph = _rewritten(model)
    targets = {kind.value for kind, _, _ in activation_patterns.TARGETS}
    assert fired == 0 and len(graph.nodes) == len(nodes)
    assert not any(n.kind == LayerKind.ACTIVATION and n.attrs["type"] in targets for n in graph.nodes)
    assert_matches_ort(model)


def test_intermediate_read_elsewhere_is_not_fused():
    nodes = [N("Sigmoid", ["x"], ["s"]), N("Mul", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "silu_shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPE) for n in ("y", "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fired, _ = _rewritten(model)
    assert fired == 0
    assert_matches_ort(model)


def test_float64_evaluation_matches_the_formulas():
    computed = activation_patterns._EXPECTED[0][2]
    assert np.allclose(computed, activation_patterns.SAMPLES / (1 + np.exp(-activation_patterns.SAMPLES)))
    onnx.checker.check_model(_model(*PATTERNS["gelu_tanh"][:2]))


def test_gelu_after_a_bias_add_is_found():
    """x is itself computed by a per-element layer (MatMul + bias, then GELU written out)."""
    rng = np.random.default_rng()
    nodes = [N("MatMul", ["input", "w"], ["mm"]), N("Add", ["mm", "bias"], ["x"])] + PATTERNS["gelu_erf_div"][0]
    constants = dict(PATTERNS["gelu_erf_div"][1])
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in constants.items()]
    inits += [numpy_helper.from_array(rng.standard_normal((32, 9)).astype(np.float32), "w"),
              numpy_helper.from_array(rng.standard_normal(9).astype(np.float32), "bias")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 16, 9, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    plan = edgert.build(model)
    (layer,) = plan.layers
    assert layer["kind"] == "MatrixMultiply" and layer["attrs"]["epilogue"][-1]["type"] == "gelu_erf"
    assert_matches_ort(model)
