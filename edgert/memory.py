"""Static memory planning: a pure function from a schedule and tensor sizes to arena offsets.

Inputs are plain data (``TensorSpec``, ``StepSpec``) so the planner knows nothing of the IR:

1. **Aliases** turn tensors into shared buffers: a ``view`` step's output is its input
   reinterpreted (reshape) or a contiguous part of it (a slice); an ``inplace`` step writes its output over an input that dies there
   (same size, dtype and shape); an ``overwrite`` step writes its output from the start of its first input
   when that dies there (same dtype and leading two dims, no more bytes: pooling and depthwise convolution
   plane by plane, see ``edgert.schedule.step_alias``); a ``concat`` step's inputs are written straight into their slice
   of its output when the slice is contiguous, and the step becomes a no-op (elided).
2. **Lifetimes**: a buffer lives from the step that first writes it to the last step that reads it
   (graph outputs live to the end).
3. **Offsets**: greedy placement with best fit over several orderings (by size, by lifetime, by
   size × lifetime, by start), then a deterministic local search (hill climbing over the placement
   order) keeping the best; it stops early when the arena equals the lower bound.

With auxiliary streams (``streams=``, an ``edgert.streams.StreamSchedule``) layers of different streams run
concurrently, so schedule positions no longer order them: two buffers may share bytes only when every
access of one is ordered (vector clocks) before every write of the other, an in-place write needs every
other reader of its input ordered before it, and ``overwrite`` aliases are not made (CUDA kernels never
take them).

``plan_memory(..., reuse=False)`` turns reuse off (every tensor gets its own bytes) for debugging,
and ``MemoryPlan.summary()`` prints what reuse saved.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

import numpy as np

ALIGNMENT = 256


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    id: int
    nbytes: int
    pool: str = "cpu"
    external: bool = False      # a graph input or constant: not in the arena
    graph_output: bool = False  # must survive to the end of the schedule
    dtype: str = "float32"
    shape: tuple = ()


@dataclasses.dataclass(frozen=True)
class StepSpec:
    inputs: tuple          # tensor ids (-1 = absent)
    outputs: tuple
    alias: str | None = None   # None | "view" | "inplace" | "overwrite" | "concat"
    concat_axis: int = 0
    view_offset: int = 0       # bytes into the input where a "view" output starts (contiguous slices)


@dataclasses.dataclass
class Buffer:
    id: int            # the tensor that owns the buffer
    nbytes: int        # aligned size
    first: int
    last: int
    pool: str
    # An overwritten input: its first nbytes go on holding the output written over it, the tail_bytes after
    # them are free once step tail_last (the overwrite) is done. Zero for a plain buffer.
    tail_bytes: int = 0
    tail_last: int = -1
    slot: int = -1     # row of the conflict matrix (plans with auxiliary streams), -1 without one

    def rectangles(self) -> list[tuple[int, int, int, int]]:
        """(byte offset in the buffer, bytes, first step, last step) of each part."""
        head = [(0, self.nbytes, self.first, self.last)]
        return head + [(self.nbytes, self.tail_bytes, self.first, self.tail_last)] if self.tail_bytes else head

    @property
    def total_bytes(self) -> int:
        return self.nbytes + self.tail_bytes


@dataclasses.dataclass
class MemoryPlan:
    pools: dict            # pool -> {"arena_bytes": int, "offsets": {tensor: offset}}
    lifetimes: dict        # tensor -> (first_step, last_step) of the buffer it lives in
    elided_steps: list     # steps that became no-ops (concat written in place, reshape views)
    lower_bound_bytes: int
    no_reuse_bytes: int
    overwrite_steps: list = dataclasses.field(default_factory=list)   # steps whose output starts over their input

    @property
    def arena_bytes(self) -> int:
        return sum(pool["arena_bytes"] for pool in self.pools.values())

    def summary(self) -> str:
        saved = self.no_reuse_bytes - self.arena_bytes
        return (f"arena {self.arena_bytes / 2**20:.2f} MiB (lower bound {self.lower_bound_bytes / 2**20:.2f} MiB, "
                f"no reuse {self.no_reuse_bytes / 2**20:.2f} MiB, reuse saved {saved / 2**20:.2f} MiB)")


def align(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return -(-max(nbytes, 1) // alignment) * alignment


# -- aliasing ------------------------------------------------------------------------------------
class _Aliases:
    """Union of tensors into buffers: root[t] is the buffer owner, delta[t] the byte offset inside it."""

    def __init__(self, tensors: dict[int, TensorSpec]):
        self.tensors = tensors
        self.parent: dict[int, int] = {}
        self.delta: dict[int, int] = {}

    def root(self, tensor: int) -> tuple[int, int]:
        offset = 0
        while tensor in self.parent:
            offset += self.delta[tensor]
            tensor = self.parent[tensor]
        return tensor, offset

    def aliased(self, tensor: int) -> bool:
        return tensor in self.parent or any(p == tensor for p in self.parent.values())

    def join(self, child: int, owner: int, offset: int = 0) -> None:
        self.parent[child], self.delta[child] = owner, offset


def _internal(tensors, tid) -> bool:
    return tid >= 0 and not tensors[tid].external


def _resolve_aliases(steps: Sequence[StepSpec], tensors: dict[int, TensorSpec], last_use: dict[int, int],
                     order=None):
    """``order``: a ``_StreamOrder`` (plans with auxiliary streams) or None (one stream: positions order steps)."""
    aliases = _Aliases(tensors)
    elided: list[int] = []
    overwrites: list[int] = []
    concat_readers: dict[int, int] = {}
    for step in steps:
        if step.alias == "concat":
            for source in set(step.inputs):
                concat_readers[source] = concat_readers.get(source, 0) + 1
    for index, step in enumerate(steps):
        if step.alias == "view" and _internal(tensors, step.inputs[0]):
            source, out = step.inputs[0], step.outputs[0]
            if not tensors[out].graph_output and tensors[source].pool == tensors[out].pool:
                aliases.join(out, source, step.view_offset)
                elided.append(index)
        elif step.alias == "inplace":
            out = step.outputs[0]
            for source in step.inputs:
                spec = tensors.get(source)
                if (_internal(tensors, source) and last_use.get(source) == index and not spec.graph_output
                        and spec.nbytes == tensors[out].nbytes and spec.dtype == tensors[out].dtype
                        and spec.shape == tensors[out].shape and spec.pool == tensors[out].pool
                        and not aliases.aliased(source) and step.inputs.count(source) == 1
                        and (order is None or order.readers_before(source, index))):
                    aliases.join(out, source)
                    break
        elif step.alias == "overwrite" and order is None and _may_overwrite(step, index, tensors, aliases, last_use):
            aliases.join(step.outputs[0], step.inputs[0])
            overwrites.append(index)
        elif step.alias == "concat" and _concat_in_place(step, tensors, aliases, concat_readers):
            offset = 0
            for source in step.inputs:
                aliases.join(source, step.outputs[0], offset)
                offset += tensors[source].nbytes
            elided.append(index)
    return aliases, elided, overwrites


def _may_overwrite(step: StepSpec, index: int, tensors, aliases: _Aliases, last_use: dict[int, int]) -> bool:
    """The output may start over the first input: it dies here, is its own buffer and read once, and the output
    has as many planes (leading two dims) of no more bytes each."""
    source, out = step.inputs[0], tensors[step.outputs[0]]
    spec = tensors.get(source)
    return (_internal(tensors, source) and last_use.get(source) == index and not spec.graph_output
            and not out.graph_output and spec.pool == out.pool and spec.dtype == out.dtype
            and spec.shape[:2] == out.shape[:2] and out.nbytes <= spec.nbytes
            and not aliases.aliased(source) and step.inputs.count(source) == 1)


def _concat_in_place(step: StepSpec, tensors, aliases: _Aliases, concat_readers: dict[int, int]) -> bool:
    out = tensors[step.outputs[0]]
    if any(d != 1 for d in out.shape[:step.concat_axis]):
        return False  # slices would be strided: producers could not write them contiguously
    if len(set(step.inputs)) != len(step.inputs):
        return False
    for source in step.inputs:
        spec = tensors.get(source)
        # Each input must be its own buffer (not a view or an in-place result), read by no other concat.
        if (not _internal(tensors, source) or spec.graph_output or aliases.aliased(source)
                or spec.pool != out.pool or spec.dtype != out.dtype or concat_readers.get(source) != 1):
            return False
    return True


class _StreamOrder:
    """Happens-before between the steps of a schedule with auxiliary streams (``edgert.streams``)."""

    def __init__(self, steps: Sequence[StepSpec], schedule):
        self.schedule, self.clocks = schedule, schedule.clocks()
        self.positions = np.array(schedule.positions, np.int64)
        self.streams = np.array(schedule.streams, np.int64)
        self.readers: dict[int, list[int]] = {}
        for index, step in enumerate(steps):
            for tid in set(step.inputs):
                self.readers.setdefault(tid, []).append(index)

    def readers_before(self, tensor: int, index: int) -> bool:
        """Every other step that reads ``tensor`` finishes before step ``index`` starts."""
        return all(r == index or self.clocks[index][self.streams[r]] >= self.positions[r]
                   for r in self.readers.get(tensor, ()))

    def conflicts(self, steps, tensors, aliases: _Aliases, buffers: list[Buffer]) -> np.ndarray:
        """(buffers, buffers) bool: may run concurrently (neither's accesses all ordered before the other's
        writes). Sets each buffer's ``slot`` to its row."""
        slot = {b.id: i for i, b in enumerate(buffers)}
        for i, b in enumerate(buffers):
            b.slot = i
        count, width = len(buffers), self.clocks.shape[1]
        never = np.iinfo(np.int64).max
        frontier = np.full((count, width), -1, np.int64)    # last access position per stream
        earliest = np.full((count, width), never, np.int64)  # per stream, what every write of it comes after
        for index, step in enumerate(steps):
            stream, position = self.streams[index], self.positions[index]
            for tid in step.inputs:
                if _internal(tensors, tid):
                    row = slot[aliases.root(tid)[0]]
                    frontier[row, stream] = max(frontier[row, stream], position)
            for tid in step.outputs:
                if _internal(tensors, tid):
                    row = slot[aliases.root(tid)[0]]
                    frontier[row, stream] = max(frontier[row, stream], position)
                    np.minimum(earliest[row], self.clocks[index], out=earliest[row])
        for tid, spec in tensors.items():
            if spec.graph_output and not spec.external:
                frontier[slot[aliases.root(tid)[0]]] = never   # read after the last step: nothing follows it
        before = np.empty((count, count), bool)   # before[a, b]: a wholly before b (rows in chunks: bounded memory)
        for start in range(0, count, 256):
            before[start:start + 256] = (earliest[None, :, :] >= frontier[start:start + 256, None, :]).all(axis=2)
        return ~(before | before.T)


# -- lifetimes -----------------------------------------------------------------------------------
def _buffers(steps, tensors, aliases: _Aliases, alignment: int, overwrites=()) -> tuple[list[Buffer], dict]:
    end = len(steps)
    spans: dict[int, list[int]] = {}
    for index, step in enumerate(steps):
        for tid in step.outputs:
            if _internal(tensors, tid):
                owner = aliases.root(tid)[0]
                span = spans.setdefault(owner, [index, index])
                span[0], span[1] = min(span[0], index), max(span[1], index)
        for tid in step.inputs:
            if _internal(tensors, tid):
                owner = aliases.root(tid)[0]
                span = spans.setdefault(owner, [index, index])
                span[1] = max(span[1], index)
    for tid, spec in tensors.items():
        if spec.graph_output and not spec.external:
            spans[aliases.root(tid)[0]][1] = end
    tails = {}
    for index in overwrites:   # the overwritten input owns the buffer; the output keeps its first bytes
        source, out = steps[index].inputs[0], steps[index].outputs[0]
        head = align(tensors[out].nbytes, alignment)
        tails[source] = (head, align(tensors[source].nbytes, alignment) - head, index)
    buffers = []
    for owner, (first, last) in spans.items():
        head, tail, tail_last = tails.get(owner, (align(tensors[owner].nbytes, alignment), 0, -1))
        buffers.append(Buffer(owner, head, first, last, tensors[owner].pool, tail, tail_last))
    return buffers, spans


def lower_bound(buffers: Sequence[Buffer]) -> int:
    """Max over steps of the bytes of buffers alive at that step."""
    if not buffers:
        return 0
    horizon = max(b.last for b in buffers) + 2
    delta = np.zeros(horizon, dtype=np.int64)
    for b in buffers:
        for _, nbytes, first, last in b.rectangles():
            delta[first] += nbytes
            delta[last + 1] -= nbytes
    return int(np.cumsum(delta).max())


# -- offset assignment ---------------------------------------------------------------------------
def _greedy(order: Sequence[Buffer], conflicts: np.ndarray | None = None) -> tuple[dict[int, int], int]:
    """Best-fit placement in the given order: the smallest gap among time-overlapping buffers that fits
    (an overwritten buffer, two rectangles: the lowest offset where both fit). ``conflicts`` (auxiliary
    streams): buffers meet when their row says so, not by step ranges."""
    n = len(order) + sum(1 for b in order if b.tail_bytes)
    slots = np.empty(n, np.int64)
    firsts = np.empty(n, np.int64)
    lasts = np.empty(n, np.int64)
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    offsets: dict[int, int] = {}
    arena, count = 0, 0
    for buffer in order:
        if buffer.tail_bytes:
            offset = _lowest_fit(buffer, firsts[:count], lasts[:count], starts[:count], ends[:count])
        else:
            if conflicts is None:
                live = (firsts[:count] <= buffer.last) & (lasts[:count] >= buffer.first)
            else:
                live = conflicts[buffer.slot][slots[:count]]
            offset = 0
            if live.any():
                s, e = starts[:count][live], ends[:count][live]
                by_start = np.argsort(s, kind="stable")
                s, e = s[by_start], e[by_start]
                reach = np.maximum.accumulate(e)
                gap_starts = np.concatenate(([0], reach))
                gap_sizes = np.concatenate((s, [np.iinfo(np.int64).max])) - gap_starts
                fits = np.nonzero(gap_sizes >= buffer.nbytes)[0]
                offset = int(gap_starts[fits[np.argmin(gap_sizes[fits])]])
        for delta, nbytes, first, last in (buffer.rectangles() if buffer.tail_bytes else
                                           ((0, buffer.nbytes, buffer.first, buffer.last),)):
            firsts[count], lasts[count], slots[count] = first, last, buffer.slot
            starts[count], ends[count] = offset + delta, offset + delta + nbytes
            count += 1
        offsets[buffer.id] = offset
        arena = max(arena, offset + buffer.total_bytes)
    return offsets, arena


def _lowest_fit(buffer: Buffer, firsts, lasts, starts, ends) -> int:
    """The lowest offset where every rectangle of ``buffer`` misses every placed rectangle it meets in time."""
    parts = buffer.rectangles()
    live = [(firsts <= last) & (lasts >= first) for _, _, first, last in parts]
    candidates = sorted({0} | {int(end) - delta for (delta, _, _, _), mask in zip(parts, live)
                               for end in ends[mask] if end >= delta})
    for offset in candidates:
        if all(not np.any((starts[mask] < offset + delta + nbytes) & (ends[mask] > offset + delta))
               for (delta, nbytes, _, _), mask in zip(parts, live)):
            return offset
    raise AssertionError("unreachable: the offset past every placed rectangle fits")


_ORDERINGS = {
    "size": lambda b: (-b.total_bytes, -(b.last - b.first), b.first),
    "lifetime": lambda b: (-(b.last - b.first), -b.total_bytes, b.first),
    "area": lambda b: (-b.total_bytes * (b.last - b.first + 1), b.first),
    "start": lambda b: (b.first, -b.total_bytes),
}


def assign_offsets(buffers: Sequence[Buffer], *, search_steps: int | None = None, seed: int = 0, conflicts=None):
    """(offsets, arena_bytes, strategy name) for buffers of one pool; deterministic for a given seed.
    ``conflicts``: which buffers may be alive together (rows by ``Buffer.slot``), None: overlapping step ranges."""
    if not buffers:
        return {}, 0, "empty"
    bound = lower_bound(buffers)
    best = None
    for name, key in _ORDERINGS.items():
        order = sorted(buffers, key=key)
        offsets, arena = _greedy(order, conflicts)
        if best is None or arena < best[1]:
            best = (offsets, arena, name, order)
    offsets, arena, name, order = best
    # The search budget shrinks with the square of the problem (each greedy pass is ~n log n with
    # ~n live neighbours): ~1000 moves for a 200-buffer CNN, ~40 for a 1000-layer graph.
    steps = search_steps if search_steps is not None else min(1000, int(4e7 / max(len(buffers), 1) ** 2))
    rng = random.Random(seed)
    for _ in range(steps):
        if arena <= bound or len(order) < 2:
            break
        i, j = rng.sample(range(len(order)), 2)
        candidate = list(order)
        candidate.insert(j, candidate.pop(i))
        new_offsets, new_arena = _greedy(candidate, conflicts)
        if new_arena <= arena:
            if new_arena < arena:
                name = f"{name}+search"
            offsets, arena, order = new_offsets, new_arena, candidate
    return offsets, arena, name


def plan_memory(steps: Sequence[StepSpec], tensors: Sequence[TensorSpec], *, alignment: int = ALIGNMENT,
                reuse: bool = True, search_steps: int | None = None, streams=None) -> MemoryPlan:
    """Place every internal tensor of the schedule in its pool's arena. ``streams``: the schedule's
    ``edgert.streams.StreamSchedule`` when layers run on auxiliary streams (None or one stream: in order)."""
    table = {t.id: t for t in tensors}
    order = _StreamOrder(steps, streams) if streams is not None and streams.count > 1 else None
    last_use: dict[int, int] = {}
    for index, step in enumerate(steps):
        for tid in step.inputs:
            last_use[tid] = index
    if reuse:
        aliases, elided, overwrites = _resolve_aliases(steps, table, last_use, order)
    else:
        aliases, elided, overwrites = _Aliases(table), [], []
    buffers, spans = _buffers(steps, table, aliases, alignment, overwrites)
    conflicts = order.conflicts(steps, table, aliases, buffers) if order is not None else None
    no_reuse = sum(align(t.nbytes, alignment) for t in tensors if not t.external)
    pools: dict[str, dict] = {}
    bound = 0
    for pool in sorted({b.pool for b in buffers}):
        members = [b for b in buffers if b.pool == pool]
        bound += lower_bound(members)
        if reuse:
            offsets, arena, strategy = assign_offsets(members, search_steps=search_steps, conflicts=conflicts)
        else:
            offsets, arena, strategy = _no_reuse(members)
        pools[pool] = {"arena_bytes": arena, "offsets": offsets, "strategy": strategy}
    lifetimes = {}
    for tid, spec in table.items():
        if spec.external:
            continue
        owner, delta = aliases.root(tid)
        if owner not in spans:
            continue  # a tensor nobody writes or reads (cannot happen in a verified graph)
        pools[table[owner].pool]["offsets"][tid] = pools[table[owner].pool]["offsets"][owner] + delta
        lifetimes[tid] = tuple(spans[owner])
    for index in overwrites:   # an overwritten input is gone after its step; the output it held goes on
        source = steps[index].inputs[0]
        lifetimes[source] = (lifetimes[source][0], index)
    return MemoryPlan(pools, lifetimes, elided, bound, no_reuse, overwrites)


def _no_reuse(buffers):
    offsets, cursor = {}, 0
    for b in buffers:
        offsets[b.id] = cursor
        cursor += b.total_bytes
    return offsets, cursor, "no-reuse"
