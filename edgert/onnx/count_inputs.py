"""Build-time inputs computed from a run-time count: data-dependent shapes with a static bound.

Exporters compute shapes from the size of a NonZero or NMS result (Ultralytics: ``Expand`` to ``[n, 4]``,
``Pad`` by ``(300 - n) * 6``). Since ``Shape`` of such rows is a run-time count (edgert/ir/valid_rows.py),
these inputs are small integer tensors computed at run time from the counts alone. edgert keeps every
layer's shape static, sized at the bound, in the way TensorRT handles data-dependent shapes (sizes computed
at run time, buffers sized by a static upper bound):

- the layer is built with the input evaluated **at the bound** (every count at its largest value: the real
  and the static shapes then agree);
- the input is evaluated again at **probe counts** (0, 1, 2, 3, a third, half, the bound less one, the
  bound: each count's own bound is its layer's static rows) by the CPU kernels, and at each probe the
  real ONNX result shape must be what the static layer gives there: the valid rows along the axis that
  carries the count (edgert/ir/valid_rows.py), or a static shape. Anything else is a build error naming the
  counting layer (the plan would return wrong sizes);
- a layer that needs the value itself at run time (Padding with run-time pads) reads the computed tensor.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.graph import Value
from edgert.ir.kinds import BOUNDED_KINDS, bounded_axis
from edgert.ir.valid_rows import Rows
from edgert.kernels.registry import lookup

_MAX_ELEMENTS = 4096     # shape arithmetic is small; a larger tensor means real data, not a count
_MAX_PROBES = 256


class CountInput:
    """An integer input computed from run-time counts (``counts``: the bounded layers' count Values)."""

    def __init__(self, value: Value, counts: list[Value]):
        self.value, self.counts = value, counts

    def at(self, probe: dict[int, int]) -> np.ndarray:
        """The value when each count (by id) is ``probe``'s."""
        return _evaluate(self.value, probe, {})

    def at_bound(self) -> np.ndarray:
        return self.at({id(count): count_bound(count) for count in self.counts})


def count_bound(count: Value) -> int:
    """The largest value a bounded layer's count can take: its output's static rows."""
    producer = count.producer()
    return int(producer.outputs[0].shape[bounded_axis(producer)])


def count_input(ctx, index: int, what: str) -> np.ndarray | CountInput | None:
    """Input ``index`` as a constant array, a CountInput when it is computed from counts only, None when
    absent; otherwise ctx.const_input's error."""
    value = ctx.input(index, required=False)
    if value is None or value.is_const:
        return None if value is None else value.const
    counts = _counts_read(value)
    if counts is None:
        ctx.const_input(index, what)   # raises, saying why
    return CountInput(value, counts)


def rows_of(ctx, value: Value) -> Rows | None:
    """``value``'s valid rows (count, axis, scale), or None when its size is static."""
    from edgert.onnx.ops.constant import data_dependent_rows
    return data_dependent_rows(ctx, value)


def real_shape(value: Value, rows: Rows | None, probe: dict[int, int]) -> tuple[int, ...]:
    """The shape ``value`` has in ONNX's own terms when the counts are ``probe``'s."""
    shape = list(value.shape)
    if rows is not None and id(rows.count) in probe:
        shape[rows.axis] = min(probe[id(rows.count)] * rows.scale, shape[rows.axis])
    return tuple(shape)


def check_probes(ctx, out: Value, real_shape_at: Callable[[dict[int, int]], Sequence[int]],
                 counts: list[Value], what: str) -> None:
    """At every probe of ``counts`` (and of ``out``'s own count), the real result shape ``real_shape_at(probe)``
    must be ``out``'s static shape with its valid rows: else an UnsupportedError naming the counting layer."""
    out_rows = rows_of(ctx, out)
    counts = _unique(counts + ([out_rows.count] if out_rows is not None else []))
    for probe in _probes(counts):
        expected = real_shape(out, out_rows, probe)
        try:
            real = tuple(int(d) for d in real_shape_at(probe))
        except (ShapeError, ModelError, ValueError) as e:
            real = f"an error ({e})"
        if real != expected:
            _mismatch(ctx, counts, probe, what, real, expected, out_rows)


def _mismatch(ctx, counts, probe, what, real, expected, out_rows) -> None:
    source = counts[0].producer()
    at = ", ".join(f"{c.producer().kind.value} {c.producer().name!r} count {probe[id(c)]}" for c in counts)
    carried = f"valid rows along axis {out_rows.axis}" if out_rows is not None else "a static shape"
    raise UnsupportedError(
        f"{ctx.where}: {what} depends on the number of rows {source.kind.value} layer {source.name!r} finds at "
        f"run time; edgert sizes the layer at the bound and carries the count (edgert/onnx/count_inputs.py), "
        f"which needs the real result at every count to be {carried}, but at {at} ONNX gives {real}, edgert "
        f"{expected}; cut the graph before this node and do this step after edgert")


def _unique(values: list[Value]) -> list[Value]:
    return list({id(v): v for v in values}.values())


def _probe_values(bound: int) -> list[int]:
    return sorted({v for v in (0, 1, 2, 3, bound // 3, bound // 2, bound - 1, bound) if 0 <= v <= bound})


def _probes(counts: list[Value]) -> list[dict[int, int]]:
    """Every combination of each count's probe values (each count alone over its values when too many)."""
    per_count = [_probe_values(count_bound(c)) for c in counts]
    if math.prod(len(v) for v in per_count) <= _MAX_PROBES:
        return [{id(c): v for c, v in zip(counts, combo)} for combo in itertools.product(*per_count)]
    bounds = {id(c): count_bound(c) for c in counts}
    return [dict(bounds, **{id(c): v}) for c, values in zip(counts, per_count) for v in values]


def _counts_read(value: Value) -> list[Value] | None:
    """The count Values ``value`` is computed from, or None when it also reads data (or nothing but constants)."""
    counts, seen, stack = [], set(), [value]
    while stack:
        current = stack.pop()
        if id(current) in seen or current.is_const:
            continue
        seen.add(id(current))
        producer = current.producer()
        if producer is None or math.prod(current.shape) > _MAX_ELEMENTS:
            return None
        if producer.kind in BOUNDED_KINDS:
            if current is not producer.outputs[-1]:
                return None
            counts.append(current)
            continue
        stack += [v for v in producer.inputs if v is not None]
    return counts or None


def _evaluate(value: Value, probe: dict[int, int], cache: dict[int, np.ndarray]) -> np.ndarray:
    """``value`` computed by the CPU kernels from the constants and the probe's counts."""
    if value.is_const:
        return np.asarray(value.const)
    if id(value) in probe:
        return np.array(probe[id(value)], np.int64)
    if id(value) not in cache:
        node = value.producer()
        inputs = [None if v is None else _evaluate(v, probe, cache) for v in node.inputs]
        outputs = [np.empty(v.shape, v.dtype.numpy) for v in node.outputs]
        with np.errstate(all="ignore"):
            lookup(node.kind)(node.attrs, inputs, outputs)
        cache.update({id(v): array for v, array in zip(node.outputs, outputs)})
    return cache[id(value)]


def counts_of(ctx, *values: Value) -> list[Value]:
    """The counts of the values among ``values`` that have data-dependent rows."""
    found = [rows_of(ctx, v) for v in values if v is not None]
    return [rows.count for rows in found if rows is not None]
