"""CPU latency: edgert vs onnxruntime, same process, interleaved runs, medians.

    python benchmarks/cpu.py [--models resnet unet ...] [--zoo] [--reps 30] [--threads 2] [--layers 5]

``--layers N`` then lists each model's N slowest edgert layers (median of the same number of runs),
marking the ones whose kernel has no prepared fast path: where to look next.
"""

from __future__ import annotations

import datetime
import statistics
import time

import numpy as np

import _models


def feeds_for(engine) -> dict:
    rng = np.random.default_rng(0)
    return {b.name: rng.standard_normal(b.shape).astype(b.dtype) for b in engine.inputs}


def main() -> None:
    import onnxruntime as ort

    import edgert

    parser = _models.parser(__doc__)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-opt", action="store_true", help="also time edgert with every graph pass off")
    parser.add_argument("--layers", type=int, default=0, metavar="N", help="list each model's N slowest layers")
    args = parser.parse_args()

    print(f"# edgert vs onnxruntime {ort.__version__} on CPU — {_models.machine()}, "
          f"{datetime.date.today()}, {args.threads} threads, median of {args.reps} interleaved runs")
    unopt = " edgert unoptimized ms | speed-up from passes |" if args.no_opt else ""
    print("| model | edgert ms | onnxruntime ms | ratio |" + unopt)
    print("| --- | ---: | ---: | ---: |" + (" ---: | ---: |" if args.no_opt else ""))
    slowest = {}
    for name, (model, shapes) in _models.select(args.models, args.zoo).items():
        engine = edgert.load(edgert.build(model, shapes=shapes))
        context = engine.create_execution_context()
        plain = edgert.load(edgert.build(model, shapes=shapes, optimize=False)).create_execution_context() \
            if args.no_opt else None
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        # Idle onnxruntime workers spin by default and steal the cores edgert's BLAS threads need
        # (same process, interleaved): let them sleep, as edgert's do.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = feeds_for(engine)
        runs = {"ours": context.execute, "theirs": lambda f: session.run(None, f)}
        if plain is not None:
            runs["plain"] = plain.execute
        times = {key: [] for key in runs}
        for _ in range(3):  # warm-up
            for run in runs.values():
                run(feeds)
        for _ in range(args.reps):
            for key, run in runs.items():
                started = time.perf_counter()
                run(feeds)
                times[key].append(time.perf_counter() - started)
        a, b = (statistics.median(times[k]) * 1e3 for k in ("ours", "theirs"))
        row = f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f}x |"
        if plain is not None:
            c = statistics.median(times["plain"]) * 1e3
            row += f" {c:.2f} | {c / a:.2f}x |"
        print(row, flush=True)
        if args.layers:
            slowest[name] = slowest_layers(context, feeds, args.reps, args.layers)
    for name, rows in slowest.items():
        print(f"\n{name}: slowest layers (µs, * = no prepared fast path)")
        for micros, text in rows:
            print(f"  {micros:9.1f}  {text}")


def slowest_layers(context, feeds, reps: int, count: int) -> list[tuple[float, str]]:
    """The ``count`` slowest layers of one context: (median µs, description)."""
    context.execute(feeds)   # inputs in place; each layer's run() then repeats on the same arrays
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


if __name__ == "__main__":
    main()
