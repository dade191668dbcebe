"""CUDA kernels of SSDlite's post-processing (issue 15): Compact (kernels/cuda/lower_rows.py: the Concat of rows
with counts of their own, and the If on a count that selects a branch's counted rows) and a Reduce over counted
rows (kernels/cuda/lower_reduce.py: only the first `count` rows along rows_axis reduce).

Each case builds an onnx.helper graph (torchvision's per-class TopK → Concat of counted rows, If on "any box left"
with batched NMS, reductions over counted rows), runs its plan's CUDA kernels with every device buffer poisoned
first (0xFF: NaN for floats, so an element no kernel wrote fails) on fresh random data with counts from none to
all, and requires the result to equal the CPU plan's bit for bit, shapes included, and onnxruntime's (exactly, or
within the fp32 contract where a sum's order differs). Every case runs on the CPU emulator of the CUDA execution
model and, marked ``gpu``, on a real GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto as T, helper

sys.path.insert(0, str(Path(__file__).parent))

from edgert.ir.kinds import LayerKind  # noqa: E402
from edgert.kernels.cuda.library import CPU_ONLY_KINDS, LowerContext, supported_kinds  # noqa: E402
from helpers import ort_run  # noqa: E402
from test_cuda_detect import BACKENDS, cuda_context, private_cache  # noqa: E402,F401
from test_data_dependent import make_model  # noqa: E402
from test_data_dependent_concat import (  # noqa: E402
    BOXES, concatenated_nodes, detector_consts, detector_model, draw_detections, per_class_nodes,
)

rng = np.random.default_rng()


def assert_equal_to_cpu_and_ort(model, draw, backend: str, runs: int = 6, exact_ort: bool = True,
                                **options) -> dict:
    """Fresh inputs ``runs`` times on one plan: every CUDA output bit-identical with the CPU plan's (shapes too), and
    equal to onnxruntime's (within 1e-5 relative when ``exact_ort`` is False: reductions in another order)."""
    feeds = draw()
    context, reference = cuda_context(model, feeds, backend, **options)
    for run in range(runs):
        feeds = feeds if run == 0 else draw()
        context.poison()
        got, want = context.execute(feeds), reference.execute(feeds)
        for name, expected in want.items():
            assert got[name].shape == expected.shape, (name, got[name].shape, expected.shape)
            np.testing.assert_array_equal(got[name], expected, err_msg=name)
        for name, expected in ort_run(model, feeds).items():
            assert got[name].shape == expected.shape, (name, got[name].shape, expected.shape)
            if exact_ort or expected.dtype.kind != "f":
                np.testing.assert_array_equal(got[name], expected, err_msg=name)
            else:
                np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)
    return got


def lowered_tactics(model, feeds) -> list[str]:
    """The CUDA tactics of the plan's layers (lowered for sm_90, no compiler)."""
    import edgert
    from edgert.kernels.cuda.lowering import lower_plan
    plan = edgert.build(model, cpu_only_aliases=False, shapes={k: v.shape for k, v in feeds.items()})
    _, launches, _ = lower_plan(plan.document, "sm_90")
    return [launch["tactic"] for layer in launches for launch in layer]


def test_compact_has_a_cuda_kernel():
    assert LayerKind.COMPACT in supported_kinds() and not CPU_ONLY_KINDS


# -- Compact: the Concat of per-class counted rows ---------------------------------------------------------
def per_class_model(classes: int, most: int):
    nodes = [node for c in range(1, classes + 1) for node in per_class_nodes(c, most)] + concatenated_nodes(classes)
    return make_model(nodes, [("probs", T.FLOAT, [BOXES, classes + 1]), ("boxes", T.FLOAT, [BOXES, 4])],
                      [("all_boxes", T.FLOAT), ("all_scores", T.FLOAT), ("all_labels", T.INT64)],
                      detector_consts(classes, most, 0.3))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("classes,most", [(3, 8), (12, 5)])
def test_per_class_topk_concatenated_along_their_counts(backend, classes, most):
    """torchvision's per-class NonZero → TopK(min(K, n)) → labels, the classes' results concatenated (three Compacts
    of `classes` values each: boxes [n, 4], scores [n], labels [n]); counts from none to all."""
    model = per_class_model(classes, most)
    assert_equal_to_cpu_and_ort(model, draw_detections(classes), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_class_concat_in_fp16_equals_the_cpu_plan(backend):
    """Every layer fp16 (the Compacts copy float16 boxes and scores): bit-identical with the CPU plan's fp16."""
    from test_cuda_detect import assert_equal_to_cpu
    fp16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]}
    assert_equal_to_cpu(per_class_model(3, 8), draw_detections(3), backend, runs=4, **fp16)


def test_compact_is_lowered_to_one_kernel_per_layer():
    model = per_class_model(3, 8)
    tactics = lowered_tactics(model, draw_detections(3)())
    assert tactics.count("compact") == 3, tactics


@pytest.mark.parametrize("backend", BACKENDS)
def test_counted_rows_concatenated_with_a_static_block(backend):
    """Concat([counted rows, a constant block]) and Concat([block, counted rows, block]): the block's rows count in
    full, packed right after the valid ones."""
    from test_data_dependent_concat import detector_consts as consts
    nodes = per_class_nodes(1, 8) + [helper.make_node("Concat", ["c1_best_boxes", "extra"], ["y"], axis=0),
                                     helper.make_node("Concat", ["extra", "c1_best_boxes", "extra"], ["z"], axis=0)]
    extra = np.arange(8, dtype=np.float32).reshape(2, 4)
    model = make_model(nodes, [("probs", T.FLOAT, [BOXES, 2]), ("boxes", T.FLOAT, [BOXES, 4])],
                       [("y", T.FLOAT), ("z", T.FLOAT)], consts(1, 8, 0.3, extra=extra))
    assert_equal_to_cpu_and_ort(model, draw_detections(1), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nonzero_results_concatenated_along_axis_1(backend):
    """Compact along axis 1: NonZero's [rank, n] coordinates of two masks, one after the other ([2, n_a + n_b])."""
    nodes = [helper.make_node("Greater", ["a", "zero_f"], ["ma"]), helper.make_node("Greater", ["b", "zero_f"], ["mb"]),
             helper.make_node("NonZero", ["ma"], ["na"]), helper.make_node("NonZero", ["mb"], ["nb"]),
             helper.make_node("Concat", ["na", "nb"], ["both"], axis=1)]
    model = make_model(nodes, [("a", T.FLOAT, [6, 7]), ("b", T.FLOAT, [3, 5])], [("both", T.INT64)],
                       {"zero_f": np.array(0.0, np.float32)})

    def draw():
        return {name: (rng.standard_normal(shape) + rng.choice([-9.0, 0.0, 9.0])).astype(np.float32)
                for name, shape in (("a", (6, 7)), ("b", (3, 5)))}
    assert_equal_to_cpu_and_ort(model, draw, backend)


# -- Compact with select: an If on a count, and a Reduce over the counted rows ------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("classes,most,keep", [(3, 8, 10), (4, 12, 50)])
def test_if_on_any_box_left_with_batched_nms(backend, classes, most, keep):
    """The whole post-processing: the per-class Compacts, ReduceMax over the kept boxes (counted rows), NMS over
    the counted rows, the If whose branch is chosen by the count (a Compact with select), the first `keep`."""
    assert_equal_to_cpu_and_ort(detector_model(classes, most, keep), draw_detections(classes), backend, runs=8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_left_gives_empty_detections(backend):
    model = detector_model()
    feeds = dict(draw_detections()(), probs=np.zeros((BOXES, 4), np.float32))
    got = assert_equal_to_cpu_and_ort(model, lambda: feeds, backend, runs=1)
    assert got["det_boxes"].shape == (0, 4) and got["det_labels"].shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_plan_of_the_post_processing(backend):
    """fp16 keeps the layers on counted rows fp32 (the class offsets would round the boxes NMS compares)."""
    assert_equal_to_cpu_and_ort(detector_model(), draw_detections(), backend, precision="fp16")


# -- Reduce over counted rows ------------------------------------------------------------------------------
REDUCTIONS = ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSumExp"]


def counted_reduce_model(op: str, axes: list[int], transpose: bool, keepdims: int):
    """The kept boxes of one class ([n, 4], n data-dependent), as they are or transposed ([4, n]), reduced over
    ``axes`` (which include the counted axis)."""
    nodes = per_class_nodes(1, 8)
    source = "c1_best_boxes"
    if transpose:
        nodes.append(helper.make_node("Transpose", [source], ["boxes_t"], perm=[1, 0]))
        source = "boxes_t"
    nodes.append(helper.make_node("Mul", [source, "scale"], ["scaled"]))   # values near 1: products stay finite
    nodes.append(helper.make_node(op, ["scaled", "axes"], ["y"], keepdims=keepdims))
    consts = detector_consts(1, 8, 0.3, scale=np.array(0.02, np.float32), axes=np.array(axes, np.int64))
    return make_model(nodes, [("probs", T.FLOAT, [BOXES, 2]), ("boxes", T.FLOAT, [BOXES, 4])], [("y", T.FLOAT)],
                      consts, opset=18)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("axes,transpose", [([0], False), ([0, 1], False), ([1], True), ([0, 1], True)])
def test_reduce_over_counted_rows(backend, op, axes, transpose):
    """Only the first `count` rows reduce, none to all of them; the counted axis outermost among the reduced ones
    (the loop stops at the count) or not (each element tested: the transposed [4, n] over both axes). Extremes are
    exact; sums equal the CPU plan within the fp32 contract (a warp's order, not NumPy's pairwise one)."""
    model = counted_reduce_model(op, axes, transpose, keepdims=int(len(axes) == 1))
    feeds = draw_detections(1)()
    context, reference = cuda_context(model, feeds, backend)
    draw = draw_detections(1)
    for run in range(6):
        feeds = feeds if run == 0 else draw()
        context.poison()
        got, want, ref = context.execute(feeds)["y"], reference.execute(feeds)["y"], ort_run(model, feeds)["y"]
        assert got.shape == want.shape == ref.shape
        if op in ("ReduceMax", "ReduceMin"):
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, ref)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
            if op == "ReduceMean" and np.isnan(want).all():   # the mean of no rows: NaN (kernels/cpu/reduce.py, as
                ref = np.full_like(ref, np.nan)                 # onnx.reference's np.mean); onnxruntime gives 0
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_a_counted_reduce_over_an_inner_axis_tests_each_element():
    model = counted_reduce_model("ReduceSum", [0, 1], True, keepdims=0)
    tactics = lowered_tactics(model, draw_detections(1)())
    assert any(t.startswith("reduce-sum counted") for t in tactics)


def test_the_counted_reduce_reads_the_count_from_device_memory():
    """No host round trip: the kernel takes the count tensor as a parameter."""
    import edgert
    from edgert.kernels.cuda.lowering import lower_plan
    model = counted_reduce_model("ReduceMax", [0], False, keepdims=1)
    feeds = draw_detections(1)()
    plan = edgert.build(model, cpu_only_aliases=False, shapes={k: v.shape for k, v in feeds.items()})
    index = next(i for i, layer in enumerate(plan.layers) if layer["kind"] == "Reduce" and len(layer["inputs"]) == 2)
    _, launches, _ = lower_plan(plan.document, "sm_90")
    (launch,) = launches[index]
    count = plan.layers[index]["inputs"][1]
    assert ["t", count, 0] in launch["params"] and launch["tactic"].startswith("reduce-max counted")


@pytest.mark.skipif(not __import__("edgert.kernels.cuda.compile", fromlist=["available"]).available(),
                    reason="no NVRTC (cuda-bindings) and no nvcc")
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_the_compact_and_counted_reduce_kernels_compile_with_nvrtc(arch):
    """Compact of fp32 boxes / scores and int64 labels, the select form (the If) and the counted ReduceMax; fp16
    values (every layer fp16) and a counted ReduceMean over an inner axis too."""
    import edgert
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    fp16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]}
    cases = [(detector_model(), {}), (per_class_model(3, 8), fp16),
             (counted_reduce_model("ReduceMean", [0, 1], True, keepdims=0), {})]
    for model, options in cases:
        section = compile_for_plan(edgert.build(model, cpu_only_aliases=False, **options).document, arch)
        tactics = " ".join(launch["tactic"] for launches in section["launches"] for launch in launches)
        assert all(m["cubin"][:4] == b"\x7fELF" for m in section["modules"])
        assert "compact-" in tactics or "counted" in tactics, tactics
