"""Fused epilogues: what a Convolution or MatrixMultiply applies to its result before writing it.

``attrs["epilogue"]`` is a list of steps applied in order, in place on the output:
- ``{"op": "activation", "type": ..., "alpha": ..., "beta": ...}``: an Activation;
- ``{"op": "add", "input": i}``: add the layer's input ``i`` (a residual or a bias, broadcast).

``bind_epilogue`` is the same for a prepare hook: the steps bound once to the layer's fixed arrays.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.activation import bind_activation
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import lookup


def apply_epilogue(attrs: dict, inputs, out: np.ndarray) -> None:
    for step in attrs.get("epilogue") or ():
        if step["op"] == "activation":
            lookup(LayerKind.ACTIVATION)(step, [out], [out])
        elif step["op"] == "add":
            np.add(out, inputs[step["input"]], out=out, casting="unsafe")
        else:
            raise ValueError(f"unknown epilogue step {step['op']!r}")


def bind_epilogue(attrs: dict, inputs, out: np.ndarray, source: np.ndarray | None = None):
    """run() applying the epilogue to the fixed array ``out`` in place; None when there is none.

    With ``source`` (a view holding the layer's result, such as a crop of a wider scratch), the
    first step reads it instead of ``out``, so writing ``out`` costs no separate copy; then the
    run() always writes ``out`` (a plain copy when there are no steps).
    """
    calls, current = [], out if source is None else source
    for step in attrs.get("epilogue") or ():
        if step["op"] == "activation":
            calls.append(bind_activation(step, current, out))
        elif step["op"] == "add":
            calls.append(functools.partial(np.add, current, inputs[step["input"]], out, casting="unsafe"))
        else:
            raise ValueError(f"unknown epilogue step {step['op']!r}")
        current = out
    if current is not out:
        calls.append(functools.partial(np.copyto, out, current))
    return sequence(calls)
