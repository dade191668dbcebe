"""GPU latency: edgert (CUDA graph of its own kernels) vs PyTorch eager, PyTorch CUDA graph and
torch.compile(mode="max-autotune"), on torchvision resnet18 / resnet50 / mobilenet_v2 with random
weights, fp32 and fp16, batch 1 and 8. Runs on the GPU machine (needs torch, torchvision, cupy,
and NVRTC or nvcc for edgert's kernels).

``--dtypes int8``: edgert's int8 plan, calibrated (``--calibrator``, default entropy) on ``--calib-batches``
batches of random images (uniform pixels normalized with ImageNet's mean and std); the PyTorch columns of
an int8 row are PyTorch's fp16 run (model.half()), the speed an int8 plan has to beat. int8 activations
travel between int8 layers as int8 codes (``int8_codes=True``; ``--no-int8-codes``: as dequantized float32,
edgert's CUDA default). ``--int8-input``: the int8 plans bind the image as int8 codes at its calibrated scale
(``input_formats={"input": "int8"}``: the caller feeds codes, the plan has no quantize layer; the timed run is
fed the codes of the same image). ``arena MiB`` is the plan's activation arena.

Every latency is GPU time from CUDA events around one inference, after warm-up; the median of
``--reps`` runs. Also reported: edgert's plan load → first result time (plan bytes → outputs on the
host, all of it: read and verify the plan, load cubins, upload weights, allocate, capture the graph,
run) and edgert's error against PyTorch on the same input.

    python benchmarks/gpu.py [--models resnet18 resnet50 mobilenet_v2] [--dtypes fp32 tf32 fp16 int8]
                             [--batches 1 8] [--calib-batches N] [--calibrator entropy|minmax|percentile] [--int8-input] [--compile key|all|none] [--layers MODEL:DTYPE:BATCH]
                             [--json FILE]

``--compile key`` (default) runs torch.compile only for resnet50 fp16 batch 1 (max-autotune takes
minutes per configuration); ``--layers`` prints a per-kernel time table for one configuration.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def to_float16(model):
    """float32 weights and I/O → float16 (what model.half() computes in PyTorch)."""
    import onnx
    from onnx import TensorProto, numpy_helper
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    for index, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT:
            g.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16),
                                                                  init.name))
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
    for info in list(g.input) + list(g.output) + list(g.value_info):
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.FLOAT16
    return model


def export(torch_model, batch: int, folder: str, name: str):
    import onnx
    import torch
    path = os.path.join(folder, f"{name}_b{batch}.onnx")
    x = torch.randn(batch, 3, 224, 224)
    kwargs = dict(opset_version=17, input_names=["input"], output_names=["logits"])
    try:
        torch.onnx.export(torch_model, (x,), path, dynamo=False, **kwargs)
    except TypeError:  # torch without the dynamo switch
        torch.onnx.export(torch_model, (x,), path, **kwargs)
    return onnx.load(path)


def cuda_time(run, reps: int, warmup: int, stream=None) -> float:
    """Median milliseconds of ``run()`` between two CUDA events on ``stream``."""
    import cupy
    stream = stream or cupy.cuda.get_current_stream()
    for _ in range(warmup):
        run()
    stream.synchronize()
    start, end, times = cupy.cuda.Event(), cupy.cuda.Event(), []
    for _ in range(reps):
        start.record(stream)
        run()
        end.record(stream)
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def torch_time(fn, reps: int, warmup: int) -> float:
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end, times = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True), []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


# fp16 plans compute every layer in fp16, as model.half() does in PyTorch (by default the builder would
# keep the layer that produces the graph output in fp32).
FP16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]}


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def random_images(batch: int, rng) -> np.ndarray:
    """A batch of random 224x224 RGB images, normalized as torchvision's classifiers expect."""
    return (rng.random((batch, 3, 224, 224), np.float32) - IMAGENET_MEAN) / IMAGENET_STD


def int8_options(batch: int, calib_batches: int, calibrator: str, codes: bool = True, seed: int = 0,
                 int8_input: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    options = {"precision": "int8", "calibrator": calibrator, "int8_codes": codes,
               "calib": [{"input": random_images(batch, rng)} for _ in range(calib_batches)]}
    if int8_input:
        options["input_formats"] = {"input": "int8"}
    return options


def build_plan(onnx_model, batch: int, arch: str, dtype: str = "fp32", timing_cache: str | None = None,
               int8: dict | None = None) -> bytes:
    """The plan with kernels for ``arch``: tactics autotuned on this GPU (timings kept in and reused from
    ``timing_cache``) when a cache file is given, else the cost model's. ``int8``: the int8 build options
    (``int8_options``)."""
    import edgert
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    from edgert.plan import Plan
    options = FP16 if dtype == "fp16" else {"tf32": True} if dtype == "tf32" else int8 if dtype == "int8" else {}
    if timing_cache:
        return edgert.build(onnx_model, shapes={"input": (batch, 3, 224, 224)}, gpu_kernels=True, gpu_archs=[arch],
                            timing_cache=timing_cache, autotune=True, **options).to_bytes()
    plan = edgert.build(onnx_model, cpu_only_aliases=False, shapes={"input": (batch, 3, 224, 224)}, **options)
    document = plan.document
    document["kernels"] = {arch: compile_for_plan(document, arch)}
    return Plan(document).to_bytes()


def edgert_measure(plan_bytes: bytes, x: np.ndarray, reps: int, warmup: int) -> dict:
    from edgert.plan import read_plan
    from edgert.runtime.cuda import CudaEngine
    started = time.perf_counter()
    engine = CudaEngine(read_plan(plan_bytes))
    if engine.inputs[0].scale is not None:   # --int8-input: the caller's codes of the image
        x = np.clip(np.rint(x.astype(np.float64) / engine.inputs[0].scale), -128, 127).astype(np.int8)
    context = engine.create_execution_context()
    first = context.execute({"input": x})
    first_ms = (time.perf_counter() - started) * 1e3
    latency = cuda_time(lambda: context.run(), reps, warmup, context.stream)
    return {"latency_ms": latency, "first_result_ms": first_ms, "output": first, "context": context,
            "engine": engine, "arena_bytes": int(engine.document["memory"]["arena_bytes"])}


def layer_table(context, engine, reps: int = 20, repeat: int = 20) -> list[tuple]:
    """Per layer: (median ms, layer name, kind, tactic, grid), largest first. Each layer's launches are
    captured ``repeat`` times into one CUDA graph, so small kernels are timed without the gaps of
    Python launches between them."""
    plain = engine.create_execution_context(use_graph=False)
    stream, driver = plain.stream, plain.driver
    layers = engine.document["layers"]
    per_layer: dict[int, list] = {}
    for call, (index, entry) in zip(plain._calls, engine.launches):
        per_layer.setdefault(index, []).append((call, entry))
    rows = []
    for index, calls in per_layer.items():
        def launch_all(launch, calls=calls):
            for _ in range(repeat):
                for (function, grid, block, smem, params), _entry in calls:
                    launch(function, grid, block, smem, params, stream)
        graph = driver.capture(stream, launch_all)
        ms = cuda_time(lambda: driver.replay(graph, stream), reps, 3, stream) / repeat
        tactic = " + ".join(entry.get("tactic", "") for _, entry in calls)
        rows.append((ms, layers[index]["name"][:40], layers[index]["kind"], tactic, tuple(calls[0][0][1])))
    return sorted(rows, reverse=True)


def torch_measure(torch_model, x, reps: int, warmup: int, compile_mode: bool) -> dict:
    import torch
    results = {}
    with torch.inference_mode():
        results["eager_ms"] = torch_time(lambda: torch_model(x), reps, warmup)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                torch_model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = torch_model(x)
        results["graph_ms"] = torch_time(graph.replay, reps, warmup)
        results["reference"] = static_out.float().cpu().numpy()
        if compile_mode:
            started = time.perf_counter()
            compiled = torch.compile(torch_model, mode="max-autotune")
            for _ in range(3):
                compiled(x)
            torch.cuda.synchronize()
            results["compile_s"] = time.perf_counter() - started
            results["compile_ms"] = torch_time(lambda: compiled(x), reps, warmup)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["resnet18", "resnet50", "mobilenet_v2"])
    parser.add_argument("--dtypes", nargs="*", default=["fp32", "tf32", "fp16"],
                        choices=["fp32", "tf32", "fp16", "int8"],
                        help="fp32: exact fp32 on both sides (PyTorch with TF32 off); tf32: fp32 data on "
                             "tensor cores on both sides (edgert's tf32 option, PyTorch's allow_tf32); fp16; "
                             "int8: edgert calibrated int8 against PyTorch fp16")
    parser.add_argument("--calib-batches", type=int, default=4, metavar="N",
                        help="int8: calibrate on N batches of random images (default 4)")
    parser.add_argument("--calibrator", choices=["entropy", "minmax", "percentile"], default="entropy",
                        help="int8: how activation ranges become scales (default entropy)")
    parser.add_argument("--int8-codes", action=argparse.BooleanOptionalAction, default=True,
                        help="int8: int8 tensors between int8 layers (default); --no-int8-codes: float32 tensors")
    parser.add_argument("--int8-input", action="store_true",
                        help="int8: bind the image as int8 codes (input_formats; no quantize layer in the plan)")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--compile", choices=["key", "all", "none"], default="key")
    parser.add_argument("--layers", nargs="*", default=[], help="MODEL:DTYPE:BATCH to print per-kernel tables for")
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", default=None)
    parser.add_argument("--timing-cache", default=None, metavar="FILE",
                        help="autotune every plan's tactics on this GPU, keeping the timings in FILE (reused)")
    parser.add_argument("--onnx-dir", default=None, help="keep the exported ONNX files here")
    args = parser.parse_args()

    import cupy
    import torch
    import torchvision

    from edgert.runtime.cuda import CupyDriver
    arch = CupyDriver().arch()
    gpu = torch.cuda.get_device_name()
    print(f"# edgert vs PyTorch {torch.__version__} on {gpu} ({arch}), {datetime.date.today()}; "
          f"PyTorch TF32 (cudnn and matmul) on for the tf32 rows only; "
          f"median of {args.reps} CUDA-event timings after {args.warmup} warm-ups", flush=True)
    if "int8" in args.dtypes:
        print(f"# int8: calibrated ({args.calibrator}) on {args.calib_batches} random-image batches, "
              f"{'int8 codes' if args.int8_codes else 'float32 tensors'} between int8 layers"
              f"{', the image bound as int8 codes' if args.int8_input else ''}; PyTorch columns: fp16")
    print(f"# command: python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}")
    print("| model | dtype | batch | edgert ms | eager ms | CUDA graph ms | compile ms | edgert/graph | "
          "edgert/compile | load→first ms | err vs torch | arena MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    records = []
    folder = args.onnx_dir or tempfile.mkdtemp(prefix="edgert-bench-")
    os.makedirs(folder, exist_ok=True)
    for name in args.models:
        base = getattr(torchvision.models, name)(weights=None).eval()
        for batch in args.batches:
            exported = export(base, batch, folder, name)
            for dtype in args.dtypes:
                onnx_model = to_float16(exported) if dtype == "fp16" else exported
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
                started = time.perf_counter()
                int8 = int8_options(batch, args.calib_batches, args.calibrator, args.int8_codes,
                                    int8_input=args.int8_input) if dtype == "int8" else None
                plan_bytes = build_plan(onnx_model, batch, arch, dtype, args.timing_cache, int8)
                build_s = time.perf_counter() - started
                torch_model = copy.deepcopy(base).cuda()
                torch_half = dtype in ("fp16", "int8")   # int8 rows: PyTorch's fp16 run
                torch_model = torch_model.half() if torch_half else torch_model
                image = torch.from_numpy(random_images(batch, np.random.default_rng(1))).cuda()
                x = image.half() if torch_half else image
                key = name == "resnet50" and dtype == "fp16" and batch == 1
                theirs = torch_measure(torch_model, x, args.reps, args.warmup,
                                       args.compile == "all" or (args.compile == "key" and key))
                ours = edgert_measure(plan_bytes, (image if dtype == "int8" else x).cpu().numpy(), args.reps,
                                      args.warmup)
                ref = theirs.pop("reference")
                got = ours["output"]["logits"].astype(np.float32)
                err = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
                if not np.linalg.norm(ref) > 0:
                    print(f"# note: PyTorch's {name} {dtype} output is all zero/non-finite; the error says little")
                record = {"model": name, "dtype": dtype, "batch": batch, "edgert_ms": ours["latency_ms"],
                          "first_result_ms": ours["first_result_ms"], "build_s": build_s,
                          "plan_mb": len(plan_bytes) / 2**20, "error_vs_torch": err,
                          "arena_bytes": ours["arena_bytes"], **theirs}
                records.append(record)
                compiled = theirs.get("compile_ms")
                ratio = f"{ours['latency_ms'] / compiled:.2f}x" if compiled else "-"
                print(f"| {name} | {dtype} | {batch} | {ours['latency_ms']:.3f} | {theirs['eager_ms']:.3f} | "
                      f"{theirs['graph_ms']:.3f} | {compiled and f'{compiled:.3f}' or '-'} | "
                      f"{ours['latency_ms'] / theirs['graph_ms']:.2f}x | "
                      f"{ratio} | "
                      f"{ours['first_result_ms']:.0f} | {err:.2e} | {ours['arena_bytes'] / 2**20:.1f} |", flush=True)
                if f"{name}:{dtype}:{batch}" in args.layers:
                    rows = layer_table(ours["context"], ours["engine"])
                    total = sum(r[0] for r in rows)
                    print(f"\n# per kernel, {name} {dtype} batch {batch}: sum {total:.3f} ms over {len(rows)} kernels")
                    for ms, layer, kind, tactic, grid in rows[:40]:
                        print(f"  {ms * 1e3:8.1f} us  {kind:16s} {tactic:34s} {str(grid):16s} {layer}")
                    print(flush=True)
                del ours
                cupy.get_default_memory_pool().free_all_blocks()
                torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"gpu": gpu, "arch": arch, "date": str(datetime.date.today()), "torch": torch.__version__,
                       "results": records}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
