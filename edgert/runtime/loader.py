"""``load(plan, device) -> Engine``: read and validate a plan, then hand it to the backend that runs it.

The backends (``engine.Engine`` for the CPU, ``cuda.CudaEngine`` through cupy, ``pycuda_backend``) each implement
the interface of ``edgert.runtime.backend`` and import nothing of each other; only this module knows them all.
"""

from __future__ import annotations

from edgert.errors import PlanError
from edgert.plan import load_plan_bytes, read_plan
from edgert.runtime.validate import validate_plan


def load(plan, device: str | None = None):
    """Load a plan from a path, bytes or a ``Plan`` and return an Engine for ``device``.

    ``cpu`` (default): NumPy kernels (DLA layers on the DLA simulator). ``cuda`` / ``cuda:cupy``: the
    plan's cubins through cupy; ``cuda:pycuda``: the same through pycuda.
    """
    device = device or "cpu"
    document = read_plan(load_plan_bytes(plan))
    validate_plan(document)   # layer attrs and shapes re-checked: a crafted plan never reaches a kernel
    if device == "cpu":
        from edgert.runtime.engine import Engine
        return Engine(document, device)
    if device in ("cuda", "cuda:cupy"):
        from edgert.runtime.cuda import CudaEngine
        return CudaEngine(document)
    if device == "cuda:pycuda":
        from edgert.runtime.pycuda_backend import load as load_pycuda
        return load_pycuda(document)
    raise PlanError(f"unknown device {device!r}; expected cpu, cuda (cupy) or cuda:pycuda")
