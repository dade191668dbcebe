"""Auxiliary streams on the GPU: the same plan built with ``max_aux_streams`` 0 and 2, batch 1.

Models: Inception v1 of ONNX's light zoo (random weights, as tests/test_light_zoo.py makes them), the
inception-like network and the two-head detector of tests/stream_models.py. For each, both plans get
CUDA kernels for this GPU (cost-model tactics, the same for both), run as captured CUDA graphs, and are
timed by CUDA events around one replay; the two plans alternate in rounds (``--rounds``, ``--reps`` each),
so clock and thermal drift hit both alike, and the table shows the medians over all replays. The outputs
of the two plans must be bit-identical (the same kernels on the same data); the script says so per row.

    python benchmarks/streams.py [--models inception_v1 inception two_head] [--dtypes fp32 fp16]
                                 [--aux 2] [--rounds 10] [--reps 50] [--warmup 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))   # the models; edgert itself comes from the installed package

FP16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]}


def model_of(name: str):
    """(onnx model, {input: shape}) at batch 1."""
    if name == "inception_v1":
        import onnx
        from test_light_zoo import LIGHT_DIR, _random_weights
        model = _random_weights(onnx.load(os.path.join(LIGHT_DIR, "light_inception_v1.onnx")))
        weights = {init.name for init in model.graph.initializer}
        data = next(i for i in model.graph.input if i.name not in weights)
        return model, {data.name: tuple(d.dim_value for d in data.type.tensor_type.shape.dim)}
    from stream_models import inception, two_head
    if name == "inception":
        return inception(batch=1, size=28, width=64, blocks=4, seed=0)       # Inception 4a..4d-like stage
    if name == "two_head":
        return two_head(batch=1, size=128, width=64, depth=4, classes=80, seed=0)   # heads on a 64x64x128 map
    raise SystemExit(f"unknown model {name!r}: inception_v1, inception, two_head")


def build(model, shapes, aux: int, dtype: str, arch: str):
    import edgert
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    from edgert.plan import Plan, read_plan
    plan = edgert.build(model, shapes=shapes, cpu_only_aliases=False, max_aux_streams=aux,
                        **(FP16 if dtype == "fp16" else {}))
    plan.document["kernels"] = {arch: compile_for_plan(plan.document, arch)}
    return read_plan(Plan(plan.document).to_bytes())


def timings(context, reps: int) -> list[float]:
    import cupy
    start, end, times = cupy.cuda.Event(), cupy.cuda.Event(), []
    for _ in range(reps):
        start.record(context.stream)
        context.run()
        end.record(context.stream)
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return times


def measure(name: str, dtype: str, aux: int, arch: str, args) -> dict:
    from edgert.runtime.cuda import CudaEngine
    model, shapes = model_of(name)
    rng = np.random.default_rng(0)
    contexts, outputs, documents, feeds = {}, {}, {}, None
    for count in (0, aux):
        documents[count] = build(model, shapes, count, dtype, arch)
        contexts[count] = CudaEngine(documents[count]).create_execution_context()
        if feeds is None:   # in the plan's input dtypes (an fp16 build keeps float32 I/O)
            feeds = {b.name: rng.standard_normal(b.shape).astype(b.dtype) for b in contexts[count].engine.inputs}
        outputs[count] = contexts[count].execute(feeds)   # captures the graph
    identical = all(np.array_equal(outputs[0][k], outputs[aux][k]) for k in outputs[0])
    times = {0: [], aux: []}
    for context in contexts.values():
        for _ in range(args.warmup):
            context.run()
        context.stream.synchronize()
    for _ in range(args.rounds):
        for count, context in contexts.items():
            times[count] += timings(context, args.reps)
    layers = documents[aux]["layers"]
    return {"model": name, "dtype": dtype, "aux_streams": aux, "layers": len(layers),
            "streams_used": 1 + max(layer.get("stream", 0) for layer in layers),
            "waits": sum(len(layer.get("wait", [])) for layer in layers),
            "ms_one_stream": statistics.median(times[0]), "ms_aux": statistics.median(times[aux]),
            "arena_one_stream": documents[0]["memory"]["arena_bytes"],
            "arena_aux": documents[aux]["memory"]["arena_bytes"], "identical": identical}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["inception_v1", "inception", "two_head"])
    parser.add_argument("--dtypes", nargs="*", default=["fp32", "fp16"])
    parser.add_argument("--aux", type=int, default=2, help="max_aux_streams of the compared plan (default 2)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from edgert.runtime.cuda import CupyDriver
    driver = CupyDriver()
    arch = driver.arch()
    print(f"# auxiliary streams on {driver.device_name()} ({arch}), {datetime.date.today()}; batch 1, CUDA graphs; "
          f"median of {args.rounds}x{args.reps} CUDA-event timings per plan, the two plans alternating by round")
    print(f"# command: python benchmarks/streams.py {' '.join(sys.argv[1:])}")
    print(f"| model | dtype | layers | streams | waits | 0 aux ms | {args.aux} aux ms | speedup | arena MiB 0 / "
          f"{args.aux} | outputs identical |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.models:
        for dtype in args.dtypes:
            row = measure(name, dtype, args.aux, arch, args)
            rows.append(row)
            print(f"| {name} | {dtype} | {row['layers']} | {row['streams_used']} | {row['waits']} | "
                  f"{row['ms_one_stream']:.3f} | {row['ms_aux']:.3f} | {row['ms_one_stream'] / row['ms_aux']:.2f}x | "
                  f"{row['arena_one_stream'] / 2**20:.2f} / {row['arena_aux'] / 2**20:.2f} | "
                  f"{'yes' if row['identical'] else 'NO'} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": driver.device_name(), "arch": arch, "date": str(datetime.date.today()),
                       "rows": rows}, f, indent=2)
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
