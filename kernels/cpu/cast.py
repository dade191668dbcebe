"""CPU kernel: Cast (attrs: to); the output buffer already has the target dtype.

NumPy's unsafe casting matches onnxruntime on the cases ONNX defines: float → integer truncates
toward zero, anything → bool is "nonzero" (NaN is true), bool → number is 0/1. Out-of-range
float → integer results are implementation-defined in both (no error is raised).
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.CAST)
def cast(attrs, inputs, outputs):
    with np.errstate(invalid="ignore", over="ignore"):
        np.copyto(outputs[0], inputs[0], casting="unsafe")
