"""Attention scale folding: a matrix product of two scaled operands scales only one of them.

PyTorch's scaled_dot_product_attention exports as Q·√s and Kᵀ·√s before the Q·Kᵀ MatMul (both
exporters), so every attention head pays two scaling passes. Rewrites:
- MatrixMultiply(a·s, b·t) (ElementWise PROD by a scalar constant on either side, or DIV by one) →
  MatrixMultiply(a·(s·t), b) when a has no more elements than b, else MatrixMultiply(a, b·(s·t)); the
  factor is computed in float64 and stored in the tensor type; the remaining scale layer keeps the
  removed one's name in ``origin``.
Does not fire when only one operand is scaled, for a non-scalar or non-constant factor, when a scaled
operand is also read elsewhere or is a graph output, or for tensors other than float32/float64.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import ElementWiseOp as E, LayerKind
from edgert.passes import is_graph_output, single_use

# float16 models keep their two roundings: one factor rounded to float16 moves results by an ulp
_WIDE_FLOATS = (DataType.FLOAT, DataType.DOUBLE)


def _scaled(graph: Graph, value: Value):
    """(scale layer, unscaled input, factor) when value = x·c or x/c for a scalar constant c, read once."""
    node = value.producer()
    if node is None or node.kind != LayerKind.ELEMENTWISE or not single_use(value) or is_graph_output(graph, value):
        return None
    op = node.attrs.get("op")
    a, b = node.inputs
    if op == E.PROD and a.is_const and not b.is_const:
        a, b = b, a
    if op not in (E.PROD, E.DIV) or not b.is_const or b.size != 1 or a.is_const or a.dtype not in _WIDE_FLOATS \
            or a.shape != value.shape or b.dtype != a.dtype:
        return None
    factor = float(np.asarray(b.const, np.float64).reshape(()))
    return node, a, factor if op == E.PROD else 1.0 / factor


def _fold(graph: Graph, matmul: Node) -> bool:
    sides = [_scaled(graph, v) for v in matmul.inputs[:2]]
    if None in sides or sides[0][0] is sides[1][0]:
        return False
    keep = 0 if matmul.inputs[0].size <= matmul.inputs[1].size else 1
    (kept, kept_source, _), (dropped, dropped_source, _) = sides[keep], sides[1 - keep]
    factor = sides[0][2] * sides[1][2]
    dtype = kept_source.dtype.numpy
    kept.attrs["op"] = E.PROD
    kept.set_input(0, kept_source)
    kept.set_input(1, graph.constant(np.asarray(factor, dtype), name=f"{kept.name}_factor"))
    kept.origin = kept.origin + dropped.origin
    matmul.set_input(1 - keep, dropped_source)
    graph.remove_node(dropped)
    return True


def run(graph: Graph) -> int:
    return sum(_fold(graph, node) for node in list(graph.nodes)
               if node.kind == LayerKind.MATRIX_MULTIPLY and node in graph.nodes)
