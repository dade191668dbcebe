from edgert.ir.kinds import ActivationType, LayerKind
from edgert.passes import shuffle_cancellation
from edgert.passes.shuffle_cancellation import as_attrs, simplify
from passes_util import assert_same_outputs, layer, new_graph


def _shuffle(graph, x, first=None, reshape=None, second=None, name="shuffle"):
    return layer(graph, LayerKind.SHUFFLE, [x], {"first_perm": first, "reshape": reshape, "second_perm": second},
                 name=name)


def test_inverse_transposes_cancel():
    assert simplify((1, 3, 4, 5), [("T", (0, 2, 3, 1)), ("T", (0, 3, 1, 2))]) == []


def test_reshape_chains_keep_the_last():
    assert simplify((2, 3, 4), [("R", (6, 4)), ("R", (2, 12))]) == [("R", (2, 12))]


def test_unit_axis_transpose_is_a_reshape():
    assert simplify((1, 3, 1, 5), [("T", (0, 2, 1, 3))]) == [("R", (1, 1, 3, 5))]


def test_more_than_one_shuffle_is_left_alone():
    steps = [("T", (1, 0, 2)), ("R", (12, 2)), ("T", (1, 0)), ("R", (4, 6)), ("T", (1, 0))]
    assert as_attrs(simplify((3, 4, 2), steps)) is None


def test_graph_rewrite_merges_and_removes():
    graph, (x,) = new_graph((1, 3, 4, 5))
    a = _shuffle(graph, x, first=[0, 2, 3, 1], name="nhwc")
    b = _shuffle(graph, a, first=[0, 3, 1, 2], name="nchw")
    c = _shuffle(graph, b, reshape=[1, 60], name="flatten")
    graph.add_output(layer(graph, LayerKind.ACTIVATION, [c], {"type": ActivationType.RELU}), "y")
    assert_same_outputs(graph)
    assert shuffle_cancellation.run(graph) == 2
    graph.verify()
    shuffles = [n for n in graph.nodes if n.kind == LayerKind.SHUFFLE]
    assert len(shuffles) == 1 and shuffles[0].attrs == {"first_perm": None, "reshape": [1, 60],
                                                        "second_perm": None}
    assert shuffles[0].origin == ["nhwc", "nchw", "flatten"]


def test_does_not_merge_when_the_middle_value_has_another_reader():
    graph, (x,) = new_graph((2, 3))
    a = _shuffle(graph, x, first=[1, 0])
    b = _shuffle(graph, a, first=[1, 0])
    graph.add_output(b, "y")
    graph.add_output(layer(graph, LayerKind.ACTIVATION, [a], {"type": ActivationType.RELU}), "z")
    assert shuffle_cancellation.run(graph) == 0
