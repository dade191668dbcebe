"""Fused layer groups of the CPU runtime (kernels/cpu/fused.py, native_fused.c): squeeze-excite blocks as MobileNetV3
and LCNet export them, fused and checked against onnxruntime; the groups a context reports; every tensor of the
block holding the same values as unfused; blocks that must not fuse; the native call's own argument checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.kernels.cpu import fused, native
from helpers import normwise_error, ort_run

pytestmark = pytest.mark.skipif(native._native is None, reason="the native module is not built")
rng = np.random.default_rng()


def squeeze_excite_model(channels=24, size=7, images=1, pool="GlobalAveragePool", gate="HardSigmoid",
                         swap=False, scale_output=False, bias=True):
    """x -> depthwise 3x3 -> squeeze-excite (pool -> 1x1 + Relu -> 1x1 + gate -> Mul) -> 1x1 conv -> y."""
    reduced = max(8, channels // 4)
    weights = {"w_dw": rng.standard_normal((channels, 1, 3, 3)) * 0.3,
               "w1": rng.standard_normal((reduced, channels, 1, 1)) / np.sqrt(channels),
               "w2": rng.standard_normal((channels, reduced, 1, 1)) / np.sqrt(reduced),
               "w_out": rng.standard_normal((16, channels, 1, 1)) / np.sqrt(channels)}
    if bias:
        weights |= {"b1": rng.standard_normal(reduced) * 0.1, "b2": rng.standard_normal(channels) * 0.1}
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    if pool == "ReduceMean":
        initializers.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
        pooling = helper.make_node("ReduceMean", ["t", "axes"], ["pooled"], keepdims=1)
    else:
        pooling = helper.make_node("GlobalAveragePool", ["t"], ["pooled"])
    gate_node = helper.make_node(gate, ["e"], ["s"], **({"alpha": 1 / 6} if gate == "HardSigmoid" else {}))
    nodes = [helper.make_node("Conv", ["x", "w_dw"], ["t"], group=channels, pads=[1, 1, 1, 1]),
             pooling,
             helper.make_node("Conv", ["pooled", "w1"] + (["b1"] if bias else []), ["r"]),
             helper.make_node("Relu", ["r"], ["h"]),
             helper.make_node("Conv", ["h", "w2"] + (["b2"] if bias else []), ["e"]),
             gate_node,
             helper.make_node("Mul", ["s", "t"] if swap else ["t", "s"], ["m"]),
             helper.make_node("Conv", ["m", "w_out"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if scale_output:   # the gate's output is a graph output too: the fused call must still write it
        outputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [images, channels, size, size])], outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def run_both(model, monkeypatch):
    """(outputs fused, outputs unfused, the fused context) of one engine, and onnxruntime's outputs."""
    engine = edgert.load(edgert.build(model).to_bytes())
    feeds = {"x": rng.standard_normal(engine.inputs[0].shape).astype(np.float32)}
    context = engine.create_execution_context()
    monkeypatch.setenv(fused.ENV_SWITCH, "0")
    plain = engine.create_execution_context()
    monkeypatch.delenv(fused.ENV_SWITCH)
    assert plain.fused_layers() == []
    return context.execute(feeds), plain.execute(feeds), context, ort_run(model, feeds)


@pytest.mark.parametrize("options", [
    {}, {"pool": "ReduceMean"}, {"gate": "Sigmoid"}, {"swap": True}, {"images": 2}, {"bias": False},
    {"channels": 96, "size": 14}, {"channels": 576, "size": 7}, {"channels": 16, "size": 56},
    {"size": 1},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_squeeze_excite_fused_matches_onnxruntime(options, monkeypatch):
    model = squeeze_excite_model(**options)
    ours, plain, context, want = run_both(model, monkeypatch)
    groups = context.fused_layers()
    assert [kind for kind, _ in groups] == ["squeeze-excite"]
    assert len(groups[0][1]) == 4
    assert normwise_error(ours["y"], want["y"]) <= 1e-5
    assert normwise_error(plain["y"], want["y"]) <= 1e-5


def test_fused_block_writes_its_intermediate_tensors(monkeypatch):
    model = squeeze_excite_model(channels=40, size=14, scale_output=True)
    ours, plain, context, want = run_both(model, monkeypatch)
    assert len(context.fused_layers()) == 1
    for name in ("y", "s"):
        assert normwise_error(ours[name], want[name]) <= 1e-5, name
        assert normwise_error(ours[name], plain[name]) <= 1e-6, name


def test_execute_each_runs_the_layers_one_by_one(monkeypatch):
    model = squeeze_excite_model(channels=32)
    engine = edgert.load(edgert.build(model).to_bytes())
    context = engine.create_execution_context()
    feeds = {"x": rng.standard_normal(engine.inputs[0].shape).astype(np.float32)}
    seen = []
    each = context.execute_each(feeds, lambda name, outs: seen.append(name))
    fused_names = context.fused_layers()[0][1]
    assert set(fused_names) <= set(seen)   # the hooks see every layer of the group
    assert normwise_error(each["y"], context.execute(feeds)["y"]) <= 1e-6


def test_native_module_off_means_no_fusion(monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    model = squeeze_excite_model()
    engine = edgert.load(edgert.build(model).to_bytes())
    context = engine.create_execution_context()
    feeds = {"x": rng.standard_normal(engine.inputs[0].shape).astype(np.float32)}
    assert context.fused_layers() == []
    assert normwise_error(context.execute(feeds)["y"], ort_run(model, feeds)["y"]) <= 1e-5


def test_weights_given_at_run_time_are_not_fused(monkeypatch):
    """The transposed weights are derived once per engine: a 1x1 convolution whose weights are a graph input
    keeps its own kernel."""
    model = squeeze_excite_model()
    w1 = next(t for t in model.graph.initializer if t.name == "w1")
    model.graph.initializer.remove(w1)
    model.graph.input.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, list(w1.dims)))
    engine = edgert.load(edgert.build(model).to_bytes())
    context = engine.create_execution_context()
    feeds = {"x": rng.standard_normal(engine.inputs[0].shape).astype(np.float32),
             "w1": numpy_helper.to_array(w1)}
    assert context.fused_layers() == []
    assert normwise_error(context.execute(feeds)["y"], ort_run(model, feeds)["y"]) <= 1e-5


def test_a_multiply_by_something_else_is_not_fused(monkeypatch):
    """Mul(scale, other tensor) is no squeeze-excite block: the scale must multiply the pooled input itself."""
    model = squeeze_excite_model()
    graph = model.graph
    mul = next(n for n in graph.node if n.op_type == "Mul")
    graph.node.insert(list(graph.node).index(mul), helper.make_node("Neg", ["t"], ["t_neg"]))
    mul.input[:] = ["t_neg", "s"]
    model = onnx.shape_inference.infer_shapes(model)
    ours, plain, context, want = run_both(model, monkeypatch)
    assert context.fused_layers() == []
    assert normwise_error(ours["y"], want["y"]) <= 1e-5


def test_native_call_checks_its_buffers():
    from edgert.kernels.cpu import _native
    channels, reduced, positions = 8, 4, 9
    x = rng.standard_normal((channels, positions)).astype(np.float32)
    out = np.empty_like(x)
    pooled, hidden, scale = (np.empty(n, np.float32) for n in (channels, reduced, channels))
    w1, w2 = np.ones((channels, reduced), np.float32), np.ones((reduced, channels), np.float32)
    work = np.empty(2 * channels + reduced, np.float32)
    args = [x, out, pooled, hidden, scale, w1, None, w2, None, None, None, work, 1, channels, reduced]
    _native.squeeze_excite(*args)
    np.testing.assert_allclose(pooled, x.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out, x * (pooled.sum() * reduced), rtol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        _native.squeeze_excite(*args[:12], 1, channels + 1, reduced)
    with pytest.raises(ValueError, match="do not fit"):
        _native.squeeze_excite(*args[:11], work[:5], 1, channels, reduced)
    with pytest.raises(ValueError, match="apart"):   # work inside the input
        _native.squeeze_excite(*args[:11], x.reshape(-1)[:2 * channels + reduced], 1, channels, reduced)
    with pytest.raises(ValueError, match="apart"):   # output partly over the input
        wide = np.zeros(x.size + 4, np.float32)
        _native.squeeze_excite(wide[:x.size].reshape(x.shape), wide[4:].reshape(x.shape), *args[2:])
    with pytest.raises(ValueError, match="malformed"):
        _native.squeeze_excite(*args[:9], b"\x01\x02\x03", *args[10:])
