"""CPU kernel: Padding (attrs: mode, pads (begin..., end...), value). Negative pads crop.

With a second input, the pads are computed at run time (from the count of a NonZero / NMS result: see
edgert/onnx/count_inputs.py): the output keeps its static shape (the attrs' pads, those at the bound), and
along each axis the input's real extent is what the output size leaves after the run-time pads; that part
of the input lands where the pads put it, the value fills the rest (constant mode only)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from edgert.errors import ShapeError
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


def pad_run_time(x: np.ndarray, pads: np.ndarray, out: np.ndarray, value) -> None:
    """Constant padding by pads known at run time into an ``out`` of static shape (views only: no allocation)."""
    rank = x.ndim
    source, target = [], []
    for axis in range(rank):
        begin, end, size = int(pads[axis]), int(pads[rank + axis]), out.shape[axis]
        extent = size - begin - end   # the real input's size along the axis
        if not 0 <= extent <= x.shape[axis]:
            raise ShapeError(f"Padding: run-time pads {pads.tolist()} leave {extent} input elements along axis {axis} "
                             f"for an output of {size}, but the input holds 0..{x.shape[axis]}; the plan's pads "
                             "computation does not match its shapes (rebuild the plan)")
        start, stop = max(0, -begin), extent - max(0, -end)
        source.append(slice(start, max(start, stop)))
        target.append(slice(max(0, begin), max(0, begin) + max(0, stop - start)))
    out[...] = value
    out[tuple(target)] = x[tuple(source)]


@register(LayerKind.PADDING)
def padding(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    if len(inputs) > 1 and inputs[1] is not None:
        pad_run_time(x, inputs[1], out, attrs.get("value", 0) or 0)
        return
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
