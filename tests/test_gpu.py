"""CUDA backend on a real GPU (marked ``gpu``; skipped without cupy and a device).

Every layer kind runs against the CPU reference kernels on the same plan, with fresh random
inputs and every device buffer poisoned (0xFF bytes, NaN for floats) before the run, so an output
element no kernel wrote fails: fp32 within 1e-4 and fp16 within 1e-2 normwise, integers and
booleans exactly. Then the test models end to end, CUDA graph replay against plain launches,
execute_async with device arrays, two contexts sharing one engine, the plan's kernels surviving
a save/load round trip, and the arch check.

``python tests/test_gpu.py [--emulate] [FILTER]`` runs the layer cases without pytest (with
``--emulate`` on the CPU emulator of ``edgert.kernels.cuda.emulator``) and prints a table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))

import edgert  # noqa: E402
from edgert.errors import DeviceError  # noqa: E402
from edgert.kernels.cuda.plan_kernels import compile_for_plan  # noqa: E402
from edgert.plan import Plan, read_plan  # noqa: E402
from edgert.runtime.cuda import CudaEngine  # noqa: E402

pytestmark = pytest.mark.gpu
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "float64": 1e-9}
_ONNX = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE,
         "int64": TensorProto.INT64, "int32": TensorProto.INT32, "bool": TensorProto.BOOL, "int8": TensorProto.INT8,
         "uint8": TensorProto.UINT8}
_STATE = {"driver": None, "emulate": False}


# -- harness -------------------------------------------------------------------------------------
def driver():
    if _STATE["driver"] is None:
        from edgert.runtime.cuda import CupyDriver
        _STATE["driver"] = CupyDriver()
    return _STATE["driver"]


def graph(nodes, inputs: dict, outputs, inits: dict | None = None, opset: int = 17):
    """An ONNX model: ``inputs`` name -> (dtype, shape); ``inits`` name -> array (weights)."""
    g = helper.make_graph(nodes, "case", [helper.make_tensor_value_info(n, _ONNX[d], s) for n, (d, s) in inputs.items()],
                          [helper.make_value_info(o, onnx.TypeProto()) for o in outputs],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def feeds_for(model, low=-2.0, high=2.0, rng=None) -> dict:
    rng = rng or np.random.default_rng()
    feeds = {}
    for info in model.graph.input:
        dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
        if dtype == np.bool_:
            feeds[info.name] = rng.random(shape) > 0.5
        elif np.issubdtype(dtype, np.integer):
            feeds[info.name] = rng.integers(-5, 6, shape).astype(dtype)
        else:
            feeds[info.name] = rng.uniform(low, high, shape).astype(dtype)
    return feeds


ALL_FP16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]}


def compile_plan(model, feeds, **options):
    plan = edgert.build(model, cpu_only_aliases=False, shapes={k: v.shape for k, v in feeds.items()}, **options)
    document = plan.document
    arch = driver().arch()
    document["kernels"] = {arch: compile_for_plan(document, arch, emulate=_STATE["emulate"])}
    return plan


def error(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return float("inf")
    if want.dtype.kind not in "fc":
        return 0.0 if np.array_equal(got, want) else float("inf")
    got, want = got.astype(np.float64), want.astype(np.float64)
    if np.isnan(got).any() != np.isnan(want).any() or (np.isnan(got) != np.isnan(want)).any():
        return float("inf")
    mask = ~np.isnan(want)
    finite = np.isfinite(want) & mask
    if (got[mask & ~finite] != want[mask & ~finite]).any():
        return float("inf")
    norm = np.linalg.norm(want[finite])
    return float(np.linalg.norm(got[finite] - want[finite]) / (norm if norm > 0 else 1.0))


def run_case(model, feeds, use_graph: bool = True, **options) -> dict[str, float]:
    plan = compile_plan(model, feeds, **options)
    engine = CudaEngine(plan.document, driver=driver())
    context = engine.create_execution_context(use_graph=use_graph)
    context.poison()
    got = context.execute(feeds)
    want = edgert.load(plan).create_execution_context().execute(feeds)
    return {name: error(got[name], want[name]) for name in want}


# -- cases: name -> builder(dtype) -> model (inputs drawn by feeds_for) ----------------------------
def _w(shape, dtype, scale=0.3):
    return (np.random.default_rng().standard_normal(shape) * scale).astype(dtype)


def conv(x, w, bias=True, post=None, **attrs):
    def build(dt):
        inits = {"w": _w(w, dt)}
        names = ["x", "w"]
        if bias:
            inits["b"] = _w(w[0], dt)
            names.append("b")
        nodes = [helper.make_node("Conv", names, ["c" if post else "y"], **attrs)]
        inputs = {"x": (dt, x)}
        if post == "relu":
            nodes.append(helper.make_node("Relu", ["c"], ["y"]))
        elif post == "residual":
            out_shape = edgert.build(graph(nodes[:1], inputs, ["c"], inits)).document["bindings"]["outputs"][0]["shape"]
            inputs["r"] = (dt, out_shape)
            nodes += [helper.make_node("Add", ["c", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
        return graph(nodes, inputs, ["y"], inits)
    return build


def single(op, shapes, attrs=None, inits=None, opset=17, outputs=1, dtypes=None):
    """One ONNX node reading graph inputs i0, i1... of ``shapes`` (dtype per input from ``dtypes``)."""
    def build(dt):
        names = [f"i{k}" for k in range(len(shapes))]
        inputs = {n: ((dtypes or {}).get(k, dt), s) for k, (n, s) in enumerate(zip(names, shapes))}
        extra = {}
        for name, value in (inits or {}).items():
            extra[name] = value(dt) if callable(value) else value
            names.append(name)
        outs = [f"y{k}" for k in range(outputs)]
        return graph([helper.make_node(op, names, outs, **(attrs or {}))], inputs, outs, extra, opset)
    return build


def chain(ops, shape):
    """A chain of per-element ops (fused into one PointWise layer by the passes)."""
    def build(dt):
        nodes, prev = [], "x"
        inits = {}
        for k, (op, extra) in enumerate(ops):
            names = [prev] + [f"c{k}_{j}" for j in range(len(extra))]
            for j, value in enumerate(extra):
                inits[f"c{k}_{j}"] = np.asarray(value, dt)
            nodes.append(helper.make_node(op, names, [f"t{k}"]))
            prev = f"t{k}"
        nodes.append(helper.make_node("Identity", [prev], ["y"]))
        return graph(nodes, {"x": (dt, shape)}, ["y"], inits)
    return build


def split_chain(dt):
    """Three split-K convolutions in a row: each must find its tile counters back at zero."""
    shapes = [(64, 256, 3, 3), (32, 64, 3, 3), (128, 32, 3, 3)]
    inits = {f"w{i}": _w(shape, dt) for i, shape in enumerate(shapes)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w1"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["b", "w2"], ["y"], pads=[1, 1, 1, 1])]
    return graph(nodes, {"x": (dt, (1, 256, 4, 4))}, ["y"], inits)


F = ("float32", "float16")
FLOAT_CASES = {
    "splitk_chain": split_chain,
    "conv3x3": conv((2, 8, 12, 12), (16, 8, 3, 3), pads=[1, 1, 1, 1]),
    "conv3x3_relu": conv((1, 16, 10, 10), (24, 16, 3, 3), post="relu", pads=[1, 1, 1, 1]),
    "conv_residual": conv((1, 16, 8, 8), (16, 16, 3, 3), post="residual", pads=[1, 1, 1, 1]),
    "conv1x1": conv((2, 32, 8, 8), (48, 32, 1, 1), post="relu"),
    "conv1x1_s2": conv((1, 32, 9, 9), (64, 32, 1, 1), strides=[2, 2]),
    "conv7x7_s2": conv((1, 3, 33, 31), (16, 3, 7, 7), pads=[3, 3, 3, 3], strides=[2, 2]),
    "conv_nobias_dil": conv((1, 8, 11, 11), (8, 8, 3, 3), bias=False, pads=[2, 2, 2, 2], dilations=[2, 2]),
    "conv_grouped": conv((1, 16, 9, 9), (32, 4, 3, 3), group=4, pads=[1, 1, 1, 1]),
    "conv_depthwise": conv((2, 24, 10, 10), (24, 1, 3, 3), group=24, pads=[1, 1, 1, 1], post="relu"),
    "conv_depthwise_s2": conv((1, 16, 11, 11), (32, 1, 3, 3), group=16, pads=[1, 1, 1, 1], strides=[2, 2]),
    "conv_bigk_splitk": conv((1, 256, 4, 4), (64, 256, 3, 3), pads=[1, 1, 1, 1]),
    "conv_tapmajor_s2": conv((1, 64, 10, 10), (32, 64, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2], post="relu"),
    "conv_tapmajor_grouped": conv((1, 64, 9, 9), (64, 32, 3, 3), group=2, pads=[1, 1, 1, 1]),
    "conv_big_tiles": conv((8, 32, 20, 20), (160, 32, 3, 3), pads=[1, 1, 1, 1], post="residual"),
    "conv_128_tiles": conv((8, 32, 40, 40), (256, 32, 1, 1), post="relu"),
    "matmul_128_tiles": single("MatMul", [(2048, 96), (96, 1536)]),
    "conv1d": conv((2, 8, 20), (12, 8, 5), pads=[2, 2]),
    "mixed_conv": conv((1, 32, 9, 9), (32, 32, 3, 3), pads=[1, 1, 1, 1]),
    "conv3d": conv((1, 4, 5, 6, 7), (6, 4, 3, 3, 3), pads=[1, 1, 1, 1, 1, 1]),
    "deconv_s2": single("ConvTranspose", [(1, 8, 6, 6)], {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                                          "output_padding": [1, 1]},
                        {"w": lambda dt: _w((8, 4, 3, 3), dt), "b": lambda dt: _w(4, dt)}),
    "matmul": single("MatMul", [(33, 40), (40, 27)]),
    "matmul_batched": single("MatMul", [(2, 3, 17, 24), (2, 3, 24, 9)]),
    "matmul_broadcast": single("MatMul", [(4, 16, 32)], inits={"w": lambda dt: _w((32, 64), dt)}),
    "matmul_vector": single("MatMul", [(3, 16), (16,)]),
    "gemm_transb_bias": single("Gemm", [(2, 64)], {"transB": 1},
                               {"w": lambda dt: _w((100, 64), dt), "b": lambda dt: _w(100, dt)}),
    "gemm_transa": single("Gemm", [(24, 8), (24, 40)], {"transA": 1}),
    "gemm_big_k": single("MatMul", [(4, 2048), (2048, 64)]),
    "relu": single("Relu", [(3, 5, 7)]), "sigmoid": single("Sigmoid", [(4, 33)]), "tanh": single("Tanh", [(100,)]),
    "leaky_relu": single("LeakyRelu", [(64,)], {"alpha": 0.2}), "elu": single("Elu", [(64,)], {"alpha": 0.7}),
    "selu": single("Selu", [(64,)]), "celu": single("Celu", [(64,)], opset=12),
    "softsign": single("Softsign", [(64,)]), "softplus": single("Softplus", [(64,)]),
    "clip": single("Clip", [(8, 9)], inits={"lo": lambda dt: np.asarray(-0.5, dt), "hi": lambda dt: np.asarray(1.0, dt)}),
    "hard_sigmoid": single("HardSigmoid", [(64,)]), "hard_swish": single("HardSwish", [(64,)], opset=14),
    "thresholded_relu": single("ThresholdedRelu", [(64,)], {"alpha": 0.3}, opset=10),
    "gelu": single("Gelu", [(64,)], opset=20), "gelu_tanh": single("Gelu", [(64,)], {"approximate": "tanh"}, opset=20),
    "mish": single("Mish", [(64,)], opset=18), "prelu": single("PRelu", [(2, 4, 5)], inits={"s": lambda dt: _w((4, 1), dt)}),
    "add_broadcast": single("Add", [(2, 3, 4, 5), (3, 1, 5)]), "sub": single("Sub", [(6, 7), (7,)]),
    "mul_scalar": single("Mul", [(5, 6), ()]), "div": single("Div", [(5, 6), (5, 6)]),
    "pow": single("Pow", [(5, 6), (1,)]), "max": single("Max", [(4, 5), (4, 5)]), "min": single("Min", [(4, 5), (5,)]),
    "greater": single("Greater", [(4, 5), (4, 5)]), "equal_bcast": single("Equal", [(3, 4), (4,)]),
    "exp": single("Exp", [(50,)]), "sqrt_abs": chain([("Abs", []), ("Sqrt", [])], (7, 9)),
    "log_chain": chain([("Abs", []), ("Add", [1.0]), ("Log", [])], (7, 9)),
    "sin": single("Sin", [(50,)]), "cos": single("Cos", [(50,)]), "atan": single("Atan", [(50,)]),
    "erf": single("Erf", [(50,)]), "floor": single("Floor", [(50,)]), "ceil": single("Ceil", [(50,)]),
    "round": single("Round", [(50,)], opset=11), "sign": single("Sign", [(50,)]), "neg": single("Neg", [(50,)]),
    "reciprocal": single("Reciprocal", [(50,)]), "isnan": single("IsNaN", [(50,)]), "isinf": single("IsInf", [(50,)]),
    "pointwise_chain": chain([("Mul", [2.0]), ("Sub", [0.5]), ("Sigmoid", []), ("Mul", [3.0])], (2, 3, 8, 8)),
    "batchnorm": single("BatchNormalization", [(2, 6, 5, 5)],
                        inits={"s": lambda dt: _w(6, dt) + 1, "b": lambda dt: _w(6, dt), "m": lambda dt: _w(6, dt),
                               "v": lambda dt: (np.abs(_w(6, dt)) + 0.5).astype(dt)}),
    "maxpool": single("MaxPool", [(2, 4, 11, 11)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "maxpool_ceil": single("MaxPool", [(1, 3, 10, 10)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    "maxpool_indices": single("MaxPool", [(1, 3, 8, 8)], {"kernel_shape": [2, 2], "strides": [2, 2]}, outputs=2),
    "avgpool_pad": single("AveragePool", [(2, 3, 9, 9)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "avgpool_include_pad": single("AveragePool", [(1, 3, 9, 9)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                                                 "count_include_pad": 1, "strides": [2, 2]}),
    "global_avgpool": single("GlobalAveragePool", [(2, 8, 7, 7)]),
    "global_avgpool_big": single("GlobalAveragePool", [(1, 4, 64, 64)]),
    "global_maxpool": single("GlobalMaxPool", [(2, 8, 5, 5)]), "lppool": single("LpPool", [(1, 2, 6, 6)], {"kernel_shape": [2, 2]}),
    "reduce_sum": single("ReduceSum", [(3, 4, 5)], {"keepdims": 0}, inits={"axes": np.array([1], np.int64)}, opset=13),
    "reduce_mean": single("ReduceMean", [(3, 4, 5)], {"axes": [0, 2]}),
    "reduce_max": single("ReduceMax", [(3, 40, 5)], {"axes": [1]}), "reduce_min": single("ReduceMin", [(6, 7)], {"axes": [1]}),
    "reduce_l2": single("ReduceL2", [(4, 300)], {"axes": [1]}), "reduce_l1": single("ReduceL1", [(4, 30)], {"axes": [0]}),
    "reduce_logsumexp": single("ReduceLogSumExp", [(4, 50)], {"axes": [1]}),
    "reduce_sumsquare": single("ReduceSumSquare", [(2, 5000)], {"axes": [1]}),
    "reduce_prod": single("ReduceProd", [(3, 6)], {"axes": [1]}),
    "softmax": single("Softmax", [(4, 10)], {"axis": -1}), "softmax_axis1": single("Softmax", [(2, 5, 3)], {"axis": 1}),
    "softmax_long": single("Softmax", [(2, 4096)], {"axis": 1}), "logsoftmax": single("LogSoftmax", [(3, 40)]),
    "hardmax": single("Hardmax", [(3, 40)]),
    "layernorm": single("LayerNormalization", [(2, 5, 64)], {"axis": -1},
                        {"s": lambda dt: _w(64, dt) + 1, "b": lambda dt: _w(64, dt)}),
    "instancenorm": single("InstanceNormalization", [(2, 3, 6, 6)], {}, {"s": lambda dt: _w(3, dt), "b": lambda dt: _w(3, dt)}),
    "groupnorm": single("GroupNormalization", [(2, 6, 4, 4)], {"num_groups": 3},
                        {"s": lambda dt: _w(6, dt), "b": lambda dt: _w(6, dt)}, opset=21),
    "lrn": single("LRN", [(1, 7, 4, 4)], {"size": 3}),
    "transpose": single("Transpose", [(2, 3, 4, 5)], {"perm": [0, 2, 3, 1]}),
    "depth_to_space": single("DepthToSpace", [(1, 8, 3, 3)], {"blocksize": 2}),
    "flatten_output": single("Flatten", [(2, 3, 4)]),
    "concat": single("Concat", [(2, 3, 4), (2, 5, 4)], {"axis": 1}), "concat_last": single("Concat", [(2, 3), (2, 4)], {"axis": 1}),
    "slice_step": single("Slice", [(10, 12)], inits={"s": np.array([1, 10], np.int64), "e": np.array([9, 0], np.int64),
                                                    "a": np.array([0, 1], np.int64), "st": np.array([2, -3], np.int64)}),
    "pad_constant": single("Pad", [(2, 3, 4)], inits={"p": np.array([0, 1, 2, 0, 2, -1], np.int64)}),
    "pad_reflect": single("Pad", [(1, 2, 5, 6)], {"mode": "reflect"}, {"p": np.array([0, 0, 2, 3, 0, 0, 1, 2], np.int64)}),
    "pad_edge": single("Pad", [(1, 2, 5, 6)], {"mode": "edge"}, {"p": np.array([0, 0, 2, 1, 0, 0, 3, 2], np.int64)}),
    "resize_nearest": single("Resize", [(1, 2, 4, 5)], {"mode": "nearest"},
                             {"roi": np.array([], np.float32), "sc": np.array([1, 1, 2, 1.5], np.float32)}),
    "resize_linear": single("Resize", [(1, 2, 4, 5)], {"mode": "linear"},
                            {"roi": np.array([], np.float32), "sc": np.array([1, 1, 2.5, 0.5], np.float32)}),
    "resize_cubic": single("Resize", [(1, 1, 6, 6)], {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
                           {"roi": np.array([], np.float32), "sc": np.array([1, 1, 1.5, 2], np.float32)}),
    "expand": single("Expand", [(3, 1)], inits={"shape": np.array([2, 3, 4], np.int64)}),
    "tile": single("Tile", [(2, 3)], inits={"r": np.array([2, 3], np.int64)}),
    "where": single("Where", [(4, 5), (4, 5), (5,)], dtypes={0: "bool"}),
    "cast_to_int": single("Cast", [(20,)], {"to": TensorProto.INT32}),
    "cast_to_bool": single("Cast", [(20,)], {"to": TensorProto.BOOL}),
    "gather": single("Gather", [(5, 6)], {"axis": 1}, {"idx": np.array([[0, -1], [3, 2]], np.int64)}),
    "gather_runtime_indices": single("Gather", [(7, 3), (4,)], {"axis": 0}, dtypes={1: "int64"}),
    "dequantize_axis": single("DequantizeLinear", [(2, 3, 4)], {"axis": 1}, dtypes={0: "int8"},
                              inits={"s": lambda dt: (np.abs(_w(3, dt)) + 0.1).astype(dt), "z": np.array([1, -2, 0], np.int8)},
                              opset=13),
    "quantize": single("QuantizeLinear", [(2, 3, 4)], {"axis": 1}, opset=13,
                       inits={"s": lambda dt: (np.abs(_w(3, dt)) + 0.01).astype(dt), "z": np.array([1, -2, 0], np.int8)}),
    "argmax": single("ArgMax", [(4, 9)], {"axis": 1}), "argmin": single("ArgMin", [(4, 9, 3)], {"axis": 1, "keepdims": 0}),
}
INT_CASES = {
    "int_add": single("Add", [(4, 5), (5,)]), "int_div": single("Div", [(30,), (30,)]),
    "int_mod": single("Mod", [(30,), (30,)]), "int_relu": single("Relu", [(30,)], opset=14),
    "int_reduce_sum": single("ReduceSum", [(3, 4)], {"keepdims": 1}, {"axes": np.array([1], np.int64)}, opset=13),
    "int_cast_float": single("Cast", [(20,)], {"to": TensorProto.FLOAT}),
    "bool_and": single("And", [(10,), (10,)]), "bool_not": single("Not", [(10,)]),
    "int_transpose": single("Transpose", [(3, 4)]), "int_concat": single("Concat", [(2, 2), (2, 3)], {"axis": 1}),
    "int8_maxpool": single("MaxPool", [(1, 2, 6, 6)], {"kernel_shape": [2, 2]}, opset=12),
}
_INT_DTYPES = {"bool_and": "bool", "bool_not": "bool", "int8_maxpool": "int8"}
_POSITIVE = {"pow", "reciprocal", "div", "lppool"}


def case_inputs(name: str, model) -> dict:
    rng = np.random.default_rng()
    feeds = feeds_for(model, *((0.5, 2.0) if name in _POSITIVE else (-2.0, 2.0)), rng=rng)
    if name == "gather_runtime_indices":
        feeds["i1"] = rng.integers(-7, 7, feeds["i1"].shape).astype(np.int64)
    if name in ("int_div", "int_mod"):
        feeds["i1"] = np.where(feeds["i1"] == 0, 3, feeds["i1"]).astype(feeds["i1"].dtype)
    if name == "isinf":
        feeds["i0"][::7] = np.inf
    if name == "isnan":
        feeds["i0"][::5] = np.nan
    return feeds


def options_for(name: str, dtype: str) -> dict:
    """fp16 cases compute every layer in fp16 (the builder would keep output layers fp32); the mixed
    case builds an fp16 model at fp32 precision (fp32 activations, fp16 weights converted at load)."""
    return ALL_FP16 if dtype == "float16" and not name.startswith("mixed") else {}


def all_cases():
    for name, build in FLOAT_CASES.items():
        for dt in F:
            yield f"{name}-{dt}", name, build, dt
    for name, build in INT_CASES.items():
        yield name, name, build, _INT_DTYPES.get(name, "int64" if "int" in name else "int32")


@pytest.mark.parametrize("label,name,build,dtype", list(all_cases()), ids=[c[0] for c in all_cases()])
def test_layer_kind(label, name, build, dtype):
    model = build(dtype)
    errors = run_case(model, case_inputs(name, model), **options_for(name, dtype))
    tolerance = TOLERANCE.get(dtype, 0.0)
    assert all(e <= tolerance for e in errors.values()), f"{label}: errors {errors} (tolerance {tolerance})"


# tf32 (opt-in): fp32 tensors, matrix products on tensor cores with inputs rounded to 10 mantissa bits.
TF32_TOLERANCE = 2e-3
_TF32_CASES = [name for name in FLOAT_CASES if name.startswith(("conv", "matmul", "splitk", "mixed"))
               and name not in ("conv_depthwise", "conv_depthwise_s2", "conv3d")]


@pytest.mark.parametrize("name", _TF32_CASES)
def test_tf32_matrix_kernels(name):
    model = FLOAT_CASES[name]("float32")
    plan = compile_plan(model, case_inputs(name, model), tf32=True)
    tactics = [launch["tactic"] for launches in plan.document["kernels"][driver().arch()]["launches"]
               for launch in launches]
    assert any(" tf32 " in t for t in tactics), tactics
    errors = run_case(model, case_inputs(name, model), tf32=True)
    assert all(e <= TF32_TOLERANCE for e in errors.values()), f"{name}: errors {errors}"


# -- models, graphs, contexts ---------------------------------------------------------------------
def _model_cases():
    from models import MODELS
    return list(MODELS)


@pytest.mark.parametrize("name", _model_cases())
@pytest.mark.parametrize("dtype", F)
def test_models_end_to_end(name, dtype):
    from models import MODELS
    from helpers import random_inputs
    case = MODELS[name]
    model = case.build() if dtype == "float32" else to_float16(case.build())
    feeds = random_inputs(model, case.shapes)
    errors = run_case(model, feeds, **({"precision": "fp16"} if dtype == "float16" else {}))
    assert all(e <= TOLERANCE[dtype] for e in errors.values()), f"{name} {dtype}: {errors}"


@pytest.mark.parametrize("name", _model_cases())
def test_models_end_to_end_tf32(name):
    from models import MODELS
    from helpers import random_inputs
    case = MODELS[name]
    model = case.build()
    errors = run_case(model, random_inputs(model, case.shapes), tf32=True)
    assert all(e <= TF32_TOLERANCE for e in errors.values()), f"{name} tf32: {errors}"


def _zoo_cases():
    import glob
    import os
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    return [p for p in sorted(glob.glob(os.path.join(folder, "light_*.onnx"))) if "vgg19" not in p]


def _zoo_model(path):
    from test_light_zoo import _random_weights, _with_logits
    return _random_weights(_with_logits(onnx.load(path)))


@pytest.mark.parametrize("path", _zoo_cases(), ids=lambda p: p.rsplit("light_", 1)[-1][:-5])
def test_light_zoo_end_to_end(path):
    """ONNX's light zoo (random weights, logits exposed): GPU against the CPU on the same plan."""
    from helpers import random_inputs
    from test_light_zoo import _tolerances
    model = _zoo_model(path)
    feeds = random_inputs(model)
    plan = compile_plan(model, feeds)
    context = CudaEngine(plan.document, driver=driver()).create_execution_context()
    context.poison()
    got = context.execute(feeds)
    want = edgert.load(plan).create_execution_context().execute(feeds)
    tolerances = _tolerances(model, want, 1e-4)
    errors = {k: error(got[k], want[k]) for k in want}
    assert all(errors[k] <= tolerances[k] for k in want), f"{errors} (tolerances {tolerances})"


def to_float16(model):
    """The model with float32 weights, inputs and outputs in float16 (Resize scales/roi stay float32)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    keep = {n.input[i] for n in g.node if n.op_type == "Resize" for i in (1, 2) if i < len(n.input)}
    for index, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            g.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value" and a.t.data_type == TensorProto.FLOAT \
                    and not set(node.output) & keep:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
    for info in list(g.input) + list(g.output) + list(g.value_info):
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.FLOAT16
    return model


def _resnet_plan(dtype="float32"):
    from models import MODELS
    from helpers import random_inputs
    case = MODELS["resnet"]
    model = case.build() if dtype == "float32" else to_float16(case.build())
    feeds = random_inputs(model, case.shapes)
    return compile_plan(model, feeds, **(ALL_FP16 if dtype == "float16" else {})), feeds


def test_graph_replay_matches_plain_launches_and_repeats():
    plan, feeds = _resnet_plan()
    engine = CudaEngine(plan.document, driver=driver())
    graphed, plain = engine.create_execution_context(True), engine.create_execution_context(False)
    for _ in range(2):  # the second run replays the captured graph
        feeds = {k: np.random.default_rng().standard_normal(v.shape).astype(v.dtype) for k, v in feeds.items()}
        a, b = graphed.execute(feeds), plain.execute(feeds)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("name", ["inception", "two_head"])
def test_aux_streams_give_identical_outputs(name):
    """max_aux_streams=2 (branches on auxiliary streams, captured as parallel graph branches) gives exactly the
    outputs of one stream, graph and plain launches, run after run; both within fp32 tolerance of the CPU."""
    from stream_models import STREAM_MODELS
    model, shapes = STREAM_MODELS[name](size=32, width=32, seed=7)
    feeds = {"image": np.random.default_rng().standard_normal(shapes["image"]).astype(np.float32)}
    one, many = compile_plan(model, feeds), compile_plan(model, feeds, max_aux_streams=2)
    assert len({layer.get("stream", 0) for layer in many.layers}) > 1
    want = CudaEngine(one.document, driver=driver()).create_execution_context().execute(feeds)
    cpu = edgert.load(one).create_execution_context().execute(feeds)
    engine = CudaEngine(read_plan(many.to_bytes()), driver=driver())
    for use_graph in (True, False):
        context = engine.create_execution_context(use_graph)
        context.poison()
        for _ in range(3):
            got = context.execute(feeds)
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])
                assert error(got[key], cpu[key]) <= TOLERANCE["float32"]


def test_two_contexts_share_weights_not_arenas():
    plan, feeds = _resnet_plan()
    engine = CudaEngine(plan.document, driver=driver())
    first, second = engine.create_execution_context(), engine.create_execution_context()
    other = {k: (v * 2).astype(v.dtype) for k, v in feeds.items()}
    a = first.execute(feeds)
    b = second.execute(other)
    again = first.execute(feeds)
    for name in a:
        np.testing.assert_array_equal(a[name], again[name])
        assert not np.array_equal(a[name], b[name])


def test_execute_async_with_device_arrays():
    if _STATE["emulate"]:
        pytest.skip("needs cupy arrays")
    import cupy
    plan, feeds = _resnet_plan("float16")
    engine = CudaEngine(plan.document, driver=driver())
    context = engine.create_execution_context()
    stream = cupy.cuda.Stream(non_blocking=True)
    outputs = context.execute_async({k: cupy.asarray(v) for k, v in feeds.items()}, stream)
    stream.synchronize()
    want = context.execute(feeds)
    for name, value in outputs.items():
        assert isinstance(value, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(value), want[name])


def test_plan_round_trip_keeps_kernels():
    plan, feeds = _resnet_plan()
    document = read_plan(Plan(plan.document).to_bytes())
    got = CudaEngine(document, driver=driver()).create_execution_context().execute(feeds)
    want = edgert.load(plan).create_execution_context().execute(feeds)
    assert all(error(got[k], want[k]) <= 1e-4 for k in want)


def test_pycuda_loader_runs_the_same_plan():
    pytest.importorskip("pycuda")
    from edgert.runtime.pycuda_backend import load as load_with_pycuda
    plan, feeds = _resnet_plan("float16")
    engine = load_with_pycuda(plan.document)
    context = engine.create_execution_context()
    context.poison()
    want = edgert.load(plan).create_execution_context().execute(feeds)
    for _ in range(2):   # the second run replays the captured graph
        got = context.execute(feeds)
        assert all(error(got[k], want[k]) <= 1e-2 for k in want), "pycuda loader disagrees with the CPU"


def test_wrong_arch_is_refused_naming_both():
    plan, _ = _resnet_plan()
    document = dict(plan.document)
    arch = driver().arch()
    other = "sm_87" if arch != "sm_87" else "sm_90"
    document["kernels"] = {other: compile_for_plan(document, other)}
    with pytest.raises(DeviceError) as info:
        CudaEngine(document, driver=driver())
    assert other in str(info.value) and arch in str(info.value)


# -- without pytest --------------------------------------------------------------------------------
class _CompileOnly:
    """Stands in for a GPU when only the kernels are compiled (fills the compile cache)."""

    def __init__(self, arch: str):
        self._arch = arch

    def arch(self) -> str:
        return self._arch


def main(argv: list[str]) -> int:
    if "--compile-only" in argv:
        _STATE["driver"] = _CompileOnly(argv[argv.index("--compile-only") + 1])
        from models import MODELS
        from helpers import random_inputs
        for label, name, build, dtype in all_cases():
            model = build(dtype)
            compile_plan(model, case_inputs(name, model), **options_for(name, dtype))
        for name, case in MODELS.items():
            for dtype in F:
                model = case.build() if dtype == "float32" else to_float16(case.build())
                compile_plan(model, random_inputs(model, case.shapes), **({"precision": "fp16"} if dtype == "float16" else {}))
        for path in _zoo_cases():
            model = _zoo_model(path)
            compile_plan(model, random_inputs(model))
        print("compiled every case")
        return 0
    if "--emulate" in argv:
        from edgert.kernels.cuda.emulator import EmulatedDriver
        _STATE["driver"], _STATE["emulate"] = EmulatedDriver(), True
    patterns = [a for a in argv if not a.startswith("--")]
    failures = 0
    for label, name, build, dtype in all_cases():
        if patterns and not any(p in label for p in patterns):
            continue
        try:
            model = build(dtype)
            errors = run_case(model, case_inputs(name, model), **options_for(name, dtype))
            ok = all(e <= TOLERANCE.get(dtype, 0.0) for e in errors.values())
            print(f"{'ok  ' if ok else 'FAIL'} {label:32s} {max(errors.values()):.3g}", flush=True)
        except Exception as exc:  # report and go on: one table of every case
            ok = False
            print(f"ERR  {label:32s} {type(exc).__name__}: {str(exc).splitlines()[0][:150]}", flush=True)
        failures += not ok
    print(f"{failures} failing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
