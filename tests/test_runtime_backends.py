"""The runtime's backends implement one interface (edgert.runtime.backend) and only the loader knows them all (the
old circle: engine.load imported cuda, and cuda imported engine)."""

from __future__ import annotations

import ast
import pathlib

import numpy as np

import edgert
from edgert.runtime.backend import EngineBackend, ExecutionContextBackend
from models import MODELS

RUNTIME = pathlib.Path(edgert.__file__).parent / "runtime"


def _imports(module: str) -> set[str]:
    tree = ast.parse((RUNTIME / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_import_circle_between_the_backends():
    """The CPU engine imports no other backend nor the loader; the CUDA backend does not import the loader (it may
    use the CPU engine's plan model to evaluate shapes, which imports nothing of CUDA back)."""
    cpu, cuda = _imports("engine"), _imports("cuda")
    assert not {m for m in cpu if m.startswith(("edgert.runtime.cuda", "edgert.runtime.pycuda",
                                                "edgert.runtime.loader"))}, cpu
    assert "edgert.runtime.loader" not in cuda


def test_the_cpu_engine_implements_the_backend_interface():
    case = MODELS["resnet"]
    engine = edgert.load(edgert.build(case.build(), shapes=case.shapes).to_bytes())
    assert isinstance(engine, EngineBackend)
    context = engine.create_execution_context()
    assert isinstance(context, ExecutionContextBackend)
    feeds = {b.name: np.random.default_rng().standard_normal(b.shape).astype(b.dtype) for b in engine.inputs}
    assert set(context.execute(feeds)) == {b.name for b in engine.outputs}


def test_the_cuda_engine_class_declares_the_interface():
    from edgert.runtime.cuda import CudaEngine, CudaExecutionContext
    for name in ("create_execution_context",):
        assert callable(getattr(CudaEngine, name))
    assert callable(getattr(CudaExecutionContext, "execute"))
