"""int8 CUDA kernels (kernels/cuda/lower_int8.py, lower_int8_gemm.py, int8.cuh) against the CPU int8 reference (kernels/cpu/int8.py).

Plans are built with ``precision="int8"``, every layer forced int8 by a rule and calibrated on one random batch,
then run on fresh random inputs. The CUDA kernels must reproduce the reference's int8 codes exactly: every
output element of an int8 layer equals the reference's float32 value bit for bit. That is the kernels' design
(each code is rounded from a float estimate, and recomputed in double like the reference when the estimate
sits within 2^-12 code units of a rounding boundary), so any difference is a bug. fp32 layers of a plan (the
digits CNN's final Gemm) sum in another order than the CPU and agree to 1e-5 normwise.

CPU CI runs the kernels on the emulator of ``edgert.kernels.cuda.emulator``, as built for sm_75 (dp4a) and
for sm_90 (s8 tensor cores, dp4a where a GEMM has 16 rows or fewer), with the tile sizes of the target's SM
count and with the largest tiles (``sm_count=1``), and compiles them for sm_87 and sm_90. Tests marked ``gpu``
run the same cases on a real GPU through cupy, plus the digits CNN's accuracy (within 1 point of fp32).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))

import edgert  # noqa: E402
from edgert.kernels.cuda import compile as cc  # noqa: E402
from edgert.kernels.cuda import emulator  # noqa: E402
from edgert.kernels.cuda.plan_kernels import compile_for_plan  # noqa: E402
from edgert.runtime.cuda import CudaEngine  # noqa: E402

needs_cxx = pytest.mark.skipif(not emulator.available(), reason="no host C++ compiler for the emulator")
needs_compiler = pytest.mark.skipif(not cc.available(), reason="no NVRTC (cuda-bindings) and no nvcc")
ALL_INT8 = [{"layer": "*", "precision": "int8"}]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERT_CUDA_CACHE", str(tmp_path / "cache"))


# -- models ---------------------------------------------------------------------------------------------------
def _weights(rng, shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def zoo_model(rng):
    """One graph, one output per case: convolutions (fused relu, strided/padded/dilated, grouped, depthwise,
    residual, 1-D, 3-D), Gemm (transposed A and B, bias), batched MatMul, max and average pooling, an add and
    a PointWise chain."""
    w = {"w1": _weights(rng, (96, 8, 3, 3)), "b1": _weights(rng, 96), "w2": _weights(rng, (12, 8, 3, 3)),
         "w3": _weights(rng, (16, 4, 3, 3)), "b3": _weights(rng, 16), "w4": _weights(rng, (8, 1, 3, 3)),
         "w5": _weights(rng, (8, 8, 3, 3)), "w6": _weights(rng, (24, 40)), "b6": _weights(rng, 24),
         "w7": _weights(rng, (40, 100)), "w8": _weights(rng, (6, 4, 3)), "w9": _weights(rng, (4, 3, 3, 3, 3))}
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["conv_relu"]),
             node("Conv", ["x", "w2"], ["conv_strided"], pads=[2, 1, 0, 2], strides=[2, 2], dilations=[2, 1]),
             node("Conv", ["x", "w3", "b3"], ["conv_grouped"], pads=[1, 1, 1, 1], group=2),
             node("Conv", ["x", "w4"], ["conv_depthwise"], pads=[1, 1, 1, 1], strides=[2, 2], group=8),
             node("Conv", ["x", "w5"], ["c5"], pads=[1, 1, 1, 1]), node("Add", ["c5", "x"], ["s5"]),
             node("Relu", ["s5"], ["conv_residual"]),
             node("Gemm", ["v", "w6", "b6"], ["gemm"], transA=1, transB=1),
             node("MatMul", ["u", "w7"], ["matmul"]),
             node("MaxPool", ["x"], ["maxpool"], kernel_shape=[2, 2], strides=[2, 2]),
             node("AveragePool", ["x"], ["avgpool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             node("Add", ["x", "x2"], ["add"]),
             node("Sigmoid", ["x2"], ["sg"]), node("Mul", ["x2", "sg"], ["swish"]),
             node("Conv", ["t", "w8"], ["conv1d"], pads=[1, 1]), node("Conv", ["s", "w9"], ["conv3d"], pads=[1] * 6)]
    outputs = ["conv_relu", "conv_strided", "conv_grouped", "conv_depthwise", "conv_residual", "gemm", "matmul",
               "maxpool", "avgpool", "add", "swish", "conv1d", "conv3d"]
    shapes = {"x": (2, 8, 9, 9), "x2": (2, 8, 9, 9), "v": (40, 6), "u": (3, 5, 40), "t": (2, 4, 10),
              "s": (1, 3, 4, 5, 5)}
    graph = helper.make_graph(
        nodes, "int8_zoo", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shapes


def feeds_for(shapes: dict, rng) -> dict:
    return {name: (rng.standard_normal(shape) * 1.5).astype(np.float32) for name, shape in shapes.items()}


def zoo_plan(rng):
    model, shapes = zoo_model(rng)
    plan = edgert.build(model, cpu_only_aliases=False, shapes=shapes, precision="int8", precision_rules=ALL_INT8,
                        calib=[feeds_for(shapes, rng)])
    counts = plan.header["precision"]["counts"]
    assert counts == {"int8": 13}, counts
    return plan, shapes


TILT = 2.0 / (1.0 + 2.0 ** -30)
# Hand-set int8 specs by layer name: (input scales, output scale); weights get scale 1.
MANUAL_SPECS = {"conv": ([1.0], TILT), "relu": ([1.0], TILT), "concat": ([1.0, 0.05], 0.09), "abs": ([0.05], 0.03),
                "prelu": ([0.05, 0.0], 0.04), "bn": ([0.05, 0.0, 0.0], 0.06)}


def manual_plan(rng):
    """Layers with hand-set scales. ``conv`` and ``relu`` read integers at scale 1 and write at scale TILT, so
    their exact results sit 2^-31 above a tie (k + 1/2): float arithmetic alone would round them to even, the
    float64 reference rounds them up. The others are kinds only the int8 reference runs int8 (precision.py
    leaves them fp16): Concatenation, Unary, ParametricReLU, Scale."""
    node = helper.make_node
    nodes = [node("Conv", ["x", "w"], ["conv"]), node("Relu", ["x"], ["relu"]),
             node("Concat", ["x", "y"], ["concat"], axis=1), node("Abs", ["y"], ["abs"]),
             node("PRelu", ["y", "slope"], ["prelu"]), node("BatchNormalization", ["y", "g", "b", "m", "v"], ["bn"])]
    inits = {"w": np.ones((4, 3, 1, 1), np.float32), "slope": _weights(rng, (3, 1, 1)),
             "g": _weights(rng, 3), "b": _weights(rng, 3), "m": _weights(rng, 3), "v": np.float32([1, 2, 0.5])}
    graph = helper.make_graph(nodes, "manual", [helper.make_tensor_value_info(n, TensorProto.FLOAT, (1, 3, 4, 4))
                                                for n in "xy"],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in MANUAL_SPECS],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plan = edgert.build(model, cpu_only_aliases=False, shapes={"x": (1, 3, 4, 4), "y": (1, 3, 4, 4)})
    for layer in plan.document["layers"]:
        inputs, output = MANUAL_SPECS[layer["name"]]
        spec = {"input_scales": inputs + [0.0] * (len(layer["inputs"]) - len(inputs)), "output_scale": output}
        if layer["name"] == "conv":
            spec["weight_scales"] = [1.0] * 4
        layer["attrs"]["int8"] = spec
    feeds = {"x": np.arange(-24, 24, dtype=np.float32).reshape(1, 3, 4, 4),
             "y": (rng.standard_normal((1, 3, 4, 4)) * 3).astype(np.float32)}
    return plan, feeds


# -- running ----------------------------------------------------------------------------------------------------
def run_cuda(plan, feeds, driver, arch: str, emulate: bool, sm_count: int | None = None) -> dict:
    """Outputs of the plan's CUDA kernels (``sm_count=1``: tiles as large as the problems allow)."""
    plan.document["kernels"] = {arch: compile_for_plan(plan.document, arch, emulate=emulate, sm_count=sm_count)}
    context = CudaEngine(plan.document, driver=driver).create_execution_context()
    context.poison()   # NaN everywhere: an element no kernel wrote fails the comparison
    return context.execute(feeds)


def reference(plan, feeds) -> dict:
    return edgert.load(plan).create_execution_context().execute(feeds)


def assert_same_codes(got: dict, want: dict) -> None:
    for name, value in want.items():
        assert np.isfinite(value).all(), name
        differ = np.flatnonzero(got[name] != value)
        assert differ.size == 0, (f"{name}: {differ.size} of {value.size} elements differ, first at {differ[0]}: "
                                  f"{got[name].flat[differ[0]]} vs {value.flat[differ[0]]}")


def tactics(plan, arch: str) -> set[str]:
    """The GEMM variants the plan uses, e.g. {"mma 32x32", "dp4a 64x32"}."""
    return {launch["tactic"].split(" ", 1)[1] for layer in plan.document["kernels"][arch]["launches"]
            for launch in layer if launch["tactic"].startswith("int8-") and " " in launch["tactic"]}


# -- CPU CI: the emulator ---------------------------------------------------------------------------------------
@needs_cxx
@pytest.mark.parametrize("arch, sm_count, gemms", [
    ("sm_75", 1, {"dp4a 64x64", "dp4a 64x32", "dp4a 32x64", "dp4a 32x32"}),   # the largest tiles that fit
    ("sm_90", None, {"mma 32x32", "dp4a 32x32"})])                          # shrunk to fill 132 SMs
def test_zoo_matches_the_reference_on_the_emulator(arch, sm_count, gemms):
    rng = np.random.default_rng()
    plan, shapes = zoo_plan(rng)
    feeds = feeds_for(shapes, rng)
    got = run_cuda(plan, feeds, emulator.EmulatedDriver(arch), arch, emulate=True, sm_count=sm_count)
    assert tactics(plan, arch) == gemms
    assert_same_codes(got, reference(plan, feeds))


@needs_cxx
def test_ties_and_reference_only_kinds_on_the_emulator():
    plan, feeds = manual_plan(np.random.default_rng())
    want = reference(plan, feeds)
    codes = np.rint(want["relu"] / TILT)
    assert np.array_equal(codes.ravel()[24:28], [0, 1, 1, 2])   # (0, 1, 2, 3) / 2, rounded up off the tie
    assert_same_codes(run_cuda(plan, feeds, emulator.EmulatedDriver("sm_90"), "sm_90", emulate=True), want)


def folded_model(rng):
    """A convolution followed by a PointWise chain and a matrix product followed by an Activation, kept apart by
    disabling conv_fusion, so the CUDA lowering folds each consumer into its producer's epilogue."""
    node = helper.make_node
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Sigmoid", ["c"], ["s"]),
             node("Mul", ["c", "s"], ["swish"]), node("MatMul", ["u", "v"], ["m"]), node("Tanh", ["m"], ["tanh"])]
    shapes = {"x": (2, 8, 9, 9), "u": (5, 12)}
    graph = helper.make_graph(nodes, "folded", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                                for n, s in shapes.items()],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("swish", "tanh")],
                              [numpy_helper.from_array(_weights(rng, (96, 8, 3, 3)), "w"),
                               numpy_helper.from_array(_weights(rng, (12, 100)), "v")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shapes


@needs_cxx
@pytest.mark.parametrize("consumer", ["int8", "fp32"])
def test_folded_consumers_on_the_emulator(consumer):
    rng = np.random.default_rng()
    model, shapes = folded_model(rng)
    rules = ALL_INT8 + ([{"kind": kind, "precision": "fp32"} for kind in ("PointWise", "Activation")]
                        if consumer == "fp32" else [])
    plan = edgert.build(model, cpu_only_aliases=False, shapes=shapes, disabled_passes=["conv_fusion"], precision="int8",
                        precision_rules=rules, calib=[feeds_for(shapes, rng)])
    feeds = feeds_for(shapes, rng)
    got = run_cuda(plan, feeds, emulator.EmulatedDriver("sm_90"), "sm_90", emulate=True, sm_count=1)
    assert plan.document["kernels"]["sm_90"]["fused"] == {"1": 0, "3": 2}
    assert tactics(plan, "sm_90") == {"mma 64x128", "mma 128x32"}   # 8 and 4 warps
    want = reference(plan, feeds)
    if consumer == "int8":
        assert_same_codes(got, want)
    else:   # an fp32 consumer computes in float32 on both sides, in libm's and CUDA's own roundings
        for name in want:
            assert np.linalg.norm(got[name] - want[name]) / np.linalg.norm(want[name]) <= 1e-6, name


@needs_cxx
def test_digits_cnn_on_the_emulator():
    """The digits CNN of test_calibration (random weights: the numerics do not need a trained model)."""
    digits = pytest.importorskip("test_calibration")
    rng = np.random.default_rng()
    params = [_weights(rng, (8, 1, 3, 3), 0.5), _weights(rng, 8, 0.1), _weights(rng, (16, 8, 3, 3), 0.2),
              _weights(rng, 16, 0.1), _weights(rng, (10, 256), 0.1), _weights(rng, 10, 0.1)]
    shapes = {"image": (4, 1, 8, 8)}
    plan = edgert.build(digits._onnx_model(params), cpu_only_aliases=False, shapes=shapes, precision="int8",
                        calib=[{"image": rng.random(shapes["image"], np.float32)}])
    feeds = {"image": rng.random(shapes["image"], np.float32)}
    got = run_cuda(plan, feeds, emulator.EmulatedDriver("sm_90"), "sm_90", emulate=True)["logits"]
    want = reference(plan, feeds)["logits"]
    assert [layer["precision"] for layer in plan.document["layers"]][:3] == ["int8"] * 3
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-5   # the last Gemm is fp32


def test_int8_layers_lower_and_fail_clearly():
    from edgert.errors import UnsupportedError
    from edgert.kernels.cuda.plan_kernels import lower_plan
    plan, _ = manual_plan(np.random.default_rng(0))
    ctx, launches, _ = lower_plan(plan.document, "sm_87")
    assert all(launches) and "int8.cuh" in ctx.headers
    with pytest.raises(UnsupportedError, match="dp4a"):
        lower_plan(plan.document, "sm_60")
    plan.document["layers"][1]["attrs"]["int8"]["output_scale"] = 0.0   # relu
    with pytest.raises(UnsupportedError, match="'relu'.*scale"):
        lower_plan(plan.document, "sm_87")


@needs_compiler
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_int8_kernels_compile(arch):
    rng = np.random.default_rng(0)
    plan, _ = zoo_plan(rng)
    section = compile_for_plan(plan.document, arch)
    assert all(module["cubin"] for module in section["modules"])
    assert any(name.startswith("int8_gemm") for name in section["kernel_modules"])
    model, shapes = tap_model(rng)   # tap-major loads of codes, split-K
    plan = edgert.build(model, cpu_only_aliases=False, shapes=shapes, precision="int8", precision_rules=ALL_INT8,
                        calib=[feeds_for(shapes, rng)], int8_codes=True)
    section = compile_for_plan(plan.document, arch)
    assert all(module["cubin"] for module in section["modules"])
    assert any("splitk" in launch["tactic"] for layer in section["launches"] for launch in layer)


# -- real GPU -------------------------------------------------------------------------------------------------
def _gpu_driver():
    from edgert.runtime.cuda import CupyDriver
    return CupyDriver()


@pytest.mark.gpu
@pytest.mark.parametrize("sm_count", [None, 1])   # tiles for the device's SMs, and the largest tiles
def test_int8_plans_match_the_reference_on_the_gpu(sm_count):
    rng = np.random.default_rng()
    driver = _gpu_driver()
    arch = driver.arch()
    plan, shapes = zoo_plan(rng)
    for _ in range(3):
        feeds = feeds_for(shapes, rng)
        assert_same_codes(run_cuda(plan, feeds, driver, arch, emulate=False, sm_count=sm_count), reference(plan, feeds))
    model, shapes = folded_model(rng)
    plan = edgert.build(model, cpu_only_aliases=False, shapes=shapes, disabled_passes=["conv_fusion"], precision="int8",
                        precision_rules=ALL_INT8, calib=[feeds_for(shapes, rng)])
    feeds = feeds_for(shapes, rng)
    assert_same_codes(run_cuda(plan, feeds, driver, arch, emulate=False, sm_count=sm_count), reference(plan, feeds))
    plan, feeds = manual_plan(rng)
    assert_same_codes(run_cuda(plan, feeds, driver, arch, emulate=False, sm_count=sm_count), reference(plan, feeds))


@pytest.mark.gpu
def test_digits_accuracy_on_the_gpu():
    digits = pytest.importorskip("test_calibration")
    data = digits.digits.__wrapped__()
    driver = _gpu_driver()
    plan = edgert.build(data["model"], cpu_only_aliases=False, shapes=digits.SHAPES, precision="int8", calib=data["calib"])
    plan.document["kernels"] = {driver.arch(): compile_for_plan(plan.document, driver.arch())}
    gpu = CudaEngine(plan.document, driver=driver).create_execution_context()
    cpu = edgert.load(plan).create_execution_context()
    correct, batch = 0, digits.BATCH
    for start in range(0, len(data["test_x"]) - batch + 1, batch):
        feeds = {"image": np.ascontiguousarray(data["test_x"][start:start + batch])}
        logits = gpu.execute(feeds)["logits"]
        want = cpu.execute(feeds)["logits"]
        assert np.linalg.norm(logits - want) / np.linalg.norm(want) <= 1e-5
        correct += int(np.sum(logits.argmax(1) == data["test_y"][start:start + batch]))
    measured = correct / (batch * (len(data["test_x"]) // batch))
    assert abs(measured - data["fp32_accuracy"]) <= 0.01, (measured, data["fp32_accuracy"])


def _time_convolutions(emulate: bool) -> None:
    """Print the time of a 3x3 convolution + ReLU per precision (int8 / fp16 / fp32) on the GPU (or, with
    --emulate, on one tiny shape through the emulator, to check the script itself)."""
    if emulate:
        driver, shapes, repeats = emulator.EmulatedDriver("sm_90"), [(1, 8, 6, 16)], 1
    else:
        driver, repeats = _gpu_driver(), 50
        shapes = [(8, 64, 56, 64), (8, 128, 28, 128), (8, 256, 14, 256), (1, 512, 7, 512)]
    arch, rng = driver.arch(), np.random.default_rng(0)
    for n, c, size, k in shapes:
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4), helper.make_node("Relu", ["c"], ["y"])]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, (n, c, size, size))]
        graph = helper.make_graph(nodes, "bench", inputs,
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  [numpy_helper.from_array(_weights(rng, (k, c, 3, 3), 0.05), "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        feeds = {"x": rng.standard_normal((n, c, size, size)).astype(np.float32)}
        for precision in ("int8", "fp16", "fp32"):
            plan = edgert.build(model, cpu_only_aliases=False, shapes={"x": feeds["x"].shape}, precision=precision,
                                precision_rules=[{"layer": "*", "precision": precision}],
                                **({"calib": [feeds]} if precision == "int8" else {}))
            plan.document["kernels"] = {arch: compile_for_plan(plan.document, arch, emulate=emulate)}
            context = CudaEngine(plan.document, driver=driver).create_execution_context(use_graph=False)
            context.execute(feeds)
            driver.synchronize(context.stream)
            start = time.perf_counter()
            for _ in range(repeats):
                context.run()
            driver.synchronize(context.stream)
            us = (time.perf_counter() - start) / repeats * 1e6
            used = [launch["tactic"] for layer in plan.document["kernels"][arch]["launches"] for launch in layer]
            print(f"{n}x{c}x{size}x{size} -> {k} channels  {precision}: {us:9.1f} us  {used}")


if __name__ == "__main__":   # python tests/test_cuda_int8.py [--emulate]: a timing table for reports
    _time_convolutions("--emulate" in sys.argv)


# -- int8 codes between int8 layers (edgert.int8_codes) ----------------------------------------------------------
def codes_model(rng):
    """Every int8 kernel reading and writing int8 codes: convolutions (implicit GEMM with a residual add and a
    folded Relu; depthwise direct), a MatMul over the last axis, max and average pooling, a Scale, quantize and
    dequantize Reformats."""
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), node("Add", ["c2", "r1"], ["a"]),
             node("Relu", ["a"], ["r2"]), node("MatMul", ["r2", "m"], ["mm"]), node("Relu", ["mm"], ["r3"]),
             node("MaxPool", ["r3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Conv", ["p", "dw"], ["d"], pads=[1, 1, 1, 1], group=16),
             node("BatchNormalization", ["d", "g", "b", "mean", "var"], ["bn"]),
             node("AveragePool", ["bn"], ["ap"], kernel_shape=[2, 2], strides=[1, 1]), node("Sigmoid", ["ap"], ["y"]),
             node("Flatten", ["p"], ["flat"])]   # an output moved from codes: dequantized before the Flatten
    inits = {"w1": _weights(rng, (16, 3, 3, 3)), "b1": _weights(rng, 16, 0.1), "w2": _weights(rng, (16, 16, 3, 3)),
             "m": _weights(rng, (12, 12)), "dw": _weights(rng, (16, 1, 3, 3)), "g": _weights(rng, 16),
             "b": _weights(rng, 16), "mean": _weights(rng, 16), "var": rng.random(16, np.float32) + 0.5}
    shapes = {"x": (2, 3, 12, 12)}
    graph = helper.make_graph(nodes, "codes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shapes["x"])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "flat")],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shapes


@needs_cxx
@pytest.mark.parametrize("arch, sm_count", [("sm_75", 1), ("sm_90", None), ("sm_90", 1)])
def test_int8_codes_match_the_reference_on_the_emulator(arch, sm_count):
    rng = np.random.default_rng()
    model, shapes = codes_model(rng)
    options = dict(cpu_only_aliases=False, shapes=shapes, precision="int8", precision_rules=ALL_INT8,
                   calib=[feeds_for(shapes, rng)], disabled_passes=["conv_fusion"])
    plan = edgert.build(model, int8_codes=True, **options)
    tensors = plan.document["tensors"]
    assert sum("scale" in t for t in tensors) >= 8, [t["name"] for t in tensors if "scale" in t]
    feeds = feeds_for(shapes, rng)
    feeds["x"] *= 3   # saturating codes too
    got = run_cuda(plan, feeds, emulator.EmulatedDriver(arch), arch, emulate=True, sm_count=sm_count)
    launches = plan.document["kernels"][arch]["launches"]
    used = {launch["tactic"].split(" ")[0] for layer in launches for launch in layer}
    assert {"int8-quantize", "int8-dequantize", "int8-implicit-gemm", "int8-gemm", "int8-depthwise",
            "int8-pool-max", "int8-pool-average", "int8-pointwise"} <= used, used
    assert plan.document["kernels"][arch]["fused"], "a Relu folded into a convolution's epilogue"
    want = reference(plan, feeds)
    assert_same_codes(got, want)
    floats = edgert.build(model, int8_codes=False, **options)   # the float-dequant plan computes the same
    for name in ("y", "flat"):
        np.testing.assert_array_equal(reference(floats, feeds)[name], want[name])


@pytest.mark.gpu
@pytest.mark.parametrize("sm_count", [None, 1])
def test_int8_codes_match_the_reference_on_the_gpu(sm_count):
    """The emulator test of int8 codes on the real GPU, and the digits CNN's accuracy with codes."""
    rng = np.random.default_rng()
    driver = _gpu_driver()
    arch = driver.arch()
    model, shapes = codes_model(rng)
    plan = edgert.build(model, cpu_only_aliases=False, shapes=shapes, precision="int8", precision_rules=ALL_INT8,
                        calib=[feeds_for(shapes, rng)], disabled_passes=["conv_fusion"], int8_codes=True)
    for _ in range(3):
        feeds = feeds_for(shapes, rng)
        assert_same_codes(run_cuda(plan, feeds, driver, arch, emulate=False, sm_count=sm_count), reference(plan, feeds))
    check_digits_with_codes(driver, arch, sm_count)


def check_digits_with_codes(driver, arch: str, sm_count) -> None:
    """The trained digits CNN with int8 codes: all-int8 (the final Gemm writes its float logits through the
    dequantization table) bit-exact; with the default fp32 final Gemm, whose float sums run in another order
    than NumPy's (most logits 1 ulp apart, on the emulator as on the GPU), within 1e-5 normwise."""
    digits = pytest.importorskip("test_calibration")
    data = digits.digits.__wrapped__()
    feeds = {"image": np.ascontiguousarray(data["test_x"][:digits.BATCH])}
    for rules in (ALL_INT8, None):
        plan = edgert.build(data["model"], cpu_only_aliases=False, shapes=digits.SHAPES, precision="int8",
                            precision_rules=rules, calib=data["calib"], int8_codes=True)
        assert any("scale" in t for t in plan.document["tensors"])
        last = plan.document["layers"][-1]["precision"]
        assert last == ("int8" if rules else "fp32"), last
        emulate = isinstance(driver, emulator.EmulatedDriver)
        got, want = run_cuda(plan, feeds, driver, arch, emulate, sm_count), reference(plan, feeds)
        if rules:
            assert_same_codes(got, want)
        else:
            error = np.linalg.norm(got["logits"] - want["logits"]) / np.linalg.norm(want["logits"])
            assert error <= 1e-5 and np.array_equal(got["logits"].argmax(1), want["logits"].argmax(1)), error


@needs_cxx
def test_digits_with_codes_on_the_emulator():
    check_digits_with_codes(emulator.EmulatedDriver("sm_90"), "sm_90", None)


# -- the fast paths of int8 convolutions: tap-major loads (channels per group a multiple of 32), split-K ----------
def tap_model(rng):
    """Convolutions whose channels per group fill k-tiles of 32: 3x3 padded, strided and dilated with a residual
    add, 1x1, grouped (32 channels per group), and a grouped one of 16 channels per group (the table loader)."""
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2"], ["c2"], pads=[2, 2, 2, 2], strides=[2, 2], dilations=[2, 2]),
             node("Conv", ["r1", "w3"], ["c3"], strides=[2, 2]), node("Add", ["c2", "c3"], ["a"]),
             node("Relu", ["a"], ["r2"]), node("Conv", ["r2", "w4", "b4"], ["c4"], pads=[1, 1, 1, 1], group=3),
             node("Conv", ["c4", "w5"], ["c5"], pads=[1, 1, 1, 1], group=3), node("Conv", ["c5", "w6"], ["y"])]
    inits = {"w1": _weights(rng, (64, 32, 3, 3), 0.1), "b1": _weights(rng, 64, 0.1),
             "w2": _weights(rng, (96, 64, 3, 3), 0.05), "w3": _weights(rng, (96, 64, 1, 1), 0.2),
             "w4": _weights(rng, (48, 32, 3, 3), 0.1), "b4": _weights(rng, 48, 0.1),
             "w5": _weights(rng, (96, 16, 3, 3), 0.1), "w6": _weights(rng, (40, 96, 1, 1), 0.1)}
    shapes = {"x": (2, 32, 10, 11)}
    graph = helper.make_graph(nodes, "tap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shapes["x"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shapes


@needs_cxx
@pytest.mark.parametrize("arch, codes", [("sm_90", True), ("sm_75", True), ("sm_90", False)])
def test_tap_major_and_split_k_match_the_reference_on_the_emulator(arch, codes):
    rng = np.random.default_rng()
    model, shapes = tap_model(rng)
    plan = edgert.build(model, cpu_only_aliases=False, shapes=shapes, precision="int8", precision_rules=ALL_INT8,
                        calib=[feeds_for(shapes, rng)], int8_codes=codes)
    feeds = feeds_for(shapes, rng)
    got = run_cuda(plan, feeds, emulator.EmulatedDriver(arch), arch, emulate=True)
    used = [launch["tactic"] for layer in plan.document["kernels"][arch]["launches"] for launch in layer]
    assert sum(t.startswith("int8-implicit-gemm-tap") for t in used) == 5, used
    assert any(t.startswith("int8-implicit-gemm ") for t in used), used
    assert any("splitk" in t for t in used), used
    assert_same_codes(got, reference(plan, feeds))


@needs_cxx
@pytest.mark.parametrize("arch, sm_count", [("sm_75", 1), ("sm_90", None)])
def test_data_movement_carries_codes_on_the_emulator(arch, sm_count):
    """Concatenation, nearest Resize, Slice, Padding and a Flatten round trip move int8 codes on CUDA too (the
    copy kernels are dtype-generic): bit-exact with the CPU plan and with the plan without codes."""
    from test_int8_codes import _neck_model

    rng = np.random.default_rng()
    model, shape = _neck_model(rng, pooled=False)   # the output of an int8 layer: compared bit for bit
    options = dict(cpu_only_aliases=False, precision="int8", precision_rules=ALL_INT8,
                   calib=[{"x": rng.standard_normal(shape).astype(np.float32)}])
    plan = edgert.build(model, int8_codes=True, **options)
    assert plan.header["int8_codes"]["carriers"] >= 4
    assert [layer["name"] for layer in plan.layers if layer["kind"] == "Reformat"] == ["quantize(x)"]
    feeds = {"x": (rng.standard_normal(shape) * 2).astype(np.float32)}
    got = run_cuda(plan, feeds, emulator.EmulatedDriver(arch), arch, emulate=True, sm_count=sm_count)
    want = reference(plan, feeds)
    assert_same_codes(got, want)
    floats = edgert.build(model, int8_codes=False, **options)
    np.testing.assert_array_equal(reference(floats, feeds)["y"], want["y"])
