"""Engine (a loaded plan, weights held once) and ExecutionContext (its own buffers, one run at a time).

Needs only NumPy and msgpack: never import onnx, the builder or the passes from here.

Every array a layer touches is fixed when a context is created: intermediate tensors are views of
the context's arena, constants are the engine's, and the graph inputs are copied into buffers the
context owns (one small copy per run). So the context binds each layer once, up front, into a
``run()`` that takes no arguments, and ``execute()`` is a loop over those calls:

- a kernel with a **prepare hook** (``edgert.kernels.registry.register_prepare``) is asked, per
  context, for a ``run()`` over its very arrays: it binds shapes, strided views over the arena,
  weights reshaped for BLAS, and scratch arrays, so each run is a few NumPy calls;
- any other kernel (or a hook that returns None) runs as ``kernel(attrs, inputs, outputs)`` with
  the same bound lists.

A hook gets a ``Workspace``: scratch memory of its context (one buffer shared by all the
context's layers, since they run one at a time) and arrays derived from constants, computed once
per engine and shared by all its contexts, as the constants are. DLA-simulated and int8 layers
run their own kernels and are never prepared. ``ExecutionContext.unprepared_layers()`` names the
layers left without a fast path.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Callable, Mapping

import numpy as np

from edgert.errors import DeviceError, InputError, PlanError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu.fused import Layer, fuse
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import lookup, lookup_prepare
from edgert.runtime.io import check_inputs


class Binding:
    """A graph input or output. ``rows``: (count tensor, axis) for an output whose size depends on the data
    (NMS, NonZero): ``shape`` is then its bound, and results are trimmed to the count along the axis."""

    __slots__ = ("name", "dtype", "shape", "tensor", "rows", "scale")

    def __init__(self, entry: dict, tensors: list | None = None):
        self.name = entry["name"]
        self.dtype = np.dtype(entry["dtype"])
        self.shape = tuple(entry["shape"])
        self.tensor = int(entry["tensor"])
        # an int8 binding of codes (--input-format / --output-format NAME=int8): values are codes * scale
        self.scale = tensors[self.tensor].get("scale") if tensors is not None else None
        rows = entry.get("rows")
        self.rows = (int(rows["tensor"]), int(rows["axis"])) if rows else None

    def __repr__(self) -> str:
        scale = f", scale={self.scale}" if self.scale is not None else ""
        return f"Binding({self.name!r}, {self.dtype.name}, {self.shape}{scale})"


class _Step:
    """One layer ready to run: its kernel, attrs and tensor ids."""

    __slots__ = ("name", "kind", "kernel", "prepare", "attrs", "inputs", "outputs", "dynamic", "registered")

    def __init__(self, layer: dict, device: str):
        self.name = layer["name"]
        try:
            self.kind = LayerKind(layer["kind"])
        except ValueError:
            raise PlanError(f"layer {self.name!r} has unknown kind {layer['kind']!r}; "
                            "the plan needs a newer edgert") from None
        placed = str(layer.get("device", "cpu"))
        self.attrs = layer.get("attrs") or {}
        self.prepare = None
        self.registered = False   # runs the registry's kernel for its kind (not the DLA simulator's or int8's)
        if placed.startswith("dla") or self.kind == LayerKind.REFORMAT:
            from edgert.targets.dla import kernel_for  # the DLA simulator (NumPy)
            self.kernel = kernel_for(self.kind, placed)
        elif self.attrs.get("int8") and device == "cpu":
            from edgert.kernels.cpu.int8 import kernel_for as int8_kernel_for  # int8 reference kernels
            self.kernel = int8_kernel_for(self.kind, self.attrs, placed)
        else:
            self.kernel = lookup(self.kind, device)
            self.prepare = lookup_prepare(self.kind, device)
            self.registered = True
        self.inputs = [int(i) for i in layer["inputs"]]
        self.outputs = [int(i) for i in layer["outputs"]]
        self.dynamic = layer.get("dynamic") or []   # dim expressions of shape-dependent attrs (runtime.shapes)


class Engine:
    """A deserialized plan: bindings, constants (loaded once, shared by every context) and the schedule."""

    def __init__(self, document: dict, device: str = "cpu"):
        self.document = document
        self.device = device
        self.header = document["header"]
        self.inputs = [Binding(b, document["tensors"]) for b in document["bindings"]["inputs"]]
        self.outputs = [Binding(b, document["tensors"]) for b in document["bindings"]["outputs"]]
        self.tensors = document["tensors"]
        self.constants = self._load_constants(document)
        self.steps = [_Step(layer, device) for layer in document["layers"]]
        self.derived: dict = {}   # arrays that prepare hooks derive from constants, shared by every context
        # optimization profiles: [{input name: (min, opt, max)}]; None for a plan of static shapes
        self.profiles = _read_profiles(document.get("profiles"), self.inputs)
        self.tensor_dtypes = [DataType(t["dtype"]) for t in self.tensors]

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles) if self.profiles else 1

    def get_tensor_profile_shape(self, name: str, profile: int = 0) -> tuple[tuple, tuple, tuple]:
        """(min, opt, max) shapes of input ``name`` in optimization profile ``profile`` (TensorRT 10's name)."""
        binding = next((b for b in self.inputs if b.name == name), None)
        if binding is None:
            raise InputError(f"unknown input {name!r}; the plan's inputs are: "
                             f"{', '.join(b.name for b in self.inputs)}")
        if not 0 <= profile < self.num_optimization_profiles:
            raise InputError(f"optimization profile {profile} does not exist; the plan has "
                             f"{self.num_optimization_profiles} (0..{self.num_optimization_profiles - 1})")
        if not self.profiles:
            return binding.shape, binding.shape, binding.shape
        return self.profiles[profile][name]

    def _load_constants(self, document: dict) -> dict[int, np.ndarray]:
        blob = document["blob"]
        constants = {}
        for entry in document["constants"]:
            tensor = self.tensors[entry["tensor"]]
            dtype, shape = np.dtype(tensor["dtype"]), tuple(tensor["shape"])
            offset, nbytes = int(entry["offset"]), int(entry["nbytes"])  # validated by the plan reader
            array = np.frombuffer(blob, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)
            constants[int(entry["tensor"])] = array
        return constants

    def create_execution_context(self) -> "ExecutionContext":
        if self.profiles:
            from edgert.runtime.dynamic_context import DynamicExecutionContext
            return DynamicExecutionContext(self)
        return ExecutionContext(self)

    def __repr__(self) -> str:
        return f"Engine({len(self.steps)} layers, inputs={self.inputs}, outputs={self.outputs})"


class ExecutionContext:
    """Runs the engine's schedule inside its own arena. One inference at a time; use one context per thread.

    The arena, the input buffers and the scratch memory are allocated once, here; every intermediate
    tensor is a view of the arena at the offset the memory planner chose, so ``execute()`` allocates
    no intermediate tensors (kernels without a prepare hook may still use small temporaries).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()
        memory = engine.document.get("memory") or {}
        self.arena, self.buffers = _allocate(engine, memory)
        self._staged = []   # the context's copy of each graph input, in binding order
        for binding in engine.inputs:
            self.buffers[binding.tensor] = np.empty(binding.shape, binding.dtype)
            self._staged.append(self.buffers[binding.tensor])
        elided = set(memory.get("elided", []))
        self._steps = [(step, [self.buffers[i] for i in step.outputs])
                       for index, step in enumerate(engine.steps) if index not in elided]
        workspace = Workspace(engine)
        overwrite = {id(engine.steps[index]) for index in memory.get("overwrite", [])}
        bound = [(_bind_over_input if id(step) in overwrite else _bind)(step, self.buffers, outs, workspace)
                 for step, outs in self._steps]
        self._runs = [run for run, _ in bound]   # one per layer: execute_each's, and the profilers'
        self._prepared = [prepared for _, prepared in bound]
        self._groups = _fused_groups(engine, self._steps, self.buffers, workspace)
        self._chain = _chain(self._runs, self._groups)   # what execute() runs: fused groups in place of their layers
        self._results = [(b.name, self.buffers[b.tensor], b.rows and (self.buffers[b.rows[0]], b.rows[1]))
                         for b in engine.outputs]
        # CPU scratch of the prepared kernels (im2col columns, padded copies): per context, beside the
        # arena; the plan's memory report cannot know it (it depends on the runtime's kernels).
        self.scratch_bytes = workspace.allocated_bytes

    def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self._check_inputs(inputs)
        with self._lock, np.errstate(all="ignore"):
            for staged, array in zip(self._staged, arrays):
                np.copyto(staged, array)
            for run in self._chain:
                run()
            return {name: np.array(trimmed(buffer, rows), copy=True) for name, buffer, rows in self._results}

    def execute_each(self, inputs: Mapping[str, np.ndarray], after_layer: Callable[[str, list], None],
                     before_layer: Callable[[str, list], None] | None = None) -> dict:
        """``execute()``, calling ``before_layer(name, outputs)`` / ``after_layer(name, outputs)`` around each
        layer that runs (debugging and profiling hooks; ``execute()`` itself stays a bare loop)."""
        arrays = self._check_inputs(inputs)
        with self._lock, np.errstate(all="ignore"):
            for staged, array in zip(self._staged, arrays):
                np.copyto(staged, array)
            for run, (step, outs) in zip(self._runs, self._steps):
                if before_layer is not None:
                    before_layer(step.name, outs)
                run()
                after_layer(step.name, outs)
            return {name: np.array(trimmed(buffer, rows), copy=True) for name, buffer, rows in self._results}

    def fused_layers(self) -> list[tuple[str, list[str]]]:
        """(kind, layer names) of each group of layers that execute() runs as one native call (kernels/cpu/fused.py);
        execute_each() runs them one by one."""
        return [(group.kind, [step.name for step, _ in self._steps[group.first:group.first + group.count]])
                for group in self._groups]

    def unprepared_layers(self) -> list[str]:
        """Names of the layers that run their kernel as is, with no prepared fast path (a performance hint)."""
        return [step.name for (step, _), prepared in zip(self._steps, self._prepared) if not prepared]

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return check_inputs(self.engine.inputs, inputs)


def _fused_groups(engine: Engine, steps: list, buffers: list, workspace: "Workspace") -> list:
    """The fused groups of a CPU context's layers (never with DLA-simulated or int8 layers)."""
    if engine.device != "cpu":
        return []
    layers = [Layer(step.name, step.kind, step.attrs, step.inputs, step.outputs, step.registered)
              for step, _ in steps]
    return fuse(layers, buffers, workspace)


def _chain(runs: list, groups: list) -> list:
    """``runs`` with each group's layers replaced by the group's one run."""
    chain, index = [], 0
    for group in groups:
        chain += runs[index:group.first] + [group.run]
        index = group.first + group.count
    return chain + runs[index:]


def trimmed(buffer: np.ndarray, rows) -> np.ndarray:
    """A bounded output's real rows: the first ``count`` along its axis (``rows`` = (count array, axis))."""
    if not rows:
        return buffer
    count, axis = rows
    return buffer[(slice(None),) * axis + (slice(0, int(count)),)]


class Workspace:
    """What a prepare hook may ask of its execution context while it binds one layer.

    ``scratch(shape, dtype)``: an array of the context's scratch memory, valid while the layer
    runs. Every layer draws from one buffer (layers run one at a time; a layer's own arrays never
    overlap each other), so nothing written there survives to the next run: a hook that needs
    zeros (padding) writes them on every run.

    ``derived(sources, tag, make)``: ``make(*sources)``, read-only, computed once per engine and
    shared by its contexts, when every array of ``sources`` (one array or a tuple) is one of the
    engine's constants; None otherwise (they change from run to run). ``tag`` must name what
    ``make`` computes and every parameter it uses.
    """

    ALIGNMENT = 64   # bytes: a cache line, and enough for any SIMD loop

    def __init__(self, engine: Engine):
        self._engine = engine
        self._constant_ids = {id(array) for array in engine.constants.values()}
        self._buffer = np.empty(0, np.uint8)
        self._used = 0
        self.allocated_bytes = 0   # every scratch buffer this context holds (grown ones stay alive via their views)

    def begin_layer(self) -> None:
        self._used = 0

    def reserve(self, nbytes: int) -> None:
        """Start over with one buffer of ``nbytes`` (a dynamic context sizes it once for its largest shapes)."""
        self._buffer = np.empty(int(nbytes) + self.ALIGNMENT, np.uint8)
        self._used = 0
        self.allocated_bytes = self._buffer.size

    def scratch(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        shape = tuple(int(d) for d in shape)
        nbytes = math.prod(shape) * dtype.itemsize
        start = self._used + (-(self._buffer.ctypes.data + self._used) % self.ALIGNMENT)
        if start + nbytes > self._buffer.size:
            # a new, larger buffer: this layer's earlier arrays stay valid in the old one (kept alive by them)
            self._buffer = np.empty(max(2 * self._buffer.size, nbytes + self.ALIGNMENT), np.uint8)
            self.allocated_bytes += self._buffer.size
            start = -self._buffer.ctypes.data % self.ALIGNMENT
        self._used = start + nbytes
        return self._buffer[start:start + nbytes].view(dtype).reshape(shape)

    def derived(self, sources, tag, make: Callable[..., np.ndarray]) -> np.ndarray | None:
        arrays = sources if isinstance(sources, tuple) else (sources,)
        if any(id(array) not in self._constant_ids for array in arrays):
            return None
        key = (tuple(id(array) for array in arrays), tag)
        cache = self._engine.derived
        result = cache.get(key)
        if result is None:
            result = np.ascontiguousarray(make(*arrays))
            result.flags.writeable = False
            result = cache.setdefault(key, result)
        return result


def _bind(step: _Step, buffers: list, outs: list, workspace: Workspace,
          new_layer: bool = True, attrs: dict | None = None) -> tuple[Callable[[], None], bool]:
    """(run, prepared): the prepare hook's run() when there is one that applies, else the kernel over bound lists.
    ``attrs``: the layer's attrs resolved for the current input shapes (dynamic plans), else the plan's."""
    inputs = [buffers[i] if i >= 0 else None for i in step.inputs]
    attrs = step.attrs if attrs is None else attrs
    if step.prepare is not None:
        if new_layer:
            workspace.begin_layer()
        run = step.prepare(attrs, inputs, outs, workspace)
        if run is not None:
            return run, True
    return functools.partial(step.kernel, attrs, inputs, outs), False


def _bind_over_input(step: _Step, buffers: list, outs: list, workspace: Workspace,
                     attrs: dict | None = None) -> tuple[Callable[[], None], bool]:
    """A layer whose output the memory planner started over its input (the plan's memory.overwrite): the
    native kernels read each plane before writing over it (their runs say so: ``overlap_safe``); any other
    kernel writes into scratch, copied to the output after."""
    run, prepared = _bind(step, buffers, outs, workspace, attrs=attrs)
    if getattr(run, "overlap_safe", False):
        return run, prepared
    workspace.begin_layer()
    targets = [workspace.scratch(out.shape, out.dtype) for out in outs]
    run, prepared = _bind(step, buffers, targets, workspace, new_layer=False, attrs=attrs)
    return sequence([run] + [functools.partial(np.copyto, out, target) for out, target in zip(outs, targets)]), \
        prepared


def allocate_arena(memory: dict) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The raw bytes of a context's arena (every pool, each aligned) and (tensor id, byte offset in them) of every
    planned tensor; DeviceError when the memory is not there."""
    pools = memory.get("pools", {})
    alignment = int(memory.get("alignment", 256))
    total = sum(int(pool["arena_bytes"]) + alignment for pool in pools.values())
    try:
        raw = np.empty(total, np.uint8)
    except MemoryError:
        raise DeviceError(f"cannot allocate the {total / 2**20:.1f} MiB arena this plan needs") from None
    placements, start = [], -raw.ctypes.data % alignment
    for pool in pools.values():
        placements += [(tensor_id, start + offset) for tensor_id, offset in pool["offsets"]]
        start += int(pool["arena_bytes"]) + alignment
    return raw, placements


def _allocate(engine: Engine, memory: dict) -> tuple[np.ndarray, list]:
    """One arena per context and a view of it for every planned tensor (own arrays when unplanned)."""
    tensors = engine.tensors
    buffers: list = [None] * len(tensors)
    for tensor_id, array in engine.constants.items():
        buffers[tensor_id] = array
    raw, placements = allocate_arena(memory)
    for tensor_id, start in placements:
        tensor = tensors[tensor_id]
        dtype, shape = np.dtype(tensor["dtype"]), tuple(tensor["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buffers[tensor_id] = raw[start:start + nbytes].view(dtype).reshape(shape)
    input_ids = {b.tensor for b in engine.inputs}
    for step in engine.steps:  # plans without a memory section: plain arrays, allocated once here
        for tensor_id in step.outputs:
            if buffers[tensor_id] is None and tensor_id not in input_ids:
                tensor = tensors[tensor_id]
                buffers[tensor_id] = np.empty(tuple(tensor["shape"]), np.dtype(tensor["dtype"]))
    return raw, buffers


def _read_profiles(section, inputs: list) -> list[dict] | None:
    """The plan's profiles as [{input: (min, opt, max)}], checked against the input bindings."""
    if not section:
        return None
    profiles = []
    for index, entry in enumerate(section):
        ranges = entry.get("inputs") if isinstance(entry, dict) else None
        if not isinstance(ranges, dict) or set(ranges) != {b.name for b in inputs}:
            raise PlanError(f"plan is corrupt: optimization profile {index} does not give every input a range")
        profile = {}
        for binding in inputs:
            shapes = tuple(tuple(int(d) for d in ranges[binding.name][k]) for k in ("min", "opt", "max"))
            if any(len(s) != len(binding.shape) for s in shapes) or math.prod(shapes[2]) > math.prod(binding.shape) \
                    or any(not (0 <= a <= b <= c) for a, b, c in zip(*shapes)):
                raise PlanError(f"plan is corrupt: optimization profile {index} gives input {binding.name!r} "
                                f"shapes {shapes} that do not fit its tensor of {binding.shape}")
            profile[binding.name] = shapes
        profiles.append(profile)
    return profiles
