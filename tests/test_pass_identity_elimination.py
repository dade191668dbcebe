import numpy as np

from edgert.ir.dtypes import DataType
from edgert.ir.kinds import ActivationType, LayerKind
from edgert.passes import identity_elimination
from passes_util import assert_same_outputs, layer, new_graph


def _relu(graph, x, name="relu"):
    return layer(graph, LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}, name=name)


def test_removes_no_ops_between_layers():
    graph, (x,) = new_graph((2, 3, 4))
    a = _relu(graph, x, "a")
    b = layer(graph, LayerKind.IDENTITY, [a])
    c = layer(graph, LayerKind.CAST, [b], {"to": DataType.FLOAT})
    d = layer(graph, LayerKind.SHUFFLE, [c], {"first_perm": None, "reshape": [2, 3, 4], "second_perm": None})
    e = layer(graph, LayerKind.SLICE, [d], {"starts": [0, 0, 0], "sizes": [2, 3, 4], "steps": [1, 1, 1]})
    f = layer(graph, LayerKind.CONCATENATION, [e], {"axis": 1})
    graph.add_output(_relu(graph, f, "out"), "y")
    assert_same_outputs(graph)
    assert identity_elimination.run(graph) == 5
    assert [n.name for n in graph.nodes] == ["a", "out"]
    graph.verify()


def test_keeps_layers_that_change_something():
    graph, (x,) = new_graph((2, 3, 4))
    a = layer(graph, LayerKind.CAST, [x], {"to": DataType.HALF})
    b = layer(graph, LayerKind.SHUFFLE, [a], {"first_perm": [0, 2, 1], "reshape": None, "second_perm": None})
    c = layer(graph, LayerKind.SLICE, [b], {"starts": [0, 0, 1], "sizes": [2, 4, 2], "steps": [1, 1, 1]})
    graph.add_output(c, "y")
    assert identity_elimination.run(graph) == 0


def test_identity_publishing_a_graph_input_stays():
    graph, (x,) = new_graph((2, 3))
    graph.add_output(layer(graph, LayerKind.IDENTITY, [x]), "y")
    assert identity_elimination.run(graph) == 0
    graph.verify()


def test_no_op_publishing_an_output_hands_the_output_to_its_input():
    graph, (x,) = new_graph((2, 3))
    a = _relu(graph, x)
    graph.add_output(layer(graph, LayerKind.CAST, [a], {"to": DataType.FLOAT}), "y")
    assert identity_elimination.run(graph) == 1
    assert graph.outputs[0] is a and graph.output_names == ["y"]
    assert_same_outputs(graph)
    np.testing.assert_equal(len(graph.nodes), 1)
