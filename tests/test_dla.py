"""The DLA simulator: FP16 and INT8 numerics on the reference kernels, Reformat, and whole partitioned models."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgert.errors import DeviceError
from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup
from edgert.onnx.importer import import_model
from edgert.partitioner.assign import partition
from edgert.partitioner.capabilities import CapabilityTable
from edgert.passes import optimize
from edgert.targets.dla import DLA_KINDS, kernel_for, quantize, quantize_weights, to_fp16
from edgert.targets.simulate import run_graph
from helpers import normwise_error, ort_run, random_inputs
from models import MODELS

RNG = np.random.default_rng()
CONV = {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1}


def dla(kind):
    return lookup(kind, "dla")


def conv_inputs(c_in=8, c_out=16, size=10):
    x = RNG.standard_normal((1, c_in, size, size)).astype(np.float32)
    w = (RNG.standard_normal((c_out, c_in, 3, 3)) * 0.3).astype(np.float32)
    b = RNG.standard_normal(c_out).astype(np.float32)
    return x, w, b


def cpu(kind, attrs, inputs, shape, dtype=np.float32):
    out = np.empty(shape, dtype)
    lookup(kind, "cpu")(attrs, inputs, [out])
    return out


@pytest.mark.parametrize("name", ["resnet", "mobilenetv2", "unet"])
def test_partitioned_models_in_fp16_match_fp32_reference(name):
    case = MODELS[name]
    model = case.build()
    graph = import_model(model, case.shapes)
    optimize(graph)
    partition(graph, "jetson-agx-orin", dla_core=0, gpu_fallback=True)
    assert sum(n.device == "dla:0" for n in graph.nodes) > len(graph.nodes) // 2
    feeds = random_inputs(model, case.shapes)
    reference = ort_run(model, feeds)
    got = run_graph(graph, feeds)
    for key, ref in reference.items():
        error = normwise_error(got[key], ref)
        assert 1e-7 < error <= 1e-2, (key, error)  # FP16 is visible, and small


def test_every_table_kind_has_a_dla_kernel():
    for version in (1, 2):
        for kind in CapabilityTable.for_version(version).layer_rules:
            assert kind in DLA_KINDS and lookup(kind, "dla") is not None
    assert kernel_for(LayerKind.CONVOLUTION, "dla:1") is dla(LayerKind.CONVOLUTION)
    assert kernel_for(LayerKind.CONVOLUTION, "gpu") is lookup(LayerKind.CONVOLUTION, "cpu")
    assert kernel_for(LayerKind.REFORMAT, "gpu") is dla(LayerKind.REFORMAT)


def test_fp16_storage_rounding_and_saturation():
    x = np.array([[[[1.0 + 2 ** -12, 70000.0, -1e6, 3.14159265]]]], np.float32)
    out = np.empty_like(x)
    dla(LayerKind.ACTIVATION)({"type": "relu"}, [x], [out])
    assert out[0, 0, 0, 0] == 1.0  # 1 + 2^-12 is not an FP16 number: rounded
    assert out[0, 0, 0, 1] == 65504.0 and out[0, 0, 0, 2] == 0.0  # saturated, not inf
    assert np.array_equal(out, out.astype(np.float16).astype(np.float32))


def test_fp16_elementwise_arithmetic_rounds_each_step():
    a = np.full((1, 1, 1, 4), 2048.0, np.float32)
    b = np.ones((1, 1, 1, 4), np.float32)
    out = np.empty_like(a)
    dla(LayerKind.ELEMENTWISE)({"op": "sum"}, [a, b], [out])
    assert np.all(out == 2048.0)  # 2049 is not representable in FP16 (spacing 2 above 2048)


def test_convolution_accumulates_in_fp32_then_rounds():
    x, w, b = conv_inputs()
    out = np.empty((1, 16, 10, 10), np.float32)
    dla(LayerKind.CONVOLUTION)(CONV, [x, w, b], [out])
    halves = [to_fp16(t).astype(np.float32) for t in (x, w, b)]
    expected = cpu(LayerKind.CONVOLUTION, CONV, halves, out.shape).astype(np.float16).astype(np.float32)
    assert np.array_equal(out, expected)
    assert normwise_error(out, cpu(LayerKind.CONVOLUTION, CONV, [x, w, b], out.shape)) < 1e-3


def test_matrix_multiply_and_pointwise_in_fp16():
    a = RNG.standard_normal((2, 64)).astype(np.float32)
    w = RNG.standard_normal((10, 64)).astype(np.float32)
    out = np.empty((2, 10), np.float32)
    dla(LayerKind.MATRIX_MULTIPLY)({"trans_a": False, "trans_b": True}, [a, w], [out])
    expected = (to_fp16(a).astype(np.float32) @ to_fp16(w).astype(np.float32).T).astype(np.float16)
    assert np.array_equal(out, expected.astype(np.float32))
    program = [{"kind": "ElementWise", "attrs": {"op": "sum"}, "args": [0, 1]},
               {"kind": "Activation", "attrs": {"type": "relu"}, "args": [2]}]
    x, y = (RNG.standard_normal((1, 4, 6, 6)).astype(np.float32) for _ in range(2))
    out = np.empty_like(x)
    dla(LayerKind.POINTWISE)({"program": program}, [x, y], [out])
    assert normwise_error(out, np.maximum(x + y, 0)) < 1e-3
    assert np.array_equal(out, out.astype(np.float16).astype(np.float32))


def test_fused_epilogue_runs_on_the_fp16_result():
    x, w, b = conv_inputs()
    residual = RNG.standard_normal((1, 16, 10, 10)).astype(np.float32)
    attrs = dict(CONV, epilogue=[{"op": "add", "input": 3}, {"op": "activation", "type": "relu", "alpha": 0.0,
                                                                "beta": 0.0}])
    out = np.empty((1, 16, 10, 10), np.float32)
    dla(LayerKind.CONVOLUTION)(attrs, [x, w, b, residual], [out])
    reference = np.maximum(cpu(LayerKind.CONVOLUTION, CONV, [x, w, b], out.shape) + residual, 0)
    assert 0 < normwise_error(out, reference) < 1e-2


def test_int8_convolution_with_explicit_scales():
    x, w, b = conv_inputs()
    s_in, s_out = float(np.abs(x).max() / 127), 0.05
    attrs = dict(CONV, int8={"input_scales": [s_in], "output_scale": s_out})
    out = np.empty((1, 16, 10, 10), np.float32)
    dla(LayerKind.CONVOLUTION)(attrs, [x, w, b], [out])
    # reference: quantize x per tensor and w per output channel, accumulate exactly, rescale, saturate
    qx = np.clip(np.rint(x / s_in), -128, 127)
    s_w = np.abs(w).reshape(16, -1).max(axis=1) / 127
    qw = np.clip(np.rint(w / s_w[:, None, None, None]), -127, 127)
    acc = cpu(LayerKind.CONVOLUTION, CONV, [qx, qw, None], out.shape, np.float64)
    real = acc * s_in * s_w[None, :, None, None] + b[None, :, None, None]
    expected = np.clip(np.rint(real / s_out), -128, 127) * s_out
    assert np.allclose(out, expected, atol=1e-6)
    assert out.max() <= 127 * s_out + 1e-6 and out.min() >= -128 * s_out - 1e-6
    assert np.abs(real).max() > 128 * s_out  # the scale is small enough that some outputs saturate
    quantized = out / s_out
    assert np.allclose(quantized, np.rint(quantized), atol=1e-4)  # every output is an INT8 step


def test_int8_saturates_and_needs_scales():
    x = np.linspace(-10, 10, 16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = np.empty_like(x)
    dla(LayerKind.ACTIVATION)({"type": "relu", "int8": {"input_scales": [0.05], "output_scale": 0.05}}, [x], [out])
    assert out.max() == pytest.approx(127 * 0.05) and out.min() == 0.0
    with pytest.raises(DeviceError, match="no scale for its input 0"):
        dla(LayerKind.ACTIVATION)({"type": "relu", "int8": {"output_scale": 0.05}}, [x], [out])
    assert np.array_equal(quantize(np.array([1000.0, -1000.0]), 1.0), [127.0, -128.0])
    w = np.array([[1.0, -0.5], [0.01, 0.02]])
    assert np.allclose(quantize_weights(w, 0), [[1.0, -64 / 127], [0.01, 0.02]], atol=1e-4)


def test_reformat_kernel():
    x = np.array([1.0 + 2 ** -12, 2.5], np.float32)
    out = np.empty_like(x)
    dla(LayerKind.REFORMAT)({"from_device": "gpu", "to_device": "dla:0", "to_precision": "fp16"}, [x], [out])
    assert out[0] == 1.0 and out[1] == 2.5
    dla(LayerKind.REFORMAT)({"from_device": "dla:0", "to_device": "gpu", "to_precision": "fp16"}, [x], [out])
    assert np.array_equal(out, x)
    dla(LayerKind.REFORMAT)({"to_device": "dla:0", "to_precision": "int8", "scale": 0.5}, [x], [out])
    assert np.array_equal(out, [1.0, 2.5])  # 2.5 / 0.5 = 5 steps; 1.0002 rounds to 2 steps


def test_kernels_do_not_modify_inputs():
    x, w, b = conv_inputs()
    copies = [t.copy() for t in (x, w, b)]
    dla(LayerKind.CONVOLUTION)(CONV, [x, w, b], [np.empty((1, 16, 10, 10), np.float32)])
    assert all(np.array_equal(a, c) for a, c in zip((x, w, b), copies))


def test_simulator_imports_stay_runtime_safe():
    code = ("import sys, edgert.targets.dla, edgert.targets.simulate, edgert.targets.timing; "
            "bad = [m for m in sys.modules if m == 'onnx' or m.startswith(('onnx.', 'edgert.onnx', 'edgert.passes', "
            "'edgert.partitioner', 'edgert.builder'))]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
