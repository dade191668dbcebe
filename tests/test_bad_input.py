"""Error paths of the Python build/run API: each bad input raises the right EdgeRTError subclass
with a one-line message that says what was found (the CLI's error paths are tested in test_cli.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.errors import EdgeRTError, InputError, ModelError, ShapeError, UnsupportedError
from edgert.onnx.registry import supported_ops

# Real ONNX ops edgert is unlikely ever to claim; the first unclaimed one is used.
EXOTIC_OPS = [("Det", {}), ("TfIdfVectorizer", {"mode": "TF", "min_gram_length": 1, "max_gram_length": 1,
                                                 "max_skip_count": 0, "ngram_counts": [0], "ngram_indexes": [0],
                                                 "pool_int64s": [1]}),
              ("Col2Im", {})]


def _model(dims=(2, 3), op_type="Relu", opset=17, elem_type=TensorProto.FLOAT, **attrs) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem_type, list(dims))
    y = helper.make_tensor_value_info("y", elem_type, None)
    node = helper.make_node(op_type, ["x"], ["y"], name="the_node", **attrs)
    return helper.make_model(helper.make_graph([node], "g", [x], [y]),
                             opset_imports=[helper.make_opsetid("", opset)])


def _raises(error_type, fn, *args, **kwargs) -> str:
    """Call fn, expect exactly ``error_type`` (an EdgeRTError), return its one-line message."""
    with pytest.raises(EdgeRTError) as info:
        fn(*args, **kwargs)
    assert type(info.value) is error_type, f"raised {type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert message and "\n" not in message, f"not a one-line message: {message!r}"
    return message


# -- reading the model ----------------------------------------------------------------------------
def test_missing_file(tmp_path):
    message = _raises(ModelError, edgert.build, tmp_path / "nowhere.onnx")
    assert "nowhere.onnx" in message and "not found" in message


def test_directory(tmp_path):
    assert str(tmp_path) in _raises(ModelError, edgert.build, tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert "empty" in _raises(ModelError, edgert.build, tmp_path / "empty.onnx")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng().integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "not an ONNX model" in _raises(ModelError, edgert.build, path)


def test_text_file(tmp_path):
    path = tmp_path / "readme.onnx"
    path.write_text("This is a text file, not a model.\nSecond line.\n")
    assert "not an ONNX model" in _raises(ModelError, edgert.build, path)


def test_random_bytes_in_memory():
    _raises(ModelError, edgert.build, np.random.default_rng().integers(0, 256, 999, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_file(tmp_path, fraction):
    model = _model()
    weight = numpy_helper.from_array(np.random.default_rng().standard_normal((2, 3)).astype(np.float32), "w")
    model.graph.initializer.append(weight)
    model.graph.node.append(helper.make_node("Add", ["y", "w"], ["z"], name="add"))
    model.graph.output[0].name = "z"
    data = model.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:int(len(data) * fraction)])
    _raises(ModelError, edgert.build, path)


# -- what the model asks for --------------------------------------------------------------------
def test_unsupported_op_names_node_op_opset_and_alternatives():
    claimed = set(supported_ops())
    op_type, attrs = next(((op, a) for op, a in EXOTIC_OPS if op not in claimed), (None, None))
    if op_type is None:
        pytest.skip("every exotic op in the list is claimed")
    model = _model(dims=(3, 3), op_type=op_type, opset=17, **attrs)
    for index in range(4):   # every unsupported node is named, grouped by op, in a short message
        model.graph.node.append(helper.make_node(op_type, ["x"], [f"extra{index}"], name=f"extra_{index}", **attrs))
    model.graph.node.append(helper.make_node("NoSuchOp", ["x"], ["z"], name="odd_node"))
    message = _raises(UnsupportedError, edgert.build, model)
    assert "the_node" in message and f"{op_type} x5" in message and "opset 17" in message and "+2 more" in message
    assert "NoSuchOp x1 ('odd_node')" in message and "docs/conformance.md" in message and len(message) < 400


def test_unknown_op_domain():
    model = _model()
    model.graph.node[0].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    assert "com.example" in _raises(UnsupportedError, edgert.build, model)


def test_opset_out_of_range():
    assert "opset 5" in _raises(UnsupportedError, edgert.build, _model(opset=5))


def test_unsupported_input_dtype():
    assert "STRING" in _raises(UnsupportedError, edgert.build, _model(elem_type=TensorProto.STRING))


def test_output_not_produced():
    model = _model()
    model.graph.output[0].name = "nobody_makes_this"
    assert "nobody_makes_this" in _raises(ModelError, edgert.build, model)


# -- build-time shapes --------------------------------------------------------------------------
def test_shape_contradicts_model():
    message = _raises(ShapeError, edgert.build, _model(dims=(2, 3)), shapes={"x": (2, 4)})
    assert "'x'" in message and "3" in message


def test_shape_rank_contradicts_model():
    assert "rank" in _raises(ShapeError, edgert.build, _model(dims=(2, 3)), shapes={"x": (2, 3, 1)})


def test_shape_for_unknown_input():
    message = _raises(ShapeError, edgert.build, _model(), shapes={"image": (1, 3)})
    assert "'image'" in message and "x" in message


def test_dynamic_dims_without_shapes():
    message = _raises(ShapeError, edgert.build, _model(dims=("N", 3)))
    assert "'x'" in message and "N" in message


def test_negative_shape():
    assert "negative" in _raises(ShapeError, edgert.build, _model(dims=("N", 3)), shapes={"x": (-1, 3)})


# -- run-time inputs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def context():
    return edgert.load(edgert.build(_model(dims=("N", 3)), shapes={"x": (2, 3)}).to_bytes()).create_execution_context()


def _x(shape=(2, 3), dtype=np.float32):
    return np.random.default_rng().standard_normal(shape).astype(dtype)


def test_execute_ok(context):
    x = _x()
    np.testing.assert_array_equal(context.execute({"x": x})["y"], np.maximum(x, 0))


def test_execute_wrong_input_name(context):
    message = _raises(InputError, context.execute, {"x": _x(), "image": _x()})
    assert "'image'" in message and "x" in message


def test_execute_missing_input(context):
    assert "'x'" in _raises(InputError, context.execute, {})


@pytest.mark.parametrize("shape", [(2, 4), (3, 3), (2, 3, 1), (6,), ()])
def test_execute_wrong_shape(context, shape):
    message = _raises(InputError, context.execute, {"x": _x(shape)})
    assert "(2, 3)" in message and str(shape) in message


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.bool_])
def test_execute_wrong_dtype(context, dtype):
    message = _raises(InputError, context.execute, {"x": _x(dtype=dtype)})
    assert "float32" in message and np.dtype(dtype).name in message


# -- graph structure --------------------------------------------------------------------------------
def _graph_model(nodes, initializers=()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(initializers)),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_two_nodes_writing_one_output_names_both():
    model = _graph_model([helper.make_node("Relu", ["x"], ["y"], name="first_writer"),
                          helper.make_node("Neg", ["x"], ["y"], name="second_writer")])
    message = _raises(ModelError, edgert.build, model)
    assert "first_writer" in message and "second_writer" in message and "'y'" in message


def test_node_overwriting_a_graph_input():
    model = _graph_model([helper.make_node("Relu", ["x"], ["x"], name="clobber"),
                          helper.make_node("Neg", ["x"], ["y"], name="neg")])
    assert "clobber" in _raises(ModelError, edgert.build, model)


def test_cycle_names_the_nodes_on_it():
    model = _graph_model([helper.make_node("Add", ["x", "c"], ["a"], name="loop_a"),
                          helper.make_node("Relu", ["a"], ["b"], name="loop_b"),
                          helper.make_node("Neg", ["b"], ["c"], name="loop_c"),
                          helper.make_node("Relu", ["a"], ["y"], name="out")])
    message = _raises(ModelError, edgert.build, model)
    assert "cycle" in message and all(n in message for n in ("loop_a", "loop_b", "loop_c"))
    assert "not produced" not in message and "'out'" not in message


def test_unsorted_graph_is_reordered_and_runs():
    model = _graph_model([helper.make_node("Neg", ["r"], ["y"], name="neg"),
                          helper.make_node("Relu", ["x"], ["r"], name="relu")])
    x = _x()
    y = edgert.load(edgert.build(model)).create_execution_context().execute({"x": x})["y"]
    np.testing.assert_array_equal(y, -np.maximum(x, 0))


# -- build options and size limits ----------------------------------------------------------------
def test_unknown_build_option_lists_the_valid_ones():
    message = _raises(EdgeRTError, edgert.build, _model(), precison="fp16")
    assert "'precison'" in message and "did you mean 'precision'" in message
    assert all(name in message for name in ("calib_cache", "max_arena", "gpu_fallback", "shapes"))


@pytest.mark.parametrize("dims, expected", [
    ((1 << 31, 3), "2147483648"),                       # one dim beyond int32
    ((1,) * 9, "rank 9"),                               # beyond TensorRT's 8 dims
    ((1,) * 40, "rank 40"),
    ((1 << 30,) * 8, "TiB"),                            # each dim fits, the product overflows int64
])
def test_model_dims_beyond_the_limits(dims, expected):
    assert expected in _raises(ShapeError, edgert.build, _model(dims=dims))


def test_huge_shape_option_is_a_shape_error():
    message = _raises(ShapeError, edgert.build, _model(dims=("N", 16, 64)),
                      shapes={"x": (99999999999999999999, 16, 64)})
    assert "99999999999999999999" in message and "broadcast" not in message


def test_negative_model_dim_is_invalid_not_dynamic():
    model = _model(dims=(2, 3))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -3
    message = _raises(ShapeError, edgert.build, model)
    assert "-3" in message and "invalid" in message and "dynamic dims" not in message


def _with_shape_constant(op_type, dims):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    shape = numpy_helper.from_array(np.array(dims, np.int64), "s")
    if op_type == "Expand":
        nodes = [helper.make_node("Expand", ["x", "s"], ["y"], name="huge")]
    else:
        nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"], name="huge"),
                 helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [shape]),
                             opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op_type", ["Expand", "ConstantOfShape"])
def test_terabyte_tensor_is_a_shape_error(op_type):
    # 1e6 x 1e6 float32 = 3.6 TiB: refused from the shape, before anything is allocated
    message = _raises(ShapeError, edgert.build, _with_shape_constant(op_type, [1000000, 1000000]))
    assert "huge" in message and "TiB" in message


def test_arena_above_the_default_limit_is_a_build_error():
    message = _raises(ShapeError, edgert.build, _model(dims=(30000, 1000000)))   # a 112 GiB activation
    assert "111.8 GiB" in message and "16.0 GiB" in message and "--max-arena" in message


def test_max_arena_option():
    model = _model(dims=(64, 64))    # 16 KiB of activations
    message = _raises(ShapeError, edgert.build, model, max_arena="4KiB")
    assert "16.0 KiB" in message and "4.0 KiB" in message and "(--max-arena)" in message
    plan = edgert.build(model, max_arena="1MiB")
    assert plan.document["memory"]["arena_bytes"] <= 1 << 20
    assert "not a size" in _raises(EdgeRTError, edgert.build, model, max_arena="lots")


def test_cli_max_arena_exits_2_with_the_numbers(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "m.onnx"
    onnx.save(_model(dims=(64, 64)), path)
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "build", str(path), "-o", str(tmp_path / "m.plan"),
                           "--max-arena", "4KiB"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "16.0 KiB" in done.stderr and "4.0 KiB" in done.stderr and not (tmp_path / "m.plan").exists()
