"""Auxiliary streams (``max_aux_streams``): stream assignment, memory safety under concurrency, the plan's
stream fields (format 3, validation), and the CUDA runtime on the emulator under adversarial interleavings.

The memory check here is independent of the planner: from a plan document alone it groups tensors that
share bytes by design (views, in-place writes, concat slices) and requires every two groups whose arena
bytes overlap to be ordered by the streams' happens-before (vector clocks), all accesses of one before
every write of the other.
"""

from __future__ import annotations

import copy
import shutil

import numpy as np
import onnxruntime as ort
import pytest

import edgert
from edgert.errors import EdgeRTError, PlanError
from edgert.memory import StepSpec
from edgert.plan import read_plan, write_plan
from edgert.streams import StreamSchedule, assign_streams, single_stream
from stream_models import STREAM_MODELS, inception, two_head

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs a C++ compiler")
POLICIES = ("fifo", "low", "high", "random:1", "random:2")


def steps(*edges):
    """StepSpecs from (inputs, outputs) tensor-id pairs."""
    return [StepSpec(tuple(i), tuple(o)) for i, o in edges]


# -- assignment ------------------------------------------------------------------------------------
def test_a_chain_stays_on_the_main_stream():
    chain = steps(([0], [1]), ([1], [2]), ([2], [3]))
    assert assign_streams(chain, 3) == StreamSchedule((0, 0, 0), ((), (), ()))
    assert assign_streams(chain, 0) == single_stream(3)


def test_four_branches_take_four_streams_and_the_join_waits_for_the_others():
    fork = steps(([0], [1]), ([1], [2]), ([1], [3]), ([1], [4]), ([1], [5]), ([2, 3, 4, 5], [6]))
    schedule = assign_streams(fork, 3)
    assert schedule.streams[:5] == (0, 0, 1, 2, 3)
    assert schedule.waits[2:5] == ((0,), (0,), (0,)) and schedule.waits[5] == (2, 3, 4)
    clocks = schedule.clocks()
    assert all(schedule.ordered(p, 5, clocks) for p in range(5))
    assert not schedule.ordered(1, 2, clocks) and not schedule.ordered(3, 4, clocks)


def test_streams_are_capped_and_reused_when_ordered():
    fork = steps(([0], [1]), ([1], [2]), ([1], [3]), ([1], [4]), ([1], [5]), ([2, 3, 4, 5], [6]), ([6], [7]),
                 ([6], [8]))
    schedule = assign_streams(fork, 1)
    assert set(schedule.streams) == {0, 1}
    assert schedule.streams[7] == 1 and schedule.waits[7] == (5,)   # a finished stream takes the next branch
    for index, producers in enumerate([[], [0], [0], [0], [0], [1, 2, 3, 4], [5], [5]]):
        assert all(schedule.ordered(p, index) for p in producers)


def test_max_aux_streams_is_checked():
    with pytest.raises(EdgeRTError, match="max_aux_streams is -1"):
        edgert.build(inception()[0], shapes=inception()[1], max_aux_streams=-1)


# -- plans -----------------------------------------------------------------------------------------
def build(name: str, aux: int, **options):
    model, shapes = STREAM_MODELS[name](size=8, width=8)
    return model, shapes, edgert.build(model, shapes=shapes, max_aux_streams=aux, cpu_only_aliases=False, **options)


def test_zero_aux_streams_keeps_plans_byte_identical():
    model, shapes = inception(size=8, width=8, seed=3)
    default = edgert.build(model, shapes=shapes, cpu_only_aliases=False).to_bytes()
    zero = edgert.build(model, shapes=shapes, cpu_only_aliases=False, max_aux_streams=0).to_bytes()
    assert default == zero
    document = read_plan(zero)
    assert document["header"]["format_version"] == 2 and not any("stream" in layer for layer in document["layers"])


@pytest.mark.parametrize("name", sorted(STREAM_MODELS))
def test_stream_plans_round_trip_and_match_onnxruntime(name):
    model, shapes, plan = build(name, 2)
    document = read_plan(plan.to_bytes())
    assert document["header"]["format_version"] == 3 and document["header"]["options"]["max_aux_streams"] == 2
    assert [layer.get("stream") for layer in document["layers"]] == [layer["stream"] for layer in plan.layers]
    assert [layer.get("wait") for layer in document["layers"]] == [layer.get("wait") for layer in plan.layers]
    assert len({layer["stream"] for layer in plan.layers}) == {"inception": 3, "two_head": 2}[name]
    x = np.random.default_rng().standard_normal(shapes["image"]).astype(np.float32)
    got = edgert.load(plan.to_bytes()).create_execution_context().execute({"image": x})
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"image": x})
    for out, ref in zip(got.values(), want):
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= 1e-5


# -- memory safety (independent of the planner) ---------------------------------------------------
def unsafe_overlaps(document: dict) -> list[tuple[str, str]]:
    """Pairs of tensors whose arena bytes overlap although their layers may run concurrently."""
    layers, tensors = document["layers"], document["tensors"]
    schedule = StreamSchedule.from_layers(layers)
    clocks, positions = schedule.clocks(), schedule.positions
    placed = {}
    for pool in document["memory"]["pools"].values():
        for tensor, offset in pool["offsets"]:
            nbytes = int(np.prod(tensors[tensor]["shape"], dtype=np.int64)) * np.dtype(tensors[tensor]["dtype"]).itemsize
            placed[tensor] = (offset, offset + max(nbytes, 1))
    group = {t: t for t in placed}

    def root(t):
        while group[t] != t:
            t = group[t]
        return t

    elided = set(document["memory"]["elided"])
    for index, layer in enumerate(layers):   # bytes shared by design: views, concat slices, in-place writes
        for out in layer["outputs"]:
            for source in layer["inputs"]:
                if out in placed and source in placed and (index in elided or placed[out][0] == placed[source][0]):
                    group[root(out)] = root(source)
    width = schedule.count
    never = np.iinfo(np.int64).max
    last = {}    # group -> last access position per stream
    first = {}   # group -> per stream, what every write of it comes after
    for index, layer in enumerate(layers):
        stream = schedule.streams[index]
        for tensor in [t for t in layer["inputs"] if t in placed] + [t for t in layer["outputs"] if t in placed]:
            row = last.setdefault(root(tensor), np.full(width, -1, np.int64))
            row[stream] = max(row[stream], positions[index])
        for tensor in [t for t in layer["outputs"] if t in placed]:
            row = first.setdefault(root(tensor), np.full(width, never, np.int64))
            np.minimum(row, clocks[index], out=row)
    for binding in document["bindings"]["outputs"]:
        if binding["tensor"] in placed:
            last[root(binding["tensor"])][:] = never

    def before(a, b):
        return bool((first[b] >= last[a]).all())

    bad = []
    names = sorted(placed)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = root(a), root(b)
            overlap = placed[a][0] < placed[b][1] and placed[b][0] < placed[a][1]
            if ra != rb and overlap and not (before(ra, rb) or before(rb, ra)):
                bad.append((tensors[a]["name"], tensors[b]["name"]))
    return bad


@pytest.mark.parametrize("name", sorted(STREAM_MODELS))
def test_concurrent_tensors_never_share_arena_bytes(name):
    _, _, plan = build(name, 2)
    assert unsafe_overlaps(plan.document) == []


def test_the_check_catches_a_memory_plan_made_without_clocks():
    """The one-stream memory plan of the same schedule reuses bytes across branches: wrong with streams."""
    model, shapes = inception(size=8, width=8, seed=5)
    one = edgert.build(model, shapes=shapes, cpu_only_aliases=False).document
    many = edgert.build(model, shapes=shapes, cpu_only_aliases=False, max_aux_streams=2).document
    assert [layer["name"] for layer in one["layers"]] == [layer["name"] for layer in many["layers"]]
    assert many["memory"]["arena_bytes"] > one["memory"]["arena_bytes"]
    mixed = copy.deepcopy(one)
    for layer, streamed in zip(mixed["layers"], many["layers"]):
        layer.update({key: streamed[key] for key in ("stream", "wait") if key in streamed})
    assert unsafe_overlaps(mixed)


def test_in_place_waits_for_concurrent_readers_and_branches_keep_apart():
    """t1 is read by a conv on another stream and by an in-place activation: in one stream the activation may
    write over t1 (its last reader), with streams it may not, and the branches' outputs get distinct bytes."""
    from edgert.memory import TensorSpec, plan_memory
    spec = [StepSpec((0,), (1,)), StepSpec((1,), (2,)), StepSpec((1,), (3,), alias="inplace"),
            StepSpec((2, 3), (4,))]
    tensors = [TensorSpec(0, 1024, external=True, shape=(256,)), TensorSpec(1, 1024, shape=(256,)),
               TensorSpec(2, 1024, shape=(256,)), TensorSpec(3, 1024, shape=(256,)),
               TensorSpec(4, 1024, graph_output=True, shape=(256,))]
    one = plan_memory(spec, tensors)
    assert one.pools["cpu"]["offsets"][3] == one.pools["cpu"]["offsets"][1]
    schedule = assign_streams(spec, 1)
    assert schedule.streams == (0, 0, 1, 0) or schedule.streams == (0, 1, 0, 0), schedule
    many = plan_memory(spec, tensors, streams=schedule)
    offsets = many.pools["cpu"]["offsets"]
    assert offsets[3] != offsets[1] and len({offsets[1], offsets[2], offsets[3]}) == 3


# -- validation ------------------------------------------------------------------------------------
def corrupted(plan, change) -> bytes:
    document = copy.deepcopy(plan.document)
    change(document["layers"])
    return write_plan(document)


def first_waiting(layers) -> int:
    return next(i for i, layer in enumerate(layers) if layer.get("wait"))


@pytest.mark.parametrize("change, message", [
    (lambda layers: layers[first_waiting(layers)].pop("wait"), "without waiting for it"),
    (lambda layers: layers[0].update(wait=[1]), "waits only for earlier layers"),
    (lambda layers: layers[1].update(stream=layers[0]["stream"], wait=[0]), "on its own stream"),
    (lambda layers: layers[2].update(stream=99), "expected an integer 0..31"),
    (lambda layers: layers[2].pop("stream"), "on every layer"),
])
def test_bad_stream_fields_are_refused(change, message):
    _, _, plan = build("inception", 2)
    with pytest.raises(PlanError, match=message):
        edgert.load(corrupted(plan, change))


def test_stream_fields_in_a_format_2_plan_are_refused(monkeypatch):
    _, _, plan = build("two_head", 2)
    monkeypatch.setattr(edgert.plan, "_format_version", lambda document: 2)
    data = write_plan(plan.document)
    monkeypatch.undo()
    with pytest.raises(PlanError, match="format version 2 cannot hold layer streams"):
        read_plan(data)


def test_inspect_shows_the_streams(tmp_path, capsys):
    from edgert.tools.cli import main
    _, _, plan = build("two_head", 2)
    plan.save(tmp_path / "p.plan")
    assert main(["inspect", str(tmp_path / "p.plan")]) == 0
    text = capsys.readouterr().out
    assert "auxiliary streams: 1" in text and "stream  waits" in text, text
    assert main(["inspect", "--json", str(tmp_path / "p.plan")]) == 0
    import json
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [layer["stream"] for layer in layers] == [layer["stream"] for layer in plan.layers]


def test_cli_and_trt_api_set_max_aux_streams(tmp_path):
    from edgert.api.config import IBuilderConfig
    from edgert.tools.cli import main
    model, shapes = two_head(size=8, width=8)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert main(["build", str(path), "-o", str(tmp_path / "p.plan"), "--max-aux-streams", "2"]) == 0
    layers = read_plan((tmp_path / "p.plan").read_bytes())["layers"]
    assert {layer["stream"] for layer in layers} == {0, 1}
    config = IBuilderConfig()
    assert config.max_aux_streams == 0
    config.max_aux_streams = 3
    assert config._build_options(None, str(tmp_path))["max_aux_streams"] == 3


# -- the CUDA runtime on the emulator ---------------------------------------------------------------
def emulated(document, policy: str, feeds: dict) -> dict:
    from edgert.kernels.cuda.emulator import EmulatedDriver
    from edgert.runtime.cuda import CudaEngine
    context = CudaEngine(document, driver=EmulatedDriver(interleave=policy)).create_execution_context()
    context.poison()
    return context.execute(feeds)


def compiled(name: str, aux: int):
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    model, shapes = STREAM_MODELS[name](size=8, width=8, seed=11)
    plan = edgert.build(model, shapes=shapes, max_aux_streams=aux, cpu_only_aliases=False)
    plan.document["kernels"] = {"sm_90": compile_for_plan(plan.document, "sm_90", emulate=True)}
    return plan, {"image": np.random.default_rng().standard_normal(shapes["image"]).astype(np.float32)}


@needs_cxx
@pytest.mark.parametrize("name", sorted(STREAM_MODELS))
def test_every_interleaving_gives_the_one_stream_outputs(name):
    one, feeds = compiled(name, 0)
    many, _ = compiled(name, 2)
    want = emulated(one.document, "fifo", feeds)
    cpu = edgert.load(one).create_execution_context().execute(feeds)
    for key in want:
        assert np.linalg.norm(want[key] - cpu[key]) / np.linalg.norm(cpu[key]) <= 1e-4
    for policy in POLICIES:
        got = emulated(many.document, policy, feeds)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name} {policy} {key}")


@needs_cxx
def test_a_missing_wait_is_caught_by_the_emulator_and_refused_by_validation():
    """Dropping the waits of any layer that launches kernels gives wrong outputs under some interleaving (the
    emulator models streams faithfully enough to matter), and such a plan never loads."""
    plan, feeds = compiled("inception", 2)
    want = emulated(plan.document, "fifo", feeds)
    elided = set(plan.document["memory"]["elided"])
    launched = [i for i, layer in enumerate(plan.layers) if layer.get("wait") and i not in elided]
    assert len(launched) >= 2
    for index in launched:
        document = copy.deepcopy(plan.document)
        del document["layers"][index]["wait"]
        outcomes = [all(np.array_equal(got, want[key]) for key, got in emulated(document, p, feeds).items())
                    for p in ("low", "high")]
        assert not all(outcomes), plan.layers[index]["name"]
        with pytest.raises(PlanError, match="without waiting"):
            edgert.load(write_plan(document))


@needs_cxx
def test_concurrent_layers_get_their_own_workspace():
    from edgert.kernels.cuda.emulator import EmulatedDriver
    from edgert.runtime.cuda import CudaEngine
    plan, _ = compiled("inception", 2)
    context = CudaEngine(plan.document, driver=EmulatedDriver()).create_execution_context()
    assert context.streams.count == 3
    pointers = {context._resolve(["w", 0], s) for s in range(3)} | {context._resolve(["c", 0], s) for s in range(3)}
    assert len(pointers) == 6
