"""The options ``edgert.build(model, **options)`` accepts, and the build's memory limit (``max_arena``).

Unknown options are an error listing the valid ones (a typo such as ``precison="fp16"`` must not build
an fp32 plan silently). ``max_arena`` (bytes) bounds the activation arena a plan may need: by default
16 GiB for a host build and half the memory of a device target (its profile's ``memory.size_gb``), so
a model whose shapes ask for 112 GiB fails at build with the numbers, not at run with MemoryError.
"""

from __future__ import annotations

import difflib
import re

from edgert.errors import EdgeRTError, ShapeError

# Keyword options of edgert.build beyond its named parameters; each is read by the builder or a stage of it.
BUILD_OPTIONS = frozenset({
    "placement", "precision_rules", "calibration", "calib", "calibrator", "calib_cache", "timing_cache",
    "gpu_kernels", "autotune", "gpu_archs", "ptx", "tf32", "dla_core", "gpu_fallback", "cpu_only_aliases",
    "max_arena",
})
# Passed by edgert.dynamic to its probe builds; accepted, not offered to users.
INTERNAL_OPTIONS = frozenset({"initializer_cache", "dynamic_shapes", "dynamic_layers"})
HOST_MAX_ARENA = 16 << 30
DEVICE_MEMORY_FRACTION = 0.5   # the rest: weights, the OS, the application, the CUDA context
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
          "g": 1 << 30, "gb": 10**9, "gib": 1 << 30, "t": 1 << 40, "tb": 10**12, "tib": 1 << 40}


def check_build_options(options: dict, named: tuple = ()) -> None:
    """EdgeRTError naming each unknown option, a close match, and every valid option."""
    unknown = sorted(set(options) - BUILD_OPTIONS - INTERNAL_OPTIONS)
    if not unknown:
        if options.get("max_arena") is not None:
            parse_size(options["max_arena"])   # a bad size fails before the build's work
        return
    valid = sorted(BUILD_OPTIONS | set(named))
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise EdgeRTError(f"unknown build option{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                      f"valid options: {', '.join(valid)}")


def parse_size(text) -> int:
    """Bytes from ``123``, ``512MiB``, ``16G``, ``1.5GB`` (K/M/G/T are powers of 1024, KB/MB/GB/TB of 1000)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if unit not in _UNITS:
            raise EdgeRTError(f"size {text!r} is not a size; expected bytes or a number with a unit "
                              "(e.g. 512MiB, 16G, 2GB)")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise EdgeRTError(f"size {text!r} must be positive")
    return value


def default_max_arena(target: str) -> int:
    if target == "host":
        return HOST_MAX_ARENA
    from edgert.targets import load_profile
    return int(load_profile(target).memory_gb * (1 << 30) * DEVICE_MEMORY_FRACTION)


def check_arena(arena_bytes: int, max_arena, target: str) -> None:
    """ShapeError when the planned arena exceeds the limit (given, or the target's default)."""
    limit = parse_size(max_arena) if max_arena is not None else default_max_arena(target)
    if arena_bytes > limit:
        source = "--max-arena" if max_arena is not None else f"the default for target {target}"
        raise ShapeError(f"the plan needs an activation arena of {_gib(arena_bytes)} ({arena_bytes} bytes), above "
                         f"the limit of {_gib(limit)} ({source}); give smaller input shapes (--shape) or raise "
                         "the limit with --max-arena SIZE (max_arena= in Python)")


def _gib(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{nbytes} bytes"
