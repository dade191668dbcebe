"""benchmarks/corpus.py's harness without torch: the fp16 ideal (benchmarks/corpus_fp16.py), the verdicts of
the numerics contract, a model's run on the CPU in fp32 and fp16 from an exported and from a packed cache,
and the image-like data of benchmarks/corpus_calibrate.py. Models built with onnx.helper."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import corpus  # noqa: E402
import corpus_calibrate  # noqa: E402
import corpus_fp16  # noqa: E402
import corpus_models  # noqa: E402
import corpus_pack  # noqa: E402


def mlp(w1_scale: float = 0.2, seed: int = 0) -> onnx.ModelProto:
    """MatMul → Add → Relu → MatMul → Softmax (two outputs: the logits and the probabilities)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w1", rng.standard_normal((64, 96)) * w1_scale), ("b1", rng.standard_normal(96) * 0.1),
        ("w2", rng.standard_normal((96, 10)) * 0.1)]]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [8, 10]),
                               helper.make_tensor_value_info("probs", TensorProto.FLOAT, [8, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def half(a):
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def test_fp16_ideal_rounds_weights_inputs_and_activations_but_not_outputs():
    model = mlp()
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    ideal = corpus_fp16.fp16_ideal_outputs(model, {"x": x})
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    h = half(half(x) @ half(w["w1"]))
    r = half(np.maximum(half(h + half(w["b1"])), 0))
    logits = r @ half(w["w2"])                        # a graph output: not rounded
    np.testing.assert_allclose(ideal["logits"], logits, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(ideal["logits"], half(ideal["logits"]))
    exact = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = dict(zip(["logits", "probs"], exact.run(None, {"x": x})))
    error = corpus.worst(corpus.compare_outputs(ideal, reference), "normwise")
    assert 1e-5 < error < 1e-2                        # fp16's rounding, well within the contract here


def test_fp16_ideal_overflows_where_fp16_does():
    model = mlp(w1_scale=3e4)                         # hidden activations far beyond fp16's 65504
    x = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    ideal = corpus_fp16.fp16_ideal_outputs(model, {"x": x})
    assert not np.all(np.isfinite(ideal["logits"]))


@pytest.mark.parametrize("precision, normwise, ideal, expected", [
    ("fp16", 3e-2, 2.3e-2, "beyond fp16 (ideal 2.3e-02)"),
    ("fp16", 1.02e-2, 9.9e-3, "beyond fp16 (ideal 9.9e-03)"),   # fp16 itself is at the bound
    ("fp16", 5e-2, 2.3e-2, "mismatch (ideal 2.3e-02)"),         # more than NEAR_IDEAL times the ideal
    ("fp16", 5e-2, 1e-3, "mismatch (ideal 1.0e-03)"),
    ("fp16", float("inf"), float("inf"), "beyond fp16 (ideal inf)"),
    ("fp32", 2e-5, 1.5e-5, "beyond fp32 (ideal 1.5e-05)"),
    ("fp32", 2e-5, None, "mismatch"),
])
def test_beyond_verdict(precision, normwise, ideal, expected):
    bound = corpus.TOLERANCE["cpu"][precision]
    assert corpus.beyond_verdict(precision, normwise, ideal, bound) == expected


def test_precision_results_on_the_cpu_carry_the_fp16_ideal():
    model = mlp()
    feeds = {"x": np.random.default_rng(3).standard_normal((8, 64)).astype(np.float32)}
    reference = corpus.onnxruntime_outputs(model.SerializeToString(), feeds)
    fp32 = corpus.precision_result(model, feeds, reference, "cpu", "fp32", None, False)
    fp16 = corpus.precision_result(model, feeds, reference, "cpu", "fp16", None, False)
    assert fp32["status"] == "ok" and "ideal_normwise" not in fp32
    assert fp16["status"] == "ok", fp16
    assert 0 < fp16["ideal_normwise"] < 1e-2
    # edgert keeps the softmax and the outputs in fp32 like the ideal: its error stays near the ideal's
    assert corpus.worst(fp16["errors"], "normwise") < corpus.NEAR_IDEAL * fp16["ideal_normwise"]
    overflow = mlp(w1_scale=3e4)
    reference = corpus.onnxruntime_outputs(overflow.SerializeToString(), feeds)
    beyond = corpus.precision_result(overflow, feeds, reference, "cpu", "fp16", None, False)
    assert beyond["status"] == "beyond fp16 (ideal inf)", beyond


@pytest.fixture
def helper_corpus(monkeypatch, tmp_path):
    """A corpus model written by onnx.helper (exporter "helper", no package needed), cached under tmp_path."""
    monkeypatch.setitem(corpus_models.EXPORTER_PACKAGES, "helper", ())
    model = mlp()

    def export(path):
        onnx.save(model, path)
    spec = corpus_models.CorpusModel("helper_mlp", "helper", "custom", export,
                                     lambda rng: {"x": rng.standard_normal((8, 64)).astype(np.float32)})
    monkeypatch.setitem(corpus_models.CORPUS, "helper_mlp", spec)
    return tmp_path


def test_run_model_exports_once_and_judges_each_precision(helper_corpus):
    cache = str(helper_corpus / "cache")
    row = corpus.run_model("helper_mlp", cache, "cpu", ("fp32", "fp16"))
    assert os.path.exists(os.path.join(cache, "helper_mlp.onnx"))
    assert row["status"] == "fp32: ok; fp16: ok", row
    assert row["nodes"] == 5 and row["opset"] == 17
    header, body = corpus.precision_table([row], ["fp32", "fp16"])
    assert header[-2:] == ["fp16 ideal", "fp16 status"] and body[0][-1] == "ok"
    assert float(body[0][-2]) == pytest.approx(row["fp16"]["ideal_normwise"], rel=0.06)
    flat = corpus.run_model("helper_mlp", cache, "cpu", ("fp32",))
    assert flat["status"] == "ok" and flat["layers"] >= 1


def test_run_model_reads_a_packed_cache(helper_corpus, capsys):
    cache, packed = str(helper_corpus / "cache"), str(helper_corpus / "packed")
    corpus.run_model("helper_mlp", cache)
    assert corpus_pack.main(["--cache", cache, "--out", packed, "--only", "helper_mlp", "--min-elements", "512"]) == 0
    packed_model = onnx.load(os.path.join(packed, "helper_mlp.onnx"))
    assert not {t.name: t for t in packed_model.graph.initializer}["w1"].raw_data
    row = corpus.run_model("helper_mlp", packed, "cpu", ("fp32", "fp16"))
    assert row["status"] == "fp32: ok; fp16: ok", row
    assert corpus_pack.main(["--cache", cache, "--out", packed, "--only", "nonexistent"]) == 2
    assert "not in" in capsys.readouterr().err


def test_smooth_images_are_normalised_and_reproducible():
    shape = (2, 3, 64, 48)
    a = corpus_calibrate.smooth_images(np.random.default_rng(0), shape)
    b = corpus_calibrate.smooth_images(np.random.default_rng(0), shape)
    np.testing.assert_array_equal(a, b)
    assert a.shape == shape and a.dtype == np.float32
    np.testing.assert_allclose(a.mean(axis=(2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=(2, 3)), 1, atol=1e-4)
    # smooth: neighbouring pixels correlate (white noise would not)
    assert np.corrcoef(a[..., :-1].ravel(), a[..., 1:].ravel())[0, 1] > 0.8
    unit = corpus_calibrate.smooth_images(np.random.default_rng(0), shape, unit_range=True)
    assert unit.min() >= 0 and unit.max() <= 1 and 0.4 < unit.mean() < 0.6
