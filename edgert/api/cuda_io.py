"""``execute_async_v3`` on the CUDA backend: device pointers in and out, queued on the caller's stream.

The inputs are copied from the caller's buffers into the context's (device to device), the plan's schedule
is replayed on the stream, and the outputs are copied to the caller's buffers, all queued on the stream
handle (0: the legacy default stream, which orders the work after the caller's own default-stream copies).
Nothing here waits for the GPU, as in TensorRT.
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
    cuda_context.run(stream)
    for binding in engine.outputs:
        driver.copy(context._addresses[binding.name], cuda_context.addresses[binding.tensor], binding.nbytes, stream)
