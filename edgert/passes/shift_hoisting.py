"""Shift hoisting: a per-channel affine layer's shift moved into the bias of a convolution that feeds it
through a sum, where that cancels the bias.

Rewrites Scale(x, s, t) (BatchNormalization becomes one at import; constant s, t that vary only along
the channel axis) whose input x is a sum (ElementWise SUM layers of same-shaped operands, no
broadcasting, each intermediate read only by the sum) with a Convolution or Deconvolution among its
operands (constant weights and bias, no epilogue, read only by the sum). Since
s·(conv + rest) + t = s·(conv + t/s + rest), the shift can live in the convolution's bias:
b' = b + t/s and t' = 0, computed in float64 at build time. It is done per channel, and only where it
shrinks the bias (|b + t/s| < |b|), into the first such convolution; other channels keep their shift.

Why: RepVGG-style blocks (RepViT's token mixer: BN(dwconv3x3(x) + dwconv1x1(x) + x)) put a large
per-channel offset in a branch's bias that the BatchNorm after the sum subtracts again (its running
mean). Left as is, an fp16 plan stores the offset in the convolution's output, and rounds the bias and
the folded shift (-mean·s) to float16 separately: the two roundings no longer cancel, and the leftover
is an error constant over each channel, which global and squeeze-excite means then amplify (2x the
ideal fp16 error on timm's RepViT). Hoisted, the subtraction happens once in float64, and float16 stores
the centred values. In fp32 the rewrite is exact up to float32 rounding of the new bias.

Does not fire when s is zero or not finite on a channel (that channel keeps its shift), when the sum
broadcasts, when an operand or intermediate is read elsewhere or is a graph output, or when no
channel's bias would shrink (so a Scale whose shift cancels nothing is left as is). Runs before
conv_fusion, which would otherwise put the sum into the convolution's epilogue.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import ElementWiseOp, LayerKind
from edgert.passes import is_graph_output, single_use
from edgert.passes.scale_folding import channel_vector

MAX_DEPTH = 8   # sum layers walked below the Scale (RepVGG blocks have two)


def _only_read_by_sum(graph: Graph, value: Value) -> bool:
    return single_use(value) and not is_graph_output(graph, value)


def _sum_leaves(graph: Graph, value: Value, shape: tuple, depth: int = 0) -> list[Value]:
    """The operands of the same-shaped SUM tree that produces ``value`` (``value`` itself when no sum does)."""
    node = value.producer()
    if (depth < MAX_DEPTH and node is not None and node.kind == LayerKind.ELEMENTWISE
            and ElementWiseOp(node.attrs["op"]) == ElementWiseOp.SUM and len(node.inputs) == 2
            and all(v is not None and not v.is_const and tuple(v.shape) == shape for v in node.inputs)
            and (depth == 0 or _only_read_by_sum(graph, value))):
        return [leaf for operand in node.inputs for leaf in _sum_leaves(graph, operand, shape, depth + 1)]
    return [value] if depth > 0 else []


def _bias_convolution(graph: Graph, value: Value, dtype) -> Node | None:
    """The convolution writing ``value`` when its bias may take a shift: constant weights and bias (without
    a bias there is nothing to cancel), no epilogue, output read only by the sum, of the Scale's type."""
    conv = value.producer()
    if conv is None or conv.kind not in (LayerKind.CONVOLUTION, LayerKind.DECONVOLUTION):
        return None
    bias = conv.inputs[2] if len(conv.inputs) > 2 else None
    if (not _only_read_by_sum(graph, value) or conv.attrs.get("epilogue") or not conv.inputs[1].is_const
            or bias is None or not bias.is_const or value.dtype != dtype or len(conv.outputs) != 1):
        return None
    return conv


def hoist(graph: Graph, node: Node) -> bool:
    """Move what it can of Scale ``node``'s shift into convolution biases; True when a channel moved."""
    if node.kind != LayerKind.SCALE or len(node.inputs) < 3 or node.inputs[2] is None:
        return False
    x, scale_value, shift_value = node.inputs[:3]
    if any(v is not None and not v.is_const for v in node.inputs[1:]) or x.dtype is None \
            or not x.dtype.is_float or len(x.shape) < 2 or node.outputs[0].dtype != x.dtype:
        return False
    shape = tuple(x.shape)
    shift = channel_vector(shift_value, shape)
    scale = channel_vector(scale_value, shape) if scale_value is not None else np.ones(shape[1])
    if shift is None or scale is None or shift_value.dtype != x.dtype \
            or (scale_value is not None and scale_value.dtype != x.dtype):
        return False
    scale, shift = np.asarray(scale, np.float64), np.asarray(shift, np.float64)
    movable = (scale != 0) & np.isfinite(scale) & np.isfinite(shift) & (shift != 0)
    if not movable.any():
        return False
    offset = np.where(movable, shift / np.where(movable, scale, 1.0), 0.0)   # the shift in the sum's units
    moved = np.zeros(shape[1], bool)
    for leaf in _sum_leaves(graph, x, shape):
        conv = _bias_convolution(graph, leaf, x.dtype)
        if conv is None:
            continue
        bias = np.asarray(conv.inputs[2].const, np.float64).reshape(-1)
        if bias.shape != (shape[1],):
            continue
        new_bias = bias + offset
        take = movable & ~moved & (np.abs(new_bias) < np.abs(bias))
        if not take.any():
            continue
        conv.set_input(2, graph.constant(np.where(take, new_bias, bias).astype(x.dtype.numpy), name=f"{conv.name}_b"))
        moved |= take
    if not moved.any():
        return False
    kept = np.where(moved, 0.0, shift)
    layout = (shape[1],) + (1,) * (len(shape) - 2)     # per channel, as affine_folding writes it
    node.set_input(2, graph.constant(kept.astype(x.dtype.numpy).reshape(layout), name=f"{node.name}_shift"))
    return True


def run(graph: Graph) -> int:
    return sum(hoist(graph, node) for node in list(graph.nodes) if node in graph.nodes)
