"""``execute_async_v3`` on the CUDA backend: device pointers in and out, queued on the caller's stream.

The inputs are copied from the caller's buffers into the context's (device to device), the plan's schedule
is replayed on the stream, and the outputs are copied to the caller's buffers, all queued on the stream
handle (0: the legacy default stream, which orders the work after the caller's own default-stream copies).
Nothing here waits for the GPU, as in TensorRT, unless the context has a profiler: then each layer's launches run
between events (not as the graph), the stream is synchronized and the profiler gets every layer's time; or unless
an output's size depends on the data (NonZero, NMS): then the run is waited for, its count read back and its real
rows copied contiguously (``get_tensor_shape`` reports their shape, as on the CPU backend).
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
    context._written_shapes.clear()
    for binding in engine.outputs:
        if binding.rows is None:
            driver.copy(context._addresses[binding.name], cuda_context.addresses[binding.tensor], binding.nbytes,
                        stream)
    if any(binding.rows is not None for binding in engine.outputs):
        _copy_counted_rows(context, stream)


def _copy_counted_rows(context, stream) -> None:
    """Outputs whose size depends on the data (NonZero, NMS): wait for the run, read their counts and copy their
    real rows contiguously at the real shape, which ``get_tensor_shape`` then reports (as the CPU backend does)."""
    import numpy as np

    from edgert.runtime.cuda import read_counts

    cuda_context = context._context
    driver, engine = cuda_context.driver, cuda_context.engine
    counts = read_counts(driver, cuda_context.addresses, engine.outputs, stream)
    driver.synchronize(stream)
    for binding in engine.outputs:
        if binding.rows is None:
            continue
        tensor, axis = binding.rows
        rows = max(0, min(int(counts[tensor]), binding.shape[axis]))
        inner = int(np.prod(binding.shape[axis + 1:], dtype=np.int64)) * binding.dtype.itemsize
        source, target = cuda_context.addresses[binding.tensor], context._addresses[binding.name]
        for outer in range(int(np.prod(binding.shape[:axis], dtype=np.int64))):   # one piece per leading index
            driver.copy(target + outer * rows * inner, source + outer * binding.shape[axis] * inner, rows * inner,
                        stream)
        context._written_shapes[binding.name] = binding.shape[:axis] + (rows,) + binding.shape[axis + 1:]
