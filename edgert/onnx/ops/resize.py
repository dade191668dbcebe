"""ONNX importers: Resize (opsets 10-19) and Upsample (opsets 7-9) → Resize layers.

The output shape must be static, so scales / sizes (and roi for tf_crop_and_resize) must fold to constants.
The layer stores the output shape and the scale per axis that the coordinate formulas use (for a sizes input,
out / in, or the aspect-preserving scale). Opset <= 10 semantics (Upsample, Resize-10): asymmetric coordinates,
nearest rounding down when upsampling and up when downsampling, as onnxruntime does.
"""

from __future__ import annotations

import math

import numpy as np

from edgert.errors import ModelError, UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.onnx.ops.conv import str_attr
from edgert.onnx.registry import onnx_op

_MODES = ("nearest", "linear", "cubic")
_COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                     "tf_half_pixel_for_nn", "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _full_rank(values, axes: list[int], rank: int, fill) -> list:
    full = list(fill) if isinstance(fill, list) else [fill] * rank
    for value, axis in zip(values, axes):
        full[axis] = value
    return full


def _axes(ctx, attrs: dict, rank: int) -> list[int]:
    if "axes" not in attrs:
        return list(range(rank))
    axes = [int(a) for a in attrs["axes"]]
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ModelError(f"{ctx.where}: axes {axes} are not distinct axes of a rank-{rank} input")
    return [a % rank for a in axes]


def _from_scales(ctx, x, scales, axes: list[int]) -> tuple[list[int], list[float]]:
    if len(scales) != len(axes) or any(not s > 0 for s in scales):
        raise ModelError(f"{ctx.where}: scales {list(scales)} must hold {len(axes)} positive values "
                         f"(one per resized axis of input {x.shape})")
    full = _full_rank([float(s) for s in scales], axes, len(x.shape), 1.0)
    return [int(math.floor(size * s)) for size, s in zip(x.shape, full)], full


def _from_sizes(ctx, x, sizes, axes: list[int], policy: str) -> tuple[list[int], list[float]]:
    if len(sizes) != len(axes) or any(s < 0 for s in sizes):
        raise ModelError(f"{ctx.where}: sizes {list(sizes)} must hold {len(axes)} non-negative values "
                         f"(one per resized axis of input {x.shape})")
    out = _full_rank([int(s) for s in sizes], axes, len(x.shape), list(x.shape))
    scales = [o / i if i else 1.0 for o, i in zip(out, x.shape)]
    if policy != "stretch":
        pick = min if policy == "not_larger" else max
        scale = pick(scales[a] for a in axes)
        for axis in axes:
            scales[axis] = scale
            out[axis] = int(scale * x.shape[axis] + 0.5)
    return out, scales


def _roi(ctx, x, axes: list[int]) -> list[float]:
    roi = ctx.const_input(1, "roi (needed by tf_crop_and_resize)", required=False)
    rank = len(x.shape)
    if roi is None or roi.size == 0:
        raise ModelError(f"{ctx.where}: coordinate_transformation_mode tf_crop_and_resize needs a roi input")
    roi = [float(v) for v in roi.reshape(-1)]
    if len(roi) != 2 * len(axes):
        raise ModelError(f"{ctx.where}: roi {roi} needs {2 * len(axes)} values (starts then ends)")
    return (_full_rank(roi[:len(axes)], axes, rank, 0.0) + _full_rank(roi[len(axes):], axes, rank, 1.0))


def _add_resize(ctx, x, out_shape, scales, attrs: dict):
    if any(d < 0 for d in out_shape):
        raise ModelError(f"{ctx.where}: the output shape {out_shape} has a negative size")
    if attrs["mode"] != "nearest" and x.dtype.numpy.kind == "b":
        raise UnsupportedError(f"{ctx.where}: {attrs['mode']} resizing of a bool tensor is not supported")
    layer = {"out_shape": [int(d) for d in out_shape], "scales": [float(s) for s in scales], "roi": None,
             "cubic_coeff": -0.75, "exclude_outside": False, "extrapolation": 0.0, "antialias": False, **attrs}
    return ctx.add(LayerKind.RESIZE, [x], layer)


def _legacy_mode(ctx, attrs: dict) -> str:
    mode = str_attr(ctx, attrs, "mode", "nearest", _MODES + ("bilinear",))
    if mode == "cubic":
        raise UnsupportedError(f"{ctx.where}: mode cubic needs opset 11 or later")
    return "linear" if mode == "bilinear" else mode


def _legacy_resize(ctx, x, scales):
    """Upsample and Resize-10: scales only, asymmetric coordinates, "simple" nearest rounding."""
    attrs = ctx.attrs()
    out_shape, full = _from_scales(ctx, x, [float(s) for s in np.asarray(scales).reshape(-1)],
                                   list(range(len(x.shape))))
    return _add_resize(ctx, x, out_shape, full, {"mode": _legacy_mode(ctx, attrs), "coordinate_mode": "asymmetric",
                                                 "nearest_mode": "simple"})


@onnx_op("Upsample")
def upsample(ctx, node):
    x = ctx.input(0)
    if ctx.opset < 9:
        if "scales" not in ctx.attrs():
            raise ModelError(f"{ctx.where}: attribute scales is required")
        scales = ctx.attrs()["scales"]
    else:
        scales = ctx.const_input(1, "scales")
    if any(float(s) < 1 for s in np.asarray(scales).reshape(-1)):
        raise ModelError(f"{ctx.where}: Upsample scales {list(np.asarray(scales).reshape(-1))} must be >= 1")
    return _legacy_resize(ctx, x, scales)


def _scales_or_sizes(ctx, x, axes: list[int], policy: str):
    given = {}
    for index, name in ((2, "scales"), (3, "sizes")):
        if ctx.input(index, required=False) is not None:
            array = ctx.const_input(index, name).reshape(-1)
            if array.size:   # an empty tensor stands for "not given"
                given[name] = array
    scales, sizes = given.get("scales"), given.get("sizes")
    if (scales is None) == (sizes is None):
        raise ModelError(f"{ctx.where}: exactly one of scales and sizes must be given "
                         f"({'both are' if scales is not None else 'neither is'})")
    if scales is not None:
        return _from_scales(ctx, x, [float(s) for s in scales], axes)
    return _from_sizes(ctx, x, [int(s) for s in sizes], axes, policy)


@onnx_op("Resize")
def resize(ctx, node):
    x = ctx.input(0)
    if ctx.opset < 11:
        return _legacy_resize(ctx, x, ctx.const_input(1, "scales"))
    attrs = ctx.attrs()
    rank = len(x.shape)
    axes = _axes(ctx, attrs, rank)
    policy = str_attr(ctx, attrs, "keep_aspect_ratio_policy", "stretch", _ASPECT_POLICIES)
    out_shape, scales = _scales_or_sizes(ctx, x, axes, policy)
    layer = {
        "mode": str_attr(ctx, attrs, "mode", "nearest", _MODES),
        "coordinate_mode": str_attr(ctx, attrs, "coordinate_transformation_mode", "half_pixel", _COORDINATE_MODES),
        "nearest_mode": str_attr(ctx, attrs, "nearest_mode", "round_prefer_floor", _NEAREST_MODES),
        "cubic_coeff": float(attrs.get("cubic_coeff_a", -0.75)),
        "exclude_outside": bool(attrs.get("exclude_outside", 0)),
        "extrapolation": float(attrs.get("extrapolation_value", 0.0)),
        "antialias": bool(attrs.get("antialias", 0)),
    }
    if layer["coordinate_mode"] == "tf_crop_and_resize":
        layer["roi"] = _roi(ctx, x, axes)
    return _add_resize(ctx, x, out_shape, scales, layer)
