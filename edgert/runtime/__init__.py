"""The device-side loader: ``load(plan) -> Engine``; needs only NumPy and msgpack (plus cupy/pycuda for CUDA)."""

from edgert.runtime.engine import Binding, Engine, ExecutionContext
from edgert.runtime.loader import load

__all__ = ["Binding", "Engine", "ExecutionContext", "load"]
