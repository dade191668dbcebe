"""Bidirectional RNN layers with their two directions as the two parts of one worker-pool region
(kernels/cpu/recurrent.py's _split_directions): LSTM (native loop and NumPy loop), GRU and plain RNN, with
sequence lengths and initial states; split and inline runs bit-identical and within 1e-5 of onnxruntime; one
direction, or weights that are graph inputs, keep the plain run."""

from __future__ import annotations

import numpy as np
import pytest

import edgert
from edgert.kernels.cpu import threads
from helpers import normwise_error, ort_run
from test_ops_rnn import rnn_model


@pytest.fixture
def pool_of_two(monkeypatch):
    monkeypatch.setattr(threads, "_pool", threads.WorkerPool(2))
    return threads.pool()


def regions_and_outputs(model, feeds, runs: int):
    """(regions the context made, outputs of ``runs`` runs)"""
    engine = edgert.load(edgert.build(model).to_bytes())
    before = threads.pool().regions()
    context = engine.create_execution_context()
    made = threads.pool().regions() - before
    return made, [{k: v.copy() for k, v in context.execute(feeds).items()} for _ in range(runs)]


@pytest.mark.parametrize("op, options", [
    ("LSTM", {"h0": True, "c0": True}), ("LSTM", {"seq": 9, "batch": 1, "width": 16, "hidden": 64}),
    ("LSTM", {"lens": [3, 5, 1]}), ("LSTM", {"peepholes": True}), ("GRU", {"attrs": {"linear_before_reset": 1}}),
    ("GRU", {"h0": True}), ("RNN", {}),
], ids=lambda v: v if isinstance(v, str) else "-".join(sorted(v)) or "plain")
def test_directions_split_over_the_pool(op, options, pool_of_two):
    model, feeds, _ = rnn_model(op, direction="bidirectional", **options)
    made, outputs = regions_and_outputs(model, feeds, 2 * threads.SPLIT_SAMPLES + 2)
    assert len(made) == 1
    (region,) = made
    assert len(region.parts) == 2 and region.choice.decisions == 1   # measured both ways, then chose
    for run in outputs:   # split runs, inline runs and the chosen way: the same bits
        for name, value in outputs[0].items():
            assert np.array_equal(run[name], value), name
    for name, want in ort_run(model, feeds).items():
        assert normwise_error(outputs[0][name], want) <= 1e-5, name


def test_one_direction_or_weights_fed_at_run_time_are_not_split(pool_of_two):
    model, feeds, _ = rnn_model("LSTM", direction="forward")
    made, outputs = regions_and_outputs(model, feeds, 1)
    assert not made
    model, feeds, _ = rnn_model("LSTM", direction="bidirectional")
    weight = next(t for t in model.graph.initializer if t.name == "W")
    model.graph.initializer.remove(weight)
    from onnx import helper, numpy_helper
    model.graph.input.append(helper.make_tensor_value_info("W", weight.data_type, list(weight.dims)))
    feeds["W"] = numpy_helper.to_array(weight)
    made, outputs = regions_and_outputs(model, feeds, 1)
    assert not made
    for name, want in ort_run(model, feeds).items():
        assert normwise_error(outputs[0][name], want) <= 1e-5, name
