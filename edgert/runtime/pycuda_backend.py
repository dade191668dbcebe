"""The CUDA backend over pycuda instead of cupy: same engine, contexts and plans (``edgert.runtime.cuda``).

    from edgert.runtime.pycuda_backend import load
    engine = load(document)            # a decoded plan, see edgert.plan.read_plan
    outputs = engine.create_execution_context().execute(inputs)

pycuda launches kernels from a packed parameter buffer (``Function._launch_kernel``), which is what
the plan's launch specs pack to. pycuda has no CUDA graph API, so capture and replay call the driver
library (libcuda) through ctypes on pycuda's stream handle. Device arrays for ``execute_async`` are
``pycuda.gpuarray.GPUArray``.
"""

from __future__ import annotations

import atexit
import ctypes

import numpy as np

from edgert.errors import DeviceError
from edgert.runtime.cuda import CudaEngine, check, max_ptx_isa

_STREAM_CAPTURE_MODE_RELAXED = 2


class _Allocation:
    def __init__(self, allocation):
        self.allocation = allocation
        self.ptr = int(allocation)


class _Graph:
    def __init__(self, graph, executable):
        self.graph, self.executable = graph, executable


class PycudaDriver:
    name = "pycuda"

    def __init__(self, device: int = 0):
        try:
            import pycuda.driver as cuda
        except ImportError:
            raise DeviceError("the pycuda backend needs pycuda (pip install pycuda, built against your CUDA "
                              "toolkit)") from None
        self.cuda = cuda
        check("initializing CUDA", cuda.init)
        self.device = check("selecting the GPU", cuda.Device, device)
        self.context = check("retaining the primary context", self.device.retain_primary_context)
        check("activating the context", self.context.push)
        atexit.register(self._release)   # pycuda aborts at exit when a pushed context is never popped
        self.libcuda = ctypes.CDLL("libcuda.so.1")

    def _release(self) -> None:
        try:
            self.context.pop()
            from pycuda.tools import clear_context_caches
            clear_context_caches()
        except Exception:  # already popped, or the driver is shutting down: nothing left to release
            pass

    def _driver_call(self, what: str, name: str, *args) -> None:
        status = getattr(self.libcuda, name)(*args)
        if status != 0:
            text = ctypes.c_char_p()
            self.libcuda.cuGetErrorString(status, ctypes.byref(text))
            raise DeviceError(f"CUDA error while {what}: {name} returned {status} "
                              f"({text.value.decode() if text.value else 'unknown error'})")

    def arch(self) -> str:
        major, minor = self.device.compute_capability()
        return f"sm_{major}{minor}"

    def device_name(self) -> str:
        return self.device.name()

    def ptx_isa(self):
        version = self.cuda.get_driver_version()
        return max_ptx_isa((version // 1000, version % 1000 // 10))

    def load_module(self, module: dict, ptx: bool = False):
        image = module["ptx"].encode() + b"\0" if ptx else bytes(module["cubin"])
        return check("loading a kernel module", self.cuda.module_from_buffer, image)

    def function(self, module, name: str):
        return check(f"finding kernel {name}", module.get_function, name)

    def alloc(self, nbytes: int):
        return _Allocation(check(f"allocating {nbytes / 2**20:.1f} MiB of device memory", self.cuda.mem_alloc,
                                 max(int(nbytes), 1)))

    def upload(self, ptr: int, data, stream=None) -> None:
        host = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, memoryview)) else np.ascontiguousarray(data)
        if host.nbytes:
            check("copying to the GPU", self.cuda.memcpy_htod, ptr, host)

    def download(self, out: np.ndarray, ptr: int, stream=None) -> None:
        if out.nbytes:
            self.synchronize(stream)
            check("copying from the GPU", self.cuda.memcpy_dtoh, out, ptr)

    def copy(self, dst: int, src: int, nbytes: int, stream=None) -> None:
        if nbytes:
            check("copying on the GPU", self.cuda.memcpy_dtod_async, dst, src, nbytes, stream)

    def memset(self, ptr: int, value: int, nbytes: int, stream=None) -> None:
        if nbytes:
            check("filling device memory", self.cuda.memset_d8, ptr, value, nbytes)

    def stream(self):
        return check("creating a stream", self.cuda.Stream)

    def synchronize(self, stream=None) -> None:
        if stream is None:
            check("synchronizing", self.cuda.Context.synchronize)
        else:
            check("synchronizing the stream", stream.synchronize)

    # timing events (per-layer times: `edgert bench --profile`, the API's IProfiler)
    def event(self):
        return check("creating an event", self.cuda.Event)

    def record(self, event, stream=None) -> None:
        check("recording an event", event.record, stream)

    def elapsed_ms(self, start, end) -> float:
        return float(check("reading event times", end.time_since, start))

    # ordering events between streams (auxiliary streams)
    def sync_event(self):
        return check("creating an event", self.cuda.Event, self.cuda.event_flags.DISABLE_TIMING)

    def wait_event(self, stream, event) -> None:
        check("making a stream wait for an event", stream.wait_for_event, event)

    def launch(self, function, grid, block, smem: int, params, stream=None) -> None:
        check("launching a kernel", function._launch_kernel, tuple(grid), tuple(block), params.data, smem, stream)

    def capture(self, stream, run):
        handle = ctypes.c_void_p(stream.handle)
        self._driver_call("starting CUDA graph capture", "cuStreamBeginCapture_v2", handle,
                          ctypes.c_int(_STREAM_CAPTURE_MODE_RELAXED))
        graph = ctypes.c_void_p()
        try:
            run(self.launch)
        finally:
            self._driver_call("finishing CUDA graph capture", "cuStreamEndCapture", handle, ctypes.byref(graph))
        executable = ctypes.c_void_p()
        self._driver_call("instantiating the CUDA graph", "cuGraphInstantiateWithFlags", ctypes.byref(executable),
                          graph, ctypes.c_ulonglong(0))
        return _Graph(graph, executable)

    def replay(self, graph: _Graph, stream=None) -> None:
        handle = ctypes.c_void_p(stream.handle if stream is not None else 0)
        self._driver_call("launching the CUDA graph", "cuGraphLaunch", graph.executable, handle)

    def array_ptr(self, array) -> int:
        return int(array.gpudata)

    def empty(self, shape, dtype, stream=None):
        import pycuda.gpuarray as gpuarray
        return gpuarray.empty(shape, dtype)


def load(document: dict, device: int = 0) -> CudaEngine:
    return CudaEngine(document, driver=PycudaDriver(device))
