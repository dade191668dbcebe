"""Math layer kinds against onnxruntime: activations, elementwise, unary, select/cast, matmul/gemm,
reductions, softmax and argmax, each through edgert.build → load → execute on fresh random inputs."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper

import edgert
from edgert.errors import EdgeRTError, ModelError, ShapeError, UnsupportedError
from tests import helpers
from helpers import assert_matches_ort, edgert_run

rng = np.random.default_rng()


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def op_model(*args, **kwargs):
    """helpers.op_model with strict ONNX shape inference (these ops must type-check exactly)."""
    return helpers.op_model(*args, strict=True, **kwargs)


def check(op_type, inputs, attrs=None, opset=18, consts=(), tolerance=1e-5, num_outputs=1):
    model, feeds = op_model(op_type, inputs, attrs, opset, consts, num_outputs)
    return assert_matches_ort(model, feeds, tolerance=tolerance)


def build_error(op_type, inputs, attrs=None, opset=18, consts=()):
    model, feeds = op_model(op_type, inputs, attrs, opset, consts, infer=False)
    with pytest.raises(EdgeRTError) as info:
        edgert.build(model, shapes={k: v.shape for k, v in feeds.items()})
    assert op_type in str(info.value)
    return info.value


# -- activations ------------------------------------------------------------------------------------
ACTIVATIONS = [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("Softplus", {}), ("Softsign", {}), ("HardSwish", {}),
    ("Mish", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.3}), ("Elu", {}), ("Elu", {"alpha": 0.5}),
    ("Celu", {}), ("Celu", {"alpha": 2.0}), ("ThresholdedRelu", {}), ("ThresholdedRelu", {"alpha": 0.4}),
    ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("Selu", {}),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}),
]


@pytest.mark.parametrize("op_type,attrs", ACTIVATIONS)
def test_activation(op_type, attrs):
    check(op_type, [("x", 3 * randn(2, 3, 4, 5))], attrs, opset=18)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_activation_other_float_types(dtype):
    tolerance = 1e-2 if dtype == np.float16 else 1e-12
    for op_type in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu"):
        check(op_type, [("x", randn(3, 7, dtype=dtype))], tolerance=tolerance)


@pytest.mark.parametrize("dtype", [np.int8, np.int32])
def test_relu_integer(dtype):
    check("Relu", [("x", rng.integers(-50, 50, (4, 6)).astype(dtype))], opset=14)


def test_sigmoid_extremes():
    x = np.array([-1e4, -100, -20, -1, 0, 1, 20, 100, 1e4], np.float32)
    check("Sigmoid", [("x", x)])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    check("Gelu", [("x", 3 * randn(4, 64))], {"approximate": approximate}, opset=20)


def test_erf_accuracy_float32_and_float64():
    x = np.linspace(-6, 6, 2001)
    check("Erf", [("x", x.astype(np.float32))])
    model, feeds = op_model("Erf", [("x", x)], opset=13)  # onnxruntime has no float64 Erf
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(edgert_run(model, feeds)["y0"], want, rtol=1e-14, atol=1e-15)


# -- Clip -------------------------------------------------------------------------------------------
def scalar(value, dtype=np.float32):
    return np.array(value, dtype)


@pytest.mark.parametrize("consts", [("lo", "hi"), ()])
def test_clip_inputs(consts):
    check("Clip", [("x", randn(3, 4, 5)), ("lo", scalar(-0.5)), ("hi", scalar(0.7))], opset=13, consts=consts)


@pytest.mark.parametrize("which", ["lo", "hi", "none"])
def test_clip_one_bound(which):
    inputs = [("x", randn(3, 4)), ("lo", scalar(-0.2)) if which == "lo" else (None, None)]
    if which == "hi":
        inputs.append(("hi", scalar(0.3)))
    check("Clip", inputs, opset=12, consts=("lo", "hi"))


def test_clip_attributes_before_opset_11():
    check("Clip", [("x", randn(3, 4))], {"min": -0.4, "max": 0.6}, opset=7)
    check("Clip", [("x", randn(3, 4))], {"max": 0.6}, opset=10)
    check("Clip", [("x", randn(3, 4))], opset=9)


def test_clip_min_greater_than_max():
    check("Clip", [("x", randn(3, 4)), ("lo", scalar(1.0)), ("hi", scalar(-1.0))], opset=13, consts=("lo", "hi"))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8])
def test_clip_integer(dtype):
    x = rng.integers(0, 100, (5, 6)).astype(dtype)
    check("Clip", [("x", x), ("lo", scalar(10, dtype)), ("hi", scalar(60, dtype))], opset=13, consts=("lo", "hi"))


# -- PRelu ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (), (5,), (2, 3, 4, 5)])
def test_prelu(slope_shape):
    check("PRelu", [("x", randn(2, 3, 4, 5)), ("slope", randn(*slope_shape))], consts=("slope",))


def test_prelu_runtime_slope():
    check("PRelu", [("x", randn(2, 3, 4)), ("slope", randn(3, 1))], opset=9)


# -- binary elementwise ----------------------------------------------------------------------------
BINARY_SHAPES = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))]


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
@pytest.mark.parametrize("shapes", BINARY_SHAPES)
def test_binary_float(op_type, shapes):
    a, b = randn(*shapes[0]), randn(*shapes[1])
    check(op_type, [("a", a), ("b", b)], opset=14)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
def test_binary_integer(op_type, dtype):
    low = 0 if dtype == np.uint8 else -40
    a = rng.integers(low, 40, (4, 5)).astype(dtype)
    b = rng.integers(1, 9, (5,)).astype(dtype)  # no zero divisors: onnxruntime traps on them
    if low:
        b[::2] *= -1
    check(op_type, [("a", a), ("b", b)], opset=14)


@pytest.mark.parametrize("op_type", ["Add", "Mul", "Div", "Sub"])
def test_binary_constant_operand(op_type):
    check(op_type, [("a", randn(2, 8)), ("b", randn(8) + 3)], consts=("b",))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8])
@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_integer(dtype, fmod):
    a = rng.integers(-50, 50, (6, 7)).astype(dtype)
    b = rng.integers(1, 9, (6, 7)).astype(dtype) * rng.choice([-1, 1], (6, 7)).astype(dtype)
    check("Mod", [("a", a), ("b", b)], {"fmod": fmod}, opset=13)


def test_mod_float():
    check("Mod", [("a", 5 * randn(4, 5)), ("b", randn(5) + 3)], {"fmod": 1}, opset=13)


@pytest.mark.parametrize("types", [(np.float32, np.float32), (np.float32, np.int64), (np.float32, np.int32),
                                   (np.int64, np.int64), (np.int32, np.int32), (np.float64, np.float64)])
def test_pow(types):
    base = (rng.random((3, 4)) * 3).astype(types[0]) if types[0] != np.int64 and types[0] != np.int32 \
        else rng.integers(-5, 6, (3, 4)).astype(types[0])
    exponent = rng.integers(0, 4, (4,)).astype(types[1]) if np.dtype(types[1]).kind == "i" \
        else (rng.random(4) * 2).astype(types[1])
    check("Pow", [("a", base), ("b", exponent)], opset=15)


def test_pow_integer_base_float_exponent():
    check("Pow", [("a", rng.integers(1, 6, (3, 4)).astype(np.int32)), ("b", scalar(1.5))], opset=15)


@pytest.mark.parametrize("exponent", [2.0, 0.5, 1.0, 3.0])
def test_pow_constant_exponent(exponent):
    check("Pow", [("a", rng.uniform(0.1, 3, (4, 5)).astype(np.float32)), ("b", scalar(exponent))], opset=15,
          consts=("b",))


@pytest.mark.parametrize("op_type", ["Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.uint8])
def test_comparison(op_type, dtype):
    a = rng.integers(0, 4, (3, 4)).astype(dtype)
    b = rng.integers(0, 4, (4,)).astype(dtype)
    check(op_type, [("a", a), ("b", b)], opset=16)


@pytest.mark.parametrize("op_type", ["And", "Or", "Xor"])
def test_logical(op_type):
    check(op_type, [("a", rng.random((3, 4)) > 0.5), ("b", rng.random((4,)) > 0.5)], opset=7)


def test_equal_bool():
    check("Equal", [("a", rng.random((3, 4)) > 0.5), ("b", rng.random((3, 4)) > 0.5)], opset=11)


@pytest.mark.parametrize("op_type", ["Sum", "Max", "Min", "Mean"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_variadic(op_type, count):
    shapes = [(2, 3, 4), (3, 1), (4,)][:count]
    check(op_type, [(f"x{i}", randn(*s)) for i, s in enumerate(shapes)], opset=13)


# -- unary ------------------------------------------------------------------------------------------
def uniform(low, high, shape=(4, 33)):
    return rng.uniform(low, high, shape).astype(np.float32)


UNARY = [
    ("Sqrt", uniform(0, 5)), ("Exp", uniform(-5, 5)), ("Log", uniform(0.01, 5)), ("Neg", uniform(-5, 5)),
    ("Abs", uniform(-5, 5)), ("Reciprocal", uniform(0.5, 5)), ("Erf", uniform(-3, 3)), ("Sin", uniform(-5, 5)),
    ("Cos", uniform(-5, 5)), ("Tan", uniform(-1, 1)), ("Asin", uniform(-1, 1)), ("Acos", uniform(-1, 1)),
    ("Atan", uniform(-5, 5)), ("Sinh", uniform(-3, 3)), ("Cosh", uniform(-3, 3)), ("Asinh", uniform(-5, 5)),
    ("Acosh", uniform(1, 5)), ("Atanh", uniform(-0.9, 0.9)), ("Ceil", uniform(-5, 5)), ("Floor", uniform(-5, 5)),
    ("Round", uniform(-5, 5)), ("Sign", uniform(-5, 5)),
]


@pytest.mark.parametrize("op_type,x", UNARY, ids=[u[0] for u in UNARY])
def test_unary(op_type, x):
    check(op_type, [("x", x)], opset=13)


@pytest.mark.parametrize("op_type", ["Neg", "Abs", "Sign"])
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_unary_integer(op_type, dtype):
    check(op_type, [("x", rng.integers(-20, 20, (3, 5)).astype(dtype))], opset=13)


def test_round_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.4999, -3.2, 7.0], np.float32)
    check("Round", [("x", x)], opset=11)


def test_not():
    check("Not", [("x", rng.random((3, 4)) > 0.5)], opset=7)


@pytest.mark.parametrize("attrs", [{}, {"detect_positive": 0}, {"detect_negative": 0},
                                   {"detect_positive": 0, "detect_negative": 0}])
def test_isinf(attrs):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, 1e38, -3.0], np.float32)
    check("IsInf", [("x", x)], attrs, opset=10)


def test_isnan():
    check("IsNaN", [("x", np.array([np.nan, np.inf, 0.0, -1.0], np.float32))], opset=13)


# -- Where, Cast, CastLike --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
def test_where(dtype):
    x = rng.integers(0, 2, (2, 3, 4)).astype(dtype)
    y = rng.integers(0, 2, (4,)).astype(dtype)
    check("Where", [("c", rng.random((3, 1)) > 0.5), ("x", x), ("y", y)], opset=16)


CAST_SOURCES = {
    np.float32: lambda: randn(4, 6) * 20, np.float64: lambda: randn(4, 6, dtype=np.float64) * 20,
    np.float16: lambda: randn(4, 6, dtype=np.float16) * 20,
    np.int32: lambda: rng.integers(-100, 100, (4, 6)).astype(np.int32),
    np.int64: lambda: rng.integers(-100, 100, (4, 6)).astype(np.int64),
    np.int8: lambda: rng.integers(-100, 100, (4, 6)).astype(np.int8),
    np.uint8: lambda: rng.integers(0, 200, (4, 6)).astype(np.uint8), np.bool_: lambda: rng.random((4, 6)) > 0.5,
}
CAST_TARGETS = [np.float32, np.float64, np.float16, np.int32, np.int64, np.int8, np.uint8, np.bool_]


@pytest.mark.parametrize("source", list(CAST_SOURCES), ids=lambda t: np.dtype(t).name)
def test_cast(source):
    for target in CAST_TARGETS:
        x = CAST_SOURCES[source]()
        if np.dtype(source).kind == "f" and np.dtype(target).kind in "iu":
            x = np.clip(x, 0 if target == np.uint8 else -100, 100)  # in range: out-of-range is undefined in C
        to = helper.np_dtype_to_tensor_dtype(np.dtype(target))
        check("Cast", [("x", x)], {"to": to}, opset=19, tolerance=1e-2 if target == np.float16 else 1e-5)


def test_cast_float_to_int_truncates_and_to_bool_is_nonzero():
    x = np.array([-2.7, -1.5, -0.5, 0.0, 0.5, 1.5, 2.7, np.nan], np.float32)
    check("Cast", [("x", x[:-1])], {"to": onnx.TensorProto.INT32}, opset=13)
    check("Cast", [("x", x)], {"to": onnx.TensorProto.BOOL}, opset=13)


def test_cast_out_of_range_does_not_crash():
    x = np.array([1e20, -1e20, np.inf, -np.inf, np.nan, 3e9], np.float32)
    model, feeds = op_model("Cast", [("x", x)], {"to": onnx.TensorProto.INT32}, opset=13)
    assert edgert_run(model, feeds)["y0"].dtype == np.int32


def test_castlike():
    check("CastLike", [("x", randn(3, 4) * 10), ("like", np.zeros((1,), np.int64))], opset=15, consts=("like",))


def test_cast_to_unsupported_type_is_a_clear_error():
    error = build_error("Cast", [("x", randn(3))], {"to": onnx.TensorProto.STRING}, opset=13)
    assert isinstance(error, UnsupportedError) and "STRING" in str(error)
    error = build_error("Cast", [("x", randn(3))], {"to": onnx.TensorProto.BFLOAT16}, opset=13)
    assert isinstance(error, UnsupportedError)


# -- MatMul, Gemm -----------------------------------------------------------------------------------
MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
                 ((2, 1, 3, 4), (5, 4, 6)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)), ((5,), (2, 5, 3)),
                 ((2, 3, 5), (5,))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
def test_matmul(shapes):
    check("MatMul", [("a", randn(*shapes[0])), ("b", randn(*shapes[1]))], opset=13)


def test_matmul_constant_weight():
    check("MatMul", [("a", randn(2, 7, 16)), ("w", randn(16, 8))], opset=13, consts=("w",))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64, np.float16])
def test_matmul_types(dtype):
    a = rng.integers(-5, 5, (2, 3, 4)).astype(dtype)
    b = rng.integers(-5, 5, (4, 6)).astype(dtype)
    check("MatMul", [("a", a), ("b", b)], opset=13, tolerance=1e-3 if dtype == np.float16 else 1e-5)


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("consts", [(), ("b", "c")])
def test_gemm_transposes(trans_a, trans_b, consts):
    a = randn(4, 3) if trans_a else randn(3, 4)
    b = randn(5, 4) if trans_b else randn(4, 5)
    check("Gemm", [("a", a), ("b", b), ("c", randn(5))], {"transA": trans_a, "transB": trans_b}, consts=consts,
          opset=13)


@pytest.mark.parametrize("c_shape", [None, (), (1,), (5,), (3, 1), (1, 5), (3, 5)])
@pytest.mark.parametrize("consts", [(), ("b", "c")])
def test_gemm_alpha_beta_and_c(c_shape, consts):
    inputs = [("a", randn(3, 4)), ("b", randn(4, 5))]
    if c_shape is not None:
        inputs.append(("c", randn(*c_shape)))
    check("Gemm", inputs, {"alpha": 0.5, "beta": 2.0}, consts=consts, opset=13)


def test_gemm_opset_7_and_beta_zero():
    check("Gemm", [("a", randn(3, 4)), ("b", randn(4, 5)), ("c", randn(3, 5))], {"alpha": 1.5}, opset=7)
    check("Gemm", [("a", randn(3, 4)), ("b", randn(4, 5)), ("c", randn(3, 5))], {"beta": 0.0}, opset=9)


def test_gemm_bad_rank_is_a_shape_error():
    error = build_error("Gemm", [("a", randn(2, 3, 4)), ("b", randn(4, 5))], opset=13)
    assert isinstance(error, ShapeError)


def test_matmul_mismatched_inner_dims_is_a_shape_error():
    with pytest.raises(ShapeError, match="inner dimensions"):
        model, feeds = op_model("MatMul", [("a", randn(3, 4)), ("b", randn(5, 6))], infer=False)
        edgert.build(model)


# -- reductions -------------------------------------------------------------------------------------
REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
AXES = [None, [1], [-1], [0, 2], [-3, -1]]


def reduce_input(op_type):
    x = rng.uniform(0.5, 1.5, (3, 4, 5)).astype(np.float32)  # positive, so LogSum is defined
    return x if op_type in ("ReduceLogSum", "ReduceProd") else x * rng.choice([-2, 2], x.shape).astype(np.float32)


@pytest.mark.parametrize("op_type", REDUCTIONS)
@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_input(op_type, axes, keepdims):
    inputs = [("x", reduce_input(op_type))]
    if axes is not None:
        inputs.append(("axes", np.array(axes, np.int64)))
    check(op_type, inputs, {"keepdims": keepdims}, opset=18, consts=("axes",))


@pytest.mark.parametrize("op_type", REDUCTIONS)
def test_reduce_axes_attribute(op_type):
    check(op_type, [("x", reduce_input(op_type))], {"axes": [0, -1], "keepdims": 0}, opset=11)
    check(op_type, [("x", reduce_input(op_type))], {}, opset=11)


def test_reduce_sum_axes_input_from_opset_13():
    check("ReduceSum", [("x", randn(3, 4, 5)), ("axes", np.array([1], np.int64))], opset=13, consts=("axes",))
    check("ReduceSum", [("x", randn(3, 4, 5))], {"axes": [1]}, opset=12)


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceSumSquare", "ReduceL2"])
def test_reduce_noop_with_empty_axes(op_type):
    check(op_type, [("x", randn(3, 4))], {"noop_with_empty_axes": 1}, opset=18)
    check(op_type, [("x", randn(3, 4)), ("axes", np.array([], np.int64))], {"noop_with_empty_axes": 0}, opset=18,
          consts=("axes",))


@pytest.mark.parametrize("op_type,dtype", [("ReduceSum", np.int32), ("ReduceSum", np.int64), ("ReduceMax", np.int8),
                                           ("ReduceMin", np.uint8), ("ReduceMean", np.int32), ("ReduceProd", np.int64)])
def test_reduce_integer(op_type, dtype):
    x = rng.integers(0 if dtype == np.uint8 else -9, 9, (3, 4, 5)).astype(dtype)
    check(op_type, [("x", x), ("axes", np.array([1], np.int64))], opset=18, consts=("axes",))


def test_reduce_with_runtime_axes_is_unsupported():
    error = build_error("ReduceSum", [("x", randn(3, 4)), ("axes", np.array([1], np.int64))], opset=13)
    assert isinstance(error, UnsupportedError) and "axes" in str(error)


def test_reduce_axis_out_of_range_is_a_model_error():
    error = build_error("ReduceMean", [("x", randn(3, 4))], {"axes": [2]}, opset=13)
    assert isinstance(error, ModelError) and "axes" in str(error)


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2", "ReduceLogSumExp"])
def test_reduce_float16(op_type):
    x = rng.uniform(-2, 2, (4, 6, 5)).astype(np.float16)
    check(op_type, [("x", x), ("axes", np.array([1], np.int64))], opset=18, consts=("axes",), tolerance=1e-2)


def test_reduce_over_an_empty_axis_gives_the_identity():
    from edgert.ir.kinds import ReduceOp
    from edgert.kernels.cpu.reduce import reduce
    identities = {ReduceOp.SUM: 0.0, ReduceOp.PROD: 1.0, ReduceOp.MAX: -np.inf, ReduceOp.MIN: np.inf,
                  ReduceOp.L1: 0.0, ReduceOp.L2: 0.0, ReduceOp.SUM_SQUARE: 0.0, ReduceOp.LOG_SUM: -np.inf,
                  ReduceOp.LOG_SUM_EXP: -np.inf, ReduceOp.AVG: np.nan}
    for op, identity in identities.items():
        out = np.empty((2, 4), np.float32)
        reduce(op, np.empty((2, 0, 4), np.float32), [1], out)
        np.testing.assert_array_equal(out, np.full((2, 4), identity, np.float32), err_msg=op.value)
    out = np.empty((3,), np.int32)
    reduce(ReduceOp.MAX, np.empty((3, 0), np.int32), [1], out)
    assert (out == np.iinfo(np.int32).min).all()


# -- softmax, argmax --------------------------------------------------------------------------------
@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,axis", [(11, None), (11, 0), (11, 2), (11, -1), (13, None), (13, 1), (13, -3)])
def test_softmax(op_type, opset, axis):
    attrs = {} if axis is None else {"axis": axis}
    check(op_type, [("x", 5 * randn(2, 3, 4))], attrs, opset=opset)


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
def test_softmax_float16(op_type):
    check(op_type, [("x", 3 * randn(2, 5, 7, dtype=np.float16))], {"axis": 1}, opset=13, tolerance=1e-2)


def test_softmax_large_values_are_stable():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1e4, -1001.0]], np.float32)
    check("Softmax", [("x", x)], opset=13)
    check("LogSoftmax", [("x", x)], opset=13)


def test_hardmax_ties_pick_first():
    check("Hardmax", [("x", rng.integers(0, 3, (4, 6)).astype(np.float32))], opset=13)


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": 1}, {"axis": -1, "keepdims": 0}, {"axis": 2, "select_last_index": 1},
                                   {"axis": 0, "keepdims": 0, "select_last_index": 1}])
def test_arg_extreme(op_type, attrs):
    x = rng.integers(0, 3, (3, 4, 5)).astype(np.float32)  # ties exercise select_last_index
    check(op_type, [("x", x)], attrs, opset=13)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.float16])
def test_arg_extreme_types(dtype):
    check("ArgMax", [("x", rng.integers(0, 50, (4, 5)).astype(dtype))], {"axis": 1}, opset=13)


# -- error paths ------------------------------------------------------------------------------------
def test_float_mod_needs_fmod():
    error = build_error("Mod", [("a", randn(3)), ("b", randn(3))], {"fmod": 0}, opset=13)
    assert isinstance(error, ModelError) and "fmod" in str(error)


def test_bad_gelu_approximation():
    error = build_error("Gelu", [("x", randn(3))], {"approximate": "cubic"}, opset=20)
    assert isinstance(error, ModelError) and "approximate" in str(error)


def test_mismatched_types():
    error = build_error("Add", [("a", randn(3)), ("b", np.zeros(3, np.int32))], opset=14)
    assert isinstance(error, ModelError) and "Cast" in str(error)


def test_softmax_axis_out_of_range():
    error = build_error("Softmax", [("x", randn(3, 4))], {"axis": 2}, opset=13)
    assert isinstance(error, ModelError) and "axis" in str(error)


def test_argmax_axis_out_of_range():
    error = build_error("ArgMax", [("x", randn(3, 4))], {"axis": -3}, opset=13)
    assert isinstance(error, ModelError)


def test_float_activation_on_integers():
    error = build_error("Sigmoid", [("x", np.zeros((3,), np.int32))], opset=13)
    assert isinstance(error, UnsupportedError) and "float" in str(error)


def test_prelu_slope_that_does_not_broadcast_to_the_input():
    error = build_error("PRelu", [("x", randn(2, 3, 4, 5)), ("slope", randn(3))], opset=9, consts=("slope",))
    assert isinstance(error, ShapeError)


def test_logical_op_on_floats():
    error = build_error("And", [("a", randn(3)), ("b", randn(3))], opset=7)
    assert isinstance(error, ModelError) and "bool" in str(error)
