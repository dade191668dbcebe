"""The native fused per-element programs (kernels/cpu/pointwise_ukernels.h) against float64 NumPy.

Every opcode alone (random data over a wide range, tiny values, NaN and saturating extremes, scalar
operands), chains as the fusion pass makes them (GELU's Div -> Erf -> Add -> Mul -> Mul, SiLU, HardSwish),
outputs over their own input, programs split over the worker pool, malformed programs, and whole models with
GELU / SiLU / Mish against onnxruntime with the module on and off.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgert
from edgert.kernels.cpu import native, threads
from helpers import normwise_error, ort_run
from test_cpu_native_threads import pool_of_three  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(native._native is None, reason="the native module is not built")
rng = np.random.default_rng()
_erf = np.vectorize(math.erf)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


ACTIVATIONS = {   # type -> (float64 reference, alpha, beta)
    "tanh": (np.tanh, 0, 0), "sigmoid": (sigmoid, 0, 0), "relu": (lambda x: np.maximum(x, 0), 0, 0),
    "leaky_relu": (lambda x: np.where(x < 0, 0.1 * x, x), 0.1, 0),
    "clip": (lambda x: np.clip(x, -1.5, 2.0), -1.5, 2.0),
    "hard_sigmoid": (lambda x: np.clip(0.2 * x + 0.5, 0, 1), 0.2, 0.5),
    "hard_swish": (lambda x: x * np.clip(x / 6 + 0.5, 0, 1), 0, 0),
    "gelu_erf": (lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), 0, 0),
    "gelu_tanh": (lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), 0, 0),
    "swish": (lambda x: x * sigmoid(x), 0, 0), "mish": (lambda x: x * np.tanh(np.logaddexp(0, x)), 0, 0),
    "elu": (lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)), 0.7, 0),
}
UNARIES = {"neg": np.negative, "abs": np.abs, "sqrt": np.sqrt, "recip": np.reciprocal, "exp": np.exp, "erf": _erf}
BINARIES = {"sum": np.add, "sub": np.subtract, "prod": np.multiply, "div": np.divide, "max": np.fmax,
            "min": np.fmin}


def run(program, inputs, out=None):
    out = np.full(inputs[0].shape if inputs[0].size > 1 else inputs[1].shape, np.nan, np.float32) \
        if out is None else out
    bound = native.bind_program(program, inputs, out)
    assert bound is not None
    bound()
    return out


def close(got, want, tolerance=1e-6):
    want = np.asarray(want, np.float64)
    assert normwise_error(got, want) <= tolerance
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7 * max(1.0, float(np.abs(want).max())))


def samples(scale, size=5003):   # not a multiple of the 256-element tile
    return (rng.standard_normal(size) * scale).astype(np.float32)


@pytest.mark.parametrize("kind", sorted(ACTIVATIONS))
@pytest.mark.parametrize("scale", [1e-4, 1.0, 8.0, 60.0])
def test_activations(kind, scale):
    reference, alpha, beta = ACTIVATIONS[kind]
    x = samples(scale)
    program = [{"kind": "Activation", "attrs": {"type": kind, "alpha": alpha, "beta": beta}, "args": [0]}]
    with np.errstate(all="ignore"):
        close(run(program, [x]), reference(x.astype(np.float64)))


@pytest.mark.parametrize("op", sorted(UNARIES))
@pytest.mark.parametrize("scale", [1e-4, 1.0, 30.0])
def test_unaries(op, scale):
    x = samples(scale)
    if op == "sqrt":
        x = np.abs(x)
    if op == "exp":
        x = np.minimum(x, 80)
    program = [{"kind": "Unary", "attrs": {"op": op}, "args": [0]}]
    close(run(program, [x]), UNARIES[op](x.astype(np.float64)))


@pytest.mark.parametrize("op", sorted(BINARIES))
@pytest.mark.parametrize("scalar", [None, 0, 1])
def test_binaries(op, scalar):
    a, b = samples(3.0), samples(3.0) + np.float32(7.0)   # b away from 0 for div
    if scalar is not None:
        (a, b)[scalar].resize(1, refcheck=False)
    program = [{"kind": "ElementWise", "attrs": {"op": op}, "args": [0, 1]}]
    close(run(program, [a, b]), BINARIES[op](a.astype(np.float64), b.astype(np.float64)))


def test_nan_goes_through_every_operation():
    x = samples(2.0, 300)
    x[[3, 100, 299]] = np.nan
    for kind in ACTIVATIONS:
        program = [{"kind": "Activation", "attrs": {"type": kind, "alpha": 0.1, "beta": 0.9}, "args": [0]}]
        assert np.array_equal(np.isnan(run(program, [x])), np.isnan(x)), kind
    for op in ("max", "min"):
        program = [{"kind": "ElementWise", "attrs": {"op": op}, "args": [0, 1]}]
        assert np.isnan(run(program, [x, np.zeros(1, np.float32)])[[3, 100, 299]]).all(), op


def test_saturating_extremes_stay_finite():
    x = np.array([-1e30, -200, -88, -20, 20, 88, 200, 1e30, np.inf, -np.inf], np.float32)
    for kind in ("sigmoid", "tanh", "swish", "mish", "gelu_erf", "gelu_tanh"):
        program = [{"kind": "Activation", "attrs": {"type": kind}, "args": [0]}]
        got = run(program, [x])
        with np.errstate(all="ignore"):
            want = ACTIVATIONS[kind][0](x.astype(np.float64))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-30, err_msg=kind)


GELU_CHAIN = [   # x / sqrt(2) -> erf -> + 1 -> * x -> * 0.5, registers: x, sqrt(2), 1, 0.5, then the results
    {"kind": "ElementWise", "attrs": {"op": "div"}, "args": [0, 1]},
    {"kind": "Unary", "attrs": {"op": "erf"}, "args": [4]},
    {"kind": "ElementWise", "attrs": {"op": "sum"}, "args": [5, 2]},
    {"kind": "ElementWise", "attrs": {"op": "prod"}, "args": [0, 6]},
    {"kind": "ElementWise", "attrs": {"op": "prod"}, "args": [7, 3]},
]


def gelu_inputs(x):
    return [x] + [np.array([v], np.float32) for v in (math.sqrt(2), 1.0, 0.5)]


def test_gelu_chain_and_over_its_own_input():
    x = samples(3.0, 40000).reshape(8, 5000)
    want = ACTIVATIONS["gelu_erf"][0](x.astype(np.float64))
    close(run(GELU_CHAIN, gelu_inputs(x)), want)
    run(GELU_CHAIN, gelu_inputs(x), out=x)   # the output over its input: each tile read before written
    close(x, want)


def test_split_over_the_pool(pool_of_three):
    x = samples(3.0, 10000)   # parts of 256 elements over native_parallel.c's 3 threads
    close(run(GELU_CHAIN, gelu_inputs(x)), ACTIVATIONS["gelu_erf"][0](x.astype(np.float64)))


def test_what_it_does_not_cover_is_left_to_numpy():
    x = samples(1.0, 64).reshape(8, 8)
    out = np.empty_like(x)
    unary = [{"kind": "Unary", "attrs": {"op": "sin"}, "args": [0]}]
    assert native.bind_program(unary, [x], out) is None   # no such opcode
    add = [{"kind": "ElementWise", "attrs": {"op": "sum"}, "args": [0, 1]}]
    assert native.bind_program(add, [x, np.ones((8, 1), np.float32)], out) is None   # a broadcast
    assert native.bind_program(add, [x, x[:, ::-1]], out) is None   # not contiguous
    assert native.bind_program(add, [x, x.astype(np.float64)], out) is None
    flat = x.reshape(-1)
    assert native.bind_program(add, [flat[1:], flat[1:]], flat[:-1]) is None   # inputs one element past the output


def test_malformed_programs_are_errors_not_crashes():
    x, out = samples(1.0, 16), np.empty(16, np.float32)
    record = struct.Struct("<iiiff")
    bad = [record.pack(99, 0, -1, 0, 0),   # no such opcode
           record.pack(0, 0, 5, 0, 0),     # a register not yet written
           record.pack(6, -1, -1, 0, 0),   # a negative register
           record.pack(6, 0, -1, 0, 0)[:-1],   # a torn record
           b"".join([record.pack(6, k, -1, 0, 0) for k in range(40)])]   # more registers than the C side has
    for program in bad:
        with pytest.raises(ValueError, match="malformed"):
            native._native.pointwise(program, (x,), out)
    good = record.pack(6, 0, -1, 0, 0)
    with pytest.raises(ValueError, match="expected 16 float32s"):
        native._native.pointwise(good, (x[:7],), out)
    with pytest.raises(ValueError, match="outside"):
        native._native.pointwise(good, (x,), out, 10, 7)
    with pytest.raises(ValueError, match="overlaps"):
        native._native.pointwise(good, (x[1:],), x[:-1])


def _model(kind):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 16, 24, 24))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 16, 24, 24))
    w = helper.make_tensor("w", TensorProto.FLOAT, (16, 16, 3, 3),
                           (rng.standard_normal(16 * 16 * 9) * 0.2).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])]
    constants = []
    if kind == "gelu":
        constants = [helper.make_tensor(n, TensorProto.FLOAT, (), [v]) for n, v in
                     (("root2", math.sqrt(2)), ("one", 1.0), ("half", 0.5))]
        nodes += [helper.make_node("Div", ["c", "root2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["f"]), helper.make_node("Mul", ["c", "f"], ["g"]),
                  helper.make_node("Mul", ["g", "half"], ["y"])]
    elif kind == "silu":
        nodes += [helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"])]
    else:
        nodes += [helper.make_node("Mish", ["c"], ["y"])]
    graph = helper.make_graph(nodes, kind, [x], [y], [w] + constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("kind", ["gelu", "silu", "mish"])
def test_models_with_and_without_the_module(kind, monkeypatch):
    model = _model(kind)
    onnx.checker.check_model(model)
    feeds = {"x": rng.standard_normal((2, 16, 24, 24)).astype(np.float32)}
    want = ort_run(model, feeds)["y"]
    engine = edgert.load(edgert.build(model).to_bytes())
    calls = []

    class Counting:   # the module, counting the fused passes the context binds and runs
        def __getattr__(self, name):
            return getattr(real, name)

        def pointwise(self, *args):
            calls.append(args)
            return real.pointwise(*args)
    real = native._native
    monkeypatch.setattr(native, "_native", Counting())
    for switch in ("1", "0"):
        monkeypatch.setenv(native.ENV_SWITCH, switch)
        got = engine.create_execution_context().execute(feeds)["y"]
        assert normwise_error(got, want) <= 1e-5, switch
        assert bool(calls) == (switch == "1"), (switch, len(calls))   # the activation ran natively, or not at all
        calls.clear()


@pytest.mark.parametrize("shape,axes", [((3, 7, 1000), (2,)), ((2, 4, 33, 9), (2, 3)), ((5, 1), (1,)),
                                        ((64, 300), (-1,))])
@pytest.mark.parametrize("split", [False, True])
def test_softmax(shape, axes, split, request):
    if split:   # rows of parts of 256 elements over native_parallel.c's 3 threads
        request.getfixturevalue("pool_of_three")
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    x.reshape(-1)[:2] = [np.nan, np.inf]   # rows with NaN or an infinite maximum come out NaN, as in NumPy
    wide = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        e = np.exp(wide - wide.max(axis=axes, keepdims=True))
        want = e / e.sum(axis=axes, keepdims=True)
    out = np.full_like(x, 7.0)
    run = native.bind_softmax(x, out, axes)
    assert run is not None
    run()
    assert np.array_equal(np.isnan(out), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_allclose(out[finite], want[finite], rtol=2e-6, atol=1e-9)
    native.bind_softmax(x, x, axes)()   # over its own input
    np.testing.assert_allclose(x[finite], want[finite], rtol=2e-6, atol=1e-9)


def test_softmax_it_does_not_cover_and_bad_calls():
    x = rng.standard_normal((4, 6)).astype(np.float32)
    assert native.bind_softmax(x, np.empty_like(x), (0,)) is None   # not the trailing axis
    assert native.bind_softmax(x.astype(np.float64), np.empty((4, 6)), (1,)) is None
    with pytest.raises(ValueError, match="equal size"):
        native._native.softmax(x, np.empty(23, np.float32), 6)
    with pytest.raises(ValueError, match="equal size"):
        native._native.softmax(x, np.empty_like(x), 5)
    with pytest.raises(ValueError, match="outside"):
        native._native.softmax(x, np.empty_like(x), 6, 3, 2)
    with pytest.raises(ValueError, match="overlaps"):
        flat = np.zeros(30, np.float32)
        native._native.softmax(flat[:24], flat[6:30], 6)


@pytest.mark.parametrize("shape,axes,affine", [((3, 7, 768), (2,), "both"), ((2, 5, 12, 9), (2, 3), "scale"),
                                               ((4, 33), (1,), "bias"), ((6, 1000), (-1,), None)])
@pytest.mark.parametrize("split", [False, True])
def test_layernorm(shape, axes, affine, split, request):
    if split:   # rows of parts of 256 elements over native_parallel.c's 3 threads
        request.getfixturevalue("pool_of_three")
    x = (rng.standard_normal(shape) * 4 + 3).astype(np.float32)
    trailing = shape[len(shape) - len(axes):]
    scale = rng.standard_normal(trailing).astype(np.float32) if affine in ("both", "scale") else None
    bias = rng.standard_normal((1,) + trailing).astype(np.float32) if affine in ("both", "bias") else None
    wide, reduce = x.astype(np.float64), tuple(a % len(shape) for a in axes)
    want = (wide - wide.mean(axis=reduce, keepdims=True)) / np.sqrt(wide.var(axis=reduce, keepdims=True) + 1e-5)
    want = want * (1 if scale is None else scale) + (0 if bias is None else bias)
    out = np.full_like(x, np.nan)
    run = native.bind_layernorm(x, out, axes, scale, bias, 1e-5)
    assert run is not None
    run()
    assert normwise_error(out, want) <= 1e-6
    native.bind_layernorm(x, x, axes, scale, bias, 1e-5)()   # over its own input
    assert normwise_error(x, want) <= 1e-6


def test_layernorm_it_does_not_cover_and_bad_calls():
    x = rng.standard_normal((4, 6)).astype(np.float32)
    out = np.empty_like(x)
    assert native.bind_layernorm(x, out, (0,), None, None, 1e-5) is None   # a leading axis
    assert native.bind_layernorm(x, out, (1,), np.ones((4, 1), np.float32), None, 1e-5) is None   # per row
    with pytest.raises(ValueError, match="scale/bias of one row"):
        native._native.layernorm(x, out, 6, np.ones(5, np.float32), None, 1e-5)
    with pytest.raises(ValueError, match="outside"):
        native._native.layernorm(x, out, 6, None, None, 1e-5, 2, 3)
    with pytest.raises(ValueError, match="overlaps"):
        flat = np.zeros(30, np.float32)
        native._native.layernorm(flat[:24], flat[6:30], 6, None, None, 1e-5)


@pytest.mark.parametrize("op", ["LayerNormalization", "Softmax"])
def test_transformer_ops_against_onnxruntime(op, monkeypatch):
    shape = (2, 9, 64)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    inits = []
    if op == "LayerNormalization":
        inits = [helper.make_tensor(n, TensorProto.FLOAT, (64,), rng.standard_normal(64).astype(np.float32))
                 for n in ("scale", "bias")]
        node = helper.make_node(op, ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5)
    else:
        node = helper.make_node(op, ["x"], ["y"], axis=-1)
    model = helper.make_model(helper.make_graph([node], op, [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"x": (rng.standard_normal(shape) * 3).astype(np.float32)}
    want = ort_run(model, feeds)["y"]
    engine = edgert.load(edgert.build(model).to_bytes())
    called = []
    real = native._native

    class Counting:
        def __getattr__(self, name):
            attribute = getattr(real, name)
            return (lambda *a: called.append(name) or attribute(*a)) if name in ("softmax", "layernorm") else attribute
    monkeypatch.setattr(native, "_native", Counting())
    got = engine.create_execution_context().execute(feeds)["y"]
    assert normwise_error(got, want) <= 1e-5
    assert called, "the native kernel did not run"
