"""The CPU kernels' one worker pool per process, shared by every engine and execution context.

A layer that is worth splitting binds its independent parts once (plane ranges of a native kernel, column
blocks of a matrix product, chunks of an elementwise pass) into a ``Region`` (``parallel(parts)``); each call
runs them split over the pool or inline on the caller. The calling thread works through parts itself and the
pool's workers take the others. Parts release the GIL (native calls, NumPy loops, BLAS) so they really run
side by side. One-off splits (no bound layer) call ``pool().run_parts(parts)``.

- Size: the cores this process may use (``os.sched_getaffinity``), ``EDGERT_CPU_THREADS`` overrides. The
  caller counts as one of them: the pool starts ``size - 1`` workers.
- No spinning: idle workers block on a condition variable and a caller waiting for its last parts blocks on
  an event, so a core that another process needs is given up at once (OpenBLAS's own workers spin; BLAS is
  kept at one thread, see blas.py, and products are split here instead).
- No oversubscription: several contexts in several threads queue their parts on the same workers, and each
  caller works through its own parts rather than waiting, so a caller never waits on a part nobody started.
  When as many callers as the pool has threads are running parts already, another caller runs its parts
  inline: the callers fill the cores, and waking workers would only make them take turns.
- Split or inline, per region (``SplitChoice``): splitting pays only where the work outweighs waking a worker
  and the second core is free. A region times both ways, ``SPLIT_SAMPLES`` runs each, alternating, and keeps
  the one whose median is faster (split must save ``1 - SPLIT_GAIN`` of the time: it also costs the other
  core); it measures again after ``RECHECK_FIRST`` runs, then after twice as many each time the choice
  holds, up to ``RECHECK_LAST`` runs or ``RECHECK_SECONDS``, and back to ``RECHECK_FIRST`` when it changes;
  each region's intervals are stretched by its own fraction, so the regions of a model re-check apart.
- A core that another process keeps busy (the lag detector): a worker preempted in the middle of a part holds
  up its caller for a scheduler slice, and a region re-checks too rarely to notice load that comes and goes.
  When a caller waits longer for the workers than it worked itself (and over ``LAG_MIN_SECONDS``), every
  region runs inline for a pause, which doubles from ``LAG_PAUSE_FIRST`` to ``LAG_PAUSE_LAST`` while splits
  keep lagging right after each pause, and halves for every ``LAG_PAUSE_LAST`` seconds without a lag.
- Parts run on a worker never split again (that would queue behind themselves): they run inline.

The outputs never depend on the choice: inline runs the same parts, one after the other.
"""

from __future__ import annotations

import collections
import os
import statistics
import threading
import time
import weakref

ENV_THREADS = "EDGERT_CPU_THREADS"
SPLIT_SAMPLES = 3                        # timed runs of each way per decision; their medians decide
SPLIT_GAIN = 0.95                        # split when its median is below this fraction of inline's
RECHECK_FIRST, RECHECK_LAST = 16, 1024   # runs between decisions, doubling while the choice holds
RECHECK_SECONDS = 2.0                    # ... and at most this long, so a region run rarely still re-checks
LAG_PAUSE_FIRST, LAG_PAUSE_LAST = 0.02, 2.0   # seconds every region runs inline after a split lagged
LAG_MIN_SECONDS = 1e-4                   # a shorter wait is wake-up jitter, not a preempted worker


def usable_cores() -> int:
    """The kernel thread count: EDGERT_CPU_THREADS, else the cores this process may run on."""
    configured = os.environ.get(ENV_THREADS, "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            pass   # a malformed setting is ignored rather than failing every run
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class SplitChoice:
    """Whether one region's next run splits, from timings of both ways: ``want_split()`` before a run,
    ``record(split, seconds)`` after one that ran the way it was asked to. ``clock`` is injected for tests.
    ``stagger`` in [0, 1) stretches each interval by that fraction, so that the regions of one model (made
    together, run once per inference each) do not all re-check, each running its slower way, in the same
    inferences."""

    def __init__(self, clock=time.perf_counter, stagger: float = 0.0):
        self.clock, self.stagger = clock, stagger
        self.split: bool | None = None   # the choice; None before the first decision
        self.decisions = 0
        self._samples: dict[bool, list[float]] = {True: [], False: []}
        self._measuring = True
        self._interval = RECHECK_FIRST
        self._runs_left, self._deadline = 0, 0.0

    def want_split(self) -> bool:
        if self._measuring:   # alternate, split first, until both ways have their samples
            return len(self._samples[True]) <= len(self._samples[False])
        return bool(self.split)

    def record(self, split: bool, seconds: float) -> None:
        if self._measuring:
            if len(self._samples[split]) < SPLIT_SAMPLES:
                self._samples[split].append(seconds)
            if min(len(s) for s in self._samples.values()) >= SPLIT_SAMPLES:
                self._decide()
            return
        self._runs_left -= 1
        if self._runs_left <= 0 or self.clock() >= self._deadline:
            self._measuring = True

    def _decide(self) -> None:
        split = statistics.median(self._samples[True]) < SPLIT_GAIN * statistics.median(self._samples[False])
        if self.split is None or split != self.split:
            self._interval = RECHECK_FIRST
        else:
            self._interval = min(2 * self._interval, RECHECK_LAST)
        self.split, self.decisions = split, self.decisions + 1
        self._samples = {True: [], False: []}
        self._measuring = False
        self._runs_left = self._interval + int(self.stagger * self._interval)
        self._deadline = self.clock() + RECHECK_SECONDS * (1 + self.stagger)


class Region:
    """Parts bound once by a kernel, run by calling the region: split over the pool or inline, as its
    ``SplitChoice`` says. One caller at a time (a region belongs to one execution context's layer)."""

    def __init__(self, pool: WorkerPool, parts: list, stagger: float = 0.0):
        self.pool, self.parts, self.choice = pool, list(parts), SplitChoice(pool.clock, stagger)

    def __call__(self) -> None:
        want = self.choice.want_split()
        started = self.pool.clock()
        split = self.pool.run(self.parts, want)
        if split == want:   # a run the pool forced inline says nothing about splitting
            self.choice.record(split, self.pool.clock() - started)


class _Batch:
    """The parts of one split run: claimed one by one by the caller and the workers."""
    __slots__ = ("parts", "next", "pending", "error", "done")

    def __init__(self, parts):
        self.parts, self.next, self.pending, self.error = parts, 0, len(parts), None
        self.done = threading.Event()


class WorkerPool:
    def __init__(self, size: int, clock=time.perf_counter):
        self.size, self.clock = size, clock
        self._ready = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Batch] = collections.deque()
        self._local = threading.local()
        self._callers = 0   # callers (not workers) inside ``run`` now
        self._pause, self._inline_until = LAG_PAUSE_FIRST / 2, 0.0   # the first lag pauses LAG_PAUSE_FIRST
        self.lags = 0   # split runs whose caller waited longer than it worked (each starts a pause)
        self._regions: weakref.WeakSet[Region] = weakref.WeakSet()
        self._made = 0
        self._workers = [threading.Thread(target=self._work, name=f"edgert-cpu-{i}", daemon=True)
                         for i in range(size - 1)]
        for worker in self._workers:
            worker.start()

    def region(self, parts: list):
        """A callable running ``parts``: a ``Region`` when there is something to split, else the one part."""
        if len(parts) == 1:
            return parts[0]
        self._made += 1
        region = Region(self, parts, (self._made * 0.6180339887) % 1.0)   # spread evenly, whatever the count
        self._regions.add(region)
        return region

    def run_parts(self, parts: list) -> None:
        """Run every callable of ``parts`` (independent of each other) and return when all are done."""
        self.run(parts, True)

    def run(self, parts: list, split: bool) -> bool:
        """Run ``parts``, split over the pool when ``split`` and the pool allows it; whether it split."""
        if getattr(self._local, "worker", False):
            for part in parts:
                part()
            return False
        with self._ready:
            crowded = self._callers >= self.size   # the callers fill the cores already
            self._callers += 1
        try:
            if split and not crowded and len(parts) > 1 and self.size > 1 and self.clock() >= self._inline_until:
                self._run_split(parts)
                return True
            for part in parts:
                part()
            return False
        finally:
            with self._ready:
                self._callers -= 1

    def _run_split(self, parts: list) -> None:
        batch = _Batch(parts)
        with self._ready:
            self._queue.append(batch)
            self._ready.notify(min(len(parts) - 1, len(self._workers)))
        started = self.clock()
        while True:   # the caller works through its own parts too
            with self._ready:
                part = self._claim(batch)
            if part is None:
                break
            self._finish(batch, part)
        worked = self.clock()
        batch.done.wait()
        self._lagged(self.clock() - worked > max(worked - started, LAG_MIN_SECONDS))
        if batch.error is not None:
            raise batch.error

    def _lagged(self, lagged: bool) -> None:
        """The lag detector's pause: twice the last one, halved for each LAG_PAUSE_LAST seconds that passed
        since it ended (load that comes and goes is remembered a while). Races between callers only blur it."""
        if not lagged:
            return
        self.lags += 1
        now = self.clock()
        calm = max(0.0, now - self._inline_until) // LAG_PAUSE_LAST
        pause = self._pause * 2 if calm == 0 else self._pause / 2 ** min(calm, 64)
        self._pause = min(max(pause, LAG_PAUSE_FIRST), LAG_PAUSE_LAST)
        self._inline_until = now + self._pause

    def _claim(self, batch: _Batch):
        """The next unclaimed part of ``batch`` (None when all are claimed); call with the lock held."""
        if batch.next >= len(batch.parts):
            return None
        part = batch.parts[batch.next]
        batch.next += 1
        if batch.next == len(batch.parts):   # nothing left to hand out: off the queue
            if self._queue and self._queue[0] is batch:
                self._queue.popleft()
            elif batch in self._queue:
                self._queue.remove(batch)
        return part

    def _finish(self, batch: _Batch, part) -> None:
        try:
            part()
        except BaseException as error:   # re-raised in the caller
            batch.error = batch.error or error
        with self._ready:
            batch.pending -= 1
            if batch.pending == 0:
                batch.done.set()

    def _work(self) -> None:
        self._local.worker = True
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                batch = self._queue[0]
                part = self._claim(batch)
            if part is not None:
                self._finish(batch, part)

    def regions(self) -> set:
        """The live regions of this pool."""
        return set(self._regions)

    def stats(self, regions=None) -> dict:
        """``regions`` (default: every live one) by their current choice (split / inline / measuring), and the
        pool's lag pauses so far."""
        counts = {"split": 0, "inline": 0, "measuring": 0}
        for region in self.regions() if regions is None else regions:
            split = region.choice.split
            counts["measuring" if split is None else "split" if split else "inline"] += 1
        return {**counts, "lags": self.lags}


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def pool() -> WorkerPool:
    """The process's pool, started on first use."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = WorkerPool(usable_cores())
    return _pool


def parallel(parts: list):
    """A callable running ``parts`` over the process's pool, choosing per call between split and inline."""
    return pool().region(parts)


def thread_count() -> int:
    return pool().size


def split(count: int, parts: int, minimum: int = 1) -> list[tuple[int, int]]:
    """[0, count) as at most ``parts`` near-equal (lo, hi) ranges of at least ``minimum`` items each."""
    parts = max(1, min(parts, count // max(1, minimum)))
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
