"""Run edgert's CUDA kernels on the CPU, for tests on machines without a GPU.

``build_module(source)`` compiles a plan's kernel source with the host C++ compiler against
``emu.h`` (blocks run one by one, threads as fibers with real barriers and warp exchanges, tensor
core instructions emulated by their documented fragment layouts) into a shared library.
``EmulatedDriver`` offers the same small interface as the cupy and pycuda drivers of
``edgert.runtime.cuda``, with host memory standing in for device memory, so whole plans run
through the real runtime code: launch specs, parameter packing, arena offsets, graph replay.
Slow (every thread is a fiber): meant for small shapes.

Streams and events are modelled for plans with auxiliary streams: a captured graph keeps each stream's
operations in issue order, and replay interleaves the streams by a policy (``interleave=``): ``"fifo"``
(issue order), ``"low"`` / ``"high"`` (the runnable stream of the lowest / highest number first: each stream
runs as far ahead of the others as its waits allow) or ``"random:SEED"``. An operation runs only after every earlier one of
its stream, and a wait only after the event's matching record ran, as on a GPU; so a missing wait shows
up as a wrong result under some policy (a wait that could never be met would be a DeviceError). Outside capture every
operation runs when issued (issue order is one valid interleaving).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from edgert.errors import DeviceError, EdgeRTError

HERE = Path(__file__).parent
_KERNEL_NAME = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')
_LIBRARIES: dict[str, ctypes.CDLL] = {}


def available() -> bool:
    return shutil.which(os.environ.get("CXX", "g++")) is not None


def kernel_names(source: str) -> list[str]:
    return _KERNEL_NAME.findall(source)


def _cache_folder() -> Path:
    value = os.environ.get("EDGERT_CUDA_CACHE")
    base = Path(value) if value and value != "0" else Path.home() / ".cache" / "edgert" / "cuda"
    return base / "emu"


def build_module(source: str) -> ctypes.CDLL:
    """Compile ``source`` for the emulator (cached by content) and load it."""
    names = kernel_names(source)
    full = source + "\n" + "\n".join(f"EDGERT_EMU_KERNEL({name})" for name in names) + "\n"
    emu_header = (HERE / "emu.h").read_text()
    key = hashlib.sha256((emu_header + full).encode()).hexdigest()[:24]
    if key in _LIBRARIES:
        return _LIBRARIES[key]
    folder = _cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"{key}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(prefix="edgert-emu-") as tmp:
            src = Path(tmp) / "module.cpp"
            src.write_text(full)
            out = Path(tmp) / "module.so"
            command = [os.environ.get("CXX", "g++"), "-std=c++17", "-O1", "-shared", "-fPIC", "-w",
                       "-DEDGERT_EMU", "-include", str(HERE / "emu.h"), "-o", str(out), str(src)]
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            if run.returncode != 0:
                raise EdgeRTError("emulator build failed:\n" + "\n".join(run.stderr.splitlines()[:60]))
            shutil.move(str(out), str(library))
    lib = ctypes.CDLL(str(library))
    lib.emu_error.restype = ctypes.c_char_p
    _LIBRARIES[key] = lib
    return lib


class _Buffer:
    """Host memory standing in for a device allocation (kept alive by this object)."""

    def __init__(self, nbytes: int):
        self.array = np.empty(max(int(nbytes), 1) + 256, np.uint8)
        self.ptr = self.array.ctypes.data + (-self.array.ctypes.data % 256)


class _Function:
    def __init__(self, lib, name: str):
        self.name = name
        try:
            self.fn = getattr(lib, f"emu_launch_{name}")
        except AttributeError:
            raise DeviceError(f"kernel {name!r} is not in the module") from None
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_void_p]
        self.lib = lib


class _Stream:
    def __init__(self, index: int):
        self.index = index

    def __repr__(self) -> str:
        return f"stream {self.index}"


class _SyncEvent:
    """An ordering event: ``issued`` counts records issued (captured), ``done`` records that ran (replay)."""

    def __init__(self):
        self.issued = 0
        self.done = 0


_POLICIES = ("fifo", "low", "high", "random")


class EmulatedDriver:
    """The runtime's driver interface over host memory and emulated kernels."""

    name = "emulator"

    def __init__(self, arch: str = "sm_90", interleave: str = "fifo"):
        self._arch = arch
        policy = interleave.split(":")[0]
        if policy not in _POLICIES or (policy == "random") != (":" in interleave):
            raise EdgeRTError(f"interleave {interleave!r}: expected fifo, low, high or random:SEED")
        self.interleave = interleave
        self._streams = 0
        self._captured: list | None = None

    def arch(self) -> str:
        return self._arch

    def device_name(self) -> str:
        return f"CPU emulator ({self._arch})"

    def ptx_isa(self):
        return None

    def load_module(self, module: dict, jit: bool = False):
        source = module.get("emu_source")
        if source is None:
            raise DeviceError("this plan carries no kernel source for the emulator (compile it with emulate=True)")
        return build_module(source)

    def function(self, module, name: str):
        return _Function(module, name)

    def alloc(self, nbytes: int) -> _Buffer:
        return _Buffer(nbytes)

    def upload(self, ptr: int, data, stream=None) -> None:
        data = np.ascontiguousarray(np.frombuffer(data, np.uint8) if isinstance(data, (bytes, memoryview))
                                    else data)
        ctypes.memmove(ptr, data.ctypes.data, data.nbytes)

    def download(self, out: np.ndarray, ptr: int, stream=None) -> None:
        ctypes.memmove(out.ctypes.data, ptr, out.nbytes)

    def copy(self, dst: int, src: int, nbytes: int, stream=None) -> None:
        ctypes.memmove(dst, src, nbytes)

    def memset(self, ptr: int, value: int, nbytes: int, stream=None) -> None:
        ctypes.memset(ptr, value, nbytes)

    def stream(self):
        self._streams += 1
        return _Stream(self._streams)

    def synchronize(self, stream=None) -> None:
        return None

    def launch(self, function: _Function, grid, block, smem: int, params, stream=None) -> None:
        if self._captured is not None:
            self._captured.append(("launch", stream, (function, grid, block, smem, params)))
            return
        self._run_launch(function, grid, block, smem, params)

    def capture(self, stream, run):
        """The operations issued by ``run`` (launches, event records and waits), per stream in issue order."""
        self._captured = []
        try:
            run(self.launch)
            return self._captured
        finally:
            self._captured = None

    def replay(self, graph, stream=None) -> None:
        queues: dict = {}
        for order, (op, on, payload) in enumerate(graph):
            queues.setdefault(on, []).append((order, op, payload))
        rank = {on: getattr(on, "index", 0) for on in queues}   # stream numbers, in creation order
        for op, _, payload in graph:
            if op == "record":
                payload[0].done = 0
        rng = random.Random(int(self.interleave.split(":")[1])) if ":" in self.interleave else None
        heads = {on: 0 for on in queues}
        while True:
            ready = [on for on, queue in queues.items() if heads[on] < len(queue) and self._runnable(queue[heads[on]])]
            if not ready:
                break
            if rng is not None:
                on = rng.choice(sorted(ready, key=rank.get))
            elif self.interleave == "fifo":
                on = min(ready, key=lambda s: queues[s][heads[s]][0])
            else:
                on = (min if self.interleave == "low" else max)(ready, key=rank.get)
            _, op, payload = queues[on][heads[on]]
            heads[on] += 1
            if op == "launch":
                self._run_launch(*payload)
            elif op == "record":
                event, sequence = payload
                event.done = max(event.done, sequence)
        stuck = [on for on, queue in queues.items() if heads[on] < len(queue)]
        if stuck:
            raise DeviceError(f"CUDA graph deadlock: {', '.join(map(str, stuck))} wait for events never recorded")

    @staticmethod
    def _runnable(item) -> bool:
        _, op, payload = item
        return op != "wait" or payload[0].done >= payload[1]

    def _run_launch(self, function, grid, block, smem, params) -> None:
        rc = function.fn(*[int(g) for g in grid], *[int(b) for b in block], ctypes.c_void_p(params.buffer_ptr))
        if rc != 0:
            raise DeviceError(f"kernel {function.name}: {function.lib.emu_error().decode()}")

    # ordering events between streams: recorded and waited for in captured graphs (see the module doc)
    def sync_event(self) -> _SyncEvent:
        return _SyncEvent()

    def wait_event(self, stream, event: _SyncEvent) -> None:
        if self._captured is not None:
            self._captured.append(("wait", stream, (event, event.issued)))

    # device arrays for execute_async: NumPy arrays stand in for them
    def array_ptr(self, array) -> int:
        return array.ctypes.data

    def empty(self, shape, dtype, stream=None):
        return np.empty(shape, dtype)

    # timing events: the emulator runs each launch synchronously, so an event is the host clock when recorded
    def event(self) -> list:
        return [None]

    def record(self, event, stream=None) -> None:
        if isinstance(event, _SyncEvent):
            event.issued += 1
            if self._captured is not None:
                self._captured.append(("record", stream, (event, event.issued)))
            else:
                event.done = event.issued
            return
        event[0] = time.perf_counter()

    def elapsed_ms(self, start: list, end: list) -> float:
        if start[0] is None or end[0] is None:
            raise DeviceError("elapsed time of an event that was never recorded")
        return (end[0] - start[0]) * 1e3
