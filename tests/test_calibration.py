"""INT8 calibration: a small CNN trained here on scikit-learn's digits keeps its accuracy in int8.

The CNN (Conv 3x3 → ReLU → MaxPool 2 → Conv 3x3 → ReLU → Flatten → Gemm) trains with plain NumPy SGD
on the training split in a few seconds; each calibrator calibrates on that split, and the int8 plan's
test-split accuracy must stay within 1 percentage point of the fp32 model's, on the CPU int8 kernels and
on the DLA simulator.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.calibration import (CalibrationError, CalibrationTable, calibrate, entropy_threshold,
                                percentile_threshold, split_batches)

datasets = pytest.importorskip("sklearn.datasets")
BATCH = 120
CALIBRATORS = ("entropy", "minmax", "percentile")


# -- the model -----------------------------------------------------------------------------------------------
def _im2col(x, k=3):
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([padded[:, :, i:i + h, j:j + w] for i in range(k) for j in range(k)], axis=2)
    return cols.reshape(n, c * k * k, h * w)  # (n, c*9, hw), channel-major like the weight layout


def _col2im(cols, shape, k=3):
    n, c, h, w = shape
    cols = cols.reshape(n, c, k * k, h, w)
    padded = np.zeros((n, c, h + 2, w + 2))
    for t in range(k * k):
        i, j = divmod(t, k)
        padded[:, :, i:i + h, j:j + w] += cols[:, :, t]
    return padded[:, :, 1:-1, 1:-1]


def _conv(x, w, b):
    cols = _im2col(x)
    out = np.einsum("ok,nkp->nop", w.reshape(w.shape[0], -1), cols) + b[None, :, None]
    return out.reshape(x.shape[0], w.shape[0], x.shape[2], x.shape[3]), cols


def _forward(params, x):
    w1, b1, w2, b2, w3, b3 = params
    a1, cols1 = _conv(x, w1, b1)
    r1 = np.maximum(a1, 0)
    n, c, h, w = r1.shape
    blocks = r1.reshape(n, c, h // 2, 2, w // 2, 2)
    p1 = blocks.max(axis=(3, 5))
    a2, cols2 = _conv(p1, w2, b2)
    r2 = np.maximum(a2, 0)
    flat = r2.reshape(n, -1)
    return flat @ w3.T + b3, (cols1, a1, blocks, p1, cols2, a2, flat)


def _train(x, y, epochs=30, lr=0.05, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(0, np.sqrt(2 / 9), (8, 1, 3, 3)), np.zeros(8),
              rng.normal(0, np.sqrt(2 / 72), (16, 8, 3, 3)), np.zeros(16),
              rng.normal(0, np.sqrt(1 / 256), (10, 256)), np.zeros(10)]
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            grads = _backward(params, x[idx], y[idx])
            for p, g in zip(params, grads):
                p -= lr * g
    return [p.astype(np.float32) for p in params]


def _backward(params, x, y):
    w1, b1, w2, b2, w3, b3 = params
    logits, (cols1, a1, blocks, p1, cols2, a2, flat) = _forward(params, x)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    prob[np.arange(len(y)), y] -= 1
    d_logits = prob / len(y)
    g_w3, g_b3 = d_logits.T @ flat, d_logits.sum(0)
    d_a2 = (d_logits @ w3).reshape(a2.shape) * (a2 > 0)
    d_a2f = d_a2.reshape(len(x), 16, -1)
    g_w2 = np.einsum("nop,nkp->ok", d_a2f, cols2).reshape(w2.shape)
    d_p1 = _col2im(np.einsum("ok,nop->nkp", w2.reshape(16, -1), d_a2f), p1.shape)
    mask = blocks == p1[:, :, :, None, :, None]
    d_r1 = (mask * d_p1[:, :, :, None, :, None]).reshape(a1.shape)
    d_a1 = (d_r1 * (a1 > 0)).reshape(len(x), 8, -1)
    g_w1 = np.einsum("nop,nkp->ok", d_a1, cols1).reshape(w1.shape)
    return [g_w1, d_a1.sum((0, 2)), g_w2, d_a2f.sum((0, 2)), g_w3, g_b3]


def _onnx_model(params) -> onnx.ModelProto:
    names = ["w1", "b1", "w2", "b2", "w3", "b3"]
    inits = [numpy_helper.from_array(p, n) for p, n in zip(params, names)]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", **conv),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", **conv),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Flatten", ["r2"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "digits_cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                   ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(1).permutation(len(x))
    x, y = x[order], data.target[order]
    train_x, train_y, test_x, test_y = x[:1437], y[:1437], x[1437:], y[1437:]
    params = _train(train_x.astype(np.float64), train_y)
    fp32_logits, _ = _forward([p.astype(np.float64) for p in params], test_x.astype(np.float64))
    fp32_accuracy = float(np.mean(fp32_logits.argmax(1) == test_y))
    calib = split_batches({"image": train_x[:BATCH * (len(train_x) // BATCH)]}, _graph_stub())
    return {"model": _onnx_model(params), "test_x": test_x, "test_y": test_y, "calib": calib,
            "fp32_accuracy": fp32_accuracy}


def _graph_stub():
    from edgert.ir.dtypes import DataType
    from edgert.ir.graph import Graph
    graph = Graph()
    graph.add_input("image", DataType.FLOAT, (BATCH, 1, 8, 8))
    return graph


def engine_for(plan):
    return edgert.load(plan)


def accuracy(plan, test_x, test_y) -> float:
    context = engine_for(plan).create_execution_context()
    correct = 0
    for start in range(0, len(test_x), BATCH):
        logits = context.execute({"image": np.ascontiguousarray(test_x[start:start + BATCH])})["logits"]
        correct += int(np.sum(logits.argmax(1) == test_y[start:start + BATCH]))
    return correct / len(test_x)


SHAPES = {"image": (BATCH, 1, 8, 8)}
TARGETS = {"cpu": {}, "dla": {"target": "jetson-agx-orin", "dla_core": 0, "gpu_fallback": True}}


@pytest.mark.parametrize("where", list(TARGETS))
@pytest.mark.parametrize("calibrator", CALIBRATORS)
def test_int8_accuracy_within_one_point(digits, calibrator, where):
    assert digits["fp32_accuracy"] > 0.9, "the test CNN did not train"
    plan = edgert.build(digits["model"], shapes=SHAPES, precision="int8", calib=digits["calib"],
                                calibrator=calibrator, **TARGETS[where])
    counts = plan.header["precision"]["counts"]
    assert counts.get("int8", 0) >= 3, counts
    if where == "dla":
        assert any(layer["device"].startswith("dla") and layer["attrs"].get("int8")
                   for layer in plan.document["layers"])
    measured = accuracy(plan, digits["test_x"], digits["test_y"])
    assert abs(measured - digits["fp32_accuracy"]) <= 0.01, (calibrator, where, measured, digits["fp32_accuracy"])


def test_calibration_cache_gives_identical_plan(digits, tmp_path):
    cache = tmp_path / "calib.json"
    first = edgert.build(digits["model"], shapes=SHAPES, precision="int8", calib=digits["calib"],
                                 calib_cache=str(cache))
    table = CalibrationTable.load(cache)
    assert table.calibrator == "entropy" and "image" in table.scales
    second = edgert.build(digits["model"], shapes=SHAPES, precision="int8", calib=None,
                                  calib_cache=str(cache))
    assert first.to_bytes() == second.to_bytes()


def test_thresholds():
    rng = np.random.default_rng()
    samples = np.abs(rng.normal(size=200000))
    samples[:3] = 50.0  # outliers: entropy and percentile clip them, min-max does not
    hist, _ = np.histogram(samples, bins=2048, range=(0, 50.0))
    assert 2.0 < entropy_threshold(hist.astype(np.float64), 50.0) < 10.0
    assert 3.0 < percentile_threshold(hist, 50.0) < 6.0


def test_bad_calibration_inputs(tmp_path):
    graph = _graph_stub()
    with pytest.raises(CalibrationError, match="lacks input"):
        split_batches({"other": np.zeros((BATCH, 1, 8, 8))}, graph)
    with pytest.raises(CalibrationError, match="no .npy"):
        calibrate(graph, str(tmp_path))
    (tmp_path / "bad.json").write_text('{"version": 99, "scales": {}}')
    with pytest.raises(CalibrationError, match="version"):
        CalibrationTable.load(tmp_path / "bad.json")


if __name__ == "__main__":  # print the measured accuracies (for reports)
    data = digits.__wrapped__()
    print(f"fp32 {data['fp32_accuracy']:.4f}")
    for name, options in TARGETS.items():
        for method in CALIBRATORS:
            built = edgert.build(data["model"], shapes=SHAPES, precision="int8", calib=data["calib"],
                                         calibrator=method, **options)
            print(f"int8 {name} {method}: {accuracy(built, data['test_x'], data['test_y']):.4f} "
                  f"{built.header['precision']['counts']}")
