"""Progress of long work (calibration, autotuning, conformance runs): a bar on a terminal, nothing on a pipe.

``track(items, label)`` yields the items and draws ``label [#####.....] 12/40 3.1s`` on stderr when
stderr is a terminal; on a pipe or in a log file it stays silent unless progress was asked for
(``set_enabled(True)``, the command line's ``--progress``), then it writes a plain line at most once
a second. Progress monitors (``add_monitor``: TensorRT's IProgressMonitor, from edgert.api) are told of
every task's start, steps and end, and may cancel it. Standard library and edgert.errors only, so any layer
may use it.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

from edgert.errors import EdgeRTError

Item = TypeVar("Item")
_forced: bool | None = None   # None: on a terminal only; True: always; False: never
BAR_WIDTH = 24
# Objects told of every task's start, steps and end (TensorRT's IProgressMonitor through edgert.api): each has
# phase_start(label, parent, total), step_complete(label, step) -> bool (False cancels) and phase_finish(label).
_monitors: list = []


class Cancelled(EdgeRTError):
    """A progress monitor asked to stop (``step_complete`` returned False)."""


def add_monitor(monitor) -> None:
    _monitors.append(monitor)


def remove_monitor(monitor) -> None:
    if monitor in _monitors:
        _monitors.remove(monitor)


def set_enabled(enabled: bool | None) -> None:
    """True: show progress even on a pipe; False: never; None: on a terminal only (the default)."""
    global _forced
    _forced = enabled


class Progress:
    """Counts steps of one task and draws them (see the module doc); use as a context manager."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = _forced if _forced is not None else is_tty
        self.redraw = is_tty        # a terminal line redrawn in place; else one plain line per second
        self.started = self._last = time.perf_counter()
        self._drawn = -1
        for monitor in list(_monitors):
            monitor.phase_start(label, None, total or 0)

    def update(self, steps: int = 1) -> None:
        self.done += steps
        for monitor in list(_monitors):
            if monitor.step_complete(self.label, self.done) is False:
                raise Cancelled(f"{self.label}: cancelled by the progress monitor at step {self.done}")
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last >= (0.1 if self.redraw else 1.0) or self.done == self.total:
            self._last = now
            self._draw(final=False)

    def close(self) -> None:
        for monitor in list(_monitors):
            monitor.phase_finish(self.label)
        if self.enabled and (self.redraw or self._drawn != self.done):   # a pipe got the last count already
            self._draw(final=True)

    def line(self) -> str:
        seconds = f"{time.perf_counter() - self.started:.1f}s"
        if not self.total:
            return f"{self.label}: {self.done} {seconds}"
        filled = BAR_WIDTH * min(self.done, self.total) // self.total
        return f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total} {seconds}"

    def _draw(self, final: bool) -> None:
        self._drawn = self.done
        if self.redraw:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[Item], label: str, total: int | None = None) -> Iterator[Item]:
    """Yield ``items``, counting them as progress of ``label`` (total: ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(label, total) as progress:
        for item in items:
            yield item
            progress.update()
