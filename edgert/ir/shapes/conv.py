"""Shape rules: Convolution and Deconvolution.

Both take x (N, C, *spatial), a weight tensor and an optional bias (M,), with attrs kernel, strides,
pads (begins..., ends...), dilations and group (one value per spatial axis unless noted).
"""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule


def spatial_attrs(node, spatial: int) -> tuple[list, list, list, list]:
    """kernel, strides, dilations, pads of a spatial layer, checked for length and sign."""
    attrs = node.attrs
    kernel = list(attrs["kernel"])
    strides = list(attrs.get("strides") or [1] * spatial)
    dilations = list(attrs.get("dilations") or [1] * spatial)
    pads = list(attrs.get("pads") or [0] * 2 * spatial)
    for name, values, length in (("kernel", kernel, spatial), ("strides", strides, spatial),
                                 ("dilations", dilations, spatial), ("pads", pads, 2 * spatial)):
        if len(values) != length:
            raise ShapeError(f"layer {node.name!r} ({node.kind.value}): {name} {values} has {len(values)} "
                             f"values, expected {length} for {spatial} spatial axes")
    if min(kernel + strides + dilations) < 1:
        raise ShapeError(f"layer {node.name!r} ({node.kind.value}): kernel {kernel}, strides {strides} and "
                         f"dilations {dilations} must all be positive")
    return kernel, strides, dilations, pads


def _check_input(node, min_rank: int = 3):
    x = node.inputs[0]
    if len(x.shape) < min_rank:
        raise ShapeError(f"layer {node.name!r} ({node.kind.value}): input {x.name!r} has shape {x.shape}; "
                         f"expected (N, C, spatial...) with at least one spatial axis")
    return x


def _check_bias(node, channels: int) -> None:
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ShapeError(f"layer {node.name!r} ({node.kind.value}): bias {bias.name!r} has shape {bias.shape}, "
                         f"expected ({channels},)")


@shape_rule(LayerKind.CONVOLUTION)
def convolution(node):
    x = _check_input(node)
    w = node.inputs[1]
    spatial = len(x.shape) - 2
    kernel, strides, dilations, pads = spatial_attrs(node, spatial)
    group = int(node.attrs.get("group", 1))
    channels, out_channels = x.shape[1], w.shape[0]
    if len(w.shape) != len(x.shape) or list(w.shape[2:]) != kernel:
        raise ShapeError(f"layer {node.name!r} (Convolution): weights {w.name!r} have shape {w.shape}, expected "
                         f"(M, C/group, {', '.join(map(str, kernel))})")
    if group < 1 or channels % group or out_channels % group or w.shape[1] * group != channels:
        raise ShapeError(f"layer {node.name!r} (Convolution): input has {channels} channels, weights "
                         f"{w.shape} and group {group}; expected C = weights.shape[1] * group and M divisible "
                         "by group")
    _check_bias(node, out_channels)
    out = []
    for axis in range(spatial):
        size = x.shape[2 + axis] + pads[axis] + pads[spatial + axis] - dilations[axis] * (kernel[axis] - 1) - 1
        if size < 0:
            raise ShapeError(f"layer {node.name!r} (Convolution): dilated kernel {kernel[axis]} (dilation "
                             f"{dilations[axis]}) is larger than the padded input ({x.shape[2 + axis]} + pads) "
                             f"on spatial axis {axis}")
        out.append(size // strides[axis] + 1)
    return [(x.dtype, (x.shape[0], out_channels, *out))]


@shape_rule(LayerKind.DECONVOLUTION)
def deconvolution(node):
    x = _check_input(node)
    w = node.inputs[1]
    spatial = len(x.shape) - 2
    kernel, strides, dilations, pads = spatial_attrs(node, spatial)
    group = int(node.attrs.get("group", 1))
    output_padding = list(node.attrs.get("output_padding") or [0] * spatial)
    channels = x.shape[1]
    if len(w.shape) != len(x.shape) or list(w.shape[2:]) != kernel or w.shape[0] != channels:
        raise ShapeError(f"layer {node.name!r} (Deconvolution): weights {w.name!r} have shape {w.shape}, expected "
                         f"({channels}, M/group, {', '.join(map(str, kernel))})")
    if group < 1 or channels % group:
        raise ShapeError(f"layer {node.name!r} (Deconvolution): {channels} input channels do not split into "
                         f"{group} groups")
    out_channels = w.shape[1] * group
    _check_bias(node, out_channels)
    if len(output_padding) != spatial:
        raise ShapeError(f"layer {node.name!r} (Deconvolution): output_padding {output_padding} needs "
                         f"{spatial} values")
    out = [strides[a] * (x.shape[2 + a] - 1) + output_padding[a] + dilations[a] * (kernel[a] - 1) + 1
           - pads[a] - pads[spatial + a] for a in range(spatial)]
    if min(out) < 1:
        raise ShapeError(f"layer {node.name!r} (Deconvolution): pads {pads} leave no output ({out})")
    return [(x.dtype, (x.shape[0], out_channels, *out))]
