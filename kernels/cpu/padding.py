"""CPU kernel: Padding (attrs: mode, pads (begin..., end...), value). Negative pads crop."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from edgert.ir.kinds import LayerKind, PaddingMode
from edgert.kernels.registry import register

_NUMPY_MODES = {PaddingMode.REFLECT: "reflect", PaddingMode.EDGE: "edge", PaddingMode.WRAP: "wrap"}


def crop_negative(x: np.ndarray, begins: Sequence[int], ends: Sequence[int]) -> np.ndarray:
    """View of ``x`` with negative pads cropped away (positive pads untouched). begins/ends cover x's last axes."""
    lead = x.ndim - len(begins)
    index = [slice(None)] * lead
    for axis, (begin, end) in enumerate(zip(begins, ends)):
        size = x.shape[lead + axis]
        index.append(slice(max(0, -begin), size - max(0, -end)))
    return x[tuple(index)]


def pad_constant(x: np.ndarray, begins: Sequence[int], ends: Sequence[int], value=0, out: np.ndarray | None = None,
                 dtype=None) -> np.ndarray:
    """``x`` padded (or cropped, for negative pads) on its last ``len(begins)`` axes with ``value``.

    Returns ``x`` itself when there is nothing to do and no ``out``/``dtype`` is asked for.
    """
    if out is None and not any(begins) and not any(ends) and (dtype is None or np.dtype(dtype) == x.dtype):
        return x
    if min(begins, default=0) < 0 or min(ends, default=0) < 0:
        x = crop_negative(x, begins, ends)
        begins, ends = [max(0, b) for b in begins], [max(0, e) for e in ends]
    lead = x.ndim - len(begins)
    inner = (Ellipsis,) + tuple(slice(b, b + size) for b, size in zip(begins, x.shape[lead:]))
    if out is None:
        shape = x.shape[:lead] + tuple(size + b + e for size, b, e in zip(x.shape[lead:], begins, ends))
        dtype = x.dtype if dtype is None else dtype
        # zeros come from calloc (no pass over memory); other values: full when small, borders only when big
        if value == 0:
            out = np.zeros(shape, dtype)
        elif math.prod(shape) * np.dtype(dtype).itemsize < (1 << 16):
            out = np.full(shape, value, dtype)
        else:
            out = np.empty(shape, dtype)
            fill_border(out, inner, lead, value)
    elif any(begins) or any(ends):
        fill_border(out, inner, lead, value)
    np.copyto(out[inner], x, casting="unsafe")
    return out


def fill_border(out: np.ndarray, inner: tuple, lead: int, value) -> None:
    """Write ``value`` everywhere outside ``inner`` (slab by slab, so the interior is written only once)."""
    index = [slice(None)] * lead + list(inner[1:])
    for axis in range(lead, out.ndim):
        keep = index[axis]
        for border in (slice(0, keep.start), slice(keep.stop, out.shape[axis])):
            if border.stop > border.start:
                index[axis] = border
                out[tuple(index)] = value
        index[axis] = slice(None)


@register(LayerKind.PADDING)
def padding(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    rank = x.ndim
    pads = [int(p) for p in attrs["pads"]]
    begins, ends = pads[:rank], pads[rank:]
    mode = PaddingMode(attrs.get("mode", PaddingMode.CONSTANT))
    if mode == PaddingMode.CONSTANT or x.size == 0:
        pad_constant(x, begins, ends, attrs.get("value", 0) or 0, out=out)
        return
    core = crop_negative(x, begins, ends)
    widths = [(max(0, b), max(0, e)) for b, e in zip(begins, ends)]
    np.copyto(out, np.pad(core, widths, mode=_NUMPY_MODES[mode]), casting="unsafe")
