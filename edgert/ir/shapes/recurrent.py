"""Shape rule: RNN (LSTM / GRU / plain RNN in ONNX layout 0).

y is (seq, directions, batch, hidden), y_h (and y_c for LSTM) (directions, batch, hidden), all in x's type.
"""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.kinds import LayerKind, RNNCell
from edgert.ir.shape_inference import shape_rule

GATES = {RNNCell.LSTM: 4, RNNCell.GRU: 3, RNNCell.RNN: 1}
FUNCTIONS = {RNNCell.LSTM: 3, RNNCell.GRU: 2, RNNCell.RNN: 1}   # f, g, h as ONNX orders them


@shape_rule(LayerKind.RNN)
def rnn(node):
    x, w, r = node.inputs[:3]
    cell = RNNCell(node.attrs["cell"])
    hidden, directions = int(node.attrs["hidden_size"]), int(node.attrs["directions"])
    rows = GATES[cell] * hidden
    if len(x.shape) != 3:
        raise _fail(node, f"x has shape {x.shape}, expected (seq, batch, input)")
    seq, batch, width = x.shape
    if tuple(w.shape) != (directions, rows, width) or tuple(r.shape) != (directions, rows, hidden):
        raise _fail(node, f"w {w.shape} / r {r.shape} do not fit x {x.shape}: expected "
                          f"{(directions, rows, width)} / {(directions, rows, hidden)}")
    state = (directions, batch, hidden)
    _check_optional_inputs(node, cell, x, rows, state)
    activations = node.attrs.get("activations")
    if activations is not None and (len(activations) != directions
                                    or any(len(functions) != FUNCTIONS[cell] for functions in activations)):
        raise _fail(node, f"activations {activations} should list {FUNCTIONS[cell]} functions for each of "
                          f"{directions} direction(s)")
    outputs = [(x.dtype, (seq, directions, batch, hidden)), (x.dtype, state)]
    if cell == RNNCell.LSTM:
        outputs.append((x.dtype, state))
    return outputs


def _check_optional_inputs(node, cell, x, rows, state) -> None:
    """b, sequence_lens, initial_h, initial_c and the peepholes p, where present, have the shapes the cell reads."""
    directions, batch, hidden = state
    inputs = list(node.inputs) + [None] * (8 - len(node.inputs))
    if len(node.inputs) > 8:
        raise _fail(node, f"has {len(node.inputs)} inputs, at most 8 (x, w, r, b, sequence_lens, h0, c0, p)")
    expected = {3: ("b", (directions, 2 * rows)), 4: ("sequence_lens", (batch,)), 5: ("initial_h", state),
                6: ("initial_c", state), 7: ("p", (directions, 3 * hidden))}
    for index, (name, shape) in expected.items():
        value = inputs[index]
        if value is None:
            continue
        if index in (6, 7) and cell != RNNCell.LSTM:
            raise _fail(node, f"{name} is an LSTM input, this cell is {cell.value}")
        if tuple(value.shape) != shape:
            raise _fail(node, f"{name} has shape {tuple(value.shape)}, expected {shape}")
        if index == 4 and value.dtype.numpy.kind != "i" or index != 4 and value.dtype != x.dtype:
            raise _fail(node, f"{name} has dtype {value.dtype.value}, expected "
                              f"{'an integer type' if index == 4 else x.dtype.value}")
    for name, value in (("w", node.inputs[1]), ("r", node.inputs[2])):
        if value.dtype != x.dtype:
            raise _fail(node, f"{name} has dtype {value.dtype.value}, expected {x.dtype.value} as x")


def _fail(node, message: str) -> ShapeError:
    return ShapeError(f"layer {node.name!r} (RNN): {message}")
