"""CPU kernel: Compact (attrs: axis, select; inputs: k values, their k row counts, and with ``select`` a bool
condition): the valid rows of each value (its first min(count, size) along ``axis``) one after another, zeros
past them; output 1 is their total. With ``select`` (k = 2) only value 0 counts when the condition is true, only
value 1 when it is false (an If on a count whose branches give different rows)."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


def valid_counts(attrs, inputs) -> list[int]:
    """Per value, the rows it contributes: its count clamped to [0, its size], 0 where ``select`` drops it."""
    axis, values = int(attrs["axis"]), len(inputs) // 2
    counts = [min(max(int(inputs[values + i]), 0), inputs[i].shape[axis]) for i in range(values)]
    if attrs.get("select"):
        chosen = 0 if bool(inputs[-1]) else 1
        counts = [c if i == chosen else 0 for i, c in enumerate(counts)]
    return counts


@register(LayerKind.COMPACT)
def compact(attrs, inputs, outputs):
    axis = int(attrs["axis"])
    out, count_out = outputs
    start = 0
    lead = (slice(None),) * axis
    for value, count in zip(inputs, valid_counts(attrs, inputs)):
        out[lead + (slice(start, start + count),)] = value[lead + (slice(0, count),)]
        start += count
    out[lead + (slice(start, None),)] = 0
    count_out[...] = start
