"""Helpers shared by the CPU kernels' prepare hooks (see edgert.kernels.registry and edgert.runtime.engine).

A prepare hook turns a layer into bound calls (``functools.partial`` over its fixed arrays);
``sequence`` makes them one run() with as little Python between the calls as possible.
"""

from __future__ import annotations


def sequence(calls: list):
    """One run() making the given calls in order (None for none)."""
    calls = [call for call in calls if call is not None]
    if not calls:
        return None
    if len(calls) == 1:
        return calls[0]
    if len(calls) == 2:
        first, second = calls

        def run_two():
            first()
            second()
        return run_two

    def run_all():
        for call in calls:
            call()
    return run_all


def overlap_safe(run):
    """Marks a run that stays right when its output starts over its input (the memory plan's "overwrite" steps):
    it reads each plane of the input before writing over it. Unmarked runs get scratch instead."""
    if run is not None:
        run.overlap_safe = True
    return run
