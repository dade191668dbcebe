"""CPU kernel: Gather (attrs: axis; inputs: data, indices — int32/int64, negative counts from the end)."""

from __future__ import annotations

import numpy as np

from edgert.errors import InputError
from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.GATHER)
def gather(attrs, inputs, outputs):
    data, indices = inputs
    axis = attrs["axis"]
    dim = data.shape[axis]
    if indices.size and not (-dim <= indices.min() and indices.max() < dim):
        raise InputError(f"Gather: indices range over [{indices.min()}, {indices.max()}], outside "
                         f"[-{dim}, {dim - 1}] for axis {axis} of data shape {data.shape}")
    # mode="wrap" maps the negative indices (already range-checked) onto the end of the axis.
    np.take(data, indices, axis=axis, out=outputs[0], mode="wrap")
