"""CPU latency at the opt shape: a plan built with an optimization profile vs a static plan built for exactly
that shape (issue 13 target: within 1.10x). Same process, interleaved runs, medians.

    python benchmarks/dynamic.py [--reps 30] [--models ocr resnet ...]
"""

from __future__ import annotations

import datetime
import statistics
import subprocess
import time

import numpy as np

import _models


def cases() -> dict:
    """name -> (model, profile {input: (min, opt, max)})."""
    from dynamic_models import build_text_recognizer, dynamic_export
    from models import MODELS

    result = {"ocr": (build_text_recognizer(), {"image": ((1, 3, 48, 64), (1, 3, 48, 320), (8, 3, 48, 960))})}
    for name, spatial in (("resnet", True), ("mobilenetv2", True), ("transformer", False)):
        case = MODELS[name]
        (input_name, shape), = case.shapes.items()
        axes = (0, 2, 3) if spatial else (0,)
        high = tuple(4 if a == 0 else (2 * d if a in axes else d) for a, d in enumerate(shape))
        low = tuple(1 if a == 0 else (d // 2 if a in axes else d) for a, d in enumerate(shape))
        result[name] = (dynamic_export(case.build(), {input_name: axes}), {input_name: (low, shape, high)})
    return result


def measure(model, profile, reps: int) -> tuple[float, float]:
    import edgert

    opt = {name: shapes[1] for name, shapes in profile.items()}
    contexts = [edgert.load(edgert.build(model, profiles=[profile])).create_execution_context(),
                edgert.load(edgert.build(model, shapes=opt)).create_execution_context()]
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in opt.items()}
    times: list[list[float]] = [[], []]
    for context in contexts:
        context.execute(feeds)
    for _ in range(reps):
        for which, context in enumerate(contexts):
            start = time.perf_counter()
            context.execute(feeds)
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def main() -> None:
    parser = _models.parser(__doc__)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    selected = cases()
    if args.models:
        selected = {n: selected[n] for n in args.models}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"{_models.machine()}, {datetime.date.today()}, commit {commit}, {args.reps} interleaved reps, medians")
    print("| model | opt shape | profile plan ms | static plan ms | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, (model, profile) in selected.items():
        dynamic_ms, static_ms = measure(model, profile, args.reps)
        shown = ", ".join("x".join(map(str, shapes[1])) for shapes in profile.values())
        print(f"| {name} | {shown} | {dynamic_ms:.2f} | {static_ms:.2f} | {dynamic_ms / static_ms:.2f}x |")


if __name__ == "__main__":
    main()
