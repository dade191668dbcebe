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
