"""The edgert command line: build → run → inspect, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgert.tools.cli import main


def _model(path, dims=("N", 3)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    bias = onnx.numpy_helper.from_array(np.random.default_rng().standard_normal((1, 3)).astype(np.float32), "b")
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["t"], name="add"),
                               helper.make_node("Relu", ["t"], ["y"], name="relu")], "g", [x], [y], [bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return bias


def run_cli(*argv):
    """Run the CLI in a subprocess, as users do: (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", *map(str, argv)], capture_output=True,
                          text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_build_run_inspect(tmp_path, capsys):
    bias = onnx.numpy_helper.to_array(_model(tmp_path / "m.onnx"))
    plan = tmp_path / "m.plan"
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan), "--shape", "x=4x3"]) == 0
    x = np.random.default_rng().standard_normal((4, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", str(plan), "--inputs", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["y"], np.maximum(x + bias, 0), rtol=1e-6)
    assert main(["run", str(plan)]) == 0  # random inputs
    assert "y: float32 (4, 3)" in capsys.readouterr().out
    assert main(["inspect", str(plan), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [layer["kind"] for layer in info["layers"]] == ["PointWise"]  # Add + Relu fused
    assert info["layers"][0]["origin"] == ["add", "relu"]
    for layer in info["layers"]:
        assert {"name", "kind", "device", "precision", "inputs", "outputs"} <= set(layer)
        assert layer["outputs"][0]["shape"] == [4, 3]
    assert main(["inspect", str(plan)]) == 0
    assert "PointWise" in capsys.readouterr().out
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan), "--shape", "x=4x3", "--no-opt", "all"]) == 0
    assert main(["inspect", str(plan), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 2)[2])
    assert [layer["kind"] for layer in info["layers"]] == ["ElementWise", "Activation"]


@pytest.mark.parametrize("argv, expected", [
    (["build", "{tmp}/missing.onnx", "-o", "{tmp}/p.plan"], "not found"),
    (["build", "{tmp}/text.onnx", "-o", "{tmp}/p.plan"], "not an ONNX model"),
    (["build", "{tmp}/m.onnx", "-o", "{tmp}/p.plan"], "dynamic dims"),
    (["build", "{tmp}/m.onnx", "-o", "{tmp}/p.plan", "--shape", "x=4by3"], "integers separated"),
    (["build", "{tmp}/m.onnx", "-o", "{tmp}/p.plan", "--shape", "z=4x3"], "unknown input 'z'"),
    (["build", "{tmp}/m.onnx", "-o", "{tmp}/p.plan", "--shape", "x=4x3x2"], "rank"),
    (["run", "{tmp}/missing.plan"], "not found"),
    (["run", "{tmp}/text.onnx"], "not an edgert plan"),
    (["inspect", "{tmp}/text.onnx"], "not an edgert plan"),
    (["run", "{tmp}/good.plan", "--inputs", "{tmp}/wrong_name.npz"], "unknown input"),
    (["run", "{tmp}/good.plan", "--inputs", "{tmp}/wrong_shape.npz"], "expected shape"),
    (["run", "{tmp}/good.plan", "--inputs", "{tmp}/wrong_dtype.npz"], "expected dtype"),
    (["build"], "required"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, argv, expected):
    _model(tmp_path / "m.onnx")
    (tmp_path / "text.onnx").write_text("hello, not a model\n")
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "good.plan"), "--shape", "x=2x3"]) == 0
    np.savez(tmp_path / "wrong_name.npz", z=np.zeros((2, 3), np.float32))
    np.savez(tmp_path / "wrong_shape.npz", x=np.zeros((3, 3), np.float32))
    np.savez(tmp_path / "wrong_dtype.npz", x=np.zeros((2, 3), np.float64))
    status, out, err = run_cli(*(a.format(tmp=tmp_path) for a in argv))
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0]


def test_bench_prints_percentiles(tmp_path, capsys):
    _model(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan), "--shape", "x=4x3"]) == 0
    capsys.readouterr()
    assert main(["bench", str(plan), "--iterations", "20", "--warmup", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["iterations"] == 20 and 0 < result["min_ms"] <= result["p50_ms"] <= result["p99_ms"]
    assert result["batch"] == 4 and result["throughput_per_s"] > 0
    assert result["cpu_kernels"].startswith("native")   # which CPU kernels ran (the C module is built in CI)
    assert main(["bench", str(plan), "--iterations", "3"]) == 0
    assert "CPU kernels: native" in capsys.readouterr().out
    assert main(["bench", str(plan), "--iterations", "0"]) == 2
