"""benchmarks/corpus_pack.py: packing the corpus (large weights dropped, per-channel statistics kept) and
unpacking it (weights redrawn, layers re-centred with onnxruntime) reproduces a model's ranges layer by layer.
Models built with onnx.helper (no torch here)."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import corpus_pack  # noqa: E402


def folded_convnet(rng: np.random.Generator, channels: int = 32) -> onnx.ModelProto:
    """Conv → Relu → Conv (no bias) → BatchNormalization → Relu → GlobalAveragePool → Flatten → Gemm, whose
    conv weights carry per-channel scales spread over six decades and biases that cancel each filter's mean
    output, as BatchNorm folding leaves them in a real export."""
    w1 = rng.standard_normal((channels, 3, 3, 3)) * 10.0 ** rng.uniform(-3, 3, (channels, 1, 1, 1))
    b1 = -0.5 * w1.sum(axis=(1, 2, 3))      # cancels each filter's mean on inputs of mean 0.5 (``images``)
    w2 = rng.standard_normal((channels, channels, 3, 3)) * 10.0 ** rng.uniform(-3, 3, (channels, 1, 1, 1))
    gemm = rng.standard_normal((10, channels)) * 0.1
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w1", w1), ("b1", b1), ("w2", w2), ("gemm_w", gemm), ("gemm_b", np.zeros(10)),
        ("bn_scale", np.ones(channels)), ("bn_bias", np.zeros(channels)),
        ("bn_mean", rng.standard_normal(channels)), ("bn_var", rng.uniform(0.5, 2, channels))]]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n2"]),
             helper.make_node("Relu", ["n2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "gemm_w", "gemm_b"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "folded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def images(rng: np.random.Generator) -> dict:
    return {"x": rng.random((4, 3, 16, 16), dtype=np.float32)}


def evaluate(model: onnx.ModelProto, feeds: dict, names: list[str]) -> dict:
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names
                              if n not in {o.name for o in probe.graph.output})
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, feeds)))


def repack(model: onnx.ModelProto, feeds: dict | None, name: str = "folded") -> onnx.ModelProto:
    packed = corpus_pack.pack_model(onnx.ModelProto.FromString(model.SerializeToString()), 64, feeds)
    return corpus_pack.unpack_model(onnx.ModelProto.FromString(packed.SerializeToString()), name, feeds)


def test_pack_drops_large_weights_and_keeps_the_rest_exactly():
    rng = np.random.default_rng(1)
    model = folded_convnet(rng)
    feeds = images(rng)
    packed = corpus_pack.pack_model(onnx.ModelProto.FromString(model.SerializeToString()), 64, feeds)
    tensors = {t.name: t for t in packed.graph.initializer}
    for name in ("w1", "w2", "gemm_w"):          # weight inputs of 64 elements or more: no data
        assert not tensors[name].raw_data and not tensors[name].float_data
        assert list(tensors[name].dims) == list({t.name: t for t in model.graph.initializer}[name].dims)
    for tensor in model.graph.initializer:       # biases and BatchNorm statistics: exact
        if tensor.name not in ("w1", "w2", "gemm_w"):
            np.testing.assert_array_equal(numpy_helper.to_array(tensors[tensor.name]), numpy_helper.to_array(tensor))
    assert len(packed.SerializeToString()) < len(model.SerializeToString()) / 4


def test_unpacked_weights_have_each_channels_statistics_and_the_same_draw_everywhere():
    rng = np.random.default_rng(2)
    model = folded_convnet(rng, channels=16)
    original = numpy_helper.to_array({t.name: t for t in model.graph.initializer}["w2"]).astype(np.float64)
    first, second = (repack(model, None) for _ in range(2))
    drawn = numpy_helper.to_array({t.name: t for t in first.graph.initializer}["w2"]).astype(np.float64)
    np.testing.assert_array_equal(drawn, numpy_helper.to_array({t.name: t for t in second.graph.initializer}["w2"]))
    assert not np.array_equal(drawn, original)
    ratio = drawn.reshape(16, -1).std(axis=1) / original.reshape(16, -1).std(axis=1)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio      # 144 draws per filter, scales over six decades
    assert {p.key for p in first.metadata_props}.isdisjoint({corpus_pack.METADATA_KEY})


def test_recentring_restores_each_layers_channel_statistics():
    rng = np.random.default_rng(3)
    model = folded_convnet(rng)
    feeds = images(rng)
    names = ["c1", "c2", "y"]
    before = evaluate(model, feeds, names)
    after = evaluate(repack(model, feeds), feeds, names)
    for name in ("c1", "c2"):                # re-centred: per channel mean and deviation as exported
        np.testing.assert_allclose(after[name].mean(axis=(0, 2, 3)), before[name].mean(axis=(0, 2, 3)),
                                   atol=1e-3 * before[name].std())
        np.testing.assert_allclose(after[name].std(axis=(0, 2, 3)), before[name].std(axis=(0, 2, 3)), rtol=1e-3)
    # the head (4 values per channel, fewer than MIN_SAMPLES): shifted only, its channel means as exported
    np.testing.assert_allclose(after["y"].mean(axis=0), before["y"].mean(axis=0), atol=1e-4 * np.abs(before["y"]).max())
    assert 0.2 < after["y"].std() / before["y"].std() < 5
    # without re-centring the folded biases no longer cancel their filters' means: the first layer is off
    plain = evaluate(repack(model, None), feeds, names)
    off = np.abs(plain["c1"].mean(axis=(0, 2, 3)) - before["c1"].mean(axis=(0, 2, 3))) / before["c1"].std(axis=(0, 2, 3))
    assert off.max() > 0.05


def test_a_conv_without_bias_gets_one_to_carry_the_shift():
    rng = np.random.default_rng(4)
    model = folded_convnet(rng)
    feeds = images(rng)
    unpacked = repack(model, feeds)
    conv2 = [n for n in unpacked.graph.node if n.op_type == "Conv"][1]
    assert len(conv2.input) == 3 and conv2.input[2] in {t.name for t in unpacked.graph.initializer}
    onnx.checker.check_model(unpacked)


def test_unpacking_needs_the_feeds_it_was_packed_with():
    rng = np.random.default_rng(5)
    model = folded_convnet(rng)
    feeds = images(rng)
    packed = corpus_pack.pack_model(onnx.ModelProto.FromString(model.SerializeToString()), 64, feeds)
    with pytest.raises(ValueError, match="re-centres its layers on the feeds it was packed with"):
        corpus_pack.unpack_model(onnx.ModelProto.FromString(packed.SerializeToString()), "folded", None)
    other = {"x": feeds["x"] + 1}
    with pytest.raises(ValueError, match="not the ones it was packed with"):
        corpus_pack.unpack_model(onnx.ModelProto.FromString(packed.SerializeToString()), "folded", other)


def test_a_model_that_is_not_packed_loads_as_it_is(tmp_path):
    model = folded_convnet(np.random.default_rng(6))
    path = tmp_path / "plain.onnx"
    onnx.save(model, path)
    assert corpus_pack.load(str(path)).SerializeToString() == model.SerializeToString()


def test_recurrent_and_embedding_weights_keep_per_row_and_per_column_statistics():
    rng = np.random.default_rng(7)
    hidden, inputs = 16, 8
    w = rng.standard_normal((1, 4 * hidden, inputs)) * np.repeat([0.01, 1.0, 10.0, 0.1], hidden)[None, :, None]
    table = rng.standard_normal((100, inputs)) * 10.0 ** np.arange(-2, 6)[None, :]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("W", w), ("R", rng.standard_normal((1, 4 * hidden, hidden)) * 0.1), ("table", table)]]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"]),
             helper.make_node("LSTM", ["emb", "W", "R"], ["y"], hidden_size=hidden)]
    graph = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("ids", TensorProto.INT64, [5, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    unpacked = repack(model, None, "rnn")
    drawn = {t.name: numpy_helper.to_array(t) for t in unpacked.graph.initializer}
    gate_std = drawn["W"].reshape(4, hidden * inputs).std(axis=1)
    np.testing.assert_allclose(gate_std, [0.01, 1.0, 10.0, 0.1], rtol=0.25)
    np.testing.assert_allclose(drawn["table"].std(axis=0), table.std(axis=0), rtol=0.25)


def test_layers_sharing_a_bias_get_their_own_and_single_values_are_shifted_to_the_exported_ones():
    """Two heads whose equal biases the exporter shares (one directly, one through an Identity node, as the
    TorchScript exporter writes them); one image: each head is shifted (fewer than MIN_SAMPLES values per
    channel) to its exported outputs."""
    rng = np.random.default_rng(8)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("wa", rng.standard_normal((40, 32))), ("wb", rng.standard_normal((40, 32)) * 3), ("bias", np.zeros(40))]]
    nodes = [helper.make_node("Identity", ["bias"], ["bias_copy"]),
             helper.make_node("Gemm", ["x", "wa", "bias"], ["a"], transB=1),
             helper.make_node("Gemm", ["x", "wb", "bias_copy"], ["b"], transB=1),
             helper.make_node("Add", ["a", "b"], ["y"])]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rng.random((1, 32), dtype=np.float32)}
    unpacked = repack(model, feeds, "heads")
    before, after = evaluate(model, feeds, ["a", "b", "y"]), evaluate(unpacked, feeds, ["a", "b", "y"])
    for name in ("a", "b", "y"):
        np.testing.assert_allclose(after[name], before[name], atol=1e-5 * np.abs(before[name]).max())
    gemms = [n for n in unpacked.graph.node if n.op_type == "Gemm"]
    assert len({n.input[2] for n in gemms} | {"bias"}) == 3     # each its own bias, the shared one untouched
    np.testing.assert_array_equal(numpy_helper.to_array({t.name: t for t in unpacked.graph.initializer}["bias"]), 0)
