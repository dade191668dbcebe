"""torchvision's detection post-processing (SSDlite, issue 15) as onnx.helper graphs, against onnxruntime on fresh
random data: per class, the boxes above a threshold (NonZero), the best k = min(K, n) of them (TopK), their labels
(ConstantOfShape shaped by that count); the classes' results concatenated along their data-dependent rows (a
Compact layer: the count is the sum); an If on "any box left" whose else branch runs torchvision's batched NMS
(a max over the kept boxes, class offsets) and whose then branch gives an empty result; the first D kept. And
the build errors where a count cannot be carried."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T, helper, numpy_helper

import edgert
from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from helpers import ort_run
from test_data_dependent import assert_runs_match_ort, make_model

rng = np.random.default_rng()
BOXES = 40


def per_class_nodes(c: int, most: int) -> list:
    """torchvision's ``postprocess_detections`` for class ``c`` (as its TorchScript export writes it)."""
    p = f"c{c}_"
    return [
        helper.make_node("Gather", ["probs", f"{p}index"], [f"{p}scores"], axis=1),           # (N,)
        helper.make_node("Greater", [f"{p}scores", "threshold"], [f"{p}mask"]),
        helper.make_node("NonZero", [f"{p}mask"], [f"{p}nz"]),                                # (1, n)
        helper.make_node("Transpose", [f"{p}nz"], [f"{p}where"], perm=[1, 0]),
        helper.make_node("GatherND", [f"{p}scores", f"{p}where"], [f"{p}kept"]),              # (n,)
        helper.make_node("NonZero", [f"{p}mask"], [f"{p}nz_boxes"]),                          # the export's 2nd
        helper.make_node("Transpose", [f"{p}nz_boxes"], [f"{p}where_boxes"], perm=[1, 0]),
        helper.make_node("GatherND", ["boxes", f"{p}where_boxes"], [f"{p}kept_boxes"]),       # (n, 4)
        helper.make_node("Shape", [f"{p}kept"], [f"{p}shape"]),
        helper.make_node("Gather", [f"{p}shape", "zero"], [f"{p}n"], axis=0),
        helper.make_node("Unsqueeze", [f"{p}n", "axes0"], [f"{p}n1"]),
        helper.make_node("Concat", ["most", f"{p}n1"], [f"{p}candidates"], axis=0),
        helper.make_node("ReduceMin", [f"{p}candidates"], [f"{p}k0"], keepdims=0),           # min(K, n)
        helper.make_node("Reshape", [f"{p}k0", "one1"], [f"{p}k"]),
        helper.make_node("TopK", [f"{p}kept", f"{p}k"], [f"{p}best", f"{p}best_index"]),
        helper.make_node("Gather", [f"{p}kept_boxes", f"{p}best_index"], [f"{p}best_boxes"], axis=0),
        helper.make_node("Shape", [f"{p}best"], [f"{p}best_shape"]),
        helper.make_node("ConstantOfShape", [f"{p}best_shape"], [f"{p}labels"],
                         value=numpy_helper.from_array(np.array([c], np.int64))),
    ]


def concatenated_nodes(classes: int) -> list:
    names = range(1, classes + 1)
    return [helper.make_node("Concat", [f"c{c}_best_boxes" for c in names], ["all_boxes"], axis=0),
            helper.make_node("Concat", [f"c{c}_best" for c in names], ["all_scores"], axis=0),
            helper.make_node("Concat", [f"c{c}_labels" for c in names], ["all_labels"], axis=0)]


def batched_nms_branch(iou: float):
    """torchvision's ``batched_nms`` (the class-offset trick) as the If's else branch; outer names visible."""
    nodes = [
        helper.make_node("ReduceMax", ["all_boxes"], ["max_coordinate"], keepdims=0),
        helper.make_node("Cast", ["all_labels"], ["labels_f"], to=T.FLOAT),
        helper.make_node("Add", ["max_coordinate", "one_f"], ["stride"]),
        helper.make_node("Mul", ["labels_f", "stride"], ["offsets"]),
        helper.make_node("Slice", ["offsets", "zero1", "big1", "zero1", "one1"], ["offsets_all"]),
        helper.make_node("Unsqueeze", ["offsets_all", "one1"], ["offsets_col"]),
        helper.make_node("Add", ["all_boxes", "offsets_col"], ["boxes_for_nms"]),
        helper.make_node("Unsqueeze", ["boxes_for_nms", "zero1"], ["nms_boxes"]),               # (1, M, 4)
        helper.make_node("Unsqueeze", ["all_scores", "zero1"], ["scores_1"]),
        helper.make_node("Unsqueeze", ["scores_1", "zero1"], ["nms_scores"]),                   # (1, 1, M)
        helper.make_node("NonMaxSuppression", ["nms_boxes", "nms_scores", "max_int64", "iou"], ["selected"]),
        helper.make_node("Gather", ["selected", "two1"], ["box_column"], axis=1),               # (s, 1)
        helper.make_node("Squeeze", ["box_column", "one1"], ["keep"]),
    ]
    consts = [numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
              numpy_helper.from_array(np.array([iou], np.float32), "iou"),
              numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "max_int64"),
              numpy_helper.from_array(np.array([2], np.int64), "two1")]
    return helper.make_graph(nodes, "else_branch", [], [helper.make_tensor_value_info("keep", T.INT64, None)], consts)


def empty_branch():
    node = helper.make_node("Constant", [], ["nothing"], value=numpy_helper.from_array(np.zeros(0, np.int64)))
    return helper.make_graph([node], "then_branch", [], [helper.make_tensor_value_info("nothing", T.INT64, [0])])


def detector_consts(classes: int, most: int, threshold: float, **more) -> dict:
    consts = {f"c{c}_index": np.array(c, np.int64) for c in range(1, classes + 1)}
    consts.update(threshold=np.array(threshold, np.float32), zero=np.array(0, np.int64),
                  axes0=np.array([0], np.int64), most=np.array([most], np.int64), one1=np.array([1], np.int64),
                  zero1=np.array([0], np.int64), big1=np.array([np.iinfo(np.int64).max], np.int64), **more)
    return consts


def detector_model(classes: int = 3, most: int = 8, keep: int = 10, iou: float = 0.4, threshold: float = 0.3):
    """The whole post-processing: ``classes`` classes (and a background column 0), at most ``most`` per class,
    the first ``keep`` that batched NMS selects; outputs boxes, scores, labels with data-dependent rows."""
    nodes = [node for c in range(1, classes + 1) for node in per_class_nodes(c, most)] + concatenated_nodes(classes)
    nodes += [
        helper.make_node("Shape", ["all_boxes"], ["all_shape"]),
        helper.make_node("ReduceProd", ["all_shape"], ["numel"], keepdims=0),
        helper.make_node("Equal", ["numel", "zero"], ["none_left"]),
        helper.make_node("If", ["none_left"], ["kept"], then_branch=empty_branch(), else_branch=batched_nms_branch(iou)),
        helper.make_node("Slice", ["kept", "zero1", "keep1", "zero1", "one1"], ["first"]),
        helper.make_node("Gather", ["all_boxes", "first"], ["det_boxes"], axis=0),
        helper.make_node("Gather", ["all_scores", "first"], ["det_scores"], axis=0),
        helper.make_node("Gather", ["all_labels", "first"], ["det_labels"], axis=0),
    ]
    consts = detector_consts(classes, most, threshold, keep1=np.array([keep], np.int64))
    return make_model(nodes, [("probs", T.FLOAT, [BOXES, classes + 1]), ("boxes", T.FLOAT, [BOXES, 4])],
                      [("det_boxes", T.FLOAT), ("det_scores", T.FLOAT), ("det_labels", T.INT64)], consts)


def draw_detections(classes: int = 3):
    """Overlapping boxes; class probabilities from all below the threshold (nothing left) to all above it."""
    def draw():
        corner = rng.uniform(0, 60, (BOXES, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(5, 30, (BOXES, 2))], axis=1).astype(np.float32)
        probs = rng.random((BOXES, classes + 1)) * rng.choice([0.0, 0.2, 0.5, 1.0])
        return {"probs": probs.astype(np.float32), "boxes": boxes}
    return draw


def kinds(plan, kind: LayerKind) -> list[dict]:
    return [layer for layer in plan.layers if layer["kind"] == kind.value]


def test_per_class_results_concatenated_along_their_counts_match_ort():
    """Labels shaped by each class's count, and the three Concats of rows with a count each: one count, the sum."""
    classes = 3
    nodes = [node for c in range(1, classes + 1) for node in per_class_nodes(c, 8)] + concatenated_nodes(classes)
    model = make_model(nodes, [("probs", T.FLOAT, [BOXES, classes + 1]), ("boxes", T.FLOAT, [BOXES, 4])],
                       [("all_boxes", T.FLOAT), ("all_scores", T.FLOAT), ("all_labels", T.INT64)],
                       detector_consts(classes, 8, 0.3))
    plan = assert_runs_match_ort(model, draw_detections(classes), runs=6)
    compacts = kinds(plan, LayerKind.COMPACT)
    assert len(compacts) == 3 and all(len(layer["inputs"]) == 2 * classes for layer in compacts)
    outputs = plan.document["bindings"]["outputs"]
    assert [o["shape"][0] for o in outputs] == [3 * 8] * 3                    # the bound: the classes' bounds
    assert len({o["rows"]["tensor"] for o in outputs}) == 1                 # one count for the three


def test_a_static_block_concatenated_with_counted_rows_matches_ort():
    """Concat([counted rows, a constant row]): the constant's rows count in full, after the valid ones."""
    nodes = per_class_nodes(1, 8) + [helper.make_node("Concat", ["c1_best_boxes", "extra"], ["y"], axis=0),
                                     helper.make_node("Concat", ["extra", "c1_best_boxes", "extra"], ["z"], axis=0)]
    extra = np.arange(8, dtype=np.float32).reshape(2, 4)
    model = make_model(nodes, [("probs", T.FLOAT, [BOXES, 2]), ("boxes", T.FLOAT, [BOXES, 4])],
                       [("y", T.FLOAT), ("z", T.FLOAT)], detector_consts(1, 8, 0.3, extra=extra))
    assert_runs_match_ort(model, draw_detections(1))


@pytest.mark.parametrize("classes,most,keep", [(3, 8, 10), (4, 12, 50)])
def test_if_on_any_box_left_with_batched_nms_matches_ort(classes, most, keep):
    """From no box above the threshold (the empty then branch) to every class full (keep cuts the NMS result)."""
    plan = assert_runs_match_ort(detector_model(classes, most, keep), draw_detections(classes), runs=8)
    selects = [layer for layer in kinds(plan, LayerKind.COMPACT) if layer["attrs"]["select"]]
    assert len(selects) == 1 and len(selects[0]["inputs"]) == 5
    reduce = next(layer for layer in kinds(plan, LayerKind.REDUCE) if len(layer["inputs"]) == 2)
    assert reduce["attrs"]["rows_axis"] == 0                               # the max over the kept boxes only
    assert [o["shape"][0] for o in plan.document["bindings"]["outputs"]] == [min(keep, classes * most)] * 3


def test_fp16_plans_keep_the_layers_on_counted_rows_fp32():
    """The class offsets reach 4 x (max coordinate + 1): in float16 they would round the boxes NMS compares."""
    model = detector_model()
    plan = edgert.build(model, precision="fp16")
    for name in ("boxes_for_nms", "c1_mask", "max_coordinate", "all_scores"):
        layer = next(layer for layer in plan.layers if layer["name"] == name)
        assert layer["precision"] == "fp32", layer
    context = edgert.load(plan.to_bytes()).create_execution_context()
    draw = draw_detections()
    for _ in range(4):
        feeds = draw()
        ours, ref = context.execute(feeds), ort_run(model, feeds)
        for name, want in ref.items():
            np.testing.assert_array_equal(ours[name], want, err_msg=name)


def test_nothing_left_gives_empty_detections_like_ort():
    model = detector_model()
    context = edgert.load(edgert.build(model).to_bytes()).create_execution_context()
    feeds = dict(draw_detections()(), probs=np.zeros((BOXES, 4), np.float32))
    ours = context.execute(feeds)
    assert ours["det_boxes"].shape == (0, 4) and ours["det_labels"].shape == (0,)


def test_compact_kernel_packs_valid_rows_and_selects_a_branch():
    from edgert.kernels.cpu.compact import compact
    a, b = np.arange(12, dtype=np.float32).reshape(3, 4), -np.arange(8, dtype=np.float32).reshape(2, 4)
    out, count = np.full((5, 4), 7, np.float32), np.zeros((), np.int64)
    compact({"axis": 0, "select": False}, [a, b, np.array(2), np.array(9)], [out, count])   # 9: clamped to 2
    np.testing.assert_array_equal(out, np.concatenate([a[:2], b, np.zeros((1, 4))]))
    assert count == 4
    compact({"axis": 1, "select": True}, [a.T, b.T, np.array(3), np.array(2), np.array(False)],
            [out.T, count])
    np.testing.assert_array_equal(out, np.concatenate([b, np.zeros((3, 4))]))
    assert count == 2


# -- what cannot be carried: build errors naming the layer ----------------------------------------------------
def test_concat_of_counted_rows_along_another_axis_is_a_clear_error():
    """Rows counted along axis 0 of one input, the Concat along that axis of another input counted along 1."""
    nodes = per_class_nodes(1, 8) + [
        helper.make_node("Transpose", ["c1_best_boxes"], ["columns"], perm=[1, 0]),          # (4, k): counted on 1
        helper.make_node("Concat", ["c1_best_boxes", "columns"], ["y"], axis=0)]
    model = make_model(nodes, [("probs", T.FLOAT, [BOXES, 2]), ("boxes", T.FLOAT, [8, 4])], [("y", T.FLOAT)],
                       detector_consts(1, 8, 0.3))
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_value = BOXES
    with pytest.raises(UnsupportedError, match="Concat.*along axis 1.*concatenated axis 0"):
        edgert.build(model)


def test_constant_of_shape_from_two_counts_is_a_clear_error():
    nodes = per_class_nodes(1, 8) + per_class_nodes(2, 8) + [
        helper.make_node("Concat", ["c1_best_shape", "c2_best_shape"], ["grid_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["grid_shape"], ["grid"])]
    model = make_model(nodes, [("probs", T.FLOAT, [BOXES, 3]), ("boxes", T.FLOAT, [BOXES, 4])],
                       [("grid", T.FLOAT)], detector_consts(2, 8, 0.3))
    with pytest.raises(UnsupportedError, match="ConstantOfShape.*counts of 2 data-dependent layers"):
        edgert.build(model)


def test_if_whose_branches_differ_off_the_counted_axis_is_a_clear_error():
    model = detector_model()
    node = model.graph.node[[n.op_type for n in model.graph.node].index("If")]
    then = next(a.g for a in node.attribute if a.name == "then_branch")
    then.node[0].attribute[0].t.CopyFrom(numpy_helper.from_array(np.zeros((0, 2), np.int64)))
    then.output[0].type.tensor_type.shape.Clear()
    with pytest.raises(UnsupportedError, match="If.*branches give"):
        edgert.build(model)


def test_fuzz_decoded_fields_of_a_plan_with_compact_layers():
    """Every mutated plan loads and runs with outputs within their bindings, or fails with one EdgeRTError line."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from plan_models import decoded
    from test_plan_fuzz import _written, mutate_fields
    from test_plan_fuzz_kinds import EXAMPLES, _outcome
    document = decoded(edgert.build(detector_model(2, 4, 5)).to_bytes())
    assert _outcome(_written(document)) == "ran"

    @settings(max_examples=max(EXAMPLES // 4, 1), deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data):
        _outcome(_written(mutate_fields(document, data)))
    fuzz()
