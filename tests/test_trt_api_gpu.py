"""TensorRT's Python samples on the CUDA backend with cupy device buffers (marked ``gpu``; skipped without
cupy and a device): the scripts of tests/test_trt_api_samples.py with ``cupy`` allocations in place of NumPy
ones, device pointers (``array.data.ptr``) as tensor addresses and a cupy stream's handle."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgert as trt
from helpers import normwise_error, ort_run
from test_trt_api_samples import (CollectingLogger, CollectingProfiler, conv_onnx_model, mnist_reference,
                                  mnist_weights, populate_mnist_network)

pytestmark = pytest.mark.gpu


def allocate_device_buffers(engine, context):
    import cupy

    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        buffers[name] = cupy.zeros(context.get_tensor_shape(name), trt.nptype(engine.get_tensor_dtype(name)))
        context.set_tensor_address(name, buffers[name].data.ptr)
    return buffers


def build_cuda_engine(network, builder, logger):
    config = builder.create_builder_config()
    config.gpu_kernels = True          # edgert's own: compile CUDA kernels into the plan
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, builder.last_error
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    assert engine.device == "cuda" and engine.get_tensor_location(engine.get_tensor_name(0)) == \
        trt.TensorLocation.DEVICE
    return engine


def mnist_on_cuda(rng):
    """(weights, engine, context, device buffers) of the layer-by-layer MNIST network built for CUDA."""
    weights = mnist_weights(rng)
    logger = CollectingLogger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    populate_mnist_network(network, weights, with_topk=False)
    engine = build_cuda_engine(network, builder, logger)
    context = engine.create_execution_context()
    return weights, engine, context, allocate_device_buffers(engine, context)


def test_mnist_network_on_cuda_with_device_pointers():
    import cupy

    rng = np.random.default_rng()
    weights, engine, context, buffers = mnist_on_cuda(rng)
    stream = cupy.cuda.Stream(non_blocking=True)
    for _ in range(2):
        image = rng.random((1, 1, 28, 28), dtype=np.float32)
        buffers["data"].set(image, stream=stream)
        assert context.execute_async_v3(stream_handle=stream.ptr)
        prob = buffers["prob"].get(stream=stream)
        stream.synchronize()
        # TF32 is on by default (as in TensorRT): the contract's tf32 bound, not fp32's 1e-4
        assert normwise_error(prob, mnist_reference(weights, image)) <= 1e-3


def test_onnx_model_on_cuda_with_execute_async_v3():
    import cupy

    model = conv_onnx_model()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    engine = build_cuda_engine(network, builder, logger)
    context = engine.create_execution_context()
    x = np.random.default_rng().standard_normal((2, 3, 16, 16)).astype(np.float32)
    x_device = cupy.asarray(x)
    y_device = cupy.full(tuple(engine.get_tensor_shape("y")), np.nan, trt.nptype(engine.get_tensor_dtype("y")))
    context.set_tensor_address("x", x_device.data.ptr)
    context.set_tensor_address("y", y_device.data.ptr)
    assert context.execute_async_v3(0)    # the legacy default stream: ordered after cupy's copies above
    cupy.cuda.Stream.null.synchronize()
    assert normwise_error(cupy.asnumpy(y_device), ort_run(model, {"x": x})["y"]) <= 1e-4


def test_profiler_on_cuda_reports_every_launching_layer():
    """``context.profiler`` on the CUDA backend: each layer's launches between CUDA events, reported after the
    run (synchronously, as TensorRT's profiler does), with the same outputs as a run without it."""
    import cupy

    rng = np.random.default_rng()
    _, engine, context, buffers = mnist_on_cuda(rng)
    buffers["data"].set(rng.random((1, 1, 28, 28), dtype=np.float32))
    assert context.execute_async_v3(0)
    cupy.cuda.Device().synchronize()
    plain = buffers["prob"].get()
    context.profiler = CollectingProfiler()
    buffers["prob"].fill(np.nan)
    assert context.execute_async_v3(0)
    np.testing.assert_array_equal(buffers["prob"].get(), plain)
    layers = json.loads(engine.create_engine_inspector().get_engine_information())["Layers"]
    names = [name for name, _ in context.profiler.times]
    assert names and set(names) <= {layer["name"] for layer in layers} and len(set(names)) == len(names)
    assert all(ms > 0 for _, ms in context.profiler.times)
