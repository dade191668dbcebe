"""The TensorRT API's builder config, logger, parser errors, calibrators, profiler and inspector."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgert as trt
from helpers import normwise_error
from test_trt_api_samples import CollectingLogger, CollectingProfiler, conv_onnx_model

rng = np.random.default_rng()


def conv_relu_network(builder, channels=8):
    network = builder.create_network(0)
    x = network.add_input("x", trt.float32, (1, 3, 8, 8))
    w = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.3
    conv = network.add_convolution_nd(x, channels, (3, 3), w, np.zeros(channels, np.float32))
    conv.padding_nd = (1, 1)
    relu = network.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    # a last layer: edgert keeps the layers that write network outputs in fp32, int8 applies to the others
    head = network.add_convolution_nd(relu.get_output(0), 4, (1, 1), rng.standard_normal((4, channels))
                                      .astype(np.float32))
    head.get_output(0).name = "y"
    network.mark_output(head.get_output(0))
    return network, w


def run(engine, feeds: dict) -> dict:
    context = engine.create_execution_context()
    outputs = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            outputs[name] = np.zeros(engine.get_tensor_shape(name), trt.nptype(engine.get_tensor_dtype(name)))
    for name, array in list(feeds.items()) + list(outputs.items()):
        context.set_tensor_address(name, array.ctypes.data)
    context.execute_async_v3(0)
    return outputs


def test_config_is_typed_and_refuses_what_edgert_cannot_do():
    config = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(AttributeError):
        config.DLA_cor = 0     # a misspelt setting is an error, not an ignored option
    with pytest.raises(trt.UnsupportedError, match="REFIT"):
        config.set_flag(trt.BuilderFlag.REFIT)
    with pytest.raises(trt.UnsupportedError, match="DLA_MANAGED_SRAM"):
        config.set_memory_pool_limit(trt.MemoryPoolType.DLA_MANAGED_SRAM, 1 << 20)
    assert config.get_flag(trt.BuilderFlag.TF32) and not config.get_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.FP16)
    assert config.precision == "fp16" and config.flags & (1 << int(trt.BuilderFlag.FP16))
    config.clear_flag(trt.BuilderFlag.FP16)
    assert config.precision == "fp32"


def test_builder_warnings_reach_the_users_logger_and_failures_return_none():
    logger = CollectingLogger()
    builder = trt.Builder(logger)
    network, _ = conv_relu_network(builder)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)      # no calibrator, no dynamic ranges: the builder warns
    assert builder.build_serialized_network(network, config) is not None
    warnings = [m for s, m in logger.messages if s == trt.Logger.WARNING]
    assert any("int8 requested" in m for m in warnings), logger.messages
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 64)   # far below the arena the plan needs
    assert builder.build_serialized_network(network, config) is None
    assert isinstance(builder.last_error, trt.ShapeError)
    assert any(s == trt.Logger.ERROR and "arena" in m for s, m in logger.messages)


def test_dynamic_range_gives_int8_scales_without_calibration():
    builder = trt.Builder(CollectingLogger())
    network, w = conv_relu_network(builder)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    for i in range(network.num_inputs):
        network.get_input(i).set_dynamic_range(-4.0, 4.0)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            layer.get_output(j).set_dynamic_range(-8.0, 8.0)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    engine = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(network, config))
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    # int8 codes: a quantize Reformat before the int8 convolution, a dequantize one after it (edgert.int8_codes)
    kinds = [layer["kind"] for layer in info["Layers"]]
    assert kinds[0] == kinds[2] == "Reformat" and len(kinds) == 4, kinds
    assert [layer["precision"] for layer in info["Layers"] if layer["kind"] != "Reformat"] == ["int8", "fp32"]
    fp32 = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(
        network, builder.create_builder_config()))
    error = normwise_error(run(engine, {"x": x})["y"], run(fp32, {"x": x})["y"])
    assert 0 < error < 0.1


class Calibrator(trt.IInt8EntropyCalibrator2):
    def __init__(self, batches, cache=None):
        trt.IInt8EntropyCalibrator2.__init__(self)
        self.batches, self.cache, self.written = list(batches), cache, None

    def get_batch_size(self):
        return 1

    def get_batch(self, names):
        if not self.batches:
            return None
        self.current = np.ascontiguousarray(self.batches.pop(0))
        return [self.current.ctypes.data]   # host pointers, as a TensorRT calibrator hands device pointers

    def read_calibration_cache(self):
        return self.cache

    def write_calibration_cache(self, cache):
        self.written = bytes(cache)


def test_int8_calibrator_with_host_pointers_and_its_cache():
    builder = trt.Builder(CollectingLogger())
    network, _ = conv_relu_network(builder)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    calibrator = Calibrator(rng.standard_normal((4, 1, 3, 8, 8)).astype(np.float32))
    config.int8_calibrator = calibrator
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, builder.last_error
    assert calibrator.batches == [] and "scales" in json.loads(calibrator.written)
    again = Calibrator([], cache=calibrator.written)   # the cache alone: no batches needed
    config.int8_calibrator = again
    cached = builder.build_serialized_network(network, config)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    first, second = (run(trt.Runtime().deserialize_cuda_engine(p), {"x": x})["y"] for p in (plan, cached))
    np.testing.assert_array_equal(first, second)
    layers = json.loads(trt.Runtime().deserialize_cuda_engine(cached).create_engine_inspector()
                        .get_engine_information())["Layers"]
    assert layers[0]["precision"] == "int8"


def test_parser_reports_unsupported_nodes_by_index_and_op():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Frobnicate", ["r"], ["y"], name="frob", domain="")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    logger = CollectingLogger()
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse(model.SerializeToString())
    assert parser.num_errors == 1
    error = parser.get_error(0)
    assert (error.node(), error.node_name(), error.node_operator()) == (1, "frob", "Frobnicate")
    assert "not supported" in error.desc()
    assert parser.supports_operator("Conv") and not parser.supports_operator("Frobnicate")
    assert not parser.parse(b"not a model") and "not an ONNX model" in parser.get_error(parser.num_errors - 1).desc()


def test_parsed_network_can_be_edited_like_a_built_one(tmp_path):
    model = conv_onnx_model()
    builder = trt.Builder(CollectingLogger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, None).parse(model.SerializeToString())
    relu_output = network.get_layer(1).get_output(0)
    network.mark_output(relu_output)          # an extra output of an intermediate tensor, as debugging scripts do
    engine = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(
        network, builder.create_builder_config()))
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    outputs = run(engine, {"x": x})
    assert set(outputs) == {"y", relu_output.name}
    np.testing.assert_allclose(outputs["y"], outputs[relu_output.name].mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_profiler_reports_every_layer_that_runs():
    builder = trt.Builder(CollectingLogger())
    network, _ = conv_relu_network(builder)
    engine = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(
        network, builder.create_builder_config()))
    context = engine.create_execution_context()
    context.profiler = CollectingProfiler()
    x, y = rng.standard_normal((1, 3, 8, 8)).astype(np.float32), np.zeros((1, 4, 8, 8), np.float32)
    assert context.execute_v2([x.ctypes.data, y.ctypes.data])
    layers = json.loads(engine.create_engine_inspector().get_engine_information())["Layers"]
    assert [name for name, _ in context.profiler.times] == [layer["name"] for layer in layers if layer["runs"]]
    assert all(ms >= 0 for _, ms in context.profiler.times)
    with pytest.raises(trt.InputError, match="addresses"):
        context.execute_v2([x.ctypes.data])


def test_dla_placement_through_the_config():
    builder = trt.Builder(CollectingLogger())
    builder.target = "jetson-agx-orin"
    assert builder.num_DLA_cores == 2 and builder.platform_has_fast_fp16
    network, _ = conv_relu_network(builder)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    conv = network.get_layer(0)
    assert config.can_run_on_DLA(conv)
    config.set_device_type(conv, trt.DeviceType.DLA)
    config.DLA_core = 1
    engine = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(network, config))
    layers = json.loads(engine.create_engine_inspector().get_engine_information())["Layers"]
    devices = {layer["name"]: layer["device"] for layer in layers if layer["kind"] != "Reformat"}
    assert any(device == "dla:1" for device in devices.values()), devices
    config.DLA_core = -1
    assert builder.build_serialized_network(network, config) is None and "DLA_core" in str(builder.last_error)


def test_onnx_model_with_dynamic_batch_through_parser_and_profile(tmp_path):
    model = conv_onnx_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    builder = trt.Builder(CollectingLogger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, None).parse(model.SerializeToString())
    assert network.get_input(0).shape == (-1, 3, 16, 16)
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 3, 16, 16), (2, 3, 16, 16), (3, 3, 16, 16))
    config = builder.create_builder_config()
    config.add_optimization_profile(profile)
    engine = trt.Runtime().deserialize_cuda_engine(builder.build_serialized_network(network, config))
    assert engine.num_optimization_profiles == 1 and engine.get_tensor_shape("x") == (-1, 3, 16, 16)
    context = engine.create_execution_context()
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    y = np.zeros((3, 8, 1, 1), np.float32)
    context.set_input_shape("x", x.shape)
    assert context.get_tensor_shape("y") == (3, 8, 1, 1)
    context.execute_v2([x.ctypes.data, y.ctypes.data])
    from helpers import ort_run
    assert normwise_error(y, ort_run(model, {"x": x})["y"]) <= 1e-5
    times = []   # the profiler works at any shape of the profile too

    class Profiler(trt.IProfiler):
        def report_layer_time(self, layer_name, ms):
            times.append((layer_name, ms))

    context.profiler = Profiler()
    y[...] = 0
    context.execute_v2([x.ctypes.data, y.ctypes.data])
    assert normwise_error(y, ort_run(model, {"x": x})["y"]) <= 1e-5
    layers = json.loads(engine.create_engine_inspector().get_engine_information())["Layers"]
    assert [name for name, _ in times] == [layer["name"] for layer in layers if layer["runs"]]
    assert all(ms >= 0 for _, ms in times)


def test_runtime_never_pulls_in_onnx_or_the_builder():
    import subprocess
    import sys

    code = ("import sys, edgert as trt; trt.Runtime(trt.Logger()); import edgert.api.runtime; "
            "bad = [m for m in ('onnx', 'edgert.builder', 'edgert.passes') if m in sys.modules]; print(bad)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "[]"


def test_onnx_sample_saved_engine_round_trips(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(conv_onnx_model(), path)
    builder = trt.Builder(None)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, None).parse_from_file(str(path))
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    assert plan.nbytes == len(bytes(plan)) > 0 and plan.dtype == trt.DataType.UINT8
    engine = trt.Runtime(None).deserialize_cuda_engine(plan)
    assert engine.device_memory_size > 0 and engine.num_layers >= 1
    assert trt.Runtime(CollectingLogger()).deserialize_cuda_engine(b"junk") is None


def test_inputs_and_constants_marked_as_outputs_and_build_report_at_info():
    logger = CollectingLogger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    x = network.add_input("x", trt.float32, (2, 3))
    constant = network.add_constant((3,), np.arange(3, dtype=np.float32))
    with pytest.raises(trt.GraphError, match="add_identity"):
        network.mark_output(x)
    network.mark_output(network.add_identity(x).get_output(0))
    network.mark_output(constant.get_output(0))   # a constant as an output gets its own copy, as from ONNX
    shuffle = network.add_shuffle(x)
    with pytest.raises(trt.UnsupportedError, match="shape tensors"):
        shuffle.set_input(1, constant.get_output(0))
    engine = builder.build_engine_with_config(network, builder.create_builder_config())
    data = rng.standard_normal((2, 3)).astype(np.float32)
    outputs = run(engine, {"x": data})
    np.testing.assert_array_equal(outputs[network.get_output(0).name], data)
    np.testing.assert_array_equal(outputs[constant.get_output(0).name], np.arange(3, dtype=np.float32))
    assert any(s == trt.Logger.INFO and m.startswith("built a plan") for s, m in logger.messages)
    assert any(s == trt.Logger.VERBOSE and m.startswith("layer ") for s, m in logger.messages)


class Monitor(trt.IProgressMonitor):
    def __init__(self, cancel_at=None):
        trt.IProgressMonitor.__init__(self)
        self.events, self.cancel_at = [], cancel_at

    def phase_start(self, phase_name, parent_phase, num_steps):
        self.events.append(("start", phase_name, num_steps))

    def step_complete(self, phase_name, step):
        self.events.append(("step", phase_name, step))
        return not (phase_name.startswith("calibration") and step == self.cancel_at)

    def phase_finish(self, phase_name):
        self.events.append(("finish", phase_name))


def test_progress_monitor_sees_calibration_and_can_cancel():
    builder = trt.Builder(CollectingLogger())
    network, _ = conv_relu_network(builder)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = Calibrator(rng.standard_normal((3, 1, 3, 8, 8)).astype(np.float32))
    config.progress_monitor = monitor = Monitor()
    assert builder.build_serialized_network(network, config) is not None
    assert monitor.events[0] == ("start", "build", 1) and monitor.events[-1] == ("finish", "build")
    assert ("start", "calibration: activation ranges", 3) in monitor.events
    assert ("step", "calibration: activation ranges", 3) in monitor.events
    config.int8_calibrator = Calibrator(rng.standard_normal((3, 1, 3, 8, 8)).astype(np.float32))
    config.progress_monitor = cancelling = Monitor(cancel_at=2)
    assert builder.build_serialized_network(network, config) is None
    assert "cancelled" in str(builder.last_error) and cancelling.events[-1] == ("finish", "build")


def test_edgert_build_and_the_cli_read_one_typed_config(tmp_path):
    from edgert.build_options import BuildConfig
    from edgert.tools.cli import main as cli_main

    model = conv_onnx_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    by_keywords = trt.build(model, precision="fp16", gpu_fallback=False, disabled_passes=["conv_fusion"])
    config = BuildConfig(precision="fp16", gpu_fallback=False, disabled_passes=["conv_fusion"])
    by_config = trt.build(model, config=config)
    assert by_keywords.to_bytes() == by_config.to_bytes()
    assert by_config.header["options"] == {"precision": "fp16", "gpu_fallback": False}
    with pytest.raises(trt.EdgeRTError, match="either as config= or as keywords"):
        trt.build(model, config=config, precision="fp32")
    with pytest.raises(trt.EdgeRTError, match="did you mean 'calib_cache'"):
        BuildConfig.from_options(calib_cahce="x.json")
    assert cli_main(["build", str(path), "-o", str(tmp_path / "m.plan"), "--precision", "fp16"]) == 0
    header = trt.Plan.from_bytes((tmp_path / "m.plan").read_bytes()).header
    assert header["options"]["precision"] == "fp16" and header["options"]["calibrator"] == "entropy"
