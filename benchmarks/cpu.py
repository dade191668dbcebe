"""CPU latency: edgert vs onnxruntime, same process, interleaved runs, medians and spread.

    python benchmarks/cpu.py [MODEL.onnx ...] [--models resnet unet ...] [--zoo] [--corpus [NAME ...]]
                             [--corpus-cache DIR] [--reps 30] [--threads 2] [--layers N] [--kinds] [--load]
                             [--load-runs 100] [--contexts 4] [--no-opt] [--no-direct]

Issue 16's three targets, on an otherwise idle machine (2 cores, 2 threads each; every command prints both
onnxruntime columns, spinning off and on):

    python benchmarks/cpu.py --zoo --corpus --reps 30                 # 1. every ratio <= 1.3x, median <= 1.1x
    python benchmarks/cpu.py --zoo --corpus --reps 30 --load          # 2. edgert's loaded p99 <= 2x its idle p50
    python benchmarks/cpu.py --zoo --corpus --reps 30 --contexts 4    # 3. 4 contexts >= 1.0x one context

Every run interleaves edgert with onnxruntime twice (``intra_op_num_threads`` = --threads, its idle workers
spinning off and on: ``ort`` / ``ort-spin``); ratios are edgert's median over each. Spread is p10-p90. After
each ``ort-spin`` run the next side waits 20 ms: its workers go on spinning after the run returns.

- ONNX files given on the command line are benchmarked beside the selected models (dynamic dims: 1).
- ``--corpus`` adds the real-models corpus (benchmarks/corpus_models.py; exported files from --corpus-cache, as
  benchmarks/corpus.py writes them) at each model's sample shapes: every cached model, or the NAMEs given. The
  issue's kinds of model: ``yolov8n yolo11n`` (anchor-free SiLU detectors), ``tv_mobilenet_v3_small timm_lcnet_050``
  (HardSwish / depthwise / squeeze-excite classifiers), ``tv_lraspp_mobilenet_v3_large`` (segmentation head),
  ``crnn_bilstm_ctc`` (text recognizer), ``tv_vit_ti_16`` (GELU transformer blocks).
- ``--no-direct`` adds a column: edgert with the native direct convolution off (``EDGERT_CPU_DIRECT=0``: im2col +
  GEMM for every convolution), a second context of the same engine interleaved with the others.
- ``--layers N`` lists each model's N slowest edgert layers (``*``: no prepared fast path).
- ``--kinds`` prints time per layer kind: edgert's (its layers timed one by one) beside onnxruntime's
  profile per op type (both medians over --reps runs).
- ``--load`` keeps one core busy with another process (spinning, pinned to the last usable core) and reports
  each side's p50/p99 under load against its idle p50 (issue 16: edgert's p99 <= 2x its idle p50):
  ``--load-runs`` (100) loaded runs of each side and as many idle ones, in alternating blocks of 10, the three
  sides interleaved in each; the p99 is also given over the table's p50, measured before any load (the idle
  blocks' p50 can include runs still inline after a loaded block: kernels/cpu/threads.py's lag pause); also
  how many of edgert's parallel regions ended split or inline, and how often a lagging worker paused splitting.
- ``--contexts K`` runs K execution contexts in K threads and reports their throughput against one
  context's (issue 16: >= 1.0x): 3 rounds, one context then K, medians and the ratio of each round.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import statistics
import threading
import time

import numpy as np

import _models
from corpus import DEFAULT_CACHE


def feeds_for(engine) -> dict:
    rng = np.random.default_rng(0)
    return {b.name: rng.standard_normal(b.shape).astype(b.dtype) for b in engine.inputs}


def ort_session(model_bytes: bytes, threads: int, spinning: bool, profile: bool = False):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.enable_profiling = profile
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def percentile(samples, q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1e3, q))


# onnxruntime's spinning workers go on spinning after its run returns and slow whatever runs next (edgert right
# after it: 23.8 ms vs 17.2 ms after the non-spinning session, MobileNet-v3-small on the shared 2-core VM): the
# next side waits this long after each such run
SETTLE_AFTER = {"ort-spin": 0.02}


def interleaved(runs: dict, feeds: dict, reps: int, warmup: int = 3) -> dict:
    """name -> list of seconds, the runs taking turns (``warmup`` untimed rounds first; SETTLE_AFTER)."""
    times = {key: [] for key in runs}
    for _ in range(warmup):
        for run in runs.values():
            run(feeds)
    for _ in range(reps):
        for key, run in runs.items():
            started = time.perf_counter()
            run(feeds)
            times[key].append(time.perf_counter() - started)
            if key in SETTLE_AFTER:
                time.sleep(SETTLE_AFTER[key])
    return times


LOAD_BLOCK = 10   # runs of each side per block; idle and loaded blocks alternate
CONTEXT_WARMUP = 8


def _spin(go, core) -> None:
    """Keep ``core`` busy while ``go`` is set (blocked, using no CPU, while it is clear)."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    while True:
        go.wait()
        while go.is_set():
            for _ in range(20000):
                pass


class Spinner:
    """Another process that keeps one core busy on demand: the last core this process may use, pinned there
    (issue 16: "one of the two cores kept busy by another process")."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self.go = context.Event()
        core = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self.process = context.Process(target=_spin, args=(self.go, core), daemon=True)
        self.process.start()

    def busy(self, on: bool) -> None:
        self.go.set() if on else self.go.clear()
        time.sleep(0.05)   # let it get going, or finish its last loop

    def close(self) -> None:
        self.process.terminate()
        self.process.join()


def under_load(runs: dict, feeds: dict, loaded_runs: int) -> dict:
    """name -> (idle p50, loaded p50, loaded p99) in ms: ``loaded_runs`` runs of each side with one core kept
    busy by another process and as many idle, in alternating blocks of LOAD_BLOCK (interleaved inside each)."""
    idle = {key: [] for key in runs}
    loaded = {key: [] for key in runs}
    spinner = Spinner()
    try:
        interleaved(runs, feeds, 0)   # warm-up
        for block in range(2 * -(-loaded_runs // LOAD_BLOCK)):
            spinner.busy(block % 2 == 1)
            for key, samples in interleaved(runs, feeds, LOAD_BLOCK, warmup=0).items():
                (loaded if block % 2 else idle)[key] += samples
    finally:
        spinner.close()
    return {key: (percentile(idle[key], 50), percentile(loaded[key], 50), percentile(loaded[key], 99))
            for key in runs}


def context_throughput(engine, feeds: dict, contexts: int, runs_each: int, rounds: int = 3) -> list:
    """Per round, (runs/s of one context, runs/s of ``contexts`` contexts in as many threads), the two taking
    turns; every context (the single one too) first runs CONTEXT_WARMUP times (its parallel regions choose
    between split and inline over their first runs: kernels/cpu/threads.py)."""
    single = engine.create_execution_context()
    many = [engine.create_execution_context() for _ in range(contexts)]
    for context in [single] + many:
        for _ in range(CONTEXT_WARMUP):
            context.execute(feeds)
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(runs_each * contexts):
            single.execute(feeds)
        one = runs_each * contexts / (time.perf_counter() - started)
        barrier = threading.Barrier(contexts + 1)

        def work(context):
            barrier.wait()
            for _ in range(runs_each):
                context.execute(feeds)
        workers = [threading.Thread(target=work, args=(c,)) for c in many]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        results.append((one, runs_each * contexts / (time.perf_counter() - started)))
    return results


def edgert_kind_times(context, feeds: dict, reps: int) -> dict:
    """layer kind -> µs per run (sum over its layers of each layer's median)."""
    context.execute(feeds)   # inputs in place; each layer's run() then repeats on the same arrays
    times = [[] for _ in context._runs]
    with np.errstate(all="ignore"):
        for _ in range(reps):
            for index, run in enumerate(context._runs):
                started = time.perf_counter()
                run()
                times[index].append(time.perf_counter() - started)
    kinds: dict = {}
    for (step, _), samples in zip(context._steps, times):
        kinds[step.kind.value] = kinds.get(step.kind.value, 0.0) + statistics.median(samples) * 1e6
    return kinds


def ort_kind_times(model_bytes: bytes, feeds: dict, threads: int, reps: int) -> dict:
    """op type -> µs per run, from onnxruntime's own profile (median over runs of each node's time)."""
    import json
    session = ort_session(model_bytes, threads, spinning=False, profile=True)
    for _ in range(reps + 3):
        session.run(None, feeds)
    path = session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    per_node: dict = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_node.setdefault((event["args"].get("op_name", "?"), event["name"]), []).append(event["dur"])
    kinds: dict = {}
    for (op, _), durations in per_node.items():
        kinds[op] = kinds.get(op, 0.0) + statistics.median(durations[3:] or durations)
    return kinds


def slowest_layers(context, feeds, reps: int, count: int) -> list[tuple[float, str]]:
    """The ``count`` slowest layers of one context: (median µs, description)."""
    context.execute(feeds)
    times = [[] for _ in context._runs]
    with np.errstate(all="ignore"):
        for _ in range(reps):
            for index, run in enumerate(context._runs):
                started = time.perf_counter()
                run()
                times[index].append(time.perf_counter() - started)
    rows, generic = [], set(context.unprepared_layers())
    for (step, outs), samples in zip(context._steps, times):
        shapes = " ".join("x".join(map(str, out.shape)) for out in outs)
        mark = "*" if step.name in generic else " "
        rows.append((statistics.median(samples) * 1e6, f"{mark} {step.kind.value} {step.name} -> {shapes}"))
    return sorted(rows, reverse=True)[:count]


def onnx_files(paths: list[str]) -> dict:
    import onnx
    models = {}
    for path in paths:
        model = onnx.load(path)
        shapes = {}
        for value in model.graph.input:
            dims = value.type.tensor_type.shape.dim
            if any(not d.HasField("dim_value") for d in dims):
                shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
        models[os.path.basename(path)] = (model, shapes or None)
    return models


def corpus_files(names: list[str], cache: str) -> dict:
    """name -> (ModelProto, sample shapes) of the corpus models exported to ``cache`` (all of them without names)."""
    import onnx

    from corpus_models import CORPUS
    unknown = [n for n in names if n not in CORPUS]
    if unknown:
        raise SystemExit(f"unknown corpus model(s) {unknown}; choose from {sorted(CORPUS)}")
    models = {}
    for name in names or sorted(CORPUS):
        path = os.path.join(cache, f"{name}.onnx")
        if not os.path.exists(path):
            print(f"# {name}: not exported to {cache} (python benchmarks/corpus.py --only {name}); skipped", flush=True)
            continue
        feeds = CORPUS[name].sample(np.random.default_rng(0))
        models[f"corpus/{name}"] = (onnx.load(path), {k: v.shape for k, v in feeds.items()})
    return models


def parse_args():
    parser = _models.parser(__doc__)
    parser.add_argument("--corpus", nargs="*", metavar="NAME", help="real-models corpus: all exported, or these")
    parser.add_argument("--corpus-cache", default=DEFAULT_CACHE, metavar="DIR",
                        help=f"where benchmarks/corpus.py exported the corpus (default {DEFAULT_CACHE})")
    parser.add_argument("files", nargs="*", metavar="MODEL.onnx", help="ONNX files to benchmark too")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-opt", action="store_true", help="also time edgert with every graph pass off")
    parser.add_argument("--no-direct", action="store_true", help="also time edgert with the direct convolution off")
    parser.add_argument("--layers", type=int, default=0, metavar="N", help="list each model's N slowest layers")
    parser.add_argument("--kinds", action="store_true", help="time per layer kind against onnxruntime's profile")
    parser.add_argument("--load", action="store_true", help="p50/p99 with one core kept busy vs idle p50")
    parser.add_argument("--load-runs", type=int, default=100, metavar="N",
                        help="--load: loaded runs of each side (and as many idle ones; default 100)")
    parser.add_argument("--contexts", type=int, default=0, metavar="K", help="K contexts in K threads vs one")
    args = parser.parse_args()
    os.environ.setdefault("EDGERT_CPU_THREADS", str(args.threads))   # edgert's pool: the same count as ORT's
    return args


def models_for(args) -> dict:
    own = args.models or args.zoo or not (args.files or args.corpus is not None)
    models = _models.select(args.models, args.zoo) if own else {}
    if args.corpus is not None:
        models.update(corpus_files(args.corpus, args.corpus_cache))
    models.update(onnx_files(args.files))
    return models


def header(args) -> None:
    import onnxruntime as ort

    from edgert.kernels.cpu import native
    print(f"# edgert vs onnxruntime {ort.__version__} on CPU — {_models.machine()}, {datetime.date.today()}, "
          f"{args.threads} threads each, {args.reps} interleaved runs; edgert kernels: {native.status()}")
    extra = (" unoptimized ms |" if args.no_opt else "") + (" no direct conv ms |" if args.no_direct else "")
    print("| model | edgert ms (p10-p90) | ort ms | ort-spin ms | ratio vs ort | ratio vs ort-spin |" + extra)
    print("| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * extra.count("|"))


def main() -> None:
    import edgert
    from edgert.kernels.cpu import threads

    args = parse_args()
    models = models_for(args)
    header(args)
    extras = []
    for name, (model, shapes) in models.items():
        engine = edgert.load(edgert.build(model, shapes=shapes))
        regions = threads.pool().regions()
        context, model_bytes = engine.create_execution_context(), model.SerializeToString()
        regions = threads.pool().regions() - regions   # the context's parallel regions
        feeds = feeds_for(engine)
        quiet, spinning = (ort_session(model_bytes, args.threads, s) for s in (False, True))
        runs = {"edgert": context.execute, "ort": lambda f, s=quiet: s.run(None, f),
                "ort-spin": lambda f, s=spinning: s.run(None, f)}
        if args.no_opt:
            runs["plain"] = edgert.load(edgert.build(model, shapes=shapes, optimize=False)) \
                .create_execution_context().execute
        if args.no_direct:   # kernels are chosen when a context binds its layers
            before = os.environ.get("EDGERT_CPU_DIRECT")
            os.environ["EDGERT_CPU_DIRECT"] = "0"
            runs["im2col"] = engine.create_execution_context().execute
            os.environ.pop("EDGERT_CPU_DIRECT") if before is None else os.environ.update(EDGERT_CPU_DIRECT=before)
        times = interleaved(runs, feeds, args.reps)
        p50 = {key: percentile(value, 50) for key, value in times.items()}
        row = (f"| {name} | {p50['edgert']:.2f} ({percentile(times['edgert'], 10):.2f}-"
               f"{percentile(times['edgert'], 90):.2f}) | {p50['ort']:.2f} | {p50['ort-spin']:.2f} | "
               f"{p50['edgert'] / p50['ort']:.2f}x | {p50['edgert'] / p50['ort-spin']:.2f}x |")
        print(row + (f" {p50['plain']:.2f} |" if args.no_opt else "")
              + (f" {p50['im2col']:.2f} |" if args.no_direct else ""), flush=True)
        extras.append((name, engine, context, regions, feeds, model_bytes, runs, p50))
    for extra in extras:
        report_extras(args, *extra)


def _native_stats():
    """(calls split, calls of several parts run inline, lag pauses) of the native kernels' parallel loop, or None."""
    from edgert.kernels.cpu import native
    return native._native.parallel_stats()[1:] if native.enabled() else None


def report_extras(args, name, engine, context, regions, feeds, model_bytes, runs, p50) -> None:
    """--layers, --kinds, --load and --contexts for one model (``p50``: its medians in the table, ms)."""
    if args.layers:
        print(f"\n{name}: slowest layers (µs, * = no prepared fast path)")
        for micros, text in slowest_layers(context, feeds, args.reps, args.layers):
            print(f"  {micros:9.1f}  {text}")
    if args.kinds:
        ours, theirs = edgert_kind_times(context, feeds, args.reps), \
            ort_kind_times(model_bytes, feeds, args.threads, args.reps)
        print(f"\n{name}: µs per run by layer kind (edgert) | by op type (onnxruntime profile)")
        left, right = sorted(ours.items(), key=lambda kv: -kv[1]), sorted(theirs.items(), key=lambda kv: -kv[1])
        for i in range(max(len(left), len(right))):
            a = f"{left[i][0]:>16} {left[i][1]:9.1f}" if i < len(left) else " " * 26
            b = f"{right[i][0]:>20} {right[i][1]:9.1f}" if i < len(right) else ""
            print(f"  {a}  | {b}")
    if args.load:
        from edgert.kernels.cpu import threads
        lags = threads.pool().lags
        native_before = _native_stats()
        loaded = under_load({k: runs[k] for k in ("edgert", "ort", "ort-spin")}, feeds, args.load_runs)
        print(f"\n{name}: one core busy, {args.load_runs} runs each in blocks of {LOAD_BLOCK} alternating with as "
              f"many idle — ms idle p50 / loaded p50 / loaded p99 (p99 over idle p50; over the table's p50)")
        for key, (idle, busy, p99) in loaded.items():
            print(f"  {key:>8}: {idle:.2f} / {busy:.2f} / {p99:.2f} ({p99 / idle:.2f}x; {p99 / p50[key]:.2f}x)")
        stats = threads.pool().stats(regions)
        print(f"  edgert's parallel regions at the end: {stats['split']} split, {stats['inline']} inline, "
              f"{stats['measuring']} measuring; lag pauses during the runs: {stats['lags'] - lags}")
        if native_before is not None:
            split, inline, native_lags = (b - a for a, b in zip(native_before, _native_stats()))
            print(f"  edgert's native kernels (native_parallel.c) during the runs: {split} calls split, {inline} inline; "
                  f"lag pauses: {native_lags}")
    if args.contexts:
        rounds = context_throughput(engine, feeds, args.contexts, max(4, args.reps // args.contexts))
        ratios = [many / one for one, many in rounds]
        one, many = (statistics.median(values) for values in zip(*rounds))
        print(f"\n{name}: {args.contexts} contexts in {args.contexts} threads: {many:.1f} runs/s vs one context "
              f"{one:.1f} runs/s (medians of {len(rounds)} rounds; ratio per round "
              + ", ".join(f"{r:.2f}x" for r in ratios) + f"; median {statistics.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
