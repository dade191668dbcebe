"""Run edgert's CUDA kernels on the CPU, for tests on machines without a GPU.

``build_module(source)`` compiles a plan's kernel source with the host C++ compiler against
``emu.h`` (blocks run one by one, threads as fibers with real barriers and warp exchanges, tensor
core instructions emulated by their documented fragment layouts) into a shared library.
``EmulatedDriver`` offers the same small interface as the cupy and pycuda drivers of
``edgert.runtime.cuda``, with host memory standing in for device memory, so whole plans run
through the real runtime code: launch specs, parameter packing, arena offsets, graph replay.
Slow (every thread is a fiber): meant for small shapes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
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


class EmulatedDriver:
    """The runtime's driver interface over host memory and emulated kernels."""

    name = "emulator"

    def __init__(self, arch: str = "sm_90"):
        self._arch = arch

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
        return None

    def synchronize(self, stream=None) -> None:
        return None

    def launch(self, function: _Function, grid, block, smem: int, params, stream=None) -> None:
        rc = function.fn(*[int(g) for g in grid], *[int(b) for b in block], ctypes.c_void_p(params.buffer_ptr))
        if rc != 0:
            raise DeviceError(f"kernel {function.name}: {function.lib.emu_error().decode()}")

    def capture(self, stream, run):
        calls = []
        run(lambda *args: calls.append(args))
        return calls

    def replay(self, graph, stream=None) -> None:
        for args in graph:
            self.launch(*args)

    # device arrays for execute_async: NumPy arrays stand in for them
    def array_ptr(self, array) -> int:
        return array.ctypes.data

    def empty(self, shape, dtype, stream=None):
        return np.empty(shape, dtype)

    # timing events: the emulator runs each launch synchronously, so an event is the host clock when recorded
    def event(self) -> list:
        return [None]

    def record(self, event: list, stream=None) -> None:
        event[0] = time.perf_counter()

    def elapsed_ms(self, start: list, end: list) -> float:
        if start[0] is None or end[0] is None:
            raise DeviceError("elapsed time of an event that was never recorded")
        return (end[0] - start[0]) * 1e3
