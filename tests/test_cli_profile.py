"""edgert bench --profile / --export-profile (measured per-layer times), the latency spread, and inspect's marks."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgert.tools.cli import main


def _model(path):
    """A heavy matrix product between two cheap layers, and a concat the memory plan elides."""
    weight = onnx.numpy_helper.from_array(np.random.default_rng().standard_normal((384, 384)).astype(np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="cheap_relu"),
             helper.make_node("MatMul", ["r", "w"], ["m"], name="heavy_matmul"),
             helper.make_node("Sigmoid", ["m"], ["s"], name="cheap_sigmoid"),
             helper.make_node("Concat", ["m", "s"], ["y"], name="joined", axis=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [384, 384])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [768, 384])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_profile_measures_each_layer_and_exports_trtexec_fields(tmp_path, capsys):
    _model(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan)]) == 0
    capsys.readouterr()
    exported = tmp_path / "profile.json"
    assert main(["bench", str(plan), "--iterations", "15", "--warmup", "2", "--profile", "--json",
                 "--export-profile", str(exported)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] and result["stdev_ms"] >= 0 <= result["iqr_ms"]
    layers = {layer["name"]: layer for layer in result["profile"]}
    assert set(layers) == {"cheap_relu", "heavy_matmul", "cheap_sigmoid"}   # the elided concat never runs
    assert max(layers, key=lambda name: layers[name]["medianMs"]) == "heavy_matmul"
    assert abs(sum(layer["percentage"] for layer in layers.values()) - 100.0) < 1e-6
    assert all(layer["timeMs"] >= layer["medianMs"] > 0 for layer in layers.values())
    with open(exported) as f:
        data = json.load(f)
    assert data[0] == {"count": 15} and [row["name"] for row in data[1:]] == list(layers)
    assert set(data[1]) == {"name", "timeMs", "averageMs", "medianMs", "percentage"}
    assert main(["bench", str(plan), "--iterations", "2", "--warmup", "0", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "per-layer profile (3 layers run" in out and "heavy_matmul" in out and "p95" in out and "IQR" in out
    assert main(["bench", str(plan), "--iterations", "1", "--duration", "0.3", "--warmup-ms", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["iterations"] > 1   # --duration kept it running
    assert main(["bench", str(plan), "--duration", "-1"]) == 2


def test_inspect_marks_free_layers_and_names_tensors(tmp_path, capsys):
    _model(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(plan), "--json"]) == 0
    layers = {layer["name"]: layer for layer in json.loads(capsys.readouterr().out)["layers"]}
    assert not layers["joined"]["runs"] and layers["heavy_matmul"]["runs"]
    assert main(["inspect", str(plan)]) == 0
    out = capsys.readouterr().out
    joined = next(line for line in out.splitlines() if " joined " in line)
    assert "free (elided" in joined and "x 384x384" in out and "1 free" in out


def test_memory_plot_marks_aliases_and_writes_the_image(tmp_path, capsys):
    import pytest
    pytest.importorskip("matplotlib")   # the edgert[plot] extra (in edgert[dev]); without it: test_cli_errors
    from edgert.tools.memory import _aliases

    tensors = [{"offset": 0, "bytes": 100, "first_step": 0, "last_step": 2, "pool": "cpu"},
               {"offset": 50, "bytes": 50, "first_step": 1, "last_step": 1, "pool": "cpu"},    # inside the first
               {"offset": 0, "bytes": 100, "first_step": 3, "last_step": 4, "pool": "cpu"},    # reuse, not alias
               {"offset": 0, "bytes": 100, "first_step": 0, "last_step": 2, "pool": "dla"}]    # another arena
    assert _aliases(tensors) == {0, 1}
    _model(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan)]) == 0
    for name in ("arena.png", "arena.svg"):
        assert main(["memory", str(plan), "--plot", str(tmp_path / name)]) == 0
        assert f"wrote {tmp_path / name}" in capsys.readouterr().out
    assert (tmp_path / "arena.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "arena.svg").read_text()
    assert "m.plan: arena" in svg and "lower bound" in svg and "alias" in svg and "heavy_matmul" in svg


@pytest.mark.gpu
def test_profile_on_cuda_times_each_layer_with_events(tmp_path, capsys):
    _model(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan), "--gpu-kernels"]) == 0
    capsys.readouterr()
    assert main(["bench", str(plan), "--device", "cuda", "--iterations", "20", "--warmup", "3", "--profile",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    layers = {layer["name"]: layer for layer in result["profile"]}
    assert "heavy_matmul" in layers and all(layer["medianMs"] > 0 for layer in layers.values())
    assert max(layers, key=lambda name: layers[name]["medianMs"]) == "heavy_matmul"
    assert abs(sum(layer["percentage"] for layer in layers.values()) - 100.0) < 1e-6
