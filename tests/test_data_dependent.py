"""Shapes computed from a data-dependent count (edgert/onnx/count_inputs.py), against onnxruntime on fresh random
data: an Expand to [n, 4] built from Shape of NonZero rows, detections padded to a fixed [1, K, 6] by pads
(K - m) * 6 after a Reshape that flattens the rows, a Reshape splitting merged rows again; the build errors where
the real result would not be the bounded one's; the run-time Padding's kernel and its allocations."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T, helper, numpy_helper

import edgert
from edgert.errors import ShapeError, UnsupportedError
from edgert.ir.kinds import LayerKind
from helpers import ort_run

rng = np.random.default_rng()


def make_model(nodes, inputs, outputs, consts, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, dtype, shape) for n, dtype, shape in inputs],
                              [helper.make_tensor_value_info(n, dtype, None) for n, dtype in outputs],
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def assert_runs_match_ort(model, draw, runs=5):
    """One plan, several fresh inputs (counts from none to all): every output equal to onnxruntime's, shape too."""
    plan = edgert.build(model)
    context = edgert.load(plan.to_bytes()).create_execution_context()   # through the plan's semantic validation
    for _ in range(runs):
        feeds = draw()
        ours, ref = context.execute(feeds), ort_run(model, feeds)
        for name, want in ref.items():
            assert ours[name].shape == want.shape, name
            np.testing.assert_array_equal(ours[name], want, err_msg=name)
    return plan


def fraction_positive(name, shape):
    """Feeds of normal values shifted so that from none to all of them are positive."""
    return lambda: {name: (rng.standard_normal(shape) + rng.choice([-9.0, -1.0, 0.0, 1.0, 9.0])).astype(np.float32)}


# -- (1) Expand to a target built from the count -----------------------------------------------------------
def expand_to_count_model():
    """Ultralytics' pattern: the kept scores as a column, expanded to [n, 4] with n = Shape(kept)[0] (through the
    exporter's Where(target == -1, 1, target))."""
    nodes = [
        helper.make_node("Greater", ["scores", "zero_f"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["nz"]),                                     # (1, n)
        helper.make_node("Transpose", ["nz"], ["where"], perm=[1, 0]),                     # (n, 1)
        helper.make_node("GatherND", ["scores", "where"], ["kept"]),                       # (n,)
        helper.make_node("Reshape", ["kept", "column"], ["kept_col"]),                     # (n, 1)
        helper.make_node("Shape", ["kept"], ["kept_shape"]),
        helper.make_node("Gather", ["kept_shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "four"], ["target"], axis=0),                    # [n, 4]
        helper.make_node("Equal", ["target", "minus_one"], ["is_free"]),
        helper.make_node("Where", ["is_free", "ones", "target"], ["target_1"]),
        helper.make_node("Expand", ["kept_col", "target_1"], ["expanded"]),                # (n, 4)
        helper.make_node("Mul", ["expanded", "scale"], ["y"]),
    ]
    consts = {"zero_f": np.array(0.0, np.float32), "column": np.array([-1, 1], np.int64), "zero": np.array(0, np.int64),
              "axes0": np.array([0], np.int64), "four": np.array([4], np.int64), "minus_one": np.array(-1, np.int64),
              "ones": np.ones(2, np.int64), "scale": np.arange(1, 5, dtype=np.float32)}
    return make_model(nodes, [("scores", T.FLOAT, [50])], [("y", T.FLOAT), ("target_1", T.INT64)], consts)


def test_expand_to_a_target_computed_from_the_count_matches_ort():
    plan = assert_runs_match_ort(expand_to_count_model(), fraction_positive("scores", (50,)))
    expand = next(layer for layer in plan.layers if layer["kind"] == LayerKind.EXPAND.value)
    assert expand["attrs"]["shape"] == [50, 4]   # sized at the bound; the count travels with it


def test_expand_that_creates_the_counted_axis_is_a_clear_error():
    """A constant row expanded to [n, 4]: the count would size rows that no bounded input carries."""
    model = expand_to_count_model()
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.ones((1, 1), np.float32), "row"))
    next(node for node in graph.node if node.op_type == "Expand").input[0] = "row"
    with pytest.raises(UnsupportedError, match="depends on the number of rows NonZero layer"):
        edgert.build(model)


# -- (5) + (1): flatten the rows, pad them to a fixed size ---------------------------------------------------
def padded_detections_model(keep: int, opset: int = 17):
    """NMS → the first ``keep`` selections → [m, 6] rows (box, score, class) → Reshape [-1] (flattens the counted
    axis with the one after it) → Pad by [0, (keep - m) * 6] → Reshape [1, keep, 6], as Ultralytics' nms=True."""
    pads_axes = ["pads", "", "axis0"] if opset >= 18 else ["pads"]
    nodes = [
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max", "iou"], ["selected"]),
        helper.make_node("Slice", ["selected", "zero1", "keep1"], ["first"]),              # (m, 3)
        helper.make_node("Gather", ["first", "two"], ["box_index"], axis=1),               # (m,)
        helper.make_node("Gather", ["first", "one"], ["class_index"], axis=1),
        helper.make_node("Gather", ["boxes2d", "box_index"], ["picked"], axis=0),          # (m, 4)
        helper.make_node("Squeeze", ["boxes", "zero1"], ["boxes2d"]),
        helper.make_node("Squeeze", ["scores", "zero1"], ["scores2d"]),                    # (C, N)
        helper.make_node("Mul", ["class_index", "n_boxes"], ["base"]),
        helper.make_node("Add", ["base", "box_index"], ["flat_index"]),
        helper.make_node("Reshape", ["scores2d", "minus_one1"], ["scores_flat"]),
        helper.make_node("Gather", ["scores_flat", "flat_index"], ["score"], axis=0),      # (m,)
        helper.make_node("Unsqueeze", ["score", "one1"], ["score_col"]),
        helper.make_node("Cast", ["class_index"], ["class_f"], to=T.FLOAT),
        helper.make_node("Unsqueeze", ["class_f", "one1"], ["class_col"]),
        helper.make_node("Concat", ["picked", "score_col", "class_col"], ["rows"], axis=-1),   # (m, 6)
        helper.make_node("Reshape", ["rows", "minus_one1"], ["flat"]),                     # (m * 6,)
        helper.make_node("Shape", ["rows"], ["rows_shape"]),
        helper.make_node("Gather", ["rows_shape", "zero"], ["m"], axis=0),
        helper.make_node("Sub", ["keep", "m"], ["missing"]),
        helper.make_node("Mul", ["missing", "six"], ["pad_end"]),
        helper.make_node("Unsqueeze", ["pad_end", "zero1"], ["pad_end1"]),
        helper.make_node("Concat", ["zero1", "pad_end1"], ["pads"], axis=0),
        helper.make_node("Pad", ["flat"] + pads_axes, ["padded"], mode="constant"),
        helper.make_node("Reshape", ["padded", "fixed"], ["detections"]),                  # (1, keep, 6)
    ]
    consts = {"max": np.array([20], np.int64), "iou": np.array([0.4], np.float32), "zero": np.array(0, np.int64),
              "zero1": np.array([0], np.int64), "one1": np.array([1], np.int64), "one": np.array(1, np.int64),
              "two": np.array(2, np.int64), "keep1": np.array([keep], np.int64), "keep": np.array(keep, np.int64),
              "six": np.array(6, np.int64), "minus_one1": np.array([-1], np.int64), "n_boxes": np.array(40, np.int64),
              "fixed": np.array([1, keep, 6], np.int64), "axis0": np.array([0], np.int64)}
    return make_model(nodes, [("boxes", T.FLOAT, [1, 40, 4]), ("scores", T.FLOAT, [1, 3, 40])],
                      [("detections", T.FLOAT)], consts, opset)


def draw_detections():
    first = rng.uniform(0, 10, (1, 40, 2))
    boxes = np.concatenate([first, first + rng.uniform(0.5, 5, (1, 40, 2))], axis=2).astype(np.float32)
    return {"boxes": boxes, "scores": rng.random((1, 3, 40)).astype(np.float32)}


@pytest.mark.parametrize("keep,opset", [(5, 17), (30, 17), (100, 18)])
def test_detections_padded_to_a_fixed_size_match_ort(keep, opset):
    """keep 5: always more selections than kept; 30: fewer or more; 100: always fewer (the pad fills most)."""
    plan = assert_runs_match_ort(padded_detections_model(keep, opset), draw_detections)
    padding = next(layer for layer in plan.layers if layer["kind"] == LayerKind.PADDING.value)
    assert len(padding["inputs"]) == 2   # its pads come at run time
    assert plan.document["bindings"]["outputs"][0]["shape"] == [1, keep, 6]
    assert "rows" not in plan.document["bindings"]["outputs"][0]   # a static output


def test_run_time_padding_allocates_nothing_and_rejects_pads_that_do_not_fit():
    import tracemalloc
    plan = edgert.build(padded_detections_model(100))
    context = edgert.load(plan.to_bytes()).create_execution_context()
    padding = next(layer["name"] for layer in plan.layers if layer["kind"] == LayerKind.PADDING.value)
    peaks = []

    def before(name, outputs):
        if name == padding:
            tracemalloc.reset_peak()
            peaks.append(tracemalloc.get_traced_memory()[0])

    def after(name, outputs):
        if name == padding:
            peaks[-1] = tracemalloc.get_traced_memory()[1] - peaks[-1]
    tracemalloc.start()
    try:
        for _ in range(3):
            context.execute_each(draw_detections(), after, before)
    finally:
        tracemalloc.stop()
    assert len(peaks) == 3 and max(peaks) < 1024, peaks   # views into the arena: no copy of the 2400-byte output
    from edgert.kernels.cpu.padding import pad_run_time
    out = np.empty(12, np.float32)
    pad_run_time(np.arange(10, dtype=np.float32), np.array([2, 7]), out, -1.0)
    np.testing.assert_array_equal(out, [-1, -1, 0, 1, 2, -1, -1, -1, -1, -1, -1, -1])
    with pytest.raises(ShapeError, match="run-time pads"):
        pad_run_time(np.arange(10, dtype=np.float32), np.array([0, 1]), out, 0.0)   # 11 real elements of 10


def test_pads_that_make_the_output_size_data_dependent_are_a_clear_error():
    """Pad by n (not by keep - n): the real output size would change with the count."""
    model = padded_detections_model(10)
    sub = next(node for node in model.graph.node if node.op_type == "Sub")
    sub.input[:] = ["m", "zero"]   # missing = m: the output holds 12 m values
    with pytest.raises(UnsupportedError, match="depends on the number of rows NonMaxSuppression layer"):
        edgert.build(model)


# -- (5): a Reshape that flattens the counted axis, and one that splits it again ------------------------------
def test_rows_flattened_and_split_again_match_ort():
    nodes = [
        helper.make_node("Greater", ["x", "zero_f"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["nz"]),                          # (2, n)
        helper.make_node("Transpose", ["nz"], ["coords"], perm=[1, 0]),         # (n, 2)
        helper.make_node("Reshape", ["coords", "minus_one1"], ["flat"]),        # (2 n,): a bounded output, count 2 n
        helper.make_node("Shape", ["flat"], ["flat_shape"]),
        helper.make_node("Size", ["flat"], ["flat_size"]),
        helper.make_node("Reshape", ["flat", "pairs"], ["pairs_again"]),        # (n, 2)
        helper.make_node("Reshape", ["flat", "one_row"], ["one_row_y"]),        # (1, 2 n)
    ]
    consts = {"zero_f": np.array(0.0, np.float32), "minus_one1": np.array([-1], np.int64),
              "pairs": np.array([-1, 2], np.int64), "one_row": np.array([1, -1], np.int64)}
    model = make_model(nodes, [("x", T.FLOAT, [6, 7])],
                       [(n, T.INT64) for n in ("flat", "flat_shape", "flat_size", "pairs_again", "one_row_y")], consts)
    assert_runs_match_ort(model, fraction_positive("x", (6, 7)))


def test_a_reshape_that_mixes_the_counted_rows_is_still_an_error():
    """(n, 2) → (2, n) as a Reshape (not a transpose) interleaves rows of the bound: not row-wise."""
    nodes = [helper.make_node("Greater", ["x", "zero_f"], ["mask"]), helper.make_node("NonZero", ["mask"], ["nz"]),
             helper.make_node("Transpose", ["nz"], ["coords"], perm=[1, 0]),
             helper.make_node("Reshape", ["coords", "two_rows"], ["y"])]
    model = make_model(nodes, [("x", T.FLOAT, [6, 7])], [("y", T.INT64)],
                       {"zero_f": np.array(0.0, np.float32), "two_rows": np.array([2, -1], np.int64)})
    with pytest.raises(UnsupportedError, match="data-dependent|depends on the number of rows"):
        edgert.build(model)


# -- TopK with k = min(K, n) over the n rows a NonZero kept (torchvision's detection heads) --------------------
def topk_of_kept_model(most: int, largest: int):
    nodes = [
        helper.make_node("Greater", ["scores", "zero_f"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["nz"]),
        helper.make_node("Reshape", ["nz", "minus_one1"], ["where"]),                    # (n,)
        helper.make_node("Gather", ["scores", "where"], ["kept"], axis=0),
        helper.make_node("Shape", ["kept"], ["kept_shape"]),
        helper.make_node("Min", ["kept_shape", "most"], ["k"]),                          # [min(K, n)]
        helper.make_node("TopK", ["kept", "k"], ["best", "best_index"], largest=largest),
        helper.make_node("Gather", ["where", "best_index"], ["best_where"], axis=0),     # indices into scores
    ]
    consts = {"zero_f": np.array(0.0, np.float32), "minus_one1": np.array([-1], np.int64),
              "most": np.array([most], np.int64)}
    return make_model(nodes, [("scores", T.FLOAT, [60])],
                      [("best", T.FLOAT), ("best_index", T.INT64), ("best_where", T.INT64)], consts, opset=13)


@pytest.mark.parametrize("most,largest", [(5, 1), (40, 1), (100, 0)])
def test_topk_with_k_from_the_count_of_its_rows_matches_ort(most, largest):
    """Only the valid rows compete (the bound's rows past the count hold other values), and k = min(K, n)."""
    plan = assert_runs_match_ort(topk_of_kept_model(most, largest), fraction_positive("scores", (60,)), runs=6)
    topk = next(layer for layer in plan.layers if layer["kind"] == LayerKind.TOPK.value)
    assert len(topk["inputs"]) == 2 and topk["attrs"]["k"] == min(most, 60)


def test_topk_whose_k_outgrows_its_rows_count_is_a_clear_error():
    """k = n + 1 can never be the valid rows of n: a build error naming the NonZero."""
    model = topk_of_kept_model(5, 1)
    minimum = next(node for node in model.graph.node if node.op_type == "Min")
    minimum.op_type, minimum.input[1] = "Add", "one"   # k = n + 1
    model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    with pytest.raises(UnsupportedError, match="depends on the number of rows NonZero layer"):
        edgert.build(model)


# -- (6): Scatter of data-dependent indices and updates --------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "add"])
def test_scatter_nd_of_the_rows_a_nonzero_found_matches_ort(reduction):
    """out = base; out[x > 0] = 10 x there (ScatterND at NonZero's coordinates): only the valid rows apply."""
    nodes = [
        helper.make_node("Greater", ["x", "zero_f"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["nz"]),                          # (2, n)
        helper.make_node("Transpose", ["nz"], ["coords"], perm=[1, 0]),         # (n, 2)
        helper.make_node("GatherND", ["x", "coords"], ["values"]),              # (n,)
        helper.make_node("Mul", ["values", "ten"], ["updates"]),
        helper.make_node("ScatterND", ["base", "coords", "updates"], ["y"], reduction=reduction),
    ]
    model = make_model(nodes, [("x", T.FLOAT, [6, 7]), ("base", T.FLOAT, [6, 7])], [("y", T.FLOAT)],
                       {"zero_f": np.array(0.0, np.float32), "ten": np.array(10.0, np.float32)}, opset=16)
    draw_x = fraction_positive("x", (6, 7))
    plan = assert_runs_match_ort(model, lambda: dict(draw_x(), base=rng.standard_normal((6, 7)).astype(np.float32)))
    scatter = next(layer for layer in plan.layers if layer["kind"] == LayerKind.SCATTER.value)
    assert len(scatter["inputs"]) == 4 and scatter["attrs"]["rows_axis"] == 0


def test_scatter_elements_of_the_rows_a_nonzero_found_matches_ort():
    nodes = [
        helper.make_node("Greater", ["scores", "zero_f"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["nz"]),                          # (1, n)
        helper.make_node("Reshape", ["nz", "minus_one1"], ["where"]),           # (n,)
        helper.make_node("Gather", ["scores", "where"], ["kept"], axis=0),
        helper.make_node("Neg", ["kept"], ["negated"]),
        helper.make_node("ScatterElements", ["scores", "where", "negated"], ["y"], axis=0),
    ]
    model = make_model(nodes, [("scores", T.FLOAT, [50])], [("y", T.FLOAT)],
                       {"zero_f": np.array(0.0, np.float32), "minus_one1": np.array([-1], np.int64)}, opset=16)
    assert_runs_match_ort(model, fraction_positive("scores", (50,)))


def test_scatter_of_bounded_updates_at_static_indices_is_still_an_error():
    """Updates with data-dependent rows but indices of a static size: the bound's rows would all be written."""
    nodes = [helper.make_node("Greater", ["x", "zero_f"], ["mask"]), helper.make_node("NonZero", ["mask"], ["nz"]),
             helper.make_node("Reshape", ["nz", "minus_one1"], ["where"]),
             helper.make_node("Cast", ["where"], ["updates"], to=T.FLOAT),
             helper.make_node("ScatterElements", ["x", "static_index", "updates"], ["y"], axis=0)]
    model = make_model(nodes, [("x", T.FLOAT, [8])], [("y", T.FLOAT)],
                       {"zero_f": np.array(0.0, np.float32), "minus_one1": np.array([-1], np.int64),
                        "static_index": np.arange(8, dtype=np.int64)}, opset=16)
    with pytest.raises(UnsupportedError, match="data-dependent"):
        edgert.build(model)


# -- the plans stay safe to load: fuzzed fields of a plan with run-time pads --------------------------------
@pytest.mark.parametrize("model", [lambda: padded_detections_model(30, opset=18), lambda: topk_of_kept_model(40, 1)],
                         ids=["run_time_pads", "topk_with_count"])
def test_fuzz_decoded_fields_of_plans_with_counted_shapes(model):
    """Every mutated plan loads and runs with outputs within their bindings, or fails with one EdgeRTError line."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from plan_models import decoded
    from test_plan_fuzz import _written, mutate_fields
    from test_plan_fuzz_kinds import EXAMPLES, _outcome
    document = decoded(edgert.build(model()).to_bytes())
    assert _outcome(_written(document)) == "ran"

    @settings(max_examples=max(EXAMPLES // 4, 1), deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data):
        _outcome(_written(mutate_fields(document, data)))
    fuzz()
