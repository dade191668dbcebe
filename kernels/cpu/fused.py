"""Fused layer groups of the CPU runtime: runs of consecutive small layers that one native call does together.

An execution context binds every layer on its own (edgert.runtime.engine); then ``fuse`` finds, among them, the
groups that native_fused.c runs in one call, where each layer alone costs more in dispatch (its Python call, the
native call's argument parsing, a NumPy broadcast) than in arithmetic:

- **squeeze-excite** (MobileNetV3, LCNet, EfficientNet): global average pooling (Pooling over the whole plane, or
  Reduce avg over the two spatial axes) -> 1x1 Convolution with its fused activations -> 1x1 Convolution with its
  fused activations -> ElementWise prod of the block's input and that scale. Four layers of 2-20 µs of work each
  become one pass over the block's input and one over its output (MobileNetV3-Small has nine such blocks).

A fused call writes every tensor its layers would (the pooled, hidden and scale vectors too), so the plan's
tensors hold the same values after a run as without fusion (to rounding: the 1x1 products sum in another order
than BLAS). ``ExecutionContext.execute_each`` (the per-layer hooks of profiling and comparing) still runs the
layers one by one. Float32, the native module built and on, weights that are the engine's constants;
``EDGERT_CPU_FUSE=0`` turns fusion off (to compare).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu import native

ENV_SWITCH = "EDGERT_CPU_FUSE"


class Layer(NamedTuple):
    """What fusion needs to know of one bound layer: tensor ids index the context's buffers."""
    name: str
    kind: LayerKind
    attrs: dict
    inputs: list    # tensor ids (negative: an omitted optional input)
    outputs: list
    cpu: bool       # runs edgert's CPU kernels (not a DLA-simulated or int8 reference layer): may be fused


class Group(NamedTuple):
    """Layers [first, first + count) of the context's list, run by ``run``."""
    first: int
    count: int
    kind: str
    run: object


def enabled() -> bool:
    return native.enabled() and os.environ.get(ENV_SWITCH, "1") != "0"


def fuse(layers: list, buffers: list, workspace) -> list:
    """The fused groups (``Group``, in order, apart from each other) of ``layers`` (``Layer``, in run order), bound
    over ``buffers`` (tensor id -> array); ``workspace`` derives the reordered weights once per engine."""
    if not enabled():
        return []
    groups, index = [], 0
    while index < len(layers):
        run = _squeeze_excite(layers[index:index + 4], buffers, workspace)
        if run is not None:
            groups.append(Group(index, 4, "squeeze-excite", run))
            index += 4
        else:
            index += 1
    return groups


def _value(value) -> str:
    """An enum member's value or a plain string (plans carry strings, passes enum members)."""
    return str(getattr(value, "value", value))


def _float32(*arrays) -> bool:
    return all(a is not None and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)


def _global_average(layer: Layer, buffers: list):
    """(x, pooled) of a global average pooling of a 4-D tensor, else None."""
    x, pooled = buffers[layer.inputs[0]], buffers[layer.outputs[0]]
    if len(layer.outputs) != 1 or not _float32(x, pooled) or x.ndim != 4 or pooled.size != x.shape[0] * x.shape[1]:
        return None
    attrs = layer.attrs
    if layer.kind == LayerKind.POOLING:
        whole = list(attrs.get("kernel") or []) == list(x.shape[2:]) and not any(attrs.get("pads") or []) \
            and _value(attrs.get("type")) == "average" and not attrs.get("ceil_mode")
        return (x, pooled) if whole else None
    if layer.kind == LayerKind.REDUCE and _value(attrs.get("op")) == "avg" \
            and sorted(int(a) % 4 for a in attrs.get("axes") or []) == [2, 3]:
        return x, pooled
    return None


def _pointwise_vector(layer: Layer, source: int, buffers: list, workspace):
    """(transposed weights, bias, activation program, out) of a 1x1 Convolution of the (N, C, 1, 1) tensor
    ``source`` with constant weights and only activations fused after it, else None."""
    attrs = layer.attrs
    if layer.kind != LayerKind.CONVOLUTION or len(layer.inputs) < 2 or layer.inputs[0] != source \
            or len(layer.outputs) != 1 or int(attrs.get("group", 1)) != 1 or list(attrs.get("kernel") or []) != [1, 1] \
            or any(attrs.get("pads") or []):
        return None
    x, w, out = buffers[source], buffers[layer.inputs[1]], buffers[layer.outputs[0]]
    bias = buffers[layer.inputs[2]] if len(layer.inputs) > 2 and layer.inputs[2] >= 0 else None
    if not _float32(x, w, out) or (bias is not None and not _float32(bias)) or x.ndim != 4 or x.shape[2:] != (1, 1) \
            or w.shape[1:] != (x.shape[1], 1, 1) or out.shape != (x.shape[0], w.shape[0], 1, 1):
        return None
    steps = list(attrs.get("epilogue") or [])
    if any(step["op"] != "activation" for step in steps):
        return None
    program = native.activation_program(steps)
    if steps and program is None:
        return None
    transposed = workspace.derived((w,), "1x1 convolution weights, transposed (input channels, output channels)",
                                   lambda w: w.reshape(w.shape[0], w.shape[1]).T)
    if transposed is None:
        return None   # weights that change from run to run
    return transposed, None if bias is None else bias.reshape(-1), program, out


def _squeeze_excite(layers: list, buffers: list, workspace):
    """run() of a squeeze-excite block (the module docstring) when ``layers`` are one, else None."""
    if len(layers) != 4 or not all(layer.cpu for layer in layers):
        return None
    pool, reduce, expand, multiply = layers
    pooling = _global_average(pool, buffers)
    if pooling is None:
        return None
    x, pooled = pooling
    first = _pointwise_vector(reduce, pool.outputs[0], buffers, workspace)
    second = first and _pointwise_vector(expand, reduce.outputs[0], buffers, workspace)
    if not second or multiply.kind != LayerKind.ELEMENTWISE or _value(multiply.attrs.get("op")) != "prod" \
            or sorted(multiply.inputs) != sorted([pool.inputs[0], expand.outputs[0]]) or len(multiply.outputs) != 1:
        return None
    (reduce_t, reduce_bias, reduce_program, hidden), (expand_t, expand_bias, expand_program, scale) = first, second
    out = buffers[multiply.outputs[0]]
    images, channels = x.shape[:2]
    if not _float32(out) or out.shape != x.shape or scale.shape[1] != channels \
            or (np.may_share_memory(x, out) and x.ctypes.data != out.ctypes.data) \
            or any(np.may_share_memory(x, a) for a in (pooled, hidden, scale)):
        return None
    reduced = hidden.shape[1]
    work = np.empty(2 * channels + reduced, np.float32)   # the context's own: fused calls run one at a time
    from edgert.kernels.cpu import _native   # built: fuse() checked native.enabled()
    return functools.partial(_native.squeeze_excite, x, out, pooled, hidden, scale, reduce_t, reduce_bias,
                             expand_t, expand_bias, reduce_program, expand_program, work, images, channels, reduced)
