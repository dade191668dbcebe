"""ONNX op importers, registered by op type with ``@onnx_op("Relu", ...)``.

An importer is ``fn(ctx, node) -> list[Value | None]``: it reads the ONNX node's inputs and
attributes through ``ctx`` (an ImportContext), adds IR layers with ``ctx.add`` and returns one value
per ONNX output. Version-dependent semantics are chosen inside the importer from ``ctx.opset``.
"""

from __future__ import annotations

from typing import Callable

OpImporter = Callable[..., list]
_IMPORTERS: dict[str, OpImporter] = {}


def onnx_op(*op_types: str):
    def register(fn: OpImporter) -> OpImporter:
        for op_type in op_types:
            if op_type in _IMPORTERS:
                raise RuntimeError(f"an importer for ONNX op {op_type} is already registered")
            _IMPORTERS[op_type] = fn
        return fn
    return register


def importer_for(op_type: str) -> OpImporter | None:
    _load()
    return _IMPORTERS.get(op_type)


def supported_ops() -> list[str]:
    _load()
    return sorted(_IMPORTERS)


def _load() -> None:
    if not _IMPORTERS:
        import edgert.onnx.ops  # noqa: F401  (registers every importer)
