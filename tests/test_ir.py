"""The IR graph itself: producer/use bookkeeping, rewrites, topological sort, the verifier, names."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edgert.errors import GraphError
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind

F32 = DataType.FLOAT


def typed(node: Node, shape=(2, 3), dtype=F32) -> Node:
    """Give a node's outputs a dtype and shape, as shape inference would."""
    for value in node.outputs:
        value.dtype, value.shape = dtype, tuple(shape)
    return node


def relu(graph: Graph, x: Value, name: str = "relu") -> Node:
    return typed(graph.add_node(LayerKind.ACTIVATION, [x], {"type": ActivationType.RELU}, name=name))


def add(graph: Graph, a: Value, b: Value, name: str = "add") -> Node:
    return typed(graph.add_node(LayerKind.ELEMENTWISE, [a, b], {"op": ElementWiseOp.SUM}, name=name))


def diamond() -> tuple[Graph, dict[str, Node]]:
    """x → a → (b, c) → d = b + c → output; every node typed, in execution order."""
    graph = Graph("diamond")
    x = graph.add_input("x", F32, (2, 3))
    a = relu(graph, x, "a")
    b = relu(graph, a.outputs[0], "b")
    c = relu(graph, a.outputs[0], "c")
    d = add(graph, b.outputs[0], c.outputs[0], "d")
    graph.add_output(d.outputs[0], "y")
    return graph, {"a": a, "b": b, "c": c, "d": d}


# -- values and nodes --------------------------------------------------------------------------------------
def test_values_know_producer_and_uses():
    graph, n = diamond()
    x = graph.inputs[0]
    a_out = n["a"].outputs[0]
    assert x.producer() is None and x.uses() == [(n["a"], 0)]
    assert a_out.producer() is n["a"]
    assert a_out.uses() == [(n["b"], 0), (n["c"], 0)]
    assert a_out.users() == [n["b"], n["c"]]
    assert n["d"].inputs == (n["b"].outputs[0], n["c"].outputs[0])


def test_users_lists_a_node_once_when_it_reads_a_value_twice():
    graph = Graph()
    x = graph.add_input("x", F32, (2,))
    node = add(graph, x, x)
    assert x.uses() == [(node, 0), (node, 1)]
    assert x.users() == [node]


def test_uses_returns_a_copy():
    graph, n = diamond()
    uses = n["a"].outputs[0].uses()
    uses.clear()
    assert len(n["a"].outputs[0].uses()) == 2


def test_constant_values():
    graph = Graph()
    c = graph.constant(np.arange(6, dtype=np.int32).reshape(2, 3), name="w")
    assert c.is_const and c.dtype == DataType.INT32 and c.shape == (2, 3)
    assert c.size == 6 and c.nbytes == 24 and c.producer() is None
    scalar = graph.constant(np.float16(1.5))
    assert scalar.shape == () and scalar.size == 1 and scalar.nbytes == 2
    assert "const" in repr(c)


def test_set_input_moves_the_use():
    graph, n = diamond()
    x, a_out = graph.inputs[0], n["a"].outputs[0]
    n["b"].set_input(0, x)
    assert n["b"].inputs[0] is x
    assert a_out.uses() == [(n["c"], 0)]
    assert x.uses() == [(n["a"], 0), (n["b"], 0)]
    n["b"].set_input(0, None)
    assert n["b"].inputs[0] is None and x.uses() == [(n["a"], 0)]


def test_optional_inputs_are_none_and_not_used():
    graph = Graph()
    x = graph.add_input("x", F32, (2, 3))
    node = typed(graph.add_node(LayerKind.CONVOLUTION, [x, graph.constant(np.ones((1, 1)), "w"), None]))
    assert node.inputs[2] is None
    assert "-" in repr(node)


def test_replace_all_uses_rewires_readers_and_graph_outputs():
    graph, n = diamond()
    old = n["d"].outputs[0]
    e = relu(graph, old, "e")
    new = e.outputs[0]
    graph.replace_all_uses(old, new)
    assert graph.outputs == [new] and graph.output_names == ["y"]
    # e read ``old`` too, so it now reads itself: a pass inserting a node after a value must point it back.
    assert old.uses() == [] and new.uses() == [(e, 0)]
    e.set_input(0, old)
    graph.verify()


def test_replace_all_uses_of_a_shared_value():
    graph, n = diamond()
    x = graph.inputs[0]
    graph.replace_all_uses(n["a"].outputs[0], x)
    assert n["a"].outputs[0].uses() == []
    assert {node.name for node in x.users()} == {"a", "b", "c"}
    graph.remove_node(n["a"])
    graph.verify()


def test_remove_node_refuses_used_outputs():
    graph, n = diamond()
    with pytest.raises(GraphError, match="still used"):
        graph.remove_node(n["a"])
    with pytest.raises(GraphError, match="still used"):
        graph.remove_node(n["d"])  # read by nobody, but a graph output
    assert n["a"] in graph.nodes and n["d"] in graph.nodes


def test_remove_node_detaches_it():
    graph, n = diamond()
    graph.replace_all_uses(n["c"].outputs[0], n["b"].outputs[0])
    graph.remove_node(n["c"])
    assert n["c"] not in graph.nodes
    assert n["a"].outputs[0].uses() == [(n["b"], 0)]
    assert n["c"].outputs[0].producer() is None
    graph.verify()


def test_a_value_gets_only_one_producer():
    graph, n = diamond()
    stolen = n["a"].outputs[0]
    node = Node("thief", LayerKind.IDENTITY)
    with pytest.raises(GraphError, match="already has a producer"):
        node._attach([graph.inputs[0]], [stolen])
    with pytest.raises(GraphError, match="already has a producer"):
        Node("const", LayerKind.IDENTITY)._attach([], [graph.constant(np.ones(2))])


# -- topological order ---------------------------------------------------------------------------------------
def chain_graph(length: int = 30, seed: int | None = None) -> Graph:
    """A random DAG: each node adds two earlier values (or the input)."""
    rng = random.Random(seed)
    graph = Graph()
    values = [graph.add_input("x", F32, (2, 3))]
    for i in range(length):
        node = add(graph, rng.choice(values), rng.choice(values), f"n{i}")
        values.append(node.outputs[0])
    graph.add_output(values[-1])
    return graph


def assert_sorted(graph: Graph) -> None:
    position = {id(node): i for i, node in enumerate(graph.nodes)}
    for i, node in enumerate(graph.nodes):
        for value in node.inputs:
            if value is not None and value.producer() is not None:
                assert position[id(value.producer())] < i


@pytest.mark.parametrize("trial", range(5))
def test_toposort_sorts_a_shuffled_graph(trial):
    graph = chain_graph()
    original = list(graph.nodes)
    random.shuffle(graph.nodes)
    graph.toposort()
    assert sorted(map(id, graph.nodes)) == sorted(map(id, original))
    assert_sorted(graph)
    graph.verify()


def test_toposort_keeps_a_sorted_graph_as_it_is():
    graph, n = diamond()
    before = list(graph.nodes)
    graph.toposort()
    assert graph.nodes == before
    graph.nodes = [n["a"], n["c"], n["b"], n["d"]]  # also a valid order: kept
    graph.toposort()
    assert graph.nodes == [n["a"], n["c"], n["b"], n["d"]]


def test_toposort_of_a_long_chain_does_not_recurse():
    graph = Graph()
    value = graph.add_input("x", F32, (1,))
    for i in range(5000):
        value = relu(graph, value, f"r{i}").outputs[0]
    graph.add_output(value)
    graph.nodes.reverse()
    graph.toposort()
    assert_sorted(graph)


def test_toposort_reports_a_cycle():
    graph, n = diamond()
    n["a"].set_input(0, n["d"].outputs[0])
    with pytest.raises(GraphError, match="cycle"):
        graph.toposort()


def test_toposort_reports_a_self_loop():
    graph, n = diamond()
    n["b"].set_input(0, n["b"].outputs[0])
    with pytest.raises(GraphError, match="cycle"):
        graph.toposort()


# -- the verifier --------------------------------------------------------------------------------------------
def test_verify_accepts_a_valid_graph():
    graph, _ = diamond()
    graph.verify()
    chain_graph(50).verify()


def test_verify_catches_a_missing_use_record():
    graph, n = diamond()
    n["b"]._inputs[0] = graph.inputs[0]  # bypasses set_input: x does not know b reads it
    with pytest.raises(GraphError, match="does not list it as a use"):
        graph.verify()


def test_verify_catches_a_value_from_nowhere():
    graph, n = diamond()
    n["b"].set_input(0, Value("orphan", F32, (2, 3)))
    with pytest.raises(GraphError, match="no producer, is not constant and is not a graph input"):
        graph.verify()


def test_verify_catches_use_before_producer():
    graph, n = diamond()
    graph.nodes = [n["b"], n["a"], n["c"], n["d"]]
    with pytest.raises(GraphError, match="before its producer runs"):
        graph.verify()


def test_verify_catches_a_producer_missing_from_the_graph():
    graph, n = diamond()
    graph.nodes.remove(n["a"])
    with pytest.raises(GraphError, match="'a_out'"):
        graph.verify()


def test_verify_catches_an_output_naming_another_producer():
    graph, n = diamond()
    n["b"].outputs[0]._producer = n["c"]
    with pytest.raises(GraphError, match="names another producer"):
        graph.verify()


def test_verify_catches_missing_shapes():
    graph, n = diamond()
    n["c"].outputs[0].shape = None
    with pytest.raises(GraphError, match="no inferred shape"):
        graph.verify()
    graph, n = diamond()
    n["c"].outputs[0].dtype = None
    with pytest.raises(GraphError, match="no inferred shape"):
        graph.verify()


def test_verify_catches_a_user_outside_the_graph():
    graph, n = diamond()
    stray = relu(graph, n["a"].outputs[0], "stray")
    graph.nodes.remove(stray)
    with pytest.raises(GraphError, match="'stray', which is not in the graph"):
        graph.verify()


def test_verify_catches_a_stale_use_record():
    graph, n = diamond()
    graph.inputs[0]._uses.append((n["d"], 1))  # d's input 1 is c's output, not x
    with pytest.raises(GraphError):
        graph.verify()


def test_verify_catches_an_unproduced_graph_output():
    graph, _ = diamond()
    graph.add_output(Value("ghost", F32, (1,)))
    with pytest.raises(GraphError, match="graph output 'ghost' is not produced"):
        graph.verify()


def test_verify_accepts_constant_and_input_graph_outputs():
    graph, _ = diamond()
    graph.add_output(graph.inputs[0], "x_again")
    graph.add_output(graph.constant(np.zeros(2)), "zeros")
    graph.verify()


def test_verify_catches_duplicate_value_names():
    graph, n = diamond()
    n["c"].outputs[0].name = n["b"].outputs[0].name
    with pytest.raises(GraphError, match="not unique.*b_out"):
        graph.verify()


# -- names ---------------------------------------------------------------------------------------------------
def test_unique_names():
    graph = Graph()
    names = [graph.unique_name("conv") for _ in range(5)]
    assert names[0] == "conv" and len(set(names)) == 5
    assert graph.unique_name(names[1]) not in names


def test_nodes_and_values_get_unique_names():
    graph = Graph()
    x = graph.add_input("x", F32, (2, 3))
    first = relu(graph, x, "x")  # a node named like the input
    second = relu(graph, first.outputs[0], "x")
    names = [x.name, first.name, second.name, first.outputs[0].name, second.outputs[0].name]
    assert len(set(names)) == len(names)
    constant = graph.constant(np.ones(1), name=x.name)
    assert constant.name != x.name
    multi = typed(graph.add_node(LayerKind.TOPK, [x], name="t", num_outputs=2))
    assert [v.name for v in multi.outputs] == ["t_out0", "t_out1"]
    graph.add_output(second.outputs[0])
    graph.verify()


def test_node_kind_and_origin():
    node = Node("n", "Activation", {"type": ActivationType.RELU})
    assert node.kind is LayerKind.ACTIVATION and node.origin == ["n"]
    assert Node("m", LayerKind.SHUFFLE, origin=["a", "b"]).origin == ["a", "b"]
    with pytest.raises(ValueError):
        Node("bad", "NoSuchKind")


def test_values_iterates_each_value_once():
    graph, n = diamond()
    graph.add_output(n["a"].outputs[0], "a_too")
    values = list(graph.values())
    assert len(values) == len({id(v) for v in values}) == 5  # x, a, b, c, d
