"""Engine (a loaded plan, weights held once) and ExecutionContext (its own buffers, one run at a time).

Needs only NumPy and msgpack: never import onnx, the builder or the passes from here.
"""

from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from edgert.errors import DeviceError, InputError, PlanError
from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup
from edgert.plan import load_plan_bytes, read_plan


class Binding:
    __slots__ = ("name", "dtype", "shape", "tensor")

    def __init__(self, entry: dict):
        self.name = entry["name"]
        self.dtype = np.dtype(entry["dtype"])
        self.shape = tuple(entry["shape"])
        self.tensor = int(entry["tensor"])

    def __repr__(self) -> str:
        return f"Binding({self.name!r}, {self.dtype.name}, {self.shape})"


class _Step:
    """One layer ready to run: its kernel, attrs and tensor ids."""

    __slots__ = ("name", "kind", "kernel", "attrs", "inputs", "outputs")

    def __init__(self, layer: dict, device: str):
        self.name = layer["name"]
        try:
            self.kind = LayerKind(layer["kind"])
        except ValueError:
            raise PlanError(f"layer {self.name!r} has unknown kind {layer['kind']!r}; "
                            "the plan needs a newer edgert") from None
        placed = str(layer.get("device", "cpu"))
        self.attrs = layer.get("attrs") or {}
        if placed.startswith("dla") or self.kind == LayerKind.REFORMAT:
            from edgert.targets.dla import kernel_for  # the DLA simulator (NumPy)
            self.kernel = kernel_for(self.kind, placed)
        elif self.attrs.get("int8") and device == "cpu":
            from edgert.kernels.cpu.int8 import kernel_for as int8_kernel_for  # int8 reference kernels
            self.kernel = int8_kernel_for(self.kind, self.attrs, placed)
        else:
            self.kernel = lookup(self.kind, device)
        self.inputs = [int(i) for i in layer["inputs"]]
        self.outputs = [int(i) for i in layer["outputs"]]


class Engine:
    """A deserialized plan: bindings, constants (loaded once, shared by every context) and the schedule."""

    def __init__(self, document: dict, device: str = "cpu"):
        self.document = document
        self.device = device
        self.header = document["header"]
        self.inputs = [Binding(b) for b in document["bindings"]["inputs"]]
        self.outputs = [Binding(b) for b in document["bindings"]["outputs"]]
        self.tensors = document["tensors"]
        self.constants = self._load_constants(document)
        self.steps = [_Step(layer, device) for layer in document["layers"]]

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
        return ExecutionContext(self)

    def __repr__(self) -> str:
        return f"Engine({len(self.steps)} layers, inputs={self.inputs}, outputs={self.outputs})"


class ExecutionContext:
    """Runs the engine's schedule inside its own arena. One inference at a time; use one context per thread.

    The arena is allocated once, here; every intermediate tensor is a view of it at the offset the
    memory planner chose, so ``execute()`` allocates no intermediate tensors (kernels may still use
    small temporaries of their own).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()
        memory = engine.document.get("memory") or {}
        self.arena, self.buffers = _allocate(engine, memory)
        elided = set(memory.get("elided", []))
        self._inputs = [b.tensor for b in engine.inputs]
        self._steps = []
        for index, step in enumerate(engine.steps):
            if index in elided:
                continue
            outs = [self.buffers[i] for i in step.outputs]
            self._steps.append((step, outs))

    def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        engine = self.engine
        arrays = self._check_inputs(inputs)
        with self._lock, np.errstate(all="ignore"):
            buffers = self.buffers
            for tensor_id, array in zip(self._inputs, arrays):
                buffers[tensor_id] = array
            for step, outs in self._steps:
                step.kernel(step.attrs, [buffers[i] if i >= 0 else None for i in step.inputs], outs)
            results = {b.name: np.array(buffers[b.tensor], copy=True) for b in engine.outputs}
            for tensor_id in self._inputs:
                buffers[tensor_id] = None  # do not keep the caller's arrays alive
        return results

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return check_inputs(self.engine.inputs, inputs)


def check_inputs(bindings, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The caller's arrays in binding order, contiguous; InputError on a wrong name, shape or dtype.

    Shared by every backend: ``bindings`` need ``name``, ``shape`` and ``dtype``.
    """
    expected = {b.name for b in bindings}
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; the plan's inputs are: {', '.join(sorted(expected))}")
    arrays = []
    for binding in bindings:
        if binding.name not in inputs:
            raise InputError(f"missing input {binding.name!r} ({binding.dtype.name}, shape {binding.shape})")
        array = np.asarray(inputs[binding.name])
        if array.shape != binding.shape:
            raise InputError(f"input {binding.name!r}: expected shape {binding.shape}, got {array.shape}")
        if array.dtype != binding.dtype:
            raise InputError(f"input {binding.name!r}: expected dtype {binding.dtype.name}, got "
                             f"{array.dtype.name} (convert with .astype(np.{binding.dtype.name}))")
        arrays.append(np.ascontiguousarray(array))
    return arrays


def _allocate(engine: Engine, memory: dict) -> tuple[np.ndarray, list]:
    """One arena per context and a view of it for every planned tensor (own arrays when unplanned)."""
    tensors = engine.tensors
    buffers: list = [None] * len(tensors)
    for tensor_id, array in engine.constants.items():
        buffers[tensor_id] = array
    pools = memory.get("pools", {})
    alignment = int(memory.get("alignment", 256))
    total = sum(int(pool["arena_bytes"]) + alignment for pool in pools.values())
    try:
        raw = np.empty(total, np.uint8)
    except MemoryError:
        raise DeviceError(f"cannot allocate the {total / 2**20:.1f} MiB arena this plan needs") from None
    start = -raw.ctypes.data % alignment
    for pool in pools.values():
        arena = raw[start:start + int(pool["arena_bytes"])]
        for tensor_id, offset in pool["offsets"]:
            tensor = tensors[tensor_id]
            dtype, shape = np.dtype(tensor["dtype"]), tuple(tensor["shape"])
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            buffers[tensor_id] = arena[offset:offset + nbytes].view(dtype).reshape(shape)
        start += int(pool["arena_bytes"]) + alignment
    input_ids = {b.tensor for b in engine.inputs}
    for step in engine.steps:  # plans without a memory section: plain arrays, allocated once here
        for tensor_id in step.outputs:
            if buffers[tensor_id] is None and tensor_id not in input_ids:
                tensor = tensors[tensor_id]
                buffers[tensor_id] = np.empty(tuple(tensor["shape"]), np.dtype(tensor["dtype"]))
    return raw, buffers


def load(plan, device: str | None = None):
    """Load a plan from a path, bytes or a ``Plan`` and return an Engine for ``device``.

    ``cpu`` (default): NumPy kernels (DLA layers on the DLA simulator). ``cuda`` / ``cuda:cupy``: the
    plan's cubins through cupy; ``cuda:pycuda``: the same through pycuda.
    """
    device = device or "cpu"
    document = read_plan(load_plan_bytes(plan))
    if device == "cpu":
        return Engine(document, device)
    if device in ("cuda", "cuda:cupy"):
        from edgert.runtime.cuda import CudaEngine
        return CudaEngine(document)
    if device == "cuda:pycuda":
        from edgert.runtime.pycuda_backend import load as load_pycuda
        return load_pycuda(document)
    raise PlanError(f"unknown device {device!r}; expected cpu, cuda (cupy) or cuda:pycuda")
