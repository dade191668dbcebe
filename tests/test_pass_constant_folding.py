import numpy as np

from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind
from edgert.passes import constant_folding, dead_code
from passes_util import assert_same_outputs, layer, new_graph


def test_folds_layers_whose_inputs_are_all_constant():
    graph, (x,) = new_graph((2, 3))
    c = graph.constant(np.array([[1.0, -2.0, 3.0]], np.float32))
    folded = layer(graph, LayerKind.ACTIVATION, [c], {"type": ActivationType.RELU})
    y = layer(graph, LayerKind.ELEMENTWISE, [x, folded], {"op": ElementWiseOp.SUM})
    graph.add_output(y, "y")
    assert_same_outputs(graph)
    assert constant_folding.run(graph) == 1
    assert [n.kind for n in graph.nodes] == [LayerKind.ELEMENTWISE]
    np.testing.assert_array_equal(graph.nodes[0].inputs[1].const, [[1.0, 0.0, 3.0]])
    graph.verify()


def test_does_not_fold_layers_reading_a_graph_input():
    graph, (x,) = new_graph((2, 3))
    graph.add_output(layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}), "y")
    assert constant_folding.run(graph) == 0


def test_a_constant_graph_output_keeps_its_own_layer():
    graph, (x,) = new_graph((2, 3))
    c = graph.constant(np.ones((2, 3), np.float32))
    graph.add_output(layer(graph, LayerKind.ACTIVATION, [c], {"type": ActivationType.RELU}), "y")
    graph.add_output(layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}), "z")
    assert constant_folding.run(graph) == 1
    assert constant_folding.run(graph) == 0  # the Identity publishing the constant stays
    assert graph.nodes[-1].kind == LayerKind.IDENTITY and graph.outputs[0].producer() is graph.nodes[-1]
    graph.verify()
    assert_same_outputs(graph)


def test_dead_code_removes_unread_layers_only():
    graph, (x,) = new_graph((2, 3))
    layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.SIGMOID}, name="unused")
    graph.add_output(layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}), "y")
    assert dead_code.run(graph) == 1
    assert [n.name for n in graph.nodes] == ["layer"]
    assert dead_code.run(graph) == 0
