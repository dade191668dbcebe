"""Shape rules: Pooling, Resize and Padding (layers that change spatial extents without weights)."""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind, PaddingMode, PoolingType
from edgert.ir.shape_inference import shape_rule
from edgert.ir.shapes.conv import spatial_attrs


def pooled_size(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int,
                ceil_mode: bool) -> int:
    """Output length of one pooled axis; in ceil mode a window may not start in the end padding."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


@shape_rule(LayerKind.POOLING)
def pooling(node):
    x = node.inputs[0]
    spatial = len(x.shape) - 2
    if spatial < 1:
        raise ShapeError(f"layer {node.name!r} (Pooling): input {x.name!r} has shape {x.shape}; expected "
                         "(N, C, spatial...) with at least one spatial axis")
    kernel, strides, dilations, pads = spatial_attrs(node, spatial)
    ceil_mode = bool(node.attrs.get("ceil_mode", False))
    out = [pooled_size(x.shape[2 + a], kernel[a], strides[a], dilations[a], pads[a], pads[spatial + a], ceil_mode)
           for a in range(spatial)]
    if min(out) < 1:
        raise ShapeError(f"layer {node.name!r} (Pooling): kernel {kernel} (dilations {dilations}) does not fit "
                         f"the input {x.shape} padded by {pads}")
    shape = (*x.shape[:2], *out)
    results = [(x.dtype, shape)]
    if len(node.outputs) == 2:
        if PoolingType(node.attrs["type"]) != PoolingType.MAX:
            raise ShapeError(f"layer {node.name!r} (Pooling): only max pooling has an indices output")
        results.append((DataType.INT64, shape))
    return results


@shape_rule(LayerKind.RESIZE)
def resize(node):
    x = node.inputs[0]
    out_shape = tuple(int(d) for d in node.attrs["out_shape"])
    if len(out_shape) != len(x.shape) or min(out_shape, default=1) < 0:
        raise ShapeError(f"layer {node.name!r} (Resize): output shape {out_shape} does not match the rank of "
                         f"input {x.name!r} {x.shape}")
    scales, roi = node.attrs.get("scales"), node.attrs.get("roi")
    if scales is not None and len(scales) != len(x.shape) or roi is not None and len(roi) != 2 * len(x.shape):
        raise ShapeError(f"layer {node.name!r} (Resize): scales {scales} and roi {roi} need {len(x.shape)} and "
                         f"{2 * len(x.shape)} values for input {x.name!r} {x.shape}")
    return [(x.dtype, out_shape)]


def _check_run_time_pads(node, rank: int) -> None:
    """Input 1, when present, holds the pads computed at run time: int64 begins then ends, constant mode."""
    pads = node.inputs[1]
    if pads is None or pads.dtype != DataType.INT64 or tuple(pads.shape) != (2 * rank,) \
            or node.attrs.get("mode", PaddingMode.CONSTANT) != PaddingMode.CONSTANT:
        raise ShapeError(f"layer {node.name!r} (Padding): run-time pads (input 1) must be int64 of shape "
                         f"({2 * rank},) with mode constant, found {pads and pads.dtype.value} "
                         f"{pads and tuple(pads.shape)}, mode {node.attrs.get('mode')}")


@shape_rule(LayerKind.PADDING)
def padding(node):
    x = node.inputs[0]
    rank = len(x.shape)
    pads = [int(p) for p in node.attrs["pads"]]
    if len(pads) != 2 * rank:
        raise ShapeError(f"layer {node.name!r} (Padding): pads {pads} has {len(pads)} values, expected "
                         f"{2 * rank} (begins then ends) for input shape {x.shape}")
    shape = tuple(x.shape[a] + pads[a] + pads[rank + a] for a in range(rank))
    if len(node.inputs) > 1:
        _check_run_time_pads(node, rank)
    if min(shape, default=0) < 0:
        raise ShapeError(f"layer {node.name!r} (Padding): pads {pads} crop more than input {x.name!r} "
                         f"{x.shape} holds")
    return [(x.dtype, shape)]
