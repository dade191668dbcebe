"""edgert memory PLAN: arena, lower bound, no-reuse and weights bytes, the largest tensors, an optional plot."""

from __future__ import annotations

import json

from edgert.errors import EdgeRTError
from edgert.tools.args import UsageError, check_output_file, require_modules

HELP = "report a plan's memory footprint: arena vs lower bound, weights, per-tensor lifetimes"


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the arena (x = step, y = offset); needs matplotlib: pip install 'edgert[plot]'")
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


def check_plot_path(path: str) -> None:
    """Before anything is printed: matplotlib is there, the file type is one it writes, the directory exists."""
    import os

    require_modules("memory --plot", "matplotlib")
    from matplotlib.backend_bases import FigureCanvasBase

    check_output_file(path, "--plot")
    formats = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    if extension not in formats:
        raise UsageError(f"--plot {path!r}: unknown image type {('.' + extension) if extension else '(none)'}; "
                         f"use one of {', '.join('.' + f for f in sorted(formats))}")


def _aliases(tensors: list[dict]) -> set[int]:
    """Indices of tensors sharing bytes with another while both are live (views, concat slices, layers writing
    over their input): the planner never overlaps tensors otherwise."""
    import numpy as np

    if not tensors:
        return set()
    start = np.array([e["offset"] for e in tensors]); end = start + np.array([e["bytes"] for e in tensors])
    first = np.array([e["first_step"] for e in tensors]); last = np.array([e["last_step"] for e in tensors])
    pool = np.array([hash(e["pool"]) for e in tensors])
    found = set()
    for i in range(len(tensors)):
        overlap = (start < end[i]) & (start[i] < end) & (first <= last[i]) & (first[i] <= last) & (pool == pool[i])
        overlap[i] = False
        if overlap.any():
            found.add(i)
    return found


def plot(info: dict, path: str, title: str = "", labelled: int = 5) -> None:
    """The arena over the schedule: one box per tensor (x = steps it is live, y = its bytes in MiB)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    mib = 2**20
    figure, axes = plt.subplots(figsize=(11, 5.5))
    tensors = info["tensors"]
    aliases = _aliases(tensors)
    for index, entry in enumerate(tensors):
        alias = index in aliases
        axes.add_patch(Rectangle((entry["first_step"], entry["offset"] / mib),
                                 entry["last_step"] - entry["first_step"] + 1, entry["bytes"] / mib,
                                 facecolor="tab:orange" if alias else "tab:blue", alpha=0.45 if alias else 0.6,
                                 hatch="//" if alias else None, edgecolor="black", linewidth=0.3))
    for entry in sorted(tensors, key=lambda e: -e["bytes"])[:labelled]:
        axes.annotate(f"{entry['name'][:28]} ({_mib(entry['bytes'])})",
                      ((entry["first_step"] + entry["last_step"] + 1) / 2, (entry["offset"] + entry["bytes"] / 2) / mib),
                      ha="center", va="center", fontsize=7, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    arena, bound = info["arena_bytes"], info["lower_bound_bytes"]
    # the arena as a thick grey line under the lower bound's dashed red one: both show even when equal
    axes.axhline(arena / mib, color="grey", linewidth=4, alpha=0.6)
    axes.axhline(bound / mib, color="red", linestyle="--", linewidth=1.5)
    steps = max((e["last_step"] for e in tensors), default=0) + 1
    axes.set_xlim(0, steps)
    axes.set_ylim(0, max(arena, bound, 1) / mib * 1.3)   # headroom for the legend above the boxes
    axes.set_xlabel("schedule step")
    axes.set_ylabel("arena offset (MiB)")
    equal = " (= lower bound)" if arena == bound else ""
    axes.set_title(title or f"arena {_mib(arena)}, lower bound {_mib(bound)}, {len(tensors)} tensors")
    axes.legend(handles=[
        Patch(facecolor="tab:blue", alpha=0.6, edgecolor="black", label="tensor (live steps x bytes)"),
        Patch(facecolor="tab:orange", alpha=0.45, hatch="//", edgecolor="black",
              label="alias: shares bytes with another tensor (view, concat slice, written over its input)"),
        plt.Line2D([], [], color="grey", linewidth=4, alpha=0.6, label=f"arena {_mib(arena)}{equal}"),
        plt.Line2D([], [], color="red", linestyle="--", label=f"lower bound {_mib(bound)} (peak live bytes)"),
    ], loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args) -> int:
    import os
    from edgert.plan import load_plan_bytes, read_plan

    if args.plot:
        check_plot_path(args.plot)
    info = report(read_plan(load_plan_bytes(args.plan)))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_report(info, args.top)
    if args.plot:
        plot(info, args.plot, title=f"{os.path.basename(args.plan)}: arena {_mib(info['arena_bytes'])}, lower "
                                    f"bound {_mib(info['lower_bound_bytes'])}, {len(info['tensors'])} tensors")
        if not args.json:
            print(f"  wrote {args.plot}")
    return 0
