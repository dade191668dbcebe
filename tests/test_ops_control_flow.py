"""If, Loop and Scan against onnxruntime: build-time conditions fold to one branch, runtime conditions select
between both branches, loops and scans unroll (carried values, scan outputs, directions and axes, outer-scope
references, nested subgraphs), with clear errors for what cannot be resolved at build time."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.errors import EdgeRTError, UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.onnx.importer import import_model
from edgert.onnx.ops import control_flow
from helpers import assert_matches_ort

rng = np.random.default_rng()
F = TensorProto.FLOAT


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def make(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model


def tensor(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def branch(name, nodes, outputs):
    return helper.make_graph(nodes, name, [], outputs)


def if_model(cond_from_input: bool, else_shape=(2, 3)):
    """y = If(cond) then x * w (outer-scope x and w) else x + 1 (or a differently shaped tensor)."""
    then_g = branch("then", [helper.make_node("Mul", ["x", "w"], ["t"])], [tensor("t", [2, 3])])
    if else_shape == (2, 3):
        else_nodes = [helper.make_node("Constant", [], ["one"], value_float=1.0),
                      helper.make_node("Add", ["x", "one"], ["e"])]
    else:
        else_nodes = [helper.make_node("ReduceSum", ["x"], ["e"], keepdims=0)]
    else_g = branch("else", else_nodes, [tensor("e", list(else_shape))])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)]
    inits = [("w", randn(2, 3))]
    inputs = [tensor("x", [2, 3])]
    if cond_from_input:
        nodes.insert(0, helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0))
        nodes.insert(1, helper.make_node("Greater", ["s", "zero"], ["cond"]))
        inits.append(("zero", np.array(0, np.float32)))
    return make(nodes, inputs, [tensor("y", None)], inits)


@pytest.mark.parametrize("value", [True, False])
def test_if_with_a_constant_condition_folds_to_the_taken_branch(value):
    model = if_model(False)
    model.graph.initializer.append(numpy_helper.from_array(np.array([value]), "cond"))
    assert_matches_ort(model)
    graph = import_model(model)
    assert not any(n.kind == LayerKind.SELECT for n in graph.nodes)
    want = LayerKind.ELEMENTWISE
    assert [n.kind for n in graph.nodes] == [want] and len(graph.nodes) == 1


def test_if_with_a_runtime_condition_evaluates_both_branches_and_selects():
    model = if_model(True)
    for sign in (1, -1):   # both outcomes of the condition
        x = np.abs(randn(2, 3)) * sign
        assert_matches_ort(model, {"x": x})
    assert any(n.kind == LayerKind.SELECT for n in import_model(model).nodes)


def test_if_with_a_runtime_condition_and_different_branch_shapes_is_a_clear_error():
    model = if_model(True, else_shape=())
    message = r"differs between the branches .*then: float32 \(2, 3\), else: float32 \(\)"
    with pytest.raises(UnsupportedError, match=message):
        edgert.build(model)


def test_nested_if_inside_if_reads_the_outermost_scope():
    inner = helper.make_node("If", ["c2"], ["i"], then_branch=branch("it", [helper.make_node("Neg", ["x"], ["n"])],
                                                                     [tensor("n", [2, 3])]),
                             else_branch=branch("ie", [helper.make_node("Abs", ["x"], ["a"])], [tensor("a", [2, 3])]))
    outer = helper.make_node("If", ["c1"], ["y"], then_branch=branch("ot", [inner], [tensor("i", [2, 3])]),
                             else_branch=branch("oe", [helper.make_node("Exp", ["x"], ["e"])], [tensor("e", [2, 3])]))
    model = make([outer], [tensor("x", [2, 3]), tensor("c1", [], TensorProto.BOOL), tensor("c2", [], TensorProto.BOOL)],
                 [tensor("y", [2, 3])])
    for c1 in (True, False):
        for c2 in (True, False):
            assert_matches_ort(model, {"x": randn(2, 3), "c1": np.array(c1), "c2": np.array(c2)})


def loop_model(trips=5, cond_limit=None, scan=True):
    """Loop: acc = acc * 0.9 + x[i] * i (x an outer-scope value, i the iteration); scan output acc each step.
    With ``cond_limit`` the body's condition becomes false once i + 1 == cond_limit (a constant per iteration)."""
    body_nodes = [
        helper.make_node("Cast", ["i"], ["i_f"], to=F),
        helper.make_node("Gather", ["x", "i"], ["row"], axis=0),
        helper.make_node("Mul", ["row", "i_f"], ["scaled"]),
        helper.make_node("Mul", ["acc_in", "decay"], ["kept"]),
        helper.make_node("Add", ["kept", "scaled"], ["acc_out"]),
        helper.make_node("Identity", ["acc_out"], ["acc_scan"]),
    ]
    if cond_limit is None:
        body_nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    else:
        body_nodes += [helper.make_node("Add", ["i", "one"], ["next"]),
                       helper.make_node("Less", ["next", "limit"], ["cond_out"])]
    outputs = [tensor("cond_out", [], TensorProto.BOOL), tensor("acc_out", [4])]
    outputs += [tensor("acc_scan", [4])] if scan else []
    inputs = [tensor("i", [], TensorProto.INT64), tensor("cond_in", [], TensorProto.BOOL), tensor("acc_in", [4])]
    body = helper.make_graph(body_nodes, "body", inputs, outputs)
    node = helper.make_node("Loop", ["M", "C", "acc0"], ["acc"] + (["accs"] if scan else []), body=body)
    inits = [("M", np.array(trips, np.int64)), ("C", np.array(True)), ("decay", np.array(0.9, np.float32)),
             ("one", np.array(1, np.int64)), ("limit", np.array(cond_limit or 0, np.int64))]
    return make([node], [tensor("x", [8, 4]), tensor("acc0", [4])],
                [tensor("acc", [4])] + ([tensor("accs", None)] if scan else []), inits)


@pytest.mark.parametrize("trips,cond_limit", [(1, None), (5, None), (8, 3), (8, None)])
def test_loop_unrolls_with_carried_values_and_scan_outputs(trips, cond_limit):
    model = loop_model(trips, cond_limit)
    assert_matches_ort(model)


def test_loop_with_a_runtime_trip_count_or_condition_is_a_clear_error():
    model = loop_model()
    model.graph.initializer.pop(0)
    model.graph.input.append(tensor("M", [], TensorProto.INT64))
    with pytest.raises(UnsupportedError,
                       match=r"trip count \(Loop is unrolled at build time\) \(input 0, 'M'\) must be a constant"):
        edgert.build(model)
    model = loop_model()
    model.graph.initializer.pop(1)
    model.graph.input.append(tensor("C", [], TensorProto.BOOL))
    with pytest.raises(UnsupportedError, match=r"loop condition \(Loop is unrolled at build time\) \(input 1, 'C'\)"):
        edgert.build(model)


def test_unrolling_beyond_the_bound_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(control_flow, "MAX_UNROLLED_NODES", 12)
    with pytest.raises(UnsupportedError, match="more than the bound of 12"):
        edgert.build(loop_model(trips=8))


def scan_model(directions=(0, 1), axes=(0, 1), out_directions=(0, 1), out_axes=(0, 1)):
    """Scan over two inputs: state = state + a_t * b_t; outputs state_t and a_t - b_t, with the given
    input/output directions and axes; the body also reads an outer-scope weight."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["a_t", "b_t"], ["p"]), helper.make_node("Mul", ["p", "w"], ["pw"]),
         helper.make_node("Add", ["s_in", "pw"], ["s_out"]), helper.make_node("Sub", ["a_t", "b_t"], ["d"]),
         helper.make_node("Identity", ["s_out"], ["s_scan"])],
        "body", [tensor("s_in", [3]), tensor("a_t", [3]), tensor("b_t", [3])],
        [tensor("s_out", [3]), tensor("s_scan", [3]), tensor("d", [3])])
    node = helper.make_node("Scan", ["s0", "a", "b"], ["s", "states", "diffs"], body=body, num_scan_inputs=2,
                            scan_input_directions=list(directions), scan_input_axes=list(axes),
                            scan_output_directions=list(out_directions), scan_output_axes=list(out_axes))
    b_shape = [5, 3] if axes[1] == 0 else [3, 5]
    return make([node], [tensor("s0", [3]), tensor("a", [5, 3] if axes[0] == 0 else [3, 5]), tensor("b", b_shape)],
                [tensor("s", [3]), tensor("states", None), tensor("diffs", None)], [("w", randn(3))])


@pytest.mark.parametrize("directions,axes,out_directions,out_axes", [
    ((0, 0), (0, 0), (0, 0), (0, 0)), ((0, 1), (0, 1), (0, 1), (0, 1)), ((1, 1), (1, -1), (1, 0), (-1, 1)),
])
def test_scan_unrolls_with_directions_and_axes(directions, axes, out_directions, out_axes):
    assert_matches_ort(scan_model(directions, axes, out_directions, out_axes))


def test_loop_body_with_a_nested_scan_and_if():
    """A Loop whose body runs a Scan (reading the loop's carried value from the outer scope) and an If on the
    constant iteration number."""
    scan_body = helper.make_graph([helper.make_node("Add", ["s_in", "x_t"], ["s_mid"]),
                                   helper.make_node("Mul", ["s_mid", "acc_in"], ["s_out"])],
                                  "scan_body", [tensor("s_in", [2]), tensor("x_t", [2])], [tensor("s_out", [2])])
    is_even = [helper.make_node("Mod", ["i", "two"], ["r"]), helper.make_node("Equal", ["r", "zero"], ["even"])]
    then_g = branch("t", [helper.make_node("Tanh", ["scanned"], ["tt"])], [tensor("tt", [2])])
    else_g = branch("e", [helper.make_node("Sigmoid", ["scanned"], ["ee"])], [tensor("ee", [2])])
    choose = helper.make_node("If", ["even"], ["picked"], then_branch=then_g, else_branch=else_g)
    body = helper.make_graph(
        is_even + [helper.make_node("Scan", ["acc_in", "xs"], ["scanned"], body=scan_body, num_scan_inputs=1), choose,
                   helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [tensor("i", [], TensorProto.INT64), tensor("cond_in", [], TensorProto.BOOL), tensor("acc_in", [2])],
        [tensor("cond_out", [], TensorProto.BOOL), tensor("picked", [2])])
    node = helper.make_node("Loop", ["M", "", "acc0"], ["acc"], body=body)
    model = make([node], [tensor("xs", [4, 2]), tensor("acc0", [2])], [tensor("acc", [2])],
                 [("M", np.array(3, np.int64)), ("two", np.array(2, np.int64)), ("zero", np.array(0, np.int64))])
    assert_matches_ort(model)


def test_if_branch_error_names_the_node():
    then_g = branch("then", [helper.make_node("NoSuchOp", ["x"], ["t"])], [tensor("t", [2, 3])])
    else_g = branch("else", [helper.make_node("Abs", ["x"], ["e"])], [tensor("e", [2, 3])])
    model = helper.make_model(helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "g",
        [tensor("x", [2, 3]), tensor("c", [], TensorProto.BOOL)], [tensor("y", [2, 3])]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(EdgeRTError, match="NoSuchOp"):
        edgert.build(model)


def test_if_on_a_shape_computed_condition_folds_at_build_time():
    """Exporters test shapes (e.g. Size(x) == 6) to pick a path: static shapes make that a build-time constant."""
    then_g = branch("then", [helper.make_node("Relu", ["x"], ["t"])], [tensor("t", [2, 3])])
    else_g = branch("else", [helper.make_node("Neg", ["x"], ["e"])], [tensor("e", [2, 3])])
    nodes = [helper.make_node("Size", ["x"], ["n"]), helper.make_node("Equal", ["n", "six"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)]
    model = make(nodes, [tensor("x", [2, 3])], [tensor("y", [2, 3])], [("six", np.array(6, np.int64))])
    assert_matches_ort(model)
    assert [n.kind for n in import_model(model).nodes] == [LayerKind.ACTIVATION]


def test_loop_carried_value_that_grows_every_iteration():
    """A carried tensor may change shape between iterations (decoders append a step): unrolling handles it."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Concat", ["seq_in", "step"], ["seq_out"], axis=0)],
        "body", [tensor("i", [], TensorProto.INT64), tensor("cond_in", [], TensorProto.BOOL), tensor("seq_in", None)],
        [tensor("cond_out", [], TensorProto.BOOL), tensor("seq_out", None)])
    model = make([helper.make_node("Loop", ["M", "", "start"], ["seq"], body=body)],
                 [tensor("start", [1, 3]), tensor("step", [1, 3])], [tensor("seq", None)],
                 [("M", np.array(4, np.int64))])
    assert_matches_ort(model)


def test_scan_8_scans_each_batch_row():
    """Opset 8's Scan: a batch axis 0 on states and scan inputs (which scan along axis 1), and `directions`."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["a_t", "b_t"], ["p"]), helper.make_node("Add", ["s_in", "p"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["s_scan"])],
        "body", [tensor("s_in", [3]), tensor("a_t", [3]), tensor("b_t", [3])],
        [tensor("s_out", [3]), tensor("s_scan", [3])])
    node = helper.make_node("Scan", ["", "s0", "a", "b"], ["s", "states"], body=body, num_scan_inputs=2,
                            directions=[0, 1])
    model = make([node], [tensor("s0", [2, 3]), tensor("a", [2, 4, 3]), tensor("b", [2, 4, 3])],
                 [tensor("s", [2, 3]), tensor("states", [2, 4, 3])], opset=8)
    assert_matches_ort(model)
