"""Memory plans: arena vs lower bound vs no reuse, weights, and what the reordered schedule changed.

    python benchmarks/memory.py [--models ...] [--zoo]
"""

from __future__ import annotations

import datetime
import statistics
import time

import numpy as np

import _models


def _mib(n: int) -> str:
    return f"{n / 2**20:.3f}"


def planner_speed() -> str:
    from edgert.memory import plan_memory
    from memory_graphs import random_layer_graph   # tests/ is on the path (_models)
    steps, tensors = random_layer_graph(np.random.default_rng(0))
    started = time.perf_counter()
    plan = plan_memory(steps, tensors)
    seconds = time.perf_counter() - started
    return (f"planning a random 1000-layer graph: {seconds:.2f} s "
            f"(arena {plan.arena_bytes / plan.lower_bound_bytes:.3f}x its lower bound)")


def main() -> None:
    import edgert

    args = _models.parser(__doc__).parse_args()
    print(f"# memory plans — {_models.machine()}, {datetime.date.today()}")
    print("| model | arena MiB | lower bound MiB | arena / bound | no reuse MiB | arena / no reuse | weights MiB "
          "| schedule | bound with model order MiB | elided layers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    ratios = []
    for name, (model, shapes) in _models.select(args.models, args.zoo).items():
        memory = edgert.build(model, shapes=shapes).document["memory"]
        arena, bound = memory["arena_bytes"], memory["lower_bound_bytes"]
        ratio = arena / bound if bound else 1.0
        ratios.append(ratio)
        schedule = memory["schedule"]
        print(f"| {name} | {_mib(arena)} | {_mib(bound)} | {ratio:.3f} | {_mib(memory['no_reuse_bytes'])} | "
              f"{arena / max(memory['no_reuse_bytes'], 1):.3f} | {_mib(memory['weights_bytes'])} | "
              f"{schedule['order']} | {_mib(schedule['lower_bound_bytes'].get('model', bound))} | "
              f"{len(memory['elided'])} |", flush=True)
    print(f"\narena / lower bound: max {max(ratios):.3f}, median {statistics.median(ratios):.3f}")
    print(planner_speed())


if __name__ == "__main__":
    main()
