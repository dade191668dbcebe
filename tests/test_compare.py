"""edgert compare: per-output metrics and, per layer, the first layer whose error exceeds the threshold."""

from __future__ import annotations

import argparse
import json

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


def _cli(capsys, *argv):
    from edgert.tools.cli import main
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _conv_model(path):
    from onnx import TensorProto, helper, numpy_helper, save
    rng = np.random.default_rng()
    weight = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    weight2 = numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),   # fp16 in fp16 builds
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]   # the output: fp32
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 12, 12])],
                              [weight, weight2])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_compare_gates_with_exit_status(tmp_path, capsys):
    _conv_model(tmp_path / "m.onnx")
    plan = tmp_path / "fp16.plan"
    assert _cli(capsys, "build", tmp_path / "m.onnx", "-o", plan, "--precision", "fp16")[0] == 0
    # fp16 weights and activations: ~1e-3 relative error, beyond the fp32 default tolerance of 1e-5
    status, out, err = _cli(capsys, "compare", tmp_path / "m.onnx", plan)
    assert status == 1 and "FAIL" in out and out.rstrip().splitlines()[-1].startswith("FAILED"), out + err
    status, out, err = _cli(capsys, "compare", tmp_path / "m.onnx", plan, "--atol", "0.1", "--rtol", "0.05")
    assert status == 0 and out.rstrip().splitlines()[-1].startswith("PASSED"), out + err
    # the mean of error/tolerance is below its max: a tolerance between the two passes mean, fails max
    status, out, _ = _cli(capsys, "compare", tmp_path / "m.onnx", plan, "--json", "--atol", "0", "--rtol", "1e-3")
    stat_max = json.loads(out)["outputs"]["y"]["error_stat"]
    status, out, _ = _cli(capsys, "compare", tmp_path / "m.onnx", plan, "--json", "--atol", "0", "--rtol", "1e-3",
                          "--check-error-stat", "mean")
    stat_mean = json.loads(out)["outputs"]["y"]["error_stat"]
    assert 0 < stat_mean < stat_max
    # saved reference and inputs: the same verdict without onnxruntime, and the same seed gives the same inputs
    saved = tmp_path / "saved.npz"
    assert _cli(capsys, "compare", tmp_path / "m.onnx", plan, "--seed", "7", "--val-range", "x:[0,1]",
                "--save-outputs", saved, "--atol", "0.1", "--rtol", "0.05")[0] == 0
    with np.load(saved) as data:
        x = data["inputs/x"]
        assert 0 <= x.min() and x.max() <= 1 and {"reference/y", "plan/y"} <= set(data.files)
        np.testing.assert_array_equal(
            x, np.random.default_rng(7).uniform(0, 1, (1, 3, 12, 12)).astype(np.float32))
    assert _cli(capsys, "compare", tmp_path / "m.onnx", plan, "--load-outputs", saved)[0] == 1
    assert _cli(capsys, "compare", tmp_path / "m.onnx", plan, "--load-outputs", saved, "--atol", "0.1",
                "--rtol", "0.05")[0] == 0


def test_compare_nan_outputs_fail_and_never_show_cosine_one(tmp_path, capsys):
    from onnx import TensorProto, helper, save
    graph = helper.make_graph([helper.make_node("Log", ["x"], ["y"], name="log")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "log.onnx")
    plan = tmp_path / "log.plan"
    assert _cli(capsys, "build", tmp_path / "log.onnx", "-o", plan)[0] == 0
    status, out, err = _cli(capsys, "compare", tmp_path / "log.onnx", plan, "--val-range", "[-2,-1]",
                            "--atol", "1e9", "--rtol", "1e9")
    assert status == 1 and "cosine nan" in out and "cosine 1.0" not in out and "NaN/Inf" in out, out + err
    assert _cli(capsys, "compare", tmp_path / "log.onnx", plan, "--val-range", "[1,2]")[0] == 0
