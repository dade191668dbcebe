"""int8 codes between int8 layers (edgert/int8_codes.py, kernels/cpu/int8.py, plan format 3).

A plan built with codes must compute exactly what the plan without them computes (the int8 kernels quantize
a dequantized input back to the very codes), hold int8 tensors with their scales between int8 layers, convert
with explicit Reformat layers where precision changes, and need a smaller arena. Models are built with
onnx.helper, random weights, calibration on random batches, and fresh random inputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))

import edgert  # noqa: E402
from edgert.errors import PlanError  # noqa: E402
from edgert.plan import read_plan, write_plan  # noqa: E402

ALL_INT8 = [{"layer": "*", "precision": "int8"}]
SHAPE = (2, 3, 12, 12)


def _model(rng):
    """conv+relu, conv with a residual add, relu, max and average pooling, a Scale (BatchNorm), a Flatten
    (data movement: moves the codes), a Gemm, and a graph output straight from a relu."""
    def weights(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
    inits = [weights("w1", 8, 3, 3, 3), weights("b1", 8), weights("w2", 8, 8, 3, 3), weights("w3", 10, 8 * 3 * 3),
             weights("gamma", 8), weights("beta", 8), weights("mean", 8),
             numpy_helper.from_array((rng.random(8) + 0.5).astype(np.float32), "var")]
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), node("Add", ["c2", "r1"], ["a"]),
             node("Relu", ["a"], ["r2"]), node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("BatchNormalization", ["p", "gamma", "beta", "mean", "var"], ["bn"]),
             node("AveragePool", ["bn"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Flatten", ["ap"], ["f"]), node("Gemm", ["f", "w3"], ["y"], transB=1),
             node("Relu", ["p"], ["side"])]
    graph = helper.make_graph(nodes, "codes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("side", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def built():
    rng = np.random.default_rng()
    model = _model(rng)
    calib = [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(3)]
    options = dict(precision="int8", calib=calib, precision_rules=ALL_INT8, calibrator="minmax")
    return {"model": model, "codes": edgert.build(model, **options),
            "floats": edgert.build(model, int8_codes=False, **options), "fp32": edgert.build(model)}


def _run(plan, x):
    return edgert.load(plan.to_bytes()).create_execution_context().execute({"x": x})


def _tensors(plan, ids):
    return [plan.document["tensors"][i] for i in ids if i >= 0]


def test_codes_compute_the_float_plans_outputs_bit_for_bit(built):
    rng = np.random.default_rng()
    for _ in range(3):
        x = (rng.standard_normal(SHAPE) * rng.uniform(0.5, 3)).astype(np.float32)   # also saturating inputs
        with_codes, without = _run(built["codes"], x), _run(built["floats"], x)
        for name in ("y", "side"):
            assert with_codes[name].dtype == np.float32
            np.testing.assert_array_equal(with_codes[name], without[name])


def test_int8_layers_read_and_write_codes_with_their_scales(built):
    plan = built["codes"]
    coders = [layer for layer in plan.layers if layer["attrs"].get("int8") and layer["kind"] != "Reformat"
              and _tensors(plan, layer["outputs"])[0]["dtype"] == "int8"]
    assert {layer["kind"] for layer in coders} >= {"Convolution", "Pooling", "Scale"}, coders
    for layer in coders:
        spec = layer["attrs"]["int8"]
        out, = _tensors(plan, layer["outputs"])
        assert out["scale"] == spec["output_scale"]
        for slot, index in enumerate(layer["inputs"]):
            tensor = plan.document["tensors"][index]
            if index >= 0 and index not in {c["tensor"] for c in plan.document["constants"]}:
                assert tensor["dtype"] == "int8" and tensor["scale"] == spec["input_scales"][slot], layer["name"]
    assert plan.header["int8_codes"]["code_tensors"] == sum("scale" in t for t in plan.document["tensors"])
    assert not any("scale" in t for t in built["floats"].document["tensors"])
    assert "int8_codes" not in built["floats"].header


def test_reformats_where_precision_changes(built):
    plan = built["codes"]
    reformats = [layer for layer in plan.layers if layer["kind"] == "Reformat"]
    by_name = {layer["name"]: layer for layer in reformats}
    quantize = by_name["quantize(x)"]       # the graph input, before the first convolution
    assert quantize["attrs"]["to_dtype"] == "int8" and _tensors(plan, quantize["outputs"])[0]["dtype"] == "int8"
    dequantize = [layer for layer in reformats if layer["attrs"]["to_dtype"] == "float32"]
    assert not dequantize, reformats   # the int8 layers producing the outputs read codes and write float32
    for name in ("y", "side"):
        layer = next(layer for layer in plan.layers if layer["name"] == name)
        assert [t["dtype"] for t in _tensors(plan, layer["inputs"][:1] + layer["outputs"])] == ["int8", "float32"]
    for layer in reformats:
        assert layer["attrs"]["cost_ms"] > 0 and layer["attrs"]["scale"] > 0
        source, = _tensors(plan, layer["inputs"])
        if layer["attrs"]["to_dtype"] == "float32":
            assert source["dtype"] == "int8" and source["scale"] == layer["attrs"]["scale"]
    # every reader of a code tensor is an int8 layer, a dequantize Reformat or a layer moving the codes (Flatten)
    code_ids = {i for i, t in enumerate(plan.document["tensors"]) if "scale" in t}
    carriers = 0
    for layer in plan.layers:
        if code_ids & set(layer["inputs"]):
            moved = layer["kind"] == "Shuffle" and set(layer["outputs"]) <= code_ids
            carriers += moved
            assert layer["attrs"].get("int8") or layer["attrs"].get("to_dtype") == "float32" or moved, layer["name"]
    assert carriers == 1 == plan.header["int8_codes"]["carriers"]
    # graph outputs stay float32
    for binding in plan.document["bindings"]["outputs"]:
        assert binding["dtype"] == "float32"


def test_inspect_shows_the_reformats(built, tmp_path):
    path = tmp_path / "codes.plan"
    built["codes"].save(path)
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "inspect", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    layers = {layer["name"]: layer for layer in shown["layers"]}
    assert layers["quantize(x)"]["outputs"][0]["scale"] > 0 and layers["quantize(x)"]["kind"] == "Reformat"
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "inspect", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if " quantize(x) " in line)
    assert "quantize(x)_out 2x3x12x12 int8" in line and "us (estimate)" in line, line


def test_arena_counts_real_bytes(built):
    fp32 = built["fp32"].document["memory"]["arena_bytes"]
    floats = built["floats"].document["memory"]["arena_bytes"]
    codes = built["codes"].document["memory"]["arena_bytes"]
    assert codes < floats and codes <= 0.5 * fp32, (codes, floats, fp32)


def test_mobilenet_like_arena_is_a_quarter_of_fp32():
    from models import build_mobilenetv2

    rng = np.random.default_rng()
    model = build_mobilenetv2()
    name = model.graph.input[0].name
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    calib = [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(2)]
    fp32 = edgert.build(model).document["memory"]["arena_bytes"]
    plan = edgert.build(model, precision="int8", calib=calib)
    assert plan.document["memory"]["arena_bytes"] <= 0.3 * fp32
    floats = edgert.build(model, precision="int8", calib=calib, int8_codes=False)
    x = rng.standard_normal(shape).astype(np.float32)
    a = edgert.load(plan.to_bytes()).create_execution_context().execute({name: x})
    b = edgert.load(floats.to_bytes()).create_execution_context().execute({name: x})
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_plan_round_trip_is_format_3(built):
    data = built["codes"].to_bytes()
    document = read_plan(data)
    assert document["header"]["format_version"] == 3
    assert write_plan(document) == data
    assert read_plan(built["floats"].to_bytes())["header"]["format_version"] == 2


def _resigned(document) -> bytes:
    return write_plan(document)


def test_a_bad_scale_is_a_plan_error(built):
    document = read_plan(built["codes"].to_bytes())
    coded = next(t for t in document["tensors"] if "scale" in t)
    for bad in (0.0, -1.0, float("inf"), "x"):
        coded["scale"] = bad
        with pytest.raises(PlanError, match="scale"):
            read_plan(_resigned(document))
    document = read_plan(built["codes"].to_bytes())
    floating = next(t for t in document["tensors"] if t["dtype"] == "float32")
    floating["scale"] = 0.5
    with pytest.raises(PlanError, match="on an int8 tensor"):
        read_plan(_resigned(document))


def test_codes_read_at_another_scale_are_refused_at_load(built):
    document = read_plan(built["codes"].to_bytes())
    coded = next(t for t in document["tensors"] if "scale" in t and t["name"] != "quantize(x)_out")
    coded["scale"] *= 2
    with pytest.raises(PlanError, match="int8 codes of tensor"):
        edgert.load(_resigned(document))


def test_cuda_builds_take_codes_only_when_asked(built):
    """The CUDA int8 kernels read and write codes (tests/test_cuda_int8.py, on the emulator); until measured on a
    GPU, plans for CUDA kernels default to float tensors."""
    rng = np.random.default_rng()
    calib = [{"x": rng.standard_normal(SHAPE).astype(np.float32)}]
    later = edgert.build(built["model"], precision="int8", calib=calib, cpu_only_aliases=False)
    assert not any("scale" in t for t in later.document["tensors"])
    asked = edgert.build(built["model"], precision="int8", calib=calib, cpu_only_aliases=False, int8_codes=True)
    assert any("scale" in t for t in asked.document["tensors"])


def test_fp32_and_fp16_plans_have_no_codes(built):
    assert not any(t["dtype"] == "int8" for t in built["fp32"].document["tensors"])
    plan = edgert.build(built["model"], precision="fp16", int8_codes=True)
    assert not any(t["dtype"] == "int8" for t in plan.document["tensors"])
    assert "int8_codes" not in plan.header


def test_quantize_reformat_kernel_matches_the_int8_kernels_rounding():
    from edgert.kernels.cpu.int8 import quantize_codes, reformat_codes

    rng = np.random.default_rng()
    x = (rng.standard_normal(1000) * 3).astype(np.float32)
    x[:4] = [0.5 * 0.02, -0.5 * 0.02, 1e9, -1e9]         # ties and saturation
    codes = np.empty(x.shape, np.int8)
    reformat_codes({"scale": 0.02}, [x], [codes])
    np.testing.assert_array_equal(codes, quantize_codes(x, 0.02).astype(np.int8))
    back = np.empty(x.shape, np.float32)
    reformat_codes({"scale": 0.02}, [codes], [back])
    np.testing.assert_array_equal(back, (codes.astype(np.float64) * 0.02).astype(np.float32))


def _dynamic_model(rng):
    def weights(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), node("Relu", ["c2"], ["r2"]),
             node("GlobalAveragePool", ["r2"], ["y"])]
    graph = helper.make_graph(nodes, "dynamic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [weights("w1", 8, 3, 3, 3), weights("w2", 8, 8, 3, 3)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("codes", [None, False])
def test_int8_profile_build_calibrates_once_and_matches_static_plans(codes, tmp_path):
    """Formerly every probe calibrated its own graph: batches of 2 through the batch-1 probe broke the CPU conv."""
    rng = np.random.default_rng()
    model = _dynamic_model(rng)
    cache = str(tmp_path / "calibration.json")
    calib = [{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
    plan = edgert.build(model, profiles=[{"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}], precision="int8",
                        calib=calib, calib_cache=cache, int8_codes=codes)
    assert any(t["dtype"] == "int8" for t in plan.document["tensors"]) == (codes is None)
    context = edgert.load(plan.to_bytes()).create_execution_context()
    for batch in (1, 3, 4):
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        static = edgert.build(model, shapes={"x": (batch, 3, 8, 8)}, precision="int8", calib_cache=cache,
                              int8_codes=codes)
        want = edgert.load(static.to_bytes()).create_execution_context().execute({"x": x})["y"]
        np.testing.assert_array_equal(context.execute({"x": x})["y"], want)


def test_calibration_batches_of_another_shape_are_a_clear_error():
    from edgert.calibration import CalibrationError

    rng = np.random.default_rng()
    calib = [{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}]
    with pytest.raises(CalibrationError, match=r"calibration batch 0 gives input 'x' shape \(2, 3, 8, 8\)"):
        edgert.build(_dynamic_model(rng), shapes={"x": (1, 3, 8, 8)}, precision="int8", calib=calib)


def test_a_pointwise_chain_between_convolutions_reads_and_writes_codes():
    """conv_fusion off: the add and tanh of two convolutions stay one PointWise layer of their own."""
    rng = np.random.default_rng()
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), node("Conv", ["x", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             node("Add", ["c1", "c2"], ["a"]), node("Tanh", ["a"], ["t"]),
             node("Conv", ["t", "w3"], ["c3"], pads=[1, 1, 1, 1]), node("Relu", ["c3"], ["r"]),
             node("GlobalAveragePool", ["r"], ["y"])]
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in (("w1", (8, 3, 3, 3)), ("w2", (8, 3, 3, 3)), ("w3", (8, 8, 3, 3)))]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calib = [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(2)]
    options = dict(precision="int8", calib=calib, precision_rules=ALL_INT8, disabled_passes=["conv_fusion"])
    codes, floats = edgert.build(model, **options), edgert.build(model, int8_codes=False, **options)
    pointwise = next(layer for layer in codes.layers if layer["kind"] == "PointWise")
    assert all(t["dtype"] == "int8" for t in _tensors(codes, pointwise["inputs"] + pointwise["outputs"]))
    x = (rng.standard_normal(SHAPE) * 2).astype(np.float32)
    np.testing.assert_array_equal(_run(codes, x)["y"], _run(floats, x)["y"])


def test_compare_per_layer_reads_codes_as_their_values(built):
    """edgert compare --per-layer: a code tensor compares by the values it stands for (codes x scale)."""
    pytest.importorskip("onnxruntime")
    from edgert.tools.compare import compare

    model = type(built["model"]).FromString(built["model"].SerializeToString())
    for index, onnx_node in enumerate(model.graph.node):   # per-layer matching goes by ONNX node names
        onnx_node.name = f"node{index}"
    rng = np.random.default_rng()
    calib = [{"x": rng.standard_normal(SHAPE).astype(np.float32)}]
    options = dict(precision="int8", calib=calib, precision_rules=ALL_INT8)
    x = {"x": rng.standard_normal(SHAPE).astype(np.float32)}
    with_codes = compare(model, edgert.build(model, **options), x, per_layer=True)["layers"]
    without = compare(model, edgert.build(model, int8_codes=False, **options), x, per_layer=True)["layers"]
    assert [e["layer"] for e in with_codes] == [e["layer"] for e in without] and len(with_codes) >= 4
    for a, b in zip(with_codes, without):
        assert a["normwise_rel"] == b["normwise_rel"], (a, b)


# -- data movement carrying codes (Concatenation, Shuffle, Slice, nearest Resize, Padding, Identity) -------------
def _neck_model(rng, batch=2, pooled=True):
    """An inception-like tower (two convolutions and a max pool concatenated), a YOLO-like neck (nearest
    upsample, slice, zero pad, reshape round trip) and a convolution after it (+ a global pool: ``pooled``)."""
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), node("Conv", ["r1", "w3"], ["c3"]),
             node("MaxPool", ["r1"], ["mp"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
             node("Concat", ["c2", "c3", "mp"], ["cat"], axis=1),
             node("Resize", ["cat", "", "up_scales"], ["up"], mode="nearest"),
             node("Slice", ["up", "starts", "ends", "axes"], ["sl"]), node("Pad", ["sl", "pads"], ["pd"]),
             node("Reshape", ["pd", "flat"], ["fl"]), node("Reshape", ["fl", "back"], ["bk"]),
             node("Conv", ["bk", "w4"], ["c4"]), node("Relu", ["c4"], ["r4" if pooled else "y"])]
    nodes += [node("GlobalAveragePool", ["r4"], ["y"])] if pooled else []
    consts = {"w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
              "w2": (rng.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32),
              "w3": (rng.standard_normal((6, 8, 1, 1)) * 0.3).astype(np.float32),
              "w4": (rng.standard_normal((5, 18, 3, 3)) * 0.3).astype(np.float32),
              "up_scales": np.float32([1, 1, 2, 2]), "starts": np.int64([1]), "ends": np.int64([17]),
              "axes": np.int64([2]), "pads": np.int64([0, 0, 1, 1, 0, 0, 1, 1]),
              "flat": np.int64([batch, -1]), "back": np.int64([batch, 18, 18, 22])}
    shape = (batch, 3, 10, 10)
    graph = helper.make_graph(nodes, "neck", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shape


def _layer_io(plan, name):
    layer = next(layer for layer in plan.layers if layer["name"] == name)
    return _tensors(plan, layer["inputs"]), _tensors(plan, layer["outputs"])


@pytest.mark.parametrize("rules", [None, ALL_INT8])
def test_data_movement_layers_carry_codes(rules):
    rng = np.random.default_rng()
    model, shape = _neck_model(rng)
    calib = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(2)]
    options = dict(precision="int8", calib=calib, precision_rules=rules)
    codes, floats = edgert.build(model, **options), edgert.build(model, int8_codes=False, **options)
    kinds = {layer["name"]: layer["kind"] for layer in codes.layers}
    carried = [name for name, kind in kinds.items() if kind in ("Concatenation", "Resize", "Slice", "Padding")]
    assert len(carried) == 4, kinds
    for name in carried:   # codes in, the same codes out
        inputs, (out,) = _layer_io(codes, name)
        assert out["dtype"] == "int8" and {t["scale"] for t in inputs if t["dtype"] == "int8"} == {out["scale"]}
    reformats = sorted(name for name, kind in kinds.items() if kind == "Reformat")
    # no bouncing through float between int8 layers: the input's quantize, a dequantize before an fp32 head
    assert [name for name in reformats if name.startswith("quantize(")] == ["quantize(x)"], reformats
    assert len(reformats) <= 2, reformats
    assert codes.header["int8_codes"]["carriers"] >= 4
    assert not any(layer["kind"] == "Cast" for layer in codes.layers)   # nearest Resize follows: no fp16 detour
    assert codes.document["memory"]["arena_bytes"] < 0.75 * floats.document["memory"]["arena_bytes"]
    for _ in range(2):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3)).astype(np.float32)
        np.testing.assert_array_equal(_run(codes, x)["y"], _run(floats, x)["y"])


def test_calibration_gives_a_concats_inputs_its_scale_and_the_concat_runs_in_place():
    rng = np.random.default_rng()
    model, shape = _neck_model(rng, batch=1)
    model.graph.node[4].op_type, model.graph.node[4].input[:] = "Conv", ["r1", "w5"]   # 3 convs: their own buffers
    del model.graph.node[4].attribute[:]
    model.graph.node[4].attribute.append(helper.make_attribute("pads", [2, 2, 2, 2]))
    model.graph.initializer.append(numpy_helper.from_array(rng.standard_normal((8, 8, 5, 5)).astype(np.float32), "w5"))
    calib = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(2)]
    plan = edgert.build(model, precision="int8", calib=calib, calibrator="entropy")
    inputs, (out,) = _layer_io(plan, "cat")
    assert [t["scale"] for t in inputs] == [out["scale"]] * 3
    steps = plan.document["memory"]["elided"]   # the producers write int8 codes into their slices of the concat
    assert [plan.layers[step]["name"] for step in steps] == ["cat"], steps
    floats = edgert.build(model, precision="int8", calib=calib, calibrator="entropy", int8_codes=False)
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(_run(plan, x)["y"], _run(floats, x)["y"])


def test_concat_of_codes_at_different_scales_is_dequantized():
    """A scale from Q/DQ nodes is kept as the model gives it: the concat of codes at two scales is no carrier,
    it reads dequantized values (still exactly the plan without codes)."""
    rng = np.random.default_rng()
    model, shape = _neck_model(rng)
    nodes = list(model.graph.node)
    model.graph.node[5].input[0] = "c2_dq"
    qdq = [helper.make_node("QuantizeLinear", ["c2", "qs", "qz"], ["c2_q"]),
           helper.make_node("DequantizeLinear", ["c2_q", "qs", "qz"], ["c2_dq"])]
    del model.graph.node[:]
    model.graph.node.extend(nodes[:5] + qdq + nodes[5:])
    model.graph.node[7].input[0] = "c2_dq"
    model.graph.initializer.extend([numpy_helper.from_array(np.float32(0.07), "qs"),
                                    numpy_helper.from_array(np.int8(0), "qz")])
    calib = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(2)]
    codes = edgert.build(model, precision="int8", calib=calib)
    inputs, (out,) = _layer_io(codes, "cat")
    assert out["dtype"] == "float32" and all(t["dtype"] == "float32" for t in inputs), (inputs, out)
    producers = {t: layer["name"] for layer in codes.layers for t in layer["outputs"]}
    cat = next(layer for layer in codes.layers if layer["name"] == "cat")
    assert all(producers[t].startswith("dequantize(") for t in cat["inputs"])
    floats = edgert.build(model, precision="int8", calib=calib, int8_codes=False)
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(_run(codes, x)["y"], _run(floats, x)["y"])


def test_a_carrier_at_another_scale_or_interpolating_is_a_plan_error():
    rng = np.random.default_rng()
    model, shape = _neck_model(rng)
    plan = edgert.build(model, precision="int8", calib=[{"x": rng.standard_normal(shape).astype(np.float32)}])
    document = read_plan(plan.to_bytes())
    slice_layer = next(layer for layer in document["layers"] if layer["kind"] == "Slice")
    document["tensors"][slice_layer["outputs"][0]]["scale"] *= 2
    with pytest.raises(PlanError, match="moves int8 codes"):
        edgert.load(_resigned(document))
    document = read_plan(plan.to_bytes())
    resize = next(layer for layer in document["layers"] if layer["kind"] == "Resize")
    resize["attrs"]["mode"] = "linear"
    with pytest.raises(PlanError, match="computes new values"):
        edgert.load(_resigned(document))
