"""Graph passes, one per module, each ``run(graph) -> int`` (how many rewrites fired).

``optimize`` runs the pipeline in order until a round changes nothing; ``disabled`` names passes
to skip (``edgert build --no-opt NAME``), and the returned counts feed ``edgert build --verbose``.
"""

from __future__ import annotations

import importlib

from edgert.errors import EdgeRTError
from edgert.ir.graph import Graph

PIPELINE = (
    "constant_folding",
    "identity_elimination",
    "shuffle_cancellation",
    "activation_patterns",
    "layernorm_fusion",
    "matmul_scale_folding",
    "scale_folding",
    "affine_folding",
    "shift_hoisting",
    "conv_fusion",
    "horizontal_fusion",
    "elementwise_fusion",
    "dead_code",
)
MAX_ROUNDS = 8


def optimize(graph: Graph, disabled=(), verify: bool = True) -> dict[str, int]:
    unknown = sorted(set(disabled) - set(PIPELINE))
    if unknown:
        raise EdgeRTError(f"unknown pass {unknown[0]!r} in --no-opt; passes are: {', '.join(PIPELINE)}")
    counts = {name: 0 for name in PIPELINE if name not in disabled}
    modules = {name: importlib.import_module(f"edgert.passes.{name}") for name in counts}
    for _ in range(MAX_ROUNDS):
        changed = 0
        for name, module in modules.items():
            fired = module.run(graph)
            if fired and verify:
                graph.verify()
            counts[name] += fired
            changed += fired
        if not changed:
            break
    return counts


def single_use(value) -> bool:
    """True when exactly one layer input reads ``value`` (a graph output counts as a use)."""
    return len(value.uses()) == 1


def is_graph_output(graph: Graph, value) -> bool:
    return any(v is value for v in graph.outputs)
