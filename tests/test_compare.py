"""edgert compare: per-output metrics and, per layer, the first layer whose error exceeds the threshold."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import edgert

from edgert.tools import compare as compare_tool
from models import MODELS


def _bad_scale_plan(layer_name: str):
    case = MODELS["resnet"]
    model = case.build()
    from edgert.onnx.importer import import_model
    from edgert.passes import optimize
    graph = import_model(model, case.shapes)
    optimize(graph)
    node = next(n for n in graph.nodes if layer_name in n.origin)
    scales = {v.name: 1e-4 for v in [*node.inputs, *node.outputs] if v is not None and not v.is_const}
    rules = [{"layer": layer_name, "precision": "int8"}]
    plan = edgert.build(model, shapes=case.shapes, precision="fp32", precision_rules=rules, calibration=scales)
    return model, plan, node.name


def test_per_layer_names_first_diverging_layer(tmp_path):
    model, plan, expected = _bad_scale_plan("conv_4")
    layers = {layer["name"]: layer for layer in plan.document["layers"]}
    assert layers[expected]["precision"] == "int8" and layers[expected]["attrs"]["int8"]
    report = compare_tool.compare(model, plan, per_layer=True)
    assert report["first_diverging"]["layer"] == expected
    assert report["outputs"]["logits"]["normwise_rel"] > 1e-2
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    plan.save(tmp_path / "plan.edgert")
    parser = argparse.ArgumentParser()
    compare_tool.add_arguments(parser)
    args = parser.parse_args([str(path), str(tmp_path / "plan.edgert"), "--per-layer", "--json"])
    assert compare_tool.main(args) == 1   # a gate: the mismatch is exit status 1


def test_fp32_plan_agrees():
    case = MODELS["mobilenetv2"]
    model = case.build()
    plan = edgert.build(model, shapes=case.shapes, precision="fp32")
    inputs = {"input": np.random.default_rng().standard_normal(case.shapes["input"]).astype(np.float32)}
    report = compare_tool.compare(model, plan, inputs, per_layer=True)
    entry = report["outputs"]["logits"]
    assert entry["normwise_rel"] < 1e-5 and entry["cosine"] > 0.99999 and entry["top1_agreement"] == 1.0
    assert report["first_diverging"] is None and len(report["layers"]) >= 5


def test_metrics_flags_nan():
    for out, ref in ((np.array([np.nan, 1.0]), np.array([1.0, 1.0])), (np.array([1.0, 1.0]), np.array([np.inf, 1.0])),
                     (np.full(4, np.nan), np.full(4, np.nan))):
        entry = compare_tool.metrics(out, ref)
        assert entry["normwise_rel"] == float("inf") and not entry["cosine"] >= 0.0   # NaN cosine, never 1.0
        assert not compare_tool.gate(out, ref, atol=1.0, rtol=1.0)["passed"]
    assert compare_tool.top1_agreement(np.eye(3), np.eye(3)) == 1.0
    assert compare_tool.metrics(np.zeros(3), np.ones(3))["cosine"] == 0.0


@pytest.mark.parametrize("stat", ["max", "mean", "median"])
def test_gate_is_elementwise_atol_plus_rtol(stat):
    rng = np.random.default_rng()
    ref = rng.standard_normal(1000)
    atol, rtol = 10.0 ** rng.uniform(-4, -2), 10.0 ** rng.uniform(-4, -2)
    tolerance = atol + rtol * np.abs(ref)
    within = ref + tolerance * rng.uniform(-0.99, 0.99, ref.shape)
    assert compare_tool.gate(within, ref, atol, rtol, stat)["passed"]
    outside = within.copy()
    outside[rng.integers(ref.size)] += 3 * tolerance.max()   # one element out of tolerance
    result = compare_tool.gate(outside, ref, atol, rtol, stat)
    assert result["passed"] == (stat != "max") and result["mismatched"] == 1
    far = ref + 2 * tolerance * np.sign(rng.standard_normal(ref.shape))   # every element twice its tolerance
    assert not compare_tool.gate(far, ref, atol, rtol, stat)["passed"]
    assert abs(compare_tool.gate(far, ref, atol, rtol, stat)["error_stat"] - 2.0) < 1e-9


def test_val_ranges_parse():
    assert compare_tool.parse_val_ranges(["x:[0,1]", "-2,3.5", "y:0,255"]) == {"x": (0, 1), None: (-2, 3.5),
                                                                                "y": (0, 255)}
    for bad in ("x:[1]", "x:[a,b]", "3,1"):
        with pytest.raises(edgert.EdgeRTError):
            compare_tool.parse_val_ranges([bad])
