"""Silent fallbacks say so (issue 18): int8 without scales, a DLA core with nothing on it, non-finite outputs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

import pytest

from edgert.tools.cli import main


@pytest.fixture
def run_cli(capsys):
    """The CLI in this process (its warnings go to stderr as in a shell): (status, stdout, stderr)."""
    def run(*argv):
        capsys.readouterr()
        status = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err
    return run


def _conv_model(path, scale=1.0):
    rng = np.random.default_rng()
    weight = onnx.numpy_helper.from_array((scale * rng.standard_normal((8, 3, 3, 3))).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    weight2 = onnx.numpy_helper.from_array((scale * rng.standard_normal((4, 8, 3, 3))).astype(np.float32), "w2")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
                              [weight, weight2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("edgert: warning: ")]


def test_int8_without_scales_warns_and_names_layers(tmp_path, run_cli):
    _conv_model(tmp_path / "m.onnx")
    status, out, err = run_cli("build", tmp_path / "m.onnx", "-o", tmp_path / "p.plan", "--precision", "int8")
    assert status == 0, err
    (warning,) = _warnings(err)
    assert "fell back to fp16" in warning and "conv" in warning and "--calib" in warning
    np.save(tmp_path / "batch.npy", np.random.default_rng().standard_normal((4, 3, 16, 16)).astype(np.float32))
    (tmp_path / "calib").mkdir()
    np.save(tmp_path / "calib" / "b.npy", np.load(tmp_path / "batch.npy"))
    status, out, err = run_cli("build", tmp_path / "m.onnx", "-o", tmp_path / "p.plan", "--precision", "int8",
                               "--calib", tmp_path / "calib")
    assert status == 0 and _warnings(err) == [], err   # calibrated: nothing falls back for want of scales
    assert "calibration" not in err   # no progress on a pipe unless asked
    status, out, err = run_cli("build", tmp_path / "m.onnx", "-o", tmp_path / "p.plan", "--precision", "int8",
                               "--calib", tmp_path / "calib", "--progress")
    assert status == 0 and "calibration: histograms [" in err and " 4/4 " in err, err


def test_dla_core_without_a_dla_precision_warns(tmp_path, run_cli):
    _conv_model(tmp_path / "m.onnx")
    common = ["--target", "jetson-agx-orin", "--dla-core", "0", "--gpu-fallback"]
    for tool in (["build", tmp_path / "m.onnx", "-o", tmp_path / "p.plan"], ["partition", tmp_path / "m.onnx"]):
        status, out, err = run_cli(*tool, *common)
        assert status == 0, err
        (warning,) = _warnings(err)
        assert "no layer on the DLA" in warning and "fp16" in warning
        status, out, err = run_cli(*tool, *common, "--precision", "fp16")
        assert status == 0 and _warnings(err) == [], err


def test_partition_and_build_agree_on_the_default_precision(tmp_path, run_cli):
    _conv_model(tmp_path / "m.onnx")
    common = ["--target", "jetson-agx-orin", "--dla-core", "0", "--gpu-fallback", "--json"]
    status, out, err = run_cli("partition", tmp_path / "m.onnx", *common)
    assert status == 0 and '"precision": "fp32"' in out, err


def test_run_warns_on_non_finite_outputs_and_names_the_layer(tmp_path, run_cli):
    _conv_model(tmp_path / "m.onnx", scale=1e3)   # fp16 overflows: activations reach ~1e7 before conv2
    plan = tmp_path / "p.plan"
    assert run_cli("build", tmp_path / "m.onnx", "-o", plan, "--precision", "fp16", "--target", "jetson-agx-orin",
                   "--dla-core", "0", "--gpu-fallback")[0] == 0
    status, out, err = run_cli("run", plan)
    (warning,) = _warnings(err)
    assert status == 0 and "non-finite outputs" in warning and "--check-finite" in warning, err
    status, out, err = run_cli("run", plan, "--check-finite")
    (warning,) = _warnings(err)
    assert status == 0 and "first to produce NaN/Inf" in warning, err
    layer = warning.split("layer '")[1].split("'")[0]
    assert layer in ("conv", "conv2") or "conv" in layer
    fine = tmp_path / "fine.plan"
    assert run_cli("build", tmp_path / "m.onnx", "-o", fine)[0] == 0   # fp32 on the CPU: finite, no warning
    status, out, err = run_cli("run", fine, "--check-finite")
    assert status == 0 and _warnings(err) == [], err
