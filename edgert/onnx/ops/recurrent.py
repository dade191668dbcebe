"""ONNX importers: LSTM, GRU and RNN (opsets 7, 14 and 22) → one RNN layer each.

Opset 14 added ``layout``; opset 22 only widened the types; opsets before 7 are outside the importer's
range. The RNN layer always works in layout 0 (seq, batch, ...): for ``layout = 1`` the importer
transposes X and the initial states in and Y / Y_h / Y_c out with Shuffle layers. Activations are
resolved here, per direction, to [name, alpha, beta] with alpha and beta consumed in order by the
functions that take them (as onnxruntime reads ``activation_alpha`` / ``activation_beta``), each
function's default otherwise (onnxruntime's, see _PARAMETERS). The layer always computes every output;
absent ONNX outputs are simply not read.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind, RNNActivation as F, RNNCell
from edgert.onnx.ops.tensor import shuffle
from edgert.onnx.registry import onnx_op

_DEFAULT_FUNCTIONS = {RNNCell.LSTM: ("Sigmoid", "Tanh", "Tanh"), RNNCell.GRU: ("Sigmoid", "Tanh"),
                      RNNCell.RNN: ("Tanh",)}
_GATES = {RNNCell.LSTM: 4, RNNCell.GRU: 3, RNNCell.RNN: 1}
# (uses alpha, uses beta, default alpha, default beta) of each function. The defaults are onnxruntime's, which
# exported models are checked against; they differ from the standalone ONNX ops' for ThresholdedRelu (0, not 1),
# Affine and ScaledTanh (0 and 0: both give zeros unless alpha is given).
_PARAMETERS = {
    F.AFFINE: (True, True, 0.0, 0.0), F.LEAKY_RELU: (True, False, 0.01, 0.0),
    F.THRESHOLDED_RELU: (True, False, 0.0, 0.0), F.SCALED_TANH: (True, True, 0.0, 0.0),
    F.HARD_SIGMOID: (True, True, 0.2, 0.5), F.ELU: (True, False, 1.0, 0.0),
}
_FLOATS = (DataType.FLOAT, DataType.HALF, DataType.DOUBLE)


@onnx_op("LSTM")
def lstm(ctx, node):
    return _recurrent(ctx, RNNCell.LSTM)


@onnx_op("GRU")
def gru(ctx, node):
    return _recurrent(ctx, RNNCell.GRU)


@onnx_op("RNN")
def rnn(ctx, node):
    return _recurrent(ctx, RNNCell.RNN)


def _recurrent(ctx, cell: RNNCell) -> list:
    attrs = ctx.attrs()
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise ModelError(f"{ctx.where}: layout {layout} is not 0 or 1")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ModelError(f"{ctx.where}: direction {direction!r} is not forward, reverse or bidirectional")
    directions = 2 if direction == "bidirectional" else 1
    x, w, r = ctx.input(0), ctx.input(1), ctx.input(2)
    hidden = _hidden_size(ctx, attrs, r)
    _check_operands(ctx, cell, x, w, r, directions, hidden)
    swap = [1, 0, 2]   # layout 1 <-> layout 0 for X and the states
    batch, seq = (x.shape[0], x.shape[1]) if layout else (x.shape[1], x.shape[0])
    inputs = [shuffle(ctx, x, swap) if layout else x, w, r, _optional_input(ctx, 3, x.dtype),
              _sequence_lens(ctx, batch, seq)]
    for index in (5, 6):   # initial_h, initial_c
        state = _optional_input(ctx, index, x.dtype) if index == 5 or cell == RNNCell.LSTM else None
        inputs.append(shuffle(ctx, state, swap) if state is not None and layout else state)
    inputs.append(_optional_input(ctx, 7, x.dtype) if cell == RNNCell.LSTM else None)
    _check_states(ctx, inputs, directions, hidden, cell)
    layer_attrs = {
        "cell": cell, "hidden_size": hidden, "directions": directions, "reverse": direction == "reverse",
        "activations": _activations(ctx, cell, attrs, directions),
        "clip": float(attrs["clip"]) if "clip" in attrs else None,
        "input_forget": bool(attrs.get("input_forget", 0)) and cell == RNNCell.LSTM,
        "linear_before_reset": bool(attrs.get("linear_before_reset", 0)) and cell == RNNCell.GRU,
    }
    outputs = ctx.add(LayerKind.RNN, inputs, layer_attrs, num_outputs=3 if cell == RNNCell.LSTM else 2)
    if layout:
        outputs = [shuffle(ctx, outputs[0], [2, 0, 1, 3])] + [shuffle(ctx, v, swap) for v in outputs[1:]]
    return outputs


def _hidden_size(ctx, attrs, r) -> int:
    if len(r.shape) != 3:
        raise ShapeError(f"{ctx.where}: R {r.name!r} has shape {r.shape}, expected rank 3 "
                         "(num_directions, gates*hidden_size, hidden_size)")
    hidden = int(attrs.get("hidden_size", r.shape[2]))
    if hidden != r.shape[2]:
        raise ShapeError(f"{ctx.where}: hidden_size {hidden} contradicts R's shape {r.shape} (last dim = hidden_size)")
    return hidden


def _check_operands(ctx, cell, x, w, r, directions: int, hidden: int) -> None:
    if x.dtype not in _FLOATS:
        raise ModelError(f"{ctx.where}: X {x.name!r} has type {x.dtype.value}, expected a float type")
    ctx.check_rank(x, (3,), "X")
    for value in (w, r):
        if value.dtype != x.dtype:
            raise ModelError(f"{ctx.where}: {value.name!r} has type {value.dtype.value}, X has {x.dtype.value}")
    rows = _GATES[cell] * hidden
    expected = {"W": (directions, rows, x.shape[2]), "R": (directions, rows, hidden)}
    for name, value in (("W", w), ("R", r)):
        if tuple(value.shape) != expected[name]:
            raise ShapeError(f"{ctx.where}: {name} {value.name!r} has shape {value.shape}, expected "
                             f"{expected[name]} (num_directions, gates*hidden_size, ...)")


def _optional_input(ctx, index: int, dtype):
    value = ctx.input(index, required=False)
    if value is not None and value.dtype != dtype:
        raise ModelError(f"{ctx.where}: input {index} {value.name!r} has type {value.dtype.value}, "
                         f"expected {dtype.value} like X")
    return value


def _sequence_lens(ctx, batch: int, seq: int):
    """The sequence_lens input, or None when it is absent or a constant that says every sequence is full."""
    lens = ctx.input(4, required=False)
    if lens is None:
        return None
    if lens.dtype not in (DataType.INT32, DataType.INT64) or tuple(lens.shape) != (batch,):
        raise ShapeError(f"{ctx.where}: sequence_lens {lens.name!r} is {lens.dtype.value} {lens.shape}, "
                         f"expected int32 ({batch},)")
    if lens.is_const:
        values = np.asarray(lens.const)
        if ((values < 0) | (values > seq)).any():
            raise ModelError(f"{ctx.where}: sequence_lens {values.tolist()} must lie in 0..{seq} (the sequence length)")
        if (values == seq).all():
            return None
    return lens


def _check_states(ctx, inputs, directions: int, hidden: int, cell) -> None:
    x, batch = inputs[0], inputs[0].shape[1]
    gates = _GATES[cell]
    bias, peepholes = inputs[3], inputs[7]
    if bias is not None and tuple(bias.shape) != (directions, 2 * gates * hidden):
        raise ShapeError(f"{ctx.where}: B {bias.name!r} has shape {bias.shape}, expected "
                         f"{(directions, 2 * gates * hidden)}")
    for state in inputs[5:7]:
        if state is not None and tuple(state.shape) != (directions, batch, hidden):
            raise ShapeError(f"{ctx.where}: initial state {state.name!r} has shape {state.shape} (in layout 0), "
                             f"expected {(directions, batch, hidden)}")
    if peepholes is not None and tuple(peepholes.shape) != (directions, 3 * hidden):
        raise ShapeError(f"{ctx.where}: P {peepholes.name!r} has shape {peepholes.shape}, expected "
                         f"{(directions, 3 * hidden)}")
    if x.shape[0] == 0:
        raise UnsupportedError(f"{ctx.where}: X {x.name!r} has an empty sequence (shape {x.shape})")


def _activations(ctx, cell, attrs, directions: int) -> list:
    """Per direction, the cell's functions as [name, alpha, beta]."""
    count = len(_DEFAULT_FUNCTIONS[cell])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in attrs.get("activations", [])]
    if not names:
        names = list(_DEFAULT_FUNCTIONS[cell]) * directions
    if len(names) != count * directions:
        raise ModelError(f"{ctx.where}: {len(names)} activations given, expected {count * directions} "
                         f"({count} per direction, {directions} direction(s))")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    resolved = []
    for name in names:
        try:
            function = F(name.lower())
        except ValueError:
            raise UnsupportedError(f"{ctx.where}: activation {name!r} is not one ONNX lists for recurrent ops "
                                   f"({', '.join(f.value for f in F)})") from None
        uses_alpha, uses_beta, alpha, beta = _PARAMETERS.get(function, (False, False, 0.0, 0.0))
        if uses_alpha and alphas:
            alpha = alphas.pop(0)
        if uses_beta and betas:
            beta = betas.pop(0)
        resolved.append([function, float(alpha), float(beta)])
    return [resolved[d * count:(d + 1) * count] for d in range(directions)]
