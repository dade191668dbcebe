"""CPU kernel: Concatenation (attrs: axis).

The prepare hook binds one copy per input into its slice of the output, and none for the inputs that
the memory planner already placed there.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


@register(LayerKind.CONCATENATION)
def concatenation(attrs, inputs, outputs):
    out, axis = outputs[0], attrs["axis"]
    if not any(np.may_share_memory(x, out) for x in inputs):
        np.concatenate(inputs, axis=axis, out=out)
        return
    # The memory planner placed (some) inputs inside the output already: copy only the others.
    index, start = [slice(None)] * out.ndim, 0
    for x in inputs:
        index[axis] = slice(start, start + x.shape[axis])
        start += x.shape[axis]
        target = out[tuple(index)]
        if not _same_elements(target, x):
            np.copyto(target, x)


def _same_elements(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two same-shaped arrays address the same memory (strides of size-1 dims do not matter)."""
    same_strides = all(sa == sb for sa, sb, d in zip(a.strides, b.strides, a.shape) if d > 1)
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and same_strides


@register_prepare(LayerKind.CONCATENATION)
def prepare_concatenation(attrs, inputs, outputs, workspace):
    out, axis = outputs[0], attrs["axis"]
    index, start, calls = [slice(None)] * out.ndim, 0, []
    for x in inputs:
        index[axis] = slice(start, start + x.shape[axis])
        start += x.shape[axis]
        target = out[tuple(index)]
        if not _same_elements(target, x):
            calls.append(functools.partial(np.copyto, target, x))
    return sequence(calls) or (lambda: None)
