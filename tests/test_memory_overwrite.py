"""Outputs written over their input ("overwrite" steps: pooling and depthwise convolution on the CPU runtime).

The planner gives the output the first bytes of an input that dies at the step, and frees the rest of the
input's buffer once the step is done (a buffer of two rectangles). Checked here: bytes of tensors alive
together never overlap on random chains, the cases where it must not fire, the tail reused, real models
(ResNet's stem pool, ZFNet's LRN in place), plans with CUDA kernels never overwriting, and runs through the
runtime's scratch when the native kernels are off.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import edgert
from edgert.kernels.cpu import native
from edgert.memory import ALIGNMENT, StepSpec, TensorSpec, plan_memory
from edgert.onnx.importer import import_model
from edgert.schedule import ScheduleSpecs
from helpers import assert_runs_allocate_nothing, normwise_error, ort_run
from models import MODELS


def tensor(tid, nbytes, shape=None, **kwargs):
    return TensorSpec(tid, nbytes, shape=shape or (1, 4, nbytes // 16, 1), **kwargs)


def tensor_lifetimes(steps, tensors) -> dict[int, tuple[int, int]]:
    """Each tensor's own life: the step writing it to the last step reading it (graph outputs: the end)."""
    life = {}
    for index, step in enumerate(steps):
        for tid in step.outputs:
            life[tid] = [index, index]
        for tid in step.inputs:
            if tid in life:
                life[tid][1] = index
    for t in tensors:
        if t.graph_output and t.id in life:
            life[t.id][1] = len(steps)
    return {tid: tuple(span) for tid, span in life.items()}


def assert_no_clash(steps, tensors, plan):
    offsets = plan.pools["cpu"]["offsets"]
    life = tensor_lifetimes(steps, tensors)
    pairs = {(s.inputs[0], s.outputs[0]) for i, s in enumerate(steps) if i in plan.overwrite_steps}
    internal = [t for t in tensors if not t.external]
    for t in internal:
        assert offsets[t.id] % ALIGNMENT == 0 and offsets[t.id] + t.nbytes <= plan.arena_bytes
    for i, a in enumerate(internal):
        for b in internal[i + 1:]:
            (af, al), (bf, bl) = life[a.id], life[b.id]
            if af > bl or bf > al or (a.id, b.id) in pairs or (b.id, a.id) in pairs:
                continue
            disjoint = offsets[a.id] + a.nbytes <= offsets[b.id] or offsets[b.id] + b.nbytes <= offsets[a.id]
            assert disjoint, (a.id, b.id, life[a.id], life[b.id])
    assert plan.arena_bytes >= plan.lower_bound_bytes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 64), st.sampled_from(["overwrite", None]), st.integers(0, 3)),
                min_size=2, max_size=30))
def test_random_chains_with_overwrites_never_clash(items):
    """A chain where each step may overwrite its input, and may also read an earlier tensor (a skip link)."""
    tensors = [tensor(0, 64 * 16, external=True)]
    steps = []
    for index, (rows, alias, skip) in enumerate(items, start=1):
        extra = (index - 1 - skip,) if skip and index - 1 - skip > 0 else ()
        tensors.append(tensor(index, rows * 16 * 4, graph_output=index == len(items)))
        steps.append(StepSpec((index - 1,) + extra, (index,), alias))
    plan = plan_memory(steps, tensors)
    assert_no_clash(steps, tensors, plan)


def chain(sizes, aliases, graph_output_last=True):
    tensors = [tensor(0, sizes[0], external=True)]
    steps = []
    for index, (size, alias) in enumerate(zip(sizes[1:], aliases), start=1):
        tensors.append(tensor(index, size, graph_output=graph_output_last and index == len(sizes) - 1))
        steps.append(StepSpec((index - 1,), (index,), alias))
    return steps, tensors


def test_the_tail_of_an_overwritten_input_is_reused():
    kib = 1024
    # 1 (64 KiB, conv) -> 2 (16 KiB, pool over 1) -> 3 (16 KiB) -> 4 (16 KiB) -> 5 (output)
    steps, tensors = chain([4 * kib, 64 * kib, 16 * kib, 16 * kib, 16 * kib, kib], [None, "overwrite", None, None, None])
    plan = plan_memory(steps, tensors)
    assert plan.overwrite_steps == [1]
    offsets = plan.pools["cpu"]["offsets"]
    assert offsets[2] == offsets[1]
    assert plan.arena_bytes == plan.lower_bound_bytes == 64 * kib   # 3 and 4 live in 1's freed tail
    assert_no_clash(steps, tensors, plan)
    without = plan_memory(*chain([4 * kib, 64 * kib, 16 * kib, 16 * kib, 16 * kib, kib], [None] * 5))
    assert without.arena_bytes == 80 * kib


@pytest.mark.parametrize("case", ["read later", "graph output", "larger output", "other planes", "graph input"])
def test_overwrite_does_not_fire(case):
    kib = 1024
    tensors = [tensor(0, 4 * kib, external=True), tensor(1, 64 * kib), tensor(2, 16 * kib), tensor(3, kib)]
    steps = [StepSpec((0,), (1,)), StepSpec((1,), (2,), "overwrite"), StepSpec((2,), (3,))]
    if case == "read later":
        steps[2] = StepSpec((2, 1), (3,))
    elif case == "graph output":
        tensors[1] = tensor(1, 64 * kib, graph_output=True)
    elif case == "larger output":
        tensors[2] = tensor(2, 128 * kib)
    elif case == "other planes":
        tensors[2] = tensor(2, 16 * kib, shape=(1, 2, 512, 4))
    elif case == "graph input":
        steps = [StepSpec((0,), (2,), "overwrite"), StepSpec((2,), (3,))]
        tensors[1] = tensor(1, 64 * kib)
    plan = plan_memory(steps, tensors)
    assert plan.overwrite_steps == []


def run_against_ort(name, **build_options):
    case = MODELS[name]
    model = case.build()
    rng = np.random.default_rng()
    feeds = {k: rng.standard_normal(shape).astype(np.float32) for k, shape in case.shapes.items()}
    plan = edgert.build(model, **build_options)
    context = edgert.load(plan.to_bytes()).create_execution_context()
    ours = context.execute(feeds)
    for key, want in ort_run(model, feeds).items():
        assert normwise_error(ours[key], want) <= 1e-5, key
    return plan, context


@pytest.mark.parametrize("switch", ["1", "0"])
def test_resnet_pools_over_its_stem_and_runs_right(switch, monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, switch)   # "0": the NumPy pooling writes scratch, copied over the input
    plan, context = run_against_ort("resnet")
    memory = plan.document["memory"]
    kinds = [plan.document["layers"][i]["kind"] for i in memory["overwrite"]]
    assert kinds == ["Pooling", "Pooling"]   # the stem max pool and the global average pool
    assert memory["arena_bytes"] <= 0.5 * memory["no_reuse_bytes"]
    assert_runs_allocate_nothing(context)   # the scratch is the context's: no allocation in a run


def test_mobilenet_depthwise_layers_overwrite_their_input():
    plan, _ = run_against_ort("mobilenetv2")
    layers = plan.document["layers"]
    assert any(layers[i]["kind"] == "Convolution" for i in plan.document["memory"]["overwrite"])


def test_plans_with_cuda_kernels_never_overwrite():
    """CUDA kernels run over the same memory plan: threads of one layer would read what others wrote."""
    graph = import_model(MODELS["resnet"].build(), None)
    steps = {cpu: ScheduleSpecs(graph, graph.nodes, cpu_kernels=cpu).steps for cpu in (True, False)}
    assert any(step.alias == "overwrite" for step in steps[True])
    assert not any(step.alias == "overwrite" for step in steps[False])


def test_cuda_kernels_refuse_a_plan_planned_for_the_cpu_runtime():
    from edgert.errors import PlanError
    from edgert.kernels.cuda.plan_kernels import lower_plan
    case = MODELS["resnet"]
    cpu_plan = edgert.build(case.build(), shapes=case.shapes)
    assert cpu_plan.document["memory"]["cpu_only"]
    with pytest.raises(PlanError, match="planned for the CPU runtime.*cpu_only_aliases=False"):
        lower_plan(cpu_plan.document, "sm_90")
    gpu_ready = edgert.build(case.build(), shapes=case.shapes, cpu_only_aliases=False)
    assert not gpu_ready.document["memory"]["cpu_only"] and not gpu_ready.document["memory"]["overwrite"]
    lower_plan(gpu_ready.document, "sm_90")


def test_reports_show_the_overwritten_input_dying_at_its_step():
    kib = 1024
    steps, tensors = chain([4 * kib, 64 * kib, 16 * kib, 16 * kib, 16 * kib, kib], [None, "overwrite", None, None, None])
    plan = plan_memory(steps, tensors)
    assert plan.lifetimes[1] == (0, 1) and plan.lifetimes[2] == (0, 2)   # 2 lives in 1's first bytes from step 0


def test_lrn_runs_in_place_and_pooling_over_it():
    """ZFNet's shape: conv -> relu -> LRN (in place over the conv output) -> max pool (over the LRN output)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng()
    w = numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("LRN", ["r"], ["n"], size=5, alpha=1e-3, beta=0.75, bias=2.0),
             helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "zf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 24, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 1, 1])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    feeds = {"x": rng.standard_normal((1, 3, 24, 24)).astype(np.float32)}
    plan = edgert.build(model)
    document = plan.document
    offsets = dict(document["memory"]["pools"]["cpu"]["offsets"])
    lrn = next(layer for layer in document["layers"] if layer["kind"] == "LRN")
    assert offsets[lrn["inputs"][0]] == offsets[lrn["outputs"][0]]
    context = edgert.load(plan.to_bytes()).create_execution_context()
    assert normwise_error(context.execute(feeds)["y"], ort_run(model, feeds)["y"]) <= 1e-5
    assert not context.unprepared_layers()
    assert_runs_allocate_nothing(context)
