"""The build phase: ONNX (or an IR graph) → optimized, scheduled graph → Plan document."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edgert import __version__
from edgert.ir.graph import Graph
from edgert.plan import Plan, to_plain

CONST_ALIGNMENT = 64


def build(model, *, shapes: Mapping[str, Sequence[int]] | None = None, target: str = "host",
          precision: str = "fp32", **options) -> Plan:
    """Import ``model`` (path, bytes or onnx.ModelProto), optimize it and return a Plan."""
    from edgert.onnx.importer import import_model

    graph = import_model(model, shapes)
    graph.verify()
    return graph_to_plan(graph, target=target, options={"precision": precision, **options})


def graph_to_plan(graph: Graph, *, target: str, options: dict) -> Plan:
    tensor_ids: dict[int, int] = {}
    tensors: list[dict] = []
    constants: list[dict] = []
    blob = bytearray()

    def tensor_id(value) -> int:
        if value is None:
            return -1
        key = id(value)
        if key not in tensor_ids:
            tensor_ids[key] = len(tensors)
            tensors.append({"name": value.name, "dtype": value.dtype.value, "shape": list(value.shape)})
            if value.is_const:
                data = np.ascontiguousarray(value.const)
                blob.extend(b"\0" * (-len(blob) % CONST_ALIGNMENT))
                constants.append({"tensor": tensor_ids[key], "offset": len(blob), "nbytes": data.nbytes})
                blob.extend(data.tobytes())
        return tensor_ids[key]

    inputs = [{"name": v.name, "dtype": v.dtype.value, "shape": list(v.shape), "tensor": tensor_id(v)}
              for v in graph.inputs]
    layers = [{
        "name": node.name, "kind": node.kind.value, "attrs": to_plain(node.attrs),
        "inputs": [tensor_id(v) for v in node.inputs], "outputs": [tensor_id(v) for v in node.outputs],
        "device": node.device, "precision": node.precision or _precision_of(node), "tactic": node.tactic,
        "origin": list(node.origin),
    } for node in graph.nodes]
    outputs = [{"name": name, "dtype": v.dtype.value, "shape": list(v.shape), "tensor": tensor_id(v)}
               for name, v in zip(graph.output_names, graph.outputs)]
    document = {
        "header": {"edgert_version": __version__, "target": target, "options": to_plain(options)},
        "bindings": {"inputs": inputs, "outputs": outputs},
        "tensors": tensors, "constants": constants, "kernels": {}, "layers": layers, "blob": bytes(blob),
    }
    return Plan(document)


_PRECISION_NAMES = {"float32": "fp32", "float16": "fp16", "int8": "int8", "float64": "fp64"}


def _precision_of(node) -> str:
    """The precision a layer computes in: its floating inputs' type (integer layers report their output)."""
    names = {v.dtype.value for v in node.inputs if v is not None and v.dtype.is_float}
    if not names:
        names = {v.dtype.value for v in node.outputs}
    if len(names) > 1:
        return "mixed"
    name = names.pop()
    return _PRECISION_NAMES.get(name, name)
