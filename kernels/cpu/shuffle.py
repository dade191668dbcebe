"""CPU kernel: Shuffle (attrs: first_perm, reshape, second_perm): transpose, reshape, transpose.

The prepare hook binds the one copy from a view of the input (or into a view of the output) when NumPy
can express the shuffle as such a view; a reshape that would copy is left to the kernel.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register, register_prepare


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


@register_prepare(LayerKind.SHUFFLE)
def prepare_shuffle(attrs, inputs, outputs, workspace):
    x, out = inputs[0], outputs[0]
    if x.size == 0:
        return None
    if attrs.get("second_perm") is None and attrs.get("reshape") is not None and out.flags.c_contiguous:
        transposed = x.transpose(attrs["first_perm"]) if attrs.get("first_perm") is not None else x
        return functools.partial(np.copyto, out.reshape(transposed.shape), transposed)
    source = shuffled(attrs, x)
    # bound once, the source must stay a view of x: a reshape that had to copy would freeze today's values
    if not np.may_share_memory(source, x):
        return None
    return functools.partial(np.copyto, out, source)
