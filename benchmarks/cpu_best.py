"""CPU latency on a shared, loaded machine: best run, p10 and p50 rather than the median alone.

    python benchmarks/cpu_best.py --corpus NAME ... [--corpus-cache DIR] [--threads 2] [--reps 300]
    python benchmarks/cpu_best.py --before VENV_A/bin/python --after VENV_B/bin/python [--threads 1] [--reps 100]
                                  [--rounds 4] MODEL.onnx ...

When other jobs share the cores, a run's median measures them as much as the code (medians of one model moved
2.4 -> 11 ms between minutes here); its fastest runs measure the code. The first form interleaves edgert with
onnxruntime (spinning off, intra_op_num_threads = --threads) in one process and prints each side's min / p10 / p50
(ms) and the ratios; the second runs one process per measurement, alternating two edgert installs (models with
static input shapes), and prints the best over --rounds of each statistic per side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

ONE = r"""
import os, sys, time
os.environ["EDGERT_CPU_THREADS"] = sys.argv[2]
import numpy as np, onnx, edgert
engine = edgert.load(edgert.build(onnx.load(sys.argv[1])))
context = engine.create_execution_context()
rng = np.random.default_rng(0)
feeds = {b.name: rng.standard_normal(b.shape).astype(b.dtype) for b in engine.inputs}
for _ in range(10):
    context.execute(feeds)
times = []
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    context.execute(feeds)
    times.append(time.perf_counter() - started)
print(*np.percentile(np.array(times) * 1e3, [0, 10, 50]))
"""


def stats(samples) -> np.ndarray:
    return np.percentile(np.asarray(samples) * 1e3, [0, 10, 50])


def versus_ort(args) -> None:
    os.environ["EDGERT_CPU_THREADS"] = str(args.threads)
    import edgert
    from cpu import corpus_files, feeds_for, ort_session
    print(f"| model | threads | edgert min / p10 / p50 ms | ort min / p10 / p50 ms | ratio min | ratio p10 | ratio p50 |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: |")
    for name, (model, shapes) in corpus_files(args.corpus, args.corpus_cache).items():
        context = edgert.load(edgert.build(model, shapes=shapes)).create_execution_context()
        session = ort_session(model.SerializeToString(), args.threads, False)
        feeds = feeds_for(context.engine)
        runs = {"edgert": context.execute, "ort": lambda f, s=session: s.run(None, f)}
        times = {key: [] for key in runs}
        for rep in range(20 + args.reps):
            for key, run in runs.items():
                started = time.perf_counter()
                run(feeds)
                if rep >= 20:
                    times[key].append(time.perf_counter() - started)
        ours, theirs = stats(times["edgert"]), stats(times["ort"])
        print(f"| {name} | {args.threads} | {' / '.join(f'{v:.2f}' for v in ours)} | "
              f"{' / '.join(f'{v:.2f}' for v in theirs)} | " + " | ".join(f"{a / b:.2f}x" for a, b in zip(ours, theirs))
              + " |", flush=True)


def before_after(args) -> None:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    print(f"| model | threads | before min / p10 / p50 ms | after min / p10 / p50 ms | before / after (min) |")
    print("| --- | ---: | --- | --- | ---: |")
    for model in args.files:
        best = {}
        for _ in range(args.rounds):
            for side in (args.before, args.after):
                done = subprocess.run([side, "-c", ONE, os.path.abspath(model), str(args.threads), str(args.reps)],
                                      capture_output=True, text=True, env=env, cwd="/", check=False)
                if done.returncode:
                    raise SystemExit(f"{side} on {model} failed:\n{done.stderr}")
                values = np.array([float(v) for v in done.stdout.split()])
                best[side] = np.minimum(best.get(side, values), values)
        before, after = best[args.before], best[args.after]
        print(f"| {os.path.basename(model)} | {args.threads} | {' / '.join(f'{v:.2f}' for v in before)} | "
              f"{' / '.join(f'{v:.2f}' for v in after)} | {before[0] / after[0]:.2f}x |", flush=True)


def main() -> None:
    from corpus import DEFAULT_CACHE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--corpus-cache", default=DEFAULT_CACHE, metavar="DIR")
    parser.add_argument("--before", metavar="PYTHON")
    parser.add_argument("--after", metavar="PYTHON")
    parser.add_argument("files", nargs="*", metavar="MODEL.onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.before or args.after:
        if not (args.before and args.after and args.files):
            raise SystemExit("--before and --after take both installs' Pythons and the models to run")
        before_after(args)
    elif args.corpus:
        versus_ort(args)
    else:
        raise SystemExit("give --corpus NAME ... or --before/--after with models")


if __name__ == "__main__":
    sys.exit(main())
