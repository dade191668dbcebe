"""Detection ops against onnxruntime (fresh random data): TopK, NonMaxSuppression, RoiAlign, GridSample; and
data-dependent output sizes (NMS → Gather post-processing, trimmed outputs, build errors for non-row-wise
consumers)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T, helper, numpy_helper

import edgert
from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from helpers import assert_matches_ort, edgert_run, op_model, ort_run

rng = np.random.default_rng()


def random_boxes(batch, count, center: int, spread=10.0):
    """Overlapping boxes: (y1, x1, y2, x2) corners in either order, or (x, y, w, h) centers."""
    if center:
        xy = rng.uniform(0, spread, (batch, count, 2))
        wh = rng.uniform(0.5, spread / 2, (batch, count, 2))
        return np.concatenate([xy, wh], axis=2).astype(np.float32)
    first = rng.uniform(0, spread, (batch, count, 2))
    second = first + rng.uniform(-spread / 2, spread / 2, (batch, count, 2))
    return np.concatenate([first, second], axis=2).astype(np.float32)


# -- TopK ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,axis,k", [((3, 10), -1, 4), ((4, 5, 6), 1, 5), ((7,), 0, 0), ((2, 8, 3), 1, 1)])
@pytest.mark.parametrize("largest", [1, 0])
def test_topk_matches_ort(shape, axis, k, largest):
    x = rng.standard_normal(shape).astype(np.float32)
    model, feeds = op_model("TopK", [("x", x), ("k", np.array([k], np.int64))], {"axis": axis, "largest": largest},
                            opset=11, consts=("k",), num_outputs=2)
    assert_matches_ort(model, feeds, tolerance=0.0)


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_ties_keep_the_lower_index_first(largest):
    x = rng.integers(0, 3, (6, 12)).astype(np.int64)   # many equal values
    model, feeds = op_model("TopK", [("x", x), ("k", np.array([7], np.int64))], {"axis": 1, "largest": largest},
                            opset=11, consts=("k",), num_outputs=2)
    ours = edgert_run(model, feeds)
    order = np.argsort(-x if largest else x, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(ours["y1"], order)
    np.testing.assert_array_equal(ours["y0"], np.take_along_axis(x, order, 1))


def test_topk_opset1_attribute_k_and_argmax_still_work():
    x = rng.standard_normal((4, 9)).astype(np.float32)
    model, feeds = op_model("TopK", [("x", x)], {"k": 3}, opset=9, num_outputs=2)
    assert_matches_ort(model, feeds, tolerance=0.0)
    model, feeds = op_model("ArgMax", [("x", x)], {"axis": 1, "keepdims": 0}, opset=13)
    assert_matches_ort(model, feeds, tolerance=0.0)


def test_topk_k_larger_than_axis_is_a_build_error():
    x = rng.standard_normal((2, 3)).astype(np.float32)
    model, feeds = op_model("TopK", [("x", x), ("k", np.array([4], np.int64))], {}, opset=11, consts=("k",),
                            num_outputs=2, infer=False)
    with pytest.raises(edgert.EdgeRTError, match="k = 4"):
        edgert.build(model)


# -- NonMaxSuppression -------------------------------------------------------------------------------------
@pytest.mark.parametrize("center", [0, 1])
@pytest.mark.parametrize("limit,iou,score", [(5, 0.5, None), (3, 0.3, 0.2), (20, 0.7, 0.5), (0, 0.5, None)])
def test_nms_matches_ort(center, limit, iou, score):
    boxes = random_boxes(2, 30, center)
    scores = rng.random((2, 3, 30)).astype(np.float32)
    inputs = [("boxes", boxes), ("scores", scores), ("max", np.array([limit], np.int64)),
              ("iou", np.array([iou], np.float32))]
    if score is not None:
        inputs.append(("score", np.array([score], np.float32)))
    model, feeds = op_model("NonMaxSuppression", inputs, {"center_point_box": center}, opset=11,
                            consts=("max", "iou", "score"))
    ours, ref = edgert_run(model, feeds)["y0"], ort_run(model, feeds)["y0"]
    assert ours.dtype == np.int64 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("count,spread,classes,limit", [
    (700, 60.0, 1, 1000),      # one tangle of boxes: settled in blocks of 256
    (700, 60.0, 1, 40),        # ... cut at the limit inside a block
    (1200, 40.0, 6, 1000),     # classes offset apart (torchvision's batched NMS): separate groups
    (5000, 3000.0, 1, 10000),  # many candidates: each kept box only meets those its x-extent reaches
])
def test_nms_of_many_boxes_matches_ort(count, spread, classes, limit):
    corner = rng.uniform(0, spread, (1, count, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(2, 30, (1, count, 2))], axis=2)
    boxes += (rng.integers(0, classes, count) * 2 * (spread + 30))[None, :, None]
    inputs = [("boxes", boxes.astype(np.float32)), ("scores", rng.random((1, 1, count)).astype(np.float32)),
              ("max", np.array([limit], np.int64)), ("iou", np.array([0.45], np.float32))]
    model, feeds = op_model("NonMaxSuppression", inputs, {}, opset=11, consts=("max", "iou"))
    ours, ref = edgert_run(model, feeds)["y0"], ort_run(model, feeds)["y0"]
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


def test_nms_plan_bounds_its_output_and_trims_it():
    boxes, scores = random_boxes(1, 40, 0), rng.random((1, 2, 40)).astype(np.float32)
    model, feeds = op_model("NonMaxSuppression", [("boxes", boxes), ("scores", scores),
                                                 ("max", np.array([10], np.int64)), ("iou", np.array([0.4], np.float32))],
                            {}, opset=11, consts=("max", "iou"))
    plan = edgert.build(model)
    binding = plan.document["bindings"]["outputs"][0]
    assert binding["shape"] == [1 * 2 * 10, 3] and binding["rows"]["axis"] == 0
    context = edgert.load(plan.to_bytes()).create_execution_context()
    for _ in range(3):   # fresh data each run: the count follows the data, the arena does not change
        feeds = {"boxes": random_boxes(1, 40, 0), "scores": rng.random((1, 2, 40)).astype(np.float32)}
        np.testing.assert_array_equal(context.execute(feeds)["y0"], ort_run(model, feeds)["y0"])


def postprocess_model():
    """torchvision-style post-processing: NMS → box indices → Gather boxes, scores, classes (one batch)."""
    nodes = [
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max", "iou", "score"], ["selected"]),
        helper.make_node("Gather", ["selected", "col2"], ["box_index"], axis=1),     # (K,)
        helper.make_node("Gather", ["selected", "col1"], ["class_index"], axis=1),
        helper.make_node("Squeeze", ["boxes", "zero"], ["boxes2d"]),                # (N, 4)
        helper.make_node("Gather", ["boxes2d", "box_index"], ["picked"], axis=0),   # (K, 4)
        helper.make_node("Mul", ["picked", "scale"], ["scaled_boxes"]),
        helper.make_node("GatherND", ["scores", "selected"], ["score_of"]),         # scores[b, c, n]: (K,)
        helper.make_node("Unsqueeze", ["score_of", "one"], ["picked_scores"]),      # (K, 1)
        helper.make_node("Cast", ["class_index"], ["labels"], to=T.INT32),
        helper.make_node("Concat", ["scaled_boxes", "picked_scores"], ["detections"], axis=1),
    ]
    consts = {"max": np.array([8], np.int64), "iou": np.array([0.45], np.float32),
              "score": np.array([0.25], np.float32), "col2": np.array(2, np.int64), "col1": np.array(1, np.int64),
              "zero": np.array([0], np.int64), "one": np.array([1], np.int64),
              "scale": np.array([2.0, 2.0, 3.0, 3.0], np.float32)}
    graph = helper.make_graph(
        nodes, "postprocess",
        [helper.make_tensor_value_info("boxes", T.FLOAT, [1, 50, 4]), helper.make_tensor_value_info("scores", T.FLOAT,
                                                                                                     [1, 4, 50])],
        [helper.make_tensor_value_info(n, t, None) for n, t in (("detections", T.FLOAT), ("labels", T.INT32))],
        [numpy_helper.from_array(a, n) for n, a in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_nms_postprocessing_chain_returns_real_rows():
    model = postprocess_model()
    for _ in range(2):
        feeds = {"boxes": random_boxes(1, 50, 0), "scores": rng.random((1, 4, 50)).astype(np.float32)}
        ours, ref = edgert_run(model, feeds), ort_run(model, feeds)
        assert ours["detections"].shape == ref["detections"].shape and ours["labels"].shape == ref["labels"].shape
        np.testing.assert_array_equal(ours["labels"], ref["labels"])
        np.testing.assert_allclose(ours["detections"], ref["detections"], rtol=1e-6)


def nms_then(node, opset=13):
    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max"], ["selected"]), node]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("boxes", T.FLOAT, [1, 6, 4]),
                     helper.make_tensor_value_info("scores", T.FLOAT, [1, 1, 6])],
        [helper.make_tensor_value_info(node.output[0], T.INT64, None)],
        [numpy_helper.from_array(np.array([3], np.int64), "max")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_reducing_over_the_data_dependent_rows_reads_their_count_and_matches_ort():
    model = nms_then(helper.make_node("ReduceSum", ["selected"], ["total"], keepdims=0))
    plan = edgert.build(model)
    reduce = next(layer for layer in plan.layers if layer["kind"] == LayerKind.REDUCE.value)
    assert len(reduce["inputs"]) == 2 and reduce["attrs"]["rows_axis"] == 0
    context = edgert.load(plan.to_bytes()).create_execution_context()
    for _ in range(4):
        feeds = {"boxes": random_boxes(1, 6, 0), "scores": rng.random((1, 1, 6)).astype(np.float32)}
        np.testing.assert_array_equal(context.execute(feeds)["total"], ort_run(model, feeds)["total"])


def test_a_cumulative_sum_over_the_data_dependent_rows_is_a_build_error():
    model = nms_then(helper.make_node("CumSum", ["selected", "axis0"], ["total"]))
    model.graph.initializer.append(numpy_helper.from_array(np.array(0, np.int64), "axis0"))
    with pytest.raises(UnsupportedError, match="Cumulative.*data-dependent.*NonMaxSuppression"):
        edgert.build(model)


def test_nms_is_gpu_only_with_a_reason_and_has_a_cuda_kernel():
    from edgert.kernels.cuda.library import supported_kinds
    from edgert.partitioner.capabilities import CapabilityTable
    assert LayerKind.NMS in supported_kinds() and LayerKind.NON_ZERO in supported_kinds()   # tests/test_cuda_detect.py
    for version in (1, 2):
        assert "NMS" in CapabilityTable.for_version(version).unsupported[LayerKind.NMS]


# -- RoiAlign --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset,transform", [(10, None), (16, "half_pixel"), (16, "output_half_pixel")])
@pytest.mark.parametrize("ratio", [0, 2])
def test_roi_align_avg_matches_ort(opset, transform, ratio):
    x = rng.standard_normal((2, 3, 12, 10)).astype(np.float32)
    corner = rng.uniform(-2, 14, (6, 2))
    rois = np.concatenate([corner, corner + rng.uniform(0.5, 12, (6, 2))], axis=1).astype(np.float32)
    attrs = {"output_height": 3, "output_width": 4, "sampling_ratio": ratio, "spatial_scale": 0.8}
    if transform:
        attrs["coordinate_transformation_mode"] = transform
    model, feeds = op_model("RoiAlign", [("x", x), ("rois", rois), ("batch", rng.integers(0, 2, 6).astype(np.int64))],
                            attrs, opset=opset)
    assert_matches_ort(model, feeds, tolerance=1e-5)


def test_roi_align_max_matches_the_reference():
    from onnx.reference import ReferenceEvaluator
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    rois = np.array([[0.5, 1.0, 7.0, 8.0], [2.0, 2.0, 4.5, 6.0]], np.float32)
    model, feeds = op_model("RoiAlign", [("x", x), ("rois", rois), ("batch", np.zeros(2, np.int64))],
                            {"mode": "max", "output_height": 2, "output_width": 3, "sampling_ratio": 2}, opset=16)
    ref = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(edgert_run(model, feeds)["y0"], ref, rtol=1e-5, atol=1e-6)


# -- GridSample ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_opset16_matches_ort(mode, padding, align):
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, (2, 5, 6, 2)).astype(np.float32)   # some points outside the image
    model, feeds = op_model("GridSample", [("x", x), ("grid", grid)],
                            {"mode": mode, "padding_mode": padding, "align_corners": align}, opset=16)
    if (mode, padding) != ("bicubic", "border"):
        assert_matches_ort(model, feeds, tolerance=1e-5)
        return
    # onnxruntime clamps each bicubic tap, not the coordinate (PyTorch's way): up to 0.3 apart from ONNX's
    # reference, which clamps only coordinates beyond the border. edgert follows the ONNX spec's reference.
    from onnx.reference import ReferenceEvaluator
    reference_model, _ = op_model("GridSample", [("x", x), ("grid", grid)],
                                  {"mode": "cubic", "padding_mode": padding, "align_corners": align}, opset=20)
    ref = ReferenceEvaluator(reference_model).run(None, feeds)[0]
    np.testing.assert_allclose(edgert_run(model, feeds)["y0"], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_grid_sample_opset20_matches_the_reference(mode):
    from onnx.reference import ReferenceEvaluator
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    grid = rng.uniform(-1.2, 1.2, (1, 3, 4, 2)).astype(np.float32)
    model, feeds = op_model("GridSample", [("x", x), ("grid", grid)], {"mode": mode, "padding_mode": "reflection"},
                            opset=20)
    ref = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(edgert_run(model, feeds)["y0"], ref, rtol=1e-5, atol=1e-5)


def test_grid_sample_is_its_own_layer_kind():
    x, grid = rng.standard_normal((1, 1, 4, 4)).astype(np.float32), rng.uniform(-1, 1, (1, 2, 2, 2)).astype(np.float32)
    model, _ = op_model("GridSample", [("x", x), ("grid", grid)], {}, opset=16)
    assert [layer["kind"] for layer in edgert.build(model).layers] == [LayerKind.GRID_SAMPLE.value]


def test_a_plan_whose_rows_name_a_wrong_tensor_is_a_plan_error():
    from edgert.errors import PlanError
    from edgert.plan import Plan
    model, _ = op_model("NonMaxSuppression", [("boxes", random_boxes(1, 5, 0)), ("scores", rng.random((1, 1, 5),
                                               np.float32)), ("max", np.array([2], np.int64))], {}, opset=11,
                        consts=("max",))
    document = edgert.build(model).document
    binding = document["bindings"]["outputs"][0]
    binding["rows"]["tensor"] = binding["tensor"]    # the (bound, 3) output itself, not an int64 scalar
    with pytest.raises(PlanError, match="rows"):
        edgert.load(Plan(document).to_bytes())


def nonzero_then(op_nodes, output, opset=15):
    """x (3, 10) > 0 → NonZero → ``op_nodes`` (reading "nz", writing ``output``)."""
    nodes = [helper.make_node("Greater", ["x", "zero_f"], ["mask"]), helper.make_node("NonZero", ["mask"], ["nz"])]
    consts = {"zero_f": np.array(0.0, np.float32), "minus_one": np.array([-1], np.int64),
              "one": np.array([1], np.int64), "two": np.array([2], np.int64)}
    graph = helper.make_graph(nodes + op_nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, [3, 10])],
                              [helper.make_tensor_value_info(output, T.INT64, None)],
                              [numpy_helper.from_array(a, n) for n, a in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op_nodes", [
    [helper.make_node("Shape", ["nz"], ["y"])],
    [helper.make_node("Shape", ["nz"], ["y"], start=1)],
    [helper.make_node("Shape", ["nz"], ["y"], end=1)],    # the static dim alone: folds
    [helper.make_node("Size", ["nz"], ["y"])],
    [helper.make_node("Transpose", ["nz"], ["t"], perm=[1, 0]), helper.make_node("Shape", ["t"], ["s"]),
     helper.make_node("Mul", ["s", "minus_one"], ["y"])],   # arithmetic on the count runs at run time too
])
def test_shape_and_size_of_data_dependent_rows_are_the_real_ones(op_nodes):
    """The size along a NonZero result's rows is its count, not the static bound the arena holds."""
    model = nonzero_then(op_nodes, "y")
    context = edgert.load(edgert.build(model).to_bytes()).create_execution_context()
    for _ in range(3):
        feeds = {"x": rng.standard_normal((3, 10)).astype(np.float32)}
        np.testing.assert_array_equal(context.execute(feeds)["y"], ort_run(model, feeds)["y"])


def test_a_build_time_input_computed_from_a_data_dependent_count_is_a_clear_error():
    model = nonzero_then([helper.make_node("Shape", ["nz"], ["s"]),
                          helper.make_node("Slice", ["s", "one", "two"], ["n"]),
                          helper.make_node("Concat", ["n", "one"], ["target"], axis=0),
                          helper.make_node("Reshape", ["nz", "target"], ["y"])], "y")   # (2, n) -> (n, 1): no
    with pytest.raises(UnsupportedError, match="depends on the number of rows NonZero layer"):
        edgert.build(model)


def score_filter_nms_model(classes=1, limit=20):
    """A detector's post-processing with a score filter first: NonZero keeps the candidates scoring above 0.5
    (data-dependent rows), NMS runs over those only, and its box indices pick the kept candidates' boxes."""
    nodes = [
        helper.make_node("ReduceMax", ["scores"], ["best"], axes=[0], keepdims=0),      # (N,) best class score
        helper.make_node("Greater", ["best", "threshold"], ["keep"]),
        helper.make_node("NonZero", ["keep"], ["nz"]),                                  # (1, n)
        helper.make_node("Transpose", ["nz"], ["where"], perm=[1, 0]),                  # (n, 1)
        helper.make_node("GatherND", ["boxes", "where"], ["cand_boxes"]),               # (n, 4)
        helper.make_node("Transpose", ["scores"], ["scores_t"], perm=[1, 0]),           # (N, C)
        helper.make_node("GatherND", ["scores_t", "where"], ["cand_scores"]),           # (n, C)
        helper.make_node("Unsqueeze", ["cand_boxes", "zero"], ["nms_boxes"]),           # (1, n, 4)
        helper.make_node("Transpose", ["cand_scores"], ["cand_scores_t"], perm=[1, 0]),
        helper.make_node("Unsqueeze", ["cand_scores_t", "zero"], ["nms_scores"]),       # (1, C, n)
        helper.make_node("NonMaxSuppression", ["nms_boxes", "nms_scores", "max", "iou"], ["selected"]),
        helper.make_node("Gather", ["selected", "two"], ["box_index"], axis=1),         # (K,)
        helper.make_node("Gather", ["cand_boxes", "box_index"], ["picked"], axis=0),    # (K, 4)
    ]
    consts = {"zero": np.array([0], np.int64), "two": np.array(2, np.int64), "threshold": np.array(0.5, np.float32),
              "max": np.array([limit], np.int64), "iou": np.array([0.3], np.float32)}
    graph = helper.make_graph(
        nodes, "score_filter_nms",
        [helper.make_tensor_value_info("boxes", T.FLOAT, [60, 4]),
         helper.make_tensor_value_info("scores", T.FLOAT, [classes, 60])],
        [helper.make_tensor_value_info(n, T.INT64 if n == "selected" else T.FLOAT, None)
         for n in ("selected", "picked")],
        [numpy_helper.from_array(a, n) for n, a in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("classes", [1, 3])
def test_nms_over_the_rows_a_score_filter_kept(classes):
    """NMS reads data-dependent boxes (their count as its third input); its indices pick rows of them."""
    model = score_filter_nms_model(classes)
    plan = edgert.build(model)
    nms_layer = next(layer for layer in plan.layers if layer["kind"] == LayerKind.NMS.value)
    assert len(nms_layer["inputs"]) == 3
    context = edgert.load(plan.to_bytes()).create_execution_context()
    for _ in range(4):
        feeds = {"boxes": random_boxes(1, 60, 0)[0], "scores": rng.random((classes, 60)).astype(np.float32)}
        ours, ref = context.execute(feeds), ort_run(model, feeds)
        np.testing.assert_array_equal(ours["selected"], ref["selected"])
        np.testing.assert_array_equal(ours["picked"], ref["picked"])


def test_nms_over_data_dependent_scores_only_along_their_box_axis_is_an_error():
    """Boxes whose rows are data-dependent along another axis than NMS's box axis: a clear build error."""
    nodes = [helper.make_node("Greater", ["s", "threshold"], ["keep"]), helper.make_node("NonZero", ["keep"], ["nz"]),
             helper.make_node("Cast", ["nz"], ["nzf"], to=T.FLOAT),                     # (1, n)
             helper.make_node("Unsqueeze", ["nzf", "zero_one"], ["scores"]),           # (1, 1, 1, n)? no: (1, 1, n)
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "max"], ["selected"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("s", T.FLOAT, [8]), helper.make_tensor_value_info("boxes", T.FLOAT,
                                                                                                     [1, 8, 4])],
        [helper.make_tensor_value_info("selected", T.INT64, None)],
        [numpy_helper.from_array(np.array(0.5, np.float32), "threshold"),
         numpy_helper.from_array(np.array([0], np.int64), "zero_one"),
         numpy_helper.from_array(np.array([3], np.int64), "max")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedError, match="same count on both|data-dependent"):
        edgert.build(model)


@pytest.mark.parametrize("first", [3, 100])
def test_the_first_rows_of_a_data_dependent_result_and_their_count(first):
    """A prefix Slice of NMS's rows (``selected[:first]``, as Ultralytics keeps max_det boxes): the valid rows
    are the first min(count, first); Shape of them says so."""
    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max", "iou"], ["selected"]),
             helper.make_node("Slice", ["selected", "zero", "first"], ["kept"]),
             helper.make_node("Shape", ["kept"], ["kept_shape"]),
             helper.make_node("Size", ["kept"], ["kept_size"])]
    consts = {"max": np.array([10], np.int64), "iou": np.array([0.4], np.float32), "zero": np.array([0], np.int64),
              "first": np.array([first], np.int64)}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("boxes", T.FLOAT, [1, 40, 4]),
                     helper.make_tensor_value_info("scores", T.FLOAT, [1, 2, 40])],
        [helper.make_tensor_value_info(n, T.INT64, None) for n in ("kept", "kept_shape", "kept_size")],
        [numpy_helper.from_array(a, n) for n, a in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    context = edgert.load(edgert.build(model).to_bytes()).create_execution_context()
    for _ in range(3):
        feeds = {"boxes": random_boxes(1, 40, 0), "scores": rng.random((1, 2, 40)).astype(np.float32)}
        ours, ref = context.execute(feeds), ort_run(model, feeds)
        for name in ref:
            np.testing.assert_array_equal(ours[name], ref[name], err_msg=name)
