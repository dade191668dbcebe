"""CPU kernel: Scale (y = x * scale + shift; inputs x, scale, [shift], already shaped to broadcast against x).

attrs: axis (the channel axis the importer shaped scale/shift for; informational here, since NumPy
broadcasting already lines them up). The prepare hook binds the same one or two ufunc calls. float16 data is
computed in float32 and rounded once at the store, as the CUDA kernels do: rounding ``x * scale`` before
``+ shift`` cancels most of it (a folded BatchNorm after a sum) loses the bits the shift does not cancel.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


def scale_shift(x: np.ndarray, scale: np.ndarray | None, shift: np.ndarray | None, out: np.ndarray) -> None:
    """out = x * scale + shift, computed in out's type, float16 in float32 (shared with fused kernels)."""
    dtype = np.float32 if out.dtype == np.float16 else out.dtype
    if dtype != out.dtype:
        wide = np.empty(out.shape, dtype)
        scale_shift(x, scale, shift, wide)
        np.copyto(out, wide, casting="unsafe")
        return
    if scale is not None:
        np.multiply(x, scale.astype(dtype, copy=False), out=out, casting="unsafe")
    else:
        np.copyto(out, x, casting="unsafe")
    if shift is not None:
        np.add(out, shift.astype(dtype, copy=False), out=out, casting="unsafe")


@register(LayerKind.SCALE)
def scale(attrs, inputs, outputs):
    scale_shift(inputs[0], inputs[1] if len(inputs) > 1 else None, inputs[2] if len(inputs) > 2 else None,
                outputs[0])


@register_prepare(LayerKind.SCALE)
def prepare_scale(attrs, inputs, outputs, workspace):
    x, out = inputs[0], outputs[0]
    scale, shift = (inputs[i] if len(inputs) > i else None for i in (1, 2))
    if x.dtype != out.dtype or any(a is not None and a.dtype != out.dtype for a in (scale, shift)):
        return None
    if out.dtype == np.float16:   # in float32, rounded once at the store
        wide = workspace.scratch(out.shape, np.float32)
        first = functools.partial(np.copyto, wide, x) if scale is None else \
            functools.partial(np.multiply, x, scale, wide, dtype=np.float32)
        add = None if shift is None else functools.partial(np.add, wide, shift, wide, dtype=np.float32)
        return sequence([first, add, functools.partial(np.copyto, out, wide, casting="same_kind")])
    first = functools.partial(np.copyto, out, x) if scale is None else functools.partial(np.multiply, x, scale, out)
    return sequence([first, None if shift is None else functools.partial(np.add, out, shift, out)])
