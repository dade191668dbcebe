"""CUDA execution context of a plan with optimization profiles: any input shape in the profile's range.

The plan's kernels are shape-generic (``edgert.kernels.cuda.generic``): for each distinct set of input
shapes the context evaluates the shape program (``specialize``), lowers the plan at those shapes with
the profile's pinned tactics (pure Python, no compiler: grids, parameters and tables exact for the shape),
maps every launch to its compiled generic kernel and the dim values it reads, and captures the launches
into a CUDA graph. Bound shapes (launches, tables, graph) stay in a small LRU cache, so alternating between
a few shapes re-lowers and re-captures nothing.

Memory is allocated once: the arena of the plan (laid out for the largest profile's max shapes: at a
smaller shape each tensor uses the first bytes of its slot), input buffers of their max size, and the
workspace, counters and kernel tables at the sizes the build saw over every profile's shapes. A shape that
needs more (outside what the build lowered) grows them once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Mapping

import numpy as np

from edgert.errors import EdgeRTError, InputError, PlanError, UnsupportedError
from edgert.runtime.cuda import CudaExecutionContext, PackedParams, pack_params, read_counts, trim_to_counts
from edgert.runtime.dynamic_context import DynamicExecutionContext
from edgert.runtime.shapes import specialize

AUX_ALIGNMENT = 256


_C_TYPES = ("int", "unsigned", "long long", "unsigned long long")


def check_section(section: dict, functions: dict, profiles: int) -> None:
    """PlanError unless the ``dynamic`` part of a kernels section has the shape the runtime reads."""
    dynamic = section.get("dynamic")
    try:
        forms, tactics = dynamic["forms"], dynamic["tactics"]
        int(dynamic["sm_count"]), int(dynamic.get("aux_bytes", 0))
        assert isinstance(forms, dict) and isinstance(tactics, list) and len(tactics) == profiles
        for entries in forms.values():
            for entry in entries:
                assert entry["kernel"] in functions
                assert all(t in _C_TYPES for t in entry["types"])
                assert sum(literal is None for literal in entry["literals"]) == len(entry["types"])
        for pinned in tactics:
            for choices in pinned.values():
                assert all(len(choice) == 6 for choice in choices)
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError):
        raise PlanError("plan is corrupt: its CUDA kernels section for optimization profiles (\"dynamic\") is "
                        "malformed; rebuild the plan") from None


class _Bound:
    """Everything bound for one set of input shapes in one profile."""

    __slots__ = ("shapes", "calls", "layers", "aux", "aux_offsets", "graph", "conservative")


class DynamicCudaExecutionContext(CudaExecutionContext):
    CACHE_SIZE = 8   # distinct input-shape sets whose launches and CUDA graphs are kept

    def __init__(self, engine, use_graph: bool = True):
        dynamic = engine.section["dynamic"]
        self._aux_capacity = int(dynamic.get("aux_bytes", 0))
        self._workspace_capacity, self._counter_capacity = engine.workspace_bytes, engine.counter_bytes
        super().__init__(engine, use_graph)
        self._aux_region = self._allocate(max(self._aux_capacity, 1))
        self._aux_owner = None
        self._cache: OrderedDict = OrderedDict()
        self._profile = 0
        self.set_optimization_profile(0)

    # the TensorRT-style shape API and input checks are the CPU dynamic context's
    active_optimization_profile = DynamicExecutionContext.active_optimization_profile
    set_optimization_profile = DynamicExecutionContext.set_optimization_profile
    set_input_shape = DynamicExecutionContext.set_input_shape
    get_tensor_shape = DynamicExecutionContext.get_tensor_shape
    _key = DynamicExecutionContext._key
    _check_range = DynamicExecutionContext._check_range
    _check_inputs = DynamicExecutionContext._check_inputs

    def poison(self, byte: int = 0xFF) -> None:
        """Fill arena, input buffers and kernel tables with ``byte``; the next run uploads its tables again."""
        super().poison(byte)
        self._aux_owner = None

    # -- running ---------------------------------------------------------------------------------
    def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run at the shapes of the given arrays (each in the current profile's range); outputs at their shapes."""
        arrays = self._check_inputs(inputs)
        for binding, array in zip(self.engine.inputs, arrays):
            self._shapes[binding.name] = array.shape
        with self._lock:
            bound = self._activate(self._key())
            for binding, array in zip(self.engine.inputs, arrays):
                self.driver.upload(self.addresses[binding.tensor], array, self.stream)
            self._replay(bound, self.stream)
            results = {}
            for binding in self.engine.outputs:
                out = np.empty(bound.shapes[binding.tensor], binding.dtype)
                self.driver.download(out, self.addresses[binding.tensor], self.stream)
                results[binding.name] = out
            counts = read_counts(self.driver, self.addresses, self.engine.outputs, self.stream)
            self.driver.synchronize(self.stream)
        return trim_to_counts(results, self.engine.outputs, counts)

    def execute_async(self, inputs: Mapping, stream=None) -> dict:
        """Device arrays in (any in-range shapes), fresh device arrays out, all queued on ``stream``."""
        stream = stream if stream is not None else self.stream
        for binding in self.engine.inputs:
            array = inputs.get(binding.name)
            if array is None:
                raise InputError(f"missing input {binding.name!r}")
            if np.dtype(array.dtype) != binding.dtype:
                raise InputError(f"input {binding.name!r}: expected dtype {binding.dtype.name}, got "
                                 f"{np.dtype(array.dtype).name}")
            self.set_input_shape(binding.name, tuple(array.shape))
        with self._lock:
            bound = self._activate(self._key(), stream)
            for binding in self.engine.inputs:
                array = inputs[binding.name]
                nbytes = int(np.prod(array.shape, dtype=np.int64)) * binding.dtype.itemsize
                self.driver.copy(self.addresses[binding.tensor], self.driver.array_ptr(array), nbytes, stream)
            self._replay(bound, stream)
            results = {}
            for binding in self.engine.outputs:
                shape = bound.shapes[binding.tensor]
                out = self.driver.empty(shape, binding.dtype, stream)
                nbytes = int(np.prod(shape, dtype=np.int64)) * binding.dtype.itemsize
                self.driver.copy(self.driver.array_ptr(out), self.addresses[binding.tensor], nbytes, stream)
                results[binding.name] = out
        return results

    def run(self, stream=None) -> None:
        """Run the schedule at the current input shapes on the context's device buffers as they are."""
        stream = stream if stream is not None else self.stream
        with self._lock:
            self._replay(self._activate(self._key(), stream), stream)

    def _replay(self, bound: _Bound, stream) -> None:
        if not self.use_graph:
            for function, grid, block, smem, params in bound.calls:
                self.driver.launch(function, grid, block, smem, params, stream)
            return
        if bound.graph is None:
            self._calls = bound.calls
            bound.graph = self.driver.capture(self.stream, self._run_schedule)
        self.driver.replay(bound.graph, stream)

    def _activate(self, key: tuple, stream=None) -> _Bound:
        """The bound launches of these shapes, with their kernel tables in the context's table region."""
        bound = self._bind_shapes(key)
        if self._aux_owner is not bound:
            for data, offset in zip(bound.aux, bound.aux_offsets):
                self.driver.upload(self._aux_region.ptr + offset, data, stream if stream is not None else self.stream)
            self._aux_owner = bound
        return bound

    # -- binding ---------------------------------------------------------------------------------
    def _bind_shapes(self, key: tuple) -> _Bound:
        cache_key = (self._profile, key)
        bound = self._cache.get(cache_key)
        if bound is not None:
            self._cache.move_to_end(cache_key)
            return bound
        engine = self.engine
        shapes, _ = specialize(engine.shape_engine, {b.tensor: shape for b, shape in zip(engine.inputs, key)})
        self._check_slots(key, shapes)
        try:
            bound = self._lower(shapes)
        except EdgeRTError as e:
            shown = ", ".join(f"{b.name}={'x'.join(map(str, s))}" for b, s in zip(engine.inputs, key))
            raise type(e)(f"at input shapes {shown}: {e}") from e
        self._cache[cache_key] = bound
        if len(self._cache) > self.CACHE_SIZE:
            evicted = self._cache.popitem(last=False)[1]
            if self._aux_owner is evicted:
                self._aux_owner = None
        return bound

    def _check_slots(self, key: tuple, shapes: list) -> None:
        for tensor_id, tensor in enumerate(self.engine.tensors):
            if shapes[tensor_id] is None or tensor_id in self.engine._constants:
                continue
            if int(np.prod(shapes[tensor_id], dtype=np.int64)) > int(np.prod(tensor["shape"], dtype=np.int64)):
                raise InputError(f"input shapes {key}: tensor {tensor['name']!r} needs more elements than its arena "
                                 "slot (planned at the profile's max shapes); narrow the profile")

    def _lower(self, shapes: list) -> _Bound:
        """Bind the plan lowered at ``shapes`` with the profile's tactics. A layer whose kernel at these shapes
        was not compiled (a fast path that the build's shapes did not take) runs as the conservative lowering
        has it (no parity-dependent fast path; the build compiled those forms for every shape)."""
        lowerings = [self._lowering(shapes, conservative=False)]
        matched = [self._matched(*lowerings[0])]
        if any(isinstance(entries, Exception) for entries in matched[0]):
            lowerings.append(self._lowering(shapes, conservative=True))
            matched.append(self._matched(*lowerings[1]))
        self._reserve([ctx for ctx, _ in lowerings])
        bound = _Bound()
        bound.shapes, bound.graph, bound.calls, bound.layers = shapes, None, [], []
        bound.conservative = len(lowerings) > 1
        bound.aux, bound.aux_offsets, resolvers = [], [], []
        for ctx, _ in lowerings:
            resolvers.append(self._resolver(bound, len(bound.aux), [self.engine.derived_for(e) for e in ctx.derived]))
            bound.aux += list(ctx.aux)
        offset = 0
        for data in bound.aux:
            bound.aux_offsets.append(offset)
            offset += -(-len(data) // AUX_ALIGNMENT) * AUX_ALIGNMENT
        functions = self.engine.functions
        for index, entries in enumerate(matched[0]):
            source = 0
            if isinstance(entries, Exception):
                source, entries = 1, matched[1][index]
                if isinstance(entries, Exception):
                    raise entries
            for launch, name, dims in entries:
                params = list(launch["params"]) + ([["align", 8]] + [["i64", v] for v in dims] if dims else [])
                bound.layers.append(index)
                bound.calls.append((functions[name], tuple(launch["grid"]), tuple(launch["block"]),
                                    int(launch.get("smem", 0)), PackedParams(pack_params(params, resolvers[source]))))
        return bound

    def _lowering(self, shapes: list, conservative: bool) -> tuple:
        from edgert.kernels.cuda.generic import PinnedPolicy, lower_at

        engine, dynamic = self.engine, self.engine.section["dynamic"]
        policy = PinnedPolicy(dynamic["tactics"][self._profile], general=conservative)
        ctx, launches, _ = lower_at(engine.document, shapes, engine.arch, int(dynamic["sm_count"]), policy,
                                    conservative=conservative)
        return ctx, launches

    def _matched(self, ctx, launches: list) -> list:
        """Per layer: [(launch, generic kernel, dim values)], or the error naming a launch with no kernel."""
        from edgert.kernels.cuda.generic import launch_units, match

        layers, forms = self.engine.document["layers"], self.engine.section["dynamic"]["forms"]
        per_layer: list = [[] for _ in launches]
        for (index, _), launch, unit in launch_units(ctx, launches, layers):
            if isinstance(per_layer[index], Exception):
                continue
            try:
                name, dims = match(forms, unit, f"layer {layers[index]['name']!r} ({layers[index]['kind']})")
            except UnsupportedError as error:
                per_layer[index] = error
                continue
            if name not in self.engine.functions:
                raise PlanError(f"plan is corrupt: generic kernel {name!r} is not in its modules")
            per_layer[index].append((launch, name, dims))
        return per_layer

    def _resolver(self, bound: _Bound, aux_base: int, derived: list):
        def resolve(entry) -> int:
            if entry[0] == "a":
                return self._aux_region.ptr + bound.aux_offsets[aux_base + int(entry[1])] + int(entry[2])
            if entry[0] == "d":
                return derived[int(entry[1])] + int(entry[2])
            return self._resolve(entry)
        return resolve

    def _reserve(self, contexts: list) -> None:
        """Grow workspace, counters or the table region when a shape needs more than the build saw."""
        needed_aux = sum(-(-len(d) // AUX_ALIGNMENT) * AUX_ALIGNMENT for ctx in contexts for d in ctx.aux)
        if needed_aux > self._aux_capacity:
            self._aux_capacity = needed_aux
            self._aux_region = self._allocate(needed_aux)
            self._forget_bindings()
        workspace = max(ctx.workspace_bytes for ctx in contexts)
        if workspace > self._workspace_capacity:
            self._workspace_capacity = workspace
            self._workspace = self._allocate(workspace)
            self._forget_bindings()
        counters = 4 * max(ctx.counters for ctx in contexts)
        if counters > self._counter_capacity:
            self._counter_capacity = counters
            self._counters = self._allocate(counters)
            self.driver.memset(self._counters.ptr, 0, counters, self.stream)
            self.driver.synchronize(self.stream)
            self._forget_bindings()

    def _forget_bindings(self) -> None:
        self._cache.clear()
        self._aux_owner = None

    def layer_calls(self) -> list[tuple]:
        """(layer index, launch) of every launch at the current input shapes, in schedule order (their kernel
        tables uploaded)."""
        bound = self._activate(self._key())
        return list(zip(bound.layers, bound.calls))

    @property
    def bound_shapes(self) -> int:
        """How many distinct input-shape sets are bound now (the cache)."""
        return len(self._cache)
