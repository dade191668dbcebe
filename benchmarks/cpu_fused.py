"""The CPU runtime's fused layer groups (kernels/cpu/fused.py) on and off: two contexts of one engine, interleaved.

    python benchmarks/cpu_fused.py [--corpus NAME ...] [--corpus-cache DIR] [MODEL.onnx ...] [--reps 200]
                                   [--threads 2]

Per model: how many groups fused, and each context's median and best run (ms) over --reps runs taking turns (the
fused one and the one made with ``EDGERT_CPU_FUSE=0``), so that load from other processes hits both alike; the ratio
of medians is what fusion saves.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from corpus import DEFAULT_CACHE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--corpus-cache", default=DEFAULT_CACHE, metavar="DIR")
    parser.add_argument("files", nargs="*", metavar="MODEL.onnx")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["EDGERT_CPU_THREADS"] = str(args.threads)
    import edgert
    from cpu import corpus_files, feeds_for, onnx_files

    from edgert.kernels.cpu import fused
    models = corpus_files(args.corpus, args.corpus_cache) if args.corpus else {}
    models.update(onnx_files(args.files))
    print(f"# fused groups on vs off ({fused.ENV_SWITCH}=0), {args.threads} threads, {args.reps} interleaved runs")
    print("| model | fused groups | fused ms p50 (best) | unfused ms p50 (best) | unfused / fused |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, (model, shapes) in models.items():
        engine = edgert.load(edgert.build(model, shapes=shapes))
        on = engine.create_execution_context()
        os.environ[fused.ENV_SWITCH] = "0"
        off = engine.create_execution_context()
        del os.environ[fused.ENV_SWITCH]
        feeds = feeds_for(engine)
        times = {"on": [], "off": []}
        for _ in range(10):
            on.execute(feeds)
            off.execute(feeds)
        for _ in range(args.reps):
            for key, context in (("on", on), ("off", off)):
                started = time.perf_counter()
                context.execute(feeds)
                times[key].append(time.perf_counter() - started)
        p50 = {key: float(np.median(value)) * 1e3 for key, value in times.items()}
        best = {key: min(value) * 1e3 for key, value in times.items()}
        kinds = {}
        for kind, _ in on.fused_layers():
            kinds[kind] = kinds.get(kind, 0) + 1
        groups = ", ".join(f"{count} {kind}" for kind, count in kinds.items()) or "none"
        print(f"| {name} | {groups} | {p50['on']:.3f} ({best['on']:.3f}) | {p50['off']:.3f} ({best['off']:.3f}) | "
              f"{p50['off'] / p50['on']:.3f}x |", flush=True)


if __name__ == "__main__":
    main()
