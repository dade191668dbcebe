"""CPU kernel: NonZero. Output 0 is (rank, numel): the row-major coordinates of the non-zero elements in
its first ``count`` columns, 0 past them; output 1 is the count (a scalar input counts as rank 1)."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.NON_ZERO)
def non_zero(attrs, inputs, outputs):
    x = inputs[0]
    indices, count_out = outputs
    coordinates = np.nonzero(x.reshape(x.shape or (1,)))
    count = coordinates[0].size
    indices[...] = 0
    if count:
        indices[:, :count] = np.stack(coordinates)
    count_out[...] = count
