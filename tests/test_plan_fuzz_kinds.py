"""Fuzzing decoded plan fields of the layer kinds that real exports brought (issue 15) and of a plan with an
optimization profile (issue 13): recurrent, detection, scatter, cumulative, einsum, grid-sample, RoiAlign, TopK,
the bounded NMS / NonZero outputs, and a shape program. As in test_plan_fuzz.py: every mutated plan either fails to
load with a one-line EdgeRTError, or runs, answers a shape the profile allows with an EdgeRTError or outputs of the
shapes its bindings promise (bounded outputs: at most their bound rows)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.errors import EdgeRTError
from plan_models import decoded
from test_plan_fuzz import _written, load_or_refuse, mutate_fields

EXAMPLES = int(os.environ.get("EDGERT_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def _new_kinds_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def const(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    inits = [
        const("w", rng.standard_normal((1, 16, 3)).astype(np.float32)),
        const("r", rng.standard_normal((1, 16, 4)).astype(np.float32)),
        const("b", rng.standard_normal((1, 32)).astype(np.float32)),
        const("axis", np.array(0, np.int64)), const("k", np.array([2], np.int64)),
        const("idx", rng.integers(0, 5, (5, 2, 3)).astype(np.int64)),
        const("upd", rng.standard_normal((5, 2, 3)).astype(np.float32)),
        const("e", rng.standard_normal((5, 3, 4)).astype(np.float32)),
        const("grid", rng.uniform(-1, 1, (1, 3, 3, 2)).astype(np.float32)),
        const("rois", np.array([[0, 0, 3, 3], [1, 1, 2, 3]], np.float32)),
        const("bidx", np.array([0, 0], np.int64)),
        const("boxes", np.sort(rng.uniform(0, 8, (1, 6, 2, 2)), axis=2).reshape(1, 6, 4).astype(np.float32)),
        const("maxout", np.array([3], np.int64)), const("iou", np.array([0.5], np.float32)),
    ]
    nodes = [
        helper.make_node("LSTM", ["x", "w", "r", "b"], ["y", "y_h", "y_c"], hidden_size=4),
        helper.make_node("CumSum", ["x", "axis"], ["cum"]),
        helper.make_node("TopK", ["x", "k"], ["top_v", "top_i"], axis=2),
        helper.make_node("ScatterElements", ["x", "idx", "upd"], ["scat"], axis=0),
        helper.make_node("Einsum", ["x", "e"], ["ein"], equation="ijk,ikl->ijl"),
        helper.make_node("GridSample", ["img", "grid"], ["gs"]),
        helper.make_node("RoiAlign", ["img", "rois", "bidx"], ["roi"], output_height=2, output_width=2),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "maxout", "iou"], ["nms"]),
        helper.make_node("NonZero", ["mask"], ["nz"]),
    ]
    outputs = ["y", "y_h", "y_c", "cum", "top_v", "top_i", "scat", "ein", "gs", "roi", "nms", "nz"]
    graph = helper.make_graph(nodes, "new_kinds", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, 3]),
        helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 2, 4, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 6]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, [3, 4]),
    ], [onnx.ValueInfoProto(name=name) for name in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    return onnx.shape_inference.infer_shapes(model)


def _profile_model() -> onnx.ModelProto:
    """Conv, global pooling and a Reshape whose target comes from Shape: a shape program with a batch and size."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["r", "target"], ["y"])]
    graph = helper.make_graph(nodes, "profiled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "cw"),
                               numpy_helper.from_array(np.array([0], np.int64), "zero"),
                               numpy_helper.from_array(np.array([-1], np.int64), "minus_one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def new_kinds_document():
    return decoded(edgert.build(_new_kinds_model()).to_bytes())


@pytest.fixture(scope="module")
def profile_document():
    plan = edgert.build(_profile_model(), profiles=[{"x": ((1, 2, 4, 8), (2, 2, 6, 8), (3, 2, 8, 8))}])
    return decoded(plan.to_bytes())


def _outcome(data: bytes, shapes=None) -> str:
    """'refused' at load or at the shapes, or 'ran' with outputs that fit their bindings; else the test fails."""
    loaded = load_or_refuse(data)
    if loaded is None:
        return "refused"
    engine, context = loaded
    rng = np.random.default_rng(0)
    feeds = {b.name: rng.standard_normal((shapes or {}).get(b.name, b.shape)).astype(b.dtype) for b in engine.inputs}
    try:
        outputs = context.execute(feeds)
    except EdgeRTError as e:   # refused at run (shapes a mutated shape program rejects, a roi too large): one line
        assert "\n" not in str(e), str(e)
        return "refused"
    assert list(outputs) == [b.name for b in engine.outputs]
    for binding in engine.outputs:
        got = outputs[binding.name].shape
        assert len(got) == len(binding.shape) and all(0 <= g <= b for g, b in zip(got, binding.shape)), \
            (binding.name, got, binding.shape)
    return "ran"


def test_the_unmutated_plans_run(new_kinds_document, profile_document):
    assert _outcome(_written(new_kinds_document)) == "ran"
    assert _outcome(_written(profile_document), {"x": (2, 2, 5, 8)}) == "ran"


@FUZZ
@given(data=st.data())
def test_fuzz_decoded_fields_of_the_new_kinds(new_kinds_document, data):
    _outcome(_written(mutate_fields(new_kinds_document, data)))


@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), shape=st.sampled_from([(1, 2, 4, 8), (3, 2, 8, 8), (2, 2, 5, 8)]))
def test_fuzz_decoded_fields_of_a_profile_plan(profile_document, data, shape):
    _outcome(_written(mutate_fields(profile_document, data)), {"x": shape})
