"""Shape rules: kinds created by fusion passes (PointWise)."""

from __future__ import annotations

from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule
from edgert.ir.shapes.elementwise import broadcast


@shape_rule(LayerKind.POINTWISE)
def pointwise(node):
    # Every instruction broadcasts its arguments and every input reaches the output, so the output
    # is the broadcast of all inputs; a fused chain keeps one element type.
    return [(node.inputs[0].dtype, broadcast(node, *(v.shape for v in node.inputs)))]
