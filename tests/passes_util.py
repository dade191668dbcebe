"""Helpers for pass tests: build IR graphs by hand and compare a graph's outputs before/after a pass."""

from __future__ import annotations

import numpy as np

from edgert.builder import build_graph
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph
from edgert.ir.shape_inference import infer_node
from edgert.runtime import load


def layer(graph: Graph, kind, inputs, attrs=None, name="layer"):
    node = graph.add_node(kind, inputs, attrs or {}, name=name)
    infer_node(node)
    return node.outputs[0]


def new_graph(*shapes, dtype=DataType.FLOAT) -> tuple[Graph, list]:
    graph = Graph("test")
    inputs = [graph.add_input(f"x{i}", dtype, shape) for i, shape in enumerate(shapes)]
    return graph, inputs


def random_feeds(graph: Graph) -> dict:
    rng = np.random.default_rng()
    return {v.name: rng.standard_normal(v.shape).astype(v.dtype.numpy) for v in graph.inputs}


def execute(graph: Graph, feeds: dict, optimize: bool) -> dict:
    import copy
    plan = build_graph(copy.deepcopy(graph), optimize=optimize)
    return load(plan.to_bytes()).create_execution_context().execute(feeds)


def assert_same_outputs(graph: Graph, tolerance: float = 1e-6) -> None:
    """Outputs with all passes equal outputs with none (normwise), on fresh random inputs."""
    feeds = random_feeds(graph)
    reference = execute(graph, feeds, optimize=False)
    optimized = execute(graph, feeds, optimize=True)
    for name, want in reference.items():
        got = optimized[name]
        error = np.linalg.norm(got.astype(np.float64) - want) / max(np.linalg.norm(want), 1e-30)
        assert error <= tolerance, f"{name}: normwise error {error:.3g}"
