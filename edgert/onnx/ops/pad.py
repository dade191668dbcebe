"""ONNX importer: Pad → Padding.

Opset 2-10 give pads and value as attributes; opset 11+ as inputs (pads, [constant_value]), opset 18 adds
[axes]; opset 19 adds the wrap mode. Negative pads crop.
"""

from __future__ import annotations

from edgert.errors import ModelError
from edgert.ir.kinds import LayerKind, PaddingMode
from edgert.onnx.ops.conv import str_attr
from edgert.onnx.registry import onnx_op

_MODES = tuple(m.value for m in PaddingMode)


def _pads_and_value(ctx, attrs) -> tuple[list[int], object, list[int] | None]:
    if ctx.opset < 11:
        if "pads" not in attrs:
            raise ModelError(f"{ctx.where}: attribute pads is required")
        return [int(p) for p in attrs["pads"]], float(attrs.get("value", 0.0)), None
    pads = ctx.const_input(1, "pads").reshape(-1)
    value = ctx.const_input(2, "constant_value", required=False)
    axes = ctx.const_input(3, "axes", required=False)
    if value is not None and value.size > 1:
        raise ModelError(f"{ctx.where}: constant_value must be a scalar, got shape {value.shape}")
    value = value.reshape(-1)[0].item() if value is not None and value.size else 0
    return [int(p) for p in pads], value, None if axes is None else [int(a) for a in axes.reshape(-1)]


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
    pads = _full_rank_pads(ctx, pads, axes, rank)
    if mode != PaddingMode.CONSTANT:
        for axis in range(rank):
            if (pads[axis] > 0 or pads[rank + axis] > 0) and x.shape[axis] + min(0, pads[axis]) \
                    + min(0, pads[rank + axis]) < 1:
                raise ModelError(f"{ctx.where}: {mode.value} padding of axis {axis} needs a non-empty input "
                                 f"there, but it has size {x.shape[axis]} after cropping")
    kind = x.dtype.numpy.kind
    value = bool(value) if kind == "b" else int(value) if kind in "iu" else float(value)
    return ctx.add(LayerKind.PADDING, [x], {"mode": mode, "pads": pads, "value": value})
