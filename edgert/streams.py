"""Auxiliary streams: which CUDA stream runs each layer, and which earlier layers it waits for.

TensorRT's ``max_aux_streams``: independent branches of the schedule run concurrently. Stream 0 is the
context's own (main) stream, streams 1..N the auxiliary ones. ``assign_streams`` walks the final
schedule once:

- a layer continues the stream of its first producer whose stream still ends at that producer (a chain
  stays on one stream; at a fork the first consumer continues, the others go elsewhere);
- otherwise it takes a stream whose last layer is already ordered before it (nothing to wait for), else an
  unused stream while fewer than ``1 + max_aux_streams`` are in use, else the stream whose last layer is
  earliest;
- it waits (an event) for each producer on another stream that is not already ordered before it.

Happens-before is tracked with vector clocks (``StreamSchedule.clocks``): ``clock[j][s]`` is the position,
on stream ``s``, of the last layer ordered before layer ``j`` (stream order plus waits), -1 for none. The
memory planner (``edgert.memory``) shares bytes between two buffers only when every access of one is
ordered before every write of the other; plans read back check that every layer's producers are ordered
before it (``edgert.runtime.validate``). Running the layers one by one in schedule order is one valid
interleaving, so the CPU runtime runs a stream plan as it is. Pure data in and out: the runtime imports it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

MAX_STREAMS = 32   # main + auxiliary streams a plan may name (TensorRT allows 7 auxiliary ones by default)


@dataclasses.dataclass(frozen=True)
class StreamSchedule:
    """``streams[j]``: the stream of layer j; ``waits[j]``: earlier layers on other streams that j waits for."""
    streams: tuple
    waits: tuple

    @property
    def count(self) -> int:
        """Streams used (main included)."""
        return max(self.streams, default=0) + 1

    @functools.cached_property
    def positions(self) -> list[int]:
        """Each layer's position among the layers of its stream."""
        seen = [0] * self.count
        out = []
        for stream in self.streams:
            out.append(seen[stream])
            seen[stream] += 1
        return out

    def clocks(self) -> np.ndarray:
        """(layers, streams) int array: before layer j runs, the last position on each stream ordered before it."""
        count, positions = self.count, self.positions
        before = np.full((len(self.streams), count), -1, np.int64)
        after = np.full((len(self.streams), count), -1, np.int64)
        tail = {}
        for index, stream in enumerate(self.streams):
            clock = after[tail[stream]].copy() if stream in tail else np.full(count, -1, np.int64)
            for producer in self.waits[index]:
                np.maximum(clock, after[producer], out=clock)
            before[index] = clock
            clock = clock.copy()
            clock[stream] = positions[index]
            after[index] = clock
            tail[stream] = index
        return before

    def ordered(self, first: int, then: int, clocks: np.ndarray | None = None) -> bool:
        """Layer ``first`` finishes before layer ``then`` starts on every interleaving."""
        clocks = self.clocks() if clocks is None else clocks
        return first != then and clocks[then][self.streams[first]] >= self.positions[first]

    def to_layers(self, layers: list[dict]) -> None:
        """Write the ``stream`` and ``wait`` fields of plan layers (a one-stream schedule writes none)."""
        if self.count <= 1:
            return
        for layer, stream, waits in zip(layers, self.streams, self.waits):
            layer["stream"] = int(stream)
            if waits:
                layer["wait"] = [int(w) for w in waits]

    @classmethod
    def from_layers(cls, layers: list[dict]) -> "StreamSchedule":
        return cls(tuple(int(layer.get("stream", 0)) for layer in layers),
                   tuple(tuple(int(w) for w in layer.get("wait", ())) for layer in layers))


def single_stream(steps: int) -> StreamSchedule:
    return StreamSchedule((0,) * steps, ((),) * steps)


def producers_of(steps: Sequence) -> list[list[int]]:
    """For each step (``inputs`` / ``outputs`` tensor ids), the earlier steps that wrote its inputs."""
    writer: dict[int, int] = {}
    result = []
    for index, step in enumerate(steps):
        result.append(sorted({writer[t] for t in step.inputs if t in writer}))
        for tensor in step.outputs:
            writer[tensor] = index
    return result


def assign_streams(steps: Sequence, max_aux_streams: int) -> StreamSchedule:
    """Streams and waits for steps in schedule order (see the module doc); 0 aux streams: all on stream 0."""
    if max_aux_streams <= 0 or not steps:
        return single_stream(len(steps))
    limit = min(1 + int(max_aux_streams), MAX_STREAMS)
    preds = producers_of(steps)
    streams: list[int] = []
    waits: list[tuple] = []
    tail: dict[int, int] = {}          # stream -> its last layer
    position: list[int] = []
    after: list[list[int]] = []        # vector clock after each layer (lists: streams grow as they open)

    def ordered(layer: int, clock: list[int]) -> bool:
        stream = streams[layer]
        return stream < len(clock) and clock[stream] >= position[layer]

    for index in range(len(steps)):
        base = [-1] * limit
        for producer in preds[index]:
            base = [max(a, b) for a, b in zip(base, after[producer])]
        stream = next((streams[p] for p in preds[index] if tail.get(streams[p]) == p), None)
        if stream is None:
            free = [s for s, last in sorted(tail.items()) if ordered(last, base)]
            if free:
                stream = free[0]
            elif len(tail) < limit:
                stream = len(tail)
            else:
                stream = min(tail, key=lambda s: (tail[s], s))
        clock = list(after[tail[stream]]) if stream in tail else [-1] * limit
        chosen = []
        for producer in sorted(preds[index], reverse=True):   # latest first: its clock may cover the others
            if streams[producer] != stream and not ordered(producer, clock):
                chosen.append(producer)
                clock = [max(a, b) for a, b in zip(clock, after[producer])]
        position.append(clock[stream] + 1)
        clock[stream] = position[-1]
        streams.append(stream)
        waits.append(tuple(sorted(chosen)))
        after.append(clock)
        tail[stream] = index
    return StreamSchedule(tuple(streams), tuple(waits))


def check_layers(layers: list[dict], fail) -> StreamSchedule | None:
    """Check the stream fields of plan layers (``fail(where, what)`` raises); the schedule, or None without them.

    Every layer names a stream (all or none do), in range; waits name earlier layers on other streams; and every
    layer's producers are ordered before it (a wait, directly or through other layers), so no interleaving of
    the streams lets a layer read a tensor before it is written."""
    if not any("stream" in layer or "wait" in layer for layer in layers):
        return None
    for index, layer in enumerate(layers):
        where = f"layer {index} {layer.get('name', '')!r}"
        stream = layer.get("stream")
        if not isinstance(stream, int) or isinstance(stream, bool) or not 0 <= stream < MAX_STREAMS:
            fail(where, f"has stream {stream!r}, expected an integer 0..{MAX_STREAMS - 1} on every layer of a plan "
                        "with auxiliary streams")
        wait = layer.get("wait", [])
        if not isinstance(wait, list):
            fail(where, f"has wait {wait!r}, expected a list of layer indices")
        for other in wait:
            if not isinstance(other, int) or isinstance(other, bool) or not 0 <= other < index:
                fail(where, f"waits for layer {other!r}; a layer waits only for earlier layers (0..{index - 1})")
            if layers[other].get("stream") == stream:
                fail(where, f"waits for layer {other} on its own stream {stream} (stream order already holds)")
    schedule = StreamSchedule.from_layers(layers)
    clocks = schedule.clocks()
    for index, producers in enumerate(producers_of([_Step(layer) for layer in layers])):
        for producer in producers:
            if not schedule.ordered(producer, index, clocks):
                fail(f"layer {index} {layers[index].get('name', '')!r}",
                     f"on stream {schedule.streams[index]} reads the output of layer {producer} on stream "
                     f"{schedule.streams[producer]} without waiting for it (add it to the layer's wait list)")
    return schedule


class _Step:
    def __init__(self, layer: dict):
        self.inputs = [t for t in layer["inputs"] if t >= 0]
        self.outputs = list(layer["outputs"])
