"""CPU kernel: Tile (attrs: repeats, one per axis)."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.TILE)
def tile(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    repeats = attrs["repeats"]
    if not out.flags.c_contiguous:
        np.copyto(out, np.tile(x, repeats))
        return
    # View the output as (r0, d0, r1, d1, ...) and broadcast x, shaped (1, d0, 1, d1, ...), into it.
    interleaved = [n for pair in zip(repeats, x.shape) for n in pair]
    spread = [n for d in x.shape for n in (1, d)]
    np.copyto(out.reshape(interleaved), x.reshape(spread))
