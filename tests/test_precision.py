"""Per-layer precision: fp16 plans of every test model stay within 1e-2 of fp32; rules and fallbacks."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

import edgert
from edgert.precision import PrecisionError, load_rules
from models import MODELS


def _reference(model, inputs):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


@pytest.mark.parametrize("name", list(MODELS))
def test_fp16_plan_within_one_percent(name):
    case = MODELS[name]
    model = case.build()
    plan = edgert.build(model, shapes=case.shapes, precision="fp16")
    assert plan.header["precision"]["counts"].get("fp16", 0) > 0
    assert any(t["dtype"] == "float16" for t in plan.document["tensors"])
    rng = np.random.default_rng()
    inputs = {k: rng.standard_normal(s).astype(np.float32) for k, s in case.shapes.items()}
    outputs = edgert.load(plan).create_execution_context().execute(inputs)
    for key, ref in _reference(model, inputs).items():
        assert outputs[key].dtype == ref.dtype  # graph outputs keep their type
        error = np.linalg.norm(outputs[key].astype(np.float64) - ref) / np.linalg.norm(ref)
        assert np.isfinite(error) and error <= 1e-2, (name, key, error)


def test_sensitive_layers_stay_fp32_unless_forced():
    case = MODELS["transformer"]
    plan = edgert.build(case.build(), shapes=case.shapes, precision="fp16")
    kinds = {layer["kind"]: layer["precision"] for layer in plan.document["layers"]}
    assert kinds["Softmax"] == "fp32" and kinds["Normalization"] == "fp32"
    forced = edgert.build(case.build(), shapes=case.shapes, precision="fp16",
                                  precision_rules=[{"kind": "Softmax", "precision": "fp16"}])
    assert {layer["kind"]: layer["precision"] for layer in forced.document["layers"]}["Softmax"] == "fp16"


def test_rules_later_wins_and_int8_falls_back_without_scales(tmp_path):
    path = tmp_path / "placement.toml"
    path.write_text('[[rule]]\nlayer = "conv_*"\nprecision = "fp16"\n\n'
                    '[[rule]]\nlayer = "conv_2"\nprecision = "fp32"\n\n'
                    '[[rule]]\nkind = "Softmax"\ndevice = "gpu"\n')  # a placement rule: ignored here
    rules = load_rules(str(path))
    assert [r.precision for r in rules] == ["fp16", "fp32"]
    case = MODELS["resnet"]
    plan = edgert.build(case.build(), shapes=case.shapes, precision="fp32", precision_rules=str(path))
    layers = {layer["name"]: layer["precision"] for layer in plan.document["layers"]}
    assert layers["conv_1"] == "fp16" and layers["conv_2"] == "fp32"
    int8 = edgert.build(case.build(), shapes=case.shapes, precision="fp32",
                                precision_rules=[{"layer": "conv_1", "precision": "int8"}])
    assert any("no int8 scale" in note for note in int8.header["precision"]["notes"])


@pytest.mark.parametrize("rule, message", [
    ({"layer": "x", "precision": "fp8"}, "precision"),
    ({"precision": "fp16"}, "neither"),
    ({"layer": "x", "precision": "fp16", "colour": 1}, "unknown key"),
    ({"kind": "NoSuchKind", "precision": "fp16"}, "unknown kind"),
])
def test_bad_rules(rule, message):
    with pytest.raises(PrecisionError, match=message):
        load_rules([rule])
