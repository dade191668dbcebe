"""ONNX importer: Pad → Padding.

Opset 2-10 give pads and value as attributes; opset 11+ as inputs (pads, [constant_value]), opset 18 adds
[axes]; opset 19 adds the wrap mode. Negative pads crop. Pads computed from a run-time count (the size of a
NonZero / NMS result) give a Padding that reads them at run time, when its output size is static.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError, UnsupportedError
from edgert.ir.kinds import LayerKind, PaddingMode
from edgert.onnx.count_inputs import CountInput, check_probes, count_input, counts_of, real_shape, rows_of
from edgert.onnx.ops.conv import str_attr
from edgert.onnx.registry import onnx_op

_MODES = tuple(m.value for m in PaddingMode)


def _pads_and_value(ctx, attrs) -> tuple[list[int] | CountInput, object, list[int] | None]:
    if ctx.opset < 11:
        if "pads" not in attrs:
            raise ModelError(f"{ctx.where}: attribute pads is required")
        return [int(p) for p in attrs["pads"]], float(attrs.get("value", 0.0)), None
    pads = count_input(ctx, 1, "pads")
    if isinstance(pads, CountInput):
        return pads, *_value_and_axes(ctx)
    return [int(p) for p in pads.reshape(-1)], *_value_and_axes(ctx)


def _value_and_axes(ctx) -> tuple[object, list[int] | None]:
    value = ctx.const_input(2, "constant_value", required=False)
    axes = ctx.const_input(3, "axes", required=False)
    if value is not None and value.size > 1:
        raise ModelError(f"{ctx.where}: constant_value must be a scalar, got shape {value.shape}")
    value = value.reshape(-1)[0].item() if value is not None and value.size else 0
    return value, None if axes is None else [int(a) for a in axes.reshape(-1)]


def _full_rank_pads(ctx, pads: list[int], axes: list[int] | None, rank: int) -> list[int]:
    if axes is None:
        axes = list(range(rank))
    if len(pads) != 2 * len(axes):
        raise ModelError(f"{ctx.where}: pads {pads} has {len(pads)} values, expected {2 * len(axes)} "
                         f"(begins then ends for {len(axes)} axes)")
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ModelError(f"{ctx.where}: axes {axes} are not distinct axes of a rank-{rank} input")
    full = [0] * 2 * rank
    for i, axis in enumerate(axes):
        full[axis % rank] = pads[i]
        full[rank + axis % rank] = pads[len(axes) + i]
    return full


@onnx_op("Pad")
def pad(ctx, node):
    x = ctx.input(0)
    attrs = ctx.attrs()
    mode = PaddingMode(str_attr(ctx, attrs, "mode", "constant", _MODES))
    pads, value, axes = _pads_and_value(ctx, attrs)
    rank = len(x.shape)
    kind = x.dtype.numpy.kind
    value = bool(value) if kind == "b" else int(value) if kind in "iu" else float(value)
    if isinstance(pads, CountInput):
        return [_run_time_pads(ctx, x, pads, axes, mode, value)]
    pads = _full_rank_pads(ctx, pads, axes, rank)
    if mode != PaddingMode.CONSTANT:
        for axis in range(rank):
            if (pads[axis] > 0 or pads[rank + axis] > 0) and x.shape[axis] + min(0, pads[axis]) \
                    + min(0, pads[rank + axis]) < 1:
                raise ModelError(f"{ctx.where}: {mode.value} padding of axis {axis} needs a non-empty input "
                                 f"there, but it has size {x.shape[axis]} after cropping")
    return ctx.add(LayerKind.PADDING, [x], {"mode": mode, "pads": pads, "value": value})


def _run_time_pads(ctx, x, pads: CountInput, axes, mode, value):
    """Pads computed from a run-time count (``(300 - n) * 6`` pads n detections to 300): a Padding whose output
    is sized by the pads at the bound and that reads the pads at run time (its input 1), which place the valid
    rows. Only when the output size is the same at every count (edgert/onnx/count_inputs.py checks)."""
    rank = len(x.shape)
    if mode != PaddingMode.CONSTANT:
        raise UnsupportedError(f"{ctx.where}: pads computed from a run-time count need mode 'constant', found "
                               f"{mode.value!r}; cut the graph before this node and do this step after edgert")
    static = _full_rank_pads(ctx, [int(p) for p in pads.at_bound().reshape(-1)], axes, rank)
    out = ctx.add(LayerKind.PADDING, [x, _full_rank_value(ctx, pads.value, axes, rank)],
                  {"mode": mode, "pads": static, "value": value})[0]
    x_rows = rows_of(ctx, x)

    def real_out(probe):
        full = _full_rank_pads(ctx, [int(p) for p in pads.at(probe).reshape(-1)], axes, rank)
        return [size + full[a] + full[rank + a] for a, size in enumerate(real_shape(x, x_rows, probe))]
    check_probes(ctx, out, real_out, counts_of(ctx, x) + pads.counts, "pads (input 1)")
    return out


def _full_rank_value(ctx, pads, axes, rank: int):
    """The run-time pads as begins then ends of every axis (int64): a Gather from [pads..., 0] when ``axes``
    names only some axes."""
    if pads.dtype.numpy != np.int64 or len(pads.shape) != 1:
        raise ModelError(f"{ctx.where}: pads must be a 1-D int64 tensor, found {pads.dtype.value} {pads.shape}")
    if axes is None:
        return pads
    full = np.full(2 * rank, len(axes) * 2, np.int64)   # index of the appended 0
    for i, axis in enumerate(axes):
        full[axis % rank], full[rank + axis % rank] = i, len(axes) + i
    (padded,) = ctx.add(LayerKind.CONCATENATION, [pads, ctx.constant(np.zeros(1, np.int64))], {"axis": 0})
    return ctx.add(LayerKind.GATHER, [padded, ctx.constant(full)], {"axis": 0})[0]
