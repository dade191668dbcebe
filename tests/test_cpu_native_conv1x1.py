"""The native pointwise (1x1) convolution (kernels/cpu/conv_ukernels.c through _native.conv2d_pointwise) against
float64 products: column counts below, at and past the vector spans and the 256-column tiles, output channels not a
multiple of the 8-channel blocks, input channels over several 256-channel blocks, with and without bias, the fused
epilogue (activations, a residual add), split by columns and by output channels over a pool of three; the prepare
hook's choice (strides 1 and 2, the squeeze-excite 1x1 ones left to BLAS); bad calls as errors; a MobileNet-v3 style
block against onnxruntime with the module on and off.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgert.kernels.cpu import convolution_prepared, native
from helpers import binds_with_module_on_and_off, normwise_error
from test_cpu_native import randn
from test_cpu_native_conv import EPILOGUES, workspace
from test_cpu_native_threads import pool_of_three  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(native._native is None, reason="the native module is not built")

SHAPES = [(16, 3136, 96), (3, 5, 7), (40, 45, 13), (300, 70, 20), (576, 49, 96), (24, 257, 8), (72, 784, 24)]


def product(w, x, b):
    want = w.astype(np.float64) @ x
    return want if b is None else want + b[:, None]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "c{}-p{}-m{}".format(*s))
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_matches_float64(shape, bias):
    channels, columns, out_channels = shape
    x, w = randn(channels, columns), randn(out_channels, channels)
    b = randn(out_channels) if bias else None
    out = np.full((out_channels, columns), np.nan, np.float32)
    run = native.bind_conv_pointwise(x, native.pack_direct_weights(w[:, :, None, None]), b, out)
    assert run is not None
    run()
    assert normwise_error(out, product(w, x, b)) <= 1e-6


@pytest.mark.parametrize("epilogue", EPILOGUES)
@pytest.mark.parametrize("shape", [(24, 600, 40), (96, 49, 200)], ids=["by-columns", "by-channels"])
def test_epilogue_and_split_over_the_pool(epilogue, shape, pool_of_three):
    channels, columns, out_channels = shape
    x, w, b, residual = randn(channels, columns), randn(out_channels, channels), randn(out_channels), \
        randn(out_channels, columns)
    steps, expected = EPILOGUES[epilogue]
    out = np.full((out_channels, columns), np.nan, np.float32)
    records, fused, rest = native.epilogue_program(steps, [x, w, b, residual], out)
    assert rest == []   # every step here is fused
    assert (fused is residual) == any(step["op"] == "add" for step in steps)
    split_before = native._native.parallel_stats()[1]
    native.bind_conv_pointwise(x, native.pack_direct_weights(w[:, :, None, None]), b, out, records, fused)()
    assert native._native.parallel_stats()[1] > split_before   # split into parts over native_parallel.c's threads
    assert normwise_error(out, expected(product(w, x, b), residual)) <= 1e-5


def test_epilogue_program_stops_at_what_it_cannot_fuse():
    out, same = np.empty((4, 8), np.float32), np.empty((4, 8), np.float32)
    bias_like = np.empty((4, 1), np.float32)
    steps = [{"op": "activation", "type": "relu"}, {"op": "add", "input": 0}, {"op": "add", "input": 1}]
    records, residual, rest = native.epilogue_program(steps, [same, bias_like], out)
    assert residual is same and rest == steps[2:]   # the broadcast add stays with NumPy
    records, residual, rest = native.epilogue_program(steps[:2], [out], out)   # the output itself: not fused
    assert residual is None and rest == steps[1:2] and records is not None
    assert native.epilogue_program([{"op": "activation", "type": "thresholded_relu"}], [], out) == \
        (None, None, [{"op": "activation", "type": "thresholded_relu"}])


def conv_case(channels, size, out_channels, stride=1, bias=True):
    x, w = randn(1, channels, size, size), randn(out_channels, channels, 1, 1)
    b = randn(out_channels) if bias else None
    osize = (size - 1) // stride + 1
    out = np.full((1, out_channels, osize, osize), np.nan, np.float32)
    attrs = {"kernel": [1, 1], "strides": [stride] * 2, "dilations": [1, 1], "pads": [0] * 4}
    want = product(w[:, :, 0, 0], x[0, :, ::stride, ::stride].reshape(channels, -1), b).reshape(out.shape)
    return x, w, b, out, want, attrs


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_prepare_hook_uses_it(stride, epilogue, monkeypatch):
    calls = []
    real = native.bind_conv_pointwise
    monkeypatch.setattr(native, "bind_conv_pointwise", lambda *args: calls.append(args) or real(*args))
    x, w, b, out, want, attrs = conv_case(24, 29, 40, stride)
    steps, expected = EPILOGUES[epilogue]
    residual = randn(*out.shape)
    attrs["epilogue"] = steps
    convolution_prepared.prepare_convolution(attrs, [x, w, b, residual], [out], workspace(w, b))()
    assert len(calls) == 1 and (calls[0][5] is not None) == any(step["op"] == "add" for step in steps)
    assert normwise_error(out, expected(want, residual)) <= 1e-5
    calls.clear()   # weights that are no constant are never packed once: BLAS
    out.fill(np.nan)
    convolution_prepared.prepare_convolution(attrs, [x, w, b, residual], [out], workspace())()
    assert not calls and normwise_error(out, expected(want, residual)) <= 1e-5


def test_squeeze_excite_sizes_stay_with_blas(monkeypatch):
    calls = []
    monkeypatch.setattr(native, "bind_conv_pointwise", lambda *args: calls.append(args))
    x, w, b, out, want, attrs = conv_case(96, 1, 24)   # after a global pool: one column
    convolution_prepared.prepare_convolution(attrs, [x, w, b], [out], workspace(w, b))()
    assert not calls and normwise_error(out, want) <= 1e-5


def test_bad_calls_are_errors():
    x, w, b = randn(16, 40), randn(12, 16), randn(12)
    packed, out = native.pack_direct_weights(w[:, :, None, None]), np.empty((12, 40), np.float32)
    call = native._native.conv2d_pointwise
    with pytest.raises(ValueError, match="packed weights"):
        call(x, packed[:, :-1].copy(), b, out, 16, 12)
    with pytest.raises(ValueError, match="input"):
        call(x[:-1].copy(), packed, b, out, 16, 12)
    with pytest.raises(ValueError, match="bias"):
        call(x, packed, b[:-1], out, 16, 12)
    with pytest.raises(ValueError, match="multiple of 8"):
        call(x, packed, b, out, 16, 12, 4, 8)
    with pytest.raises(ValueError, match="outside"):
        call(x, packed, b, out, 16, 12, 0, -1, 30, 20)
    with pytest.raises(ValueError, match="residual without"):
        call(x, packed, b, out, 16, 12, 0, -1, 0, -1, None, out.copy())
    good = native.activation_program([{"type": "relu"}])
    with pytest.raises(ValueError, match="epilogue program"):
        call(x, packed, b, out, 16, 12, 0, -1, 0, -1, good[:-1])
    shared = np.zeros(16 * 40 + 12 * 40, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        call(shared[:640].reshape(16, 40), packed, b, shared[1:481].reshape(12, 40), 16, 12)
    assert native.bind_conv_pointwise(x.astype(np.float64), packed, b, out) is None
    assert native.bind_conv_pointwise(x[:, ::-1], packed, b, out) is None


def mobilenet_block_model(channels=16, size=28, expanded=72, out_channels=16):
    """1x1 expand + HardSwish, depthwise 5x5, squeeze-excite, 1x1 project + residual add (MobileNet-v3)."""
    rng = np.random.default_rng()

    def tensor(name, *shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape,
                                  (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]) or 1)).astype(np.float32)
                                  .ravel())
    weights = [tensor("we", expanded, channels, 1, 1), tensor("be", expanded), tensor("wd", expanded, 1, 5, 5),
               tensor("ws1", 24, expanded, 1, 1), tensor("bs1", 24), tensor("ws2", expanded, 24, 1, 1),
               tensor("bs2", expanded), tensor("wp", out_channels, expanded, 1, 1), tensor("bp", out_channels)]
    nodes = [helper.make_node("Conv", ["x", "we", "be"], ["e"]), helper.make_node("HardSwish", ["e"], ["ea"]),
             helper.make_node("Conv", ["ea", "wd"], ["d"], pads=[2] * 4, group=expanded),
             helper.make_node("GlobalAveragePool", ["d"], ["p"]), helper.make_node("Conv", ["p", "ws1", "bs1"], ["s1"]),
             helper.make_node("Relu", ["s1"], ["s1a"]), helper.make_node("Conv", ["s1a", "ws2", "bs2"], ["s2"]),
             helper.make_node("HardSigmoid", ["s2"], ["s2a"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["d", "s2a"], ["se"]), helper.make_node("Conv", ["se", "wp", "bp"], ["q"]),
             helper.make_node("Add", ["q", "x"], ["y"])]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, size, size])],
                              weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_mobilenet_block_against_onnxruntime_with_and_without_the_module(monkeypatch):
    model = mobilenet_block_model()
    onnx.checker.check_model(model)
    calls = binds_with_module_on_and_off(monkeypatch, model, {"x": randn(1, 16, 28, 28)}, "y", "bind_conv_pointwise")
    assert calls >= 2   # the expand and project convolutions
