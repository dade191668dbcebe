"""What the optimizer does to whole models (issue 5's visible results)."""

import json
import os

import onnx

import edgert
from edgert.tools.cli import main
from models import MODELS

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _plan(name):
    case = MODELS[name]
    return edgert.build(case.build(), shapes=case.shapes)


def test_resnet_runs_no_separate_batchnorm_activation_or_add():
    plan = _plan("resnet")
    kinds = [layer["kind"] for layer in plan.layers]
    assert not {"Scale", "Activation", "ElementWise", "Normalization", "PointWise"} & set(kinds), kinds
    convs = [layer for layer in plan.layers if layer["kind"] == "Convolution"]
    assert all(layer["attrs"].get("epilogue") for layer in convs if layer["name"] != "conv_6")
    assert any(layer["origin"][-2:] == ["add_1", "relu_3"] for layer in convs)  # conv + bn + add + relu


def test_unet_executes_no_concatenation_copy():
    plan = _plan("unet")
    concats = [i for i, layer in enumerate(plan.layers) if layer["kind"] == "Concatenation"]
    assert concats and set(concats) <= set(plan.document["memory"]["elided"])


def test_inception_shows_horizontal_fusion_in_inspect(tmp_path, capsys):
    path = tmp_path / "inception.plan"
    assert main(["build", os.path.join(LIGHT, "light_inception_v1.onnx"), "-o", str(path)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    merged = [layer for layer in info["layers"] if layer["kind"] == "Convolution" and " + " in layer["name"]]
    assert len(merged) == 9  # one per inception block: its 1x1, 3x3-reduce and 5x5-reduce convolutions
    assert all(len(layer["name"].split(" + ")) == 3 for layer in merged)
    assert all(set(layer["name"].split(" + ")) <= set(layer["origin"]) for layer in merged)
