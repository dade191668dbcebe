"""Shape rule: RNN (LSTM / GRU / plain RNN in ONNX layout 0).

y is (seq, directions, batch, hidden), y_h (and y_c for LSTM) (directions, batch, hidden), all in x's type.
"""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.kinds import LayerKind, RNNCell
from edgert.ir.shape_inference import shape_rule

GATES = {RNNCell.LSTM: 4, RNNCell.GRU: 3, RNNCell.RNN: 1}


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
    outputs = [(x.dtype, (seq, directions, batch, hidden)), (x.dtype, state)]
    if cell == RNNCell.LSTM:
        outputs.append((x.dtype, state))
    return outputs


def _fail(node, message: str) -> ShapeError:
    return ShapeError(f"layer {node.name!r} (RNN): {message}")
