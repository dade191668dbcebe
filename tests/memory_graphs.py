"""Synthetic schedules for the memory planner, shared by tests/test_memory.py and benchmarks/memory.py."""

from __future__ import annotations

import numpy as np

from edgert.memory import StepSpec, TensorSpec


def random_layer_graph(rng: np.random.Generator, layers: int = 1000) -> tuple[list, list]:
    """(steps, tensors) of a chain of ``layers`` layers, each also reading one of the 20 tensors before it,
    with random sizes up to 1 MiB: harder to pack than real networks."""
    tensors = [TensorSpec(0, 4096, external=True)]
    steps = []
    for i in range(1, layers + 1):
        sources = tuple(sorted({i - 1, int(rng.integers(max(0, i - 20), i))}))
        tensors.append(TensorSpec(i, int(rng.integers(1, 1 << 20)), graph_output=i == layers))
        steps.append(StepSpec(sources, (i,)))
    return steps, tensors
