"""CPU kernel: ParametricReLU; inputs x, slope (slope broadcasts to x): y = x < 0 ? slope * x : x."""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import register


@register(LayerKind.PARAMETRIC_RELU)
def parametric_relu(attrs, inputs, outputs):
    x, slope = inputs
    np.copyto(outputs[0], np.where(x < 0, x * slope, x), casting="unsafe")
