"""edgert bench PLAN: latency percentiles, spread and throughput of a plan on random inputs; --profile: per layer.

The per-layer profile (trtexec's --dumpProfile / --exportProfile) is measured, not predicted: on the CPU
each bound layer is timed between two clock reads; on CUDA each layer's launches run without the CUDA
graph between two CUDA events (the graph itself cannot be timed per layer). Layers the memory plan elides
(views, concats written in place) do not run and are not listed (``edgert inspect`` marks them).
"""

from __future__ import annotations

import collections
import json
import time

import numpy as np

from edgert.tools.args import UsageError, add_device_option, check_output_file
from edgert.tools.run import random_inputs

HELP = "measure a plan's latency (percentiles, spread), throughput and, with --profile, per-layer times"


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file")
    parser.add_argument("--iterations", type=int, default=100, help="timed runs, at least (default 100)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S",
                        help="keep timing runs for at least S seconds (default 0: --iterations decides)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument("--warmup-ms", type=float, default=0.0, metavar="MS",
                        help="and keep warming up for at least MS milliseconds (default 0)")
    parser.add_argument("--profile", action="store_true", help="per-layer median time and share of the total")
    parser.add_argument("--export-profile", metavar="FILE.json",
                        help="write the per-layer profile as JSON (trtexec's --exportProfile fields)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_device_option(parser)


def _warm_up(context, feeds: dict, runs: int, milliseconds: float) -> None:
    started = time.perf_counter()
    done = 0
    while done < runs or (time.perf_counter() - started) * 1e3 < milliseconds:
        context.execute(feeds)
        done += 1


def measure(context, feeds: dict, iterations: int, warmup: int, duration: float = 0.0, warmup_ms: float = 0.0) -> dict:
    _warm_up(context, feeds, warmup, warmup_ms)
    times = []
    started = time.perf_counter()
    while len(times) < iterations or time.perf_counter() - started < duration:
        begun = time.perf_counter()
        context.execute(feeds)
        times.append(time.perf_counter() - begun)
    ms = np.array(times) * 1e3
    first = next(iter(feeds.values()), None)
    batch = first.shape[0] if first is not None and first.ndim else 1
    q1, q3 = np.percentile(ms, [25, 75])
    return {"iterations": len(ms), "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "stdev_ms": float(ms.std()), "iqr_ms": float(q3 - q1),
            "throughput_per_s": float(batch * 1e3 / np.median(ms)), "batch": int(batch)}


def _cpu_layer_times(context, feeds: dict, runs: int) -> dict[str, list[float]]:
    """Milliseconds per run of each layer that runs, timed between clock reads around it."""
    times: dict[str, list[float]] = {}
    clock = time.perf_counter
    last = [0.0]

    def before(name, outs):
        last[0] = clock()

    def after(name, outs):
        times.setdefault(name, []).append((clock() - last[0]) * 1e3)

    for _ in range(runs):
        context.execute_each(feeds, after, before_layer=before)
    return times


def _cuda_layer_times(context, feeds: dict, runs: int) -> dict[str, list[float]]:
    """Milliseconds per run of each layer's launches between CUDA events, without the graph."""
    context.execute(feeds)   # the inputs are in the context's device buffers
    names = [layer["name"] for layer in context.engine.document["layers"]]
    times: dict[str, list[float]] = {}
    for _ in range(runs):
        for layer, ms in context.layer_times():
            times.setdefault(names[layer], []).append(ms)
    return times


def profile(context, feeds: dict, runs: int, device: str) -> list[dict]:
    """Per layer, in schedule order: name, timeMs (sum over runs), averageMs, medianMs, percentage (of the
    summed medians): the fields of trtexec's exported profile."""
    if hasattr(context, "execute_each"):
        times = _cpu_layer_times(context, feeds, runs)
    elif device.startswith("cuda"):
        times = _cuda_layer_times(context, feeds, runs)
    else:
        raise UsageError(f"--profile is not available on device {device!r}")
    medians = {name: float(np.median(values)) for name, values in times.items()}
    total = sum(medians.values()) or 1.0
    return [{"name": name, "timeMs": float(np.sum(values)), "averageMs": float(np.mean(values)),
             "medianMs": medians[name], "percentage": 100.0 * medians[name] / total}
            for name, values in times.items()]


def _check_args(args) -> None:
    if args.iterations < 1 or args.warmup < 0 or args.duration < 0 or args.warmup_ms < 0:
        raise UsageError("--iterations must be at least 1; --warmup, --duration and --warmup-ms at least 0")
    if args.export_profile:
        check_output_file(args.export_profile, "--export-profile")


def main(args) -> int:
    from edgert.runtime import load

    _check_args(args)
    from edgert.kernels.cpu import threads
    engine = load(args.plan, device=args.device)
    regions, lags = threads.pool().regions(), threads.pool().lags
    context = engine.create_execution_context()
    regions = threads.pool().regions() - regions   # the context's layers split over the CPU worker pool
    feeds = random_inputs(engine, 0)
    result = measure(context, feeds, args.iterations, args.warmup, args.duration, args.warmup_ms)
    result["device"] = args.device
    if hasattr(context, "scratch_bytes"):   # the CPU kernels' per-context scratch, beside the plan's arena
        from edgert.kernels.cpu import native
        result["scratch_bytes"] = int(context.scratch_bytes)
        result["cpu_kernels"] = native.status()
        stats = threads.pool().stats(regions)
        result["cpu_regions"] = {**stats, "lags": stats["lags"] - lags}
        result["cpu_fused"] = [{"kind": kind, "layers": names} for kind, names in context.fused_layers()]
    layers = profile(context, feeds, result["iterations"], args.device) if args.profile or args.export_profile \
        else None
    if args.export_profile:
        with open(args.export_profile, "w") as f:
            json.dump([{"count": result["iterations"]}] + layers, f, indent=1)
    if args.json:
        print(json.dumps({**result, **({"profile": layers} if args.profile else {})}, indent=2))
        return 0
    _print_result(args, result)
    if args.profile:
        _print_profile(layers)
    return 0


def _print_result(args, result: dict) -> None:
    print(f"{args.plan} on {args.device}: {result['iterations']} runs (host-timed, including copies)")
    print("  latency ms: " + "  ".join(f"{k[:-3]} {result[k]:.3f}" for k in
                                       ("min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")))
    print(f"  spread ms: stdev {result['stdev_ms']:.3f}  IQR {result['iqr_ms']:.3f}")
    print(f"  throughput: {result['throughput_per_s']:.1f} samples/s (batch {result['batch']})")
    if "scratch_bytes" in result:
        print(f"  CPU kernel scratch: {result['scratch_bytes'] / 2**20:.2f} MiB per context (beside the arena)")
        print(f"  CPU kernels: {result['cpu_kernels']}")
        regions = result["cpu_regions"]
        print(f"  CPU layers split over the worker pool: {regions['split']} split, {regions['inline']} on one thread, "
              f"{regions['measuring']} still timing both ways; pauses for a lagging worker: {regions['lags']}")
        kinds = collections.Counter(group["kind"] for group in result["cpu_fused"])
        print("  CPU layer groups fused into one native call: "
              + (", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "none")
              + (" (--profile times their layers one by one)" if kinds else ""))


def _print_profile(layers: list[dict]) -> None:
    total = sum(layer["medianMs"] for layer in layers)
    width = min(max((len(layer["name"]) for layer in layers), default=4), 48)
    print(f"  per-layer profile ({len(layers)} layers run; median of the runs; sum {total:.3f} ms):")
    print(f"    {'layer':{width}}  {'median ms':>10}  {'average ms':>10}  {'%':>6}")
    for layer in layers:
        print(f"    {layer['name'][:width]:{width}}  {layer['medianMs']:10.4f}  {layer['averageMs']:10.4f}  "
              f"{layer['percentage']:6.2f}")
