"""CUDA backend of the runtime: runs a plan's precompiled kernels (cubins in ``plan["kernels"]``).

``CudaEngine(document)`` checks the GPU's arch against the plan's before anything else, loads the
cubins and uploads the weights once. ``create_execution_context()`` gives a context with its own
device arena (the memory planner's offsets), input buffers, workspace and stream; its whole
schedule is captured once into a CUDA graph and replayed. ``execute()`` takes and returns NumPy
arrays; ``execute_async()`` takes device arrays and a stream and returns device arrays.

The device work goes through a small driver interface (cupy here, pycuda in ``pycuda_backend``,
a CPU emulator in ``edgert.kernels.cuda.emulator`` for tests). Plans with auxiliary streams (layers with
``stream``/``wait``, ``edgert.streams``) run each layer on its stream: the context's stream forks to the
auxiliary ones through an event, a layer first waits for the events of the layers in its ``wait`` list, and
every auxiliary stream joins back at the end, so the CUDA graph captures parallel branches. Each stream has
its own workspace and counters (split-K partial sums of concurrent layers must not share bytes).
Every backend error passes through
one ``check()`` that turns it into a ``DeviceError`` with the decoded CUDA message.
Never import onnx, the builder or the passes from here.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from typing import Mapping

import numpy as np

from edgert.errors import DeviceError, EdgeRTError, InputError, PlanError
from edgert.runtime.io import check_inputs
from edgert.streams import StreamSchedule

_SCALARS = {"i32": ("<i", 4), "i64": ("<q", 8), "f32": ("<f", 4), "f64": ("<d", 8)}
_POINTERS = ("t", "a", "d", "w", "c", "0")
KERNELS_FORMAT = 2   # 1: static launches; 2: shape-generic kernels of a plan with optimization profiles
# Highest PTX ISA each driver release JIT-compiles (CUDA major.minor -> ISA).
_PTX_ISA = {(12, 0): (8, 0), (12, 1): (8, 1), (12, 2): (8, 2), (12, 3): (8, 3), (12, 4): (8, 4), (12, 5): (8, 5),
            (12, 6): (8, 5), (12, 8): (8, 7), (12, 9): (8, 8), (13, 0): (9, 0), (13, 1): (9, 1), (13, 2): (9, 2)}


def check(what: str, fn, *args, **kwargs):
    """Call a backend function; any CUDA/driver error becomes a DeviceError naming ``what``."""
    try:
        return fn(*args, **kwargs)
    except EdgeRTError:
        raise
    except Exception as error:  # cupy/pycuda raise their own types; their text is the decoded CUDA error
        raise DeviceError(f"CUDA error while {what}: {_decode(error)}") from error


def _decode(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def max_ptx_isa(driver_version: tuple) -> tuple:
    if driver_version in _PTX_ISA:
        return _PTX_ISA[driver_version]
    major, minor = driver_version
    return (major - 4, minor) if major >= 13 else (8, min(minor, 8))


# -- plan kernels section --------------------------------------------------------------------------
def select_arch(kernels: Mapping, device_arch: str, device_name: str, driver_isa=None) -> tuple[str, bool]:
    """(key of the plan's kernels to use, whether to JIT its PTX); errors name both arches."""
    if not kernels:
        raise PlanError("plan has no CUDA kernels: it was built for the CPU; rebuild it with a GPU target "
                        f"(e.g. --target for {device_arch})")
    if device_arch in kernels:
        return device_arch, False
    number = int(device_arch.split("_")[1].rstrip("af"))
    for key, section in sorted(kernels.items()):
        ptx_ok = all(m.get("ptx") for m in section.get("modules", []))
        if ptx_ok and int(str(key).split("_")[1].rstrip("af")) <= number:
            isa = max((tuple(int(p) for p in str(m.get("ptx_isa", "0.0")).split(".")) for m in section["modules"]),
                      default=(0, 0))
            if driver_isa is not None and isa > driver_isa:
                raise DeviceError(f"plan's PTX (for {key}) has ISA {isa[0]}.{isa[1]} but this driver JIT-compiles "
                                  f"up to {driver_isa[0]}.{driver_isa[1]}: update the NVIDIA driver or rebuild the "
                                  f"plan for {device_arch}")
            return key, True
    raise DeviceError(f"plan was built for {', '.join(sorted(kernels))} but this GPU ({device_name}) is "
                      f"{device_arch}: rebuild the plan with a target for {device_arch}")


def pack_params(params: list, resolve) -> bytes:
    """Lay out kernel parameters as the CUDA ABI does (each at its natural alignment)."""
    buffer = bytearray()

    def pad(alignment: int):
        buffer.extend(b"\0" * (-len(buffer) % alignment))

    for entry in params:
        kind = entry[0]
        if kind == "align":
            pad(int(entry[1]))
        elif kind in _POINTERS:
            pad(8)
            buffer.extend(struct.pack("<Q", resolve(entry)))
        elif kind in _SCALARS:
            fmt, size = _SCALARS[kind]
            pad(size)
            buffer.extend(struct.pack(fmt, entry[1]))
        else:
            raise PlanError(f"plan is corrupt: unknown kernel parameter kind {kind!r}")
    return bytes(buffer)


class PackedParams:
    """A kernel's parameter bytes, kept alive at a fixed address, and the ``extra`` array that
    cuLaunchKernel reads them through (CU_LAUNCH_PARAM_BUFFER_POINTER / _SIZE / _END)."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.buffer = ctypes.create_string_buffer(self.data, max(len(self.data), 1))
        self.size = ctypes.c_size_t(len(self.data))
        self.extra = (ctypes.c_void_p * 5)(1, ctypes.addressof(self.buffer), 2, ctypes.addressof(self.size), 0)
        self.buffer_ptr = ctypes.addressof(self.buffer)
        self.extra_ptr = ctypes.addressof(self.extra)


# -- drivers ----------------------------------------------------------------------------------------
class CupyDriver:
    name = "cupy"

    def __init__(self, device: int = 0):
        try:
            import cupy
        except ImportError:
            raise DeviceError("the CUDA backend needs cupy (pip install cupy-cuda13x or cupy-cuda12x)") from None
        self.cupy = cupy
        self.device = check("selecting the GPU", cupy.cuda.Device, device)
        check("selecting the GPU", self.device.use)
        self.driver = cupy.cuda.driver
        self.runtime = cupy.cuda.runtime

    def arch(self) -> str:
        major, minor = self.device.compute_capability[:-1], self.device.compute_capability[-1]
        return f"sm_{major}{minor}"

    def device_name(self) -> str:
        props = check("reading device properties", self.runtime.getDeviceProperties, self.device.id)
        name = props.get("name", b"GPU")
        return name.decode() if isinstance(name, bytes) else str(name)

    def ptx_isa(self):
        version = check("reading the driver version", self.runtime.driverGetVersion)
        return max_ptx_isa((version // 1000, version % 1000 // 10))

    def load_module(self, module: dict, ptx: bool = False):
        image = module["ptx"].encode() + b"\0" if ptx else bytes(module["cubin"])
        return check("loading a kernel module", self.driver.moduleLoadData, image)

    def function(self, module, name: str):
        return check(f"finding kernel {name}", self.driver.moduleGetFunction, module, name)

    def alloc(self, nbytes: int):
        return check(f"allocating {nbytes / 2**20:.1f} MiB of device memory", self.cupy.cuda.alloc, max(nbytes, 1))

    def upload(self, ptr: int, data, stream=None) -> None:
        host = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, memoryview)) else np.ascontiguousarray(data)
        if host.nbytes:
            check("copying to the GPU", self.runtime.memcpyAsync, ptr, host.ctypes.data, host.nbytes,
                  self.runtime.memcpyHostToDevice, self._stream_ptr(stream))
            self.synchronize(stream)

    def download(self, out: np.ndarray, ptr: int, stream=None) -> None:
        if out.nbytes:
            check("copying from the GPU", self.runtime.memcpyAsync, out.ctypes.data, ptr, out.nbytes,
                  self.runtime.memcpyDeviceToHost, self._stream_ptr(stream))

    def copy(self, dst: int, src: int, nbytes: int, stream=None) -> None:
        if nbytes:
            check("copying on the GPU", self.runtime.memcpyAsync, dst, src, nbytes,
                  self.runtime.memcpyDeviceToDevice, self._stream_ptr(stream))

    def memset(self, ptr: int, value: int, nbytes: int, stream=None) -> None:
        if nbytes:
            check("filling device memory", self.runtime.memsetAsync, ptr, value, nbytes, self._stream_ptr(stream))

    def stream(self):
        return check("creating a stream", self.cupy.cuda.Stream, non_blocking=True)

    def _stream_ptr(self, stream) -> int:
        return 0 if stream is None else int(getattr(stream, "ptr", stream))

    def synchronize(self, stream=None) -> None:
        if stream is None:
            check("synchronizing", self.runtime.deviceSynchronize)
        else:
            check("synchronizing the stream", self.runtime.streamSynchronize, self._stream_ptr(stream))

    def launch(self, function, grid, block, smem: int, params: PackedParams, stream=None) -> None:
        check("launching a kernel", self.driver.launchKernel, function, *grid, *block, smem,
              self._stream_ptr(stream), 0, params.extra_ptr)

    def capture(self, stream, run):
        check("starting CUDA graph capture", stream.begin_capture)
        try:
            run(self.launch)
        finally:
            graph = check("finishing CUDA graph capture", stream.end_capture)
        return graph

    def replay(self, graph, stream=None) -> None:
        check("launching the CUDA graph", graph.launch, stream)

    def array_ptr(self, array) -> int:
        return int(array.data.ptr)

    def empty(self, shape, dtype, stream=None):
        return self.cupy.empty(shape, dtype)

    # timing events (per-layer times: `edgert bench --profile`, the API's IProfiler)
    def event(self):
        return check("creating an event", self.cupy.cuda.Event)

    def record(self, event, stream=None) -> None:
        check("recording an event", event.record, stream)

    def elapsed_ms(self, start, end) -> float:
        return float(check("reading event times", self.cupy.cuda.get_elapsed_time, start, end))

    # ordering events between streams (auxiliary streams)
    def sync_event(self):
        return check("creating an event", self.cupy.cuda.Event, disable_timing=True)

    def wait_event(self, stream, event) -> None:
        check("making a stream wait for an event", stream.wait_event, event)


# -- engine and contexts ----------------------------------------------------------------------------
class _Binding:
    """A graph input or output; ``rows`` = (count tensor, axis) for an output whose size depends on the data
    (NMS, NonZero): its buffer holds the bound, and execute() trims it to the count the kernels wrote."""

    def __init__(self, entry: dict, tensors: list):
        self.name, self.dtype = entry["name"], np.dtype(entry["dtype"])
        self.shape, self.tensor = tuple(entry["shape"]), int(entry["tensor"])
        self.scale = tensors[self.tensor].get("scale")   # int8 codes binding: values are codes * scale
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        rows = entry.get("rows")
        self.rows = (int(rows["tensor"]), int(rows["axis"])) if rows else None


def read_counts(driver, addresses: Mapping[int, int], outputs, stream) -> dict[int, np.ndarray]:
    """The run-time counts (int64 scalars in device memory) of the bounded outputs, queued for download on
    ``stream`` after the run: the only values the host reads back besides the outputs themselves."""
    counts = {}
    for binding in outputs:
        if binding.rows is not None and binding.rows[0] not in counts:
            counts[binding.rows[0]] = np.zeros((), np.int64)
            driver.download(counts[binding.rows[0]], addresses[binding.rows[0]], stream)
    return counts


def trim_to_counts(results: dict, outputs, counts: Mapping[int, np.ndarray]) -> dict:
    """Each bounded output cut to its first ``count`` rows along its axis (after the downloads completed)."""
    for binding in outputs:
        if binding.rows is not None:
            tensor, axis = binding.rows
            rows = max(0, min(int(counts[tensor]), results[binding.name].shape[axis]))
            results[binding.name] = results[binding.name][(slice(None),) * axis + (slice(0, rows),)]
    return results


class CudaEngine:
    """A plan loaded on one GPU: arch checked, modules loaded, weights uploaded once."""

    def __init__(self, document: dict, driver=None, device: int = 0):
        self.document = document
        self.driver = driver or CupyDriver(device)
        arch = self.driver.arch()
        key, jit = select_arch(document.get("kernels") or {}, arch, self.driver.device_name(), self.driver.ptx_isa())
        self.arch, section = key, document["kernels"][key]
        if int(section.get("format", 1)) > KERNELS_FORMAT:
            raise PlanError(f"the plan's CUDA kernels section has format {section.get('format')}, this edgert reads "
                            f"formats up to {KERNELS_FORMAT}: update edgert (or rebuild the plan with this one)")
        self.inputs = [_Binding(b, document["tensors"]) for b in document["bindings"]["inputs"]]
        self.outputs = [_Binding(b, document["tensors"]) for b in document["bindings"]["outputs"]]
        self.tensors = document["tensors"]
        modules = [self.driver.load_module(m, jit) for m in section["modules"]]
        self.functions = {}
        for name, module_index in section["kernel_modules"].items():
            self.functions[name] = self.driver.function(modules[int(module_index)], name)
        blob = bytes(document.get("blob", b""))
        self._weights = self.driver.alloc(len(blob))
        self.driver.upload(self._weights.ptr, blob)
        self._constants = {int(c["tensor"]): int(c["offset"]) for c in document.get("constants", [])}
        self._aux = []
        for data in section.get("aux", []):
            buffer = self.driver.alloc(len(data))
            self.driver.upload(buffer.ptr, bytes(data))
            self._aux.append(buffer)
        self._derived_entries = list(section.get("derived", []))
        self._derived = [self._upload_derived(entry) for entry in self._derived_entries]
        self.workspace_bytes = int(section.get("workspace_bytes", 0))
        self.counter_bytes = 4 * int(section.get("counters", 0))
        self.section = section
        self.dynamic = "dynamic" in section and bool(document.get("profiles"))
        if self.dynamic:   # optimization profiles: contexts lower the plan at the shapes they run
            from edgert.runtime.engine import Engine
            from edgert.runtime.cuda_dynamic import check_section
            self.shape_engine = Engine(document)
            self.profiles = self.shape_engine.profiles
            check_section(section, self.functions, len(self.profiles))
            self.launches = []
        else:
            self.launches = self._schedule(section)

    def _constant(self, tensor: int) -> np.ndarray:
        offset = self._constants.get(tensor)
        if offset is None:
            raise PlanError(f"plan is corrupt: kernels derive from tensor {tensor}, which is no constant")
        info = self.tensors[tensor]
        dtype, shape = np.dtype(info["dtype"]), tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.document["blob"], dtype, count, offset).reshape(shape)

    def _upload_derived(self, entry: dict):
        """A constant laid out the way a kernel reads it (e.g. conv weights tap-major), uploaded once."""
        array = self._constant(int(entry["tensor"]))
        perm = [int(p) for p in entry["perm"]]
        if sorted(perm) != list(range(array.ndim)):
            raise PlanError(f"plan is corrupt: bad permutation {perm} of a {array.ndim}-d constant")
        data = np.ascontiguousarray(np.transpose(array, perm), dtype=np.dtype(entry.get("dtype", array.dtype)))
        buffer = self.driver.alloc(data.nbytes)
        self.driver.upload(buffer.ptr, data)
        return buffer

    def _schedule(self, section: dict) -> list[tuple]:
        elided = set((self.document.get("memory") or {}).get("elided", []))
        per_layer = section["launches"]
        if len(per_layer) != len(self.document["layers"]):
            raise PlanError("plan is corrupt: the CUDA launch list does not match the layers")
        launches = []
        for index, entries in enumerate(per_layer):
            if index in elided:
                continue
            for entry in entries:
                if entry["kernel"] not in self.functions:
                    raise PlanError(f"plan is corrupt: launch of unknown kernel {entry['kernel']!r}")
                launches.append((index, entry))
        return launches

    def derived_for(self, entry: dict) -> int:
        """Device address of a derived constant (a profile plan's runtime lowering names them by entry)."""
        if entry in self._derived_entries:
            return self._derived[self._derived_entries.index(entry)].ptr
        buffer = self._upload_derived(entry)   # a shape the build did not lower: derive it now, once
        self._derived_entries.append(entry)
        self._derived.append(buffer)
        return buffer.ptr

    def constant_ptr(self, tensor: int) -> int | None:
        offset = self._constants.get(tensor)
        return None if offset is None else self._weights.ptr + offset

    def derived_ptr(self, index: int) -> int:
        if not 0 <= index < len(self._derived):
            raise PlanError(f"plan is corrupt: derived constant {index} does not exist")
        return self._derived[index].ptr

    def aux_ptr(self, index: int) -> int:
        if not 0 <= index < len(self._aux):
            raise PlanError(f"plan is corrupt: kernel table {index} does not exist")
        return self._aux[index].ptr

    def create_execution_context(self, use_graph: bool = True) -> "CudaExecutionContext":
        if self.dynamic:
            from edgert.runtime.cuda_dynamic import DynamicCudaExecutionContext
            return DynamicCudaExecutionContext(self, use_graph)
        return CudaExecutionContext(self, use_graph)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles) if self.dynamic else 1

    def __repr__(self) -> str:
        return f"CudaEngine({self.arch}, {len(self.launches)} launches, {self.driver.device_name()})"


class CudaExecutionContext:
    """Own arena, input buffers, workspace and stream; the schedule replays as one CUDA graph."""

    def __init__(self, engine: CudaEngine, use_graph: bool = True):
        self.engine = engine
        driver = self.driver = engine.driver
        self._lock = threading.Lock()
        self._buffers, self._regions = [], []
        self.addresses = self._place_tensors()
        self.stream = driver.stream()
        layers = engine.document["layers"]
        self.streams = StreamSchedule.from_layers(layers) if any("stream" in layer for layer in layers) else None
        count = self.streams.count if self.streams is not None else 1
        self._aux_streams = [driver.stream() for _ in range(count - 1)]
        self._workspaces = [driver.alloc(max(engine.workspace_bytes, 1)) for _ in range(count)]
        self._counter_buffers = [driver.alloc(max(engine.counter_bytes, 4)) for _ in range(count)]
        self._workspace, self._counters = self._workspaces[0], self._counter_buffers[0]
        self._buffers += self._workspaces + self._counter_buffers
        for counters in self._counter_buffers:   # kernels leave them at zero
            driver.memset(counters.ptr, 0, engine.counter_bytes, self.stream)
        driver.synchronize(self.stream)
        stream_of = self.streams.streams if self.streams is not None else [0] * len(layers)
        self._calls = [(engine.functions[entry["kernel"]], tuple(entry["grid"]), tuple(entry["block"]),
                        int(entry.get("smem", 0)), self._pack(entry, stream_of[layer]))
                       for layer, entry in engine.launches]
        self._ops = self._stream_ops() if self.streams is not None else None
        self.use_graph = use_graph
        self._graph = None

    def _allocate(self, nbytes: int):
        buffer = self.driver.alloc(max(int(nbytes), 1))
        self._buffers.append(buffer)
        self._regions.append((buffer.ptr, int(nbytes)))
        return buffer

    def poison(self, byte: int = 0xFF) -> None:
        """Fill the arena and input buffers with ``byte`` (0xFF: NaN for floats), so a test sees any
        output element that a kernel failed to write (the workspace keeps its zeroed counters)."""
        for ptr, nbytes in self._regions:
            self.driver.memset(ptr, byte, nbytes, self.stream)
        self.driver.synchronize(self.stream)

    def _place_tensors(self) -> dict[int, int]:
        engine, addresses = self.engine, {}
        memory = engine.document.get("memory") or {}
        for pool in (memory.get("pools") or {}).values():
            arena = self._allocate(int(pool["arena_bytes"]))
            for tensor, offset in pool["offsets"]:
                addresses[int(tensor)] = arena.ptr + int(offset)
        for binding in engine.inputs:
            addresses[binding.tensor] = self._allocate(binding.nbytes).ptr
        for tensor in engine._constants:
            addresses[tensor] = engine.constant_ptr(tensor)
        for index, tensor in enumerate(engine.tensors):  # plans without a memory section
            if index not in addresses:
                nbytes = int(np.prod(tensor["shape"], dtype=np.int64)) * np.dtype(tensor["dtype"]).itemsize
                addresses[index] = self._allocate(nbytes).ptr
        return addresses

    def _stream_ops(self) -> list[tuple]:
        """The schedule as ("launch", stream, call) / ("record", stream, event) / ("wait", stream, event) in issue
        order: fork from the main stream (0), each layer's waits and launches on its stream, an event recorded
        after every layer another waits for, and every auxiliary stream joined back into the main one."""
        schedule, driver = self.streams, self.driver
        waited = {w for waits in schedule.waits for w in waits}
        events = {layer: driver.sync_event() for layer in sorted(waited)}
        start = driver.sync_event()
        ops: list[tuple] = [("record", 0, start)] + [("wait", s, start) for s in range(1, schedule.count)]
        calls = {}
        for (layer, _), call in zip(self.engine.launches, self._calls):
            calls.setdefault(layer, []).append(call)
        for layer, stream in enumerate(schedule.streams):
            ops += [("wait", stream, events[w]) for w in schedule.waits[layer]]
            ops += [("launch", stream, call) for call in calls.get(layer, ())]
            if layer in events:
                ops.append(("record", stream, events[layer]))
        for stream in range(1, schedule.count):
            end = driver.sync_event()
            ops += [("record", stream, end), ("wait", 0, end)]
        return ops

    def _issue(self, launch, main_stream) -> None:
        """Issue the stream plan's operations, the main stream being ``main_stream``."""
        streams = [main_stream] + self._aux_streams
        for op, stream, payload in self._ops:
            if op == "launch":
                launch(*payload, streams[stream])
            elif op == "record":
                self.driver.record(payload, streams[stream])
            else:
                self.driver.wait_event(streams[stream], payload)

    def _resolve(self, entry, stream: int = 0) -> int:
        kind = entry[0]
        if kind == "t":
            tensor = int(entry[1])
            if tensor not in self.addresses:
                raise PlanError(f"plan is corrupt: a kernel reads tensor {tensor}, which does not exist")
            return self.addresses[tensor] + int(entry[2])
        if kind == "a":
            return self.engine.aux_ptr(int(entry[1])) + int(entry[2])
        if kind == "d":
            return self.engine.derived_ptr(int(entry[1])) + int(entry[2])
        if kind == "w":
            return (self._workspaces[stream] if stream else self._workspace).ptr + int(entry[1])
        if kind == "c":
            return (self._counter_buffers[stream] if stream else self._counters).ptr + int(entry[1])
        return 0

    def _pack(self, entry: dict, stream: int = 0) -> PackedParams:
        """Parameters of a launch on ``stream`` (its workspace and counters are that stream's own)."""
        return PackedParams(pack_params(entry["params"], lambda e: self._resolve(e, stream)))

    def layer_calls(self) -> list[tuple]:
        """(layer index, launch) of every launch, in schedule order."""
        return [(layer, call) for (layer, _), call in zip(self.engine.launches, self._calls)]

    def layer_times(self, stream=None) -> list[tuple[int, float]]:
        """Run the schedule once launch by launch (not as a graph) on the device buffers as they are, each
        layer's launches between two events, and return (layer index, milliseconds) in schedule order; waits
        for the GPU."""
        stream = stream if stream is not None else self.stream
        with self._lock:
            marks = []
            for layer, (function, grid, block, smem, params) in self.layer_calls():
                start, end = self.driver.event(), self.driver.event()
                self.driver.record(start, stream)
                self.driver.launch(function, grid, block, smem, params, stream)
                self.driver.record(end, stream)
                marks.append((layer, start, end))
            self.driver.synchronize(stream)
        times: list[tuple[int, float]] = []
        for layer, start, end in marks:
            ms = self.driver.elapsed_ms(start, end)
            if times and times[-1][0] == layer:   # a layer of several launches: one time
                times[-1] = (layer, times[-1][1] + ms)
            else:
                times.append((layer, ms))
        return times

    def _run_schedule(self, launch) -> None:
        if self._ops is not None:
            self._issue(launch, self.stream)
            return
        for function, grid, block, smem, params in self._calls:
            launch(function, grid, block, smem, params, self.stream)

    def _run(self) -> None:
        self.run(self.stream)

    def run(self, stream=None) -> None:
        """Run the schedule on the context's device buffers as they are (no copies), on ``stream``."""
        stream = stream if stream is not None else self.stream
        if not self.use_graph and self._ops is not None:
            self._issue(self.driver.launch, stream)
            return
        if not self.use_graph:
            for function, grid, block, smem, params in self._calls:
                self.driver.launch(function, grid, block, smem, params, stream)
            return
        if self._graph is None:
            self._graph = self.driver.capture(self.stream, self._run_schedule)
        self.driver.replay(self._graph, stream)

    def device_buffer(self, name: str) -> int:
        """Device address of an input or output binding's buffer (for zero-copy use with other libraries)."""
        for binding in self.engine.inputs + self.engine.outputs:
            if binding.name == name:
                return self.addresses[binding.tensor]
        raise InputError(f"no binding named {name!r}")

    def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self._check_inputs(inputs)
        with self._lock:
            for binding, array in zip(self.engine.inputs, arrays):
                self.driver.upload(self.addresses[binding.tensor], array, self.stream)
            self._run()
            results = {}
            for binding in self.engine.outputs:
                out = np.empty(binding.shape, binding.dtype)
                self.driver.download(out, self.addresses[binding.tensor], self.stream)
                results[binding.name] = out
            counts = read_counts(self.driver, self.addresses, self.engine.outputs, self.stream)
            self.driver.synchronize(self.stream)
        return trim_to_counts(results, self.engine.outputs, counts)

    def execute_async(self, inputs: Mapping, stream=None) -> dict:
        """Device arrays in (cupy, or pycuda GPUArrays with that backend), fresh device arrays out, all
        queued on ``stream`` (default: the context's); nothing waits for the GPU."""
        stream = stream if stream is not None else self.stream
        with self._lock:
            for binding in self.engine.inputs:
                array = inputs.get(binding.name)
                if array is None:
                    raise InputError(f"missing input {binding.name!r} ({binding.dtype.name}, shape {binding.shape})")
                if tuple(array.shape) != binding.shape or np.dtype(array.dtype) != binding.dtype:
                    raise InputError(f"input {binding.name!r}: expected {binding.dtype.name} {binding.shape}, got "
                                     f"{np.dtype(array.dtype).name} {tuple(array.shape)}")
                self.driver.copy(self.addresses[binding.tensor], self.driver.array_ptr(array), binding.nbytes, stream)
            self.run(stream)
            results = {}
            for binding in self.engine.outputs:
                out = self.driver.empty(binding.shape, binding.dtype, stream)
                self.driver.copy(self.driver.array_ptr(out), self.addresses[binding.tensor], binding.nbytes, stream)
                results[binding.name] = out
        return results

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return check_inputs(self.engine.inputs, inputs)


def load(document: dict, driver=None, device: int = 0) -> CudaEngine:
    return CudaEngine(document, driver=driver, device=device)
