"""edgert targets [NAME]: the device profiles edgert can build for, or one profile in full."""

from __future__ import annotations

import json

HELP = "list the target device profiles (GPU, DLA, memory, CUDA toolkits)"


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", help="show one profile in full, with its sources")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _row(profile) -> tuple:
    gpu, dla = profile.gpu, profile.dla
    return (profile.name,
            f"{gpu.arch} {gpu.sm_count} SMs {gpu.max_clock_mhz:.0f} MHz" if gpu else "-",
            f"{gpu.int8_dense_tops:g}" if gpu else "-",
            f"v{dla.version} x{dla.cores} ({dla.int8_dense_tops_per_core:g}/core)" if dla else "-",
            f"{profile.memory_gb:g} GB" + _bandwidth(profile),
            _toolkits(gpu) if gpu else "-")


def _bandwidth(profile) -> str:
    return f" {profile.memory_bandwidth_gbs:g} GB/s" if profile.memory_bandwidth_gbs else ""


def _toolkits(gpu) -> str:
    toolkits = gpu.cuda_toolkits
    if not toolkits:
        return "?"
    return f"{toolkits[0]}-{toolkits[-1]}" if len(toolkits) > 1 else toolkits[0]


def _print_table(profiles) -> None:
    rows = [("target", "GPU", "INT8 TOPS", "DLA", "memory", "CUDA")] + [_row(p) for p in profiles]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _print_profile(profile) -> None:
    print(f"{profile.name}: {profile.description}")
    print(f"  {profile.summary()}")
    if profile.gpu:
        print(f"  CUDA toolkits that compile {profile.gpu.arch}: {', '.join(profile.gpu.cuda_toolkits) or 'unknown'}")
    if profile.dla:
        print(f"  DLA SRAM: {profile.dla.sram_kib} KiB {'shared' if profile.dla.sram_shared else 'per core'}")
    print(f"  CPU: {profile.cpu_cores}x {profile.cpu}")
    for source in profile.sources:
        print(f"  source: {source}")
    for estimate in profile.estimated:
        print(f"  estimated: {estimate}")


def main(args) -> int:
    from edgert.targets import list_profiles, load_profile

    profiles = [load_profile(args.name)] if args.name else [load_profile(name) for name in list_profiles()]
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
    elif args.name:
        _print_profile(profiles[0])
    else:
        _print_table(profiles)
    return 0
