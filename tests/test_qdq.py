"""Explicit quantization: QuantizeLinear / DequantizeLinear models in fp32 and int8 builds."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgert
from helpers import normwise_error


def ort_run(model, feeds):
    """onnxruntime without graph optimizations: its QDQ fusions (QLinearConv) would requantize in
    integer arithmetic, while the model itself defines float Quantize/Dequantize steps."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

RNG = np.random.default_rng()


def _qdq_model(scale=0.05):
    """x → Q/DQ → Conv(weights through Q/DQ) → Relu → Q/DQ → Conv → y, the way quantization tools export."""
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))

    const("s", np.float32(scale))
    const("zp", np.int8(0))
    for i, (cin, cout) in enumerate([(3, 8), (8, 4)]):
        w = (RNG.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32)
        w_scale = (np.abs(w).reshape(cout, -1).max(axis=1) / 127).astype(np.float32)
        const(f"w{i}", w)
        const(f"ws{i}", w_scale)
        const(f"wzp{i}", np.zeros(cout, np.int8))
        const(f"b{i}", (RNG.standard_normal(cout) * 0.1).astype(np.float32))
        nodes += [helper.make_node("QuantizeLinear", [f"w{i}", f"ws{i}", f"wzp{i}"], [f"wq{i}"], axis=0),
                  helper.make_node("DequantizeLinear", [f"wq{i}", f"ws{i}", f"wzp{i}"], [f"wd{i}"], axis=0)]
    nodes += [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
        helper.make_node("Conv", ["xd", "wd0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("QuantizeLinear", ["r0", "s", "zp"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s", "zp"], ["rd"]),
        helper.make_node("Conv", ["rd", "wd1", "b1"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_fp32_build_computes_exactly_what_the_qdq_model_defines():
    model = _qdq_model()
    x = RNG.uniform(-3, 3, (1, 3, 8, 8)).astype(np.float32)
    ours = edgert.load(edgert.build(model)).create_execution_context().execute({"x": x})["y"]
    assert normwise_error(ours, ort_run(model, {"x": x})["y"]) <= 1e-5


def test_int8_build_uses_the_models_scales_without_calibration():
    model = _qdq_model()
    plan = edgert.build(model, precision="int8")
    assert plan.header["passes"]["qdq_folding"] == 2
    kinds = [layer["kind"] for layer in plan.layers]
    assert "Quantize" not in kinds and "Dequantize" not in kinds
    first = next(layer for layer in plan.layers if layer["kind"] == "Convolution")
    assert first["precision"] == "int8" and first["attrs"]["int8"]["input_scales"][0] == np.float32(0.05)
    x = RNG.uniform(-3, 3, (1, 3, 8, 8)).astype(np.float32)
    ours = edgert.load(plan).create_execution_context().execute({"x": x})["y"]
    assert normwise_error(ours, ort_run(model, {"x": x})["y"]) <= 5e-2  # int8 vs fake-quant fp32
