"""I/O formats (edgert/io_formats.py): fp16 and int8 input and output bindings, on the CPU, the CUDA emulator
(bit-exact int8) and, marked ``gpu``, a real GPU.

A binding format removes the conversion the plan would otherwise do: the plan's results must be what the
float32-bound plan computes on the converted inputs (exactly, where the conversion round-trips), the bindings
must say their dtype (and int8 scale) in ``inspect`` and the runtime, and a feed of the wrong dtype is a
clear error. Models are built with onnx.helper, random weights, calibration on random batches.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))

import edgert  # noqa: E402
from edgert.errors import EdgeRTError, InputError  # noqa: E402
from edgert.io_formats import IOFormatError, parse_format  # noqa: E402
from helpers import normwise_error  # noqa: E402

ALL_INT8 = [{"layer": "*", "precision": "int8"}]
SHAPE = (2, 3, 10, 10)


def camera_model(rng):
    """A camera-like input through convolutions, a concat, a nearest upsample and a convolution head."""
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), node("Conv", ["r1", "w3"], ["c3"]),
             node("Concat", ["c2", "c3"], ["cat"], axis=1),
             node("Resize", ["cat", "", "up"], ["u"], mode="nearest"),
             node("Conv", ["u", "w4"], ["c4"], pads=[1, 1, 1, 1]), node("Relu", ["c4"], ["y"])]
    consts = {"w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
              "w2": (rng.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32),
              "w3": (rng.standard_normal((4, 8, 1, 1)) * 0.3).astype(np.float32),
              "w4": (rng.standard_normal((6, 8, 3, 3)) * 0.3).astype(np.float32), "up": np.float32([1, 1, 2, 2])}
    graph = helper.make_graph(nodes, "camera", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng()
    return {"model": camera_model(rng), "calib": [{"x": rng.standard_normal(SHAPE).astype(np.float32)}
                                                  for _ in range(2)]}


def _run(plan, feeds: dict) -> dict:
    return edgert.load(plan.to_bytes()).create_execution_context().execute(feeds)


def _kinds(plan) -> list[str]:
    return [layer["kind"] for layer in plan.layers]


def _binding(plan, direction: str, name: str) -> dict:
    entry = next(b for b in plan.document["bindings"][direction] if b["name"] == name)
    return entry | {"scale": plan.document["tensors"][entry["tensor"]].get("scale")}


def _codes(x, scale):
    return np.clip(np.rint(x.astype(np.float64) / scale), -128, 127).astype(np.int8)


def _values(codes, scale):
    return (codes.astype(np.float64) * scale).astype(np.float32)


# -- fp16 -------------------------------------------------------------------------------------------------------
def test_fp16_bindings_drop_the_casts_of_an_fp16_plan(setup):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    plan = edgert.build(setup["model"], precision="fp16", input_formats={"x": "fp16"}, output_formats=["y=fp16:chw"])
    assert "Cast" not in _kinds(plan), _kinds(plan)
    assert _binding(plan, "inputs", "x")["dtype"] == "float16" and _binding(plan, "outputs", "y")["dtype"] == "float16"
    assert "Cast" in _kinds(edgert.build(setup["model"], precision="fp16"))
    x = np.random.default_rng().standard_normal(SHAPE).astype(np.float16)
    y = _run(plan, {"x": x})["y"]
    assert y.dtype == np.float16
    session = onnxruntime.InferenceSession(setup["model"].SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x.astype(np.float32)})[0]
    assert normwise_error(y.astype(np.float32), want) <= 1e-2


def test_an_fp16_input_of_an_fp32_plan_is_widened_once_exactly(setup):
    plan = edgert.build(setup["model"], input_formats={"x": "fp16"})
    casts = [layer for layer in plan.layers if layer["kind"] == "Cast"]
    assert [layer["name"] for layer in casts] == ["x_to_fp32"]
    x = np.random.default_rng().standard_normal(SHAPE).astype(np.float16)
    fp32 = edgert.build(setup["model"])
    np.testing.assert_array_equal(_run(plan, {"x": x})["y"], _run(fp32, {"x": x.astype(np.float32)})["y"])


def test_a_feed_of_the_wrong_dtype_is_a_clear_error(setup):
    plan = edgert.build(setup["model"], input_formats={"x": "fp16"})
    context = edgert.load(plan.to_bytes()).create_execution_context()
    with pytest.raises(InputError, match=r"input 'x': expected dtype float16, got float32"):
        context.execute({"x": np.zeros(SHAPE, np.float32)})


# -- int8 -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codes", [None, False])
def test_int8_bindings_hold_codes_at_their_scales(setup, codes):
    options = dict(precision="int8", calib=setup["calib"], precision_rules=ALL_INT8, int8_codes=codes)
    plan = edgert.build(setup["model"], input_formats={"x": "int8"}, output_formats={"y": "int8"}, **options)
    floats = edgert.build(setup["model"], **options)
    x_in, y_out = _binding(plan, "inputs", "x"), _binding(plan, "outputs", "y")
    assert x_in["dtype"] == "int8" and y_out["dtype"] == "int8" and x_in["scale"] > 0 and y_out["scale"] > 0
    assert not any(layer["name"].startswith("quantize(x") for layer in plan.layers)   # the camera's codes feed c1
    assert y_out["scale"] == next(layer["attrs"]["int8"]["output_scale"] for layer in plan.layers
                                  if layer["outputs"] == [y_out["tensor"]])
    engine = edgert.load(plan.to_bytes())
    assert engine.inputs[0].scale == x_in["scale"] and engine.outputs[0].scale == y_out["scale"]
    rng = np.random.default_rng()
    for _ in range(2):
        x = _codes(rng.standard_normal(SHAPE) * 1.5, x_in["scale"])
        got = engine.create_execution_context().execute({"x": x})["y"]
        assert got.dtype == np.int8
        want = _run(floats, {"x": _values(x, x_in["scale"])})["y"]
        np.testing.assert_array_equal(_values(got, y_out["scale"]), want)


def test_int8_output_of_a_plan_with_codes_moved_by_a_reshape(setup):
    """An int8 output written by a layer moving codes (a Flatten of the head's codes)."""
    model = camera_model(np.random.default_rng())
    model.graph.node[-1].output[0] = "r"
    model.graph.node.append(helper.make_node("Flatten", ["r"], ["y"]))
    options = dict(precision="int8", calib=setup["calib"], precision_rules=ALL_INT8)
    plan = edgert.build(model, output_formats={"y": "int8"}, **options)
    flatten = next(layer for layer in plan.layers if layer["kind"] == "Shuffle")
    out = plan.document["tensors"][flatten["outputs"][0]]
    assert out["dtype"] == "int8" and out["scale"] == plan.document["tensors"][flatten["inputs"][0]]["scale"]
    assert not any(layer["kind"] == "Reformat" and layer["attrs"]["to_dtype"] == "float32" for layer in plan.layers)
    x = np.random.default_rng().standard_normal(SHAPE).astype(np.float32)
    got = _run(plan, {"x": x})["y"]
    want = _run(edgert.build(model, **options), {"x": x})["y"]
    np.testing.assert_array_equal(_values(got, out["scale"]), want)


def test_inspect_shows_binding_dtypes_and_scales(setup, tmp_path):
    plan = edgert.build(setup["model"], precision="int8", calib=setup["calib"], input_formats={"x": "int8"},
                        output_formats={"y": "fp16"})
    path = tmp_path / "io.plan"
    plan.save(path)
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "inspect", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.strip().startswith("input"))
    assert "x: int8 2x3x10x10 (int8 codes, scale " in line, line
    assert any(line.strip().startswith("output y: float16") for line in done.stdout.splitlines()), done.stdout
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "inspect", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    shown = json.loads(done.stdout)
    assert shown["inputs"][0]["dtype"] == "int8" and shown["inputs"][0]["scale"] == _binding(plan, "inputs", "x")["scale"]
    assert shown["options"]["input_formats"] == {"x": "int8"}


# -- channel-vectorized layouts ---------------------------------------------------------------------------------
def to_layout(array, layout: str) -> np.ndarray:
    """An NCHW array in TensorRT's ``layout`` (zero channels padded), written out in NumPy."""
    n, c, h, w = array.shape
    width = {"hwc": 1, "hwc8": 8, "hwc16": 16, "chw2": 2, "chw4": 4, "chw16": 16, "chw32": 32}[layout]
    blocks = -(-c // width)
    padded = np.zeros((n, blocks * width, h, w), array.dtype)
    padded[:, :c] = array
    if layout.startswith("hwc"):
        return np.ascontiguousarray(padded.transpose(0, 2, 3, 1))
    return np.ascontiguousarray(padded.reshape(n, blocks, width, h, w).transpose(0, 1, 3, 4, 2))


@pytest.mark.parametrize("layout", ["hwc", "hwc8", "chw4", "chw32"])
def test_fp32_layouts_move_values_exactly(setup, layout):
    plan = edgert.build(setup["model"], input_formats={"x": f"fp32:{layout}"}, output_formats={"y": f"fp32:{layout}"})
    names = [layer["name"] for layer in plan.layers]
    assert f"x_from_{layout}" in names and f"y_to_{layout}" in names
    assert ("x_unpad_channels" in names) == (layout != "hwc")   # 3 channels padded to the vector width
    x = np.random.default_rng().standard_normal(SHAPE).astype(np.float32)
    got = _run(plan, {"x": to_layout(x, layout)})["y"]
    want = _run(edgert.build(setup["model"]), {"x": x})["y"]
    np.testing.assert_array_equal(got, to_layout(want, layout))


def test_int8_chw32_input_and_hwc8_output_move_codes(setup):
    options = dict(precision="int8", calib=setup["calib"], precision_rules=ALL_INT8)
    plan = edgert.build(setup["model"], input_formats={"x": "int8:chw32"}, output_formats={"y": "int8:hwc8"},
                        **options)
    linear = edgert.build(setup["model"], input_formats={"x": "int8"}, output_formats={"y": "int8"}, **options)
    assert _binding(plan, "inputs", "x")["shape"] == [2, 1, 10, 10, 32]
    assert _binding(plan, "outputs", "y")["shape"] == [2, 20, 20, 8]
    assert not any(layer["kind"] in ("Reformat", "Cast") for layer in plan.layers)   # codes all the way
    x_scale = _binding(plan, "inputs", "x")["scale"]
    x = _codes(np.random.default_rng().standard_normal(SHAPE) * 1.5, x_scale)
    got = _run(plan, {"x": to_layout(x, "chw32")})["y"]
    np.testing.assert_array_equal(got, to_layout(_run(linear, {"x": x})["y"], "hwc8"))


def test_trt_api_allowed_formats_pick_the_layout(setup):
    import edgert as trt

    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, None).parse(setup["model"].SerializeToString())
    network.get_input(0).allowed_formats = 1 << int(trt.TensorFormat.HWC8)
    network.get_output(0).allowed_formats = (1 << int(trt.TensorFormat.CHW32)) | (1 << int(trt.TensorFormat.LINEAR))
    engine = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(
        network, builder.create_builder_config()))
    assert engine.get_tensor_shape("x") == (2, 10, 10, 8) and engine.get_tensor_shape("y") == (2, 6, 20, 20)


# -- errors -----------------------------------------------------------------------------------------------------
def test_formats_parse_and_refuse_clearly():
    assert str(parse_format("FP16:CHW")) == "fp16" and str(parse_format("int8")) == "int8"
    assert str(parse_format("int8:CHW32")) == "int8:chw32"
    with pytest.raises(IOFormatError, match="has type 'fp8'"):
        parse_format("fp8")
    with pytest.raises(IOFormatError, match="layout 'nhwc'; expected one of linear, chw, hwc, hwc8"):
        parse_format("int8:nhwc")


@pytest.mark.parametrize("options, match", [
    ({"input_formats": {"image": "fp16"}}, r"the model has no input 'image'; its inputs are: x"),
    ({"output_formats": ["y"]}, r"is not NAME=FORMAT"),
    ({"input_formats": {"x": "int8"}}, r"input 'x' has no int8 scale; build with --precision int8"),
    ({"output_formats": {"y": "int8"}, "precision": "fp16"}, r"output 'y' is produced by layer .*fp16"),
])
def test_formats_that_cannot_be_honoured_are_build_errors(setup, options, match):
    with pytest.raises(EdgeRTError, match=match):
        edgert.build(setup["model"], **options)


def test_cli_build_flags(setup, tmp_path):
    model_path, plan_path = tmp_path / "camera.onnx", tmp_path / "camera.plan"
    model_path.write_bytes(setup["model"].SerializeToString())
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "build", str(model_path), "-o", str(plan_path),
                           "--precision", "fp16", "--input-format", "x=fp16", "--output-format", "y=fp16"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    bindings = edgert.load(str(plan_path))
    assert bindings.inputs[0].dtype == np.float16 and bindings.outputs[0].dtype == np.float16
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "build", str(model_path), "-o", str(plan_path),
                           "--input-format", "x=int8:hwc8"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "input 'x' has no int8 scale" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- the TensorRT API -------------------------------------------------------------------------------------------
def test_trt_api_binding_types(setup):
    import edgert as trt

    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, None).parse(setup["model"].SerializeToString())
    x, y = network.get_input(0), network.get_output(0)
    x.dtype, y.dtype = trt.DataType.HALF, trt.DataType.HALF
    x.allowed_formats = 1 << int(trt.TensorFormat.LINEAR)
    assert x.dtype == trt.DataType.HALF and y.allowed_formats == 1
    with pytest.raises(EdgeRTError, match="names no TensorFormat edgert binds"):
        y.allowed_formats = 1 << 9   # DLA_LINEAR
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    engine = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(network, config))
    assert engine.get_tensor_dtype("x") == trt.DataType.HALF and engine.get_tensor_dtype("y") == trt.DataType.HALF
    context = engine.create_execution_context()
    feed = np.random.default_rng().standard_normal(SHAPE).astype(np.float16)
    out = np.zeros(engine.get_tensor_shape("y"), np.float16)
    context.set_tensor_address("x", feed.ctypes.data)
    context.set_tensor_address("y", out.ctypes.data)
    context.execute_async_v3(0)
    plain = edgert.build(setup["model"], precision="fp16", input_formats={"x": "fp16"}, output_formats={"y": "fp16"})
    np.testing.assert_array_equal(out, _run(plain, {"x": feed})["y"])


def test_profile_build_with_an_fp16_input():
    rng = np.random.default_rng()
    node = helper.make_node
    graph = helper.make_graph([node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["y"])],
                              "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plan = edgert.build(model, profiles=[{"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}], precision="fp16",
                        input_formats={"x": "fp16"})
    assert plan.document["bindings"]["inputs"][0]["dtype"] == "float16"
    context = edgert.load(plan.to_bytes()).create_execution_context()
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float16)
        static = edgert.build(model, shapes={"x": (batch, 3, 8, 8)}, precision="fp16", input_formats={"x": "fp16"})
        np.testing.assert_array_equal(context.execute({"x": x})["y"], _run(static, {"x": x})["y"])
    with pytest.raises(EdgeRTError, match="channel-vectorized layouts need static shapes"):
        edgert.build(model, profiles=[{"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}], input_formats={"x": "fp16:hwc"})


# -- CUDA: the emulator in CI, the GPU where marked ---------------------------------------------------------------
def _cuda_cases(setup, rng):
    """(plan, feeds, exact) per case: int8 bindings with and without codes between layers, int8 chw32 / hwc8
    bindings, fp16 hwc / chw4 bindings of an fp32 plan (the CUDA fp32 kernels sum in another order than the
    CPU: compared normwise)."""
    int8 = dict(cpu_only_aliases=False, precision="int8", calib=setup["calib"], precision_rules=ALL_INT8,
                input_formats={"x": "int8"}, output_formats={"y": "int8"})
    cases = []
    for codes in (True, None):
        plan = edgert.build(setup["model"], int8_codes=codes, **int8)
        scale = _binding(plan, "inputs", "x")["scale"]
        cases.append((plan, {"x": _codes(rng.standard_normal(SHAPE) * 1.5, scale)}, True))
    plan = edgert.build(setup["model"], int8_codes=True, **(int8 | {"input_formats": {"x": "int8:chw32"},
                                                                    "output_formats": {"y": "int8:hwc8"}}))
    scale = _binding(plan, "inputs", "x")["scale"]
    cases.append((plan, {"x": to_layout(_codes(rng.standard_normal(SHAPE) * 1.5, scale), "chw32")}, True))
    plan = edgert.build(setup["model"], cpu_only_aliases=False, input_formats={"x": "fp16:hwc"},
                        output_formats={"y": "fp16:chw4"})
    cases.append((plan, {"x": to_layout(rng.standard_normal(SHAPE).astype(np.float16), "hwc")}, False))
    return cases


def _check_cuda(setup, driver, arch: str, emulate: bool) -> None:
    from test_cuda_int8 import reference, run_cuda

    for plan, feeds, exact in _cuda_cases(setup, np.random.default_rng()):
        got, want = run_cuda(plan, feeds, driver, arch, emulate=emulate)["y"], reference(plan, feeds)["y"]
        assert got.dtype == want.dtype == plan.document["bindings"]["outputs"][0]["dtype"]
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            assert normwise_error(got.astype(np.float32), want.astype(np.float32)) <= 1e-3


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERT_CUDA_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("arch", ["sm_75", "sm_90"])
def test_bindings_on_the_emulator(setup, arch, private_cache):
    from edgert.kernels.cuda import emulator

    if not emulator.available():
        pytest.skip("no host C++ compiler for the emulator")
    _check_cuda(setup, emulator.EmulatedDriver(arch), arch, emulate=True)


@pytest.mark.gpu
def test_bindings_on_the_gpu(setup, private_cache):
    from edgert.runtime.cuda import CupyDriver

    driver = CupyDriver()
    _check_cuda(setup, driver, driver.arch(), emulate=False)


def test_compare_feeds_onnxruntime_the_values_the_bindings_stand_for(setup):
    """`edgert compare` on int8 bindings: random codes in, codes out, judged as the values they stand for, which
    is the comparison of the float32-bound plan on those values."""
    pytest.importorskip("onnxruntime")
    from edgert.tools.compare import bound_values, compare

    options = dict(precision="int8", calib=setup["calib"], precision_rules=ALL_INT8)
    plan = edgert.build(setup["model"], input_formats={"x": "int8"}, output_formats={"y": "int8"}, **options)
    report = compare(setup["model"], plan)
    codes = report["inputs"]["x"]
    assert codes.dtype == np.int8 and np.abs(codes).max() > 1
    values = bound_values(codes, _binding(plan, "inputs", "x")["scale"])
    floats = compare(setup["model"], edgert.build(setup["model"], **options), {"x": values})
    for key in ("plan", "reference"):
        np.testing.assert_array_equal(report["outputs"]["y"][key], floats["outputs"]["y"][key])
