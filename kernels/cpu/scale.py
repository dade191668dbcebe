"""CPU kernel: Scale (y = x * scale + shift; inputs x, scale, [shift], already shaped to broadcast against x).

attrs: axis (the channel axis the importer shaped scale/shift for; informational here, since NumPy
broadcasting already lines them up).
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


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
