"""CPU kernel: Shuffle (attrs: first_perm, reshape, second_perm): transpose, reshape, transpose."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


def shuffled(attrs, x: np.ndarray) -> np.ndarray:
    """The shuffle of ``x`` as a view where NumPy can make one (shared with fused kernels)."""
    if attrs.get("first_perm") is not None:
        x = x.transpose(attrs["first_perm"])
    if attrs.get("reshape") is not None:
        x = x.reshape(attrs["reshape"])
    if attrs.get("second_perm") is not None:
        x = x.transpose(attrs["second_perm"])
    return x


@register(LayerKind.SHUFFLE)
def shuffle(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    if attrs.get("second_perm") is None and attrs.get("reshape") is not None and out.flags.c_contiguous:
        # Reshape the (contiguous) destination instead of the transposed source: one copy, not two.
        transposed = x.transpose(attrs["first_perm"]) if attrs.get("first_perm") is not None else x
        np.copyto(out.reshape(transposed.shape), transposed)
    else:
        np.copyto(out, shuffled(attrs, x))
