"""CUDA kernels of the detection / data-dependent kinds (kernels/cuda/lower_detect.py): TopK with k (plain and
counted), NonZero, NonMaxSuppression (plain and over counted rows), Scatter (ND / elements, reductions, counted)
and the run-time Padding of Ultralytics' nms=True graphs.

Each case builds an onnx.helper graph, runs its plan's CUDA kernels with every device buffer poisoned first (0xFF
bytes: NaN for floats, so an element no kernel wrote fails) and requires the result to equal the CPU reference's
exactly (the CPU kernels are themselves tested against onnxruntime in test_ops_detection.py and
test_data_dependent.py), shapes included: bounded outputs come back trimmed to the count the kernels wrote. Every
case runs on the CPU emulator of the CUDA execution model (host C++ compiler needed) and, marked ``gpu``, on a real
GPU; the kernels also compile with NVRTC for sm_87 and sm_90 when it is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto as T, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))

import edgert  # noqa: E402
from edgert.ir.kinds import LayerKind  # noqa: E402
from edgert.kernels.cuda import compile as cc  # noqa: E402
from edgert.kernels.cuda import emulator  # noqa: E402
from edgert.kernels.cuda.library import CPU_ONLY_KINDS, supported_kinds  # noqa: E402
from edgert.kernels.cuda.plan_kernels import compile_for_plan  # noqa: E402
from edgert.runtime.cuda import CudaEngine  # noqa: E402
from helpers import ort_run  # noqa: E402

rng = np.random.default_rng()
BACKENDS = [pytest.param("emulator", marks=pytest.mark.skipif(not emulator.available(), reason="no host C++ compiler")),
            pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERT_CUDA_CACHE", str(tmp_path / "cache"))


def make_model(nodes, inputs, outputs, consts=None, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, dtype, shape) for n, dtype, shape in inputs],
                              [helper.make_tensor_value_info(n, dtype, None) for n, dtype in outputs],
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in (consts or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def cuda_context(model, feeds, backend: str, **options):
    """(CUDA execution context, CPU execution context) of one plan built for ``backend``'s arch."""
    plan = edgert.build(model, cpu_only_aliases=False, shapes={k: v.shape for k, v in feeds.items()}, **options)
    if backend == "gpu":
        from edgert.runtime.cuda import CupyDriver
        driver = CupyDriver()
        arch = driver.arch()
    else:
        driver, arch = emulator.EmulatedDriver(), "sm_90"
    plan.document["kernels"] = {arch: compile_for_plan(plan.document, arch, emulate=backend == "emulator")}
    return (CudaEngine(plan.document, driver=driver).create_execution_context(),
            edgert.load(plan).create_execution_context())


def assert_equal_to_cpu(model, draw, backend: str, runs: int = 3, against_ort: bool = False, **options) -> dict:
    """Fresh inputs ``runs`` times on one plan: every CUDA output equal to the CPU reference's, shape included."""
    feeds = draw()
    context, reference = cuda_context(model, feeds, backend, **options)
    for run in range(runs):
        feeds = feeds if run == 0 else draw()
        context.poison()
        got, want = context.execute(feeds), reference.execute(feeds)
        for name, expected in want.items():
            assert got[name].shape == expected.shape, (name, got[name].shape, expected.shape)
            np.testing.assert_array_equal(got[name], expected, err_msg=name)
        if against_ort:
            for name, expected in ort_run(model, feeds).items():
                np.testing.assert_array_equal(got[name], expected, err_msg=name)
    return got


def test_the_detection_kinds_have_cuda_kernels():
    lowered = {LayerKind.NMS, LayerKind.NON_ZERO, LayerKind.SCATTER}
    assert lowered <= supported_kinds() and not lowered & CPU_ONLY_KINDS


# -- TopK ----------------------------------------------------------------------------------------------------
def topk_model(shape, axis, k, largest, dtype=T.FLOAT, sorted_=1):
    return make_model([helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis, largest=largest,
                                        sorted=sorted_)],
                      [("x", dtype, list(shape))], [("values", dtype), ("indices", T.INT64)],
                      {"k": np.array([k], np.int64)})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,axis,k,largest", [((3, 300), 1, 7, 1), ((300, 5), 0, 300, 0), ((2, 3, 20), 1, 2, 1),
                                                  ((1, 700), -1, 300, 1)])
def test_topk_equals_the_cpu_kernel_with_ties_and_nans(backend, shape, axis, k, largest):
    def draw():   # few distinct values: many ties; a few NaNs (NumPy's order: largest for max, last for min)
        x = rng.integers(-4, 4, shape).astype(np.float32)
        x.flat[rng.integers(0, x.size, 3)] = np.nan
        x.flat[rng.integers(0, x.size, 3)] = -0.0
        return {"x": x}
    assert_equal_to_cpu(topk_model(shape, axis, k, largest), draw, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,np_dtype", [(T.FLOAT16, np.float16), (T.INT64, np.int64), (T.INT32, np.int32)])
def test_topk_of_other_dtypes_matches_ort(backend, dtype, np_dtype):
    shape = (4, 90)
    draw = (lambda: {"x": rng.integers(-50, 50, shape).astype(np_dtype)})
    assert_equal_to_cpu(topk_model(shape, 1, 10, 0, dtype), draw, backend, against_ort=True)


def counted_topk_model(most: int, largest: int):
    """TopK over the scores a NonZero kept, k = min(most, n) from their count (torchvision's detection heads)."""
    nodes = [helper.make_node("Greater", ["scores", "zero_f"], ["mask"]),
             helper.make_node("NonZero", ["mask"], ["nz"]),
             helper.make_node("Reshape", ["nz", "minus_one"], ["where"]),
             helper.make_node("Gather", ["scores", "where"], ["kept"], axis=0),
             helper.make_node("Shape", ["kept"], ["n"]),
             helper.make_node("Min", ["n", "most"], ["k"]),
             helper.make_node("TopK", ["kept", "k"], ["values", "indices"], largest=largest),
             helper.make_node("Gather", ["where", "indices"], ["picked"], axis=0)]
    return make_model(nodes, [("scores", T.FLOAT, [120])], [("values", T.FLOAT), ("picked", T.INT64)],
                      {"zero_f": np.array(0.0, np.float32), "minus_one": np.array([-1], np.int64),
                       "most": np.array([most], np.int64)})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("most,largest", [(10, 1), (100, 0)])
def test_topk_with_k_from_the_count_of_its_rows_matches_ort(backend, most, largest):
    shift = iter([-9.0, 0.0, 9.0, -1.0])
    draw = (lambda: {"scores": (rng.standard_normal(120) + next(shift)).astype(np.float32)})
    model = counted_topk_model(most, largest)
    plan = edgert.build(model)
    topk = next(layer for layer in plan.layers if layer["kind"] == LayerKind.TOPK.value)
    assert len(topk["inputs"]) == 2   # the counted form
    assert_equal_to_cpu(model, draw, backend, runs=4, against_ort=True)


# -- NonZero -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,dtype,fraction", [((3, 7, 50), np.float32, 0.3), ((1000,), np.bool_, 0.5),
                                                  ((600,), np.float32, 0.0), ((4, 300), np.int64, 1.0), ((), np.float32, 1.0)])
def test_nonzero_equals_the_cpu_kernel_and_ort(backend, shape, dtype, fraction):
    onnx_type = {np.float32: T.FLOAT, np.bool_: T.BOOL, np.int64: T.INT64}[dtype]
    model = make_model([helper.make_node("NonZero", ["x"], ["y"])], [("x", onnx_type, list(shape))], [("y", T.INT64)])

    def draw():
        x = (rng.random(shape) < fraction) * rng.choice([-2.0, -0.0, 1.5], shape)
        return {"x": np.asarray(x).astype(dtype)}
    got = assert_equal_to_cpu(model, draw, backend, against_ort=True)
    assert got["y"].shape[0] == max(len(shape), 1)


# -- NonMaxSuppression ---------------------------------------------------------------------------------------
def random_boxes(batch, count, center: int):
    first = rng.uniform(0, 10, (batch, count, 2))
    size = rng.uniform(0.5, 5, (batch, count, 2))
    if center:
        return np.concatenate([first, size], axis=2).astype(np.float32)
    boxes = np.concatenate([first, first + size], axis=2)
    flip = rng.random((batch, count)) < 0.3   # corners in either order
    boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
    return boxes.astype(np.float32)


def nms_model(batch, classes, count, center, limit, iou, score):
    inputs = ["boxes", "scores", "max", "iou"] + (["score"] if score is not None else [])
    consts = {"max": np.array([limit], np.int64), "iou": np.array([iou], np.float32)}
    if score is not None:
        consts["score"] = np.array([score], np.float32)
    return make_model([helper.make_node("NonMaxSuppression", inputs, ["selected"], center_point_box=center)],
                      [("boxes", T.FLOAT, [batch, count, 4]), ("scores", T.FLOAT, [batch, classes, count])],
                      [("selected", T.INT64)], consts)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch,classes,count,center,limit,iou,score", [
    (2, 3, 100, 0, 10, 0.3, 0.2), (1, 1, 200, 1, 1000, 0.5, None), (2, 2, 70, 0, 0, 0.5, None),
    (1, 4, 130, 1, 5, 0.0, 0.9), (3, 1, 64, 0, 64, 0.7, 0.5)])
def test_nms_equals_the_cpu_kernel_and_ort(backend, batch, classes, count, center, limit, iou, score):
    def draw():
        scores = rng.random((batch, classes, count)).astype(np.float32)
        scores[..., rng.integers(0, count, count // 4)] = 0.5    # equal scores: lower box index first
        boxes = random_boxes(batch, count, center)
        boxes[:, rng.integers(0, count, 3)] = boxes[:, :1]        # duplicates: IoU exactly 1
        boxes[:, rng.integers(0, count, 2), 2:] = 0 if center else boxes[:, :1, :2]   # boxes with no area
        return {"boxes": boxes, "scores": scores}
    assert_equal_to_cpu(nms_model(batch, classes, count, center, limit, iou, score), draw, backend,
                        against_ort=limit > 0)


def score_filter_nms_model(classes: int):
    """NMS over the candidates a NonZero kept (its boxes are counted rows: the count is the NMS's input 2)."""
    nodes = [helper.make_node("ReduceMax", ["scores"], ["best"], axes=[0], keepdims=0),
             helper.make_node("Greater", ["best", "threshold"], ["keep"]),
             helper.make_node("NonZero", ["keep"], ["nz"]),
             helper.make_node("Transpose", ["nz"], ["where"], perm=[1, 0]),
             helper.make_node("GatherND", ["boxes", "where"], ["cand_boxes"]),
             helper.make_node("Transpose", ["scores"], ["scores_t"], perm=[1, 0]),
             helper.make_node("GatherND", ["scores_t", "where"], ["cand_scores"]),
             helper.make_node("Unsqueeze", ["cand_boxes", "zero"], ["nms_boxes"]),
             helper.make_node("Transpose", ["cand_scores"], ["cand_scores_t"], perm=[1, 0]),
             helper.make_node("Unsqueeze", ["cand_scores_t", "zero"], ["nms_scores"]),
             helper.make_node("NonMaxSuppression", ["nms_boxes", "nms_scores", "max", "iou"], ["selected"]),
             helper.make_node("Gather", ["selected", "two"], ["box_index"], axis=1),
             helper.make_node("Gather", ["cand_boxes", "box_index"], ["picked"], axis=0)]
    consts = {"zero": np.array([0], np.int64), "two": np.array(2, np.int64), "threshold": np.array(0.5, np.float32),
              "max": np.array([20], np.int64), "iou": np.array([0.3], np.float32)}
    return make_model(nodes, [("boxes", T.FLOAT, [90, 4]), ("scores", T.FLOAT, [classes, 90])],
                      [("selected", T.INT64), ("picked", T.FLOAT)], consts, opset=13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("classes", [1, 3])
def test_nms_over_the_rows_a_score_filter_kept_matches_ort(backend, classes):
    model = score_filter_nms_model(classes)
    shift = iter([0.0, -0.45, 0.4, -1.0])   # some, few, most, none of the boxes kept
    draw = (lambda: {"boxes": random_boxes(1, 90, 0)[0],
                     "scores": (rng.random((classes, 90)) + next(shift)).astype(np.float32)})
    assert_equal_to_cpu(model, draw, backend, runs=4, against_ort=True)


# -- Scatter -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_equals_the_cpu_kernel(backend, reduction):
    model = make_model([helper.make_node("ScatterND", ["data", "indices", "updates"], ["y"], reduction=reduction)],
                       [("data", T.FLOAT, [6, 5, 4]), ("indices", T.INT64, [3, 2, 2]), ("updates", T.FLOAT, [3, 2, 4])],
                       [("y", T.FLOAT)], opset=18)

    def draw():   # repeated and negative indices
        indices = rng.integers(-2, 2, (3, 2, 2)).astype(np.int64)
        return {"data": rng.standard_normal((6, 5, 4)).astype(np.float32), "indices": indices,
                "updates": rng.standard_normal((3, 2, 4)).astype(np.float32)}
    assert_equal_to_cpu(model, draw, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis,reduction", [(0, "none"), (1, "add"), (-1, "max")])
def test_scatter_elements_equals_the_cpu_kernel(backend, axis, reduction):
    model = make_model([helper.make_node("ScatterElements", ["data", "indices", "updates"], ["y"], axis=axis,
                                         reduction=reduction)],
                       [("data", T.FLOAT, [5, 6, 3]), ("indices", T.INT64, [4, 3, 2]), ("updates", T.FLOAT, [4, 3, 2])],
                       [("y", T.FLOAT)], opset=18)
    dim = [5, 6, 3][axis]
    draw = (lambda: {"data": rng.standard_normal((5, 6, 3)).astype(np.float32),
                     "indices": rng.integers(-dim, dim, (4, 3, 2)).astype(np.int64),
                     "updates": rng.standard_normal((4, 3, 2)).astype(np.float32)})
    assert_equal_to_cpu(model, draw, backend, against_ort=reduction != "none")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["none", "add"])
def test_scatter_nd_of_the_rows_a_nonzero_found_matches_ort(backend, reduction):
    """Indices and updates that are counted rows (the Scatter reads their count): only the valid rows apply."""
    nodes = [helper.make_node("Greater", ["x", "zero_f"], ["mask"]),
             helper.make_node("NonZero", ["mask"], ["nz"]),
             helper.make_node("Transpose", ["nz"], ["where"], perm=[1, 0]),
             helper.make_node("GatherND", ["x", "where"], ["kept"]),
             helper.make_node("Mul", ["kept", "ten"], ["updates"]),
             helper.make_node("ScatterND", ["x", "where", "updates"], ["y"], reduction=reduction)]
    model = make_model(nodes, [("x", T.FLOAT, [8, 9])], [("y", T.FLOAT)],
                       {"zero_f": np.array(0.0, np.float32), "ten": np.array(10.0, np.float32)}, opset=18)
    shift = iter([0.0, -9.0, 9.0, 0.5])
    draw = (lambda: {"x": (rng.standard_normal((8, 9)) + next(shift)).astype(np.float32)})
    assert_equal_to_cpu(model, draw, backend, runs=4, against_ort=True)


# -- the run-time Padding of Ultralytics' nms=True graphs --------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("keep,opset", [(5, 17), (30, 17), (100, 18)])
def test_detections_padded_to_a_fixed_size_match_ort(backend, keep, opset):
    """NMS → first ``keep`` rows → [m, 6] → flattened → Pad by (keep - m) * 6 read at run time → [1, keep, 6]."""
    from test_data_dependent import draw_detections, padded_detections_model
    model = padded_detections_model(keep, opset)
    plan = edgert.build(model, cpu_only_aliases=False)
    padding = next(layer for layer in plan.layers if layer["kind"] == LayerKind.PADDING.value)
    assert len(padding["inputs"]) == 2
    got = assert_equal_to_cpu(model, draw_detections, backend, against_ort=True)
    assert got["detections"].shape == (1, keep, 6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_detection_chains_equal_the_cpu_kernels_in_fp16(backend):
    """Every layer in fp16 (boxes and scores too): NMS over counted rows, the padded detections."""
    from test_data_dependent import draw_detections, padded_detections_model
    fp16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]}
    assert_equal_to_cpu(padded_detections_model(30), draw_detections, backend, runs=2, **fp16)
    draw = (lambda: {"boxes": random_boxes(1, 90, 0)[0], "scores": rng.random((3, 90)).astype(np.float32)})
    assert_equal_to_cpu(score_filter_nms_model(3), draw, backend, runs=2, **fp16)


@pytest.mark.skipif(not cc.available(), reason="no NVRTC (cuda-bindings) and no nvcc")
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_the_detection_kernels_compile_with_nvrtc(arch):
    from test_data_dependent import padded_detections_model
    models = [padded_detections_model(30), score_filter_nms_model(3), counted_topk_model(10, 1),
              topk_model((2, 3, 20), 1, 2, 1, T.FLOAT16), nms_model(1, 2, 50, 1, 5, 0.5, 0.1)]
    for model in models:
        plan = edgert.build(model, cpu_only_aliases=False)
        section = compile_for_plan(plan.document, arch)
        tactics = " ".join(launch["tactic"] for launches in section["launches"] for launch in launches)
        assert all(m["cubin"][:4] == b"\x7fELF" for m in section["modules"])
        assert any(word in tactics for word in ("nms-greedy", "topk-rank", "pad-run-time")), tactics
    for mode, padding in (("cubic", "reflection"), ("linear", "border"), ("nearest", "zeros")):
        models.append(make_model([helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding)],
                                 [("x", T.FLOAT16, [1, 2, 5, 6]), ("grid", T.FLOAT16, [1, 3, 4, 2])], [("y", T.FLOAT16)],
                                 opset=20))
    models.append(make_model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="...ii,...i->...")],
                             [("a", T.FLOAT, [2, 3, 3]), ("b", T.FLOAT, [2, 3])], [("y", T.FLOAT)], opset=12))
    models.append(make_model([helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=1, reduction="max")],
                             [("d", T.FLOAT16, [3, 4]), ("i", T.INT64, [3, 2]), ("u", T.FLOAT16, [3, 2])],
                             [("y", T.FLOAT16)], opset=18))
    models.append(make_model([helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], mode="max", output_height=2,
                                               output_width=2, sampling_ratio=0)],
                             [("x", T.FLOAT16, [1, 2, 6, 6]), ("rois", T.FLOAT16, [3, 4]), ("batch", T.INT64, [3])],
                             [("y", T.FLOAT16)], opset=16))
    for model in models[5:]:
        section = compile_for_plan(edgert.build(model, cpu_only_aliases=False).document, arch)
        assert all(m["cubin"][:4] == b"\x7fELF" for m in section["modules"])


@pytest.mark.gpu
def test_the_tensorrt_api_returns_the_real_rows_of_a_bounded_output_on_the_gpu():
    """execute_async_v3 on CUDA with a NonZero output: its real rows land contiguously at the real shape, which
    get_tensor_shape reports after the run (as on the CPU backend)."""
    import cupy

    import edgert as trt
    model = make_model([helper.make_node("NonZero", ["x"], ["y"])], [("x", T.FLOAT, [6, 40])], [("y", T.INT64)])
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse(model.SerializeToString())
    config = builder.create_builder_config()
    config.gpu_kernels = True
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    context = engine.create_execution_context()
    x = ((rng.random((6, 40)) < 0.3) * 1.0).astype(np.float32)
    x_device, y_device = cupy.asarray(x), cupy.full(tuple(engine.get_tensor_shape("y")), -1, np.int64)
    context.set_tensor_address("x", x_device.data.ptr)
    context.set_tensor_address("y", y_device.data.ptr)
    context.execute_async_v3(0)
    want = ort_run(model, {"x": x})["y"]
    assert context.get_tensor_shape("y") == want.shape
    np.testing.assert_array_equal(y_device.ravel()[:want.size].get().reshape(want.shape), want)


@pytest.mark.skipif(not emulator.available(), reason="no host C++ compiler")
def test_the_tensorrt_api_copy_of_counted_rows_on_the_emulator():
    """The device path of execute_async_v3 (edgert/api/cuda_io.py) after a run: NonZero's (2, n) real columns,
    strided in the bound-sized (2, 240) buffer, copied contiguously into the caller's buffer at shape (2, n)."""
    from types import SimpleNamespace

    from edgert.api.cuda_io import _copy_counted_rows
    model = make_model([helper.make_node("NonZero", ["x"], ["y"])], [("x", T.FLOAT, [6, 40])], [("y", T.INT64)])
    x = ((rng.random((6, 40)) < 0.3) * 1.0).astype(np.float32)
    context, _ = cuda_context(model, {"x": x}, "emulator")
    context.execute({"x": x})
    caller = np.full(2 * 240, -1, np.int64)
    api = SimpleNamespace(_context=context, _addresses={"y": caller.ctypes.data}, _written_shapes={})
    _copy_counted_rows(api, None)
    want = ort_run(model, {"x": x})["y"]
    assert api._written_shapes == {"y": want.shape}
    np.testing.assert_array_equal(caller[:want.size].reshape(want.shape), want)
    assert (caller[want.size:] == -1).all()


# -- Einsum (the equations the importer keeps as one layer) -------------------------------------------------
def assert_close_to_cpu(model, feeds, backend: str, tolerance: float = 1e-5) -> None:
    context, reference = cuda_context(model, feeds, backend)
    context.poison()
    got, want = context.execute(feeds), reference.execute(feeds)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        error = np.linalg.norm((got[name] - expected).astype(np.float64)) / max(np.linalg.norm(expected), 1e-30)
        assert error <= tolerance, (name, error)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("equation,shapes", [
    ("ii->i", [(4, 4)]), ("...ij,...jk", [(2, 3, 4), (2, 4, 2)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("bij,jk->bik", [(1, 3, 4), (4, 5)]), ("...i,...i->...", [(3, 2, 5), (3, 2, 5)]), ("iij->j", [(3, 3, 2)]),
    ("...i,...i", [(3, 1, 5), (2, 5)])])   # broadcast ellipses (NumPy's einsum; onnxruntime refuses them)
def test_einsum_layers_match_the_cpu_kernel(backend, equation, shapes):
    inputs = [(f"x{i}", T.FLOAT, list(s)) for i, s in enumerate(shapes)]
    model = make_model([helper.make_node("Einsum", [n for n, _, _ in inputs], ["y"], equation=equation)], inputs,
                       [("y", T.FLOAT)], opset=12)
    plan = edgert.build(model, cpu_only_aliases=False)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, _, s in inputs}
    if any(layer["kind"] == LayerKind.EINSUM.value for layer in plan.layers):
        assert_close_to_cpu(model, feeds, backend)
    if len({len(s) for s in shapes}) == 1 or "..." not in equation:
        np.testing.assert_allclose(edgert.load(plan).create_execution_context().execute(feeds)["y"],
                                   ort_run(model, feeds)["y"], rtol=1e-5, atol=1e-5)


# -- GridSample ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode,padding,align", [("linear", "zeros", 0), ("nearest", "border", 1),
                                                ("cubic", "reflection", 0), ("linear", "reflection", 1),
                                                ("cubic", "border", 1), ("nearest", "zeros", 0)])
def test_grid_sample_matches_the_cpu_kernel(backend, mode, padding, align):
    model = make_model([helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding,
                                         align_corners=align)],
                       [("x", T.FLOAT, [2, 3, 7, 9]), ("grid", T.FLOAT, [2, 5, 6, 2])], [("y", T.FLOAT)], opset=20)
    feeds = {"x": rng.standard_normal((2, 3, 7, 9)).astype(np.float32),
             "grid": rng.uniform(-1.6, 1.6, (2, 5, 6, 2)).astype(np.float32)}   # some beyond the borders
    assert_close_to_cpu(model, feeds, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grid_sample_of_a_volume_matches_the_cpu_kernel(backend):
    model = make_model([helper.make_node("GridSample", ["x", "grid"], ["y"], mode="linear", padding_mode="border")],
                       [("x", T.FLOAT, [1, 2, 4, 5, 6]), ("grid", T.FLOAT, [1, 3, 2, 4, 3])], [("y", T.FLOAT)], opset=20)
    feeds = {"x": rng.standard_normal((1, 2, 4, 5, 6)).astype(np.float32),
             "grid": rng.uniform(-1.3, 1.3, (1, 3, 2, 4, 3)).astype(np.float32)}
    assert_close_to_cpu(model, feeds, backend)


# -- RoiAlign ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opset,transform,mode,ratio", [(10, None, "avg", 0), (16, "half_pixel", "avg", 2),
                                                         (16, "output_half_pixel", "max", 0), (16, "half_pixel", "max", 3)])
def test_roi_align_matches_the_cpu_kernel(backend, opset, transform, mode, ratio):
    attrs = {"mode": mode, "output_height": 3, "output_width": 4, "sampling_ratio": ratio, "spatial_scale": 0.5}
    if transform:
        attrs["coordinate_transformation_mode"] = transform
    model = make_model([helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], **attrs)],
                       [("x", T.FLOAT, [2, 3, 12, 10]), ("rois", T.FLOAT, [6, 4]), ("batch", T.INT64, [6])],
                       [("y", T.FLOAT)], opset=opset)
    corner = rng.uniform(-2, 20, (6, 2))
    feeds = {"x": rng.standard_normal((2, 3, 12, 10)).astype(np.float32),
             "rois": np.concatenate([corner, corner + rng.uniform(-1, 12, (6, 2))], axis=1).astype(np.float32),
             "batch": rng.integers(0, 2, 6).astype(np.int64)}
    assert_close_to_cpu(model, feeds, backend)
