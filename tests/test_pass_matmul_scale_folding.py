"""matmul_scale_folding: attention's Q·√s and Kᵀ·√s (onnx.helper, as SDPA exports) → one scale."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgert.ir.kinds import LayerKind
from edgert.onnx.importer import import_model
from edgert.passes import constant_folding, matmul_scale_folding
from helpers import assert_matches_ort

N = helper.make_node


def _attention(q_scale="Mul", k_scale="Mul", extra_outputs=(), k_factor="sk"):
    nodes = [N("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2])]
    nodes.append(N(q_scale, ["q", "sq"], ["qs"]) if q_scale else N("Identity", ["q"], ["qs"]))
    nodes.append(N(k_scale, ["kt", k_factor], ["ks"]) if k_scale else N("Identity", ["kt"], ["ks"]))
    nodes += [N("MatMul", ["qs", "ks"], ["scores"]), N("Softmax", ["scores"], ["p"], axis=-1),
              N("MatMul", ["p", "v"], ["y"])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 20, 16]) for n in "qkv"]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "sq"),
             numpy_helper.from_array(np.array(0.5, np.float32), "sk"),
             numpy_helper.from_array(np.linspace(0.1, 1, 20, dtype=np.float32), "sk_vec")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", *extra_outputs)]
    graph = helper.make_graph(nodes, "attention", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _folded(model):
    graph = import_model(model)
    constant_folding.run(graph)
    fired = matmul_scale_folding.run(graph)
    graph.verify()
    return fired, graph


@pytest.mark.parametrize("q_scale,k_scale", [("Mul", "Mul"), ("Div", "Mul"), ("Mul", "Div")])
def test_two_scales_become_one(q_scale, k_scale):
    model = _attention(q_scale, k_scale)
    fired, graph = _folded(model)
    assert fired == 1
    scales = [n for n in graph.nodes if n.kind == LayerKind.ELEMENTWISE]
    assert len(scales) == 1 and len(scales[0].origin) == 2
    assert_matches_ort(model)


@pytest.mark.parametrize("case", ["one_side", "read_elsewhere", "vector_factor"])
def test_does_not_fire(case):
    model = {"one_side": lambda: _attention(k_scale=None),
             "read_elsewhere": lambda: _attention(extra_outputs=("ks",)),
             "vector_factor": lambda: _attention(k_factor="sk_vec")}[case]()
    fired, _ = _folded(model)
    assert fired == 0
    assert_matches_ort(model)
