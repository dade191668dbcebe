"""``execute_async_v3`` on the CUDA backend: device pointers in and out, queued on the caller's stream.

The inputs are copied from the caller's buffers into the context's (device to device), the plan's schedule
is replayed on the stream, and the outputs are copied to the caller's buffers, all queued on the stream
handle (0: the legacy default stream, which orders the work after the caller's own default-stream copies).
Nothing here waits for the GPU, as in TensorRT, unless the context has a profiler: then each layer's launches run
between events (not as the graph), the stream is synchronized and the profiler gets every layer's time.
"""

from __future__ import annotations


def execute_device(context, stream_handle: int) -> None:
    import cupy

    cuda_context = context._context
    driver = cuda_context.driver
    stream = cupy.cuda.ExternalStream(int(stream_handle)) if stream_handle else cupy.cuda.Stream.null
    engine = cuda_context.engine
    for binding in engine.inputs:
        driver.copy(cuda_context.addresses[binding.tensor], context._addresses[binding.name], binding.nbytes, stream)
    if context.profiler is None:
        cuda_context.run(stream)
    else:
        names = [layer["name"] for layer in engine.document["layers"]]
        for layer, ms in cuda_context.layer_times(stream):
            context.profiler.report_layer_time(names[layer], ms)
    for binding in engine.outputs:
        driver.copy(context._addresses[binding.name], cuda_context.addresses[binding.tensor], binding.nbytes, stream)
