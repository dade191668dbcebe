"""The typed settings of a build (``BuildConfig``: ``edgert.build``'s keywords), and its memory limit (``max_arena``).

Unknown options are an error listing the valid ones (a typo such as ``precison="fp16"`` must not build
an fp32 plan silently). ``max_arena`` (bytes) bounds the activation arena a plan may need: by default
16 GiB for a host build and half the memory of a device target (its profile's ``memory.size_gb``), so
a model whose shapes ask for 112 GiB fails at build with the numbers, not at run with MemoryError.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Sequence

from edgert.errors import EdgeRTError, ShapeError

# Recorded in the plan header (``header["options"]``) when set: the build settings a reader of the plan may want.
RECORDED = ("precision", "placement", "precision_rules", "calib", "calibrator", "calib_cache", "timing_cache",
            "gpu_kernels", "autotune", "gpu_archs", "ptx", "tf32", "dla_core", "gpu_fallback", "max_arena",
            "max_aux_streams", "int8_codes", "input_formats", "output_formats")
# Set by edgert.dynamic for its probe builds; accepted, not offered to users.
INTERNAL_OPTIONS = frozenset({"initializer_cache", "dynamic_shapes", "dynamic_layers"})
HOST_MAX_ARENA = 16 << 30
DEVICE_MEMORY_FRACTION = 0.5   # the rest: weights, the OS, the application, the CUDA context
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
          "g": 1 << 30, "gb": 10**9, "gib": 1 << 30, "t": 1 << 40, "tb": 10**12, "tib": 1 << 40}


@dataclasses.dataclass
class BuildConfig:
    """Every setting of one build, typed; ``edgert.build``'s keywords, the command line's flags and TensorRT's
    ``IBuilderConfig`` (``edgert.api``) all become one of these, and the builder reads nothing else.

    None means "not given" (the builder's default applies, and the plan header does not record it).
    """
    target: str = "host"
    precision: str = "fp32"
    optimize: bool = True                   # False: no graph pass runs
    disabled_passes: Sequence[str] = ()
    memory_reuse: bool = True
    reorder: bool = True                    # schedule for low peak memory (False: the model's order)
    placement: object = None                # placement rules: a TOML path, a parsed dict or rule dicts
    precision_rules: object = None          # likewise, rules with a precision
    calibration: object = None              # a CalibrationTable or {tensor: scale}
    calib: object = None                    # a directory of batches, or an iterable of input dicts
    calibrator: str | None = None           # entropy | minmax | percentile
    calib_cache: str | None = None
    timing_cache: object = None             # a path or a TimingCache
    gpu_kernels: bool | None = None
    autotune: bool | None = None
    gpu_archs: Sequence[str] | None = None
    ptx: bool | None = None
    tf32: bool | None = None
    dla_core: int | None = None
    gpu_fallback: bool | None = None
    cpu_only_aliases: bool = True           # False: plan memory for CUDA kernels compiled into the plan later
    max_arena: object = None                # bytes or a size such as "2GiB"
    max_aux_streams: int | None = None      # auxiliary CUDA streams for independent branches (None/0: one stream)
    int8_codes: bool | None = None          # int8 codes between int8 layers (None: when no CUDA kernels compiled)
    input_formats: object = None            # {input: "fp16" | "int8" | "fp32"[:linear]} or ["NAME=FORMAT", ...]
    output_formats: object = None           # likewise for outputs (edgert.io_formats)
    # edgert.dynamic's probe builds
    initializer_cache: dict | None = None
    dynamic_shapes: bool = False
    dynamic_layers: dict | None = None

    @classmethod
    def from_options(cls, **options) -> "BuildConfig":
        """A config from keyword options; EdgeRTError naming each unknown one, a close match, and every valid one."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            valid = sorted(fields - INTERNAL_OPTIONS)
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, valid, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise EdgeRTError(f"unknown build option{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                              f"valid options: {', '.join(sorted(set(valid) | {'shapes', 'profiles'}))}")
        config = cls(**options)
        from edgert.io_formats import parse_formats, to_plain
        config.input_formats = to_plain(parse_formats(config.input_formats, "input format"))
        config.output_formats = to_plain(parse_formats(config.output_formats, "output format"))
        if config.max_arena is not None:
            parse_size(config.max_arena)   # a bad size fails before the build's work
        check_aux_streams(config.max_aux_streams)
        return config

    def replace(self, **changes) -> "BuildConfig":
        return dataclasses.replace(self, **changes)

    def header_options(self) -> dict:
        """The settings the plan header records (plain data: paths, not objects; given ones only)."""
        import os

        recorded = {}
        for name in RECORDED:
            value = getattr(self, name)
            if name == "timing_cache" and not isinstance(value, (str, os.PathLike)):
                value = None            # a TimingCache object: the header records a path only
            elif name == "calib" and not isinstance(value, (str, os.PathLike)):
                value = None            # batches given in Python are used, not recorded
            if name == "max_aux_streams" and not value:
                value = None            # 0 is the default (one stream): plans stay byte-identical
            if value is not None:
                recorded[name] = os.fspath(value) if isinstance(value, os.PathLike) else value
        return recorded


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


def check_aux_streams(value) -> None:
    """``max_aux_streams``: None or an integer 0..MAX_STREAMS-1 (edgert.streams)."""
    from edgert.streams import MAX_STREAMS

    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_STREAMS:
        raise EdgeRTError(f"max_aux_streams is {value!r}; expected an integer from 0 (one stream) to "
                          f"{MAX_STREAMS - 1}")


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
