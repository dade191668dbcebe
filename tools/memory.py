"""edgert memory PLAN: arena, lower bound, no-reuse and weights bytes, the largest tensors, an optional plot."""

from __future__ import annotations

import json

from edgert.errors import EdgeRTError

HELP = "report a plan's memory footprint: arena vs lower bound, weights, per-tensor lifetimes"


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the arena (x = step, y = offset); needs matplotlib")
    parser.add_argument("--top", type=int, default=10, help="how many of the largest tensors to list")


def report(document: dict) -> dict:
    memory = document.get("memory")
    if not memory:
        raise EdgeRTError("this plan has no memory section (built with an edgert older than 0.1)")
    tensors = document["tensors"]
    lifetimes = {tid: (first, last) for tid, first, last in memory.get("lifetimes", [])}
    pools, entries = {}, []
    for name, pool in memory["pools"].items():
        pools[name] = {"arena_bytes": pool["arena_bytes"], "strategy": pool.get("strategy")}
        for tid, offset in pool["offsets"]:
            tensor = tensors[tid]
            first, last = lifetimes.get(tid, (0, 0))
            entries.append({"name": tensor["name"], "pool": name, "bytes": _nbytes(tensor), "offset": offset,
                            "first_step": first, "last_step": last, "dtype": tensor["dtype"],
                            "shape": tensor["shape"]})
    keys = ("arena_bytes", "lower_bound_bytes", "no_reuse_bytes", "weights_bytes", "io_bytes", "workspace_bytes")
    result = {key: memory.get(key, 0) for key in keys}
    result.update(pools=pools, elided_layers=[document["layers"][i]["name"] for i in memory.get("elided", [])],
                  overwrite_layers=[document["layers"][i]["name"] for i in memory.get("overwrite", [])],
                  schedule=memory.get("schedule", {}), tensors=sorted(entries, key=lambda e: e["offset"]))
    # plans with optimization profiles: the arena is planned at the largest profile's max shapes; what the
    # same schedule would need at each profile's min / opt / max shapes
    result["profiles"] = [{"inputs": p["inputs"], "arena_bytes": p.get("arena_bytes", {})}
                          for p in document.get("profiles") or []]
    return result


def _nbytes(tensor: dict) -> int:
    import numpy as np
    return int(np.prod(tensor["shape"], dtype=np.int64)) * np.dtype(tensor["dtype"]).itemsize


def _mib(nbytes: int) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


def summary_line(info: dict) -> str:
    bound = info["lower_bound_bytes"]
    ratio = f"{info['arena_bytes'] / bound:.3f}x lower bound" if bound else "no intermediates"
    return (f"memory: arena {_mib(info['arena_bytes'])} ({ratio}; no reuse {_mib(info['no_reuse_bytes'])}), "
            f"weights {_mib(info['weights_bytes'])}, I/O {_mib(info['io_bytes'])}")


def profile_lines(info: dict) -> list[str]:
    """One line per optimization profile: input ranges and the arena at its min / opt / max shapes."""
    from edgert.runtime.shapes import format_range
    lines = []
    for index, profile in enumerate(info.get("profiles") or []):
        ranges = ", ".join(f"{name} {format_range(r['min'], r['max'])} (opt {'x'.join(map(str, r['opt']))})"
                           for name, r in profile["inputs"].items())
        arena = ", ".join(f"{label} {_mib(profile['arena_bytes'][label])}" for label in ("min", "opt", "max")
                          if label in profile["arena_bytes"])
        lines.append(f"  profile {index}: {ranges}; arena at {arena} (allocated: the largest profile's max)")
    return lines


def print_report(info: dict, top: int) -> None:
    print(summary_line(info))
    for name, pool in info["pools"].items():
        print(f"  pool {name}: arena {_mib(pool['arena_bytes'])} (placement: {pool['strategy']})")
    for line in profile_lines(info):
        print(line)
    schedule = info.get("schedule") or {}
    if schedule.get("lower_bound_bytes"):
        shown = ", ".join(f"{k} {_mib(v)}" for k, v in schedule["lower_bound_bytes"].items())
        print(f"  schedule: {schedule.get('order')} order (peak live bytes by candidate: {shown})")
    if info["elided_layers"]:
        print(f"  {len(info['elided_layers'])} layers run in place of a copy (views, concat slices): "
              + ", ".join(info["elided_layers"][:8]) + (" ..." if len(info["elided_layers"]) > 8 else ""))
    if info["overwrite_layers"]:
        print(f"  {len(info['overwrite_layers'])} layers write their output over their input (pooling, depthwise "
              "convolution): " + ", ".join(info["overwrite_layers"][:8])
              + (" ..." if len(info["overwrite_layers"]) > 8 else ""))
    largest = sorted(info["tensors"], key=lambda e: -e["bytes"])[:top]
    print("  largest tensors:")
    for entry in largest:
        print(f"    {entry['name'][:40]:40} {_mib(entry['bytes']):>12}  offset {entry['offset']:>10}  "
              f"steps {entry['first_step']}-{entry['last_step']}")


def plot(info: dict, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise EdgeRTError("--plot needs matplotlib (pip install matplotlib)") from None
    figure, axes = plt.subplots(figsize=(10, 5))
    steps = max((e["last_step"] for e in info["tensors"]), default=0) + 1
    for entry in info["tensors"]:
        axes.add_patch(Rectangle((entry["first_step"], entry["offset"] / 2**20),
                                 entry["last_step"] - entry["first_step"] + 1, entry["bytes"] / 2**20,
                                 alpha=0.6, edgecolor="black", linewidth=0.3))
    axes.axhline(info["lower_bound_bytes"] / 2**20, color="red", linestyle="--", label="lower bound")
    axes.axhline(info["arena_bytes"] / 2**20, color="black", linestyle=":", label="arena")
    axes.set_xlim(0, steps)
    axes.set_ylim(0, max(info["arena_bytes"], 1) / 2**20 * 1.05)
    axes.set_xlabel("schedule step")
    axes.set_ylabel("arena offset (MiB)")
    axes.legend()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args) -> int:
    from edgert.plan import load_plan_bytes, read_plan

    info = report(read_plan(load_plan_bytes(args.plan)))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_report(info, args.top)
    if args.plot:
        plot(info, args.plot)
        if not args.json:
            print(f"  wrote {args.plot}")
    return 0
