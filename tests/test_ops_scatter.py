"""Scatter, CumSum, Einsum, Trilu and NonZero against onnxruntime (fresh random data), NonZero's
data-dependent size through Transpose → GatherND chains, and Einsum lowering."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T, helper, numpy_helper

import edgert
from edgert.errors import EdgeRTError, InputError, UnsupportedError
from edgert.ir.kinds import LayerKind
from helpers import assert_matches_ort, edgert_run, normwise_error, op_model, ort_run

rng = np.random.default_rng()
REDUCTIONS = ["none", "add", "mul", "max", "min"]


def layer_kinds(model) -> list[str]:
    return [layer["kind"] for layer in edgert.build(model).layers]


# -- ScatterND / ScatterElements -------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("depth", [1, 2])
def test_scatter_nd_matches_ort(reduction, depth):
    data = rng.standard_normal((5, 4, 3)).astype(np.float32)
    count = 4
    if reduction == "none":   # repeated indices leave an unspecified update: keep them distinct
        flat = rng.choice(5 * 4 if depth == 2 else 5, count, replace=False)
        indices = np.stack(np.unravel_index(flat, (5, 4)[:depth]), axis=-1)
    else:
        indices = np.stack([rng.integers(-d, d, count) for d in (5, 4)[:depth]], axis=-1)
    updates = rng.standard_normal((count,) + data.shape[depth:]).astype(np.float32)
    model, feeds = op_model("ScatterND", [("data", data), ("indices", indices.astype(np.int64)),
                                          ("updates", updates)], {"reduction": reduction}, opset=18)
    assert_matches_ort(model, feeds, tolerance=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", [0, -1])
def test_scatter_elements_matches_ort(reduction, axis):
    data = rng.standard_normal((4, 6)).astype(np.float32)
    dim = data.shape[axis]
    if reduction == "none":   # distinct indices along the axis: repeated ones leave an unspecified update
        lines = [rng.permutation(dim)[:3] for _ in range(6 if axis == 0 else 4)]
        indices = np.stack(lines, axis=1 if axis == 0 else 0)
    else:
        indices = rng.integers(-dim, dim, (3, 6) if axis == 0 else (4, 3))
    updates = rng.standard_normal(indices.shape).astype(np.float32)
    model, feeds = op_model("ScatterElements", [("data", data), ("indices", indices.astype(np.int64)),
                                                ("updates", updates)], {"axis": axis, "reduction": reduction}, opset=18)
    assert_matches_ort(model, feeds, tolerance=1e-6)


def test_scatter_out_of_range_index_is_an_input_error():
    data, updates = np.zeros((3, 2), np.float32), np.ones((1, 2), np.float32)
    model, feeds = op_model("ScatterND", [("data", data), ("indices", np.array([[0]], np.int64)),
                                          ("updates", updates)], {}, opset=16)
    plan = edgert.build(model)
    context = edgert.load(plan.to_bytes()).create_execution_context()
    with pytest.raises(InputError, match=r"outside \[-3, 2\]"):
        context.execute({**feeds, "indices": np.array([[3]], np.int64)})


# -- CumSum, Einsum, Trilu ---------------------------------------------------------------------------------
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis,dtype", [(1, np.float32), (-1, np.int64), (0, np.float64)])
def test_cumsum_matches_ort(exclusive, reverse, axis, dtype):
    x = (rng.standard_normal((3, 5, 4)) * 10).astype(dtype)
    model, feeds = op_model("CumSum", [("x", x), ("axis", np.array(axis, np.int64))],
                            {"exclusive": exclusive, "reverse": reverse}, opset=14, consts=("axis",))
    assert_matches_ort(model, feeds, tolerance=1e-6)


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
    ("ij->ji", [(3, 5)]), ("i,j", [(3,), (4,)]), ("...ij,...jk", [(2, 3, 4), (2, 4, 2)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 5, 8), (1, 2, 6, 8)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("ijk->", [(2, 3, 4)]),
])
def test_einsum_matches_ort(equation, shapes):
    inputs = [(f"x{i}", rng.standard_normal(s).astype(np.float32)) for i, s in enumerate(shapes)]
    model, feeds = op_model("Einsum", inputs, {"equation": equation}, opset=12)
    assert_matches_ort(model, feeds, tolerance=1e-5)


@pytest.mark.parametrize("equation,shapes,lowered", [
    ("bhqd,bhkd->bhqk", [(1, 2, 5, 8), (1, 2, 6, 8)], True), ("ij,jk", [(3, 4), (4, 5)], True),
    ("ijk->ki", [(2, 3, 4)], True), ("ij,kj->", [(3, 4), (2, 4)], True), ("ii->i", [(4, 4)], False),
    ("...ij,...jk", [(2, 3, 4), (2, 4, 2)], False), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)], False),
])
def test_einsum_lowers_to_matrix_multiply_shuffle_reduce_where_it_can(equation, shapes, lowered):
    inputs = [(f"x{i}", rng.standard_normal(s).astype(np.float32)) for i, s in enumerate(shapes)]
    model, feeds = op_model("Einsum", inputs, {"equation": equation}, opset=12)
    kinds = layer_kinds(model)
    assert (LayerKind.EINSUM.value not in kinds) == lowered, kinds


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 2, -1, 7])
def test_trilu_matches_ort_as_a_masked_select(upper, k):
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    inputs = [("x", x)] + ([("k", np.array(k, np.int64))] if k is not None else [])
    model, feeds = op_model("Trilu", inputs, {"upper": upper}, opset=14, consts=("k",))
    assert_matches_ort(model, feeds, tolerance=0.0)
    assert layer_kinds(model) == [LayerKind.SELECT.value]


# -- NonZero -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,dtype", [((3, 4), np.float32), ((2, 3, 4), np.int64), ((7,), np.bool_)])
def test_nonzero_matches_ort_and_is_trimmed(shape, dtype):
    x = (rng.random(shape) > 0.6).astype(dtype) * (rng.integers(1, 5, shape)).astype(dtype)
    model, feeds = op_model("NonZero", [("x", x)], {}, opset=13)
    plan = edgert.build(model)
    assert plan.document["bindings"]["outputs"][0]["shape"] == [len(shape), int(np.prod(shape))]
    ours, ref = edgert_run(model, feeds)["y0"], ort_run(model, feeds)["y0"]
    np.testing.assert_array_equal(ours, ref)


def test_nonzero_of_a_constant_folds_to_its_exact_size():
    constant = numpy_helper.from_array(np.array([[0, 1, 0], [2, 0, 3]], np.int64), "c")
    nodes = [helper.make_node("NonZero", ["c"], ["nz"]), helper.make_node("Cast", ["nz"], ["f"], to=T.FLOAT),
             helper.make_node("Add", ["f", "x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [2, 3])], [constant])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert_matches_ort(model, {"x": rng.standard_normal((2, 3)).astype(np.float32)}, tolerance=0.0)


def nonzero_gather_model(shape):
    """NonZero → Transpose → GatherND (the values at the non-zero positions) → Mul; and the positions as int32."""
    nodes = [helper.make_node("Greater", ["x", "threshold"], ["mask"]),
             helper.make_node("NonZero", ["mask"], ["nz"]),                     # (rank, K)
             helper.make_node("Transpose", ["nz"], ["positions"], perm=[1, 0]),  # (K, rank)
             helper.make_node("GatherND", ["x", "positions"], ["values"]),      # (K,)
             helper.make_node("Mul", ["values", "two"], ["doubled"]),
             helper.make_node("Cast", ["positions"], ["positions32"], to=T.INT32)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, list(shape))],
        [helper.make_tensor_value_info("doubled", T.FLOAT, None),
         helper.make_tensor_value_info("positions32", T.INT32, None)],
        [numpy_helper.from_array(np.array(0.5, np.float32), "threshold"),
         numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_nonzero_transpose_gathernd_chain():
    model = nonzero_gather_model((3, 5, 4))
    context = edgert.load(edgert.build(model).to_bytes()).create_execution_context()
    for _ in range(3):
        feeds = {"x": rng.standard_normal((3, 5, 4)).astype(np.float32)}
        ours, ref = context.execute(feeds), ort_run(model, feeds)
        for name in ("doubled", "positions32"):
            assert ours[name].shape == ref[name].shape
            np.testing.assert_array_equal(ours[name], ref[name])


def test_nonzero_with_nothing_selected_returns_empty_outputs():
    model = nonzero_gather_model((2, 3))
    ours = edgert_run(model, {"x": np.zeros((2, 3), np.float32)})
    assert ours["doubled"].shape == (0,) and ours["positions32"].shape == (0, 2)


def test_concat_along_the_data_dependent_axis_packs_the_valid_rows():
    """A Compact layer (tests/test_data_dependent_concat.py): the valid columns of each input, one after another."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("Concat", ["nz", "nz"], ["both"], axis=1, name="join_rows")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, [4])],
                              [helper.make_tensor_value_info("both", T.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    context = edgert.load(edgert.build(model).to_bytes()).create_execution_context()
    for x in ([0, 1, 0, 2], [0, 0, 0, 0], [3, 1, 2, 2]):
        feeds = {"x": np.array(x, np.float32)}
        np.testing.assert_array_equal(context.execute(feeds)["both"], ort_run(model, feeds)["both"])


def test_bounded_outputs_build_with_cuda_kernels():
    """NonZero has a CUDA kernel (kernels/cuda/lower_detect.py; results in tests/test_cuda_detect.py)."""
    from edgert.kernels.cuda import compile as cc
    if not cc.available():
        pytest.skip("no NVRTC (cuda-bindings) and no nvcc")
    model, _ = op_model("NonZero", [("x", rng.standard_normal((3, 3)).astype(np.float32))], {}, opset=13)
    plan = edgert.build(model, gpu_kernels=True, target="jetson-agx-orin")
    tactics = [launch["tactic"] for section in plan.document["kernels"].values()
               for launches in section["launches"] for launch in launches]
    assert "nonzero-scan" in tactics, tactics


@pytest.mark.parametrize("exclusive,reverse,axis,dtype", [(0, 0, 1, np.float32), (1, 1, 0, np.float32),
                                                          (1, 0, 2, np.int64), (0, 1, 1, np.float16)])
def test_cumsum_cuda_kernel_on_the_emulator_matches_the_cpu_reference(exclusive, reverse, axis, dtype):
    from edgert.kernels.cuda import emulator
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    from edgert.runtime.cuda import CudaEngine
    if not emulator.available():
        pytest.skip("no host C++ compiler for the emulator")
    x = (rng.standard_normal((3, 5, 4)) * 4).astype(dtype)
    model, feeds = op_model("CumSum", [("x", x), ("axis", np.array(axis, np.int64))],
                            {"exclusive": exclusive, "reverse": reverse}, opset=14, consts=("axis",))
    plan = edgert.build(model, cpu_only_aliases=False)
    plan.document["kernels"] = {"sm_90": compile_for_plan(plan.document, "sm_90", emulate=True)}
    got = CudaEngine(plan.document, driver=emulator.EmulatedDriver()).create_execution_context().execute(feeds)["y0"]
    want = edgert.load(plan).create_execution_context().execute(feeds)["y0"]
    if dtype != np.float16:
        np.testing.assert_allclose(got, want, rtol=1e-6)
        return
    # float16: the CPU reference rounds every partial sum to float16, the CUDA kernel sums in float; both are
    # judged against float64 sums, normwise (the numerics contract's fp16 bound)
    exact = np.cumsum(np.flip(x.astype(np.float64), axis) if reverse else x.astype(np.float64), axis=axis)
    exact = (np.flip(exact, axis) if reverse else exact) - (x.astype(np.float64) if exclusive else 0)
    for result in (got, want):
        assert normwise_error(result, exact) <= 1e-2


@pytest.mark.gpu
@pytest.mark.parametrize("exclusive,reverse,axis", [(0, 0, 1), (1, 1, 0), (1, 0, 2)])
def test_cumsum_cuda_kernel_on_the_gpu(exclusive, reverse, axis):
    x = (rng.standard_normal((3, 5, 4)) * 4).astype(np.float32)
    model, feeds = op_model("CumSum", [("x", x), ("axis", np.array(axis, np.int64))],
                            {"exclusive": exclusive, "reverse": reverse}, opset=14, consts=("axis",))
    plan = edgert.build(model, gpu_kernels=True)
    got = edgert.load(plan.to_bytes(), device="cuda").create_execution_context().execute(feeds)["y0"]
    want = edgert.load(plan.to_bytes()).create_execution_context().execute(feeds)["y0"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
