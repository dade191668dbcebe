"""``Runtime``, ``ICudaEngine``, ``IExecutionContext``, ``IProfiler`` and ``IEngineInspector`` over edgert's
runtime (``edgert.runtime``): TensorRT's runtime phase with addresses instead of arrays.

On the CPU backend an address is a host pointer (``array.ctypes.data``) and the stream handle is 0: the
context wraps NumPy views around the pointers and copies inputs in and outputs out. On the CUDA backend
(``Runtime(logger, device="cuda")``, or a plan with CUDA kernels on a machine with cupy and a GPU) the
addresses are device pointers (``cupy_array.data.ptr``) and the work is queued on the stream handle.
Like the rest of the runtime, this module never imports onnx, the builder or the passes.
"""

from __future__ import annotations

import ctypes
import json
import time

import numpy as np

from edgert.api.enums import DataType, LayerInformationFormat, TensorIOMode
from edgert.api.logger import report
from edgert.errors import InputError, UnsupportedError


def host_array(address: int, shape, dtype) -> np.ndarray:
    """A NumPy view of ``shape`` / ``dtype`` over host memory at ``address`` (no copy)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return np.empty(shape, dtype)
    if not address:
        raise InputError("a tensor address is 0 (a null pointer); pass array.ctypes.data of a buffer of the "
                         "tensor's size")
    buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(int(address))
    return np.frombuffer(buffer, dtype, count).reshape(shape)


class IProfiler:
    """Subclass and override ``report_layer_time(layer_name, ms)``; set it as ``context.profiler``."""

    def report_layer_time(self, layer_name: str, ms: float) -> None:   # pragma: no cover - interface
        pass


class Runtime:
    def __init__(self, logger=None, device: str | None = None):
        self.logger = logger
        self.device = device   # edgert's own: "cpu", "cuda", "cuda:pycuda"; None = "cuda" for plans with
        # CUDA kernels when cupy sees a GPU, else "cpu"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def deserialize_cuda_engine(self, serialized_engine) -> "ICudaEngine | None":
        from edgert.errors import EdgeRTError
        from edgert.plan import read_plan
        from edgert.runtime import load

        data = bytes(serialized_engine)
        try:
            device = self.device or _default_device(read_plan(data))
            return ICudaEngine(load(data, device=device), data, device)
        except EdgeRTError as e:
            report(self.logger, 1, str(e))
            return None


def _default_device(document: dict) -> str:
    if not document.get("kernels"):
        return "cpu"
    try:
        import cupy
        return "cuda" if cupy.cuda.runtime.getDeviceCount() > 0 else "cpu"
    except Exception:   # no cupy, no driver, no device: the CPU backend runs every plan
        return "cpu"


class ICudaEngine:
    def __init__(self, engine, data: bytes, device: str):
        self._engine = engine
        self._data = data
        self.device = device
        self._bindings = list(engine.inputs) + list(engine.outputs)
        self._inputs = {b.name for b in engine.inputs}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    @property
    def num_io_tensors(self) -> int:
        return len(self._bindings)

    def get_tensor_name(self, index: int) -> str:
        return self._bindings[index].name

    def _binding(self, name: str):
        for binding in self._bindings:
            if binding.name == name:
                return binding
        raise InputError(f"unknown tensor {name!r}; the engine's I/O tensors are: "
                         f"{', '.join(b.name for b in self._bindings)}")

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        self._binding(name)
        return TensorIOMode.INPUT if name in self._inputs else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple:
        """The binding's shape; -1 where an optimization profile lets the dim vary (as TensorRT)."""
        binding = self._binding(name)
        profiles = getattr(self._engine, "profiles", None)
        if not profiles:
            return tuple(binding.shape)
        if name in self._inputs:
            ranges = [p[name] for p in profiles]
            return tuple(-1 if any(r[0][a] != r[2][a] for r in ranges) else d for a, d in enumerate(ranges[0][0]))
        span = self._engine.tensors[binding.tensor].get("range")   # [smallest dims, largest dims]
        return tuple(binding.shape) if not span else tuple(-1 if low != high else low for low, high in zip(*span))

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.of(self._binding(name).dtype.name)

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        return [tuple(s) for s in self._engine.get_tensor_profile_shape(name, profile_index)]

    def get_tensor_location(self, name: str):
        from edgert.api.enums import TensorLocation
        self._binding(name)
        return TensorLocation.DEVICE if self.device.startswith("cuda") else TensorLocation.HOST

    @property
    def num_optimization_profiles(self) -> int:
        return getattr(self._engine, "num_optimization_profiles", 1)

    @property
    def num_layers(self) -> int:
        return len(self._engine.document["layers"])

    @property
    def device_memory_size(self) -> int:
        """Bytes one execution context allocates: the arena (activations) of the plan."""
        return int((self._engine.document.get("memory") or {}).get("arena_bytes", 0))

    device_memory_size_v2 = device_memory_size

    @property
    def name(self) -> str:
        return str(self._engine.document["header"].get("target", ""))

    def serialize(self):
        from edgert.api.builder import IHostMemory
        return IHostMemory(self._data)

    def create_execution_context(self, strategy=None) -> "IExecutionContext":
        return IExecutionContext(self)

    def create_engine_inspector(self) -> "IEngineInspector":
        return IEngineInspector(self)


class IEngineInspector:
    """Layer information as JSON, the same as ``edgert inspect --json`` gives."""

    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self.execution_context = None

    def _describe(self) -> dict:
        from edgert.tools.inspect import describe
        return describe(self.engine._engine.document)

    def get_layer_information(self, layer_index: int, format=LayerInformationFormat.JSON) -> str:  # noqa: A002
        layer = self._describe()["layers"][layer_index]
        return json.dumps(layer) if format == LayerInformationFormat.JSON else \
            f"{layer['name']} [{layer['kind']}] {layer['device']} {layer['precision']}"

    def get_engine_information(self, format=LayerInformationFormat.JSON) -> str:  # noqa: A002
        info = self._describe()
        if format == LayerInformationFormat.JSON:
            return json.dumps({"Layers": info["layers"], "Bindings": [b["name"] for b in info["inputs"] +
                                                                     info["outputs"]], "edgert": info})
        return "\n".join(self.get_layer_information(i, format) for i in range(len(info["layers"])))


class IExecutionContext:
    """Addresses per I/O tensor, input shapes, and ``execute_async_v3`` / ``execute_v2``."""

    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self._context = engine._engine.create_execution_context()
        self._addresses: dict[str, int] = {}
        self._written_shapes: dict[str, tuple] = {}   # bounded outputs: the shape of the last run's rows
        self.profiler = None
        self.debug_sync = False
        self.name = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    @property
    def _dynamic(self) -> bool:
        return hasattr(self._context, "set_input_shape")

    # -- shapes and profiles ---------------------------------------------------------------------------
    def set_input_shape(self, name: str, shape) -> bool:
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            raise InputError(f"{name!r} is an output; set_input_shape takes an input")
        shape = tuple(int(d) for d in shape)
        if self._dynamic:
            self._context.set_input_shape(name, shape)
        elif shape != tuple(self.engine._binding(name).shape):
            raise InputError(f"input {name!r}: the plan has the static shape {self.engine._binding(name).shape}, "
                             f"found {shape}; build with an optimization profile for other shapes")
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        """An input's shape, an output's at the current input shapes; for an output whose size depends on the
        data (NonZero, NMS) its bound until a run, then the real shape that run wrote (contiguously)."""
        if name in self._written_shapes:
            return self._written_shapes[name]
        if self._dynamic:
            return tuple(self._context.get_tensor_shape(name))
        return tuple(self.engine._binding(name).shape)

    @property
    def all_binding_shapes_specified(self) -> bool:
        return True

    @property
    def active_optimization_profile(self) -> int:
        return getattr(self._context, "active_optimization_profile", 0)

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int = 0) -> bool:
        if self._dynamic:
            self._context.set_optimization_profile(int(profile_index))
        elif profile_index != 0:
            raise InputError(f"optimization profile {profile_index} does not exist; the plan has 1 (0)")
        return True

    # -- addresses and execution -----------------------------------------------------------------------
    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.engine._binding(name)
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_v2(self, bindings) -> bool:
        """Addresses in I/O tensor order (``engine.get_tensor_name(i)``); runs synchronously."""
        if len(bindings) != self.engine.num_io_tensors:
            raise InputError(f"execute_v2 got {len(bindings)} addresses; the engine has {self.engine.num_io_tensors} "
                             "I/O tensors")
        for index, address in enumerate(bindings):
            self.set_tensor_address(self.engine.get_tensor_name(index), int(address))
        return self.execute_async_v3(0)

    def execute_async_v3(self, stream_handle: int = 0) -> bool:
        missing = [b.name for b in self.engine._bindings if not self._addresses.get(b.name)]
        if missing:
            raise InputError(f"no address for tensor(s) {', '.join(missing)}; call set_tensor_address(name, "
                             "array.ctypes.data) for every input and output")
        if self.engine.device.startswith("cuda"):
            from edgert.api.cuda_io import execute_device
            execute_device(self, stream_handle)
        else:
            self._execute_host(stream_handle)
        return True

    def _execute_host(self, stream_handle: int) -> None:
        if stream_handle:
            raise UnsupportedError(f"stream handle {stream_handle} on the CPU backend; pass 0 (the CPU runs "
                                   "synchronously)")
        feeds = {b.name: host_array(self._addresses[b.name], self.get_tensor_shape(b.name), b.dtype)
                 for b in self.engine._engine.inputs}
        self._written_shapes.clear()
        outputs = self._run(feeds)
        for binding in self.engine._engine.outputs:
            result = outputs[binding.name]
            shape = result.shape if binding.rows else self.get_tensor_shape(binding.name)
            np.copyto(host_array(self._addresses[binding.name], shape, binding.dtype), result.reshape(shape))
            if binding.rows:
                self._written_shapes[binding.name] = tuple(result.shape)

    def _run(self, feeds: dict) -> dict:
        if self.profiler is None:
            return self._context.execute(feeds)
        started: dict[str, float] = {}
        times: list[tuple[str, float]] = []

        def before(name, outputs):
            started[name] = time.perf_counter()

        def after(name, outputs):
            times.append((name, (time.perf_counter() - started[name]) * 1e3))

        outputs = self._context.execute_each(feeds, after, before)
        for name, ms in times:
            self.profiler.report_layer_time(name, ms)
        return outputs

    @property
    def device_memory(self) -> int:
        return 0
