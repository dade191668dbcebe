"""TensorRT's ``Logger`` / ``ILogger``: severities, a printing default, subclassable ``log(severity, msg)``.

edgert's builder reports through the process-wide ``edgert.log``; a ``Builder`` (and a ``Runtime``) installs
its logger as a sink of ``edgert.log`` while it works, so the builder's warnings (fallbacks, unscaled int8
layers, unused DLA cores) and the API's own messages reach the user's ``log`` method.
"""

from __future__ import annotations

import contextlib
import enum
import sys

from edgert import log as edgert_log


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    """Subclass and override ``log(severity, msg)`` (TensorRT's interface)."""

    Severity = _Severity

    def __init__(self):
        pass

    def log(self, severity, msg: str) -> None:   # pragma: no cover - interface
        raise NotImplementedError


class Logger(ILogger):
    """Prints messages at least as severe as ``min_severity`` to stderr (``Logger(Logger.WARNING)``)."""

    INTERNAL_ERROR = _Severity.INTERNAL_ERROR
    ERROR = _Severity.ERROR
    WARNING = _Severity.WARNING
    INFO = _Severity.INFO
    VERBOSE = _Severity.VERBOSE

    def __init__(self, min_severity=_Severity.WARNING):
        super().__init__()
        self.min_severity = _Severity(min_severity)

    def log(self, severity, msg: str) -> None:
        if _Severity(severity) <= self.min_severity:
            print(f"[edgert] {_Severity(severity).name}: {msg}", file=sys.stderr, flush=True)


def report(logger, severity, msg: str) -> None:
    """Send one message to ``logger`` (any object with TensorRT's ``log(severity, msg)``; None: nowhere)."""
    if logger is not None:
        logger.log(_Severity(severity), msg)


@contextlib.contextmanager
def routed(logger):
    """While inside, everything edgert reports through ``edgert.log`` also goes to ``logger.log``."""
    if logger is None:
        yield
        return

    def sink(severity: edgert_log.Severity, message: str) -> None:
        logger.log(_Severity(int(severity)), message)

    edgert_log.add_sink(sink, edgert_log.Severity.VERBOSE)
    try:
        yield
    finally:
        edgert_log.remove_sink(sink)
