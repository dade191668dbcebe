"""CPU kernel: Slice (attrs: starts, sizes, steps — one per axis, already clamped to the input).

The prepare hook binds the copy from the (fixed) strided view.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register, register_prepare


def axis_slice(start: int, size: int, step: int) -> slice:
    """The Python slice taking ``size`` elements from ``start`` by ``step`` (``step`` may be negative)."""
    if size == 0:
        return slice(0, 0)
    stop = start + (size - 1) * step + (1 if step > 0 else -1)
    return slice(start, stop if stop >= 0 else None, step)


def sliced(attrs, x: np.ndarray) -> np.ndarray:
    """A strided view of ``x`` (shared with fused kernels)."""
    return x[tuple(axis_slice(*args) for args in zip(attrs["starts"], attrs["sizes"], attrs["steps"]))]


@register(LayerKind.SLICE)
def slice_(attrs, inputs, outputs):
    np.copyto(outputs[0], sliced(attrs, inputs[0]))


@register_prepare(LayerKind.SLICE)
def prepare_slice(attrs, inputs, outputs, workspace):
    return functools.partial(np.copyto, outputs[0], sliced(attrs, inputs[0]))
