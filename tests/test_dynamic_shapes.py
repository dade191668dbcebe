"""Optimization profiles: one plan built for a range of shapes runs every shape in range (edgert.dynamic).

Each model is built once with a profile and compared with onnxruntime at min, opt, max and two random
in-range shapes (fp32 CPU, 1e-5 normwise).
"""

from __future__ import annotations

import os
import subprocess
import sys

import msgpack
import numpy as np
import onnx
import pytest

import edgert
from dynamic_models import build_text_recognizer, dynamic_export
from edgert.errors import InputError, PlanError, ShapeError, UnsupportedError
from helpers import assert_runs_allocate_nothing, normwise_error, ort_run, random_inputs
from models import MODELS

TOLERANCE = 1e-5
# CNNs whose spatial dims may vary freely; the others vary their batch only (UNet's skip connections need
# H and W divisible by 4, the detection head's grids and the transformer's token count are fixed).
SPATIAL = {"resnet", "mobilenetv2", "exporter_style"}


def _profile_for(name: str, shapes: dict) -> tuple[dict, dict]:
    axes, profile = {}, {}
    for input_name, shape in shapes.items():
        axes[input_name] = (0, 2, 3) if name in SPATIAL and len(shape) == 4 else (0,)
        low, high = list(shape), list(shape)
        for axis in axes[input_name]:
            low[axis], high[axis] = (1, 4) if axis == 0 else (shape[axis] // 2, shape[axis] * 2)
        profile[input_name] = (tuple(low), tuple(shape), tuple(high))
    return axes, profile


def _test_shapes(profile: dict, rng) -> list[dict]:
    """min, opt, max and two random shapes in range (one batch for all inputs: the detection head's two scales)."""
    picks = [{n: r[k] for n, r in profile.items()} for k in range(3)]
    for _ in range(2):
        drawn = {}
        picks.append({n: tuple(drawn.setdefault((axis, lo, hi), int(rng.integers(lo, hi + 1)))
                               for axis, (lo, hi) in enumerate(zip(r[0], r[2]))) for n, r in profile.items()})
    return picks


def _assert_matches(context, model, shapes, tolerances=None) -> None:
    feeds = random_inputs(model, shapes)
    ours = context.execute(feeds)
    reference = ort_run(model, feeds)
    for name, want in reference.items():
        assert ours[name].shape == want.shape, f"{name} at {shapes}: {ours[name].shape} != {want.shape}"
        error = normwise_error(ours[name], want)
        assert error <= (tolerances or {}).get(name, TOLERANCE), f"{name} at {shapes}: normwise error {error:.3g}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_with_profile_matches_onnxruntime(name):
    case = MODELS[name]
    axes, profile = _profile_for(name, case.shapes)
    model = dynamic_export(case.build(), axes)
    plan = edgert.build(model, profiles=[profile])
    assert plan.document["profiles"][0]["inputs"].keys() == profile.keys()
    context = edgert.load(plan.to_bytes()).create_execution_context()
    for shapes in _test_shapes(profile, np.random.default_rng()):
        _assert_matches(context, model, shapes)


# SqueezeNet runs any H and W (global pooling); the others end in a fixed-size pooling window or fully connected
# layers over a flattened 7x7 map (and ShuffleNet's channel shuffle Reshapes spell H and W as literals), so
# their batch varies. AlexNet, ZFNet-512 and VGG-19 (the same ops as AlexNet) take 40 s and more each on 2 cores
# (their fully connected weights, 60-140 M parameters): checked by hand the same way (issue 13's report).
_ZOO_PROFILES = {
    "squeezenet": ((0, 2, 3), ((1, 3, 192, 192), (1, 3, 224, 224), (2, 3, 256, 256))),
    **{name: ((0,), ((1, 3, 224, 224), (2, 3, 224, 224), (3, 3, 224, 224)))
       for name in ("shufflenet", "resnet50", "densenet121", "inception_v1", "inception_v2")},
}


@pytest.mark.parametrize("zoo_name", sorted(_ZOO_PROFILES))
def test_light_zoo_with_dynamic_dims(zoo_name):
    from test_light_zoo import LIGHT_DIR, _random_weights, _tolerances, _with_logits
    axes, (low, opt, high) = _ZOO_PROFILES[zoo_name]
    model = _random_weights(_with_logits(onnx.load(os.path.join(LIGHT_DIR, f"light_{zoo_name}.onnx"))))
    (input_name, _), = random_inputs(model).items()
    model = dynamic_export(model, {input_name: axes})
    profile = {input_name: (low, opt, high)}
    context = edgert.load(edgert.build(model, profiles=[profile])).create_execution_context()
    for shapes in _test_shapes(profile, np.random.default_rng()):   # min, opt, max and two random
        feeds = random_inputs(model, shapes)
        reference = ort_run(model, feeds)
        _assert_matches_reference(context.execute(feeds), reference, _tolerances(model, reference, TOLERANCE))


def _assert_matches_reference(ours, reference, tolerances):
    for name, want in reference.items():
        assert ours[name].shape == want.shape
        assert normwise_error(ours[name], want) <= tolerances[name], name


def test_text_recognizer_runs_every_width():
    model = build_text_recognizer()
    plan = edgert.build(model, profiles=[{"image": ((1, 3, 48, 64), (1, 3, 48, 320), (2, 3, 48, 960))}])
    reshape = next(layer for layer in plan.document["layers"] if layer.get("dynamic"))
    assert reshape["kind"] == "Shuffle"   # the Shape → Gather → Concat → Reshape chain became dim expressions
    context = edgert.load(plan.to_bytes()).create_execution_context()
    for batch, width in [(1, 64), (2, 100), (1, 320), (2, 960), (1, 77)]:
        _assert_matches(context, model, {"image": (batch, 3, 48, width)})
        assert context.get_tensor_shape("probs") == (batch, -(-width // 4), 37)


def test_shape_api_and_profiles():
    model = build_text_recognizer()
    plan = edgert.build(model, profiles=[{"image": ((1, 3, 48, 64), (1, 3, 48, 320), (2, 3, 48, 960))},
                                         {"image": ((4, 3, 48, 16), (4, 3, 48, 32), (8, 3, 48, 64))}])
    engine = edgert.load(plan.to_bytes())
    assert engine.num_optimization_profiles == 2
    assert engine.get_tensor_profile_shape("image", 1) == ((4, 3, 48, 16), (4, 3, 48, 32), (8, 3, 48, 64))
    context = engine.create_execution_context()
    assert context.get_tensor_shape("image") == (1, 3, 48, 320)     # opt of profile 0 to start with
    context.set_input_shape("image", (2, 3, 48, 128))
    assert context.get_tensor_shape("logits") == (2, 32, 37)
    with pytest.raises(InputError, match=r"inside profile 1; call set_optimization_profile\(1\)"):
        context.set_input_shape("image", (8, 3, 48, 32))
    context.set_optimization_profile(1)
    assert context.get_tensor_shape("image") == (4, 3, 48, 32)
    _assert_matches(context, model, {"image": (6, 3, 48, 40)})
    with pytest.raises(InputError, match=r"'image': dim 65 at axis 3 is outside optimization profile 1's range 16..64"):
        context.execute(random_inputs(model, {"image": (4, 3, 48, 65)}))
    with pytest.raises(InputError, match="profile 2 does not exist"):
        context.set_optimization_profile(2)


def test_shape_changes_allocate_nothing():
    model = build_text_recognizer()
    profile = {"image": ((1, 3, 48, 64), (1, 3, 48, 320), (2, 3, 48, 960))}
    context = edgert.load(edgert.build(model, profiles=[profile])).create_execution_context()
    arena, scratch = context.arena, context.scratch_bytes
    first, second = random_inputs(model, {"image": (1, 3, 48, 100)}), random_inputs(model, {"image": (2, 3, 48, 700)})
    expected = ort_run(model, first)["probs"]
    context.execute(first)
    context.execute(second)
    got = context.execute(first)["probs"]
    assert normwise_error(got, expected) <= TOLERANCE
    assert_runs_allocate_nothing(context)
    assert context.arena is arena and context.scratch_bytes == scratch   # no buffer grew for the new shapes


def test_arena_is_planned_for_max_and_reported_per_profile():
    model = build_text_recognizer()
    plan = edgert.build(model, profiles=[{"image": ((1, 3, 48, 64), (1, 3, 48, 320), (2, 3, 48, 960))}])
    static = edgert.build(model, shapes={"image": (2, 3, 48, 960)})
    arena = plan.document["profiles"][0]["arena_bytes"]
    assert arena["min"] < arena["opt"] < arena["max"] <= plan.document["memory"]["arena_bytes"]
    assert plan.document["memory"]["arena_bytes"] <= 1.5 * static.document["memory"]["arena_bytes"]
    ranges = {t["name"]: t.get("range") for t in plan.document["tensors"]}
    assert ranges["image"] == [[1, 3, 48, 64], [2, 3, 48, 960]]


@pytest.mark.parametrize("profile,message", [
    ({"image": ((1, 3, 48, 64), (1, 3, 48, 32), (1, 3, 48, 960))}, r"axis 3 needs min <= opt <= max, found 64, 32"),
    ({"image": ((1, 3, 48, 64), (3, 3, 48, 64), (2, 3, 48, 64))}, r"axis 0 needs min <= opt <= max, found 1, 3, 2"),
    ({"image": ((1, 3, 64), (1, 3, 64), (1, 3, 128))}, r"rank 3, the model says rank 4"),
    ({"image": ((1, 3, 40, 64), (1, 3, 48, 64), (1, 3, 48, 128))}, r"axis 2 is 48 in the model, the profile gives 40..48"),
    ({"picture": ((1, 3, 48, 64), (1, 3, 48, 64), (1, 3, 48, 128))}, r"unknown input 'picture'; the model's inputs are: image"),
    ({}, r"input 'image' is dynamic at axis 0 in the model, and profile 0 gives no range"),
])
def test_bad_profiles_are_one_line_errors(profile, message):
    with pytest.raises(ShapeError, match=message) as error:
        edgert.build(build_text_recognizer(), profiles=[profile])
    assert "\n" not in str(error.value)


def test_cli_profiles_and_errors(tmp_path):
    model_path = str(tmp_path / "ocr.onnx")
    onnx.save(build_text_recognizer(), model_path)
    plan_path = str(tmp_path / "ocr.plan")

    def edgert_cli(*args):
        return subprocess.run([sys.executable, "-m", "edgert.tools.cli", *args], capture_output=True, text=True)

    done = edgert_cli("build", model_path, "-o", plan_path, "--min-shape", "image=1x3x48x64", "--opt-shape",
                      "image=1x3x48x320", "--max-shape", "image=4x3x48x960", "--profile", "--min-shape",
                      "image=1x3x48x16", "--opt-shape", "image=1x3x48x32", "--max-shape", "image=1x3x48x64")
    assert done.returncode == 0, done.stderr
    assert "profile 1: image 1x3x48x16-64 (opt 1x3x48x32)" in done.stdout
    assert edgert.load(plan_path).num_optimization_profiles == 2
    shown = edgert_cli("inspect", plan_path)
    assert shown.returncode == 0 and "1-4x3x48x64-960" in shown.stdout, shown.stdout + shown.stderr
    bad = edgert_cli("build", model_path, "-o", plan_path, "--min-shape", "image=1x3x48x64", "--opt-shape",
                     "image=1x3x48x32", "--max-shape", "image=1x3x48x960")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "min <= opt <= max" in bad.stderr
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text('[[profile]]\nimage = {min = "1x3x48x64", opt = "1x3x48x128", max = "2x3x48x256"}\n')
    done = edgert_cli("build", model_path, "-o", plan_path, "--profiles", str(profiles_file))
    assert done.returncode == 0, done.stderr
    assert edgert.load(plan_path).get_tensor_profile_shape("image", 0)[2] == (2, 3, 48, 256)


def test_shapes_used_as_data_are_a_build_error():
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["ones"], value=helper.make_tensor("v", TensorProto.FLOAT,
                                                                                            [1], [1.0])),
             helper.make_node("Add", ["x", "ones"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(UnsupportedError, match="computed from input shapes and used as data"):
        edgert.build(model, profiles=[{"x": ((1, 4), (2, 4), (8, 4))}])
    plan = edgert.build(model, shapes={"x": (2, 4)})   # static shapes still fold it
    assert plan.document["layers"]


def _static_and_dynamic_branches():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng()
    weights = [numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32), "w"),
               numpy_helper.from_array((rng.standard_normal((8, 4)) * 0.3).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["a", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["image_out"], name="relu"),
             helper.make_node("MatMul", ["b", "fc"], ["m"], name="fc"),
             helper.make_node("Sigmoid", ["m"], ["seq_out"], name="sig")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 8, 16, 16]),
                                           helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("image_out", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("seq_out", TensorProto.FLOAT, None)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_dynamic_layers_fall_back_from_the_dla_to_the_gpu():
    model = _static_and_dynamic_branches()
    profile = [{"b": ((1, 8), (4, 8), (16, 8))}]
    options = dict(target="jetson-agx-orin", dla_core=0, precision="fp16")
    plan = edgert.build(model, profiles=profile, gpu_fallback=True, **options)
    devices = {layer["name"]: layer["device"] for layer in plan.document["layers"]}
    reasons = {layer["name"]: layer["reason"] for layer in plan.document["header"]["partition"]["layers"]}
    assert devices["conv"] == "dla:0"   # static shapes: stays on the DLA
    dynamic = next(name for name, device in devices.items() if device == "gpu")
    assert "DLA does not support dynamic dimensions" in reasons[dynamic] and "1-16x4" in reasons[dynamic]
    context = edgert.load(plan).create_execution_context()
    for batch in (1, 7, 16):
        feeds = random_inputs(model, {"b": (batch, 8)})
        ours, reference = context.execute(feeds), ort_run(model, feeds)
        assert normwise_error(ours["seq_out"], reference["seq_out"]) <= TOLERANCE
        assert normwise_error(ours["image_out"], reference["image_out"]) <= 1e-2   # fp16 on the DLA
    with pytest.raises(edgert.errors.PlacementError, match="cannot run on DLA core 0: DLA does not support dynamic"):
        edgert.build(model, profiles=profile, **options)


def test_format_1_plans_are_refused():
    data = bytearray(edgert.build(build_text_recognizer(), shapes={"image": (1, 3, 48, 64)}).to_bytes())
    key = msgpack.packb("format_version")
    at = data.index(key) + len(key)
    data[at] = 1
    with pytest.raises(PlanError, match="plan format version 1 .*older than this edgert reads.*rebuild"):
        edgert.load(bytes(data))


def test_runtime_of_a_profile_plan_imports_neither_onnx_nor_the_builder(tmp_path):
    path = tmp_path / "ocr.plan"
    edgert.build(build_text_recognizer(), profiles=[{"image": ((1, 3, 48, 64), (1, 3, 48, 96), (2, 3, 48, 128))}]
                 ).save(path)
    script = f"""
import sys
import numpy as np
import edgert.runtime
context = edgert.runtime.load({str(path)!r}).create_execution_context()
assert context.execute({{"image": np.ones((2, 3, 48, 100), np.float32)}})["probs"].shape == (2, 25, 37)
bad = sorted(m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "edgert.onnx", "edgert.passes",
                                                                    "edgert.builder", "edgert.dynamic", "onnxruntime")))
assert not bad, bad
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("corrupt,message", [
    (lambda d: next(l for l in d["layers"] if l.get("dynamic"))["dynamic"][0].__setitem__(1, ["cube", 0]),
     "is not a known expression"),
    (lambda d: next(l for l in d["layers"] if l.get("dynamic"))["dynamic"][0].__setitem__(0, ["nope"]),
     "names attr path"),
    (lambda d: d["profiles"][0]["inputs"]["image"].__setitem__("max", [2, 3, 48, 4000]),
     "do not fit its tensor"),
])
def test_corrupt_profile_plans_are_plan_errors(corrupt, message):
    from edgert.plan import write_plan
    plan = edgert.build(build_text_recognizer(), profiles=[{"image": ((1, 3, 48, 64), (1, 3, 48, 96), (2, 3, 48, 128))}])
    corrupt(plan.document)
    with pytest.raises(PlanError, match=message):
        edgert.load(write_plan(plan.document))
