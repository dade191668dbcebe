"""The shared worker pool (kernels/cpu/threads.py) and the kernels split over it.

The pool: every part runs once, errors reach the caller, parts on a worker never split again, several
callers at once all get their results, idle workers use no CPU. The kernels: depthwise convolution, pooling,
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
def pool_of_three(monkeypatch):
    """A pool of 3 with every split threshold at 0, restored after the test."""
    monkeypatch.setattr(threads, "_pool", threads.WorkerPool(3))
    monkeypatch.setattr(native, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(blas, "PARALLEL_GEMM_FLOPS", 0)
    monkeypatch.setattr(blas, "MIN_BLOCK_COLUMNS", 1)
    return threads.pool()


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


def test_lagging_workers_make_the_next_batches_run_inline(pool_of_three, monkeypatch):
    monkeypatch.setattr(threads, "BACKOFF_BATCHES", 3)
    caller = threading.current_thread().name

    def slow_on_a_worker():   # a worker's part "preempted" for 50 ms; the caller's take 2 ms (workers wake meanwhile)
        time.sleep(0.05 if threading.current_thread().name != caller else 0.002)
    pool_of_three.run_parts([slow_on_a_worker] * 6)
    assert pool_of_three._inline_left == 3
    names = []
    for _ in range(3):
        pool_of_three.run_parts([lambda: names.append(threading.current_thread().name)] * 4)
    assert set(names) == {caller} and pool_of_three._inline_left == 0
