"""Latency at the opt shape: a plan built with an optimization profile vs a static plan built for exactly
that shape (issue 13 target: within 1.10x). Same process, interleaved runs, medians.

    python benchmarks/dynamic.py [--reps 30] [--models ocr resnet ...] [--device cpu|cuda [--fp16]]

``--device cuda`` (needs cupy and a GPU): both plans get CUDA kernels for the GPU's arch with the cost model's
tactics (the profile plan chooses them at the opt shape too, and at the opt shape it runs kernels specialized
to it, elsewhere the shape-generic ones); the table shows the GPU time of one replay of each plan's CUDA graph (CUDA events), and the host time of a whole
``execute`` (upload, replay, download).
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


def cuda_contexts(model, profile, fp16: bool) -> list:
    """[profile plan context, static plan context] on this machine's GPU."""
    import edgert
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    from edgert.kernels.cuda.profile_kernels import compile_profile_kernels
    from edgert.plan import read_plan
    from edgert.runtime.cuda import CudaEngine, CupyDriver

    driver = CupyDriver()
    arch = driver.arch()
    options = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]} if fp16 else {}
    opt = {name: shapes[1] for name, shapes in profile.items()}
    dynamic = edgert.build(model, profiles=[profile], cpu_only_aliases=False, **options)
    dynamic.document["kernels"] = {arch: compile_profile_kernels(dynamic.document, arch)}
    static = edgert.build(model, shapes=opt, cpu_only_aliases=False, **options)
    static.document["kernels"] = {arch: compile_for_plan(static.document, arch)}
    return [CudaEngine(read_plan(plan.to_bytes()), driver=driver).create_execution_context()
            for plan in (dynamic, static)]


def measure_cuda(model, profile, reps: int, fp16: bool) -> tuple[list, list]:
    """([profile, static] GPU ms of one graph replay, [profile, static] host ms of execute), medians."""
    import cupy

    contexts = cuda_contexts(model, profile, fp16)
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shapes[1]).astype(np.float32) for name, shapes in profile.items()}
    gpu: list[list[float]] = [[], []]
    host: list[list[float]] = [[], []]
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    for context in contexts:
        for _ in range(3):
            context.execute(feeds)
    for _ in range(reps):
        for which, context in enumerate(contexts):
            context.stream.synchronize()
            start.record(context.stream)
            context.run()
            end.record(context.stream)
            end.synchronize()
            gpu[which].append(cupy.cuda.get_elapsed_time(start, end))
            began = time.perf_counter()
            context.execute(feeds)
            host[which].append((time.perf_counter() - began) * 1e3)
    return [statistics.median(t) for t in gpu], [statistics.median(t) for t in host]


def main_cuda(selected: dict, args, commit: str) -> None:
    from edgert.runtime.cuda import CupyDriver

    driver = CupyDriver()
    precision = "fp16" if args.fp16 else "fp32"
    print(f"{driver.device_name()} ({driver.arch()}), {datetime.date.today()}, commit {commit}, {precision}, "
          f"{args.reps} interleaved reps, medians")
    print("| model | opt shape | profile plan GPU ms | static plan GPU ms | ratio | profile execute ms | "
          "static execute ms | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (model, profile) in selected.items():
        (dynamic_gpu, static_gpu), (dynamic_host, static_host) = measure_cuda(model, profile, args.reps, args.fp16)
        shown = ", ".join("x".join(map(str, shapes[1])) for shapes in profile.values())
        print(f"| {name} | {shown} | {dynamic_gpu:.3f} | {static_gpu:.3f} | {dynamic_gpu / static_gpu:.2f}x | "
              f"{dynamic_host:.3f} | {static_host:.3f} | {dynamic_host / static_host:.2f}x |")


def main() -> None:
    parser = _models.parser(__doc__)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fp16", action="store_true", help="CUDA: every layer in fp16")
    args = parser.parse_args()
    selected = cases()
    if args.models:
        selected = {n: selected[n] for n in args.models}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if args.device == "cuda":
        return main_cuda(selected, args, commit)
    print(f"{_models.machine()}, {datetime.date.today()}, commit {commit}, {args.reps} interleaved reps, medians")
    print("| model | opt shape | profile plan ms | static plan ms | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, (model, profile) in selected.items():
        dynamic_ms, static_ms = measure(model, profile, args.reps)
        shown = ", ".join("x".join(map(str, shapes[1])) for shapes in profile.values())
        print(f"| {name} | {shown} | {dynamic_ms:.2f} | {static_ms:.2f} | {dynamic_ms / static_ms:.2f}x |")


if __name__ == "__main__":
    main()
