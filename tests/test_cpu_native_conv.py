"""The native direct convolution (kernels/cpu/conv_ukernels.c through _native.conv2d_direct) against the NumPy kernel.

Geometries the kernel distinguishes: rows narrower than, equal to and wider than its vector spans, output channels
not a multiple of its 8-channel blocks, strides 1-2 with their column phases, dilation, asymmetric padding, 2x2 /
3x3 / 5x5 / 7x7 kernels, with and without bias, split by output rows over a pool of 3; the prepare hook's choice
between it and im2col; bad calls as errors; and whole models against onnxruntime with the module on and off.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu import convolution_prepared, native
from edgert.kernels.registry import lookup
from edgert.runtime.engine import Workspace
from helpers import binds_with_module_on_and_off, normwise_error
from test_cpu_native import output_shape, randn
from test_cpu_native_threads import pool_of_three  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(native._native is None, reason="the native module is not built")

CASES = [   # x shape, output channels, kernel, strides, dilations, pads (top, left, bottom, right)
    ((1, 3, 64, 64), 16, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),     # a YOLO-style stem
    ((1, 3, 45, 47), 13, (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),
    ((1, 16, 20, 37), 24, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),    # 37: two spans and a partial vector
    ((1, 8, 9, 9), 7, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),        # fewer channels than a block
    ((1, 5, 17, 33), 9, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0)),
    ((1, 4, 15, 14), 10, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),
    ((1, 6, 16, 16), 8, (3, 3), (2, 2), (1, 1), (0, 0, 1, 1)),      # TF 'same' padding of stride 2
    ((1, 3, 13, 12), 5, (3, 2), (2, 1), (1, 2), (1, 0, 2, 1)),
    ((1, 2, 3, 1), 3, (3, 1), (1, 1), (1, 1), (1, 0, 1, 0)),        # one column
    ((1, 70, 12, 19), 9, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),     # 630 taps: two input-channel blocks
    ((1, 40, 11, 40), 12, (5, 5), (2, 2), (1, 1), (2, 2, 2, 2)),    # 1000 taps, rows of two spans
]


def workspace(*constants):
    """A Workspace over an engine holding ``constants`` (the direct kernel packs constant weights only)."""
    engine = type("Engine", (), {"constants": dict(enumerate(constants)), "derived": {}})
    return Workspace(engine)


def direct_case(x_shape, channels, kernel, strides, dilations, pads, bias=True):
    x, w = randn(*x_shape), randn(channels, x_shape[1], *kernel)
    b = randn(channels) if bias else None
    out = np.full(output_shape(x_shape, channels, kernel, strides, dilations, pads), np.nan, np.float32)
    attrs = {"kernel": list(kernel), "strides": list(strides), "dilations": list(dilations), "pads": list(pads)}
    want = np.empty_like(out)
    lookup(LayerKind.CONVOLUTION)(attrs, [x, w, b], [want])
    params = (list(kernel), list(strides), list(dilations), list(pads[:2]), list(pads[2:]))
    return x, w, b, out, want, attrs, params


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-m{c[1]}-k{c[2]}-s{c[3]}")
@pytest.mark.parametrize("bias", [True, False])
def test_direct_matches_numpy(case, bias):
    x, w, b, out, want, _, params = direct_case(*case, bias=bias)
    run = native.bind_conv_direct(x, native.pack_direct_weights(w), b, out, params)
    assert run is not None
    run()
    assert normwise_error(out, want) <= 1e-5
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES[:4], ids=lambda c: "x".join(map(str, c[0])))
def test_direct_split_by_rows(case, pool_of_three):
    x, w, b, out, want, _, params = direct_case(*case)   # the most row ranges over native_parallel.c's 3 threads
    split_before = native._native.parallel_stats()[1]
    native.bind_conv_direct(x, native.pack_direct_weights(w), b, out, params)()
    assert native._native.parallel_stats()[1] > split_before
    assert normwise_error(out, want) <= 1e-5


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


EPILOGUES = {   # name: (epilogue steps, what they compute from the convolution's result and the residual)
    "relu": ([{"op": "activation", "type": "relu"}], lambda y, r: np.maximum(y, 0)),
    "silu-clip": ([{"op": "activation", "type": "swish", "alpha": 1.0},
                   {"op": "activation", "type": "clip", "alpha": -0.2, "beta": 1.5}],
                  lambda y, r: np.clip(y * _sigmoid(y), -0.2, 1.5)),
    "hardswish": ([{"op": "activation", "type": "hard_swish"}], lambda y, r: y * np.clip(y / 6 + 0.5, 0, 1)),
    "add-relu": ([{"op": "add", "input": 3}, {"op": "activation", "type": "relu"}], lambda y, r: np.maximum(y + r, 0)),
    "silu-add": ([{"op": "activation", "type": "swish", "alpha": 1.0}, {"op": "add", "input": 3}],
                 lambda y, r: y * _sigmoid(y) + r),
}


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_prepare_hook_uses_it_where_it_pays(direct, epilogue, monkeypatch):
    monkeypatch.setattr(convolution_prepared, "_direct_pays", lambda *args: direct)
    calls = []
    real = native.bind_conv_direct
    monkeypatch.setattr(native, "bind_conv_direct", lambda *args: calls.append(args[-1]) or real(*args))
    x, w, b, out, want, attrs, _ = direct_case(*CASES[2])
    steps, expected = EPILOGUES[epilogue]
    residual = randn(*out.shape)
    attrs["epilogue"] = steps
    inputs = [x, w, b, residual]
    convolution_prepared.prepare_convolution(attrs, inputs, [out], workspace(w, b))()
    assert bool(calls) == direct
    if direct:   # leading activations run inside the kernel, tile by tile; what follows a residual add stays apart
        assert (calls[0] is None) == (epilogue == "add-relu")
    assert normwise_error(out, expected(want.astype(np.float64), residual)) <= 1e-5
    if direct:   # weights that are no constant (they may change between runs) are never packed once
        calls.clear()
        out.fill(np.nan)
        convolution_prepared.prepare_convolution(attrs, inputs, [out], workspace())()
        assert not calls and normwise_error(out, expected(want.astype(np.float64), residual)) <= 1e-5


def test_malformed_epilogue_programs_are_errors():
    x, w, b, out, _, _, params = direct_case(*CASES[0])
    packed = native.pack_direct_weights(w)
    geometry = native._geometry(x, out.shape[2:], x.shape[1], *params[:4])
    good = native.activation_program([{"type": "relu"}])
    for program in (good[:-1], native.encode_program([{"kind": "Activation", "attrs": {"type": "relu"}, "args": [1]}]),
                    good * 40):
        with pytest.raises(ValueError, match="epilogue program"):
            native._native.conv2d_direct(x, packed, b, out, geometry, out.shape[1], 0, -1, program)


def test_direct_pays_for_full_rows_or_unit_strides_and_few_taps():
    span = native.direct_span()
    wide, narrow = np.empty((1, 8, 1, 4 * span)), np.empty((1, 8, 1, span // 2 + 1))
    x, w = np.empty((1, 64, 4, 4)), np.empty((8, 64, 3, 3))
    pays = convolution_prepared._direct_pays
    assert pays(x, w, wide, (2, 2)) and pays(x, w, wide)
    assert not pays(x, w, narrow, (2, 2))   # half its lanes idle
    assert pays(x, w, narrow, (1, 1))       # one flat run over padded rows
    assert not pays(x, np.empty((8, 256, 3, 3)), wide)   # its taps outgrow L1: GEMM's


def test_bad_calls_are_errors():
    x, w, b, out, _, _, params = direct_case(*CASES[0])
    packed = native.pack_direct_weights(w)
    geometry = native._geometry(x, out.shape[2:], x.shape[1], *params[:4])
    call = native._native.conv2d_direct
    with pytest.raises(ValueError, match="packed weights"):
        call(x, packed[:-1], b, out, geometry, out.shape[1])
    with pytest.raises(ValueError, match="output"):
        call(x, packed, b[:-1], out, geometry, out.shape[1] - 1)   # the same blocks, fewer channels
    with pytest.raises(ValueError, match="outside the output"):
        call(x, packed, b, out, geometry, out.shape[1], 1, out.shape[2])
    with pytest.raises(ValueError, match="bias"):
        call(x, packed, b[:-1], out, geometry, out.shape[1])
    shared = np.zeros(x.size + out.size, np.float32)
    with pytest.raises(ValueError, match="overlaps the input"):
        call(shared[:x.size].reshape(x.shape), packed, b, shared[x.size - 1:-1].reshape(out.shape), geometry,
             out.shape[1])
    assert native.bind_conv_direct(x.astype(np.float64), packed, b, out, params) is None
    assert native.bind_conv_direct(x[:, :, :, ::-1], packed, b, out, params) is None


def conv_silu_model(channels, size, out_channels, kernel, stride):
    """Conv -> Sigmoid -> Mul (SiLU, as YOLO exports it) -> Conv 3x3."""
    rng = np.random.default_rng()
    weights = [helper.make_tensor(name, TensorProto.FLOAT, shape, rng.standard_normal(shape).astype(np.float32)
                                  .ravel() / np.sqrt(np.prod(shape[1:])))
               for name, shape in (("w1", (out_channels, channels, kernel, kernel)), ("b1", (out_channels,)),
                                   ("w2", (out_channels, out_channels, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[kernel // 2] * 4, strides=[stride] * 2),
             helper.make_node("Sigmoid", ["c1"], ["s1"]), helper.make_node("Mul", ["c1", "s1"], ["a1"]),
             helper.make_node("Conv", ["a1", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "conv_silu", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                   [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, None, None])],
                              weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("shape", [(3, 96, 16, 3, 2), (24, 40, 20, 3, 1), (6, 64, 11, 5, 1)],
                         ids=["stem", "mid", "5x5"])
def test_models_against_onnxruntime_with_and_without_the_module(shape, monkeypatch):
    model = conv_silu_model(*shape)
    onnx.checker.check_model(model)
    feeds = {"x": randn(1, shape[0], shape[1], shape[1])}
    assert binds_with_module_on_and_off(monkeypatch, model, feeds, "y", "bind_conv_direct")   # the first conv at least
