"""Writing a file so that a crash, a kill or a bad target never costs data: ``atomic_write(path, data)``.

- The bytes go to a temporary file beside the target (``.edgert-XXXXXXXX.tmp``), are flushed to disk,
  and the temporary is renamed over the target: a reader sees the old file or the new one, never half.
- Only regular files are written. A path naming a directory, a device (``/dev/full``), a FIFO or a
  socket is refused with a ``PlanError`` before anything is written: renaming over it would replace a
  device node by a file (as root) or block on a pipe.
- A symlink is written *through*: its target file is replaced and the link stays a link (as shell
  redirection does; ``latest.plan -> v3.plan`` keeps pointing at the new v3.plan). A dangling link
  creates its target.
- The temporary is removed on any exception and on SIGTERM (the handler is installed only while the
  write runs, in the main thread, and the previous one is restored and then given the signal).
- ``kill -9`` cannot be caught, so each write first sweeps temporaries of this exact name pattern in
  the target directory that are older than ``STALE_SECONDS`` (never younger ones: another process may
  be writing them right now).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import tempfile
import threading
import time

from edgert.errors import PlanError

TEMP_PREFIX, TEMP_SUFFIX = ".edgert-", ".tmp"
# mkstemp's names: the prefix, 8 characters of [a-z0-9_], the suffix
TEMP_PATTERN = re.compile(r"\.edgert-[a-z0-9_]{8}\.tmp")
STALE_SECONDS = 3600.0


class _Terminated(BaseException):
    """SIGTERM arrived while a temporary existed; raised so the cleanup below runs."""


def resolve_target(path) -> str:
    """The regular file a write to ``path`` replaces (through symlinks); PlanError for anything else."""
    path = os.path.abspath(os.fspath(path))
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise PlanError(f"cannot write {path}: {e.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else \
            "not a regular file"
        shown = path if target == path else f"{path} (-> {target})"
        raise PlanError(f"cannot write {shown}: it is {what}, expected a regular file path; give a file name "
                        "such as model.plan")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise PlanError(f"cannot write {path}: directory {directory} does not exist; create it first")
    return target


def sweep_stale_temporaries(directory: str, now: float | None = None) -> list[str]:
    """Remove this module's own temporaries in ``directory`` older than STALE_SECONDS; their names."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not TEMP_PATTERN.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            pass   # gone meanwhile, or not ours to remove
    return removed


def atomic_write(path, data: bytes) -> None:
    """Replace the regular file ``path`` (or a symlink's target) by ``data`` atomically; see the module doc."""
    target = resolve_target(path)
    directory = os.path.dirname(target)
    sweep_stale_temporaries(directory)
    with _cleanup_on_sigterm() as temporaries:
        try:
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
        except OSError as e:
            raise PlanError(f"cannot write {path}: {e.strerror} (creating a temporary in {directory})") from None
        temporaries.append(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            raise PlanError(f"cannot write {path}: {e.strerror}") from None


class _cleanup_on_sigterm:
    """Context: a list of temporaries removed on exit unless renamed; SIGTERM meanwhile removes them too."""

    def __enter__(self) -> list:
        self.temporaries: list[str] = []
        self.previous = None
        self.terminated = False
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            if previous is not None and previous is not signal.SIG_IGN:   # None: a handler not set from Python
                self.previous = previous
                signal.signal(signal.SIGTERM, self._on_sigterm)
        return self.temporaries

    def _on_sigterm(self, signum, frame):
        self.terminated = True
        raise _Terminated

    def __exit__(self, kind, error, traceback) -> bool:
        for tmp in self.temporaries:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass   # renamed over the target: the write succeeded
        if self.previous is None:
            return False
        signal.signal(signal.SIGTERM, self.previous)
        if self.terminated:
            # Hand the signal on as if we had never intercepted it: default action (exit) or the caller's handler.
            if callable(self.previous):
                self.previous(signal.SIGTERM, None)
                raise PlanError("the write was interrupted by SIGTERM; nothing was written") from None
            signal.raise_signal(signal.SIGTERM)
        return False
