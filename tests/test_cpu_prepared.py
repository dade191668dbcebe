"""Prepared CPU layers: the runs that prepare hooks bind at context creation, against onnxruntime.

The op tests already run every layer kind through the engine; these cases aim at what binding once
could break: the fast convolution and pooling paths (strided, padded, grouped, dilated, depthwise,
pointwise, batched, fused epilogues), in-place layers and concatenation slices of the arena, two
contexts of one engine, runtime weights that must not be frozen, scratch shared between layers, and
allocation-free runs.
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.ir.kinds import LayerKind
from edgert.runtime.engine import Workspace
from helpers import assert_matches_ort, assert_runs_allocate_nothing, normwise_error, ort_run
from models import MODELS

rng = np.random.default_rng()


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def prepared_kinds(context) -> list[LayerKind]:
    """Kinds of the layers that run a prepare hook's run() (not the kernel over bound lists)."""
    unprepared = set(context.unprepared_layers())
    return [step.kind for step, _ in context._steps if step.name not in unprepared]


def make_model(graph) -> onnx.ModelProto:
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def conv_model(x_shape, w_shape, attrs, bias=True, tail=("Relu",), dtype=np.float32):
    """x -> Conv(w, b) -> tail ops ("Relu", "Clip", "Add" of a second input shaped as the output)."""
    nodes, inits = [], [numpy_helper.from_array(randn(*w_shape).astype(dtype), "w")]
    inputs = [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), x_shape)]
    if bias:
        inits.append(numpy_helper.from_array(randn(w_shape[0]).astype(dtype), "b"))
    nodes.append(helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["c"], **attrs))
    last = "c"
    for index, op in enumerate(tail):
        out = f"t{index}"
        if op == "Add":
            nodes.append(helper.make_node("Add", [last, "r"], [out]))
        elif op == "Clip":
            inits += [numpy_helper.from_array(np.array(bound, dtype), name) for bound, name in ((0, "lo"), (6, "hi"))]
            nodes.append(helper.make_node("Clip", [last, "lo", "hi"], [out]))
        else:
            nodes.append(helper.make_node(op, [last], [out]))
        last = out
    graph = helper.make_graph(nodes, "conv", inputs, [helper.make_tensor_value_info(last, TensorProto.UNDEFINED, None)],
                              inits)
    model = onnx.shape_inference.infer_shapes(make_model(graph))
    if "Add" in tail:   # the residual: a graph input shaped as the convolution's output
        c = next(v for v in model.graph.value_info if v.name == "c")
        model.graph.input.append(helper.make_tensor_value_info("r", c.type.tensor_type.elem_type,
                                                               [d.dim_value for d in c.type.tensor_type.shape.dim]))
    return model


def feeds_for(model) -> dict:
    return {i.name: randn(*[d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input}


def run_and_compare(model, feeds, tolerance=1e-5):
    """Outputs within tolerance of onnxruntime; returns the context (to inspect what ran prepared)."""
    context = edgert.load(edgert.build(model, shapes={k: v.shape for k, v in feeds.items()})).create_execution_context()
    ours = context.execute(feeds)
    for name, want in ort_run(model, feeds).items():
        assert normwise_error(ours[name], want) <= tolerance, name
    return context


CONVS = [   # (x, w, attrs, tail): every one through the prepared convolution
    ((1, 8, 12, 12), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}, ("Relu",)),
    ((1, 8, 12, 12), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}, ("Add", "Relu")),           # residual epilogue
    ((1, 3, 20, 20), (8, 3, 7, 7), {"pads": [3, 3, 3, 3], "strides": [2, 2]}, ("Relu",)),  # stem-like
    ((1, 4, 11, 13), (6, 4, 3, 2), {"pads": [0, 1, 2, 1], "strides": [2, 3]}, ("Clip",)),  # asymmetric pads
    ((1, 4, 13, 14), (6, 4, 3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, ("Relu",)),
    ((1, 4, 13, 14), (6, 4, 3, 4), {"pads": [2, 1, 1, 2], "dilations": [2, 2], "strides": [2, 3]}, ()),
    ((1, 8, 9, 9), (8, 4, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, ("Relu",)),
    ((2, 8, 9, 9), (8, 4, 3, 3), {"group": 2, "pads": [1, 1, 1, 1], "strides": [2, 2]}, ()),
    ((1, 16, 10, 10), (16, 1, 3, 3), {"group": 16, "pads": [1, 1, 1, 1]}, ("Clip",)),      # depthwise
    ((2, 16, 10, 10), (16, 1, 3, 3), {"group": 16, "pads": [1, 1, 1, 1], "strides": [2, 2]}, ("Relu",)),
    ((1, 8, 12, 11), (8, 1, 5, 5), {"group": 8, "pads": [2, 1, 2, 3], "strides": [2, 2], "dilations": [1, 2]}, ()),
    ((1, 8, 9, 9), (24, 8, 1, 1), {}, ("Clip",)),                 # pointwise, bias folded (outputs > inputs)
    ((1, 24, 9, 9), (8, 24, 1, 1), {}, ("Add",)),                 # pointwise, bias added after
    ((1, 8, 9, 9), (16, 8, 1, 1), {"strides": [2, 2]}, ()),
    ((2, 8, 7, 7), (16, 4, 1, 1), {"group": 2}, ("Relu",)),
    ((2, 3, 20), (5, 3, 4), {"pads": [1, 2], "strides": [3]}, ("Relu",)),                  # 1-D
    ((1, 2, 5, 6, 7), (4, 2, 3, 3, 3), {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 2]}, ()),  # 3-D
]


@pytest.mark.parametrize("x_shape,w_shape,attrs,tail", CONVS)
@pytest.mark.parametrize("bias", [True, False])
def test_prepared_convolution_matches_onnxruntime(x_shape, w_shape, attrs, tail, bias):
    model = conv_model(x_shape, w_shape, attrs, bias, tail)
    context = run_and_compare(model, feeds_for(model))
    assert LayerKind.CONVOLUTION in prepared_kinds(context)



@pytest.mark.parametrize("x_shape", [(1, 32, 64, 64),    # 4.5 MiB of columns: one GEMM (or tiles, native)
                                     (1, 64, 96, 96)])   # 20 MiB: native column tiles, else the generic kernel
@pytest.mark.parametrize("switch", ["1", "0"])
def test_large_convolutions_run_prepared(x_shape, switch, monkeypatch):
    from edgert.kernels.cpu import native
    from edgert.kernels.cpu.convolution_prepared import PREPARED_COLUMN_BYTES
    monkeypatch.setenv(native.ENV_SWITCH, switch)
    columns = x_shape[1] * 9 * x_shape[2] * x_shape[3] * 4
    model = conv_model(x_shape, (8, x_shape[1], 3, 3), {"pads": [1, 1, 1, 1]})
    context = run_and_compare(model, feeds_for(model))
    # with the native module every size runs prepared (in L2-sized column tiles); NumPy alone up to the budget
    prepared = native.enabled() or columns <= PREPARED_COLUMN_BYTES
    assert (LayerKind.CONVOLUTION in prepared_kinds(context)) == prepared


POOLS = [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [2, 1]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ("GlobalAveragePool", {}),
    ("GlobalMaxPool", {}),
]


@pytest.mark.parametrize("op_type,attrs", POOLS)
def test_prepared_pooling_matches_onnxruntime(op_type, attrs):
    shape = (2, 3, 11) if len(attrs.get("kernel_shape", [0, 0])) == 1 else (2, 3, 11, 10)
    graph = helper.make_graph([helper.make_node(op_type, ["x"], ["y"], **attrs)], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    context = run_and_compare(make_model(graph), {"x": randn(*shape)})
    assert prepared_kinds(context) == [LayerKind.POOLING]


def _branchy_model():
    """Two convolutions into a channel concat (written in place as its slices), a Relu, two poolings of it
    added in place (the Add's output over one of its inputs)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(randn(6, 4, 3, 3), "w1"), numpy_helper.from_array(randn(5, 4, 1, 1), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Relu", ["c"], ["d"]),
             helper.make_node("MaxPool", ["d"], ["e"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["d"], ["f"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["e", "f"], ["y"])]
    return make_model(helper.make_graph(nodes, "branchy", [x], [y], inits))


def test_in_place_layers_and_concat_slices_run_prepared():
    model = _branchy_model()
    feeds = {"x": randn(1, 4, 8, 8)}
    planned = edgert.build(model, shapes={"x": (1, 4, 8, 8)})
    assert planned.document["memory"]["elided"], "the concat should be written in place"
    context = edgert.load(planned).create_execution_context()
    in_place = [step.kind for step, outs in context._steps
                if any(i >= 0 and np.shares_memory(context.buffers[i], outs[0]) for i in step.inputs)]
    assert LayerKind.ELEMENTWISE in in_place, "the Add should write over one of its inputs"
    unplanned = edgert.load(edgert.build(model, shapes={"x": (1, 4, 8, 8)}, memory_reuse=False))
    want = unplanned.create_execution_context().execute(feeds)["y"]
    for _ in range(2):   # a second run sees what the first left in the arena and the scratch
        np.testing.assert_array_equal(context.execute(feeds)["y"], want)
    assert normwise_error(want, ort_run(model, feeds)["y"]) <= 1e-5
    assert len(prepared_kinds(context)) == len(context._steps)


def test_two_contexts_of_one_engine_stay_independent():
    case = MODELS["mobilenetv2"]
    engine = edgert.load(edgert.build(case.build(), shapes=case.shapes))
    first, second = engine.create_execution_context(), engine.create_execution_context()
    batches = [{"input": randn(*case.shapes["input"])} for _ in range(3)]
    want = [engine.create_execution_context().execute(feeds)["logits"] for feeds in batches]
    for index in (0, 1, 2, 1, 0):   # interleaved runs: neither context's arena or scratch leaks into the other
        np.testing.assert_array_equal(first.execute(batches[index])["logits"], want[index])
        np.testing.assert_array_equal(second.execute(batches[2 - index])["logits"], want[2 - index])
    assert engine.derived, "weights derived from constants are kept once, on the engine"


def test_two_threads_two_contexts():
    case = MODELS["resnet"]
    engine = edgert.load(edgert.build(case.build(), shapes=case.shapes))
    batches = [{"input": randn(*case.shapes["input"])} for _ in range(4)]
    want = [engine.create_execution_context().execute(feeds)["logits"] for feeds in batches]
    results: list = [None, None]

    def worker(slot):
        context = engine.create_execution_context()
        results[slot] = [context.execute(feeds)["logits"] for feeds in batches for _ in range(5)][::5]

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got in results:
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_runtime_weights_and_half_precision_keep_the_kernel(monkeypatch):
    """Weights that are graph inputs change between runs: a strided layer whose weights must be reordered
    cannot freeze them, so it keeps the kernel (the native im2col reads them in their own order, a view: it
    may bind them); float16 has no fast path. All match onnxruntime."""
    model = conv_model((1, 4, 9, 9), (6, 4, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, tail=())
    weights = model.graph.initializer[0]
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(weights.dims)))
    del model.graph.initializer[0]
    for switch in ("1", "0"):
        monkeypatch.setenv("EDGERT_CPU_NATIVE", switch)
        context = edgert.load(edgert.build(model)).create_execution_context()
        for _ in range(2):   # new weights on each run of one context
            feeds = feeds_for(model)
            assert normwise_error(context.execute(feeds)["c"], ort_run(model, feeds)["c"]) <= 1e-5
    assert LayerKind.CONVOLUTION not in prepared_kinds(context)
    half = conv_model((1, 4, 9, 9), (6, 4, 3, 3), {"pads": [1, 1, 1, 1]}, dtype=np.float16)
    feeds = {"x": randn(1, 4, 9, 9).astype(np.float16)}
    context = edgert.load(edgert.build(half, shapes={"x": (1, 4, 9, 9)})).create_execution_context()
    assert normwise_error(context.execute(feeds)["t0"], ort_run(half, feeds)["t0"]) <= 1e-2
    assert LayerKind.CONVOLUTION not in prepared_kinds(context)


def test_runs_leave_inputs_and_weights_untouched():
    case = MODELS["unet"]
    engine = edgert.load(edgert.build(case.build(), shapes=case.shapes))
    context = engine.create_execution_context()
    feeds = {name: randn(*shape) for name, shape in case.shapes.items()}
    kept = {name: array.copy() for name, array in feeds.items()}
    weights = {tensor: array.copy() for tensor, array in engine.constants.items()}
    first = context.execute(feeds)
    second = context.execute(feeds)
    for name in feeds:
        np.testing.assert_array_equal(feeds[name], kept[name])
    for tensor, array in engine.constants.items():
        np.testing.assert_array_equal(array, weights[tensor])
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_prepared_runs_allocate_no_tensors():
    """Large activations (256 KiB and more per layer): any per-run allocation of a tensor, a column matrix or a
    padded copy would show; NumPy's own iterator buffers (at most 8192 elements per operand) stay below."""
    model = conv_model((1, 16, 64, 64), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}, tail=("Add", "Relu"))
    feeds = feeds_for(model)
    context = edgert.load(edgert.build(model, shapes={k: v.shape for k, v in feeds.items()})).create_execution_context()
    context.execute(feeds)
    assert len(prepared_kinds(context)) == len(context._steps)
    assert_runs_allocate_nothing(context)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_layer_of_the_test_models_is_prepared(name):
    """The fast paths cover the test models whole (a layer falling back to its kernel is a performance bug)."""
    case = MODELS[name]
    context = edgert.load(edgert.build(case.build(), shapes=case.shapes)).create_execution_context()
    assert not context.unprepared_layers()


def test_workspace_scratch_is_shared_between_layers_and_aligned():
    case = MODELS["exporter_style"]
    engine = edgert.load(edgert.build(case.build(), shapes=case.shapes))
    workspace = Workspace(engine)
    workspace.begin_layer()
    a, b = workspace.scratch((3, 5), np.float32), workspace.scratch((1000,), np.float64)
    assert not np.may_share_memory(a, b)
    assert a.ctypes.data % Workspace.ALIGNMENT == 0 and b.ctypes.data % Workspace.ALIGNMENT == 0
    workspace.begin_layer()
    c = workspace.scratch((1000,), np.float64)
    assert np.may_share_memory(c, b) or np.may_share_memory(c, a), "layers run one at a time: they share scratch"
    big = workspace.scratch((1 << 16,), np.float32)   # outgrows the buffer: the layer's earlier array stays valid
    c[:] = 1
    big[:] = 2
    assert (c == 1).all()
    assert workspace.allocated_bytes >= (1 << 18) + 8000   # every buffer it holds counts
    context = engine.create_execution_context()
    assert context.scratch_bytes > 0   # reported beside the plan's arena (edgert bench prints it)
    constant = next(iter(engine.constants.values()))
    doubled = workspace.derived(constant, "twice", lambda w: w * 2)
    assert doubled is Workspace(engine).derived(constant, "twice", lambda w: w * 3)   # once per engine
    assert not doubled.flags.writeable
    assert workspace.derived(np.ones(3), "twice", lambda w: w * 2) is None            # not a constant


def test_transformer_blocks_match_onnxruntime():
    """LayerNorm, Softmax, MatMul epilogues and the erf GELU chain (PointWise) through their prepared runs."""
    case = MODELS["transformer"]
    model = case.build()
    feeds = {name: randn(*shape) for name, shape in case.shapes.items()}
    errors = assert_matches_ort(model, feeds)
    assert all(error <= 1e-5 for error in errors.values())


def test_float16_scale_computes_in_float32_and_rounds_once():
    """A folded BatchNorm after a residual sum: ``x * scale`` nearly cancelled by ``shift``. Rounding the product
    to float16 first (the old kernel) loses the bits that survive; computing in float32 and rounding at the store
    gives the correctly rounded result, in both the prepared and the plain kernel."""
    from edgert.kernels.cpu.scale import prepare_scale, scale_shift
    rng = np.random.default_rng()
    x = (rng.standard_normal((2, 8, 16, 16)) * 40 + 100).astype(np.float16)
    scale = (rng.uniform(0.5, 2, (1, 8, 1, 1))).astype(np.float16)
    shift = -(x.astype(np.float32).mean(axis=(0, 2, 3), keepdims=True) * scale).astype(np.float16)
    want = (x.astype(np.float32) * scale.astype(np.float32) + shift.astype(np.float32)).astype(np.float16)
    stepwise = (x * scale + shift)                                    # every step rounded to float16
    assert not np.array_equal(stepwise, want), "the case must be one where rounding twice loses bits"
    plain = np.empty_like(x)
    scale_shift(x, scale, shift, plain)
    np.testing.assert_array_equal(plain, want)
    case = MODELS["exporter_style"]
    workspace = Workspace(edgert.load(edgert.build(case.build(), shapes=case.shapes)))
    workspace.begin_layer()
    prepared = np.empty_like(x)
    prepare_scale({}, [x, scale, shift], [prepared], workspace)()
    np.testing.assert_array_equal(prepared, want)
