"""Simulated DLA kernels: ``lookup(kind, "dla")`` for every layer kind a DLA capability table allows.

Each one runs the NumPy reference kernel of its kind (``kernels/cpu``) with DLA numerics
(``numerics.py``): INT8 when the layer's attrs carry ``int8`` scales, FP16 otherwise. The Reformat
kernel converts at a device boundary: into the DLA it rounds to FP16 (or quantizes to INT8 with
``attrs["scale"]``), out of it it copies.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register
from edgert.targets.dla.numerics import quantize, run_fp16, run_int8, to_fp16

# The kinds that dla_v1.toml / dla_v2.toml allow, plus the fused PointWise layer.
DLA_KINDS = (
    LayerKind.CONVOLUTION, LayerKind.DECONVOLUTION, LayerKind.MATRIX_MULTIPLY, LayerKind.POOLING,
    LayerKind.ACTIVATION, LayerKind.PARAMETRIC_RELU, LayerKind.ELEMENTWISE, LayerKind.SCALE, LayerKind.LRN,
    LayerKind.CONCATENATION, LayerKind.RESIZE, LayerKind.UNARY, LayerKind.SLICE, LayerKind.SHUFFLE,
    LayerKind.SOFTMAX, LayerKind.REDUCE, LayerKind.POINTWISE,
)


def _dla_kernel(kind: LayerKind):
    def kernel(attrs, inputs, outputs):
        if attrs.get("int8"):
            run_int8(kind, attrs, inputs, outputs)
        else:
            run_fp16(kind, attrs, inputs, outputs)
    kernel.__name__ = f"dla_{kind.name.lower()}"
    kernel.__doc__ = f"{kind.value} with DLA numerics (FP16, or INT8 with the scales in attrs['int8'])."
    return kernel


for _kind in DLA_KINDS:
    register(_kind, device="dla")(_dla_kernel(_kind))


@register(LayerKind.REFORMAT, device="dla")
def reformat(attrs, inputs, outputs):
    x, out = inputs[0], outputs[0]
    if attrs.get("to_dtype"):   # int8 codes on the GPU / CPU (edgert.int8_codes), not a device boundary
        from edgert.kernels.cpu.int8 import reformat_codes
        return reformat_codes(attrs, inputs, outputs)
    to_dla = str(attrs.get("to_device", "")).startswith("dla")
    if to_dla and attrs.get("to_precision") == "int8" and attrs.get("scale"):
        np.copyto(out, quantize(x, float(attrs["scale"])), casting="unsafe")
    elif to_dla and x.dtype.kind == "f":
        np.copyto(out, to_fp16(x), casting="unsafe")
    else:
        np.copyto(out, x, casting="unsafe")
