"""CPU kernel: RoiAlign (attrs: mode "avg" | "max", output_height, output_width, sampling_ratio,
spatial_scale, half_pixel; inputs: x (N, C, H, W), rois (R, 4) as x1, y1, x2, y2, batch_indices (R,)).

As onnxruntime (and ONNX's reference) compute it: each output bin averages (or takes the max of) a
grid of bilinear samples, ``sampling_ratio`` per side or ceil(roi size / bins) when 0; samples
beyond one pixel outside the image count as 0; in "max" mode each sample is the max of its four
weighted corner terms (onnxruntime's definition, not the max of the interpolated values).
"""

from __future__ import annotations

import math

import numpy as np

from edgert.errors import InputError
from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


# Bilinear samples one roi may take (channels x sample rows x sample columns): far beyond any real roi, and a
# bound on the scratch a crafted roi or sampling_ratio could ask for (onnxruntime loops instead: minutes).
MAX_SAMPLES = 1 << 26


def _sample_axis(start: float, bin_size: float, bins: int, grid: int, size: int):
    """Per sample position along one axis: (low index, high index, low weight, high weight, outside)."""
    steps = (np.arange(grid) + 0.5) * bin_size / grid
    pos = (start + np.arange(bins)[:, None] * bin_size + steps[None]).reshape(-1)
    outside = (pos < -1.0) | (pos > size)
    pos = np.maximum(pos, 0)
    low = np.trunc(pos).astype(np.int64)
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    pos = np.where(at_edge, low, pos)
    frac = pos - low
    return low, high, 1.0 - frac, frac, outside


def _one_roi(image: np.ndarray, roi: np.ndarray, attrs) -> np.ndarray:
    height, width = image.shape[1:]
    bins_h, bins_w = int(attrs["output_height"]), int(attrs["output_width"])
    offset = 0.5 if attrs.get("half_pixel") else 0.0
    x1, y1, x2, y2 = (float(v) * float(attrs["spatial_scale"]) - offset for v in roi)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not attrs.get("half_pixel"):
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    if not (math.isfinite(roi_w) and math.isfinite(roi_h)):
        raise InputError(f"RoiAlign: roi {[float(v) for v in roi]} scaled by {attrs['spatial_scale']} is not finite")
    ratio = int(attrs["sampling_ratio"])
    # an empty or inverted roi takes no samples (its bins are 0, as onnxruntime's loops give)
    grid_h = ratio if ratio > 0 else max(int(math.ceil(roi_h / bins_h)), 0)
    grid_w = ratio if ratio > 0 else max(int(math.ceil(roi_w / bins_w)), 0)
    samples = image.shape[0] * bins_h * grid_h * bins_w * grid_w
    if samples == 0:
        return np.zeros((image.shape[0], bins_h, bins_w), image.dtype)
    if samples > MAX_SAMPLES:
        raise InputError(f"RoiAlign: roi {[float(v) for v in roi]} needs {grid_h}x{grid_w} samples per bin of a "
                         f"{bins_h}x{bins_w} output over {image.shape[0]} channels, more than {MAX_SAMPLES}; "
                         "check the rois' scale (spatial_scale) or set sampling_ratio")
    ylo, yhi, wyl, wyh, out_y = _sample_axis(y1, roi_h / bins_h, bins_h, grid_h, height)
    xlo, xhi, wxl, wxh, out_x = _sample_axis(x1, roi_w / bins_w, bins_w, grid_w, width)
    keep = ~(out_y[:, None] | out_x[None])
    terms = [w * keep * image[:, rows[:, None], cols[None]]
             for rows, cols, w in ((ylo, xlo, wyl[:, None] * wxl[None]), (ylo, xhi, wyl[:, None] * wxh[None]),
                                   (yhi, xlo, wyh[:, None] * wxl[None]), (yhi, xhi, wyh[:, None] * wxh[None]))]
    channels = image.shape[0]
    if attrs["mode"] == "avg":
        samples = sum(terms).reshape(channels, bins_h, grid_h, bins_w, grid_w)
        return samples.sum(axis=(2, 4)) / max(grid_h * grid_w, 1)
    samples = np.maximum.reduce(terms).reshape(channels, bins_h, grid_h, bins_w, grid_w)
    if grid_h * grid_w == 0:
        return np.zeros((channels, bins_h, bins_w))
    return samples.max(axis=(2, 4))


@register(LayerKind.ROI_ALIGN)
def roi_align(attrs, inputs, outputs):
    x, rois, batch_indices = inputs
    out = outputs[0]
    if batch_indices.size and not (0 <= batch_indices.min() and batch_indices.max() < x.shape[0]):
        raise InputError(f"RoiAlign: batch_indices range over [{batch_indices.min()}, {batch_indices.max()}], "
                         f"outside [0, {x.shape[0] - 1}]")
    image_dtype = np.float64 if x.dtype == np.float64 else np.float32
    for r in range(rois.shape[0]):
        image = x[int(batch_indices[r])].astype(image_dtype)
        out[r] = _one_roi(image, rois[r], attrs)
