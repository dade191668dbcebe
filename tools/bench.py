"""edgert bench PLAN: latency percentiles and throughput of a plan on random inputs."""

from __future__ import annotations

import json
import time

import numpy as np

from edgert.tools.args import add_device_option
from edgert.tools.run import random_inputs

HELP = "measure a plan's latency (percentiles) and throughput on random inputs"


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file")
    parser.add_argument("--iterations", type=int, default=100, help="timed runs (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_device_option(parser)


def measure(context, feeds: dict, iterations: int, warmup: int) -> dict:
    for _ in range(warmup):
        context.execute(feeds)
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        context.execute(feeds)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1e3
    batch = next(iter(feeds.values())).shape[0] if feeds and next(iter(feeds.values())).ndim else 1
    return {"iterations": iterations, "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "throughput_per_s": float(batch * 1e3 / np.median(ms)), "batch": int(batch)}


def main(args) -> int:
    from edgert.errors import EdgeRTError
    from edgert.runtime import load

    if args.iterations < 1 or args.warmup < 0:
        raise EdgeRTError("--iterations must be at least 1 and --warmup at least 0")
    engine = load(args.plan, device=args.device)
    context = engine.create_execution_context()
    result = measure(context, random_inputs(engine, 0), args.iterations, args.warmup)
    result["device"] = args.device
    if hasattr(context, "scratch_bytes"):   # the CPU kernels' per-context scratch, beside the plan's arena
        from edgert.kernels.cpu import native
        result["scratch_bytes"] = int(context.scratch_bytes)
        result["cpu_kernels"] = native.status()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.plan} on {args.device}: {result['iterations']} runs (host-timed, including copies)")
        print("  latency ms: " + "  ".join(f"{k[:-3]} {result[k]:.3f}" for k in
                                           ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")))
        print(f"  throughput: {result['throughput_per_s']:.1f} samples/s (batch {result['batch']})")
        if "scratch_bytes" in result:
            print(f"  CPU kernel scratch: {result['scratch_bytes'] / 2**20:.2f} MiB per context (beside the arena)")
            print(f"  CPU kernels: {result['cpu_kernels']}")
    return 0
