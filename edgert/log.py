"""One process-wide logger that the builder (and later the TensorRT-style ``Logger``) reports through.

Severities follow TensorRT's ``ILogger``: ERROR, WARNING, INFO, VERBOSE (lower value = more severe).
By default nothing is printed: messages go to the sinks that are installed, e.g. the command line
installs one that prints warnings to stderr as ``edgert: warning: ...``. Library users can add their
own sink, or read what was reported with ``capture()``.

Never imports anything beyond the standard library, so the runtime may use it too.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import threading
from typing import Callable, Iterator


class Severity(enum.IntEnum):
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


Sink = Callable[[Severity, str], None]
_sinks: list[tuple[Sink, Severity]] = []
_lock = threading.Lock()


def add_sink(sink: Sink, min_severity: Severity = Severity.WARNING) -> Sink:
    """Send every message at least as severe as ``min_severity`` to ``sink(severity, message)``."""
    with _lock:
        _sinks.append((sink, min_severity))
    return sink


def remove_sink(sink: Sink) -> None:
    with _lock:
        _sinks[:] = [(s, level) for s, level in _sinks if s is not sink]


def log(severity: Severity, message: str) -> None:
    with _lock:
        sinks = list(_sinks)
    for sink, min_severity in sinks:
        if severity <= min_severity:
            sink(severity, message)


def error(message: str) -> None:
    log(Severity.ERROR, message)


def warning(message: str) -> None:
    log(Severity.WARNING, message)


def info(message: str) -> None:
    log(Severity.INFO, message)


def verbose(message: str) -> None:
    log(Severity.VERBOSE, message)


def stderr_sink(prefix: str = "edgert") -> Sink:
    """A sink printing ``PREFIX: warning: message`` lines on stderr."""
    def write(severity: Severity, message: str) -> None:
        print(f"{prefix}: {severity.name.lower()}: {message}", file=sys.stderr, flush=True)
    return write


@contextlib.contextmanager
def capture(min_severity: Severity = Severity.WARNING) -> Iterator[list[tuple[Severity, str]]]:
    """Collect the messages reported inside the ``with`` block (for tests and tools that summarize them)."""
    messages: list[tuple[Severity, str]] = []
    sink = add_sink(lambda severity, message: messages.append((severity, message)), min_severity)
    try:
        yield messages
    finally:
        remove_sink(sink)
