"""Plan format: round trip, atomic writes, corruption of every kind, fuzzing, threads, import footprint."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import msgpack
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, helper

import edgert
from edgert.errors import PlanError
from edgert.plan import FORMAT_VERSION, MIN_FORMAT_VERSION, read_plan, write_plan


def _model():
    rng = np.random.default_rng()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])
    weights = [onnx.numpy_helper.from_array(rng.standard_normal((1, 64)).astype(np.float32), f"b{i}")
               for i in range(3)]
    nodes = []
    current = "x"
    for i in range(3):
        nodes.append(helper.make_node("Add", [current, f"b{i}"], [f"s{i}"], name=f"add{i}"))
        nodes.append(helper.make_node("Relu", [f"s{i}"], [f"r{i}" if i < 2 else "y"], name=f"relu{i}"))
        current = f"r{i}"
    graph = helper.make_graph(nodes, "g", [x], [y], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def plan_bytes():
    return edgert.build(_model()).to_bytes()


def _reference(plan_data, x):
    return edgert.load(plan_data).create_execution_context().execute({"x": x})["y"]


def test_round_trip_is_symmetric(plan_bytes):
    document = read_plan(plan_bytes)
    assert document["header"]["format_version"] == MIN_FORMAT_VERSION   # no int8 code tensors: format 2
    again = write_plan(document)
    assert again == plan_bytes
    assert len(document["blob"]) == document["header"]["constants_bytes"]


def test_blob_is_aligned_in_the_file(plan_bytes):
    document = read_plan(plan_bytes)
    blob = bytes(document["blob"])
    assert plan_bytes.endswith(blob)
    assert (len(plan_bytes) - len(blob)) % 64 == 0


def test_unknown_optional_fields_are_ignored(plan_bytes):
    document = read_plan(plan_bytes)
    document["future_section"] = {"anything": [1, 2, 3]}
    document["header"]["future_field"] = "x"
    x = np.random.default_rng().standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_array_equal(_reference(write_plan(document), x), _reference(plan_bytes, x))


def test_newer_format_is_refused_with_the_version(plan_bytes):
    document = read_plan(plan_bytes)
    data = bytearray(write_plan(document))
    # Patch format_version inside the header: find the packed key and bump the following fixint.
    key = msgpack.packb("format_version")
    at = bytes(data).index(key) + len(key)
    assert data[at] == MIN_FORMAT_VERSION
    data[at] = FORMAT_VERSION + 1
    with pytest.raises(PlanError, match=f"format version {FORMAT_VERSION + 1}.*newer"):
        read_plan(bytes(data))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x00" * 100, "not an edgert plan"),
    (msgpack.packb({"header": {"magic": "NOPE"}}), "wrong magic"),
    (b"PK\x03\x04 this is a zip file", "not an edgert plan"),
])
def test_garbage_is_a_plan_error(data, message):
    with pytest.raises(PlanError, match=message):
        read_plan(data)


def test_every_truncation_is_a_plan_error(plan_bytes):
    for length in range(0, len(plan_bytes), max(1, len(plan_bytes) // 300)):
        with pytest.raises(PlanError):
            read_plan(plan_bytes[:length])
    with pytest.raises(PlanError):
        read_plan(plan_bytes + b"\0")


def test_checksum_mismatch(plan_bytes):
    data = bytearray(plan_bytes)
    data[-1] ^= 0xFF  # inside the constants blob
    with pytest.raises(PlanError, match="checksum"):
        read_plan(bytes(data))


def _resign(document: dict) -> bytes:
    return write_plan(document)


@pytest.mark.parametrize("mutate", [
    lambda d: d["tensors"][0].update(shape=[1 << 40, 1 << 40]),
    lambda d: d["tensors"][0].update(dtype="complex128"),
    lambda d: d["constants"][0].update(offset=1 << 50),
    lambda d: d["constants"][0].update(nbytes=3),
    lambda d: d["layers"][0].update(inputs=[10 ** 6, 0]),
    lambda d: d["layers"][0].update(outputs="nope"),
    lambda d: d["bindings"]["inputs"][0].update(tensor=-5),
    lambda d: d.update(tensors={"not": "a list"}),
    lambda d: d["layers"][0].update(kind="NoSuchKind"),
    lambda d: d.update(memory={"pools": {"cpu": {"arena_bytes": -1, "offsets": []}}}),
])
def test_absurd_values_with_a_valid_checksum_are_plan_errors(plan_bytes, mutate):
    document = read_plan(plan_bytes)
    document["blob"] = bytes(document["blob"])
    mutate(document)
    with pytest.raises(PlanError):
        edgert.load(_resign(document))


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_mutated_plans_never_crash(plan_bytes, data):
    mutated = bytearray(plan_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if action == "flip" and mutated:
            mutated[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set" and mutated:
            mutated[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del mutated[position:position + data.draw(st.integers(1, 64))]
        else:
            mutated[position:position] = data.draw(st.binary(min_size=1, max_size=16))
    try:
        engine = edgert.load(bytes(mutated))
    except PlanError as e:
        assert "\n" not in str(e)
        return
    # A mutation the checksum cannot see (e.g. in the header's free text) must still run correctly.
    x = np.ones((2, 64), np.float32)
    np.testing.assert_array_equal(engine.create_execution_context().execute({"x": x})["y"],
                                  _reference(plan_bytes, x))


def test_save_is_atomic(tmp_path, monkeypatch):
    plan = edgert.build(_model())
    path = tmp_path / "model.plan"
    plan.save(path)
    before = path.read_bytes()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        edgert.build(_model()).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.plan"]


def test_two_threads_two_contexts_same_results(plan_bytes):
    engine = edgert.load(plan_bytes)
    rng = np.random.default_rng()
    batches = [rng.standard_normal((2, 64)).astype(np.float32) for _ in range(20)]
    expected = [engine.create_execution_context().execute({"x": x})["y"] for x in batches]
    results: dict[int, list] = {}

    def worker(index):
        context = engine.create_execution_context()
        results[index] = [context.execute({"x": x})["y"] for x in batches for _ in range(5)][::5]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for index in range(2):
        for got, want in zip(results[index], expected):
            np.testing.assert_array_equal(got, want)


def test_runtime_imports_neither_onnx_nor_the_builder(tmp_path):
    path = tmp_path / "m.plan"
    edgert.build(_model()).save(path)
    script = f"""
import sys
import numpy as np
import edgert.runtime
engine = edgert.runtime.load({str(path)!r})
engine.create_execution_context().execute({{"x": np.ones((2, 64), np.float32)}})
bad = sorted(m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "edgert.onnx", "edgert.passes",
                                                                    "edgert.builder", "onnxruntime")))
assert not bad, bad
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
