"""Memory planner: property tests on random lifetimes, aliasing rules, arena-backed execution."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import edgert
from edgert.memory import ALIGNMENT, Buffer, StepSpec, TensorSpec, assign_offsets, lower_bound, plan_memory
from memory_graphs import random_layer_graph


def _overlap(a, b) -> bool:
    return a.first <= b.last and b.first <= a.last


buffers_strategy = st.lists(
    st.tuples(st.integers(1, 1 << 20), st.integers(0, 60), st.integers(0, 20)), min_size=1, max_size=60,
).map(lambda items: [Buffer(i, -(-size // ALIGNMENT) * ALIGNMENT, first, first + length, "cpu")
                     for i, (size, first, length) in enumerate(items)])


@settings(max_examples=300, deadline=None)
@given(buffers_strategy)
def test_random_lifetimes_never_share_bytes_while_alive(buffers):
    offsets, arena, _ = assign_offsets(buffers)
    assert arena >= lower_bound(buffers)
    for b in buffers:
        assert offsets[b.id] % ALIGNMENT == 0
        assert offsets[b.id] + b.nbytes <= arena
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if _overlap(a, b):
                assert (offsets[a.id] + a.nbytes <= offsets[b.id]) or (offsets[b.id] + b.nbytes <= offsets[a.id])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.booleans()), min_size=2, max_size=40))
def test_random_chains_plan_consistently(items):
    """A chain of steps with random sizes and random in-place flags: planned tensors alive together never overlap."""
    tensors = [TensorSpec(0, items[0][0], external=True)]
    steps = []
    for index, (size, inplace) in enumerate(items[1:], start=1):
        same = inplace and tensors[-1].nbytes == size and not tensors[-1].external
        tensors.append(TensorSpec(index, tensors[-1].nbytes if same else size, graph_output=index == len(items) - 1))
        steps.append(StepSpec((index - 1,), (index,), "inplace" if same else None))
    plan = plan_memory(steps, tensors)
    offsets = plan.pools["cpu"]["offsets"]
    for t in tensors[1:]:
        assert offsets[t.id] % ALIGNMENT == 0
        first, last = plan.lifetimes[t.id]
        assert offsets[t.id] + t.nbytes <= plan.pools["cpu"]["arena_bytes"]
    assert plan.arena_bytes >= plan.lower_bound_bytes


def test_aliases_views_inplace_and_concat():
    # 0 = input; 1 = conv-like out; 2 = reshape view of 1; 3 = relu in place on 2? no: 2 is a view (aliased)
    tensors = [TensorSpec(0, 1024, external=True, shape=(1, 256)),
               TensorSpec(1, 1024, shape=(1, 256)), TensorSpec(2, 1024, shape=(1, 256)),
               TensorSpec(3, 1024, shape=(1, 256)), TensorSpec(4, 2048, shape=(1, 512), graph_output=True),
               TensorSpec(5, 1024, shape=(1, 256))]
    steps = [StepSpec((0,), (1,)),                 # producer of 1
             StepSpec((0,), (3,)),                 # producer of 3
             StepSpec((1,), (2,), "view"),         # 2 is 1 reinterpreted
             StepSpec((2,), (5,), "inplace"),      # 2 is a view: must not be overwritten in place
             StepSpec((5, 3), (4,), "concat", 1)]  # 5 and 3 written straight into 4
    plan = plan_memory(steps, tensors)
    offsets = plan.pools["cpu"]["offsets"]
    assert offsets[2] == offsets[1]
    assert offsets[5] != offsets[2]
    assert offsets[5] == offsets[4] and offsets[3] == offsets[4] + 1024
    assert set(plan.elided_steps) == {2, 4}
    off = plan_memory(steps, tensors, reuse=False)
    assert off.arena_bytes == off.no_reuse_bytes and not off.elided_steps


def test_strided_concat_is_not_elided():
    tensors = [TensorSpec(0, 64, external=True, shape=(2, 8)), TensorSpec(1, 64, shape=(2, 8)),
               TensorSpec(2, 64, shape=(2, 8)), TensorSpec(3, 128, shape=(2, 16), graph_output=True)]
    steps = [StepSpec((0,), (1,)), StepSpec((0,), (2,)), StepSpec((1, 2), (3,), "concat", 1)]
    assert plan_memory(steps, tensors).elided_steps == []


def test_a_1000_layer_graph_plans_validly():
    """Timing is measured by benchmarks/memory.py; here: the plan of a big random graph is valid."""
    steps, tensors = random_layer_graph(np.random.default_rng())
    plan = plan_memory(steps, tensors)
    offsets = plan.pools["cpu"]["offsets"]
    spans = sorted((plan.lifetimes[t.id], offsets[t.id], t.nbytes) for t in tensors[1:])
    for i, ((f1, l1), o1, n1) in enumerate(spans):
        for (f2, l2), o2, n2 in spans[i + 1:]:
            if f2 > l1:
                break
            assert o1 + n1 <= o2 or o2 + n2 <= o1
    assert plan.lower_bound_bytes <= plan.arena_bytes < plan.no_reuse_bytes


def _conv_free_model():
    """A branchy model of elementwise layers and a channel concat (batch 1), for arena checks."""
    rng = np.random.default_rng()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24, 16])
    inits = [onnx.numpy_helper.from_array(rng.standard_normal((1, 8, 16)).astype(np.float32), f"w{i}")
             for i in range(3)]
    nodes = [helper.make_node("Add", ["x", "w0"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Add", ["x", "w1"], ["c"]), helper.make_node("Relu", ["c"], ["d"]),
             helper.make_node("Add", ["b", "w2"], ["e"]),
             helper.make_node("Concat", ["b", "d", "e"], ["y"], axis=1)]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_planned_run_equals_unplanned_run_and_writes_into_the_arena():
    model = _conv_free_model()
    x = np.random.default_rng().standard_normal((1, 8, 16)).astype(np.float32)
    planned = edgert.load(edgert.build(model))
    unplanned = edgert.load(edgert.build(model, memory_reuse=False, reorder=False))
    context = planned.create_execution_context()
    np.testing.assert_array_equal(context.execute({"x": x})["y"], unplanned.create_execution_context()
                                  .execute({"x": x})["y"])
    # Every layer output is a view of the context's single arena: execute() allocates no tensors.
    for step, outs in context._steps:
        for out in outs:
            assert np.shares_memory(out, context.arena), step.name


def test_schedule_reordering_lowers_the_peak_when_the_model_order_is_bad():
    """Two branches, each a big layer then a small one; the file runs both big layers first."""
    from edgert.ir.dtypes import DataType
    from edgert.ir.graph import Graph
    from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind
    from edgert.ir.shape_inference import infer_node
    from edgert.schedule import ScheduleSpecs, choose_schedule

    graph = Graph("branches")
    x = graph.add_input("x", DataType.FLOAT, (1, 1, 8, 8))

    def add(kind, inputs, attrs, name):
        node = graph.add_node(kind, inputs, attrs, name=name)
        infer_node(node)
        return node.outputs[0]

    wide = graph.constant(np.ones((1, 64, 8, 8), np.float32))
    a1 = add(LayerKind.ELEMENTWISE, [x, wide], {"op": ElementWiseOp.SUM}, "a1")   # big
    b1 = add(LayerKind.ELEMENTWISE, [x, wide], {"op": ElementWiseOp.PROD}, "b1")  # big
    a2 = add(LayerKind.REDUCE, [a1], {"op": "sum", "axes": [1], "keepdims": True}, "a2")  # small
    b2 = add(LayerKind.REDUCE, [b1], {"op": "sum", "axes": [1], "keepdims": True}, "b2")  # small
    y = add(LayerKind.ELEMENTWISE, [a2, b2], {"op": ElementWiseOp.SUM}, "y")
    graph.add_output(add(LayerKind.ACTIVATION, [y], {"type": ActivationType.RELU}, "out"), "out")
    before = ScheduleSpecs(graph, graph.nodes).lower_bound()
    report = choose_schedule(graph)
    graph.verify()
    assert report["order"] != "model"
    assert ScheduleSpecs(graph, graph.nodes).lower_bound() < before
    assert [n.name for n in graph.nodes].index("a2") < [n.name for n in graph.nodes].index("b1")


@pytest.mark.parametrize("name", ["resnet", "mobilenetv2", "unet", "detection_head", "transformer"])
def test_planned_run_equals_unplanned_run_on_the_test_models(name):
    from models import MODELS
    case = MODELS[name]
    model = case.build()
    planned = edgert.load(edgert.build(model, shapes=case.shapes))
    unplanned = edgert.load(edgert.build(model, shapes=case.shapes, memory_reuse=False, reorder=False))
    rng = np.random.default_rng()
    feeds = {b.name: rng.standard_normal(b.shape).astype(b.dtype) for b in planned.inputs}
    ours, reference = planned.create_execution_context().execute(feeds), \
        unplanned.create_execution_context().execute(feeds)
    for key in reference:
        np.testing.assert_array_equal(ours[key], reference[key])
