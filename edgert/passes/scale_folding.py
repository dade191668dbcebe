"""Per-channel affine layers folded into the weights of the convolution before them.

Rewrites, when a Convolution or Deconvolution with constant weights (and bias) feeds only the
affine layer, and the affine factors are constants that vary only along the channel axis:
- Scale(x, s, t) (BatchNormalization becomes one at import)  →  w' = w·s, b' = b·s + t;
- ElementWise PROD / DIV by such a constant  →  w' = w·c (w / c), b' = b·c (b / c);
- ElementWise SUM / SUB of such a constant  →  b' = b + c (b − c).
The affine layer disappears and the convolution writes its output.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import ElementWiseOp, LayerKind
from edgert.passes import is_graph_output

_FOLDABLE_OPS = {ElementWiseOp.PROD, ElementWiseOp.DIV, ElementWiseOp.SUM, ElementWiseOp.SUB}


def channel_vector(value, shape: tuple) -> np.ndarray | None:
    """The per-channel (axis 1) values of a constant broadcast to ``shape``, if it varies only along axis 1."""
    if value is None:
        return None
    try:
        full = np.broadcast_to(value.const, shape)
    except ValueError:
        return None
    index = tuple(slice(None) if axis == 1 else 0 for axis in range(len(shape)))
    vector = full[index]
    expanded = vector.reshape([-1 if axis == 1 else 1 for axis in range(len(shape))])
    return vector if np.array_equal(np.broadcast_to(expanded, shape), full) else None


def affine_of(node: Node, conv_out) -> tuple[np.ndarray, np.ndarray] | None:
    """(multiplier, addend) per output channel for an affine layer reading ``conv_out``, else None."""
    shape = conv_out.shape
    channels = shape[1]
    if node.kind == LayerKind.SCALE and node.inputs[0] is conv_out:
        if not all(v is None or v.is_const for v in node.inputs[1:]):
            return None
        scale = channel_vector(node.inputs[1], shape) if node.inputs[1] is not None else np.ones(channels)
        shift = channel_vector(node.inputs[2], shape) if len(node.inputs) > 2 and node.inputs[2] is not None \
            else np.zeros(channels)
        return None if scale is None or shift is None else (scale, shift)
    if node.kind != LayerKind.ELEMENTWISE or ElementWiseOp(node.attrs["op"]) not in _FOLDABLE_OPS:
        return None
    a, b = node.inputs
    op = ElementWiseOp(node.attrs["op"])
    other = b if a is conv_out else a
    if not other.is_const or node.outputs[0].shape != shape or (op in (ElementWiseOp.SUB, ElementWiseOp.DIV)
                                                                 and b is not other):
        return None
    c = channel_vector(other, shape)
    if c is None or (op == ElementWiseOp.DIV and not np.all(c != 0)):
        return None   # x / 0 is ±inf or NaN; as a factor of inf it would poison whatever it is folded into
    one, zero = np.ones_like(c), np.zeros_like(c)
    if op == ElementWiseOp.DIV:
        return 1 / c, zero
    return {ElementWiseOp.PROD: (c, zero), ElementWiseOp.SUM: (one, c), ElementWiseOp.SUB: (one, -c)}[op]


def fold_into(graph: Graph, conv: Node, affine: Node, multiplier: np.ndarray, addend: np.ndarray) -> None:
    weights = conv.inputs[1].const
    out_channels = conv.outputs[0].shape[1]
    dtype = weights.dtype
    if conv.kind == LayerKind.CONVOLUTION:
        scaled = weights * multiplier.reshape(-1, *[1] * (weights.ndim - 1))
    else:  # Deconvolution weights: (C_in, C_out / group, k...)
        group = int(conv.attrs.get("group", 1))
        grouped = weights.reshape(group, weights.shape[0] // group, *weights.shape[1:])
        per_group = multiplier.reshape(group, 1, -1, *[1] * (weights.ndim - 2))
        scaled = (grouped * per_group).reshape(weights.shape)
    bias = conv.inputs[2].const if len(conv.inputs) > 2 and conv.inputs[2] is not None \
        else np.zeros(out_channels, dtype)
    conv.set_input(1, graph.constant(scaled.astype(dtype), name=f"{conv.name}_w"))
    new_bias = graph.constant((bias * multiplier + addend).astype(dtype), name=f"{conv.name}_b")
    if len(conv.inputs) > 2:
        conv.set_input(2, new_bias)
    else:
        conv.append_input(new_bias)
    out = affine.outputs[0]
    graph.replace_all_uses(out, conv.outputs[0])
    graph.remove_node(affine)
    conv.origin = conv.origin + affine.origin


def try_fold(graph: Graph, conv: Node) -> bool:
    out = conv.outputs[0]
    if (len(out.uses()) != 1 or is_graph_output(graph, out) or not conv.inputs[1].is_const
            or (len(conv.inputs) > 2 and conv.inputs[2] is not None and not conv.inputs[2].is_const)
            or not out.dtype.is_float or conv.attrs.get("epilogue")):
        return False
    affine = out.uses()[0][0]
    factors = affine_of(affine, out)
    if factors is None or affine.outputs[0].dtype != out.dtype:
        return False
    fold_into(graph, conv, affine, *factors)
    return True


def run(graph: Graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.kind in (LayerKind.CONVOLUTION, LayerKind.DECONVOLUTION) and node in graph.nodes:
            while try_fold(graph, node):
                count += 1
    return count
