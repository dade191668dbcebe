"""Timing cache: measured tactic times of layers on one GPU, kept in a JSON file so a build for that
device (possibly on another machine, with no GPU) can choose tactics by measurement.

`edgert tune` records or extends one on the device; `edgert build --timing-cache FILE` reads it (and
adds what it autotunes, when the build machine has a GPU of the plan's arch). The file:

    {
      "format": "edgert-timing-cache",
      "version": 1,
      "device": {"name": "NVIDIA H100 80GB HBM3", "arch": "sm_90", "sm_count": 132, "driver": "13.0"},
      "edgert_version": "0.1.0",
      "created": "2026-11-22T10:00:00Z",
      "updated": "2026-11-22T10:05:00Z",
      "entries": {
        "<layer key>": {"implicit-gemm-tap mma 64x64 splitk4": 12.25, "implicit-gemm mma 64x64 splitk1": 20.5},
        ...
      }
    }

A layer key (``tactics.GemmProblem.key``) names the arch, operation, dtype, sizes, loaders, geometry and
epilogue; each entry maps tactic names to their median time in microseconds. A reader refuses a
newer ``version``, another ``format``, a cache of another arch than the plan's and one written by
another edgert version (its kernels may differ): each error says what to do. Writes are atomic and
sorted, so a cache diffs cleanly and a build that reads it is reproducible.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import tempfile
from pathlib import Path

from edgert import __version__
from edgert.errors import EdgeRTError

FORMAT = "edgert-timing-cache"
VERSION = 1


class TimingCacheError(EdgeRTError):
    """A timing cache file is missing, malformed, from a newer edgert, or for another GPU."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TimingCache:
    """Tactic timings (microseconds) per layer key, measured on one GPU."""

    def __init__(self, device: dict, entries: dict | None = None, *, edgert_version: str = __version__,
                 created: str | None = None, updated: str | None = None):
        self.device = dict(device)
        self.entries: dict[str, dict[str, float]] = {k: dict(v) for k, v in (entries or {}).items()}
        self.edgert_version = edgert_version
        self.created = created or _now()
        self.updated = updated or self.created

    @property
    def arch(self) -> str:
        return str(self.device.get("arch", ""))

    def describe(self) -> str:
        return f"{self.device.get('name', 'unknown GPU')} ({self.arch})"

    def record(self, key: str, timings: dict[str, float]) -> None:
        """Add or replace the timings of ``key`` (tactics measured again replace the old values)."""
        self.entries.setdefault(key, {}).update({name: round(float(us), 3) for name, us in timings.items()})
        self.updated = _now()

    def merge(self, other: "TimingCache") -> None:
        """Take ``other``'s timings (they win where both measured a tactic); both must be of one GPU."""
        if (other.device.get("name"), other.arch) != (self.device.get("name"), self.arch):
            raise TimingCacheError(f"cannot merge timings of {other.describe()} into a cache of {self.describe()}: "
                                   "keep one timing cache per GPU")
        for key, timings in other.entries.items():
            self.record(key, timings)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "device": self.device, "edgert_version": self.edgert_version,
                "created": self.created, "updated": self.updated, "entries": self.entries}

    def save(self, path) -> None:
        """Write the cache atomically (a crash never leaves half a file), keys sorted."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        try:
            with os.fdopen(handle, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path, arch: str | None = None) -> "TimingCache":
        """Read ``path``; ``arch`` (e.g. "sm_90"): the arch the caller builds for, which the cache must match."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TimingCacheError(f"timing cache {path} does not exist; record one on the device with "
                                   f"`edgert tune MODEL --timing-cache {path}`") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TimingCacheError(f"{path} is not a timing cache ({type(e).__name__}: {e}); record a new one "
                                   "with `edgert tune`") from e
        cache = cls.from_dict(data, str(path))
        if arch is not None and cache.arch != arch:
            raise TimingCacheError(f"timing cache {path} was recorded on {cache.describe()}, but the plan is for "
                                   f"{arch}: record one on a {arch} device with `edgert tune`")
        return cache

    @classmethod
    def from_dict(cls, data, where: str = "timing cache") -> "TimingCache":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TimingCacheError(f"{where} is not an edgert timing cache (no \"format\": \"{FORMAT}\")")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise TimingCacheError(f"{where} has a malformed version {version!r}; record a new one with `edgert tune`")
        if version > VERSION:
            raise TimingCacheError(f"{where} has format version {version}, newer than this edgert reads ({VERSION}); "
                                   "upgrade edgert or record the cache again with this one")
        if data.get("edgert_version") != __version__:
            raise TimingCacheError(f"{where} was recorded by edgert {data.get('edgert_version')}, this is edgert "
                                   f"{__version__}: its kernels may differ; record it again with `edgert tune`")
        device, entries = data.get("device"), data.get("entries")
        if not isinstance(device, dict) or not isinstance(device.get("arch"), str):
            raise TimingCacheError(f"{where} has no device arch; record a new one with `edgert tune`")
        if not isinstance(entries, dict):
            raise TimingCacheError(f"{where} has no entries table; record a new one with `edgert tune`")
        for key, timings in entries.items():
            if not isinstance(timings, dict) or not all(
                    isinstance(name, str) and isinstance(us, (int, float)) and not isinstance(us, bool)
                    and math.isfinite(us) and us > 0 for name, us in timings.items()):
                raise TimingCacheError(f"{where}: entry {key!r} should map tactic names to positive microseconds, "
                                       f"found {timings!r}")
        return cls(device, entries, edgert_version=data["edgert_version"], created=data.get("created"),
                   updated=data.get("updated"))
