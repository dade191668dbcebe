"""Run an IR graph layer by layer with the kernels of each layer's device (DLA layers simulated).

For tests and tools that check numerics after partitioning, before a plan exists:

    outputs = run_graph(graph, {"input": x})   # dict keyed by the graph's output names
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from edgert.errors import InputError
from edgert.ir.graph import Graph
from edgert.targets.dla import kernel_for


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray], device_override: str | None = None) -> dict:
    """Execute ``graph``; ``device_override`` runs every layer as if placed there (e.g. "cpu" for the reference)."""
    buffers: dict[int, np.ndarray] = {}
    for value in graph.inputs:
        if value.name not in inputs:
            raise InputError(f"missing input {value.name!r} {value.shape}")
        buffers[id(value)] = np.ascontiguousarray(inputs[value.name], dtype=value.dtype.numpy)

    def read(value):
        if value is None:
            return None
        return value.const if value.is_const else buffers[id(value)]

    with np.errstate(all="ignore"):
        for node in graph.nodes:
            outs = [np.empty(v.shape, v.dtype.numpy) for v in node.outputs]
            device = device_override or node.device
            if node.attrs.get("int8") and not str(device).startswith("dla"):
                from edgert.kernels.cpu.int8 import kernel_for as int8_kernel_for
                kernel = int8_kernel_for(node.kind, node.attrs, device)
            else:
                kernel = kernel_for(node.kind, device)
            kernel(node.attrs, [read(v) for v in node.inputs], outs)
            for value, array in zip(node.outputs, outs):
                buffers[id(value)] = array
    return {name: np.array(read(value)) for value, name in zip(graph.outputs, graph.output_names)}
