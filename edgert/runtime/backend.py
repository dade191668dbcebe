"""The interface every runtime backend implements (CPU: ``engine.Engine``; CUDA: ``cuda.CudaEngine`` and its
pycuda variant). ``loader.load`` picks the backend; tools, the TensorRT-style API and serving code rely only on
what is declared here, so no backend imports another and the loader is the only module that knows them all.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class BindingInfo(Protocol):
    name: str
    shape: tuple
    dtype: np.dtype
    tensor: int


@runtime_checkable
class ExecutionContextBackend(Protocol):
    def execute(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs (host arrays, each at its real shape) for one set of host input arrays."""


@runtime_checkable
class EngineBackend(Protocol):
    document: dict
    inputs: Sequence[BindingInfo]
    outputs: Sequence[BindingInfo]

    def create_execution_context(self) -> ExecutionContextBackend:
        """A context with its own arena; several contexts share the engine's weights."""
