"""CPU kernel: RNN (LSTM, GRU, plain RNN cells; ONNX layout 0; see LayerKind.RNN for the attrs).

Per direction, the input projections of every time step are one matrix product (x @ W^T, biases
added once), then a loop over time does the recurrence (h @ R^T and the cell's gates) on the
batch. ``sequence_lens`` freezes each sequence's state after its last valid step and writes zeros to
y there (a sequence of length 0 ends with zero states); the reverse direction walks each sequence from its
own last valid step back to 0.
Computation is float32 (float64 for float64 tensors), whatever the storage type. The prepare hook
binds all of it to the context's arrays with the projections and states in scratch memory, so a
run allocates only a few (batch, hidden) temporaries.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind, RNNActivation as F, RNNCell
from edgert.kernels.cpu._math import sigmoid, softplus
from edgert.kernels.registry import register, register_prepare

GATES = {RNNCell.LSTM: 4, RNNCell.GRU: 3, RNNCell.RNN: 1}


def _apply(function, x: np.ndarray, clip) -> None:
    """x = function(clip(x)) in place; function = [RNNActivation, alpha, beta]."""
    name, alpha, beta = F(function[0]), function[1], function[2]
    t = x.dtype.type
    if clip is not None:
        np.clip(x, t(-clip), t(clip), out=x)
    if name == F.SIGMOID:
        sigmoid(x, out=x)
    elif name == F.TANH:
        np.tanh(x, out=x)
    elif name == F.RELU:
        np.maximum(x, t(0), out=x)
    elif name == F.AFFINE:
        x *= t(alpha)
        x += t(beta)
    elif name == F.SCALED_TANH:
        x *= t(beta)
        np.tanh(x, out=x)
        x *= t(alpha)
    elif name == F.HARD_SIGMOID:
        x *= t(alpha)
        x += t(beta)
        np.clip(x, t(0), t(1), out=x)
    else:
        np.copyto(x, _FORMULAS[name](x, t(alpha)))


_FORMULAS = {
    F.LEAKY_RELU: lambda x, a: np.where(x >= 0, x, a * x),
    F.THRESHOLDED_RELU: lambda x, a: np.where(x > a, x, x.dtype.type(0)),
    F.ELU: lambda x, a: np.where(x >= 0, x, a * (np.exp(np.minimum(x, x.dtype.type(0))) - 1)),
    F.SOFTSIGN: lambda x, a: x / (1 + np.abs(x)),
    F.SOFTPLUS: lambda x, a: softplus(x),
}


class _Allocate:
    """The scratch interface of a Workspace, for the unprepared kernel: plain new arrays."""

    @staticmethod
    def scratch(shape, dtype):
        return np.empty(shape, dtype)


def _as(array, dtype):
    return None if array is None else (array if array.dtype == dtype else array.astype(dtype))


class _Direction:
    """One direction's recurrence over fixed arrays: scratch for projections, states and gates."""

    def __init__(self, attrs, index: int, shape, dtype, scratch):
        self.cell = RNNCell(attrs["cell"])
        self.index = index
        self.reverse = index == 1 or bool(attrs.get("reverse", False))
        self.functions = attrs["activations"][index]
        self.clip = attrs.get("clip")
        self.input_forget = bool(attrs.get("input_forget", False))
        self.linear_before_reset = bool(attrs.get("linear_before_reset", False))
        seq, batch, hidden = shape
        rows = GATES[self.cell] * hidden
        self.hidden = hidden
        self.projection = scratch((seq, batch, rows), dtype)
        self.recurrent = scratch((batch, rows), dtype)
        self.h = scratch((batch, hidden), dtype)
        self.h_new = scratch((batch, hidden), dtype)
        if self.cell == RNNCell.LSTM:
            self.c = scratch((batch, hidden), dtype)
            self.c_new = scratch((batch, hidden), dtype)

    def run(self, x, w, r, b, mask, h0, c0, p, y, y_h, y_c) -> None:
        d, hidden = self.index, self.hidden
        seq, batch, _ = x.shape
        np.matmul(x.reshape(seq * batch, -1), w[d].T, out=self.projection.reshape(seq * batch, -1))
        if b is not None:
            self.projection += b[d, :b.shape[1] // 2]
            recurrent_bias = b[d, b.shape[1] // 2:]
            if self.cell == RNNCell.GRU and self.linear_before_reset:
                self.projection[:, :, :2 * hidden] += recurrent_bias[:2 * hidden]
            else:
                self.projection += recurrent_bias
        self._reset(self.h, h0)
        if self.cell == RNNCell.LSTM:
            self._reset(self.c, c0)
        step = {RNNCell.LSTM: self._lstm, RNNCell.GRU: self._gru, RNNCell.RNN: self._rnn}[self.cell]
        for position in range(seq):
            t = seq - 1 - position if self.reverse else position
            step(t, r[d], b, p)
            self._commit(mask, t, y)
        np.copyto(y_h[d], self.h, casting="unsafe")
        if y_c is not None:
            np.copyto(y_c[d], self.c, casting="unsafe")
        if mask is not None:   # a sequence of length 0 has zero final states (as onnxruntime gives)
            empty = ~mask.any(axis=0)[:, None]
            np.copyto(y_h[d], 0, where=empty)
            if y_c is not None:
                np.copyto(y_c[d], 0, where=empty)

    def _reset(self, state, initial) -> None:
        if initial is None:
            state.fill(0)
        else:
            np.copyto(state, initial[self.index], casting="unsafe")

    def _commit(self, mask, t, y) -> None:
        """Take the new state where step t is within the sequence, write y[t] (zero past the end)."""
        if mask is None:
            self.h, self.h_new = self.h_new, self.h
            if self.cell == RNNCell.LSTM:
                self.c, self.c_new = self.c_new, self.c
            np.copyto(y[t, self.index], self.h, casting="unsafe")
            return
        valid = mask[t][:, None]
        np.copyto(self.h, self.h_new, where=valid)
        if self.cell == RNNCell.LSTM:
            np.copyto(self.c, self.c_new, where=valid)
        np.multiply(self.h, valid, out=y[t, self.index], casting="unsafe")

    def _rnn(self, t, r, b, p) -> None:
        gates = self.recurrent
        np.matmul(self.h, r.T, out=gates)
        gates += self.projection[t]
        _apply(self.functions[0], gates, self.clip)
        np.copyto(self.h_new, gates)

    def _lstm(self, t, r, b, p) -> None:
        hidden, f, g, h = self.hidden, *self.functions
        gates = self.recurrent
        np.matmul(self.h, r.T, out=gates)
        gates += self.projection[t]
        i, o, forget, candidate = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
        if p is not None:
            i += p[self.index, :hidden] * self.c
            forget += p[self.index, 2 * hidden:] * self.c
        _apply(f, i, self.clip)
        if self.input_forget:
            np.subtract(1, i, out=forget)
        else:
            _apply(f, forget, self.clip)
        _apply(g, candidate, self.clip)
        np.multiply(forget, self.c, out=self.c_new)
        candidate *= i
        self.c_new += candidate
        if p is not None:
            o += p[self.index, hidden:2 * hidden] * self.c_new
        _apply(f, o, self.clip)
        np.copyto(self.h_new, self.c_new)
        _apply(h, self.h_new, None)
        self.h_new *= o

    def _gru(self, t, r, b, p) -> None:
        hidden, (f, g) = self.hidden, self.functions
        gates, projection = self.recurrent, self.projection[t]
        np.matmul(self.h, r[:2 * hidden].T, out=gates[:, :2 * hidden])
        gates[:, :2 * hidden] += projection[:, :2 * hidden]
        z, reset, candidate = (gates[:, k * hidden:(k + 1) * hidden] for k in range(3))
        _apply(f, z, self.clip)
        _apply(f, reset, self.clip)
        if self.linear_before_reset:
            np.matmul(self.h, r[2 * hidden:].T, out=candidate)
            if b is not None:
                candidate += b[self.index, 5 * hidden:]
            candidate *= reset
        else:
            np.multiply(reset, self.h, out=self.h_new)
            np.matmul(self.h_new, r[2 * hidden:].T, out=candidate)
        candidate += projection[:, 2 * hidden:]
        _apply(g, candidate, self.clip)
        # h' = (1 - z) * candidate + z * h = candidate + z * (h - candidate)
        np.subtract(self.h, candidate, out=self.h_new)
        self.h_new *= z
        self.h_new += candidate


def _bind(attrs, inputs, outputs, scratch):
    x, w, r, b, lens, h0, c0, p = (list(inputs) + [None] * 8)[:8]
    y, y_h = outputs[0], outputs[1]
    y_c = outputs[2] if len(outputs) > 2 else None
    dtype = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
    directions = [_Direction(attrs, d, (x.shape[0], x.shape[1], int(attrs["hidden_size"])), dtype, scratch)
                  for d in range(int(attrs["directions"]))]
    mask = scratch((x.shape[0], x.shape[1]), np.bool_) if lens is not None else None
    steps = scratch((x.shape[0], 1), np.int64) if lens is not None else None

    def run():
        if mask is not None:
            steps[:, 0] = np.arange(x.shape[0])
            np.less(steps, lens[None, :], out=mask)
        operands = [_as(a, dtype) for a in (x, w, r, b)]
        states = [_as(a, dtype) for a in (h0, c0, p)]
        for direction in directions:
            direction.run(*operands, mask, *states, y, y_h, y_c)
    return run


@register(LayerKind.RNN)
def rnn(attrs, inputs, outputs):
    _bind(attrs, inputs, outputs, _Allocate.scratch)()


@register_prepare(LayerKind.RNN)
def prepare_rnn(attrs, inputs, outputs, workspace):
    return _bind(attrs, inputs, outputs, workspace.scratch)
