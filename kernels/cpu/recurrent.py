"""CPU kernel: RNN (LSTM, GRU, plain RNN cells; ONNX layout 0; see LayerKind.RNN for the attrs).

Per direction, the input projections of every time step are one matrix product (x @ W^T, biases
added once), then a loop over time does the recurrence (h @ R^T and the cell's gates) on the
batch. ``sequence_lens`` freezes each sequence's state after its last valid step and writes zeros to
y there (a sequence of length 0 ends with zero states); the reverse direction walks each sequence from its
own last valid step back to 0.
Computation is float32 (float64 for float64 tensors), whatever the storage type. ONNX's default LSTM cell
(sigmoid / tanh / tanh, no clip, peepholes, coupled gates or sequence lengths) in float32 runs its time
loop natively (native.lstm_steps) when the module is built. The prepare hook
binds all of it to the context's arrays with the projections, states and peephole terms in scratch
memory, so a run allocates no arrays (a streaming loop of single steps is allocation-free).
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind, RNNActivation as F, RNNCell
from edgert.kernels.cpu import native, threads
from edgert.kernels.cpu._math import clip_ufunc, softplus
from edgert.kernels.cpu.blas import gemm_threads
from edgert.kernels.registry import register, register_prepare

GATES = {RNNCell.LSTM: 4, RNNCell.GRU: 3, RNNCell.RNN: 1}


def activation_fn(function, clip):
    """fn(x) computing function(clip(x)) in place, resolved once; function = [RNNActivation, alpha, beta]."""
    name, alpha, beta = F(function[0]), float(function[1]), float(function[2])
    inner = _IN_PLACE.get(name)
    if inner is None:
        formula = _FORMULAS[name]

        def inner(x):
            np.copyto(x, formula(x, x.dtype.type(alpha), x.dtype.type(beta)))
    elif name in _PARAMETRIZED:
        inner = functools.partial(inner, alpha=alpha, beta=beta)
    if clip is None:
        return inner
    low, high = -float(clip), float(clip)

    def clipped(x):
        clip_ufunc(x, low, high, out=x)
        inner(x)
    return clipped


def _affine(x, alpha, beta):
    x *= alpha
    x += beta


def _scaled_tanh(x, alpha, beta):
    x *= beta
    np.tanh(x, out=x)
    x *= alpha


def _hard_sigmoid(x, alpha, beta):
    x *= alpha
    x += beta
    clip_ufunc(x, 0.0, 1.0, out=x)


def _sigmoid(x):
    # not _math.sigmoid: NumPy 2.4's float32 np.negative reads the wrong elements of an (n, 1) column view in
    # place (a gate of hidden_size 1: it read row 0's neighbour for row 1); a product by -1 does not
    x *= x.dtype.type(-1)
    np.exp(x, out=x)
    x += x.dtype.type(1)
    np.reciprocal(x, out=x)


_IN_PLACE = {
    F.SIGMOID: _sigmoid, F.TANH: lambda x: np.tanh(x, out=x),
    F.RELU: lambda x: np.maximum(x, 0.0, out=x), F.AFFINE: _affine, F.SCALED_TANH: _scaled_tanh,
    F.HARD_SIGMOID: _hard_sigmoid,
}
_PARAMETRIZED = {F.AFFINE, F.SCALED_TANH, F.HARD_SIGMOID}
_FORMULAS = {
    F.LEAKY_RELU: lambda x, a, b: np.where(x >= 0, x, a * x),
    F.THRESHOLDED_RELU: lambda x, a, b: np.where(x > a, x, x.dtype.type(0)),
    F.ELU: lambda x, a, b: np.where(x >= 0, x, a * (np.exp(np.minimum(x, x.dtype.type(0))) - 1)),
    F.SOFTSIGN: lambda x, a, b: x / (1 + np.abs(x)),
    F.SOFTPLUS: lambda x, a, b: softplus(x),
}


def _as(array, dtype):
    return None if array is None else (array if array.dtype == dtype else array.astype(dtype))


class _Direction:
    """One direction's recurrence over fixed arrays: scratch for projections, states and gates, the gates'
    views and the activations resolved once, so a time step is a short list of ufunc calls.

    Gates are kept gate-major, (gates, batch, hidden), so every per-step ufunc works on contiguous blocks:
    NumPy's iterator allocates buffers for a strided operand (a gate's columns of a (batch, gates * hidden)
    product), which would make every step allocate."""

    def __init__(self, attrs, index: int, shape, dtype, scratch):
        self.cell = RNNCell(attrs["cell"])
        self.index = index
        self.reverse = index == 1 or bool(attrs.get("reverse", False))
        clip = attrs.get("clip")
        functions = attrs["activations"][index]
        self.act = [activation_fn(f, clip) for f in functions]
        if self.cell == RNNCell.LSTM:   # onnxruntime does not clip the cell state on its way into h
            self.act[2] = activation_fn(functions[2], None)
        self.input_forget = bool(attrs.get("input_forget", False))
        self.linear_before_reset = bool(attrs.get("linear_before_reset", False))
        seq, batch, hidden = shape
        gates = GATES[self.cell]
        self.hidden = hidden
        self.projection = scratch((seq, batch, gates * hidden), dtype)
        self.projection_by_gate = scratch((seq, gates, batch, hidden), dtype)
        # h @ R^T, gates side by side (a GRU's z and r only: its candidate has a product of its own)
        self.product = scratch((batch, (2 if self.cell == RNNCell.GRU else gates) * hidden), dtype)
        self.gates = scratch((gates, batch, hidden), dtype)
        self.part = list(self.gates)
        self.h = scratch((batch, hidden), dtype)
        self.h_new = scratch((batch, hidden), dtype)
        # biases and peepholes copied out to full rows once per run: a ufunc with a broadcast (stride-0)
        # operand allocates iterator buffers, a copy does not
        self.bias = scratch((gates * hidden,), dtype)
        self.bias_rows = scratch((gates, batch, hidden), dtype)
        self.reset_bias_rows = scratch((batch, hidden), dtype)
        if self.cell == RNNCell.LSTM:
            self.c = scratch((batch, hidden), dtype)
            self.c_new = scratch((batch, hidden), dtype)
            self.peephole_rows = scratch((3, batch, hidden), dtype)
            self.peephole_term = scratch((batch, hidden), dtype)   # p * c
        # ONNX's default LSTM cell in float32 runs its whole time loop in one native call (native.py)
        default = [[F.SIGMOID], [F.TANH], [F.TANH]]
        self.native = self.cell == RNNCell.LSTM and dtype == np.float32 and clip is None and native.enabled() \
            and not self.input_forget and [[F(f[0])] for f in functions] == default

    def _by_gate(self, side_by_side, out) -> None:
        """(..., batch, k * hidden) -> (..., k, batch, hidden): a plain copy, which allocates nothing."""
        *lead, batch, width = side_by_side.shape
        np.copyto(out, side_by_side.reshape(*lead, batch, width // self.hidden, self.hidden).swapaxes(-3, -2))

    def _add_bias(self, b) -> None:
        """Input and recurrent biases into every step's projection (a GRU with linear_before_reset keeps the
        candidate's recurrent bias for inside the reset product)."""
        width = self.bias.shape[0]
        np.add(b[:width], b[width:], out=self.bias)
        if self.cell == RNNCell.GRU and self.linear_before_reset:
            np.copyto(self.bias[2 * self.hidden:], b[2 * self.hidden:width])
        np.copyto(self.bias_rows, self.bias.reshape(-1, 1, self.hidden))
        for projection in self.projection_by_gate:
            projection += self.bias_rows

    def run(self, x, w_t, r_t, b, mask, h0, c0, p, y, y_h, y_c) -> None:
        """One direction over the sequence; w_t (dirs, input, rows) and r_t (dirs, hidden, rows) are W and R
        transposed (for a GRU, r_t is the pair of its z/r and candidate parts)."""
        d, hidden = self.index, self.hidden
        seq, batch, width = x.shape
        gemm_threads(2 * self.projection.size * width)
        np.matmul(x.reshape(seq * batch, -1), w_t[d], out=self.projection.reshape(seq * batch, -1))
        if self.native and p is None and mask is None and y.dtype == np.float32 and y.flags.c_contiguous:
            self._run_native(r_t[d], b, h0, c0, y, y_h, y_c)
            return
        self._by_gate(self.projection, self.projection_by_gate)
        if b is not None:
            self._add_bias(b[d])
        self._reset(self.h, h0)
        if self.cell == RNNCell.LSTM:
            self._reset(self.c, c0)
        if self.cell == RNNCell.LSTM:
            peepholes = None
            if p is not None:
                np.copyto(self.peephole_rows, p[d].reshape(3, 1, hidden))
                peepholes = list(self.peephole_rows)
            step = functools.partial(self._lstm, r_t[d], peepholes)
        elif self.cell == RNNCell.GRU:
            reset_bias = None
            if b is not None and self.linear_before_reset:
                np.copyto(self.reset_bias_rows, b[d, 5 * hidden:])
                reset_bias = self.reset_bias_rows
            step = functools.partial(self._gru, r_t[0][d], r_t[1][d], reset_bias)
        else:
            step = functools.partial(self._rnn, r_t[d])
        out = y[:, d]
        valid = None if mask is None else mask[:, :, None]
        gemm_threads(2 * self.gates.size * hidden)   # the per-step products: small, one thread unless huge
        for position in range(seq):
            t = seq - 1 - position if self.reverse else position
            step(self.projection_by_gate[t])
            self._commit(out[t], None if valid is None else valid[t])
        self._finish(y_h[d], y_c[d] if y_c is not None else None, mask)

    def _run_native(self, r_t, b, h0, c0, y, y_h, y_c) -> None:
        """The default LSTM cell's time loop in one native call, over the side-by-side projection."""
        if b is not None:
            width = self.bias.shape[0]
            np.add(b[self.index, :width], b[self.index, width:], out=self.bias)
            np.add(self.projection, self.bias, out=self.projection)
        self._reset(self.h, h0)
        self._reset(self.c, c0)
        native.lstm_steps(self.projection, r_t, self.h, self.c, y, self.index, self.reverse)
        self._finish(y_h[self.index], y_c[self.index] if y_c is not None else None, None)

    def _reset(self, state, initial) -> None:
        if initial is None:
            state.fill(0)
        else:
            np.copyto(state, initial[self.index], casting="unsafe")

    def _commit(self, out, valid) -> None:
        """Take the new state where the step is within the sequence, write y's row (zero past the end)."""
        if valid is None:
            self.h, self.h_new = self.h_new, self.h
            if self.cell == RNNCell.LSTM:
                self.c, self.c_new = self.c_new, self.c
            np.copyto(out, self.h, casting="unsafe")
            return
        np.copyto(self.h, self.h_new, where=valid)
        if self.cell == RNNCell.LSTM:
            np.copyto(self.c, self.c_new, where=valid)
        np.multiply(self.h, valid, out=out, casting="unsafe")

    def _finish(self, y_h, y_c, mask) -> None:
        np.copyto(y_h, self.h, casting="unsafe")
        if y_c is not None:
            np.copyto(y_c, self.c, casting="unsafe")
        if mask is not None:   # a sequence of length 0 has zero final states (as onnxruntime gives)
            empty = ~mask.any(axis=0)[:, None]
            np.copyto(y_h, 0, where=empty)
            if y_c is not None:
                np.copyto(y_c, 0, where=empty)

    def _rnn(self, r_t, projection) -> None:
        gate = self.part[0]
        np.matmul(self.h, r_t, out=gate)
        gate += projection[0]
        self.act[0](gate)
        np.copyto(self.h_new, gate)

    def _lstm(self, r_t, peepholes, projection) -> None:
        f, g, h = self.act
        i, o, forget, candidate = self.part
        np.matmul(self.h, r_t, out=self.product)
        self._by_gate(self.product, self.gates)
        self.gates += projection
        if peepholes is None:   # i, o, f are adjacent: one pass of f over the three
            f(self.gates[:3])
        else:
            i += np.multiply(peepholes[0], self.c, out=self.peephole_term)
            forget += np.multiply(peepholes[2], self.c, out=self.peephole_term)
            f(i)
            f(forget)
        if self.input_forget:
            np.subtract(1, i, out=forget)
        g(candidate)
        np.multiply(forget, self.c, out=self.c_new)
        candidate *= i
        self.c_new += candidate
        if peepholes is not None:
            o += np.multiply(peepholes[1], self.c_new, out=self.peephole_term)
            f(o)
        np.copyto(self.h_new, self.c_new)
        h(self.h_new)
        self.h_new *= o

    def _gru(self, r_zr, r_h, reset_bias, projection) -> None:
        f, g = self.act
        z, reset, candidate = self.part
        zr = self.gates[:2]
        np.matmul(self.h, r_zr, out=self.product)
        self._by_gate(self.product, zr)
        zr += projection[:2]
        f(zr)
        if self.linear_before_reset:
            np.matmul(self.h, r_h, out=candidate)
            if reset_bias is not None:
                candidate += reset_bias
            candidate *= reset
        else:
            np.multiply(reset, self.h, out=self.h_new)
            np.matmul(self.h_new, r_h, out=candidate)
        candidate += projection[2]
        g(candidate)
        # h' = (1 - z) * candidate + z * h = candidate + z * (h - candidate)
        np.subtract(self.h, candidate, out=self.h_new)
        self.h_new *= z
        self.h_new += candidate


def _transposed(workspace, array, dtype, split=None):
    """(get, fixed): get() gives ``array`` (dirs, rows, k) as contiguous (dirs, k, rows) in ``dtype``, computed once
    per engine for a constant (fixed), else on every run. (NumPy's matmul does not hand a transposed view to BLAS: 6x slower.) With
    ``split``, the pair of columns [:split] and [split:], each contiguous (a GRU's z/r and candidate parts:
    a strided slice would be copied by every step's matmul)."""
    def make(a):
        return np.ascontiguousarray(np.swapaxes(a, 1, 2), dtype=dtype)

    def make_pair(a):
        whole = np.swapaxes(a, 1, 2)
        return (np.ascontiguousarray(whole[:, :, :split], dtype=dtype),
                np.ascontiguousarray(whole[:, :, split:], dtype=dtype))
    if split is None:
        fixed = workspace.derived(array, f"rnn weights transposed to {dtype.name}", make)
        return (lambda: fixed, True) if fixed is not None else (lambda: make(array), False)
    first = workspace.derived(array, f"rnn weights transposed to {dtype.name}, columns [:{split}]",
                              lambda a: make_pair(a)[0])
    second = workspace.derived(array, f"rnn weights transposed to {dtype.name}, columns [{split}:]",
                               lambda a: make_pair(a)[1])
    return (lambda: (first, second), True) if first is not None else (lambda: make_pair(array), False)


def _split_directions(directions: list, weights: list, operands: list, mask, states: list, outputs: list, dtype):
    """A region running each direction of a bidirectional layer as one part (they share nothing but their inputs,
    and write apart: y[:, d], y_h[d], y_c[d]) when everything they read is fixed (constant weights, arrays already
    in the compute dtype), so the parts can be bound once; None otherwise. Inline, the parts run in turn: the same
    results, bit for bit."""
    (w_t, w_fixed), (r_t, r_fixed) = weights
    if len(directions) != 2 or threads.thread_count() == 1 or not (w_fixed and r_fixed) \
            or any(a is not None and a.dtype != dtype for a in operands + states):
        return None
    bound = [operands[0], w_t(), r_t(), operands[1], mask]
    return threads.parallel([functools.partial(d.run, *bound, *states, *outputs) for d in directions])


def _bind(attrs, inputs, outputs, workspace, split_directions: bool = False):
    x, w, r, b, lens, h0, c0, p = (list(inputs) + [None] * 8)[:8]
    y, y_h = outputs[0], outputs[1]
    y_c = outputs[2] if len(outputs) > 2 else None
    dtype = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
    scratch = workspace.scratch
    directions = [_Direction(attrs, d, (x.shape[0], x.shape[1], int(attrs["hidden_size"])), dtype, scratch)
                  for d in range(int(attrs["directions"]))]
    mask = scratch((x.shape[0], x.shape[1]), np.bool_) if lens is not None else None
    steps = scratch((x.shape[0], 1), np.int64) if lens is not None else None
    split = 2 * int(attrs["hidden_size"]) if RNNCell(attrs["cell"]) == RNNCell.GRU else None
    weights = _transposed(workspace, w, dtype), _transposed(workspace, r, dtype, split)
    (w_t, _), (r_t, _) = weights
    lens_row = None if lens is None else lens[None, :]
    region = _split_directions(directions, weights, [x, b], mask, [h0, c0, p], [y, y_h, y_c], dtype) \
        if split_directions else None

    def run():
        if mask is not None:
            steps[:, 0] = range(x.shape[0])   # scratch is shared between layers: written on every run
            np.less(steps, lens_row, out=mask)
        if region is not None:
            region()
            return
        operands = [_as(x, dtype), w_t(), r_t(), _as(b, dtype)]
        states = [_as(a, dtype) for a in (h0, c0, p)]
        for direction in directions:
            direction.run(*operands, mask, *states, y, y_h, y_c)
    return run


class _Allocate:
    """The Workspace interface for the unprepared kernel: plain new arrays, nothing derived once."""

    @staticmethod
    def scratch(shape, dtype):
        return np.empty(shape, dtype)

    @staticmethod
    def derived(sources, tag, make):
        return None


@register(LayerKind.RNN)
def rnn(attrs, inputs, outputs):
    _bind(attrs, inputs, outputs, _Allocate)()


@register_prepare(LayerKind.RNN)
def prepare_rnn(attrs, inputs, outputs, workspace):
    return _bind(attrs, inputs, outputs, workspace, split_directions=True)
