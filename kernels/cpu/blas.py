"""Control of NumPy's BLAS thread count, so small matrix products run on the calling thread.

A multi-threaded BLAS wakes its workers for every product. On a core that something else keeps
busy, that wake-up can wait a whole scheduler slice: a tiny ResNet took 96 ms per run with two
OpenBLAS threads on a loaded 2-core machine and 0.9 ms with one. ``gemm_threads(flops)`` picks one
thread below ``SMALL_GEMM_FLOPS`` and ``max_threads()`` above. The thread count is set through the
BLAS library NumPy loaded (OpenBLAS's ``openblas_set_num_threads``, under any of the symbol names
its builds export); with an unknown BLAS this module does nothing. ``bind_gemm`` is the same choice
made once, for a prepare hook's product over fixed arrays.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np   # also loads NumPy's BLAS, which _find_setter looks for

SMALL_GEMM_FLOPS = 1 << 24  # below ~16 MFLOP a product is faster on one thread than waking others
_SYMBOLS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads")
_lock = threading.Lock()
_state = {"setter": None, "probed": False, "current": None}


def _find_setter():
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
        for name in _SYMBOLS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                return setter
    return None


def max_threads() -> int:
    configured = os.environ.get("EDGERT_CPU_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, min(os.cpu_count() or 1, 4))


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
    """Use one BLAS thread for a small product, every configured thread for a large one."""
    set_threads(1 if flops < SMALL_GEMM_FLOPS else max_threads())


def bind_gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, flops: int):
    """run() computing out = a @ b (fixed arrays) on as many BLAS threads as the size deserves."""
    threads = 1 if flops < SMALL_GEMM_FLOPS else max_threads()
    matmul = np.matmul

    def gemm():
        set_threads(threads)
        matmul(a, b, out)
    return gemm
