"""Engine (a loaded plan, weights held once) and ExecutionContext (its own buffers, one run at a time).

Needs only NumPy and msgpack: never import onnx, the builder or the passes from here.
"""

from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from edgert.errors import InputError, PlanError
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
        self.kernel = lookup(self.kind, device)
        self.attrs = layer.get("attrs") or {}
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
    """Runs the engine's schedule. One context runs one inference at a time; use one per thread."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()

    def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        engine = self.engine
        buffers: list[np.ndarray | None] = [None] * len(engine.tensors)
        for tensor_id, array in engine.constants.items():
            buffers[tensor_id] = array
        for binding, array in zip(engine.inputs, self._check_inputs(inputs)):
            buffers[binding.tensor] = array
        with self._lock, np.errstate(all="ignore"):
            for step in engine.steps:
                outs = []
                for tensor_id in step.outputs:
                    tensor = engine.tensors[tensor_id]
                    outs.append(np.empty(tuple(tensor["shape"]), np.dtype(tensor["dtype"])))
                    buffers[tensor_id] = outs[-1]
                step.kernel(step.attrs, [buffers[i] if i >= 0 else None for i in step.inputs], outs)
        return {b.name: np.array(buffers[b.tensor], copy=True) for b in engine.outputs}

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        expected = {b.name for b in self.engine.inputs}
        unknown = sorted(set(inputs) - expected)
        if unknown:
            raise InputError(f"unknown input {unknown[0]!r}; the plan's inputs are: {', '.join(sorted(expected))}")
        arrays = []
        for binding in self.engine.inputs:
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


def load(plan, device: str | None = None) -> Engine:
    """Load a plan from a path, bytes or a ``Plan`` and return an Engine for ``device`` (default cpu)."""
    device = device or "cpu"
    if device != "cpu":
        raise PlanError(f"device {device!r} is not available in this edgert build (available: cpu)")
    document = read_plan(load_plan_bytes(plan))
    return Engine(document, device)
