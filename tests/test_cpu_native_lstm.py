"""The native LSTM time loop (pointwise_body.h's lstm_steps through _native.lstm) against onnxruntime.

ONNX's default cell in float32 (every direction, batch, hidden sizes below and past a vector, initial states, with
and without biases, all three outputs) runs natively, and matches onnxruntime at 1e-5 with the module on and off;
what it does not cover (sequence lengths, peepholes, clip, other activations) keeps the NumPy loop; bad sizes are
errors, not crashes.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgert
from edgert.kernels.cpu import native
from helpers import normwise_error, ort_run
from test_ops_rnn import rnn_model

pytestmark = pytest.mark.skipif(native._native is None, reason="the native module is not built")


def run_both(model, feeds, monkeypatch):
    """outputs with the module on and off, and how many native LSTM calls the first made"""
    calls = []
    real = native.lstm_steps
    monkeypatch.setattr(native, "lstm_steps", lambda *args: calls.append(1) or real(*args))
    engine = edgert.load(edgert.build(model).to_bytes())
    outputs = {}
    for switch in ("1", "0"):   # layers bind their kernels when the context is created
        monkeypatch.setenv(native.ENV_SWITCH, switch)
        outputs[switch] = engine.create_execution_context().execute(feeds)
    return outputs, len(calls)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("sizes", [(5, 3, 4, 6), (7, 1, 9, 64), (3, 2, 16, 13)], ids=["small", "h64", "h13"])
@pytest.mark.parametrize("bias", [True, False])
def test_default_lstm_matches_onnxruntime(direction, sizes, bias, monkeypatch):
    seq, batch, width, hidden = sizes
    model, feeds, _ = rnn_model("LSTM", seq=seq, batch=batch, width=width, hidden=hidden, direction=direction,
                                bias=bias, h0=True, c0=True)
    want = ort_run(model, feeds)
    outputs, calls = run_both(model, feeds, monkeypatch)
    assert calls == (2 if direction == "bidirectional" else 1)
    for switch, got in outputs.items():
        for name, value in want.items():
            assert normwise_error(got[name], value) <= 1e-5, (switch, name)


@pytest.mark.parametrize("variant", ["lens", "peepholes", "clip", "activations"])
def test_what_it_does_not_cover_keeps_the_numpy_loop(variant, monkeypatch):
    options = {"lens": {"lens": [3, 5, 1]}, "peepholes": {"peepholes": True}, "clip": {"attrs": {"clip": 2.0}},
               "activations": {"attrs": {"activations": ["Sigmoid", "Tanh", "Relu"]}}}[variant]
    model, feeds, _ = rnn_model("LSTM", **options)
    want = ort_run(model, feeds)
    outputs, calls = run_both(model, feeds, monkeypatch)
    assert calls == 0
    for name, value in want.items():
        assert normwise_error(outputs["1"][name], value) <= 1e-5, name


def test_bad_sizes_are_errors():
    steps, batch, hidden = 4, 2, 8
    f32 = np.float32
    arrays = [np.zeros((steps, batch, 4 * hidden), f32), np.zeros((hidden, 4 * hidden), f32),
              np.zeros((batch, hidden), f32), np.zeros((batch, hidden), f32), np.zeros(steps * batch * hidden, f32)]
    native._native.lstm(*arrays, 0, batch * hidden, steps, batch, hidden, False)   # fits
    for bad in ((0, batch * hidden + 1), (1, batch * hidden), (0, 2 ** 62)):   # y too short, offset, overflow
        with pytest.raises(ValueError, match="do not fit"):
            native._native.lstm(*arrays, *bad, steps, batch, hidden, False)
    with pytest.raises(ValueError, match="do not fit"):
        native._native.lstm(*arrays, 0, batch * hidden, steps, batch, hidden + 1, False)
