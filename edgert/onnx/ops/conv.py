"""ONNX importers: Conv → Convolution, ConvTranspose → Deconvolution.

Also the helpers every windowed op shares (pooling uses them too): reading kernel/strides/dilations/pads,
string attributes, and auto_pad resolution.
"""

from __future__ import annotations

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.onnx.registry import onnx_op

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def str_attr(ctx, attrs: dict, name: str, default: str, choices=None) -> str:
    value = attrs.get(name, default)
    value = value.decode() if isinstance(value, bytes) else str(value)
    if choices is not None and value not in choices:
        raise UnsupportedError(f"{ctx.where}: attribute {name}={value!r} is not supported "
                               f"(expected one of: {', '.join(choices)})")
    return value


def int_list(ctx, attrs: dict, name: str, default, length: int, minimum: int | None = None) -> list[int]:
    values = [int(v) for v in attrs[name]] if name in attrs else list(default)
    if len(values) != length:
        raise ModelError(f"{ctx.where}: attribute {name} {values} has {len(values)} values, expected {length} "
                         f"(one per spatial axis{', begins then ends' if name == 'pads' else ''})")
    if minimum is not None and any(v < minimum for v in values):
        raise ModelError(f"{ctx.where}: attribute {name} {values} must be >= {minimum}")
    return values


def check_spatial_input(ctx, x, what: str = "input") -> int:
    """Number of spatial axes of an (N, C, spatial...) input."""
    if len(x.shape) < 3:
        raise ShapeError(f"{ctx.where}: {what} {x.name!r} has shape {x.shape}; expected (N, C, spatial...) "
                         "with 1 to 3 spatial axes")
    return len(x.shape) - 2


def same_pads(auto_pad: str, in_spatial, kernel, strides, dilations) -> list[int]:
    """Pads that make out = ceil(in / stride) (SAME_UPPER puts the odd one at the end, SAME_LOWER at the begin)."""
    begins, ends = [], []
    for size, k, s, d in zip(in_spatial, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def window_attrs(ctx, attrs: dict, in_spatial, kernel, check_fits: bool = True) -> dict:
    """kernel, strides, dilations and resolved pads of a Conv/Pool-style node (windows must fit the padded input
    unless ``check_fits`` is off, as for ConvTranspose)."""
    spatial = len(in_spatial)
    strides = int_list(ctx, attrs, "strides", [1] * spatial, spatial, minimum=1)
    dilations = int_list(ctx, attrs, "dilations", [1] * spatial, spatial, minimum=1)
    auto_pad = str_attr(ctx, attrs, "auto_pad", "NOTSET", AUTO_PADS)
    if auto_pad == "NOTSET":
        pads = int_list(ctx, attrs, "pads", [0] * 2 * spatial, 2 * spatial, minimum=0)
    elif auto_pad == "VALID":
        pads = [0] * 2 * spatial
    else:
        pads = same_pads(auto_pad, in_spatial, kernel, strides, dilations)
    layer = {"kernel": [int(k) for k in kernel], "strides": strides, "pads": pads, "dilations": dilations}
    if check_fits:
        _check_window_fits(ctx, in_spatial, layer)
    return layer


def _check_window_fits(ctx, in_spatial, layer: dict) -> None:
    spatial = len(in_spatial)
    for axis, size in enumerate(in_spatial):
        padded = size + layer["pads"][axis] + layer["pads"][spatial + axis]
        reach = layer["dilations"][axis] * (layer["kernel"][axis] - 1) + 1
        if reach > padded:
            raise ShapeError(f"{ctx.where}: kernel {layer['kernel']} (dilations {layer['dilations']}) spans {reach} "
                             f"on spatial axis {axis}, more than the padded input ({size} + pads = {padded})")


def kernel_shape(ctx, attrs: dict, w) -> list[int]:
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    if kernel != list(w.shape[2:]):
        raise ShapeError(f"{ctx.where}: kernel_shape {kernel} does not match the weights' shape {w.shape}")
    return kernel


def _check_float(ctx, x, w) -> None:
    if not x.dtype.is_float:
        raise UnsupportedError(f"{ctx.where}: input type {x.dtype.value} is not supported (Conv takes float16/32/64; "
                               "integer convolution is ConvInteger or QLinearConv)")
    if w.dtype != x.dtype:
        raise ModelError(f"{ctx.where}: weights are {w.dtype.value} but the input is {x.dtype.value}")


def _inputs(ctx):
    x, w = ctx.input(0), ctx.input(1)
    bias = ctx.input(2, required=False)
    check_spatial_input(ctx, x)
    if len(w.shape) != len(x.shape):
        raise ShapeError(f"{ctx.where}: weights {w.name!r} have shape {w.shape}, expected rank {len(x.shape)} "
                         f"like the input {x.shape}")
    _check_float(ctx, x, w)
    return x, w, bias


@onnx_op("Conv")
def conv(ctx, node):
    x, w, bias = _inputs(ctx)
    attrs = ctx.attrs()
    group = int(attrs.get("group", 1))
    if group < 1 or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        raise ShapeError(f"{ctx.where}: input has {x.shape[1]} channels, weights {w.shape} and group {group}; "
                         "expected channels = weights.shape[1] * group and weights.shape[0] divisible by group")
    layer = window_attrs(ctx, attrs, x.shape[2:], kernel_shape(ctx, attrs, w))
    layer["group"] = group
    return ctx.add(LayerKind.CONVOLUTION, [x, w] + ([bias] if bias is not None else []), layer)


def _transpose_pads(ctx, attrs, x, layer: dict, output_padding) -> list[int]:
    """Pads of a ConvTranspose: explicit, or derived from output_shape / SAME auto_pad as the spec says."""
    spatial = len(x.shape) - 2
    auto_pad = str_attr(ctx, attrs, "auto_pad", "NOTSET", AUTO_PADS)
    output_shape = [int(v) for v in attrs.get("output_shape", [])]
    if output_shape and len(output_shape) == spatial + 2:
        output_shape = output_shape[2:]
    if output_shape and len(output_shape) != spatial:
        raise ModelError(f"{ctx.where}: output_shape {output_shape} needs {spatial} spatial sizes")
    if not output_shape and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = [size * s for size, s in zip(x.shape[2:], layer["strides"])]
    if not output_shape:
        return [0] * 2 * spatial if auto_pad == "VALID" else \
            int_list(ctx, attrs, "pads", [0] * 2 * spatial, 2 * spatial, minimum=0)
    begins, ends = [], []
    for size, k, s, d, extra, want in zip(x.shape[2:], layer["kernel"], layer["strides"], layer["dilations"],
                                          output_padding, output_shape):
        total = s * (size - 1) + extra + (k - 1) * d + 1 - want
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


@onnx_op("ConvTranspose")
def conv_transpose(ctx, node):
    x, w, bias = _inputs(ctx)
    attrs = ctx.attrs()
    spatial = len(x.shape) - 2
    group = int(attrs.get("group", 1))
    if group < 1 or x.shape[1] != w.shape[0] or x.shape[1] % group:
        raise ShapeError(f"{ctx.where}: input has {x.shape[1]} channels, weights {w.shape} and group {group}; "
                         "expected weights (C_in, C_out / group, kernel...) with C_in divisible by group")
    layer = window_attrs(ctx, {k: v for k, v in attrs.items() if k not in ("auto_pad", "pads")},
                         x.shape[2:], kernel_shape(ctx, attrs, w), check_fits=False)
    output_padding = int_list(ctx, attrs, "output_padding", [0] * spatial, spatial, minimum=0)
    if any(p >= max(s, d) for p, s, d in zip(output_padding, layer["strides"], layer["dilations"])):
        raise ModelError(f"{ctx.where}: output_padding {output_padding} must be smaller than the strides "
                         f"{layer['strides']} (or dilations)")
    layer.update(pads=_transpose_pads(ctx, attrs, x, layer, output_padding), group=group,
                 output_padding=output_padding)
    return ctx.add(LayerKind.DECONVOLUTION, [x, w] + ([bias] if bias is not None else []), layer)
