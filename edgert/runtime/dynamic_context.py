"""The execution context of a plan with optimization profiles: any input shape in the current profile's range.

Memory: one arena per context, the plan's (laid out for the largest profile's max shapes); each tensor
has its slot at a fixed offset, and at a smaller shape it is a view of the first bytes of that slot. The
graph inputs get staging buffers of their max size the same way. So changing shapes never allocates an
arena.

Binding: for each distinct set of input shapes the context evaluates the plan's shape program
(``edgert.runtime.shapes.specialize``: every tensor's shape, every layer's resolved attrs), makes the
views, and binds every layer as the static context does (prepare hooks, scratch). The bound step lists
are kept in a small LRU cache keyed by the input shapes, so alternating between a few shapes re-binds
nothing. The context binds each profile's max shapes first, so the scratch buffer starts at the size the
largest shapes need.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Mapping, Sequence

import numpy as np

from edgert.errors import InputError
from edgert.runtime.engine import ExecutionContext, Workspace, _bind, _bind_over_input, allocate_arena
from edgert.runtime.shapes import check_in_profile, format_range, specialize


class _Bound:
    """Everything bound for one set of input shapes."""

    __slots__ = ("shapes", "buffers", "staged", "steps", "runs", "prepared", "results", "outs")


class DynamicExecutionContext(ExecutionContext):
    CACHE_SIZE = 8   # distinct input-shape sets whose bound layers are kept

    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        memory = engine.document.get("memory") or {}
        self.arena, self._slots = _allocate_slots(engine, memory)
        self._elided = set(memory.get("elided", []))
        self._overwrite = set(memory.get("overwrite", []))
        self._workspace = Workspace(engine)
        self._cache: OrderedDict = OrderedDict()
        # Bind every profile's max shapes once to learn the scratch they need, then again over one buffer of
        # that size, so that smaller shapes later bind without growing it.
        for _ in range(2):
            for profile in engine.profiles:
                self._bind_shapes(tuple(profile[b.name][2] for b in engine.inputs))
            needed = self._workspace.allocated_bytes
            self._workspace.reserve(needed)
            self._cache.clear()
        self._profile = 0
        self.set_optimization_profile(0)

    # -- TensorRT-style shape API ----------------------------------------------------------------
    @property
    def active_optimization_profile(self) -> int:
        return self._profile

    def set_optimization_profile(self, index: int) -> None:
        """Select profile ``index``; every input's shape becomes that profile's opt shape."""
        count = len(self.engine.profiles)
        if not isinstance(index, int) or not 0 <= index < count:
            raise InputError(f"optimization profile {index!r} does not exist; the plan has {count} (0..{count - 1})")
        self._profile = index
        self._shapes = {b.name: self.engine.profiles[index][b.name][1] for b in self.engine.inputs}
        self._bound = self._bind_shapes(self._key())

    def set_input_shape(self, name: str, shape: Sequence[int]) -> None:
        """The shape the next ``execute`` runs input ``name`` at (InputError outside the profile's range)."""
        if name not in self._shapes:
            raise InputError(f"unknown input {name!r}; the plan's inputs are: {', '.join(self._shapes)}")
        shape = tuple(int(d) for d in shape)
        self._check_range(name, shape)
        self._shapes[name] = shape

    def get_tensor_shape(self, name: str) -> tuple:
        """The shape of input or output ``name`` at the inputs' current shapes."""
        if name in self._shapes:
            return self._shapes[name]
        output = next((b for b in self.engine.outputs if b.name == name), None)
        if output is None:
            names = [b.name for b in self.engine.inputs + self.engine.outputs]
            raise InputError(f"unknown tensor {name!r}; the plan's inputs and outputs are: {', '.join(names)}")
        return tuple(self._bind_shapes(self._key()).shapes[output.tensor])

    # -- running ---------------------------------------------------------------------------------
    def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run at the shapes of the given arrays (each in the current profile's range); outputs at their shapes."""
        return self._execute(inputs, _run_layers)

    def execute_each(self, inputs: Mapping[str, np.ndarray], after_layer, before_layer=None) -> dict:
        """``execute()`` with hooks around each layer that runs (profiling, --check-finite), at the arrays' shapes."""
        def run_with_hooks(bound):
            for run, step, outs in zip(bound.runs, bound.steps, bound.outs):
                if before_layer is not None:
                    before_layer(step.name, outs)
                run()
                after_layer(step.name, outs)
        return self._execute(inputs, run_with_hooks)

    def _execute(self, inputs: Mapping[str, np.ndarray], run_layers) -> dict[str, np.ndarray]:
        """Bind the arrays' shapes, stage the arrays, ``run_layers(bound)``, copy the outputs out."""
        arrays = self._check_inputs(inputs)
        for binding, array in zip(self.engine.inputs, arrays):
            self._shapes[binding.name] = array.shape
        with self._lock, np.errstate(all="ignore"):
            bound = self._bound = self._bind_shapes(self._key())
            for staged, array in zip(bound.staged, arrays):
                np.copyto(staged, array)
            run_layers(bound)
            return {name: np.array(buffer, copy=True) for name, buffer in bound.results}

    @property
    def buffers(self) -> list:
        """Every tensor's array at the plan's tensor shapes (the largest profile's max), whose attrs the plan's
        layers carry: what ``edgert compare`` runs layer by layer."""
        return self._bind_shapes(tuple(b.shape for b in self.engine.inputs)).buffers

    @property
    def _runs(self):
        return self._bound.runs

    def fused_layers(self) -> list:
        """None here: layers bound per set of input shapes run one by one (fusion is for static plans)."""
        return []

    def unprepared_layers(self) -> list[str]:
        return [step.name for step, prepared in zip(self._bound.steps, self._bound.prepared) if not prepared]

    @property
    def scratch_bytes(self) -> int:
        return self._workspace.allocated_bytes

    def _key(self) -> tuple:
        return tuple(self._shapes[b.name] for b in self.engine.inputs)

    def _check_range(self, name: str, shape: tuple) -> None:
        try:
            check_in_profile(self.engine.profiles[self._profile], name, shape, self._profile)
        except InputError:
            for index, profile in enumerate(self.engine.profiles):
                low, _, high = profile[name]
                if len(shape) == len(low) and all(a <= d <= b for a, d, b in zip(low, shape, high)):
                    raise InputError(f"input {name!r}: shape {shape} is outside optimization profile "
                                     f"{self._profile} ({format_range(*self.engine.profiles[self._profile][name][::2])})"
                                     f" but inside profile {index}; call set_optimization_profile({index})") from None
            raise

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        expected = {b.name for b in self.engine.inputs}
        unknown = sorted(set(inputs) - expected)
        if unknown:
            raise InputError(f"unknown input {unknown[0]!r}; the plan's inputs are: {', '.join(sorted(expected))}")
        arrays = []
        for binding in self.engine.inputs:
            if binding.name not in inputs:
                low, _, high = self.engine.profiles[self._profile][binding.name]
                raise InputError(f"missing input {binding.name!r} ({binding.dtype.name}, shape "
                                 f"{format_range(low, high)})")
            array = np.asarray(inputs[binding.name])
            if array.dtype != binding.dtype:
                raise InputError(f"input {binding.name!r}: expected dtype {binding.dtype.name}, got "
                                 f"{array.dtype.name} (convert with .astype(np.{binding.dtype.name}))")
            self._check_range(binding.name, array.shape)
            arrays.append(np.ascontiguousarray(array))
        return arrays

    # -- binding ---------------------------------------------------------------------------------
    def _bind_shapes(self, key: tuple) -> _Bound:
        bound = self._cache.get(key)
        if bound is not None:
            self._cache.move_to_end(key)
            return bound
        engine = self.engine
        shapes, attrs = specialize(engine, {b.tensor: shape for b, shape in zip(engine.inputs, key)})
        buffers = [None] * len(engine.tensors)
        for tensor_id, array in engine.constants.items():
            buffers[tensor_id] = array
        for tensor_id, flat in self._slots.items():
            count = int(np.prod(shapes[tensor_id], dtype=np.int64))
            if count > flat.size:   # a tensor larger than at the max shapes: its size is not monotone in them
                raise InputError(f"input shapes {key}: tensor {engine.tensors[tensor_id]['name']!r} needs "
                                 f"{count} elements, more than its arena slot of {flat.size} (planned at the "
                                 "profile's max shapes); narrow the profile")
            buffers[tensor_id] = flat[:count].reshape(shapes[tensor_id])
        bound = _Bound()
        bound.shapes, bound.buffers = shapes, buffers
        bound.staged = [buffers[b.tensor] for b in engine.inputs]
        bound.steps, bound.runs, bound.prepared, bound.outs = [], [], [], []
        for index, step in enumerate(engine.steps):
            if index in self._elided:
                continue
            outs = [buffers[i] for i in step.outputs]
            bind = _bind_over_input if index in self._overwrite else _bind
            run, prepared = bind(step, buffers, outs, self._workspace, attrs=attrs[index])
            bound.steps.append(step)
            bound.runs.append(run)
            bound.prepared.append(prepared)
            bound.outs.append(outs)
        bound.results = [(b.name, buffers[b.tensor]) for b in engine.outputs]
        self._cache[key] = bound
        if len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        return bound


def _run_layers(bound) -> None:
    for run in bound.runs:
        run()


def _allocate_slots(engine, memory: dict) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The arena, and each non-constant tensor's slot as a flat array of its dtype at its max size."""
    tensors = engine.tensors
    raw, placements = allocate_arena(memory)
    slots: dict[int, np.ndarray] = {tensor_id: _flat(raw, start, tensors[tensor_id]) for tensor_id, start in placements}
    ids = {b.tensor for b in engine.inputs} | {i for step in engine.steps for i in step.outputs}
    for tensor_id in ids:   # graph inputs (staging buffers) and anything the plan did not place
        if tensor_id not in slots and tensor_id not in engine.constants:
            tensor = tensors[tensor_id]
            slots[tensor_id] = np.empty(int(np.prod(tensor["shape"], dtype=np.int64)), np.dtype(tensor["dtype"]))
    return raw, slots


def _flat(raw: np.ndarray, offset: int, tensor: dict) -> np.ndarray:
    dtype = np.dtype(tensor["dtype"])
    count = int(np.prod(tensor["shape"], dtype=np.int64))
    return raw[offset:offset + count * dtype.itemsize].view(dtype)
