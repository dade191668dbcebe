"""Kernel registry keyed by (layer kind, device).

A kernel is ``fn(attrs, inputs, outputs) -> None``: it reads NumPy (or device) arrays ``inputs``
(None for an absent optional input) and writes its results into the preallocated ``outputs``,
whose shapes and dtypes come from shape inference. Kernels never allocate their results, so the
runtime can hand them views of one arena.

A kind may also register a **prepare hook** (``@register_prepare(kind)``):
``prepare(attrs, inputs, outputs, workspace) -> run | None``. The CPU runtime calls it once per
execution context with the very arrays the layer will see on every run (arena views, the engine's
constants, the context's input buffers), so the hook can bind everything that does not change:
shapes, views, reshaped weights, scratch arrays. ``run()`` then does the layer's work with no
arguments. A hook returns None where it has no fast path, and the runtime calls the kernel as
usual. ``workspace`` (see ``edgert.runtime.engine.Workspace``) hands out per-context scratch
memory and derives arrays from constants once per engine.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind

Kernel = Callable[[dict, Sequence, Sequence], None]
Prepare = Callable[[dict, Sequence, Sequence, Any], Optional[Callable[[], None]]]
_KERNELS: dict[tuple[LayerKind, str], Kernel] = {}
_PREPARES: dict[tuple[LayerKind, str], Prepare] = {}


def register(kind: LayerKind, device: str = "cpu"):
    def decorate(fn: Kernel) -> Kernel:
        key = (LayerKind(kind), device)
        if key in _KERNELS:
            raise RuntimeError(f"a {device} kernel for {key[0].value} is already registered")
        _KERNELS[key] = fn
        return fn
    return decorate


def register_prepare(kind: LayerKind, device: str = "cpu"):
    """Register the prepare hook of a kind's kernel (see the module docstring)."""
    def decorate(fn: Prepare) -> Prepare:
        key = (LayerKind(kind), device)
        if key in _PREPARES:
            raise RuntimeError(f"a {device} prepare hook for {key[0].value} is already registered")
        _PREPARES[key] = fn
        return fn
    return decorate


def lookup_prepare(kind: LayerKind, device: str = "cpu") -> Prepare | None:
    """The prepare hook of a kind's kernel, or None when the kernel has none."""
    if device == "cpu":
        import edgert.kernels.cpu  # noqa: F401
    return _PREPARES.get((LayerKind(kind), device))


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
