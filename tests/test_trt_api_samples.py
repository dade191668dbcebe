"""TensorRT's three Python samples, changed only in the import line and in how buffers are allocated.

- network_api_pytorch_mnist: an MNIST-style CNN built layer by layer from NumPy weights (convolution, pooling,
  fully connected via matrix multiply, activation, softmax, top-k), against a NumPy float64 reference;
- an identity network with a dynamic-shape profile (``profile.set_shape``), run with ``set_input_shape`` and
  ``execute_v2``;
- an ONNX model through ``OnnxParser`` → ``build_serialized_network`` → ``deserialize_cuda_engine`` →
  ``set_tensor_address`` + ``execute_async_v3``, against onnxruntime.

On the CPU backend buffers are NumPy arrays and addresses ``array.ctypes.data``; the ``gpu`` variants
(tests/test_trt_api_gpu.py) run the same scripts with cupy device buffers.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgert as trt
from helpers import normwise_error, ort_run


class CollectingLogger(trt.ILogger):
    def __init__(self):
        trt.ILogger.__init__(self)
        self.messages = []

    def log(self, severity, msg):
        self.messages.append((severity, msg))


class CollectingProfiler(trt.IProfiler):
    """Keeps every (layer name, ms) the context reports, in order."""

    def __init__(self):
        trt.IProfiler.__init__(self)
        self.times = []

    def report_layer_time(self, layer_name, ms):
        self.times.append((layer_name, ms))


def mnist_weights(rng) -> dict:
    return {"conv1.weight": rng.standard_normal((20, 1, 5, 5)).astype(np.float32) * 0.2,
            "conv1.bias": rng.standard_normal(20).astype(np.float32) * 0.1,
            "conv2.weight": rng.standard_normal((50, 20, 5, 5)).astype(np.float32) * 0.05,
            "conv2.bias": rng.standard_normal(50).astype(np.float32) * 0.1,
            "fc1.weight": rng.standard_normal((500, 800)).astype(np.float32) * 0.03,
            "fc1.bias": rng.standard_normal(500).astype(np.float32) * 0.1,
            "fc2.weight": rng.standard_normal((10, 500)).astype(np.float32) * 0.05,
            "fc2.bias": rng.standard_normal(10).astype(np.float32) * 0.1}


def populate_mnist_network(network, weights, with_topk: bool = True) -> None:
    """TensorRT's sample ``network_api_pytorch_mnist/model.py`` (plus softmax and top-k on its output; CUDA
    plans run top-k with k > 1 on the CPU backend only, so the GPU variant leaves it out)."""
    def add_matmul_as_fc(net, input, outputs, w, b):
        assert len(input.shape) >= 3
        m = 1 if len(input.shape) == 3 else input.shape[0]
        k = int(np.prod(input.shape) / m)
        assert np.prod(input.shape) == m * k
        n = int(w.size / k)
        assert w.size == n * k
        assert b.size == n
        input_reshape = net.add_shuffle(input)
        input_reshape.reshape_dims = trt.Dims2(m, k)
        filter_const = net.add_constant(trt.Dims2(n, k), w)
        mm = net.add_matrix_multiply(input_reshape.get_output(0), trt.MatrixOperation.NONE,
                                     filter_const.get_output(0), trt.MatrixOperation.TRANSPOSE)
        bias_const = net.add_constant(trt.Dims2(1, n), b)
        bias_add = net.add_elementwise(mm.get_output(0), bias_const.get_output(0), trt.ElementWiseOperation.SUM)
        output_reshape = net.add_shuffle(bias_add.get_output(0))
        output_reshape.reshape_dims = trt.Dims4(m, n, 1, 1)
        return output_reshape

    input_tensor = network.add_input(name="data", dtype=trt.float32, shape=(1, 1, 28, 28))
    conv1 = network.add_convolution_nd(input=input_tensor, num_output_maps=20, kernel_shape=(5, 5),
                                       kernel=trt.Weights(weights["conv1.weight"]),
                                       bias=trt.Weights(weights["conv1.bias"]))
    conv1.stride_nd = (1, 1)
    pool1 = network.add_pooling_nd(input=conv1.get_output(0), type=trt.PoolingType.MAX, window_size=(2, 2))
    pool1.stride_nd = trt.Dims2(2, 2)
    conv2 = network.add_convolution_nd(pool1.get_output(0), 50, (5, 5), weights["conv2.weight"],
                                       weights["conv2.bias"])
    conv2.stride_nd = (1, 1)
    pool2 = network.add_pooling_nd(conv2.get_output(0), trt.PoolingType.MAX, (2, 2))
    pool2.stride_nd = trt.Dims2(2, 2)
    fc1 = add_matmul_as_fc(network, pool2.get_output(0), 500, weights["fc1.weight"], weights["fc1.bias"])
    relu1 = network.add_activation(input=fc1.get_output(0), type=trt.ActivationType.RELU)
    fc2 = add_matmul_as_fc(network, relu1.get_output(0), 10, weights["fc2.weight"], weights["fc2.bias"])
    softmax = network.add_softmax(fc2.get_output(0))
    softmax.axes = 1 << 1
    softmax.get_output(0).name = "prob"
    network.mark_output(tensor=softmax.get_output(0))
    if with_topk:
        topk = network.add_topk(softmax.get_output(0), trt.TopKOperation.MAX, 3, 1 << 1)
        topk.get_output(1).name = "top3"
        network.mark_output(topk.get_output(1))


def mnist_reference(weights, image) -> np.ndarray:
    """The same network in float64 NumPy."""
    def conv(x, w, b):
        n, c, h, wd = x.shape
        m, _, kh, kw = w.shape
        cols = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))   # n c oh ow kh kw
        return np.einsum("ncijkl,mckl->nmij", cols, w) + b[None, :, None, None]

    def pool(x):
        n, c, h, w = x.shape
        return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    f = {k: v.astype(np.float64) for k, v in weights.items()}
    x = pool(conv(image.astype(np.float64), f["conv1.weight"], f["conv1.bias"]))
    x = pool(conv(x, f["conv2.weight"], f["conv2.bias"])).reshape(1, -1)
    x = np.maximum(x @ f["fc1.weight"].T + f["fc1.bias"], 0)
    logits = x @ f["fc2.weight"].T + f["fc2.bias"]
    e = np.exp(logits - logits.max())
    return (e / e.sum()).reshape(1, 10, 1, 1)


def build_engine(network, builder, config, logger):
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, builder.last_error
    runtime = trt.Runtime(logger)
    return runtime.deserialize_cuda_engine(plan)


def allocate_host_buffers(engine, context):
    """The sample's ``common.allocate_buffers``, with NumPy arrays instead of cuda-python allocations."""
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        buffers[name] = np.zeros(context.get_tensor_shape(name), trt.nptype(engine.get_tensor_dtype(name)))
        context.set_tensor_address(name, buffers[name].ctypes.data)
    return buffers


def test_mnist_network_built_layer_by_layer_matches_numpy():
    rng = np.random.default_rng()
    weights = mnist_weights(rng)
    logger = CollectingLogger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    populate_mnist_network(network, weights)
    assert network.num_layers == 19 and network.num_outputs == 2
    assert network.get_output(0).shape == (1, 10, 1, 1)
    engine = build_engine(network, builder, config, logger)
    assert [engine.get_tensor_mode(engine.get_tensor_name(i)) for i in range(3)] == \
        [trt.TensorIOMode.INPUT, trt.TensorIOMode.OUTPUT, trt.TensorIOMode.OUTPUT]
    context = engine.create_execution_context()
    buffers = allocate_host_buffers(engine, context)
    for _ in range(2):   # a second image through the same buffers
        image = rng.random((1, 1, 28, 28), dtype=np.float32)
        np.copyto(buffers["data"], image)
        assert context.execute_async_v3(stream_handle=0)
        expected = mnist_reference(weights, image)
        assert normwise_error(buffers["prob"], expected) <= 1e-5
        np.testing.assert_array_equal(buffers["top3"].reshape(-1), np.argsort(-expected.reshape(-1))[:3])


def test_identity_network_with_a_dynamic_profile_runs_execute_v2():
    logger = CollectingLogger()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    inp = network.add_input("input", trt.float32, (-1, 3, -1))
    assert inp.shape == (-1, 3, -1)
    identity = network.add_identity(inp)
    assert identity.get_output(0).shape == (-1, 3, -1)
    network.mark_output(identity.get_output(0))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 2), (2, 3, 8), (4, 3, 16))
    assert config.add_optimization_profile(profile) == 0
    engine = build_engine(network, builder, config, logger)
    output_name = engine.get_tensor_name(1)
    assert engine.get_tensor_shape("input") == engine.get_tensor_shape(output_name) == (-1, 3, -1)
    assert engine.get_tensor_profile_shape("input", 0) == [(1, 3, 2), (2, 3, 8), (4, 3, 16)]
    context = engine.create_execution_context()
    rng = np.random.default_rng()
    for shape in ((3, 3, 5), (1, 3, 2), (4, 3, 16)):
        assert context.set_input_shape("input", shape)
        assert context.get_tensor_shape(output_name) == shape
        data = rng.standard_normal(shape).astype(np.float32)
        out = np.full(shape, np.nan, np.float32)
        assert context.execute_v2([data.ctypes.data, out.ctypes.data])
        np.testing.assert_array_equal(out, data)
    with pytest.raises(trt.InputError, match="outside|range"):
        context.set_input_shape("input", (5, 3, 4))


def conv_onnx_model() -> onnx.ModelProto:
    rng = np.random.default_rng()
    w = helper.make_tensor("w", TensorProto.FLOAT, (8, 3, 3, 3), rng.standard_normal(216).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["y"], name="gap")]
    graph = helper.make_graph(nodes, "onnx_sample", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                   (2, 3, 16, 16))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 8, 1, 1))], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8   # readable by older onnxruntime builds (the GPU machine's reads IR <= 13)
    return model


def test_onnx_model_through_parser_and_execute_async_v3(tmp_path):
    model = conv_onnx_model()
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    with trt.Builder(logger) as builder, builder.create_network(0) as network, \
            builder.create_builder_config() as config, trt.OnnxParser(network, logger) as parser:
        assert parser.parse_from_file(str(path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
        assert parser.num_errors == 0
        assert [network.get_layer(i).type for i in range(network.num_layers)] == \
            [trt.LayerType.CONVOLUTION, trt.LayerType.ACTIVATION, trt.LayerType.POOLING]
        serialized = builder.build_serialized_network(network, config)
    with open(tmp_path / "model.plan", "wb") as f:
        f.write(serialized)
    with open(tmp_path / "model.plan", "rb") as f, trt.Runtime(logger) as runtime:
        engine = runtime.deserialize_cuda_engine(f.read())
    context = engine.create_execution_context()
    x = np.random.default_rng().standard_normal((2, 3, 16, 16)).astype(np.float32)
    y = np.empty(tuple(engine.get_tensor_shape("y")), trt.nptype(engine.get_tensor_dtype("y")))
    context.set_tensor_address("x", x.ctypes.data)
    context.set_tensor_address("y", y.ctypes.data)
    assert context.execute_async_v3(0)
    assert normwise_error(y, ort_run(model, {"x": x})["y"]) <= 1e-5
    assert bytes(engine.serialize()) == bytes(serialized)


def test_dynamic_batch_network_reresolves_reshape_dims_at_every_shape():
    """reshape_dims (0, -1) and the matrix product after it follow the batch: the network's views re-resolve their
    attributes at each of the profile's probe shapes, and the plan runs any batch in range."""
    rng = np.random.default_rng()
    w, fc = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal((10, 256)).astype(np.float32)
    builder = trt.Builder(CollectingLogger())
    network = builder.create_network(0)
    x = network.add_input("x", trt.float32, (-1, 3, 8, 8))
    conv = network.add_convolution_nd(x, 4, (3, 3), w)
    conv.padding_nd = (1, 1)
    flat = network.add_shuffle(conv.get_output(0))
    flat.reshape_dims = (0, -1)
    assert flat.get_output(0).shape == (-1, 256)
    weights = network.add_constant((10, 256), fc)
    logits = network.add_matrix_multiply(flat.get_output(0), trt.MatrixOperation.NONE, weights.get_output(0),
                                         trt.MatrixOperation.TRANSPOSE)
    network.mark_output(logits.get_output(0))
    assert logits.get_output(0).shape == (-1, 10)
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))
    config = builder.create_builder_config()
    config.add_optimization_profile(profile)
    engine = build_engine(network, builder, config, None)
    context = engine.create_execution_context()
    name = engine.get_tensor_name(1)
    for batch in (3, 1, 4):
        data = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        context.set_input_shape("x", data.shape)
        out = np.zeros(context.get_tensor_shape(name), np.float32)
        assert out.shape == (batch, 10)
        context.execute_v2([data.ctypes.data, out.ctypes.data])
        cols = np.lib.stride_tricks.sliding_window_view(np.pad(data, [(0, 0), (0, 0), (1, 1), (1, 1)]).astype(
            np.float64), (3, 3), axis=(2, 3))
        expected = np.einsum("ncijkl,mckl->nmij", cols, w).reshape(batch, -1) @ fc.T
        assert normwise_error(out, expected) <= 1e-5
