"""Tensor-manipulation ops (Reshape, Transpose, Concat, Slice, Gather, Expand, ...) against onnxruntime,
their error paths, the CPU kernels of their layer kinds, and folding of exporter-style shape sub-graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper, numpy_helper

import edgert
from edgert.errors import EdgeRTError, InputError, ModelError, ShapeError, UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup
from helpers import assert_matches_ort, edgert_run

INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
NP_TO_ONNX = {np.dtype(k): v for k, v in {
    "float32": T.FLOAT, "float16": T.FLOAT16, "float64": T.DOUBLE, "int8": T.INT8, "uint8": T.UINT8,
    "int32": T.INT32, "int64": T.INT64, "bool": T.BOOL}.items()}
ALL_DTYPES = list(NP_TO_ONNX)


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    """inputs: {name: (shape, np dtype)} (dims may be strings); outputs: names; initializers: {name: array}."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(name, NP_TO_ONNX[np.dtype(dtype)], shape)
         for name, (shape, dtype) in inputs.items()],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [numpy_helper.from_array(np.asarray(a), name) for name, a in dict(initializers).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    # Output element types from ONNX shape inference (onnxruntime needs them); shapes left open.
    inferred = {o.name: o.type.tensor_type.elem_type for o in onnx.shape_inference.infer_shapes(model).graph.output}
    for output in model.graph.output:
        output.type.tensor_type.elem_type = inferred[output.name]
    return model


def single(op, inputs, initializers=(), opset=17, n_outputs=1, **attrs):
    """A model of one ``op`` node reading graph inputs then initializers, in order."""
    names = list(inputs) + list(dict(initializers))
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, **attrs)
    return make_model([node], inputs, outs, initializers, opset)


def check(model, feeds=None, tolerance=0.0):
    assert_matches_ort(model, feeds, tolerance=tolerance)


def layer_kinds(model, **build_options) -> list[LayerKind]:
    return [LayerKind(layer["kind"]) for layer in edgert.build(model, **build_options).layers]


def build_error(model, shapes=None):
    return edgert.build(model, shapes=shapes or {})


# -- shuffles ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_transpose_every_dtype(dtype):
    check(single("Transpose", {"x": ([2, 3, 4], dtype)}, perm=[1, 2, 0]))


@pytest.mark.parametrize("shape,perm", [([2, 3, 4], None), ([2, 3, 4, 5], [0, 2, 3, 1]), ([5], None),
                                        ([1, 2, 3, 4, 5], [4, 2, 0, 3, 1])])
def test_transpose_perms(shape, perm):
    attrs = {"perm": perm} if perm else {}
    check(single("Transpose", {"x": (shape, np.float32)}, opset=13, **attrs))


@pytest.mark.parametrize("target,allowzero", [([-1], 0), ([0, -1], 0), ([2, 0, 2, 3], 0), ([3, 8], 1),
                                              ([2, -1, 1, 3], 0), ([24], 1)])
def test_reshape(target, allowzero):
    attrs = {"allowzero": allowzero} if allowzero else {}
    check(single("Reshape", {"x": ([4, 2, 3], np.float32)}, {"s": np.array(target, np.int64)}, opset=14, **attrs))


def test_reshape_old_opset():
    check(single("Reshape", {"x": ([4, 2, 3], np.int8)}, {"s": np.array([0, 6], np.int64)}, opset=7))


def test_reshape_allowzero_zero_dim_folds():
    model = single("Reshape", {}, {"x": np.zeros((0, 3, 4), np.float32), "s": np.array([3, 4, 0], np.int64)},
                   opset=14, allowzero=1)
    out = edgert.load(edgert.build(model).to_bytes()).create_execution_context().execute({})["y0"]
    assert out.shape == (3, 4, 0)


@pytest.mark.parametrize("axis", [0, 1, 2, 4, -1, -3])
@pytest.mark.parametrize("opset", [9, 13])
def test_flatten(axis, opset):
    if axis < 0 and opset < 11:
        pytest.skip("negative axis needs opset 11")
    check(single("Flatten", {"x": ([2, 3, 4, 5], np.float32)}, opset=opset, axis=axis))


def test_flatten_default_axis():
    check(single("Flatten", {"x": ([2, 3, 4], np.uint8)}))


def with_axes(op, inputs, axes, opset):
    """``op`` with ``axes`` as the attribute (before opset 13) or as a constant input (from 13 on)."""
    if axes is None:
        return single(op, inputs, opset=opset)
    if opset < 13:
        return single(op, inputs, opset=opset, axes=axes)
    return single(op, inputs, {"axes": np.array(axes, np.int64)}, opset=opset)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op,axes", [("Squeeze", None), ("Squeeze", [0]), ("Squeeze", [-1]), ("Squeeze", [0, 3]),
                                     ("Unsqueeze", [0]), ("Unsqueeze", [4]), ("Unsqueeze", [-1]),
                                     ("Unsqueeze", [0, 3]), ("Unsqueeze", [5, 0, -3])])
def test_squeeze_unsqueeze(op, axes, opset):
    check(with_axes(op, {"x": ([1, 3, 4, 1], np.int32)}, axes, opset))


def test_unsqueeze_opset_9():
    check(with_axes("Unsqueeze", {"x": ([3, 4], np.float32)}, [2, 0], 9))


def test_unsqueeze_scalar():
    check(single("Unsqueeze", {"x": ([], np.float32)}, {"axes": np.array([0, 1], np.int64)}, opset=13))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    check(single("DepthToSpace", {"x": ([2, 8, 3, 5], np.float32)}, opset=13, blocksize=2, mode=mode))


def test_depth_to_space_opset_9_default_mode():
    check(single("DepthToSpace", {"x": ([1, 18, 2, 2], np.float32)}, opset=9, blocksize=3))


@pytest.mark.parametrize("block", [2, 3])
def test_space_to_depth(block):
    check(single("SpaceToDepth", {"x": ([2, 3, 6, 12], np.float32)}, opset=13, blocksize=block))


def test_reshape_then_transpose_of_equal_dims():
    """Swapping two axes of equal size moves data: it is not a reshape (an exported attention head split)."""
    nodes = [_node("Reshape", ["x", "s"], "r"), _node("Transpose", ["r"], "y", perm=[0, 2, 1, 3])]
    check(make_model(nodes, {"x": ([2, 4, 32], np.float32)}, ["y"], {"s": np.array([2, 4, 4, 8])}))


def random_shuffle_chain(rng, length=6):
    """A chain of random Reshape/Transpose/Squeeze/Unsqueeze/Flatten nodes over small dims with 1s and repeats."""
    shape = list(rng.choice([1, 2, 3], size=rng.integers(2, 5)))
    nodes, initializers, current, name = [], {}, list(shape), "x"
    for i in range(length):
        op = rng.choice(["Reshape", "Transpose", "Unsqueeze", "Squeeze", "Flatten"])
        out = f"t{i}"
        if not current:
            op = "Unsqueeze"
        if op == "Transpose" or (op == "Squeeze" and 1 not in current):
            perm = [int(p) for p in rng.permutation(len(current))]
            nodes.append(_node("Transpose", [name], out, perm=perm))
            current = [current[p] for p in perm]
        elif op == "Squeeze":
            axis = int(rng.choice([a for a, d in enumerate(current) if d == 1]))
            initializers[f"a{i}"] = np.array([axis])
            nodes.append(_node("Squeeze", [name, f"a{i}"], out))
            current.pop(axis)
        elif op == "Unsqueeze" or (op == "Flatten" and not current):
            axis = int(rng.integers(0, len(current) + 1))
            initializers[f"a{i}"] = np.array([axis])
            nodes.append(_node("Unsqueeze", [name, f"a{i}"], out))
            current.insert(axis, 1)
        elif op == "Flatten":
            axis = int(rng.integers(0, len(current) + 1))
            nodes.append(_node("Flatten", [name], out, axis=axis))
            current = [int(np.prod(current[:axis])), int(np.prod(current[axis:]))]
        else:
            total, dims = int(np.prod(current)), []
            for factor in sorted(sum(([p] * e for p, e in ((2, 8), (3, 4))), []), key=lambda _: rng.random()):
                if total % factor == 0 and rng.random() < 0.6:
                    dims.append(factor)
                    total //= factor
            dims = dims + [total] if total > 1 or not dims else dims
            dims.insert(int(rng.integers(0, len(dims) + 1)), 1) if rng.random() < 0.3 else None
            initializers[f"s{i}"] = np.array(dims)
            nodes.append(_node("Reshape", [name, f"s{i}"], out))
            current = dims
        name = out
    nodes.append(_node("Identity", [name], "y"))
    return make_model(nodes, {"x": ([int(d) for d in shape], np.float32)}, ["y"], initializers, opset=13)


@pytest.mark.parametrize("trial", range(20))
@pytest.mark.parametrize("optimize", [False, True])
def test_random_shuffle_chains(trial, optimize):
    assert_matches_ort(random_shuffle_chain(np.random.default_rng()), tolerance=0.0, optimize=optimize)


# -- concatenation, split, slice ---------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_concat(axis, dtype):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for i, shape in enumerate(shapes):
        shape[axis] = i + 1
    check(single("Concat", {f"x{i}": (s, dtype) for i, s in enumerate(shapes)}, axis=axis))


def test_concat_with_constant_and_single_input():
    check(single("Concat", {"x": ([2, 3], np.float32)}, {"c": np.ones((2, 2), np.float32)}, axis=1))
    check(single("Concat", {"x": ([2, 3], np.float32)}, axis=0))


@pytest.mark.parametrize("opset,split,axis,outputs", [
    (11, [1, 2, 3], 1, 3), (11, None, 0, 2), (13, [4, 3], -1, 2), (13, None, 1, 3), (18, None, 2, 4),
    (18, [2, 2, 2], 1, 3), (18, None, 2, 3),
])
def test_split(opset, split, axis, outputs):
    inputs = {"x": ([4, 6, 7], np.float32)}
    attrs = {"axis": axis}
    initializers = {}
    if split is not None:
        if opset < 13:
            attrs["split"] = split
        else:
            initializers["split"] = np.array(split, np.int64)
    elif opset >= 18:
        attrs["num_outputs"] = outputs
    check(single("Split", inputs, initializers, opset=opset, n_outputs=outputs, **attrs))


SLICE_CASES = [  # starts, ends, axes, steps on a (5, 6, 7) input
    ([1, 0], [3, 5], [0, 1], [1, 2]),
    ([-1], [-4], [2], [-1]),
    ([4], [INT64_MIN], [1], [-2]),
    ([0, 2], [INT64_MAX, 100], None, None),
    ([-100], [100], [-1], [3]),
    ([10], [20], [0], [1]),                  # start past the end: empty
    ([6, 0], [-100, 7], [2, 1], [-1, 1]),    # clamped start with a negative step
    ([2], [2], [1], [1]),
    ([-2, 1, 0], [-1, 5, 7], [0, 1, 2], [1, 1, 3]),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICE_CASES)
def test_slice(starts, ends, axes, steps):
    initializers = {"starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64)}
    if axes is not None:
        initializers["axes"] = np.array(axes, np.int64)
    if steps is not None:
        initializers["steps"] = np.array(steps, np.int64)
    check(single("Slice", {"x": ([5, 6, 7], np.float32)}, initializers, opset=13))


def test_slice_int32_bounds_and_skipped_axes_input():
    model = make_model([helper.make_node("Slice", ["x", "s", "e", "", "st"], ["y"])], {"x": ([6, 4], np.int64)},
                       ["y"], {"s": np.array([5], np.int32), "e": np.array([0], np.int32),
                               "st": np.array([-2], np.int32)}, opset=13)
    check(model)


@pytest.mark.parametrize("attrs", [{"starts": [1, 0], "ends": [3, 100]}, {"starts": [-2], "ends": [1000], "axes": [1]}])
def test_slice_opset_9_attributes(attrs):
    check(single("Slice", {"x": ([5, 6], np.float32)}, opset=9, **attrs))


# -- gathers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("index_type", [np.int32, np.int64])
def test_gather_runtime_indices(axis, index_type):
    model = single("Gather", {"x": ([3, 4, 5], np.float32), "i": ([2, 3], index_type)}, axis=axis)
    dim = [3, 4, 5][axis]
    check(model, {"x": np.random.randn(3, 4, 5).astype(np.float32),
                  "i": np.random.randint(-dim, dim, (2, 3)).astype(index_type)})


@pytest.mark.parametrize("indices", [np.array(2), np.array([-1, 0]), np.array([[0, 1], [-2, 1]])])
def test_gather_constant_indices(indices):
    check(single("Gather", {"x": ([3, 4], np.int64)}, {"i": indices.astype(np.int64)}, axis=1))


def test_gather_embedding_constant_table():
    table = np.random.randn(10, 4).astype(np.float32)
    model = make_model([helper.make_node("Gather", ["table", "i"], ["y"])], {"i": ([2, 5], np.int64)}, ["y"],
                       {"table": table})
    check(model, {"i": np.random.randint(-10, 10, (2, 5))})


def test_gather_runtime_index_out_of_range_raises():
    model = single("Gather", {"x": ([3, 4], np.float32), "i": ([2], np.int64)})
    with pytest.raises(InputError, match="outside"):
        edgert_run(model, {"x": np.zeros((3, 4), np.float32), "i": np.array([0, 3])})


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("constant", [False, True])
def test_gather_elements(axis, constant):
    data_shape, index_shape = [3, 4, 5], [3, 4, 5]
    index_shape[axis] = 2
    dim = data_shape[axis]
    indices = np.random.randint(-dim, dim, index_shape).astype(np.int64)
    if constant:
        model = single("GatherElements", {"x": (data_shape, np.float32)}, {"i": indices}, opset=13, axis=axis)
        feeds = None
    else:
        model = single("GatherElements", {"x": (data_shape, np.float32), "i": (index_shape, np.int64)}, opset=13,
                       axis=axis)
        feeds = {"x": np.random.randn(*data_shape).astype(np.float32), "i": indices}
    check(model, feeds)


def test_gather_elements_smaller_index_dims_int32():
    indices = np.random.randint(0, 4, (2, 3)).astype(np.int32)
    model = single("GatherElements", {"x": ([3, 4], np.float32), "i": ([2, 3], np.int32)}, opset=13, axis=1)
    check(model, {"x": np.random.randn(3, 4).astype(np.float32), "i": indices})


@pytest.mark.parametrize("data_shape,index_shape,batch_dims", [
    ([2, 3], [2, 2], 0), ([2, 3, 4], [5, 1], 0), ([2, 3, 4], [2, 2, 3], 0), ([2, 3, 4], [2, 1], 1),
    ([2, 3, 4, 5], [2, 3, 1], 2), ([2, 3, 4], [2, 4, 2], 1),
])
@pytest.mark.parametrize("constant", [False, True])
def test_gather_nd(data_shape, index_shape, batch_dims, constant):
    depth = index_shape[-1]
    dims = np.array(data_shape[batch_dims:batch_dims + depth])
    indices = (np.random.randint(0, 1 << 20, index_shape) % dims - np.random.randint(0, 2, index_shape) * dims)
    attrs = {"batch_dims": batch_dims} if batch_dims else {}
    if constant:
        model = single("GatherND", {"x": (data_shape, np.float32)}, {"i": indices.astype(np.int64)}, opset=13,
                       **attrs)
        feeds = None
    else:
        model = single("GatherND", {"x": (data_shape, np.float32), "i": (index_shape, np.int64)}, opset=13, **attrs)
        feeds = {"x": np.random.randn(*data_shape).astype(np.float32), "i": indices.astype(np.int64)}
    check(model, feeds)


# -- broadcasting ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_shape,target", [([3, 1], [2, 1, 6]), ([3, 1], [3, 4]), ([1, 4], [4]), ([2, 3], [1, 1]),
                                             ([1], [2, 3, 1])])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_expand(in_shape, target, dtype):
    check(single("Expand", {"x": (in_shape, dtype)}, {"s": np.array(target, np.int64)}))


@pytest.mark.parametrize("repeats", [[2, 3], [1, 1], [3, 1], [0, 2]])
@pytest.mark.parametrize("dtype", [np.float16, np.uint8])
def test_tile(repeats, dtype):
    check(single("Tile", {"x": ([2, 3], dtype)}, {"r": np.array(repeats, np.int64)}))


# -- constants, Shape, Size, Range, Identity, Dropout, EyeLike ------------------------------------------------
@pytest.mark.parametrize("attr,value", [
    ("value", numpy_helper.from_array(np.arange(6, dtype=np.int32).reshape(2, 3))),
    ("value_float", 2.5), ("value_floats", [1.0, -2.0]), ("value_int", 7), ("value_ints", [3, 4, 5]),
])
def test_constant(attr, value):
    model = make_model([helper.make_node("Constant", [], ["c"], **{attr: value}),
                        helper.make_node("Identity", ["c"], ["y"])], {}, ["y"], opset=13)
    check(model, {})


def test_constant_sparse_value_is_unsupported():
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.0], np.float32), "v"),
                                       numpy_helper.from_array(np.array([1], np.int64), "i"), [3])
    model = make_model([helper.make_node("Constant", [], ["y"], sparse_value=sparse)], {}, ["y"], opset=13)
    with pytest.raises(UnsupportedError, match="sparse_value"):
        build_error(model)


@pytest.mark.parametrize("value", [None, np.array([1.5], np.float32), np.array([3], np.int32),
                                   np.array([True])])
@pytest.mark.parametrize("shape", [[2, 3], [0, 2], []])
def test_constant_of_shape(value, shape):
    attrs = {"value": numpy_helper.from_array(value)} if value is not None else {}
    check(single("ConstantOfShape", {}, {"s": np.array(shape, np.int64)}, **attrs), {})


@pytest.mark.parametrize("attrs", [{}, {"start": 1}, {"end": -1}, {"start": -2, "end": 10}, {"start": 3, "end": 1},
                                   {"start": -10}])
def test_shape(attrs):
    check(single("Shape", {"x": ([2, 3, 4], np.float32)}, opset=15, **attrs))


def test_size():
    check(single("Size", {"x": ([2, 3, 4], np.bool_)}))


@pytest.mark.parametrize("start,limit,delta", [(0, 10, 3), (10, 2, -2), (5, 5, 1), (1, 0, 1),
                                               (0.5, 3.2, 0.7), (3.0, -1.0, -0.5)])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64])
def test_range(start, limit, delta, dtype):
    if isinstance(delta, float) and np.issubdtype(dtype, np.integer):
        pytest.skip("fractional bounds need a float type")
    arrays = {n: np.array(v, dtype) for n, v in zip(("a", "b", "c"), (start, limit, delta))}
    # The spec's start + i * delta; onnxruntime accumulates delta, one rounding per step.
    assert_matches_ort(single("Range", {}, arrays, opset=11), {}, tolerance=1e-6)


def test_range_runtime_input_is_unsupported():
    model = single("Range", {"a": ([], np.int64)}, {"b": np.array(5), "c": np.array(1)}, opset=11)
    with pytest.raises(UnsupportedError, match="start.*must be a constant"):
        build_error(model, {"a": ()})


def test_identity_chain_forwards_the_value():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["i1"]),
             helper.make_node("Identity", ["i1"], ["y"])]
    model = make_model(nodes, {"x": ([2, 3], np.float32)}, ["y"])
    check(model)
    assert layer_kinds(model, optimize=False) == [LayerKind.ACTIVATION]


def test_identity_of_graph_input():
    check(single("Identity", {"x": ([2, 3], np.int8)}))


@pytest.mark.parametrize("opset", [7, 10, 12, 13])
def test_dropout_inference(opset):
    inputs, initializers = {"x": ([2, 3], np.float32)}, {}
    if opset >= 12:
        initializers = {"ratio": np.array(0.3, np.float32), "training_mode": np.array(False)}
    check(single("Dropout", inputs, initializers, opset=opset))
    # The mask is all ones as the spec's reference computes it (onnxruntime returns all false for opsets 10-11
    # and cannot type the opset-7 mask), of the input type before opset 10 and bool from it on.
    x = np.random.randn(2, 3).astype(np.float32)
    y, mask = edgert_run(single("Dropout", inputs, initializers, opset=opset, n_outputs=2), {"x": x}).values()
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == (np.float32 if opset < 10 else np.bool_) and mask.shape == x.shape and mask.all()


def test_dropout_training_is_unsupported():
    on = single("Dropout", {"x": ([2, 3], np.float32)}, {"r": np.array(0.5, np.float32), "t": np.array(True)},
                opset=13)
    with pytest.raises(UnsupportedError, match="training_mode"):
        build_error(on)
    runtime = single("Dropout", {"x": ([2, 3], np.float32), "r": ([], np.float32), "t": ([], np.bool_)}, opset=13)
    with pytest.raises(UnsupportedError, match="training_mode"):
        build_error(runtime)


def test_dropout_runtime_ratio_with_constant_false_training():
    model = single("Dropout", {"x": ([2, 3], np.float32), "r": ([], np.float32)}, {"t": np.array(False)}, opset=13)
    check(model, {"x": np.random.randn(2, 3).astype(np.float32), "r": np.array(0.7, np.float32)})


@pytest.mark.parametrize("attrs", [{}, {"k": 1}, {"k": -2, "dtype": T.INT32}, {"dtype": T.DOUBLE}])
def test_eye_like(attrs):
    check(single("EyeLike", {"x": ([3, 5], np.float32)}, opset=9, **attrs))


# -- errors ------------------------------------------------------------------------------------------------
ERROR_CASES = {
    "reshape runtime shape": (single("Reshape", {"x": ([2, 3], np.float32), "s": ([2], np.int64)}),
                              UnsupportedError, "must be a constant.*--shape"),
    "reshape wrong size": (single("Reshape", {"x": ([2, 3], np.float32)}, {"s": np.array([4, -1], np.int64)}),
                           ShapeError, "infer"),
    "reshape two -1": (single("Reshape", {"x": ([2, 3], np.float32)}, {"s": np.array([-1, -1], np.int64)}),
                       ShapeError, "more than one"),
    "transpose bad perm": (single("Transpose", {"x": ([2, 3], np.float32)}, perm=[0, 0]), ModelError, "permutation"),
    "squeeze non-1 dim": (single("Squeeze", {"x": ([2, 1], np.float32)}, {"a": np.array([0], np.int64)}),
                          ShapeError, "not 1"),
    "unsqueeze repeated axes": (single("Unsqueeze", {"x": ([2], np.float32)}, {"a": np.array([0, -3], np.int64)}),
                                ModelError, "repeat"),
    "flatten axis": (single("Flatten", {"x": ([2, 3], np.float32)}, axis=3), ModelError, "out of range"),
    "concat axis": (single("Concat", {"a": ([2], np.float32), "b": ([2], np.float32)}, axis=1), ModelError,
                    "out of range"),
    "concat shapes": (single("Concat", {"a": ([2, 3], np.float32), "b": ([2, 4], np.float32)}, axis=0), ShapeError,
                      "differ outside axis"),
    "split sizes": (single("Split", {"x": ([6], np.float32)}, {"s": np.array([2, 3], np.int64)}, n_outputs=2),
                    ShapeError, "summing"),
    "split uneven before 18": (single("Split", {"x": ([7], np.float32)}, opset=13, n_outputs=2), ShapeError,
                               "equal"),
    "slice zero step": (single("Slice", {"x": ([6], np.float32)}, {"s": np.array([0]), "e": np.array([3]),
                                                                   "a": np.array([0]), "st": np.array([0])}),
                        ModelError, "step"),
    "gather constant index out of range": (single("Gather", {"x": ([3], np.float32)}, {"i": np.array([3])}),
                                           ShapeError, "outside"),
    "gather float indices": (single("Gather", {"x": ([3], np.float32), "i": ([2], np.float32)}), ShapeError,
                             "int32 or int64"),
    "expand incompatible": (single("Expand", {"x": ([3], np.float32)}, {"s": np.array([2, 4])}), ShapeError,
                            "broadcast"),
    "tile repeats length": (single("Tile", {"x": ([2, 3], np.float32)}, {"r": np.array([2])}), ShapeError,
                            "one non-negative count per axis"),
    "depth to space channels": (single("DepthToSpace", {"x": ([1, 6, 2, 2], np.float32)}, blocksize=2), ShapeError,
                                "divide"),
    "depth to space mode": (single("DepthToSpace", {"x": ([1, 8, 2, 2], np.float32)}, blocksize=2, mode="XYZ"),
                            ModelError, "mode"),
}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_errors_name_the_node(name):
    model, error, pattern = ERROR_CASES[name]
    with pytest.raises(error, match=pattern) as info:
        build_error(model)
    assert "node" in str(info.value) or "layer" in str(info.value)
    assert isinstance(info.value, EdgeRTError)


# -- kernels -----------------------------------------------------------------------------------------------
def run_kernel(kind, attrs, inputs, shape, dtype):
    out = np.empty(shape, dtype)
    frozen = [a.copy() for a in inputs]
    lookup(kind)(attrs, inputs, [out])
    for before, after in zip(frozen, inputs):
        np.testing.assert_array_equal(before, after)  # kernels never write their inputs
    return out


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_kernels_every_dtype(dtype):
    x = (np.random.randn(2, 3, 4) * 3).astype(dtype)
    np.testing.assert_array_equal(
        run_kernel(LayerKind.SHUFFLE, {"first_perm": [2, 0, 1], "reshape": [4, 6], "second_perm": [1, 0]}, [x],
                   (6, 4), dtype), x.transpose(2, 0, 1).reshape(4, 6).T)
    np.testing.assert_array_equal(
        run_kernel(LayerKind.SLICE, {"starts": [1, 2, 0], "sizes": [1, 2, 2], "steps": [1, -1, 3]}, [x], (1, 2, 2),
                   dtype), x[1:2, 2:0:-1, 0::3])
    np.testing.assert_array_equal(run_kernel(LayerKind.CONCATENATION, {"axis": 1}, [x, x[:, :1]], (2, 4, 4), dtype),
                                  np.concatenate([x, x[:, :1]], axis=1))
    np.testing.assert_array_equal(run_kernel(LayerKind.GATHER, {"axis": 2}, [x, np.array([[-1, 0]])], (2, 3, 1, 2),
                                             dtype), x[:, :, [[3, 0]]])
    np.testing.assert_array_equal(run_kernel(LayerKind.EXPAND, {"shape": [2, 2, 3, 4]}, [x], (2, 2, 3, 4), dtype),
                                  np.broadcast_to(x, (2, 2, 3, 4)))
    np.testing.assert_array_equal(run_kernel(LayerKind.TILE, {"repeats": [1, 2, 3]}, [x], (2, 6, 12), dtype),
                                  np.tile(x, (1, 2, 3)))


def test_kernels_write_non_contiguous_outputs():
    x = np.random.randn(2, 3).astype(np.float32)
    out = np.empty((12, 6), np.float32)[::2, ::3].T  # (2, 6) strided view
    lookup(LayerKind.TILE)({"repeats": [1, 2]}, [x], [out])
    np.testing.assert_array_equal(out, np.tile(x, (1, 2)))
    out = np.empty((6, 2), np.float32).T[:, ::2]  # (2, 3) strided view
    lookup(LayerKind.SHUFFLE)({"first_perm": None, "reshape": [2, 3], "second_perm": None}, [x.T.copy().T], [out])
    np.testing.assert_array_equal(out, x)


def test_concat_kernel_with_an_input_already_in_place():
    """The memory planner may place a concat input inside the output: the kernel must keep it."""
    arena = np.empty(21, np.float32)
    out, first = arena.reshape(1, 7, 3), arena[:6].reshape(1, 2, 3)
    first[...] = np.random.randn(1, 2, 3)
    second = np.random.randn(1, 5, 3).astype(np.float32)
    expected = np.concatenate([first.copy(), second], axis=1)
    lookup(LayerKind.CONCATENATION)({"axis": 1}, [first, second], [out])
    np.testing.assert_array_equal(out, expected)


# -- shape sub-graphs fold -----------------------------------------------------------------------------------
def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs if isinstance(outputs, list) else [outputs], **attrs)


SHAPE_KINDS = {LayerKind.GATHER, LayerKind.CONCATENATION, LayerKind.SLICE, LayerKind.EXPAND, LayerKind.CAST}


def pytorch_style_dynamic_model():
    """What torch.onnx.export writes for x.view(x.size(0), -1), torch.flatten, expand_as and ones_like with a
    dynamic batch dim: every shape comes from Shape → Gather → Unsqueeze → Concat."""
    nodes = [
        _node("Relu", ["x"], "r"),
        _node("Shape", ["r"], "shape"),
        _node("Constant", [], "zero", value=numpy_helper.from_array(np.array(0, np.int64))),
        _node("Gather", ["shape", "zero"], "batch", axis=0),
        _node("Unsqueeze", ["batch", "axes0"], "batch1"),
        _node("Constant", [], "minus1", value=numpy_helper.from_array(np.array([-1], np.int64))),
        _node("Concat", ["batch1", "minus1"], "view_shape", axis=0),
        _node("Reshape", ["r", "view_shape"], "viewed"),                        # x.view(x.size(0), -1)
        _node("Flatten", ["r"], "flat", axis=1),                                # torch.flatten(x, 1)
        _node("Add", ["viewed", "flat"], "sum"),
        _node("Shape", ["sum"], "sum_shape"),
        _node("Expand", ["bias", "sum_shape"], "bias_full"),                    # bias.expand_as(sum)
        _node("Add", ["sum", "bias_full"], "biased"),
        _node("ConstantOfShape", ["sum_shape"], "ones", value=numpy_helper.from_array(np.array([1.0], np.float32))),
        _node("Add", ["biased", "ones"], "plus_one"),                           # + torch.ones_like(sum)
        _node("Shape", ["plus_one"], "s2", start=1),
        _node("Slice", ["plus_one", "zero1", "s2", "one1"], "y"),               # y[:, :s2]
    ]
    return make_model(nodes, {"x": (["batch", 3, 4, 4], np.float32)}, ["y"],
                      {"axes0": np.array([0], np.int64), "bias": np.random.randn(1, 48).astype(np.float32),
                       "zero1": np.array([0], np.int64), "one1": np.array([1], np.int64)}, opset=15)


@pytest.mark.parametrize("batch", [1, 3])
def test_pytorch_style_shape_subgraphs_fold(batch):
    model = pytorch_style_dynamic_model()
    feeds = {"x": np.random.randn(batch, 3, 4, 4).astype(np.float32)}
    check(model, feeds, tolerance=1e-6)   # affine folding adds the two constant operands first (one rounding less)
    # Import alone folds every shape computation: what is left is the real compute (the view and the
    # flatten move data; the Adds read the folded bias and ones as constants).
    kinds = layer_kinds(model, shapes={"x": (batch, 3, 4, 4)}, optimize=False)
    assert sorted(kinds) == sorted([LayerKind.ACTIVATION] + [LayerKind.SHUFFLE] * 2 + [LayerKind.ELEMENTWISE] * 3)
    assert not SHAPE_KINDS & set(layer_kinds(model, shapes={"x": (batch, 3, 4, 4)}))


def test_dynamic_model_without_shapes_says_what_to_do():
    with pytest.raises(ShapeError, match="--shape x="):
        build_error(pytorch_style_dynamic_model())


def test_shape_arithmetic_and_range_fold():
    """Shape → Cast/Div/Mul arithmetic (other engineers' ops) → Reshape, and Range over a Shape-derived limit."""
    nodes = [
        _node("Shape", ["x"], "shape"),
        _node("Slice", ["shape", "zero1", "two1"], "nc"),                       # (N, C)
        _node("Div", ["nc", "two"], "half"),
        _node("Mul", ["half", "two"], "again"),
        _node("Concat", ["again", "minus1"], "target", axis=0),
        _node("Reshape", ["x", "target"], "reshaped"),
        _node("Gather", ["shape", "two"], "height"),
        _node("Gather", ["shape", "three"], "width"),
        _node("Mul", ["height", "width"], "area"),
        _node("Range", ["zero", "area", "one"], "positions"),
        _node("Cast", ["positions"], "positions_f", to=T.FLOAT),
        _node("Add", ["reshaped", "positions_f"], "y"),
    ]
    model = make_model(nodes, {"x": (["n", 4, 2, 5], np.float32)}, ["y"],
                       {"zero1": np.array([0]), "two1": np.array([2]), "two": np.array([2]), "minus1": np.array([-1]),
                        "three": np.array(3), "zero": np.array(0), "one": np.array(1)}, opset=13)
    feeds = {"x": np.random.randn(2, 4, 2, 5).astype(np.float32)}
    check(model, feeds)
    assert layer_kinds(model, shapes={"x": (2, 4, 2, 5)}, optimize=False) == [LayerKind.SHUFFLE,
                                                                              LayerKind.ELEMENTWISE]


def test_noop_reshapes_and_slices_add_no_layers():
    nodes = [_node("Relu", ["x"], "r"), _node("Reshape", ["r", "same"], "a"), _node("Squeeze", ["a"], "b"),
             _node("Slice", ["b", "zero1", "big1"], "c"), _node("Transpose", ["c"], "y", perm=[0, 1])]
    model = make_model(nodes, {"x": ([3, 4], np.float32)}, ["y"],
                       {"same": np.array([3, 4]), "zero1": np.array([0]), "big1": np.array([INT64_MAX])}, opset=13)
    check(model)
    assert layer_kinds(model, optimize=False) == [LayerKind.ACTIVATION]

