"""End-to-end: every model in tests/models.py built with edgert (CPU) matches onnxruntime.

Per model: the imported IR graph verifies and has nothing left to fold; every output is within
1e-5 normwise of onnxruntime on fresh random inputs, with the optimization passes (which verify the
graph after each rewrite) and without them; and the plan gives the same outputs after a round trip
through bytes and through a file.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgert
from edgert.ir.kinds import LayerKind
from helpers import normwise_error, ort_run, random_inputs
from models import MODELS

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    """(name, model, shapes), each model built once per module."""
    name = request.param
    return name, MODELS[name].build(), MODELS[name].shapes


def test_import_verifies(case):
    from edgert.onnx.importer import import_model
    name, model, shapes = case
    graph = import_model(model, shapes)
    graph.verify()
    assert graph.output_names == [o.name for o in model.graph.output]
    folded_late = [n.name for n in graph.nodes if all(v is None or v.is_const for v in n.inputs)]
    assert not folded_late, f"{name}: layers with only constant inputs survived import: {folded_late}"
    if name == "exporter_style":  # the Shape → Gather → Unsqueeze → Concat flatten must fold away
        assert not model.graph.initializer
        assert not [n for n in graph.nodes if n.kind == LayerKind.GATHER]


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
def test_matches_onnxruntime(case, optimize):
    name, model, shapes = case
    feeds = random_inputs(model, shapes)
    plan = edgert.build(model, shapes=shapes, optimize=optimize)
    ours = edgert.load(plan.to_bytes()).create_execution_context().execute(feeds)
    reference = ort_run(model, feeds)
    assert sorted(ours) == sorted(reference)
    errors = {}
    for output, want in reference.items():
        got = ours[output]
        assert got.shape == want.shape and got.dtype == want.dtype, \
            f"{name}/{output}: {got.dtype}{got.shape}, onnxruntime gives {want.dtype}{want.shape}"
        errors[output] = normwise_error(got, want)
    print(f"{name} ({'optimized' if optimize else 'unoptimized'}, {len(plan.layers)} layers): normwise error " + ", ".join(f"{k}={v:.2e}" for k, v in errors.items()))
    assert all(e <= TOLERANCE for e in errors.values()), f"{name}: normwise errors {errors} > {TOLERANCE}"


def test_passes_never_grow_the_plan_and_fold_batch_norm(case):
    name, model, shapes = case
    optimized = edgert.build(model, shapes=shapes)
    plain = edgert.build(model, shapes=shapes, optimize=False)
    assert len(optimized.layers) <= len(plain.layers)
    if any(node.op_type == "BatchNormalization" for node in model.graph.node):
        left = [layer["name"] for layer in optimized.layers if layer["kind"] == LayerKind.SCALE.value]
        assert not left, f"{name}: batch norms not folded into their convolutions: {left}"


def test_plan_round_trip(case, tmp_path):
    """A plan run directly, from its bytes and from a saved file gives identical outputs."""
    name, model, shapes = case
    feeds = random_inputs(model, shapes)
    plan = edgert.build(model, shapes=shapes)
    plan.save(tmp_path / f"{name}.plan")
    direct = edgert.load(plan).create_execution_context().execute(feeds)
    via_bytes = edgert.load(edgert.Plan.from_bytes(plan.to_bytes())).create_execution_context().execute(feeds)
    via_file = edgert.load(tmp_path / f"{name}.plan").create_execution_context().execute(feeds)
    for output, want in direct.items():
        np.testing.assert_array_equal(via_bytes[output], want, err_msg=f"{name}/{output} via bytes")
        np.testing.assert_array_equal(via_file[output], want, err_msg=f"{name}/{output} via file")


@pytest.mark.parametrize("shape", [(1, 3, 48, 40), (3, 3, 17, 23)], ids=lambda s: "x".join(map(str, s)))
def test_exporter_style_at_other_shapes(shape):
    """The dynamic model builds for any batch and spatial size, odd sizes included."""
    model = MODELS["exporter_style"].build()
    feeds = random_inputs(model, {"input": shape})
    plan = edgert.build(model, shapes={"input": shape})
    ours = edgert.load(plan.to_bytes()).create_execution_context().execute(feeds)
    want = ort_run(model, feeds)["logits"]
    assert ours["logits"].shape == want.shape == (shape[0], 10)
    assert normwise_error(ours["logits"], want) <= TOLERANCE
