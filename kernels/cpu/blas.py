"""Matrix products on the CPU kernels' worker pool, with NumPy's BLAS kept at one thread.

A multi-threaded BLAS wakes its own workers for every product, and OpenBLAS's workers spin while they wait:
on a core that something else keeps busy that wake-up can wait a whole scheduler slice (a tiny ResNet took
96 ms per run with two OpenBLAS threads on a loaded 2-core machine and 0.9 ms with one), and several
contexts in several threads each woke a full set of BLAS threads. So BLAS runs single-threaded, set once
through the library NumPy loaded (OpenBLAS's ``openblas_set_num_threads``, under any of the symbol names its
builds export; with an unknown BLAS this module cannot and leaves it), and a large product is split by
column blocks of its right operand over the shared pool (threads.py), each block one BLAS call.
``bind_gemm`` makes that split once, for a prepare hook's product over fixed arrays; ``matmul`` is the same
for arrays known only at run time.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import numpy as np   # also loads NumPy's BLAS, which _find_setter looks for

from edgert.kernels.cpu import threads

# below ~8 MFLOP (~0.15 ms on one core) a product is faster on one thread than waking a worker (measured on a
# loaded 2-core machine: a split 4.7 MFLOP product took 57 µs, unsplit 41 µs)
PARALLEL_GEMM_FLOPS = 1 << 23
MIN_BLOCK_COLUMNS = 64   # narrower column blocks lose more in BLAS packing than the split gains
# ... but a product of a few rows with a right operand this large (a classifier's matrix-vector product: 1280x1000
# floats, 5 MiB, for 2.6 MFLOP) is bound by fetching that operand from memory, which two cores do faster than one;
# its region times both ways and keeps the faster (threads.py)
STREAMED_BYTES = 1 << 20
STREAMED_MAX_ROWS = 4
_SYMBOLS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads")
_SGEMM_SYMBOLS = ("scipy_cblas_sgemm64_", "cblas_sgemm64_", "cblas_sgemm", "scipy_cblas_sgemm")
_lock = threading.Lock()
_state = {"setter": None, "probed": False, "current": None}


def _find_symbol(names):
    """(function, its name) of the first of ``names`` that a BLAS library NumPy loaded exports; None without one."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "blas" in line.lower() and ".so" in line})
    except OSError:
        return None
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LOCAL", 0)
    for path in paths:
        try:
            library = ctypes.CDLL(path, mode=mode)
        except OSError:
            continue
        for name in names:
            function = getattr(library, name, None)
            if function is not None:
                return function, name
    return None


def _find_setter():
    found = _find_symbol(_SYMBOLS)
    if found is None:
        return None
    setter = found[0]
    setter.argtypes = [ctypes.c_int]
    setter.restype = None
    return setter


def sgemm() -> tuple[int, bool] | None:
    """(address, ilp64) of the cblas_sgemm of NumPy's BLAS (ilp64: 64-bit integers, OpenBLAS's ``64_`` builds), for
    the native module's split products (native_gemm.c); None when NumPy's BLAS exports none this module knows."""
    if "sgemm" not in _state:
        with _lock:
            found = _find_symbol(_SGEMM_SYMBOLS)
            _state["sgemm"] = None if found is None else \
                (ctypes.cast(found[0], ctypes.c_void_p).value, found[1].endswith("64_"))
    return _state["sgemm"]


def set_threads(count: int) -> None:
    """Set the BLAS thread count (no-op when unchanged or when the BLAS is unknown)."""
    if _state["current"] == count:
        return
    with _lock:
        if not _state["probed"]:
            _state["setter"], _state["probed"] = _find_setter(), True
        if _state["setter"] is not None:
            _state["setter"](count)
        _state["current"] = count


def gemm_threads(flops: int) -> None:
    """Keep BLAS at one thread (the kernels split products over the pool instead); ``flops`` is unused."""
    set_threads(1)


def _column_blocks(a: np.ndarray, b: np.ndarray, out: np.ndarray, flops: int) -> list:
    """Calls computing out = a @ b, one per column block of b (a single call when not worth splitting)."""
    columns = b.shape[-1] if b.ndim > 1 else 1
    streamed = b.ndim == 2 and (a.shape[-2] if a.ndim > 1 else 1) <= STREAMED_MAX_ROWS and b.nbytes >= STREAMED_BYTES
    workers = threads.thread_count() if (flops >= PARALLEL_GEMM_FLOPS or streamed) and b.ndim > 1 else 1
    ranges = threads.split(columns, workers, MIN_BLOCK_COLUMNS)
    if len(ranges) == 1:
        return [functools.partial(np.matmul, a, b, out=out)]
    return [functools.partial(np.matmul, a, b[..., lo:hi], out=out[..., lo:hi]) for lo, hi in ranges]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, flops: int = 0) -> np.ndarray:
    """out = a @ b, split over the worker pool when ``flops`` deserves it."""
    set_threads(1)
    if out is None:
        if a.ndim < 2 or b.ndim < 2:
            return np.matmul(a, b)
        out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]),
                       np.result_type(a, b))
    threads.pool().run_parts(_column_blocks(a, b, out, flops))
    return out


def bind_gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, flops: int):
    """run() computing out = a @ b (fixed arrays), split over the worker pool when the size deserves it."""
    set_threads(1)
    parts = _column_blocks(a, b, out, flops)
    if len(parts) == 1:
        return parts[0]
    return threads.parallel(parts)
