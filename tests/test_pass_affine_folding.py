import numpy as np
import pytest

from edgert.ir.dtypes import DataType
from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind
from edgert.passes import affine_folding
from passes_util import assert_same_outputs, layer, new_graph

RNG = np.random.default_rng()


def _const(graph, shape, low=0.5, high=1.5, dtype=np.float32):
    return graph.constant(RNG.uniform(low, high, shape).astype(dtype))


def _scale(graph, x, name="bn"):
    channels = x.shape[1]
    return layer(graph, LayerKind.SCALE, [x, _const(graph, (channels, 1, 1)), _const(graph, (channels, 1, 1), -1, 1)],
                 {"axis": 1}, name=name)


def _binary(graph, op, a, b, name):
    return layer(graph, LayerKind.ELEMENTWISE, [a, b], {"op": op}, name=name)


def _relu(graph, x):
    return layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}, name="relu")


def test_densenet_scale_mul_add_becomes_one_scale():
    graph, (x,) = new_graph((1, 6, 5, 5))
    y = _scale(graph, x)
    y = _binary(graph, ElementWiseOp.PROD, y, _const(graph, (6, 1, 1)), "mul")
    y = _binary(graph, ElementWiseOp.SUM, y, _const(graph, (6, 1, 1), -1, 1), "add")
    graph.add_output(_relu(graph, y), "y")
    assert_same_outputs(graph, 1e-6)
    assert affine_folding.run(graph) == 1
    graph.verify()
    assert [n.kind for n in graph.nodes] == [LayerKind.SCALE, LayerKind.ACTIVATION]
    assert graph.nodes[0].origin == ["bn", "mul", "add"]
    assert graph.nodes[0].inputs[0] is x and graph.nodes[0].inputs[1].const.shape == (6, 1, 1)


@pytest.mark.parametrize("op, const_first", [(ElementWiseOp.SUB, False), (ElementWiseOp.DIV, False),
                                             (ElementWiseOp.PROD, True), (ElementWiseOp.SUM, True)])
def test_scalar_and_per_channel_operands_on_either_side(op, const_first):
    graph, (x,) = new_graph((2, 4, 3, 7))
    scalar = _const(graph, ())
    y = _binary(graph, ElementWiseOp.PROD, x, scalar, "scalar_mul")
    c = _const(graph, (1, 4, 1, 1))
    y = _binary(graph, op, *((c, y) if const_first else (y, c)), name="op")
    graph.add_output(y, "y")
    assert_same_outputs(graph, 1e-6)
    assert affine_folding.run(graph) == 1
    assert [n.kind for n in graph.nodes] == [LayerKind.SCALE]
    assert graph.output_names == ["y"]


def test_does_not_fire_on_a_single_layer_or_a_shared_intermediate():
    graph, (x,) = new_graph((1, 4, 3, 3))
    y = _scale(graph, x)
    graph.add_output(y, "alone")
    z = _scale(graph, x, name="bn2")
    graph.add_output(_binary(graph, ElementWiseOp.PROD, z, _const(graph, (4, 1, 1)), "mul"), "y")
    graph.add_output(_relu(graph, z), "shared")   # z has a second reader
    assert affine_folding.run(graph) == 0


def test_does_not_fire_across_a_graph_output():
    graph, (x,) = new_graph((1, 4, 3, 3))
    y = _scale(graph, x)
    graph.add_output(y, "raw")
    graph.add_output(_binary(graph, ElementWiseOp.SUM, y, _const(graph, (4, 1, 1)), "add"), "y")
    assert affine_folding.run(graph) == 0


def test_does_not_fire_on_non_channel_or_widening_constants_or_reversed_sub_div():
    graph, (x,) = new_graph((1, 4, 3, 3))
    for name, const, op in [("spatial", (1, 1, 3, 3), ElementWiseOp.PROD), ("last_axis", (3,), ElementWiseOp.SUM),
                            ("widening", (2, 4, 3, 3), ElementWiseOp.PROD)]:
        graph.add_output(_binary(graph, op, _scale(graph, x, name=f"bn_{name}"), _const(graph, const), name), name)
    for op in (ElementWiseOp.SUB, ElementWiseOp.DIV):   # c - x and c / x
        graph.add_output(_binary(graph, op, _const(graph, (4, 1, 1)), _scale(graph, x, name=f"bn_{op.value}"),
                                 f"reversed_{op.value}"), f"reversed_{op.value}")
    assert affine_folding.run(graph) == 0


def test_does_not_fire_on_a_variable_operand_or_mixed_types():
    graph, (x, other) = new_graph((1, 4, 3, 3), (1, 4, 1, 1))
    graph.add_output(_binary(graph, ElementWiseOp.PROD, _scale(graph, x), other, "mul_variable"), "y")
    half, (h,) = new_graph((1, 4, 3, 3), dtype=DataType.HALF)
    scaled = layer(half, LayerKind.SCALE, [h, _const(half, (4, 1, 1), dtype=np.float16),
                                          _const(half, (4, 1, 1), dtype=np.float16)], {"axis": 1}, name="bn")
    half.add_output(layer(half, LayerKind.SCALE, [scaled, _const(half, (4, 1, 1)), _const(half, (4, 1, 1))],
                          {"axis": 1}, name="bn_float32"), "y")   # float32 constants on a float16 tensor
    assert affine_folding.run(graph) == 0
    assert affine_folding.run(half) == 0


def test_does_not_fold_a_division_by_zero():
    """x / 0 is ±inf (NaN for 0 / 0); folded as a factor 1 / 0 = inf times a later 0 it would be NaN."""
    graph, (x,) = new_graph((1, 3, 2, 2))
    zero = graph.constant(np.array([1.0, 0.0, 2.0], np.float32).reshape(3, 1, 1))
    y = _binary(graph, ElementWiseOp.DIV, x, zero, "div")
    y = _binary(graph, ElementWiseOp.PROD, y, graph.constant(np.zeros((3, 1, 1), np.float32)), "mul")
    graph.add_output(y, "y")
    assert affine_folding.run(graph) == 0
