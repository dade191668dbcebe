"""CPU kernel: Scale (y = x * scale + shift; inputs x, scale, [shift], already shaped to broadcast against x).

attrs: axis (the channel axis the importer shaped scale/shift for; informational here, since NumPy
broadcasting already lines them up). The prepare hook binds the same one or two ufunc calls.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


def scale_shift(x: np.ndarray, scale: np.ndarray | None, shift: np.ndarray | None, out: np.ndarray) -> None:
    """out = x * scale + shift, computed in out's type (shared with fused kernels)."""
    dtype = out.dtype
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
    first = functools.partial(np.copyto, out, x) if scale is None else functools.partial(np.multiply, x, scale, out)
    return sequence([first, None if shift is None else functools.partial(np.add, out, shift, out)])
