"""Quantize → Dequantize folding, for int8 builds (explicit quantization, as TensorRT does).

Rewrites:
- Dequantize(Quantize(x, s, zp), s, zp) on a float activation with one constant per-tensor scale
  (and matching zero points) → x itself, with ``graph.tensor_scales[x] = s`` so the int8 layers
  around it use the model's own scale instead of a calibrated one.
Not in the default pipeline: an fp32/fp16 build keeps the Quantize/Dequantize layers and computes
exactly what the model defines. Does not fire for per-axis or blocked scales, for differing
scales or zero points, or when the quantized tensor has another reader.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import LayerKind
from edgert.passes import is_graph_output


def _constant(value, absent=None):
    """A constant input's data; ``absent`` for a missing input; None when it is not constant."""
    if value is None:
        return absent
    return value.const if value.is_const else None


def fold(graph: Graph, dequantize: Node) -> bool:
    quantized = dequantize.inputs[0]
    quantize = quantized.producer()
    if quantize is None or quantize.kind != LayerKind.QUANTIZE or len(quantized.uses()) != 1 \
            or is_graph_output(graph, quantized) or quantize.attrs.get("block_size"):
        return False
    scale, scale2 = _constant(quantize.inputs[1]), _constant(dequantize.inputs[1])
    no_zero = np.zeros((), np.int64)
    zero = _constant(quantize.inputs[2] if len(quantize.inputs) > 2 else None, no_zero)
    zero2 = _constant(dequantize.inputs[2] if len(dequantize.inputs) > 2 else None, no_zero)
    if any(v is None for v in (scale, scale2, zero, zero2)) or scale.size != 1 \
            or not np.array_equal(scale, scale2) or zero.size != 1 or int(zero.reshape(())) != int(zero2.reshape(())):
        return False
    source = quantize.inputs[0]
    if source.is_const or source.dtype != dequantize.outputs[0].dtype:
        return False
    graph.tensor_scales[source.name] = float(scale.reshape(()))
    graph.replace_all_uses(dequantize.outputs[0], source)
    graph.remove_node(dequantize)
    graph.remove_node(quantize)
    return True


def run(graph: Graph) -> int:
    return sum(1 for node in list(graph.nodes)
               if node.kind == LayerKind.DEQUANTIZE and node in graph.nodes and fold(graph, node))
