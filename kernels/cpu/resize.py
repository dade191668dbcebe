"""CPU kernel: Resize.

attrs: mode (nearest | linear | cubic), coordinate_mode (ONNX coordinate_transformation_mode), nearest_mode
(round_prefer_floor | round_prefer_ceil | floor | ceil | simple — the last is opset <= 10's "floor when
upsampling, ceil when downsampling"), cubic_coeff, exclude_outside, extrapolation, antialias,
out_shape, scales (one per axis), roi (starts..., ends... per axis, or None).

Separable: each resized axis in turn is a gather of K neighbouring input rows per output row, weighted
and summed (K = 1 nearest, 2 linear, 4 cubic, more with antialias), the same computation as ONNX's
reference implementation but done per axis over whole slabs.

The prepare hook binds nearest-neighbour resizes (a pure gather) to one ``np.take`` with the flat source
index of every output element of a plane, computed once, and float32 linear / cubic resizes of the last two
axes to the native module (native_resize.c: each output written once, from the clamped taps and weights of
both axes, split over native_parallel.c's threads).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.blas import matmul
from edgert.kernels.registry import register, register_prepare


def _output_width(scale: float, in_len: int, out_len: int) -> float:
    """The possibly fractional target length that coordinate formulas use (ONNX's ``output_width``)."""
    width = scale * in_len
    return float(out_len) if math.isclose(width, out_len) else width


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, roi):
    """x_original for every output index, and the mask of positions to extrapolate (or None)."""
    y = np.arange(out_len, dtype=np.float64)
    width = _output_width(scale, in_len, out_len)
    if mode == "align_corners":
        return (np.zeros_like(y) if width == 1 else y * (in_len - 1) / (width - 1)), None
    if mode == "asymmetric":
        return y / scale, None
    if mode == "pytorch_half_pixel":
        return (np.zeros_like(y) if width == 1 else (y + 0.5) / scale - 0.5), None
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / width)
        return offset + (y + 0.5) / scale - 0.5, None
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale, None
    if mode == "tf_crop_and_resize":
        # roi arrives as float32; the products with it stay float32 (as in ONNX's reference), which decides
        # nearest-neighbour ties such as 0.3 * 5 == 1.5.
        start, end = np.float32(roi[0]), np.float32(roi[1])
        if width == 1:
            x = np.full_like(y, (end - start) * (in_len - 1) / 2)
        else:
            x = y * (end - start) * (in_len - 1) / (width - 1)
        x = x + start * np.float32(in_len - 1)
        return x, (x < 0) | (x > in_len - 1)
    raise ValueError(f"unknown coordinate transformation mode {mode!r}")


def _nearest_taps(x: np.ndarray, nearest_mode: str, scale: float):
    base = np.floor(x)
    ratio = x - base
    step = {
        "round_prefer_floor": ratio > 0.5,
        "round_prefer_ceil": ratio >= 0.5,
        "floor": np.zeros_like(ratio, dtype=bool),
        "ceil": ratio > 0,
        "simple": (ratio > 0) if scale < 1 else np.zeros_like(ratio, dtype=bool),
    }[nearest_mode]
    return (base + step).astype(np.int64)[:, None], None


def _cubic_kernel(distance: np.ndarray, a: float) -> np.ndarray:
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _filter_taps(x: np.ndarray, mode: str, scale: float, attrs: dict):
    """Indices (out, K) and weights (out, K) of linear or cubic interpolation, antialiased if asked."""
    stretch = min(scale, 1.0) if attrs.get("antialias") else 1.0
    base = np.floor(x)
    ratio = x - base
    if mode == "linear":
        first = int(math.floor(-1 / stretch)) + 1
        offsets = np.arange(first, 2 - first)
        weights = np.clip(1 - np.abs((offsets[None, :] - ratio[:, None]) * stretch), 0, 1)
    else:
        first = int(math.floor(-2 / stretch)) + 1
        offsets = np.arange(first, 2 - first)
        weights = _cubic_kernel((offsets[None, :] - ratio[:, None]) * stretch, float(attrs.get("cubic_coeff", -0.75)))
    if stretch != 1.0:
        weights = weights / weights.sum(axis=1, keepdims=True)
    return base.astype(np.int64)[:, None] + offsets[None, :], weights


MAX_PERIOD = 8          # output positions per repeat of the tap pattern that the slice path handles
DENSE_MAX_INPUT = 256   # linear/cubic axes up to this long are resized by a matrix product


@functools.lru_cache(maxsize=256)
def _cached_matrix(key: tuple, dtype) -> np.ndarray:
    indices, weights, _, _ = _axis_taps(*key)
    matrix = _dense_matrix(indices, weights, key[0], dtype)
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=256)
def _axis_taps(in_len: int, out_len: int, scale: float, roi, mode: str, coordinate_mode: str, nearest_mode: str,
               cubic_coeff: float, exclude_outside: bool, antialias: bool):
    """Unclamped tap indices (out, K), weights (out, K) or None, extrapolation mask or None, and the period."""
    x, extrapolate = _source_coords(coordinate_mode, out_len, in_len, scale, roi)
    if mode == "nearest":
        indices, weights = _nearest_taps(x, nearest_mode, scale)
    else:
        indices, weights = _filter_taps(x, mode, scale, {"antialias": antialias, "cubic_coeff": cubic_coeff})
        if exclude_outside:
            weights = np.where((indices < 0) | (indices >= in_len), 0.0, weights)
            total = weights.sum(axis=1, keepdims=True)
            weights = weights / np.where(total == 0, 1.0, total)
    period = _period(indices, weights) if extrapolate is None else None
    for array in (indices, weights, extrapolate):
        if array is not None:
            array.flags.writeable = False
    return indices, weights, extrapolate, period


def _period(indices, weights):
    """(p, q) when output j + p reads the taps of output j shifted by q inputs with the same weights, else None."""
    out_len = len(indices)
    for p in range(1, min(MAX_PERIOD, out_len - 1) + 1):
        q = int(indices[p, 0] - indices[0, 0])
        if q >= 1 and np.array_equal(indices[p:], indices[:-p] + q) and (
                weights is None or np.allclose(weights[p:], weights[:-p], rtol=1e-6, atol=1e-7)):
            return p, q
    return None


def _axis_index(ndim: int, axis: int, index) -> tuple:
    return (slice(None),) * axis + (index,) + (slice(None),) * (ndim - axis - 1)


def _gather_axis(data, axis, indices, weights):
    indices = np.clip(indices, 0, data.shape[axis] - 1)
    if weights is None:
        return np.take(data, indices[:, 0], axis=axis)
    shape = (1,) * axis + (len(indices),) + (1,) * (data.ndim - axis - 1)
    weights = weights.astype(data.dtype)
    result = np.take(data, indices[:, 0], axis=axis) * weights[:, 0].reshape(shape)
    for k in range(1, indices.shape[1]):
        result += np.take(data, indices[:, k], axis=axis) * weights[:, k].reshape(shape)
    return result


def _periodic_axis(data, axis, indices, weights, period):
    """Resize one axis with strided slices: output phase r (every p-th output) reads every q-th input."""
    p, q = period
    in_len, out_len = data.shape[axis], len(indices)
    low, high = max(0, -int(indices.min())), max(0, int(indices.max()) - (in_len - 1))
    if low or high:   # edge padding stands for index clamping
        widths = [(0, 0)] * data.ndim
        widths[axis] = (low, high)
        data = np.pad(data, widths, mode="edge")
    shape = list(data.shape)
    shape[axis] = out_len
    result = np.empty(shape, data.dtype)
    scratch = None
    for r in range(min(p, out_len)):
        count = len(range(r, out_len, p))
        destination = result[_axis_index(data.ndim, axis, slice(r, out_len, p))]
        for k in range(indices.shape[1]):
            start = int(indices[r, k]) + low
            source = data[_axis_index(data.ndim, axis, slice(start, start + q * (count - 1) + 1, q))]
            if weights is None:
                destination[...] = source
            elif k == 0:
                np.multiply(source, data.dtype.type(weights[r, 0]), out=destination)
            else:
                if scratch is None or scratch.shape != destination.shape:
                    scratch = np.empty(destination.shape, data.dtype)
                np.multiply(source, data.dtype.type(weights[r, k]), out=scratch)
                destination += scratch
    return result


def _dense_matrix(indices, weights, in_len: int, dtype) -> np.ndarray:
    """(out, in) interpolation matrix: clamped taps of one output add up in its row."""
    matrix = np.zeros((len(indices), in_len), np.float64)
    rows = np.repeat(np.arange(len(indices)), indices.shape[1])
    np.add.at(matrix, (rows, np.clip(indices, 0, in_len - 1).reshape(-1)), weights.reshape(-1))
    return matrix.astype(dtype)


def _dense_axis(data, axis, matrix):
    """Resize one axis as a matrix product (BLAS), the axis seen as the middle of (before, in, after)."""
    before = math.prod(data.shape[:axis])
    flops = 2 * data.size * matrix.shape[0]
    if axis == data.ndim - 1:
        result = matmul(data.reshape(before, -1), matrix.T, flops=flops)
    else:
        result = matmul(matrix, data.reshape(before, data.shape[axis], -1), flops=flops)
    return result.reshape(data.shape[:axis] + (matrix.shape[0],) + data.shape[axis + 1:])


def _resize_axis(data: np.ndarray, axis: int, out_len: int, scale: float, roi, attrs: dict) -> np.ndarray:
    in_len = data.shape[axis]
    key = (in_len, out_len, scale, roi, attrs.get("mode", "nearest"), attrs.get("coordinate_mode", "half_pixel"),
           attrs.get("nearest_mode", "round_prefer_floor"), float(attrs.get("cubic_coeff", -0.75)),
           bool(attrs.get("exclude_outside")), bool(attrs.get("antialias")))
    indices, weights, extrapolate, period = _axis_taps(*key)
    if weights is not None and in_len <= DENSE_MAX_INPUT:
        # a BLAS product with the (out, in) weight matrix beats several gather-and-scale passes
        result = _dense_axis(data, axis, _cached_matrix(key, data.dtype))
    elif period is not None:
        result = _periodic_axis(data, axis, indices, weights, period)
    else:
        result = _gather_axis(data, axis, indices, weights)
    if extrapolate is not None and extrapolate.any():
        mask = extrapolate.reshape((1,) * axis + (out_len,) + (1,) * (data.ndim - axis - 1))
        result = np.where(mask, np.asarray(attrs.get("extrapolation", 0.0), result.dtype), result)
    return result


def _is_identity(scale: float, in_len: int, out_len: int, roi) -> bool:
    return math.isclose(scale, 1.0) and in_len == out_len and (
        roi is None or (math.isclose(roi[0], 0.0) and math.isclose(roi[1], 1.0)))


@register(LayerKind.RESIZE)
def resize(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    rank = x.ndim
    out_shape = [int(d) for d in attrs["out_shape"]]
    scales = [float(s) for s in attrs["scales"]]
    roi = attrs.get("roi")
    if out.size == 0:
        return
    if attrs.get("mode", "nearest") == "nearest":
        data = x   # a pure gather: any dtype, no arithmetic
    else:
        wide = x.dtype in (np.float64, np.int32, np.int64, np.uint32, np.uint64)
        data = x.astype(np.float64 if wide else np.float32, copy=False)
    for axis in range(rank):
        axis_roi = None if roi is None else (float(roi[axis]), float(roi[rank + axis]))
        if not _is_identity(scales[axis], x.shape[axis], out_shape[axis], axis_roi):
            data = _resize_axis(data, axis, out_shape[axis], scales[axis], axis_roi, attrs)
    if out.dtype.kind in "iub" and data.dtype.kind == "f":
        info = np.iinfo(out.dtype) if out.dtype.kind != "b" else None
        data = np.rint(data) if info is None else np.clip(np.rint(data), info.min, info.max)
    np.copyto(out, data, casting="unsafe")


def _nearest_indices(attrs: dict, in_shape: tuple, axis: int) -> np.ndarray | None:
    """Clamped source index of every output index of one axis (None when some output extrapolates)."""
    rank, roi = len(in_shape), attrs.get("roi")
    out_len, scale = int(attrs["out_shape"][axis]), float(attrs["scales"][axis])
    axis_roi = None if roi is None else (float(roi[axis]), float(roi[rank + axis]))
    if _is_identity(scale, in_shape[axis], out_len, axis_roi):
        return np.arange(out_len)
    key = (in_shape[axis], out_len, scale, axis_roi, "nearest", attrs.get("coordinate_mode", "half_pixel"),
           attrs.get("nearest_mode", "round_prefer_floor"), float(attrs.get("cubic_coeff", -0.75)),
           bool(attrs.get("exclude_outside")), bool(attrs.get("antialias")))
    indices, _, extrapolate, _ = _axis_taps(*key)
    if extrapolate is not None and extrapolate.any():
        return None
    return np.clip(indices[:, 0], 0, in_shape[axis] - 1)


def _plane_taps(attrs: dict, in_shape: tuple, axis: int):
    """Clamped int64 taps and float32 weights (out, K) of one axis for the native resize; None when it extrapolates."""
    rank, roi = len(in_shape), attrs.get("roi")
    axis_roi = None if roi is None else (float(roi[axis]), float(roi[rank + axis]))
    key = (in_shape[axis], int(attrs["out_shape"][axis]), float(attrs["scales"][axis]), axis_roi, attrs["mode"],
           attrs.get("coordinate_mode", "half_pixel"), attrs.get("nearest_mode", "round_prefer_floor"),
           float(attrs.get("cubic_coeff", -0.75)), bool(attrs.get("exclude_outside")), bool(attrs.get("antialias")))
    if _is_identity(key[2], key[0], key[1], axis_roi):
        return np.arange(key[1], dtype=np.int64)[:, None], np.ones((key[1], 1), np.float32)
    indices, weights, extrapolate, _ = _axis_taps(*key)
    if extrapolate is not None and extrapolate.any():
        return None
    return np.ascontiguousarray(np.clip(indices, 0, in_shape[axis] - 1), np.int64), \
        np.ascontiguousarray(weights, np.float32)


def _bind_native_resize(attrs, x, out):
    """run() of a float32 linear / cubic resize of the last two axes of a 4-D tensor by native_resize.c; None when
    the module is off or the resize is another (nearest, other axes resized, extrapolation)."""
    from edgert.kernels.cpu import native, threads
    if not native.enabled() or x.ndim != 4 or x.dtype != np.float32 or out.dtype != np.float32 \
            or not (x.flags.c_contiguous and out.flags.c_contiguous) or np.may_share_memory(x, out) \
            or out.shape[:2] != x.shape[:2] or attrs.get("mode") not in ("linear", "cubic"):
        return None
    roi = attrs.get("roi")
    for axis in (0, 1):
        axis_roi = None if roi is None else (float(roi[axis]), float(roi[4 + axis]))
        if not _is_identity(float(attrs["scales"][axis]), x.shape[axis], out.shape[axis], axis_roi):
            return None
    rows, columns = _plane_taps(attrs, x.shape, 2), _plane_taps(attrs, x.shape, 3)
    if rows is None or columns is None:
        return None
    native._native.set_threads(threads.thread_count())
    return functools.partial(native._native.resize2d, x, out, x.shape[0] * x.shape[1], *x.shape[2:], *out.shape[2:],
                             *rows, *columns)


@register_prepare(LayerKind.RESIZE)
def prepare_resize(attrs, inputs, outputs, workspace):
    x, out = inputs[0], outputs[0]
    if out.size == 0:
        return None
    if attrs.get("mode", "nearest") != "nearest":
        return _bind_native_resize(attrs, x, out)
    if x.dtype != out.dtype:
        return None
    per_axis = [_nearest_indices(attrs, x.shape, axis) for axis in range(x.ndim)]
    if any(indices is None for indices in per_axis):
        return None
    # leading axes kept whole stay outside the gather: (lead, trailing elements) in, (lead, trailing) out
    first = next((a for a, idx in enumerate(per_axis) if not np.array_equal(idx, np.arange(x.shape[a]))), x.ndim)
    if first == x.ndim:
        return functools.partial(np.copyto, out, x)
    lead = math.prod(x.shape[:first])
    flat = np.ravel_multi_index(np.ix_(*per_axis[first:]), x.shape[first:]).reshape(-1)
    return functools.partial(np.take, x.reshape(lead, -1), flat, axis=1, out=out.reshape(lead, -1), mode="clip")
