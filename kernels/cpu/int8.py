"""INT8 CPU reference kernels (device key ``"cpu-int8"``), for layers whose attrs carry ``int8`` scales.

Same conventions as the DLA simulator (``targets/dla/numerics.py``), so one plan runs on both:
``attrs["int8"] = {"input_scales": [...], "output_scale": s, "weight_scales": [...]}``; tensors hold
dequantized float values (q * s). Convolution and MatrixMultiply compute as integer hardware does:
activations q = clamp(round(x / s), -128, 127), weights per output channel q = clamp(round(w / s_c),
-127, 127), products accumulated exactly in int32 range (float64 BLAS is exact for these sums: every
partial sum stays below 2^53), the bias added as int32 at scale s_x * s_c, the accumulator saturated
to int32, requantized by s_x * s_c to float, the fused epilogue applied, and the result saturated to
int8 at ``output_scale``. Other kinds quantize their inputs, compute wide and saturate the output.

Plans built with int8 codes (``edgert.int8_codes``) hand these kernels int8 tensors: an int8 input is read as
the codes it holds (the very codes quantizing its dequantized values gives), and an int8 output receives the
codes instead of their dequantized values. ``reformat_codes`` is the quantize / dequantize Reformat layer.

``kernel_for(kind, attrs, device)`` is what the runtime calls to pick a layer's kernel.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup, register

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
INT8_DEVICE = "cpu-int8"
_GENERIC_KINDS = (LayerKind.POOLING, LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.POINTWISE,
                  LayerKind.SCALE, LayerKind.CONCATENATION, LayerKind.PARAMETRIC_RELU, LayerKind.UNARY)


def kernel_for(kind, attrs: dict, device: str = "cpu"):
    """The int8 kernel when ``attrs`` carry int8 scales and the layer is not on a DLA, else the usual one."""
    if str(device).startswith("dla") or LayerKind(kind) == LayerKind.REFORMAT:
        from edgert.targets.dla import kernel_for as dla_kernel_for
        return dla_kernel_for(kind, device)
    if attrs.get("int8"):
        return lookup(kind, INT8_DEVICE)
    return lookup(kind, "cpu")


def quantize_codes(x: np.ndarray, scale: float) -> np.ndarray:
    """Integer codes (as float64) of a per-tensor symmetric int8 quantization."""
    if not scale > 0:
        raise ValueError(f"int8 scale must be positive, got {scale}")
    return np.clip(np.rint(np.asarray(x, np.float64) / scale), INT8_MIN, INT8_MAX)


def input_codes(x: np.ndarray, scale: float) -> np.ndarray:
    """The codes of an activation input as float64: an int8 tensor holds them, a float one is quantized."""
    if x.dtype == np.int8:
        return x.astype(np.float64)
    return quantize_codes(x, scale)


def reformat_codes(attrs, inputs, outputs):
    """Quantize a float tensor to int8 codes, or dequantize codes, at ``attrs["scale"]``."""
    x, out, scale = inputs[0], outputs[0], float(attrs["scale"])
    if out.dtype == np.int8:
        np.copyto(out, input_codes(x, scale), casting="unsafe")
    else:
        np.copyto(out, x.astype(np.float64) * scale, casting="unsafe")


def weight_codes(w: np.ndarray, axis: int, scales) -> tuple[np.ndarray, np.ndarray]:
    """(codes, per-channel scales) of a symmetric per-output-channel quantization (range +-127)."""
    w = np.asarray(w, np.float64)
    other = tuple(i for i in range(w.ndim) if i != axis)
    if scales is None:
        scales = np.max(np.abs(w), axis=other) / 127.0
    scales = np.asarray(scales, np.float64)
    scales = np.where(scales > 0, scales, 1.0)
    shape = [1] * w.ndim
    shape[axis] = w.shape[axis]
    return np.clip(np.rint(w / scales.reshape(shape)), -127, 127), scales


def _saturate_out(values: np.ndarray, out: np.ndarray, scale: float) -> None:
    codes = quantize_codes(values, scale)
    np.copyto(out, codes if out.dtype == np.int8 else codes * scale, casting="unsafe")


def _wide_inputs(attrs: dict, inputs, skip=()) -> list:
    """Activations dequantized at their input scale; constants (and ``skip`` slots) passed through wide."""
    scales = attrs["int8"].get("input_scales") or []
    wide = []
    for slot, x in enumerate(inputs):
        quantized = x is not None and (x.dtype.kind == "f" or x.dtype == np.int8)
        if not quantized or slot in skip or slot >= len(scales) or not scales[slot]:
            wide.append(None if x is None else np.asarray(x, np.float64) if x.dtype.kind == "f" else x)
        else:
            wide.append(input_codes(x, float(scales[slot])) * float(scales[slot]))
    return wide


def _epilogue(attrs: dict, wide_inputs, acc: np.ndarray) -> None:
    if attrs.get("epilogue"):
        from edgert.kernels.cpu.epilogue import apply_epilogue
        apply_epilogue(attrs, wide_inputs, acc)


def _plain(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k not in ("epilogue", "int8")}


@register(LayerKind.CONVOLUTION, device=INT8_DEVICE)
def convolution(attrs, inputs, outputs):
    spec = attrs["int8"]
    x_scale = float(spec["input_scales"][0])
    x_q = input_codes(inputs[0], x_scale)
    w_q, w_scales = weight_codes(inputs[1], 0, spec.get("weight_scales"))
    acc = np.empty(outputs[0].shape, np.float64)
    bias = inputs[2] if len(inputs) > 2 else None
    bias_q = None if bias is None else np.rint(np.asarray(bias, np.float64) / (x_scale * w_scales))
    lookup(LayerKind.CONVOLUTION)(_plain(attrs), [x_q, w_q, bias_q], [acc])
    _requantize(attrs, inputs, acc, x_scale * w_scales.reshape((-1,) + (1,) * (acc.ndim - 2)), outputs[0])


@register(LayerKind.MATRIX_MULTIPLY, device=INT8_DEVICE)
def matrix_multiply(attrs, inputs, outputs):
    spec = attrs["int8"]
    x_scale = float(spec["input_scales"][0])
    x_q = input_codes(inputs[0], x_scale)
    w_q, w_scales = weight_codes(inputs[1], 0 if attrs.get("trans_b") else 1, spec.get("weight_scales"))
    acc = np.empty(outputs[0].shape, np.float64)
    lookup(LayerKind.MATRIX_MULTIPLY)(_plain(attrs), [x_q, w_q], [acc])
    _requantize(attrs, inputs, acc, x_scale * w_scales, outputs[0])


def _requantize(attrs: dict, inputs, acc: np.ndarray, rescale: np.ndarray, out: np.ndarray) -> None:
    """int32 saturation, rescale to real values, fused epilogue, int8 saturation at the output scale."""
    np.clip(acc, INT32_MIN, INT32_MAX, out=acc)
    acc *= rescale
    _epilogue(attrs, _wide_inputs(attrs, inputs, skip=(0, 1)), acc)
    _saturate_out(acc, out, float(attrs["int8"]["output_scale"]))


def _generic(kind: LayerKind):
    def kernel(attrs, inputs, outputs):
        wide = _wide_inputs(attrs, inputs)
        temps = [np.empty(o.shape, np.float64) if o.dtype.kind == "f" or o.dtype == np.int8 else o for o in outputs]
        lookup(kind)(_plain(attrs), wide, temps)
        _epilogue(attrs, wide, temps[0])
        for out, temp in zip(outputs, temps):
            if temp is not out:
                _saturate_out(temp, out, float(attrs["int8"]["output_scale"]))
    kernel.__name__ = f"int8_{kind.name.lower()}"
    kernel.__doc__ = f"{kind.value} on int8-quantized inputs, computed wide, saturated to int8 at the output scale."
    return kernel


for _kind in _GENERIC_KINDS:
    register(_kind, device=INT8_DEVICE)(_generic(_kind))
