"""The CPU worker pool (kernels/cpu/threads.py) on single kernels: split vs inline vs the region's own choice,
idle and with one core kept busy by another process.

    python benchmarks/cpu_pool.py [--reps 200] [--threads 2] [--no-load]
    python benchmarks/cpu_pool.py --models mobilenetv2 zoo/squeezenet corpus/yolov8n ... [--reps 100]

For each kernel region (empty parts: the pool's own overhead; depthwise 3x3 and 5x5 by planes; a fused SiLU by
chunks; a matrix product by column blocks) the three ways take turns, call by call, in rotating order:
``inline`` (every part on the caller), ``split`` (over the pool, as far as the pool allows: the lag detector
may still run a call inline),
``region`` (the region's choice, measured and re-checked as it runs). Times in µs, medians and p99 over --reps
calls of each, first on the idle machine, then with a spinning process pinned to the last usable core; the
last column says what the region chose by the end and how many lag pauses the block saw.

With ``--models`` (test models, zoo/NAME, corpus/NAME from benchmarks/corpus.py's cache) it compares whole
models instead, contexts of one engine interleaved run by run: ``adaptive`` (the regions' own choices),
``split`` (every region asks to split; the lag detector still applies), ``1 thread`` (a pool of one: no
regions at all), and onnxruntime (2 threads, spinning off) for scale; medians and p99 in ms, idle then loaded.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import time

import numpy as np

import _models
from cpu import Spinner


def depthwise(channels: int, size: int, kernel: int):
    from edgert.kernels.cpu import native
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, channels, size, size), dtype=np.float32)
    w = rng.standard_normal((channels, 1, kernel, kernel), dtype=np.float32)
    out = np.empty_like(x)
    pad = kernel // 2
    params = ([kernel, kernel], [1, 1], [1, 1], [pad, pad], [pad, pad])
    return native.bind_depthwise(x, w, None, out, params)


def silu(elements: int):
    from edgert.kernels.cpu import native
    x = np.random.default_rng(0).standard_normal(elements, dtype=np.float32)
    program = [{"kind": "Activation", "attrs": {"type": "swish"}, "args": [0]}]
    return native.bind_program(program, [x], np.empty_like(x))


def product(m: int, k: int, n: int):
    from edgert.kernels.cpu import blas
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    return blas.bind_gemm(a, b, np.empty((m, n), np.float32), 2 * m * k * n)


def cases() -> dict:
    """name -> a Region of the worker pool (built with every split threshold as the kernels have it)."""
    from edgert.kernels.cpu import threads
    made = {"2 empty parts": threads.parallel([lambda: None, lambda: None]),
            "depthwise 3x3 96x56x56": depthwise(96, 56, 3),
            "depthwise 3x3 32x112x112": depthwise(32, 112, 3),
            "depthwise 5x5 240x14x14": depthwise(240, 14, 5),
            "SiLU 256k": silu(1 << 18),
            "SiLU 1M": silu(1 << 20),
            "product 64x576 @ 576x3136": product(64, 576, 3136)}
    return {name: region for name, region in made.items() if isinstance(region, threads.Region)}


def measure(regions: dict, reps: int) -> dict:
    """name -> {way: list of seconds}, the three ways taking turns call by call."""
    from edgert.kernels.cpu import threads
    pool = threads.pool()
    times = {}
    for name, region in regions.items():
        ways = {"inline": functools.partial(pool.run, region.parts, False),
                "split": functools.partial(pool.run, region.parts, True), "region": region}
        for run in ways.values():   # warm-up
            run()
        samples = {way: [] for way in ways}
        order = list(ways.items())
        for rep in range(reps):   # each way after each other in turn: none always follows a split
            for way, run in order[rep % 3:] + order[:rep % 3]:
                started = time.perf_counter()
                run()
                samples[way].append(time.perf_counter() - started)
        times[name] = samples
    return times


def table(title: str, regions: dict, times: dict, lags: int) -> None:
    print(f"\n{title} (lag pauses: {lags})")
    print("| region | inline µs (p99) | split µs (p99) | region µs (p99) | region's choice |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, samples in times.items():
        cells = [f"{np.median(s) * 1e6:.1f} ({np.percentile(s, 99) * 1e6:.1f})" for s in samples.values()]
        split = regions[name].choice.split
        choice = "measuring" if split is None else "split" if split else "inline"
        print(f"| {name} | " + " | ".join(cells) + f" | {choice} |")


class AlwaysSplit:
    """A region's choice that always asks to split (the pool before regions chose)."""
    split = True

    def want_split(self) -> bool:
        return True

    def record(self, split: bool, seconds: float) -> None:
        pass


def model_runs(model, shapes, threads_count: int) -> tuple[dict, dict]:
    """(name -> run(feeds), feeds) for one model: edgert adaptive, always split, one thread; onnxruntime."""
    import edgert
    from cpu import feeds_for, ort_session
    from edgert.kernels.cpu import threads
    engine = edgert.load(edgert.build(model, shapes=shapes))
    adaptive = engine.create_execution_context()
    own = threads.WorkerPool(threads_count)   # the split context's regions are this pool's, all of them
    shared, threads._pool = threads._pool, own
    try:
        split = engine.create_execution_context()
        for region in own.regions():
            region.choice = AlwaysSplit()
        threads._pool = threads.WorkerPool(1)
        single = engine.create_execution_context()
    finally:
        threads._pool = shared
    session = ort_session(model.SerializeToString(), threads_count, spinning=False)
    return ({"adaptive": adaptive.execute, "split": split.execute, "1 thread": single.execute,
             "ort": lambda feeds: session.run(None, feeds)}, feeds_for(engine))


def compare_models(names: list[str], reps: int, threads_count: int, load: bool) -> None:
    import _models
    from cpu import Spinner, corpus_files, interleaved, percentile
    from corpus import DEFAULT_CACHE
    own = [n for n in names if not n.startswith("corpus/")]
    models = _models.select(own, any(n.startswith("zoo/") for n in own)) if own else {}
    models.update(corpus_files([n[len("corpus/"):] for n in names if n.startswith("corpus/")], DEFAULT_CACHE))
    print("| model | state | " + " | ".join(f"{w} ms (p99)" for w in ("adaptive", "split", "1 thread", "ort"))
          + " |\n| --- | --- |" + " ---: |" * 4)
    for name, (model, shapes) in models.items():
        runs, feeds = model_runs(model, shapes, threads_count)
        spinner = Spinner() if load else None
        try:
            for state in ("idle", "loaded") if load else ("idle",):
                if spinner is not None:
                    spinner.busy(state == "loaded")
                times = interleaved(runs, feeds, reps)
                print(f"| {name} | {state} | " + " | ".join(
                    f"{percentile(t, 50):.2f} ({percentile(t, 99):.2f})" for t in times.values()) + " |", flush=True)
        finally:
            if spinner is not None:
                spinner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-load", action="store_true", help="only the idle block")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="compare whole models instead (see above)")
    args = parser.parse_args()
    os.environ.setdefault("EDGERT_CPU_THREADS", str(args.threads))
    from edgert.kernels.cpu import native, threads
    print(f"# edgert's worker pool — {_models.machine()}, {datetime.date.today()}, {threads.thread_count()} threads, "
          f"{args.reps} {'runs' if args.models else 'calls'} of each way; kernels: {native.status()}")
    if args.models:
        compare_models(args.models, args.reps, threads.thread_count(), not args.no_load)
        return
    regions = cases()
    lags = threads.pool().lags
    table("idle", regions, measure(regions, args.reps), threads.pool().lags - lags)
    if args.no_load:
        return
    spinner = Spinner()
    try:
        spinner.busy(True)
        lags = threads.pool().lags
        table("one core busy", regions, measure(regions, args.reps), threads.pool().lags - lags)
    finally:
        spinner.close()


if __name__ == "__main__":
    main()
