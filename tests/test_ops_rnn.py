"""LSTM, GRU and RNN against onnxruntime: every direction, initial states, sequence_lens, layout,
activations with alpha/beta, clip, input_forget, linear_before_reset, peepholes, optional outputs,
opsets 7/14/22; fp16/int8 builds; DLA placement; CUDA lowering; a CRNN and a streaming LSTM.

onnxruntime has no batch-major (layout = 1) kernel, so layout-1 models are checked against
onnxruntime running the same weights in layout 0 on transposed inputs (and transposing back).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper, numpy_helper

import edgert
from edgert.errors import EdgeRTError, UnsupportedError
from helpers import (assert_matches_ort, assert_runs_allocate_nothing, edgert_run, normwise_error, ort_run)

rng = np.random.default_rng()
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def randn(*shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def rnn_model(op, *, seq=5, batch=3, width=4, hidden=6, direction="forward", layout=0, bias=True, lens=None,
              h0=False, c0=False, peepholes=False, attrs=None, opset=14, outputs=None, weights=None):
    """A one-node LSTM/GRU/RNN model and its feeds; ``weights`` reuses W, R, B, P (name -> array)."""
    dirs, gates = (2 if direction == "bidirectional" else 1), GATES[op]
    weights = dict(weights or {})
    weights.setdefault("W", randn(dirs, gates * hidden, width, scale=0.5))
    weights.setdefault("R", randn(dirs, gates * hidden, hidden, scale=0.5))
    if bias:
        weights.setdefault("B", randn(dirs, 2 * gates * hidden))
    if peepholes:
        weights.setdefault("P", randn(dirs, 3 * hidden))
    states = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    feeds = {"X": randn(*((batch, seq, width) if layout else (seq, batch, width)))}
    if lens is not None:
        feeds["L"] = np.asarray(lens, np.int32)
    if h0:
        feeds["H0"] = randn(*states)
    if c0:
        feeds["C0"] = randn(*states)
    slots = ["X", "W", "R", "B", "L", "H0"] + (["C0", "P"] if op == "LSTM" else [])
    names = [n if n in feeds or n in weights else "" for n in slots]
    while not names[-1]:
        names.pop()
    all_outputs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    outs = [o if outputs is None or o in outputs else "" for o in all_outputs]
    while not outs[-1]:
        outs.pop()
    node_attrs = {"hidden_size": hidden, "direction": direction, **({"layout": layout} if opset >= 14 else {})}
    node = helper.make_node(op, names, outs, **node_attrs, **(attrs or {}))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for k, v in feeds.items()],
        [onnx.ValueInfoProto(name=o) for o in outs if o],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items() if k in names])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return onnx.shape_inference.infer_shapes(model), feeds, weights


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_directions_states_and_sequence_lens(op, direction):
    model, feeds, _ = rnn_model(op, direction=direction, h0=True, c0=True, lens=[5, 2, 3])
    assert_matches_ort(model, feeds)
    model, feeds, _ = rnn_model(op, direction=direction, bias=False)
    assert_matches_ort(model, feeds)
    model, feeds, _ = rnn_model(op, direction=direction, h0=True, c0=True, lens=[0, 5, 2])   # empty: zero states
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_constant_full_sequence_lens_and_zero_state_match(op):
    model, feeds, _ = rnn_model(op, lens=[5, 5, 5], direction="bidirectional")
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_layout_1_matches_layout_0_on_transposed_data(op):
    model, feeds, weights = rnn_model(op, layout=1, direction="bidirectional", h0=True, c0=True, lens=[1, 5, 4],
                                      peepholes=op == "LSTM")
    ours = edgert_run(model, feeds)
    model0, _, _ = rnn_model(op, layout=0, direction="bidirectional", h0=True, c0=True, lens=[1, 5, 4],
                             peepholes=op == "LSTM", weights=weights)
    feeds0 = {k: (v.transpose(1, 0, 2) if k != "L" else v) for k, v in feeds.items()}
    ref = ort_run(model0, feeds0)
    back = {"Y": (2, 0, 1, 3), "Y_h": (1, 0, 2), "Y_c": (1, 0, 2)}
    for name, want in ref.items():
        assert normwise_error(ours[name], want.transpose(back[name])) <= 1e-5, name


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",), ("Y", "Y_c"), ("Y_h", "Y_c")])
def test_optional_outputs(outputs):
    model, feeds, _ = rnn_model("LSTM", outputs=outputs, h0=True, c0=True)
    assert set(assert_matches_ort(model, feeds)) == set(outputs)


@pytest.mark.parametrize("clip", [0.3, 2.0])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_clip(op, clip):
    # onnxruntime clips every gate's input; LSTM's cell state (input of h) is not clipped
    model, feeds, _ = rnn_model(op, attrs={"clip": clip}, peepholes=op == "LSTM", c0=True)
    assert_matches_ort(model, feeds)


def test_lstm_peepholes_and_input_forget():
    model, feeds, _ = rnn_model("LSTM", peepholes=True, h0=True, c0=True, direction="bidirectional", lens=[2, 5, 4])
    assert_matches_ort(model, feeds)
    model, feeds, _ = rnn_model("LSTM", attrs={"input_forget": 1}, peepholes=True, c0=True)
    assert_matches_ort(model, feeds)


def test_gru_linear_before_reset():
    for direction in ("forward", "bidirectional"):
        model, feeds, _ = rnn_model("GRU", attrs={"linear_before_reset": 1}, direction=direction, h0=True,
                                    lens=[3, 5, 1])
        assert_matches_ort(model, feeds)
    model, feeds, _ = rnn_model("GRU", attrs={"linear_before_reset": 1}, bias=False)
    assert_matches_ort(model, feeds)


ACTIVATION_CASES = [
    ("LSTM", ["HardSigmoid", "LeakyRelu", "ScaledTanh"], [0.3, 0.05, 1.5], [0.4, 0.7]),
    ("LSTM", ["Sigmoid", "Affine", "Softsign"], [0.5], [0.2]),
    ("GRU", ["Affine", "Elu", "Softsign", "Softplus"], [0.3, 0.5], [0.1]),
    ("GRU", ["HardSigmoid", "ThresholdedRelu", "HardSigmoid", "Relu"], [], []),   # default alphas and betas
    ("RNN", ["ThresholdedRelu"], [0.2], []),
    ("RNN", ["Relu", "Sigmoid"], [], []),
    ("RNN", ["LeakyRelu", "Elu"], [], []),
    ("RNN", ["Affine", "ScaledTanh"], [], []),   # onnxruntime's defaults: 0 and 0 (zeros)
    ("RNN", ["Affine", "ScaledTanh"], [0.7, 1.2], [0.3]),
]


@pytest.mark.parametrize("op,functions,alphas,betas", ACTIVATION_CASES)
def test_activations_with_alpha_and_beta(op, functions, alphas, betas):
    per_direction = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    direction = "bidirectional" if len(functions) == 2 * per_direction else "forward"
    attrs = {"activations": functions}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    model, feeds, _ = rnn_model(op, attrs=attrs, direction=direction, h0=True)
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("opset", [7, 14, 22])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_opsets(op, opset):
    model, feeds, _ = rnn_model(op, opset=opset, direction="bidirectional", h0=True, lens=[4, 5, 2])
    assert_matches_ort(model, feeds)


# bounded functions only, so that a random recurrence stays well conditioned at fp32
_GATE_FUNCTIONS = [("Sigmoid", None, None), ("HardSigmoid", 0.3, 0.45)]
_CELL_FUNCTIONS = [("Tanh", None, None), ("Softsign", None, None), ("ScaledTanh", 0.9, 0.8), ("Sigmoid", None, None)]


@st.composite
def rnn_configurations(draw):
    op = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    direction = draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    seq, batch = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    per_direction = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    functions = []
    for _ in range(2 if direction == "bidirectional" else 1):
        kinds = ([_GATE_FUNCTIONS] if op != "RNN" else []) + [_CELL_FUNCTIONS] * (per_direction - (op != "RNN"))
        functions += [draw(st.sampled_from(choices)) for choices in kinds]
    attrs = {"activations": [f[0] for f in functions]}
    alphas, betas = [f[1] for f in functions if f[1] is not None], [f[2] for f in functions if f[2] is not None]
    if alphas:
        attrs["activation_alpha"], attrs["activation_beta"] = alphas, betas
    if draw(st.booleans()):
        attrs["clip"] = draw(st.sampled_from([0.4, 1.5]))
    if op == "LSTM" and draw(st.booleans()):
        attrs["input_forget"] = 1
    if op == "GRU" and draw(st.booleans()):
        attrs["linear_before_reset"] = 1
    lens = draw(st.lists(st.integers(0, seq), min_size=batch, max_size=batch)) if draw(st.booleans()) else None
    return op, dict(seq=seq, batch=batch, width=draw(st.integers(1, 5)), hidden=draw(st.integers(1, 7)),
                    direction=direction, bias=draw(st.booleans()), lens=lens, h0=draw(st.booleans()),
                    c0=draw(st.booleans()), peepholes=op == "LSTM" and draw(st.booleans()), attrs=attrs,
                    opset=draw(st.sampled_from([7, 14, 22])))


@settings(max_examples=200, deadline=None)
@given(rnn_configurations())
def test_random_configurations_match_onnxruntime(configuration):
    op, options = configuration
    model, feeds, _ = rnn_model(op, **options)
    ours, ref = edgert_run(model, feeds), ort_run(model, feeds)
    for name, want in ref.items():
        # normwise 1e-5, or 1e-6 absolute: a state of one or two elements near zero (tanh of a small sum) has a
        # tiny norm, against which fp32 rounding in either engine reads as a large relative error
        error = normwise_error(ours[name], want)
        assert error <= 1e-5 or np.abs(ours[name] - want).max() <= 1e-6, (name, error)


def test_bad_activation_and_count_are_clear_errors():
    model, feeds, _ = rnn_model("GRU", attrs={"activations": ["Sigmoid", "Gelu"]})
    with pytest.raises(UnsupportedError, match="activation 'Gelu'"):
        edgert.build(model)
    model, feeds, _ = rnn_model("LSTM", attrs={"activations": ["Sigmoid", "Tanh"]})
    with pytest.raises(EdgeRTError, match="2 activations given, expected 3"):
        edgert.build(model)


def test_fp16_and_int8_builds_keep_the_recurrence_fp32():
    model, feeds, _ = rnn_model("LSTM", direction="bidirectional", h0=True, c0=True)
    ref = ort_run(model, feeds)
    for precision in ("fp16", "int8"):
        options = {"precision": precision, **({"calib": [feeds]} if precision == "int8" else {})}
        ours = edgert_run(model, feeds, **options)
        for name, want in ref.items():
            assert normwise_error(ours[name], want) <= 1e-5, (precision, name)   # RNN stays fp32


def test_rnn_layers_stay_off_the_dla_with_the_reason():
    from edgert.onnx.importer import import_model
    from edgert.partitioner.assign import partition
    from edgert.passes import optimize
    from edgert.targets import load_profile
    model, _, _ = rnn_model("GRU", direction="bidirectional")
    graph = import_model(model)
    optimize(graph)
    report = partition(graph, load_profile("jetson-agx-orin"), dla_core=0, gpu_fallback=True)
    (layer,) = [row for row in report.to_dict()["layers"] if row["kind"] == "RNN"]
    assert layer["device"] == "gpu" and "recurrent" in layer["reason"]


CUDA_CASES = [
    ("LSTM", dict(direction="bidirectional", h0=True, c0=True, lens=[5, 2, 3], peepholes=True, attrs={"clip": 0.5})),
    ("LSTM", dict(attrs={"input_forget": 1}, hidden=300, layout=1)),   # more hidden units than threads
    ("GRU", dict(direction="bidirectional", lens=[3, 0, 1], h0=True)),
    ("GRU", dict(attrs={"linear_before_reset": 1}, direction="bidirectional", h0=True, lens=[4, 1, 5])),
    ("GRU", dict(attrs={"linear_before_reset": 1}, direction="reverse", bias=False)),
    ("RNN", dict(direction="bidirectional", attrs={"activations": ["Relu", "ScaledTanh"], "activation_alpha": [0.7],
                                                   "activation_beta": [1.3]})),
    ("LSTM", dict(direction="bidirectional", attrs={"activations": ["HardSigmoid", "LeakyRelu", "Softsign", "Sigmoid",
                                                                    "Elu", "Softplus"]})),
]


def run_on_emulator(model, feeds, **build_options):
    """(emulated CUDA outputs, CPU outputs) of one plan."""
    from edgert.kernels.cuda import emulator
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    from edgert.runtime.cuda import CudaEngine
    if not emulator.available():
        pytest.skip("no host C++ compiler for the CUDA emulator")
    plan = edgert.build(model, cpu_only_aliases=False, **build_options)
    plan.document["kernels"] = {"sm_90": compile_for_plan(plan.document, "sm_90", emulate=True)}
    context = CudaEngine(plan.document, driver=emulator.EmulatedDriver()).create_execution_context()
    context.poison()   # an output element the kernel leaves unwritten reads NaN
    return context.execute(feeds), edgert.load(plan).create_execution_context().execute(feeds)


@pytest.mark.parametrize("op,options", CUDA_CASES)
def test_cuda_kernel_on_the_emulator(op, options):
    model, feeds, _ = rnn_model(op, **options)
    got, want = run_on_emulator(model, feeds)
    for name in want:
        assert normwise_error(got[name], want[name]) <= 1e-5, name


@settings(max_examples=8, deadline=None)
@given(rnn_configurations())
def test_random_configurations_on_the_emulator(configuration):
    op, options = configuration
    model, feeds, _ = rnn_model(op, **options)
    got, want = run_on_emulator(model, feeds)
    for name in want:
        error = normwise_error(got[name], want[name])
        assert error <= 1e-5 or np.abs(got[name] - want[name]).max() <= 1e-6, (name, error)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_rnn_forced_to_fp16_on_cpu_and_cuda(op):
    model, feeds, _ = rnn_model(op, direction="bidirectional", h0=True, c0=True, lens=[5, 2, 3])
    got, want = run_on_emulator(model, feeds, precision="fp16", precision_rules=[{"kind": "RNN", "precision": "fp16"}])
    ref = ort_run(model, feeds)
    for name in ref:
        assert normwise_error(want[name], ref[name]) <= 1e-2, name
        assert normwise_error(got[name], want[name]) <= 1e-3, name


def test_cuda_kernels_compile_for_orin_and_hopper(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERT_CUDA_CACHE", str(tmp_path / "cache"))
    from edgert.kernels.cuda import compile as cc
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    if not cc.available():
        pytest.skip("no NVRTC (cuda-bindings) and no nvcc")
    for op, options in (CUDA_CASES[0], CUDA_CASES[3], CUDA_CASES[5]):
        plan = edgert.build(rnn_model(op, **options)[0], cpu_only_aliases=False)
        for arch in ("sm_87", "sm_90"):
            kernels = compile_for_plan(plan.document, arch)
            assert any(m.get("cubin") for m in kernels["modules"]), (op, arch)


@pytest.mark.gpu
@pytest.mark.parametrize("op,options", CUDA_CASES)
def test_cuda_kernel_on_the_gpu(op, options):
    model, feeds, _ = rnn_model(op, **options)
    plan = edgert.build(model, gpu_kernels=True)
    got = edgert.load(plan.to_bytes(), device="cuda").create_execution_context().execute(feeds)
    want = edgert.load(plan.to_bytes()).create_execution_context().execute(feeds)
    for name in want:
        assert normwise_error(got[name], want[name]) <= 1e-4, name


# -- models ------------------------------------------------------------------------------------------
def crnn_model(classes=11, hidden=16):
    """Text-recognizer shape: conv + relu + pool, columns as time steps, bidirectional LSTM, MatMul, LogSoftmax."""
    init = {"conv_w": randn(8, 1, 3, 3, scale=0.3), "conv_b": randn(8), "shape": np.array([0, 0, -1], np.int64),
            "W": randn(2, 4 * hidden, 8 * 8, scale=0.2), "R": randn(2, 4 * hidden, hidden, scale=0.2),
            "B": randn(2, 8 * hidden, scale=0.1), "head_w": randn(2 * hidden, classes, scale=0.3),
            "head_b": randn(classes), "seq_shape": np.array([16, 1, 2 * hidden], np.int64)}
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),   # (1, 8, 8, 16)
        helper.make_node("Transpose", ["pool"], ["cols"], perm=[3, 0, 1, 2]),                    # (16, 1, 8, 8)
        helper.make_node("Reshape", ["cols", "shape"], ["seq"]),                                # (16, 1, 64)
        helper.make_node("LSTM", ["seq", "W", "R", "B"], ["y"], hidden_size=hidden, direction="bidirectional"),
        helper.make_node("Transpose", ["y"], ["y_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["y_t", "seq_shape"], ["features"]),
        helper.make_node("MatMul", ["features", "head_w"], ["logits0"]),
        helper.make_node("Add", ["logits0", "head_b"], ["logits"]),
        helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=2),
    ]
    graph = helper.make_graph(nodes, "crnn", [helper.make_tensor_value_info("image", 1, [1, 1, 16, 32])],
                              [helper.make_tensor_value_info("log_probs", 1, [16, 1, classes])],
                              [numpy_helper.from_array(v, k) for k, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_crnn_matches_onnxruntime():
    assert_matches_ort(crnn_model())


def streaming_lstm_model(features=12, hidden=20, batch=1):
    """One audio frame per call; the LSTM's h/c states are graph inputs and outputs."""
    init = {"front": randn(features, features, scale=0.3), "W": randn(1, 4 * hidden, features, scale=0.3),
            "R": randn(1, 4 * hidden, hidden, scale=0.3), "B": randn(1, 8 * hidden, scale=0.1),
            "P": randn(1, 3 * hidden, scale=0.1), "head": randn(hidden, 4, scale=0.3),
            "squeeze": np.array([1], np.int64)}
    nodes = [
        helper.make_node("MatMul", ["frame", "front"], ["x"]),
        helper.make_node("Tanh", ["x"], ["x_t"]),
        helper.make_node("LSTM", ["x_t", "W", "R", "B", "", "h_in", "c_in", "P"], ["y", "h_out", "c_out"],
                         hidden_size=hidden),
        helper.make_node("Squeeze", ["y", "squeeze"], ["y_s"]),
        helper.make_node("MatMul", ["y_s", "head"], ["scores"]),
    ]
    state = [1, batch, hidden]
    graph = helper.make_graph(
        nodes, "streaming",
        [helper.make_tensor_value_info("frame", 1, [1, batch, features]),
         helper.make_tensor_value_info("h_in", 1, state), helper.make_tensor_value_info("c_in", 1, state)],
        [helper.make_tensor_value_info("scores", 1, [1, batch, 4]), helper.make_tensor_value_info("h_out", 1, state),
         helper.make_tensor_value_info("c_out", 1, state)],
        [numpy_helper.from_array(v, k) for k, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_streaming_lstm_state_loop_is_allocation_free_and_matches_ort():
    """100 steps, state out -> state in. From step 10 on, no layer run allocates an array: each run's peak
    stays below one (batch, hidden) float32 temporary (4 KiB here; what remains is NumPy's view objects),
    and a whole execute() allocates only its returned outputs beyond that."""
    import tracemalloc
    import onnxruntime as ort
    batch, hidden = 8, 128
    one_temporary = batch * hidden * 4
    model = streaming_lstm_model(hidden=hidden, batch=batch)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    context = edgert.load(edgert.build(model).to_bytes()).create_execution_context()
    assert context.unprepared_layers() == []
    ours = {"h_in": np.zeros((1, batch, hidden), np.float32), "c_in": np.zeros((1, batch, hidden), np.float32)}
    for step, frame in enumerate(randn(100, 1, batch, 12)):
        if step >= 10:
            assert_runs_allocate_nothing(context, limit=one_temporary)
            tracemalloc.start()
            got = context.execute({"frame": frame, **ours})
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < sum(array.nbytes for array in got.values()) + one_temporary, (step, peak)
        else:
            got = context.execute({"frame": frame, **ours})
        # each step against onnxruntime from the same states: 100 steps of two float32 rounding paths would
        # drift apart through the recurrence, which says nothing about either
        want = dict(zip(["scores", "h_out", "c_out"], session.run(None, {"frame": frame, **ours})))
        for name in want:
            assert normwise_error(got[name], want[name]) <= 1e-5, (step, name)
        ours = {"h_in": got["h_out"], "c_in": got["c_out"]}
