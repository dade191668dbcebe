"""The native CPU kernels (kernels/cpu/_native.c) against the NumPy kernels they stand in for.

Depthwise convolution and 2-D pooling over every geometry the C loops distinguish (3x3 one-pass windows
and the per-tap path; strides 1, 2 and 3 with their column phases; dilation; asymmetric and ceil-mode
padding; batches), outputs written over their own input, the checks on bad arguments, and whole models
with the module on and off (EDGERT_CPU_NATIVE=0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import edgert
from edgert.ir.kinds import LayerKind, PoolingType
from edgert.kernels.cpu import native
from edgert.kernels.registry import lookup
from helpers import binds_with_module_on_and_off, normwise_error, ort_run
from models import MODELS

rng = np.random.default_rng()


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def out_size(size, kernel, stride, dilation, begin, end, ceil=False):
    span = size + begin + end - (kernel - 1) * dilation - 1
    count = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (count - 1) * stride >= size + begin:   # ONNX: the last window starts inside the input or left pad
        count -= 1
    return count


def output_shape(x_shape, channels, kernel, strides, dilations, pads, ceil=False):
    spatial = [out_size(x_shape[2 + a], kernel[a], strides[a], dilations[a], pads[a], pads[2 + a], ceil)
               for a in range(2)]
    return (x_shape[0], channels, *spatial)


def test_module_is_built():
    # CI installs with a C compiler: the module must be there, or every native path below silently tests NumPy
    assert native._native is not None, native.status()
    assert native.status().startswith("native")


DEPTHWISE = [   # x shape, kernel, strides, dilations, pads (top, left, bottom, right)
    ((1, 8, 16, 16), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((2, 5, 17, 13), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((1, 6, 16, 16), (3, 3), (2, 2), (1, 1), (0, 0, 1, 1)),   # TF 'same' padding of stride 2
    ((1, 4, 12, 11), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    ((1, 3, 15, 14), (3, 3), (3, 3), (1, 1), (1, 0, 2, 1)),
    ((1, 4, 14, 14), (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),   # dilated: still the one-pass 9-tap loop
    ((1, 3, 9, 10), (3, 2), (2, 1), (1, 2), (1, 1, 1, 0)),
    ((1, 7, 6, 6), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((1, 2, 5, 5), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((1, 3, 40, 37), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),   # rows of several vectors and a partial one
    ((1, 2, 35, 41), (5, 5), (2, 2), (1, 1), (2, 2, 2, 2)),
    ((1, 5, 7, 7), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),     # MobileNet-v3's 7x7 planes: one partial vector a row
    ((2, 6, 13, 9), (3, 5), (1, 1), (1, 1), (0, 2, 2, 1)),    # narrow unit-stride planes as one flat run, uneven pads
]


def depthwise_case(x_shape, kernel, strides, dilations, pads, bias=True):
    c = x_shape[1]
    x, w = randn(*x_shape), randn(c, 1, *kernel)
    b = randn(c) if bias else None
    out = np.zeros(output_shape(x_shape, c, kernel, strides, dilations, pads), np.float32)
    attrs = {"kernel": list(kernel), "strides": list(strides), "dilations": list(dilations), "pads": list(pads),
             "group": c}
    want = np.empty_like(out)
    lookup(LayerKind.CONVOLUTION)(attrs, [x, w, b], [want])
    params = (list(kernel), list(strides), list(dilations), list(pads[:2]), list(pads[2:]))
    return x, w, b, out, want, params


@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda case: "x".join(map(str, case[0])) + f"-k{case[1]}-s{case[2]}")
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_matches_numpy(case, bias):
    x, w, b, out, want, params = depthwise_case(*case, bias=bias)
    out.fill(np.nan)
    run = native.bind_depthwise(x, w, b, out, params)
    assert run is not None
    run()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


POOLS = [   # x shape, type, kernel, strides, dilations, pads, ceil_mode, count_include_pad
    ((1, 16, 32, 32), "max", (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False, False),   # ResNet's stem pool
    ((2, 3, 11, 10), "max", (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), False, False),
    ((1, 4, 11, 11), "max", (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), True, False),
    ((1, 3, 12, 9), "max", (3, 2), (2, 1), (2, 1), (1, 0, 2, 1), False, False),
    ((1, 5, 13, 13), "max", (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), False, False),
    ((1, 4, 12, 12), "average", (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False, False),
    ((1, 4, 12, 12), "average", (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False, True),
    ((2, 3, 11, 10), "average", (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), True, True),
    ((1, 3, 10, 10), "average", (5, 5), (3, 3), (1, 1), (2, 1, 2, 1), False, False),
]


def pool_case(x_shape, kind, kernel, strides, dilations, pads, ceil, include_pad):
    x = randn(*x_shape)
    out = np.empty(output_shape(x_shape, x_shape[1], kernel, strides, dilations, pads, ceil), np.float32)
    pooling = PoolingType.MAX if kind == "max" else PoolingType.AVERAGE
    attrs = {"type": pooling.value, "kernel": list(kernel), "strides": list(strides), "dilations": list(dilations),
             "pads": list(pads), "ceil_mode": int(ceil), "count_include_pad": int(include_pad)}
    return x, out, attrs


def reference_pool(x, out_shape, attrs):
    want = np.empty(out_shape, np.float32)
    lookup(LayerKind.POOLING)(attrs, [x], [want])
    return want


def bind_pool(x, out, attrs):
    from edgert.kernels.cpu.pooling import _bind_windows
    return _bind_windows(x, attrs, out, PoolingType(attrs["type"]), workspace=None)


@pytest.mark.parametrize("case", POOLS, ids=lambda case: f"{case[1]}-" + "x".join(map(str, case[0])) + f"-k{case[2]}")
def test_pooling_matches_numpy(case):
    x, out, attrs = pool_case(*case)
    want = reference_pool(x, out.shape, attrs)
    out.fill(np.nan)
    bind_pool(x, out, attrs)()   # the native path needs no scratch: no workspace handed over
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_max_pooling_propagates_nan():
    x, out, attrs = pool_case((1, 2, 8, 8), "max", (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False, False)
    x[0, 1, 3, 4] = np.nan
    bind_pool(x, out, attrs)()
    want = reference_pool(x, out.shape, attrs)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    assert np.isnan(out).sum() == 2   # the two 3x3/2 windows (rows 1-3 and 3-5, columns 3-5) that cover (3, 4)


def over_input(x, out_shape):
    """An output array that starts where x starts, in x's own memory."""
    return np.frombuffer(x.data, np.float32, count=math.prod(out_shape)).reshape(out_shape)


@pytest.mark.parametrize("case", [POOLS[0], POOLS[1], POOLS[5]], ids=["max3x3s2", "max2x2s2", "avg3x3s2"])
def test_pooling_over_its_own_input(case):
    x, out, attrs = pool_case(*case)
    want = reference_pool(x, out.shape, attrs)
    inplace = over_input(x, out.shape)
    bind_pool(x, inplace, attrs)()
    np.testing.assert_allclose(inplace, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [DEPTHWISE[0], DEPTHWISE[1]], ids=["stride1", "stride2"])
def test_depthwise_over_its_own_input(case):
    x, w, b, out, want, params = depthwise_case(*case)
    inplace = over_input(x, out.shape)
    native.bind_depthwise(x, w, b, inplace, params)()
    np.testing.assert_allclose(inplace, want, rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_errors_not_crashes():
    x, w, b, out, _, params = depthwise_case(*DEPTHWISE[0])
    kernel, strides, dilations, begins, _ = params
    geometry = native._geometry(x, out.shape[2:], x.shape[1], kernel, strides, dilations, begins)
    memory = np.zeros(x.size + 1, np.float32)
    with pytest.raises(ValueError, match="output overlapping its input"):   # one element past the input's start
        native._native.depthwise_conv2d(memory[:-1], w, b, memory[1:], geometry)
    with pytest.raises(ValueError, match="weights: expected"):
        native._native.depthwise_conv2d(x, w[:-1], b, out, geometry)
    with pytest.raises(ValueError, match="geometry"):
        native._native.pool2d(x, out, None, geometry[:-8])
    with pytest.raises(TypeError):
        native._native.pool2d(x, x.astype(np.float64).tobytes(), None, geometry)   # read-only output


def test_arrays_it_does_not_cover_are_left_to_numpy():
    x, w, b, out, _, params = depthwise_case(*DEPTHWISE[0])
    assert native.bind_depthwise(x.astype(np.float64), w.astype(np.float64), None, out.astype(np.float64),
                                 params) is None
    assert native.bind_depthwise(x[:, :, :, ::-1], w, b, out, params) is None   # not contiguous


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet", "unet"])
def test_models_match_with_and_without_the_module(name, monkeypatch):
    case = MODELS[name]
    model = case.build()
    feeds = {k: randn(*shape) for k, shape in case.shapes.items()}
    engine = edgert.load(edgert.build(model).to_bytes())
    want, outputs = ort_run(model, feeds), {}
    for switch in ("1", "0"):   # layers bind their kernels when the context is created
        monkeypatch.setenv(native.ENV_SWITCH, switch)
        outputs[switch] = engine.create_execution_context().execute(feeds)
        for key, value in want.items():
            assert normwise_error(outputs[switch][key], value) <= 1e-5, (switch, key)
    for key in outputs["1"]:
        np.testing.assert_allclose(outputs["1"][key], outputs["0"][key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [((1, 3, 64, 64), (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),
                                  ((1, 16, 16, 16), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
                                  ((1, 5, 13, 11), (3, 2), (2, 3), (2, 1), (0, 1, 2, 0))],
                         ids=["stem7x7s2", "3x3", "odd"])
def test_im2col_convolution_matches_numpy(case, monkeypatch):
    from edgert.kernels.cpu import convolution_prepared
    from edgert.kernels.cpu.convolution_prepared import prepare_convolution
    from edgert.runtime.engine import Workspace
    monkeypatch.setattr(convolution_prepared, "_direct_pays", lambda *args: False)   # the im2col path, not direct
    x_shape, kernel, strides, dilations, pads = case
    x, w, b = randn(*x_shape), randn(8, x_shape[1], *kernel), randn(8)
    out = np.full(output_shape(x_shape, 8, kernel, strides, dilations, pads), np.nan, np.float32)
    attrs = {"kernel": list(kernel), "strides": list(strides), "dilations": list(dilations), "pads": list(pads)}
    want = np.empty_like(out)
    lookup(LayerKind.CONVOLUTION)(attrs, [x, w, b], [want])

    class Engine:   # Workspace needs the engine's constants (none here: weights are bound per run) and a cache
        constants, derived = {}, {}
    run = prepare_convolution(attrs, [x, w, b], [out], Workspace(Engine()))
    run()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    params = (list(kernel), list(strides), list(dilations), list(pads[:2]), list(pads[2:]))
    rows, positions = x_shape[1] * math.prod(kernel), math.prod(out.shape[2:])
    memory = np.zeros(x.size + rows * positions, np.float32)   # columns sharing the input's last element
    inside = memory[:x.size].reshape(x.shape)
    with pytest.raises(ValueError, match="columns overlap the input"):
        native.bind_im2col(inside, memory[x.size - 1:x.size - 1 + rows * positions].reshape(rows, positions),
                           out.shape[2:], params)()


@pytest.mark.parametrize("shape", [(576, 49), (96, 196), (16, 3136), (3, 1), (8, 130), (5, 127)])
def test_row_means_match_float64(shape):
    planes, out = randn(*shape), np.full(shape[:1], np.nan, np.float32)
    native.bind_row_means(planes, out)()
    assert normwise_error(out, planes.astype(np.float64).mean(axis=1)) <= 1e-6


def test_row_means_bad_calls_are_errors():
    planes = randn(4, 10)
    with pytest.raises(ValueError, match="one output float per row"):
        native._native.row_means(planes, np.empty(3, np.float32), 10)
    with pytest.raises(ValueError, match="outside"):
        native._native.row_means(planes, np.empty(4, np.float32), 10, 2, 3)
    shared = np.zeros(44, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        native._native.row_means(shared[:40], shared[38:42], 10)
    assert native.bind_row_means(planes.astype(np.float64), np.empty(4)) is None
    assert native.bind_row_means(planes[:, ::2], np.empty(4, np.float32)) is None


def test_global_average_pool_model_against_onnxruntime(monkeypatch):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Relu", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "gap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 72, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 72, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calls = binds_with_module_on_and_off(monkeypatch, model, {"x": randn(1, 72, 28, 28)}, "y", "bind_row_means")
    assert calls == 2   # asked both times; the module is off the second time
