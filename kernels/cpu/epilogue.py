"""Fused epilogues: what a Convolution or MatrixMultiply applies to its result before writing it.

``attrs["epilogue"]`` is a list of steps applied in order, in place on the output:
- ``{"op": "activation", "type": ..., "alpha": ..., "beta": ...}``: an Activation;
- ``{"op": "add", "input": i}``: add the layer's input ``i`` (a residual or a bias, broadcast).
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup


def apply_epilogue(attrs: dict, inputs, out: np.ndarray) -> None:
    for step in attrs.get("epilogue") or ():
        if step["op"] == "activation":
            lookup(LayerKind.ACTIVATION)(step, [out], [out])
        elif step["op"] == "add":
            np.add(out, inputs[step["input"]], out=out, casting="unsafe")
        else:
            raise ValueError(f"unknown epilogue step {step['op']!r}")
