"""The shared worker pool (kernels/cpu/threads.py) and the kernels split over it.

The pool: every part runs once, errors reach the caller, parts on a worker never split again, several
callers at once all get their results, idle workers and waiting callers use no CPU, callers beyond the pool's
size run inline, a lagging worker pauses splitting. The split-or-inline choice of a region is tested with
given timings and a fake clock (no timed assertions); split and inline runs give bit-identical outputs, as do
pools of one and two threads on whole models. The kernels: depthwise convolution, pooling,
im2col and matrix products split by planes or column blocks give the unsplit results, also over their own
input, with a pool of 3 (more parts than this 2-core machine has cores) and every size threshold at 0.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

import edgert
from edgert.kernels.cpu import blas, native, threads
from helpers import normwise_error, ort_run
from models import MODELS
from test_cpu_native import DEPTHWISE, POOLS, bind_pool, depthwise_case, over_input, pool_case, reference_pool

rng = np.random.default_rng()


@pytest.fixture
def native_restored():
    """The native parallel loop's defaults back after the test (threads as the pool's, default parts, lag pause on)."""
    yield
    if native.enabled():
        native._native.set_threads(threads.usable_cores(), part_work=0, lag=1, part_elements=0)


@pytest.fixture
def pool_of_three(monkeypatch):
    """A pool of 3 with every split threshold at 0, and the native parallel loop (native_parallel.c) of 3 threads
    cutting convolutions into the most parts and per-element / row kernels into parts of 256 elements, its lag
    pause off; restored after the test."""
    monkeypatch.setattr(threads, "_pool", threads.WorkerPool(3))
    monkeypatch.setattr(native, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(blas, "PARALLEL_GEMM_FLOPS", 0)
    monkeypatch.setattr(blas, "MIN_BLOCK_COLUMNS", 1)
    if native.enabled():
        native._native.set_threads(3, part_work=1, lag=0, part_elements=256)
        yield threads.pool()
        native._native.set_threads(threads.usable_cores(), part_work=0, lag=1, part_elements=0)
    else:
        yield threads.pool()


def test_every_part_runs_once_and_errors_reach_the_caller(pool_of_three):
    hits = [0] * 50
    names = set()

    def part(i):
        hits[i] += 1
        names.add(threading.current_thread().name)
    pool_of_three.run_parts([lambda i=i: part(i) for i in range(50)])
    assert hits == [1] * 50
    with pytest.raises(ZeroDivisionError):
        pool_of_three.run_parts([lambda: None, lambda: 1 / 0, lambda: None])


def test_parts_on_a_worker_do_not_split_again(pool_of_three):
    inner = []

    def outer():
        pool_of_three.run_parts([lambda: inner.append(threading.current_thread().name)] * 2)
    pool_of_three.run_parts([outer] * 4)   # would deadlock if a worker queued parts behind itself
    assert len(inner) == 8


def test_many_callers_share_the_pool(pool_of_three):
    results, errors = {}, []

    def caller(k):
        try:
            for _ in range(20):
                values = [0] * 7
                pool_of_three.run_parts([lambda i=i: values.__setitem__(i, i * k) for i in range(7)])
                assert values == [i * k for i in range(7)]
            results[k] = True
        except Exception as error:   # noqa: BLE001 (reported below)
            errors.append(error)
    callers = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(30)
    assert not errors and len(results) == 6


def test_idle_workers_do_not_spin(pool_of_three):
    pool_of_three.run_parts([lambda: None] * 6)
    before = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - before < 0.05   # two spinning workers would burn ~0.6 s of CPU here


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(threads.ENV_THREADS, "3")
    assert threads.usable_cores() == 3
    monkeypatch.setenv(threads.ENV_THREADS, "")
    assert threads.usable_cores() == len(__import__("os").sched_getaffinity(0))


@pytest.mark.parametrize("count,parts", [(10, 3), (2, 5), (7, 7), (1, 1), (100, 4)])
def test_split_covers_the_range(count, parts):
    ranges = threads.split(count, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == count and len(ranges) <= parts
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


@pytest.mark.parametrize("case", DEPTHWISE[:5], ids=lambda case: "x".join(map(str, case[0])))
def test_depthwise_split_by_planes(case, pool_of_three):
    x, w, b, out, want, params = depthwise_case(*case)
    run = native.bind_depthwise(x, w, b, out, params)
    run()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", POOLS, ids=lambda case: f"{case[1]}-" + "x".join(map(str, case[0])))
def test_pooling_split_by_planes(case, pool_of_three):
    x, out, attrs = pool_case(*case)
    want = reference_pool(x, out.shape, attrs)
    bind_pool(x, out, attrs)()
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [DEPTHWISE[0], DEPTHWISE[1]], ids=["same-size", "shrinking"])
def test_split_over_its_own_input(case, pool_of_three):
    x, w, b, out, want, params = depthwise_case((1, 24) + case[0][2:], *case[1:])
    inplace = over_input(x, out.shape)
    native.bind_depthwise(x, w, b, inplace, params)()
    np.testing.assert_allclose(inplace, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shapes", [((7, 33), (33, 300)), ((3, 4, 9), (9, 130)), ((2, 3, 5, 6), (2, 3, 6, 70))])
def test_products_split_by_column_blocks(shapes, pool_of_three):
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    out = np.empty(want.shape, np.float32)
    blas.bind_gemm(a, b, out, 1)()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(blas.matmul(a, b, flops=1), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet", "unet"])
def test_models_split_and_from_four_threads(name, pool_of_three):
    case = MODELS[name]
    model = case.build()
    engine = edgert.load(edgert.build(model).to_bytes())
    feeds = [{k: rng.standard_normal(shape).astype(np.float32) for k, shape in case.shapes.items()} for _ in range(4)]
    want = [ort_run(model, f) for f in feeds]
    got, errors = [None] * 4, []

    def run(i):
        try:
            context = engine.create_execution_context()
            for _ in range(3):
                got[i] = context.execute(feeds[i])
        except Exception as error:   # noqa: BLE001 (reported below)
            errors.append(error)
    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert not errors, errors
    for i in range(4):
        for key, value in want[i].items():
            assert normwise_error(got[i][key], value) <= 1e-5, (i, key)


@pytest.mark.parametrize("case", [((1, 64, 98, 98), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), None),   # > 16 MiB
                                  ((1, 5, 23, 19), (3, 3), (2, 1), (1, 2), (1, 0, 2, 1), 600),
                                  ((1, 3, 30, 31), (7, 7), (2, 2), (1, 1), (3, 3, 3, 3), 2000)],
                         ids=["16MiB", "odd-tiles", "stem-tiles"])
@pytest.mark.parametrize("bias", [True, False])
def test_convolution_in_column_tiles(case, bias, pool_of_three, monkeypatch):
    from edgert.kernels.cpu import convolution_prepared
    from edgert.kernels.registry import lookup
    from edgert.ir.kinds import LayerKind
    from edgert.runtime.engine import Workspace
    from test_cpu_native import output_shape
    x_shape, kernel, strides, dilations, pads, tile_bytes = case
    monkeypatch.setattr(convolution_prepared, "_direct_pays", lambda *args: False)   # the column path, not direct
    if tile_bytes is not None:   # tiny tiles: many of them, a last one shorter, and every column size tiled
        monkeypatch.setattr(convolution_prepared, "COLUMN_TILE_BYTES", tile_bytes)
        monkeypatch.setattr(convolution_prepared, "PREPARED_COLUMN_BYTES", 0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((8, x_shape[1], *kernel)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32) if bias else None
    out = np.full(output_shape(x_shape, 8, kernel, strides, dilations, pads), np.nan, np.float32)
    attrs = {"kernel": list(kernel), "strides": list(strides), "dilations": list(dilations), "pads": list(pads)}
    want = np.empty_like(out)
    lookup(LayerKind.CONVOLUTION)(attrs, [x, w, b], [want])

    class Engine:   # Workspace needs the engine's constants (none here) and a cache
        constants, derived = {}, {}
    run = convolution_prepared.prepare_convolution(attrs, [x, w] + ([b] if bias else []), [out], Workspace(Engine()))
    assert run is not None
    run()
    assert normwise_error(out, want) <= 1e-5
    if tile_bytes is None:
        assert math.prod(w.shape[1:]) * math.prod(out.shape[2:]) * 4 > convolution_prepared.PREPARED_COLUMN_BYTES


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def measure(choice, split_seconds, inline_seconds):
    """Answer one measuring round of ``choice``; the ways it asked for, in order."""
    asked = []
    while len(asked) < 2 * threads.SPLIT_SAMPLES:
        split = choice.want_split()
        asked.append(split)
        choice.record(split, split_seconds if split else inline_seconds)
    return asked


def test_choice_measures_both_ways_then_keeps_the_faster():
    choice = threads.SplitChoice(FakeClock())
    assert measure(choice, 1.0, 2.0) == [True, False] * threads.SPLIT_SAMPLES
    assert choice.split is True and choice.decisions == 1
    for _ in range(threads.RECHECK_FIRST - 1):
        assert choice.want_split() is True
        choice.record(True, 1.0)
    choice.record(True, 1.0)   # the RECHECK_FIRST-th run: measure again
    assert measure(choice, 3.0, 2.0) == [True, False] * threads.SPLIT_SAMPLES   # the core got busy
    assert choice.split is False and choice.decisions == 2
    assert choice.want_split() is False


def test_choice_takes_the_median_and_wants_a_real_gain():
    choice = threads.SplitChoice(FakeClock())
    answers = {True: iter([50.0, 1.0, 1.0]), False: iter([2.0, 2.0, 2.0])}   # an outlier among split's
    for _ in range(2 * threads.SPLIT_SAMPLES):
        split = choice.want_split()
        choice.record(split, next(answers[split]))
    assert choice.split is True
    tie = threads.SplitChoice(FakeClock())
    measure(tie, threads.SPLIT_GAIN * 1.01, 1.0)   # saves under 1 - SPLIT_GAIN: not worth the second core
    assert tie.split is False


def test_recheck_interval_doubles_while_the_choice_holds_and_resets_when_it_changes():
    choice = threads.SplitChoice(FakeClock())
    intervals = []
    for _ in range(12):
        measure(choice, 1.0, 2.0)
        runs = 0
        while choice.want_split() is True and not choice.measuring:
            choice.record(True, 1.0)
            runs += 1
        intervals.append(runs)
    expected = [min(threads.RECHECK_FIRST << i, threads.RECHECK_LAST) for i in range(12)]
    assert intervals == expected and expected[-1] == threads.RECHECK_LAST
    measure(choice, 2.0, 1.0)   # changed: re-check soon
    runs = 0
    while not choice.measuring:
        choice.record(choice.want_split(), 1.0)
        runs += 1
    assert runs == threads.RECHECK_FIRST


def test_staggered_choices_recheck_later():
    clock = FakeClock()
    choice = threads.SplitChoice(clock, stagger=0.5)
    measure(choice, 1.0, 2.0)
    runs = 0
    while not choice.measuring:
        choice.record(True, 1.0)
        runs += 1
    assert runs == threads.RECHECK_FIRST * 3 // 2
    measure(choice, 1.0, 2.0)
    clock.now += threads.RECHECK_SECONDS * 1.49
    choice.record(True, 1.0)
    assert not choice.measuring
    clock.now += threads.RECHECK_SECONDS * 0.02
    choice.record(True, 1.0)
    assert choice.measuring
    pool = threads.WorkerPool(1)
    staggers = sorted(pool.region([print, print]).choice.stagger for _ in range(8))
    assert all(0 <= s < 1 for s in staggers) and min(b - a for a, b in zip(staggers, staggers[1:])) > 0.05


def test_choice_rechecks_after_seconds_however_few_runs():
    clock = FakeClock()
    choice = threads.SplitChoice(clock)
    for _ in range(5):   # a long interval
        measure(choice, 1.0, 2.0)
        while not choice.measuring:
            choice.record(True, 1.0)
    measure(choice, 1.0, 2.0)
    choice.record(True, 1.0)
    assert not choice.measuring
    clock.now += threads.RECHECK_SECONDS
    choice.record(True, 1.0)
    assert choice.measuring


def test_lagging_worker_pauses_splitting_and_waiting_uses_no_cpu():
    pool = threads.WorkerPool(2)
    started = threading.Event()

    def part():
        if threading.current_thread().name.startswith("edgert-cpu"):   # "preempted": holds up the caller
            started.set()
            time.sleep(0.4)
        else:
            assert started.wait(10)   # the worker has the other part
    cpu = time.process_time()
    assert pool.run([part, part], True) is True
    assert time.process_time() - cpu < 0.1   # a caller spinning for its worker would burn ~0.4 s
    assert pool.lags == 1
    names = []
    assert pool.run([lambda: names.append(threading.current_thread().name)] * 4, True) is False
    assert set(names) == {threading.current_thread().name}


def test_lag_pause_grows_while_splits_lag_and_shrinks_with_calm():
    clock = FakeClock()
    pool = threads.WorkerPool(2, clock)
    pauses = []
    for _ in range(10):   # a lag right after each pause: the load is still there
        pool._lagged(True)
        pauses.append(pool._inline_until - clock.now)
        assert pool.run([lambda: None] * 2, True) is False   # inline during the pause
        clock.now = pool._inline_until
    assert pauses[0] == pytest.approx(threads.LAG_PAUSE_FIRST) and pauses[-1] == pytest.approx(threads.LAG_PAUSE_LAST)
    assert all(b == pytest.approx(min(2 * a, threads.LAG_PAUSE_LAST)) for a, b in zip(pauses, pauses[1:]))
    assert pool.run([lambda: None] * 2, True) is True   # the pause is over: split again
    pool._lagged(False)
    clock.now += 2.5 * threads.LAG_PAUSE_LAST   # two whole calm periods: a quarter of the last pause
    pool._lagged(True)
    assert pool._inline_until - clock.now == pytest.approx(threads.LAG_PAUSE_LAST / 4)
    clock.now += 1e6   # long calm: back to the first pause
    pool._lagged(True)
    assert pool._inline_until - clock.now == pytest.approx(threads.LAG_PAUSE_FIRST)
    assert pool.lags == 12


def test_callers_beyond_the_pool_size_run_inline(pool_of_three):
    pool_of_three._callers = pool_of_three.size   # as many callers running parts as there are threads
    names = []
    assert pool_of_three.run([lambda: names.append(threading.current_thread().name)] * 6, True) is False
    assert set(names) == {threading.current_thread().name}
    pool_of_three._callers = 0
    assert pool_of_three.run([lambda: None] * 6, True) is True


def test_region_records_only_runs_that_went_as_asked():
    clock = FakeClock()
    pool = threads.WorkerPool(2, clock)
    calls = []
    region = pool.region([lambda: calls.append(1)] * 2)
    pool._inline_until = float("inf")   # pausing: every run inline
    for _ in range(4):
        region()
    assert len(calls) == 8
    assert region.choice._samples == {True: [], False: []}   # it asked for split runs: none recorded
    assert pool.stats() == {"split": 0, "inline": 0, "measuring": 1, "lags": 0}
    assert pool.region([print]) is print   # nothing to split


@pytest.mark.parametrize("shape", [(64, 48, 200), (7, 300, 130), (128, 64, 64)], ids=lambda s: "x".join(map(str, s)))
def test_split_and_inline_runs_are_bit_identical(shape, pool_of_three):
    m, k, n = shape   # a product by column blocks over the pool (the Python pool's regions: float64 / odd layouts)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    out, want = np.empty((m, n), np.float32), a.astype(np.float64) @ b
    run = blas.bind_gemm(a, b, out, 2 * m * n * k)
    assert isinstance(run, threads.Region)
    outputs = []
    for _ in range(2 * threads.SPLIT_SAMPLES + 2):   # both ways while it measures, then its choice
        out[...] = np.nan
        run()
        outputs.append(out.copy())
    assert all(np.array_equal(o, outputs[0]) for o in outputs)
    np.testing.assert_allclose(outputs[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mobilenetv2", "unet", "transformer"])
def test_one_and_two_threads_are_bit_identical(name, native_restored, monkeypatch):
    monkeypatch.setattr(native, "PARALLEL_MIN_WORK", 0)
    if native.enabled():   # the native kernels in the most parts, their lag pause off
        native._native.set_threads(2, part_work=1, lag=0, part_elements=256)
    case = MODELS[name]
    plan = edgert.build(case.build()).to_bytes()
    feeds = {k: rng.standard_normal(shape).astype(np.float32) for k, shape in case.shapes.items()}
    results = []
    for size in (1, 2):
        monkeypatch.setattr(threads, "_pool", threads.WorkerPool(size))
        context = edgert.load(plan).create_execution_context()
        results.append([{k: v.copy() for k, v in context.execute(feeds).items()} for _ in range(8)])
    first = results[0][0]
    for run in results[0] + results[1]:
        for key, value in first.items():
            assert np.array_equal(run[key], value), key


def test_bench_reports_the_regions(tmp_path, capsys, monkeypatch):
    import json

    import onnx
    from onnx import TensorProto, helper

    from edgert.tools.cli import main
    # a float64 product of 2 x 256^3 flops: column blocks over the worker pool (float32 ones split in C)
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [256, 256])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [256, 256])
    w = helper.make_tensor("w", TensorProto.DOUBLE, [256, 256], np.ones(256 * 256).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "product", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    assert main(["build", str(tmp_path / "m.onnx"), "-o", str(plan)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(threads, "_pool", threads.WorkerPool(threads.usable_cores()))   # no pause left by others
    monkeypatch.setattr(threads, "LAG_MIN_SECONDS", float("inf"))   # none now: it decides after its 6 timed runs
    assert main(["bench", str(plan), "--iterations", "12", "--warmup", "0", "--json"]) == 0
    regions = json.loads(capsys.readouterr().out)["cpu_regions"]
    if threads.thread_count() > 1:   # one region, decided after its first 2 * SPLIT_SAMPLES runs
        assert regions["split"] + regions["inline"] == 1 and regions["measuring"] == 0
    else:
        assert regions == {"split": 0, "inline": 0, "measuring": 0, "lags": 0}
    assert main(["bench", str(plan), "--iterations", "3"]) == 0
    assert "CPU layers split over the worker pool: " in capsys.readouterr().out


def _three_ways(region):
    """Outputs of ``region`` run split, as its parts in turn, and as its whole call (each after NaN-filling)."""
    out = region.out
    results = []
    for way in (lambda: region.pool.run(region.parts, True), lambda: threads._inline(region.parts, None),
                region.whole):
        out[...] = np.nan
        way()
        results.append(out.copy())
    return results


def _native_planes():
    """(run, out) of the depthwise convolutions and poolings of test_cpu_native."""
    for case in DEPTHWISE:
        x, w, b, out, _, params = depthwise_case(*case)
        yield native.bind_depthwise(x, w, b, out, params), out
    for case in POOLS:
        x, out, attrs = pool_case(*case)
        yield bind_pool(x, out, attrs), out


def _native_rows():
    """(run, out) of softmax, layer normalization and a GELU program large enough to split into parts."""
    x = rng.standard_normal((37, 3000)).astype(np.float32)
    out = np.empty_like(x)
    yield native.bind_softmax(x, out, (1,)), out
    scale, bias = rng.standard_normal(3000).astype(np.float32), rng.standard_normal(3000).astype(np.float32)
    norm_out = np.empty_like(x)
    yield native.bind_layernorm(x, norm_out, (1,), scale, bias, 1e-5), norm_out
    gelu = [{"kind": "Activation", "attrs": {"type": "gelu_erf"}, "args": [0]}]
    y = rng.standard_normal(5 * 4096 + 77).astype(np.float32)
    program_out = np.empty_like(y)
    yield native.bind_program(gelu, [y], program_out), program_out


def _native_convolutions():
    """(run, out) of direct and pointwise convolutions with epilogues, bound as the prepare hooks bind them."""
    from test_cpu_native_conv import CASES, EPILOGUES, direct_case
    from test_cpu_native_conv1x1 import SHAPES
    for case in CASES:
        x, w, b, out, _, _, params = direct_case(*case)
        yield native.bind_conv_direct(x, native.pack_direct_weights(w), b, out, params,
                                      native.activation_program([{"type": "swish"}])), out
    for channels, columns, out_channels in SHAPES + [(24, 600, 40), (96, 49, 200)]:
        x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((channels, columns), (out_channels, channels),
                                                                         (out_channels,)))
        residual = rng.standard_normal((out_channels, columns)).astype(np.float32)
        out = np.empty((out_channels, columns), np.float32)
        steps, _ = EPILOGUES[sorted(EPILOGUES)[columns % len(EPILOGUES)]]
        records, fused, _ = native.epilogue_program(steps, [x, w, b, residual], out)
        yield native.bind_conv_pointwise(x, native.pack_direct_weights(w[:, :, None, None]), b, out, records,
                                         fused), out


@pytest.mark.skipif(not native.enabled(), reason="native module not built")
def test_native_kernels_split_give_the_one_thread_bits(pool_of_three):
    """Direct and pointwise convolutions, softmax, layer normalization and per-element programs cut into the most parts
    over native_parallel.c's 3 threads, against the same calls on one thread: the same bits (each part computes its
    outputs as the whole call would)."""
    cases = list(_native_convolutions()) + list(_native_rows()) + list(_native_planes())
    assert cases and all(run is not None for run, _ in cases)
    for run, out in cases:
        results = []
        for count in (1, 3):
            native._native.set_threads(count)
            out[...] = np.nan
            run()
            results.append(out.copy())
        assert not np.isnan(results[0]).any()
        assert np.array_equal(results[0], results[1])
