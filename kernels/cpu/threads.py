"""The CPU kernels' one worker pool per process, shared by every engine and execution context.

A layer that is worth splitting hands ``run_parts`` a list of independent parts (plane ranges of a native
kernel, column blocks of a matrix product, chunks of an elementwise pass); the calling thread runs parts
itself and the pool's workers take the others. Parts release the GIL (native calls, NumPy loops, BLAS) so
they really run side by side.

- Size: the cores this process may use (``os.sched_getaffinity``), ``EDGERT_CPU_THREADS`` overrides. The
  caller counts as one of them: the pool starts ``size - 1`` workers.
- No spinning: idle workers block on a condition variable, so a core that another process needs is given
  up at once (OpenBLAS's own workers spin; BLAS is kept at one thread, see blas.py, and products are split
  here instead).
- No oversubscription: several contexts in several threads queue their parts on the same workers; each
  caller also works through its own parts rather than waiting, so nothing ever runs more than ``size``
  kernel threads plus the callers, and a caller never waits on a part nobody has started.
- A core that another process keeps busy: a worker preempted in the middle of a part holds up its caller
  for a scheduler slice. When a caller waits longer for the workers than it worked itself, the next
  BACKOFF_BATCHES calls run inline (on one thread, the caller's), then splitting is tried again.
- Parts run on a worker never split again (that would queue behind themselves): ``run_parts`` from a
  worker runs every part inline.
"""

from __future__ import annotations

import collections
import os
import threading
import time

ENV_THREADS = "EDGERT_CPU_THREADS"
BACKOFF_BATCHES = 32


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


class _Batch:
    """The parts of one ``run_parts`` call: claimed one by one by the caller and the workers."""
    __slots__ = ("parts", "next", "pending", "error", "done")

    def __init__(self, parts):
        self.parts, self.next, self.pending, self.error = parts, 0, len(parts), None
        self.done = threading.Event()


class WorkerPool:
    def __init__(self, size: int):
        self.size = size
        self._ready = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Batch] = collections.deque()
        self._local = threading.local()
        self._inline_left = 0   # batches still to run inline after workers lagged (racy by design: a hint)
        self._workers = [threading.Thread(target=self._work, name=f"edgert-cpu-{i}", daemon=True)
                         for i in range(size - 1)]
        for worker in self._workers:
            worker.start()

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

    def run_parts(self, parts: list) -> None:
        """Run every callable of ``parts`` (independent of each other) and return when all are done."""
        if len(parts) <= 1 or self.size == 1 or getattr(self._local, "worker", False) or self._inline_left > 0:
            if self._inline_left > 0:
                self._inline_left -= 1
            for part in parts:
                part()
            return
        batch = _Batch(parts)
        with self._ready:
            self._queue.append(batch)
            self._ready.notify(min(len(parts) - 1, len(self._workers)))
        started = time.perf_counter()
        while True:   # the caller works through its own parts too
            with self._ready:
                part = self._claim(batch)
            if part is None:
                break
            self._finish(batch, part)
        worked = time.perf_counter()
        batch.done.wait()
        if time.perf_counter() - worked > worked - started:   # the workers lagged: a busy core, most likely
            self._inline_left = BACKOFF_BATCHES
        if batch.error is not None:
            raise batch.error


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


def thread_count() -> int:
    return pool().size


def split(count: int, parts: int, minimum: int = 1) -> list[tuple[int, int]]:
    """[0, count) as at most ``parts`` near-equal (lo, hi) ranges of at least ``minimum`` items each."""
    parts = max(1, min(parts, count // max(1, minimum)))
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
