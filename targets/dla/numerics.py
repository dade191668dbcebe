"""DLA numerics around the NumPy reference kernels: FP16 storage and arithmetic, INT8 with scales.

FP16: every floating input (weights included) is rounded to FP16 with saturation at +-65504, the
reference kernel computes with FP16 outputs (per-element kernels then run in FP16, one rounding per
NumPy step; convolutions and matrix products accumulate in FP32 and round once), and the result is
stored back. Fused epilogue steps run on the FP16 result, as the DLA's post-processing engine does.

INT8 (a layer whose attrs carry ``"int8": {"input_scales": [...], "output_scale": s}``): activations
are quantized per tensor, q = clamp(round(x / s), -128, 127); weights per output channel with
s_c = max|w_c| / 127 (or ``"weight_scales"`` when given), q = clamp(round(w / s_c), -127, 127);
products accumulate exactly (as in INT32) and are rescaled in FP32; the output saturates to INT8 at
``output_scale``. Tensors hold the dequantized values (q * s), so the rest of the runtime is unchanged.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import DeviceError
from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup

FP16_MAX = float(np.finfo(np.float16).max)
INT8_MIN, INT8_MAX = -128, 127
# Which input holds the weights of a layer, and along which axis of it the output channels run.
_WEIGHTS = {LayerKind.CONVOLUTION: (1, 0), LayerKind.DECONVOLUTION: (1, 1), LayerKind.MATRIX_MULTIPLY: (1, None)}
_HOSTS = (LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY, LayerKind.DECONVOLUTION)


def to_fp16(x: np.ndarray) -> np.ndarray:
    """Round a floating array to FP16 (nearest even) with saturation; other types pass through."""
    if x is None or x.dtype.kind != "f" or x.dtype == np.float16:
        return x
    return np.clip(x, -FP16_MAX, FP16_MAX).astype(np.float16)


def quantize(x: np.ndarray, scale: float) -> np.ndarray:
    """Per-tensor symmetric INT8 quantization, returned dequantized (float64)."""
    if not scale > 0:
        raise DeviceError(f"INT8 scale must be positive, got {scale}")
    q = np.clip(np.rint(np.asarray(x, np.float64) / scale), INT8_MIN, INT8_MAX)
    return q * scale


def quantize_weights(w: np.ndarray, axis: int, scales=None) -> np.ndarray:
    """Per-output-channel symmetric INT8 quantization of weights (range +-127), returned dequantized."""
    w = np.asarray(w, np.float64)
    other = tuple(i for i in range(w.ndim) if i != axis)
    shape = [1] * w.ndim
    shape[axis] = w.shape[axis]
    if scales is None:
        scales = np.max(np.abs(w), axis=other) / 127.0
    scales = np.asarray(scales, np.float64).reshape(shape)
    scales = np.where(scales > 0, scales, 1.0)
    return np.clip(np.rint(w / scales), -127, 127) * scales


def without_epilogue(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k not in ("epilogue", "int8")}


def run_fp16(kind: LayerKind, attrs: dict, inputs, outputs) -> None:
    halves = [to_fp16(x) for x in inputs]
    temps = [np.empty(o.shape, np.float16) if o.dtype.kind == "f" and o.dtype != np.float16 else o
             for o in outputs]
    _compute(kind, attrs, halves, temps)
    for out, temp in zip(outputs, temps):
        if temp is not out:
            np.copyto(out, temp, casting="unsafe")


def run_int8(kind: LayerKind, attrs: dict, inputs, outputs) -> None:
    spec = attrs["int8"]
    scales = list(spec.get("input_scales") or [])
    weight_slot, axis = _WEIGHTS.get(kind, (None, None))
    if kind == LayerKind.MATRIX_MULTIPLY:
        axis = 0 if attrs.get("trans_b") else 1
    wide = []
    for index, x in enumerate(inputs):
        if x is None or x.dtype.kind != "f":
            wide.append(x)
        elif index == weight_slot:
            wide.append(quantize_weights(x, axis, spec.get("weight_scales")))
        elif index < len(scales) and scales[index]:
            wide.append(quantize(x, float(scales[index])))
        elif _is_constant_operand(kind, index):
            wide.append(np.asarray(x, np.float64))  # biases and scale/shift constants stay wide
        else:
            raise DeviceError(f"INT8 {kind.value} layer has no scale for its input {index}; "
                              "give attrs['int8']['input_scales'] (calibration provides them)")
    temps = [np.empty(o.shape, np.float64) if o.dtype.kind == "f" else o for o in outputs]
    _compute(kind, attrs, wide, temps)
    out_scale = float(spec["output_scale"])
    for out, temp in zip(outputs, temps):
        if temp is not out:
            np.copyto(out, quantize(temp, out_scale), casting="unsafe")


def _is_constant_operand(kind: LayerKind, index: int) -> bool:
    return (kind in _HOSTS and index == 2) or (kind == LayerKind.SCALE and index in (1, 2)) or \
        (kind == LayerKind.PARAMETRIC_RELU and index == 1)


def _compute(kind: LayerKind, attrs: dict, inputs, outputs) -> None:
    """The reference kernel without the fused epilogue, then the epilogue on the output in its type."""
    lookup(kind, "cpu")(without_epilogue(attrs), inputs, outputs)
    if attrs.get("epilogue"):
        from edgert.kernels.cpu.epilogue import apply_epilogue  # lands with the conv-epilogue fusion
        apply_epilogue(attrs, inputs, outputs[0])
