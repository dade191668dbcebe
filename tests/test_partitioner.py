"""GPU/DLA partitioning: capability tables, default device and GPU fallback, placement files, the island
cost model, the loadable limit, Reformat layers and the report."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgert.errors import EdgeRTError, PlacementError
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import infer_node
from edgert.onnx.importer import import_model
from edgert.partitioner.assign import partition
from edgert.partitioner.capabilities import CapabilityTable
from edgert.partitioner.placement import PlacementFileError, load_placement
from edgert.partitioner.segments import find_segments
from edgert.passes import optimize
from edgert.targets import load_profile
from edgert.targets.layers import from_node
from edgert.targets.simulate import run_graph
from models import MODELS

ORIN, XAVIER = "jetson-agx-orin", "jetson-agx-xavier"
# The small test layers free less GPU time than a transition costs, so the cost model would return them to
# the GPU; tests of transitions pin the convolutions to the DLA.
PIN_CONVS = [{"kind": "Convolution", "device": "dla"}]
PIN_CONVS_TOML = '[[rule]]\nkind = "Convolution"\ndevice = "dla"\n'
DLA_KINDS_OF_INTEREST = {LayerKind.CONVOLUTION, LayerKind.POOLING, LayerKind.ACTIVATION, LayerKind.ELEMENTWISE,
                         LayerKind.POINTWISE}


def optimized(name: str, disabled=()) -> Graph:
    case = MODELS[name]
    graph = import_model(case.build(), case.shapes)
    optimize(graph, disabled=disabled)
    return graph


# -- small IR graphs -------------------------------------------------------------------------------
class Net:
    """Builds IR graphs layer by layer for the tests."""

    def __init__(self, shape=(1, 16, 8, 8)):
        self.graph = Graph("test")
        self.x = self.graph.add_input("x", DataType.FLOAT, shape)
        self.rng = np.random.default_rng()

    def add(self, kind, inputs, attrs=None, name="layer"):
        node = self.graph.add_node(kind, inputs, attrs or {}, name=name)
        infer_node(node)
        return node.outputs[0]

    def conv(self, x, c_out, kernel=3, name="conv", group=1, **attrs):
        c_in = x.shape[1]
        w = self.graph.constant((self.rng.standard_normal((c_out, c_in // group, kernel, kernel)) * 0.1)
                                .astype(np.float32))
        b = self.graph.constant(self.rng.standard_normal(c_out).astype(np.float32))
        attrs = {"kernel": [kernel] * 2, "strides": [1, 1], "pads": [kernel // 2] * 4, "dilations": [1, 1],
                 "group": group, **attrs}
        return self.add(LayerKind.CONVOLUTION, [x, w, b], attrs, name)

    def act(self, x, kind="relu", name="act", **attrs):
        return self.add(LayerKind.ACTIVATION, [x], {"type": kind, **attrs}, name)

    def unary(self, x, op="exp", name="unary"):
        return self.add(LayerKind.UNARY, [x], {"op": op}, name)

    def done(self, out) -> Graph:
        self.graph.add_output(out, "y")
        self.graph.verify()
        return self.graph


def check(kind, attrs, in_shape=(1, 16, 8, 8), version=2, precision="fp16", extra=()):
    net = Net(in_shape)
    out = net.add(kind, [net.x, *[net.graph.constant(e) for e in extra]], attrs)
    return CapabilityTable.for_version(version).check(from_node(out.producer()), precision)


# -- the done-when checks ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet", "mobilenetv2"])
def test_cnn_on_orin_dla_with_fallback(name):
    graph = optimized(name)
    table = CapabilityTable.for_version(2)
    verdicts = {node.name: table.check(from_node(node), "fp16") for node in graph.nodes}
    # No avoidable transition: exactly one per tensor crossing between DLA-capable and -incapable layers.
    needed = {(v.name, verdicts[u.name].ok) for n in graph.nodes for v in n.outputs for u in v.users()
              if verdicts[u.name].ok != verdicts[n.name].ok}
    report = partition(graph, ORIN, dla_core=0, gpu_fallback=True)
    graph.verify()
    for layer in report.layers:
        if layer.kind == "Reformat":
            continue
        if verdicts[layer.name].ok and LayerKind(layer.kind) in DLA_KINDS_OF_INTEREST:
            assert layer.device == "dla:0", (layer.name, layer.reason)
        if layer.device == "gpu":  # what stays on the GPU says why, with the capability rule
            assert "DLA" in layer.reason and "[rule " in layer.reason, layer
    reformats = [n for n in graph.nodes if n.kind == LayerKind.REFORMAT]
    assert report.transitions == len(reformats) == len(needed)
    assert report.transitions <= 1 and len(report.segments) == 1
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) >= {"layers", "segments", "transitions", "predicted_ms"} and isinstance(data["transitions"], int)
    assert all(set(row) >= {"name", "kind", "device", "reason"} for row in data["layers"])


def pool_model(kernel: int = 9) -> onnx.ModelProto:
    rng = np.random.default_rng()
    weights = [numpy_helper.from_array((rng.standard_normal((8, c, 3, 3)) * 0.2).astype(np.float32), f"w{i}")
               for i, c in enumerate((3, 8))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1] * 4),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("MaxPool", ["r0"], ["p0"], name="bigpool", kernel_shape=[kernel] * 2,
                              pads=[kernel // 2] * 4),
             helper.make_node("Conv", ["p0", "w1"], ["y"], name="conv1", pads=[1] * 4)]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_layer_without_fallback_fails(tmp_path):
    graph = import_model(pool_model(), None)
    optimize(graph)
    with pytest.raises(PlacementError) as info:
        partition(graph, ORIN, dla_core=0)
    message = str(info.value)
    assert "'bigpool'" in message and "Pooling" in message and "Pooling.window" in message
    assert "found kernel 9x9" in message and "--gpu-fallback" in message
    # with fallback it runs on the GPU, between two DLA segments
    graph = import_model(pool_model(), None)
    optimize(graph)
    report = partition(graph, ORIN, dla_core=0, gpu_fallback=True, placement=PIN_CONVS)
    assert report.layer("bigpool").device == "gpu" and report.transitions == 2 and len(report.segments) == 2


def test_partition_tool_exit_status(tmp_path, capsys):
    from edgert.tools import cli, partition as tool
    path = tmp_path / "pool.onnx"
    onnx.save(pool_model(), path)
    assert cli.main(["partition", str(path), "--target", ORIN, "--dla-core", "0", "--precision", "fp16"]) == 2
    assert "bigpool" in capsys.readouterr().err
    plan = str(tmp_path / "pool.plan")  # the build fails the same way, naming the layer and the rule
    assert cli.main(["build", str(path), "-o", plan, "--target", ORIN, "--dla-core", "0", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "bigpool" in err and "Pooling.window" in err and len(err.strip().splitlines()) == 1
    parser = argparse.ArgumentParser()
    tool.add_arguments(parser)
    with pytest.raises(PlacementError):
        tool.main(parser.parse_args([str(path), "--target", ORIN, "--dla-core", "0", "--precision", "fp16"]))
    pin = tmp_path / "pin.toml"
    pin.write_text(PIN_CONVS_TOML)
    assert tool.main(parser.parse_args([str(path), "--target", ORIN, "--dla-core", "0", "--gpu-fallback",
                                        "--precision", "fp16", "--placement", str(pin), "--json"])) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["transitions"] == 2 and {row["name"]: row["device"] for row in data["layers"]}["bigpool"] == "gpu"
    assert tool.main(parser.parse_args([str(path), "--target", XAVIER, "--dla-core", "1", "--gpu-fallback",
                                        "--precision", "fp16", "--placement", str(pin)])) == 0
    assert "dla:1" in capsys.readouterr().out


def write(tmp_path, text: str) -> str:
    path = tmp_path / "placement.toml"
    path.write_text(text)
    return str(path)


def test_placement_file_moves_layers(tmp_path):
    rules = write(tmp_path, '[[rule]]\nlayer = "conv_*"\ndevice = "gpu"\n\n'
                            '[[rule]]\nlayer = "conv_3"\ndevice = "dla"\n\n'
                            '[[rule]]\nkind = "pooling"\ndevice = "gpu"\n\n'
                            '[[rule]]\nlayer = "no_such_layer*"\ndevice = "gpu"\n')
    report = partition(optimized("resnet"), ORIN, dla_core=0, gpu_fallback=True, placement=rules)
    assert report.layer("conv_2").device == "gpu" and "placement rule 1" in report.layer("conv_2").reason
    assert report.layer("conv_3").device == "dla:0" and "placement rule 2" in report.layer("conv_3").reason
    assert report.layer("maxpool_1").device == "gpu" and "placement rule 3" in report.layer("maxpool_1").reason
    assert any("placement rule 4" in w and "matches no layer" in w for w in report.warnings)
    # a fused layer answers to the names it absorbed: add_1 lives in conv_3 (conv + bn + add + relu)
    moved = partition(optimized("resnet"), ORIN, dla_core=0, gpu_fallback=True,
                      placement=[{"layer": "add_1", "device": "gpu"}])
    assert moved.layer("add_1").device == "gpu" and moved.layer("add_1").name == "conv_3"


def test_placement_onto_dla_of_unsupported_layer_is_an_error():
    graph = optimized("resnet", disabled=("conv_fusion",))  # keeps the Gemm bias as a rank-2 ElementWise
    bias = next(n.name for n in graph.nodes if n.kind == LayerKind.ELEMENTWISE)
    with pytest.raises(PlacementError, match=rf"placement rule 1 \(layer '{bias}' -> dla\).*ElementWise.2d"):
        partition(graph, ORIN, gpu_fallback=True, placement=[{"layer": bias, "device": "dla"}])


def test_placement_onto_dla_with_gpu_default(tmp_path):
    graph = optimized("resnet")
    report = partition(graph, ORIN, placement=write(tmp_path, '[[rule]]\nkind = "Convolution"\ndevice = "dla:1"\n'))
    assert {p.device for p in report.layers if p.kind == "Convolution"} == {"dla:1"}
    assert {p.device for p in report.layers if p.kind == "Pooling"} == {"gpu"}
    assert report.transitions > 0 and all(s["device"] == "dla:1" for s in report.segments)


@pytest.mark.parametrize("text, message", [
    ('[[rule]]\nlayer = "a"\ndevice = "tpu"\n', "device 'tpu'"),
    ('[[rule]]\nkind = "Conv2d"\ndevice = "gpu"\n', "unknown kind 'Conv2d'"),
    ('[[rule]]\nlayer = "a"\ndevice = "gpu"\ncore = 1\n', "unknown key 'core'"),
    ('[[rule]]\ndevice = "gpu"\n', "neither a layer glob nor a kind"),
    ('[[rules]]\nlayer = "a"\n', "unknown table 'rules'"),
    ('[[rule]\n', "not valid TOML"),
])
def test_bad_placement_files(tmp_path, text, message):
    with pytest.raises(PlacementFileError, match=message):
        load_placement(write(tmp_path, text))


def test_xavier_and_orin_differ_where_tables_differ():
    def net(layer):
        n = Net()
        return n.done(n.conv(layer(n, n.conv(n.x, 16, name="conv_a")), 16, name="conv_b"))

    softmax = lambda n, x: n.add(LayerKind.SOFTMAX, [x], {"axes": [1], "log": False}, "softmax")  # noqa: E731
    divide = lambda n, x: n.add(LayerKind.ELEMENTWISE, [x, n.graph.constant(np.float32(4.0))],  # noqa: E731
                                {"op": "div"}, "divide")
    for layer, name, rule in [(softmax, "softmax", "Softmax.unsupported"), (divide, "divide", "ElementWise.op")]:
        orin = partition(net(layer), ORIN, dla_core=0, gpu_fallback=True)
        xavier = partition(net(layer), XAVIER, dla_core=0, gpu_fallback=True, placement=PIN_CONVS)
        assert orin.layer(name).device == "dla:0" and orin.transitions == 0
        assert xavier.layer(name).device == "gpu" and rule in xavier.layer(name).reason
        assert xavier.transitions == 2 and len(xavier.segments) == 2
    v1, v2 = CapabilityTable.for_version(1), CapabilityTable.for_version(2)
    assert not v1.supports_kind(LayerKind.SOFTMAX) and v2.supports_kind(LayerKind.SOFTMAX)


@pytest.mark.parametrize("kind, attrs, shape, extra, ok, rule", [
    (LayerKind.CONVOLUTION, {"kernel": [40, 40], "pads": [0] * 4}, (1, 4, 64, 64), [np.ones((4, 4, 40, 40), "f4")],
     False, "Convolution.kernel"),
    (LayerKind.CONVOLUTION, {"kernel": [3, 3], "strides": [9, 9]}, (1, 4, 64, 64), [np.ones((4, 4, 3, 3), "f4")],
     False, "Convolution.stride"),
    (LayerKind.CONVOLUTION, {"kernel": [3, 3], "pads": [3, 3, 3, 3]}, (1, 4, 16, 16), [np.ones((4, 4, 3, 3), "f4")],
     False, "Convolution.padding_vs_kernel"),
    (LayerKind.CONVOLUTION, {"kernel": [3, 3, 3]}, (1, 4, 8, 8, 8), [np.ones((4, 4, 3, 3, 3), "f4")],
     False, "Convolution.2d"),
    (LayerKind.DECONVOLUTION, {"kernel": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 4, 8, 8),
     [np.ones((4, 4, 2, 2), "f4")], False, "Deconvolution.padding"),
    (LayerKind.DECONVOLUTION, {"kernel": [2, 2], "strides": [2, 2]}, (1, 4, 8, 8), [np.ones((4, 4, 2, 2), "f4")],
     True, ""),
    (LayerKind.POOLING, {"type": "max", "kernel": [9, 9]}, (1, 4, 16, 16), [], False, "Pooling.window"),
    (LayerKind.POOLING, {"type": "lp", "kernel": [2, 2], "p": 2}, (1, 4, 16, 16), [], False, "Pooling.type"),
    (LayerKind.ACTIVATION, {"type": "clip", "alpha": 0.0, "beta": 6.0}, (1, 4, 8, 8), [], True, ""),
    (LayerKind.ACTIVATION, {"type": "clip", "alpha": -1.0, "beta": 1.0}, (1, 4, 8, 8), [], False,
     "Activation.clip_low"),
    (LayerKind.ACTIVATION, {"type": "leaky_relu", "alpha": 0.1}, (1, 4, 8, 8), [], True, ""),
    (LayerKind.ACTIVATION, {"type": "gelu_erf"}, (1, 4, 8, 8), [], False, "Activation.type"),
    (LayerKind.ACTIVATION, {"type": "relu"}, (1, 4, 8, 8, 2), [], False, "Activation.2d"),
    (LayerKind.ELEMENTWISE, {"op": "sum"}, (1, 4, 8, 8), [np.ones((1, 4, 1, 1), "f4")], True, ""),
    (LayerKind.ELEMENTWISE, {"op": "sum"}, (1, 4, 8, 8), [np.ones((1, 1, 8, 1), "f4")], False, "ElementWise.broadcast"),
    (LayerKind.ELEMENTWISE, {"op": "pow"}, (1, 4, 8, 8), [np.arange(4, dtype="f4").reshape(1, 4, 1, 1)], False,
     "ElementWise.pow_exponent"),
    (LayerKind.CONCATENATION, {"axis": 2}, (1, 4, 8, 8), [np.ones((1, 4, 8, 8), "f4")], False, "Concatenation.axis"),
    (LayerKind.LRN, {"size": 4, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, (1, 4, 8, 8), [], False, "LRN.window"),
    (LayerKind.SOFTMAX, {"axes": [1], "log": True}, (1, 4, 8, 8), [], False, "Softmax.axis"),
    (LayerKind.REDUCE, {"op": "max", "axes": [0], "keepdims": True}, (2, 4, 8, 8), [], False, "Reduce.axes"),
])
def test_table_rules(kind, attrs, shape, extra, ok, rule):
    verdict = check(kind, attrs, shape, extra=extra)
    assert verdict.ok == ok, verdict
    assert verdict.rule == rule and ("found" in verdict.reason or ok)


def test_general_rules_and_fused_layers():
    assert check(LayerKind.ACTIVATION, {"type": "relu"}, precision="fp32").rule == "general.precision"
    assert check(LayerKind.ACTIVATION, {"type": "relu"}, (5000, 4, 8, 8)).rule == "general.batch"
    assert check(LayerKind.ACTIVATION, {"type": "relu"}, (1, 4, 8, 9000)).rule == "general.dims"
    program = [{"kind": "Activation", "attrs": {"type": "relu"}, "args": [0]},
               {"kind": "Unary", "attrs": {"op": "exp"}, "args": [1]}]
    verdict = check(LayerKind.POINTWISE, {"program": program})
    assert not verdict and verdict.rule == "Unary.op" and "instruction 2" in verdict.reason
    assert check(LayerKind.POINTWISE, {"program": program[:1]})
    conv = {"kernel": [3, 3], "pads": [1] * 4}
    weights = [np.ones((4, 4, 3, 3), "f4")]
    relu = {"op": "activation", "type": "relu", "alpha": 0.0, "beta": 0.0}
    assert check(LayerKind.CONVOLUTION, dict(conv, epilogue=[relu]), (1, 4, 8, 8), extra=weights)
    verdict = check(LayerKind.CONVOLUTION, dict(conv, epilogue=[relu, {"op": "swish"}]), (1, 4, 8, 8), extra=weights)
    assert not verdict and verdict.rule == "Activation.type" and "epilogue step 2" in verdict.reason
    mystery = check(LayerKind.CONVOLUTION, dict(conv, epilogue=[{"op": "warp"}]), (1, 4, 8, 8), extra=weights)
    assert not mystery and "no DLA equivalent" in mystery.reason
    assert check(LayerKind.GATHER, {"axis": 0}, extra=[np.zeros(2, np.int64)]).rule == "Gather.unsupported"


def test_cost_model_returns_small_islands():
    def net():
        n = Net()
        return n.done(n.unary(n.act(n.unary(n.conv(n.x, 16), name="exp1"), name="relu"), name="exp2"))

    report = partition(net(), ORIN, dla_core=0, gpu_fallback=True)
    assert report.layer("relu").device == "gpu" and "cost model" in report.layer("relu").reason
    # the same rule at the graph's input: a small convolution frees less GPU time than its transition costs
    assert report.layer("conv").device == "gpu" and "cost model" in report.layer("conv").reason
    assert report.transitions == 0 and not report.segments
    pinned = partition(net(), ORIN, dla_core=0, gpu_fallback=True, placement=[{"layer": "relu", "device": "dla"}])
    assert pinned.layer("relu").device == "dla:0" and pinned.transitions == 2


def test_cost_model_is_the_same_at_the_graph_edges():
    """Issue 18: a tiny layer at the graph's output stayed on the DLA at the cost of a transition and a
    submission (0.073 ms for 0.002 ms of work) because only segments between GPU layers were judged."""
    n = Net((1, 128, 112, 112))
    head = n.conv(n.conv(n.x, 128, name="conv1"), 128, name="conv2")    # big: frees more than it costs
    graph = n.done(n.act(n.unary(head, name="exp"), name="tail_relu"))  # tiny DLA layer after a GPU layer
    report = partition(graph, ORIN, dla_core=0, gpu_fallback=True)
    assert report.layer("tail_relu").device == "gpu" and "cost model" in report.layer("tail_relu").reason
    assert report.layer("conv1").device == report.layer("conv2").device == "dla:0"
    assert report.transitions == 1 and len(report.segments) == 1
    for placement in report.layers:  # whatever stays on the DLA frees more GPU time than its overhead
        if placement.device.startswith("dla"):
            assert "default device" in placement.reason
    # a graph wholly on the DLA has no transition to save: it stays, however small
    small = Net()
    whole = partition(small.done(small.act(small.conv(small.x, 16))), ORIN, dla_core=0, gpu_fallback=True)
    assert {p.device for p in whole.layers} == {"dla:0"} and whole.transitions == 0


def test_big_islands_stay_and_loadable_limit(capsys):
    n = Net((1, 128, 128, 128))
    x = n.x
    for i in range(18):
        # 5x5 convolutions free more GPU time than the transitions around them cost
        x = n.unary(n.conv(x, 128, kernel=5, name=f"conv{i}"), op="abs" if i == 0 else "exp", name=f"exp{i}")
    graph = n.done(x)
    report = partition(graph, ORIN, dla_core=0, gpu_fallback=True)
    counts = {}
    for segment in report.segments:
        counts[segment["device"]] = counts.get(segment["device"], 0) + 1
    assert counts == {"dla:0": 16}
    limited = [p for p in report.layers if "loadable limit" in p.reason]
    assert len(limited) == 1 and limited[0].kind == "Convolution"
    # without fallback, GPU layers pinned by placement leave more segments than one core holds: an error
    n2 = Net((1, 8, 8, 8))
    x = n2.x
    for i in range(17):
        x = n2.unary(n2.act(x, name=f"relu{i}"), name=f"exp{i}")
    with pytest.raises(PlacementError, match="17 loadables, but at most 16"):
        partition(n2.done(x), ORIN, dla_core=0, placement=[{"kind": "Unary", "device": "gpu"}])


def test_reformat_layers_are_explicit_and_run():
    graph = import_model(pool_model(), None)
    optimize(graph)
    x = {"x": np.random.default_rng().standard_normal((1, 3, 16, 16)).astype(np.float32)}
    reference = run_graph(graph, x, "cpu")["y"]
    report = partition(graph, ORIN, dla_core=0, gpu_fallback=True, placement=PIN_CONVS)
    reformats = [n for n in graph.nodes if n.kind == LayerKind.REFORMAT]
    assert len(reformats) == report.transitions == 2
    first, second = reformats
    assert (first.attrs["from_device"], first.attrs["to_device"]) == ("dla:0", "gpu")
    assert (second.attrs["from_layout"], second.attrs["to_layout"]) == ("linear", "chw16")
    assert all(r.device == "gpu" and r.attrs["cost_ms"] > 0 for r in reformats)
    for node in graph.nodes:  # every layer now reads tensors that live on its own device
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and node.kind != LayerKind.REFORMAT:
                where = producer.attrs["to_device"] if producer.kind == LayerKind.REFORMAT else producer.device
                assert where == node.device, (node.name, value.name)
    got = run_graph(graph, x)["y"]
    assert np.linalg.norm(got - reference) / np.linalg.norm(reference) < 1e-2


def test_report_predicted_times_and_table():
    report = partition(optimized("mobilenetv2"), ORIN, dla_core=0, gpu_fallback=True)
    times = report.predicted_ms
    assert times["dla:0"] > 0 and times["dla_submit"] > 0 and "gpu" in times and "reformat" in times
    assert times["total"] == pytest.approx(sum(v for k, v in times.items() if k != "total"))
    assert report.segments[0]["predicted_ms"] == pytest.approx(times["dla:0"], rel=1e-3)
    text = report.format()
    assert "1 DLA segment" in text and "segment 0 on dla:0" in text and "predicted:" in text


def test_gpu_default_and_targets_without_dla_or_gpu():
    report = partition(optimized("resnet"), ORIN)
    assert {p.device for p in report.layers} == {"gpu"} and report.transitions == 0 and not report.segments
    with pytest.raises(PlacementError, match="has no DLA"):
        partition(optimized("resnet"), "jetson-orin-nano", dla_core=0)
    with pytest.raises(PlacementError, match=r"2 DLA cores \(0..1\)"):
        partition(optimized("resnet"), ORIN, dla_core=2)
    cpu_only = load_profile(ORIN).__class__(**{**load_profile("host").__dict__, "gpu": None})
    graph = optimized("resnet")
    report = partition(graph, cpu_only)
    assert {n.device for n in graph.nodes} == {"cpu"} and "no GPU" in report.layers[0].reason
    with pytest.raises(PlacementError):
        partition(optimized("resnet"), cpu_only, dla_core=0)


def test_fp32_build_cannot_use_the_dla():
    with pytest.raises(PlacementError, match="general.precision"):
        partition(optimized("resnet"), ORIN, dla_core=0, precision="fp32")
    report = partition(optimized("resnet"), ORIN, dla_core=0, gpu_fallback=True, precision="fp32")
    assert {p.device for p in report.layers} == {"gpu"}
    with pytest.raises(EdgeRTError, match="unknown precision"):
        partition(optimized("resnet"), ORIN, precision="bf16")


def test_segments_are_convex():
    # conv_a (DLA) feeds both exp (GPU) and add (DLA); add also reads exp: one component, two loadables
    n = Net()
    a = n.conv(n.x, 16, name="conv_a")
    e = n.unary(a, name="exp")
    out = n.add(LayerKind.ELEMENTWISE, [a, e], {"op": "sum"}, "add")
    graph = n.done(out)
    devices = {id(node): ("gpu" if node.name == "exp" else "dla:0") for node in graph.nodes}
    segments = find_segments(graph, devices)
    assert [s.names for s in segments] == [["conv_a"], ["add"]]


# -- throughput of engines running at once -----------------------------------------------------------------
def test_combine_shares_the_gpu_and_the_dram_bandwidth():
    from edgert.partitioner.throughput import EngineLoad, combine
    gpu = EngineLoad("gpu", 100, 50.0, 50.0, 100 * 30e6, 10)          # 2000 img/s alone, 30 MB per image
    dla = EngineLoad("dla:0", 2, 4.0, 0.4, 2 * 30e6, 10)              # 500 img/s; 0.2 ms GPU per image
    rates, demand, scale = combine([gpu, dla], bandwidth_gbs=1000.0)
    # the DLA engine's GPU work (500 img/s x 0.2 ms = 10% of the GPU) comes out of the GPU's own rate
    assert scale == 1.0 and rates["dla:0"] == pytest.approx(500) and rates["gpu"] == pytest.approx(1800)
    assert demand == pytest.approx((1800 + 500) * 30e6 / 1e9)
    bound, demand, scale = combine([gpu, dla], bandwidth_gbs=34.5)     # half of the 69 GB/s they would need
    assert scale == pytest.approx(0.5) and sum(bound.values()) == pytest.approx(1150)
    greedy = EngineLoad("dla:1", 1, 1.0, 2.0, 1e6, 1)                 # needs 2 s of GPU per second
    alone, _, _ = combine([gpu, greedy], bandwidth_gbs=1e6)
    assert alone["gpu"] == 0.0 and alone["dla:1"] == pytest.approx(500)


def test_parse_engines():
    from edgert.partitioner.throughput import parse_engines
    orin = load_profile(ORIN)
    assert parse_engines("all", orin) == ["gpu", "dla:0", "dla:1"]
    assert parse_engines("gpu, dla1,dla1", orin) == ["gpu", "dla:1"]
    with pytest.raises(PlacementError, match="engine 'dla2' does not exist.*gpu, dla0, dla1"):
        parse_engines("gpu,dla2", orin)
    with pytest.raises(PlacementError, match="engine 'dla0' does not exist"):
        parse_engines("dla0", load_profile("jetson-orin-nano"))


def test_partition_tool_throughput(tmp_path, capsys):
    from edgert.tools import cli
    path = tmp_path / "conv.onnx"
    n = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)
    w = numpy_helper.from_array(np.random.default_rng().standard_normal((64, 32, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([n], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 56, 56])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 56, 56])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    argv = ["partition", str(path), "--target", ORIN, "--throughput", "--precision", "int8"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "gpu" in out and "dla:0" in out and "dla:1" in out and "shared DRAM bandwidth" in out and "total:" in out
    assert cli.main(argv + ["--engines", "gpu,dla0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["engine"] for e in data["engines"]] == ["gpu", "dla:0"]
    assert data["total_ips"] == pytest.approx(sum(e["concurrent_ips"] for e in data["engines"]), rel=1e-3)
    assert all(e["concurrent_ips"] <= e["alone_ips"] + 1e-6 for e in data["engines"])
    assert cli.main(argv + ["--engines", "dla0", "--json", "--dla-sparse"]) == 0
    sparse = json.loads(capsys.readouterr().out)
    assert sparse["dla_sparse"] is True and data["dla_sparse"] is False
    assert sparse["engines"][0]["alone_ips"] > data["engines"][1]["alone_ips"]   # the same DLA core, sparse
    assert cli.main(argv + ["--engines", "gpu,dla3"]) == 2
    assert "dla3" in capsys.readouterr().err
    assert cli.main(argv[:-2] + ["--precision", "fp32"]) == 2
    capsys.readouterr()
    # Orin's efficiencies are fitted to measurements; Xavier's DLA ones are not, and the report says so
    assert data["estimated_constants"] == [] and "note:" not in out
    xavier = argv[:3] + ["jetson-agx-xavier"] + argv[4:]
    assert cli.main(xavier) == 0
    assert "dla_mac_efficiency" in capsys.readouterr().out.split("note:")[1]
    assert cli.main(xavier + ["--engines", "gpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["estimated_constants"] == []
