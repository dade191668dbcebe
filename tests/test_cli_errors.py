"""User errors of every tool exit 2 with one line on stderr (issue 18), checked in subprocesses as users run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from test_cli import _model, run_cli

NO_ONNX = "import sys; sys.modules['onnx'] = None; sys.modules['matplotlib'] = None; " \
          "from edgert.tools.cli import main; sys.exit(main(sys.argv[1:]))"


def _run_without(argv):
    """The CLI as a runtime-only install sees it: onnx and matplotlib cannot be imported."""
    done = subprocess.run([sys.executable, "-c", NO_ONNX, *map(str, argv)], capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout, done.stderr


def _one_line(status, err, expected):
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_errors")
    _model(tmp / "m.onnx", dims=(2, 3))
    assert run_cli("build", tmp / "m.onnx", "-o", tmp / "m.plan")[0] == 0
    (tmp / "calib").mkdir()
    (tmp / "calib" / "a.npy").write_bytes(os.urandom(64))
    (tmp / "binary.txt").write_bytes(b"\xff\xfe\x00 not utf-8 \x80")
    np.savez(tmp / "wrong_name.npz", z=np.zeros((2, 3), np.float32))
    np.savez(tmp / "wrong_shape.npz", x=np.zeros((3, 3), np.float32))
    np.savez(tmp / "wrong_dtype.npz", x=np.zeros((2, 3), np.float64))
    np.savez(tmp / "big_endian.npz", x=np.zeros((2, 3), ">f4"))
    np.save(tmp / "single.npy", np.zeros((2, 3), np.float32))
    (tmp / "garbage.npz").write_bytes(os.urandom(100))
    dyn = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])])
    onnx.save(helper.make_model(dyn, opset_imports=[helper.make_opsetid("", 17)]), tmp / "dyn.onnx")
    shape = onnx.numpy_helper.from_array(np.array([2**20, 2**20, 2**12], np.int64), "s")
    huge = helper.make_graph([helper.make_node("ConstantOfShape", ["s"], ["y"], name="c")], "g", [],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    onnx.save(helper.make_model(huge, opset_imports=[helper.make_opsetid("", 17)]), tmp / "huge.onnx")
    return tmp


@pytest.mark.parametrize("argv, expected", [
    (["build", "{t}/m.onnx", "-o", "{t}/missing_dir/p.plan"], "does not exist"),
    (["build", "{t}/m.onnx", "-o", "{t}"], "is a directory"),
    (["build", "{t}/m.onnx", "-o", "{t}/p.plan", "--precision", "int8", "--calib", "{t}/calib"],
     "calibration file"),
    (["build", "{t}/m.onnx", "-o", "{t}/p.plan", "--precision", "int8", "--calib-cache", "{t}/binary.txt"],
     "not a JSON calibration cache"),
    (["build", "{t}/m.onnx", "-o", "{t}/p.plan", "--placement", "{t}/binary.txt"], "placement file"),
    (["build", "{t}/m.onnx", "-o", "{t}/p.plan", "--placement", "{t}/missing.toml"], "placement file"),
    (["build", "{t}/dyn.onnx", "-o", "{t}/p.plan", "--shape", "x=99999999999999999999x16"], "exceeds"),
    (["build", "{t}/huge.onnx", "-o", "{t}/p.plan"], "TiB"),
    (["run", "{t}/m.plan", "--output", "{t}/missing_dir/out.npz"], "does not exist"),
    (["run", "{t}/m.plan", "--output", "{t}"], "is a directory"),
    (["run", "{t}/m.plan", "--inputs", "{t}/big_endian.npz"], "got >f4 (big-endian); use arr.astype('<f4')"),
    (["run", "{t}/m.plan", "--inputs", "{t}/single.npy"], "not an .npz"),
    (["memory", "{t}/m.plan", "--plot", "{t}/missing_dir/m.png"], "does not exist"),
    (["memory", "{t}/m.plan", "--plot", "{t}/m.unknown"], "unknown image type"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--inputs", "{t}/missing.npz"], "not found"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--inputs", "{t}/garbage.npz"], "not an .npz"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--inputs", "{t}/wrong_name.npz"], "unknown input 'z'"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--inputs", "{t}/wrong_shape.npz"], "expected shape"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--inputs", "{t}/wrong_dtype.npz"], "expected dtype"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--inputs", "{t}/big_endian.npz"], "big-endian"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--val-range", "q:[0,1]"], "unknown input 'q'"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--val-range", "x:[1,0]"], "above"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--load-outputs", "{t}/wrong_name.npz"], "no reference outputs"),
    (["compare", "{t}/m.onnx", "{t}/m.plan", "--atol", "-1"], "tolerances"),
])
def test_user_errors_exit_2_with_one_line(files, argv, expected):
    status, out, err = run_cli(*(a.format(t=files) for a in argv))
    _one_line(status, err, expected)
    assert "wrote" not in out


def test_run_output_is_checked_before_inference_and_written_where_asked(files):
    status, out, err = run_cli("run", files / "m.plan", "--output", files / "missing_dir" / "out.npz")
    assert status == 2 and "ran " not in out, out   # refused before the plan ran
    target = files / "outputs.bin"
    status, out, err = run_cli("run", files / "m.plan", "--output", target)
    assert status == 0 and f"wrote {target}\n" in out and not os.path.exists(f"{target}.npz")
    with np.load(target) as data:
        assert data["y"].shape == (2, 3)


@pytest.mark.parametrize("argv, extra", [
    (["build", "{t}/m.onnx", "-o", "{t}/p.plan"], "edgert[build]"),
    (["partition", "{t}/m.onnx", "--target", "jetson-agx-orin"], "edgert[build]"),
    (["compare", "{t}/m.onnx", "{t}/m.plan"], "edgert[build]"),
    (["memory", "{t}/m.plan", "--plot", "{t}/m.png"], "edgert[plot]"),
])
def test_runtime_only_install_names_the_extra(files, argv, extra):
    status, out, err = _run_without([a.format(t=files) for a in argv])
    _one_line(status, err, f"pip install '{extra}'")
    assert out == ""   # said before printing anything
    assert _run_without(["run", files / "m.plan"])[0] == 0   # the runtime needs neither


def test_compare_against_saved_outputs_needs_no_onnx(files):
    saved = files / "saved.npz"
    assert run_cli("compare", files / "m.onnx", files / "m.plan", "--save-outputs", saved)[0] == 0
    status, out, err = _run_without(["compare", files / "m.onnx", files / "m.plan", "--load-outputs", saved])
    assert status == 0 and out.rstrip().splitlines()[-1].startswith("PASSED"), out + err


@pytest.mark.parametrize("delay", [0.3, 2.0])
def test_ctrl_c_exits_130_without_traceback(files, delay):
    process = subprocess.Popen([sys.executable, "-m", "edgert.tools.cli", "bench", str(files / "m.plan"),
                                "--iterations", "100000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(delay)   # while importing (early) or while timing runs (late)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err and "interrupted" in err, err
