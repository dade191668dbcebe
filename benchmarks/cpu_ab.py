"""Before/after on the CPU: two edgert installs (two venvs, e.g. main's and a branch's), one process per measurement,
alternating between them, so that load that comes and goes hits both alike.

    python benchmarks/cpu_ab.py --before VENV_A/bin/python --after VENV_B/bin/python [--threads 1] [--reps 20]
                                [--rounds 3] MODEL.onnx ...

Each process builds the model with its own edgert, runs it 3 times to warm up and prints the median of --reps runs;
the table lists every round's median (ms) of each side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

ONE = """
import os, sys, time, statistics
os.environ["EDGERT_CPU_THREADS"] = sys.argv[2]
import numpy as np, onnx, edgert
engine = edgert.load(edgert.build(onnx.load(sys.argv[1])))
context = engine.create_execution_context()
rng = np.random.default_rng(0)
feeds = {b.name: rng.standard_normal(b.shape).astype(b.dtype) for b in engine.inputs}
for _ in range(3):
    context.execute(feeds)
times = []
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    context.execute(feeds)
    times.append(time.perf_counter() - started)
print(statistics.median(times) * 1e3)
"""


def measure(python: str, model: str, threads: int, reps: int) -> float:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([python, "-c", ONE, model, str(threads), str(reps)], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode:
        raise SystemExit(f"{python} on {model} failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the Python of the install measured first")
    parser.add_argument("--after", required=True, help="the Python of the install measured second")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    print(f"| model | threads | before ms ({args.rounds} rounds) | after ms |")
    print("| --- | ---: | --- | --- |")
    for model in args.models:
        before, after = [], []
        for _ in range(args.rounds):
            before.append(measure(args.before, model, args.threads, args.reps))
            after.append(measure(args.after, model, args.threads, args.reps))
        name = os.path.splitext(os.path.basename(model))[0]
        print(f"| {name} | {args.threads} | {' / '.join(f'{t:.1f}' for t in before)} | "
              f"{' / '.join(f'{t:.1f}' for t in after)} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
