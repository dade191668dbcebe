"""Kernel registry keyed by (layer kind, device).

A kernel is ``fn(attrs, inputs, outputs) -> None``: it reads NumPy (or device) arrays ``inputs``
(None for an absent optional input) and writes its results into the preallocated ``outputs``,
whose shapes and dtypes come from shape inference. Kernels never allocate their results, so the
runtime can hand them views of one arena.
"""

from __future__ import annotations

from typing import Callable, Sequence

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind

Kernel = Callable[[dict, Sequence, Sequence], None]
_KERNELS: dict[tuple[LayerKind, str], Kernel] = {}


def register(kind: LayerKind, device: str = "cpu"):
    def decorate(fn: Kernel) -> Kernel:
        key = (LayerKind(kind), device)
        if key in _KERNELS:
            raise RuntimeError(f"a {device} kernel for {key[0].value} is already registered")
        _KERNELS[key] = fn
        return fn
    return decorate


def lookup(kind: LayerKind, device: str = "cpu") -> Kernel:
    if device == "cpu":
        import edgert.kernels.cpu  # noqa: F401  (registers the CPU kernels; cached after the first time)
    try:
        return _KERNELS[(LayerKind(kind), device)]
    except KeyError:
        raise UnsupportedError(f"no {device} kernel for layer kind {LayerKind(kind).value}") from None


def kinds(device: str = "cpu") -> set[LayerKind]:
    if device == "cpu":
        import edgert.kernels.cpu  # noqa: F401
    return {kind for kind, dev in _KERNELS if dev == device}
