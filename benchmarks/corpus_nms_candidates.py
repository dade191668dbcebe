"""The Ultralytics nms=True corpus models with real detections: edgert against onnxruntime.

With random weights the class logits are the detection head's bias (about -11.5 and -8.8: scores in the
sigmoid tail, equal within a level, none above the 0.25 threshold), so the corpus row of yolov8n_nms /
yolo11n_nms compares two all-zero [1, 300, 6] outputs. Here the class logits (the input of the head's last
Sigmoid) become a graph input drawn at random (normal, deviation 1.2, mean -7 to -4.2: from no box up to
thousands passing 0.25, so the detections fill from none to all 300 rows); the boxes still come from the
network on a random image. Prints one line per draw: detections, max abs and normwise error.

``--device cuda`` builds the plans with CUDA kernels for this GPU (NonZero, NMS, the run-time Pad... of
kernels/cuda/lower_detect.py) and runs them there, within the CUDA fp32 bound (1e-4), with the GPU time of one
inference (CUDA graph replay, median of 20) and of its layers from NonZero on; ``--device emulate`` runs them on
edgert's CUDA emulator (slow: minutes per draw).

    python benchmarks/corpus_nms_candidates.py [--cache /work/corpus-cache] [--draws 6] [--device cpu|cuda|emulate]
                                               [yolov8n_nms yolo11n_nms]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def with_logits_input(model):
    import onnx
    from onnx import helper
    sigmoid = [node for node in model.graph.node if node.op_type == "Sigmoid"][-1]
    model.graph.input.append(helper.make_tensor_value_info("class_logits", onnx.TensorProto.FLOAT, [1, 80, 8400]))
    sigmoid.input[0] = "class_logits"
    return model


def load_plan(model, device: str):
    """(execution context, build seconds) of ``model`` on ``device``."""
    import edgert
    start = time.perf_counter()
    if device == "cpu":
        plan = edgert.build(model)
        return edgert.load(plan.to_bytes()).create_execution_context(), time.perf_counter() - start
    from edgert.kernels.cuda.plan_kernels import compile_for_plan
    from edgert.runtime.cuda import CudaEngine
    if device == "emulate":
        from edgert.kernels.cuda.emulator import EmulatedDriver
        driver, arch = EmulatedDriver(), "sm_90"
    else:
        from edgert.runtime.cuda import CupyDriver
        driver = CupyDriver()
        arch = driver.arch()
    plan = edgert.build(model, cpu_only_aliases=False)
    plan.document["kernels"] = {arch: compile_for_plan(plan.document, arch, emulate=device == "emulate")}
    build_s = time.perf_counter() - start
    return CudaEngine(plan.document, driver=driver).create_execution_context(), build_s


def gpu_times(context) -> str:
    """Median GPU time of one graph replay and of its data-dependent part (the layers from NonZero on, run one by
    one between events)."""
    import statistics
    driver = context.driver
    totals, tails = [], []
    layers = context.engine.document["layers"]
    first = next(i for i, layer in enumerate(layers) if layer["kind"] == "NonZero")
    for _ in range(20):
        start, end = driver.event(), driver.event()
        driver.record(start, context.stream)
        context.run()
        driver.record(end, context.stream)
        driver.synchronize(context.stream)
        totals.append(driver.elapsed_ms(start, end))
        tails.append(sum(ms for layer, ms in context.layer_times() if layer >= first))
    return f", GPU {statistics.median(totals):.3f} ms (NonZero onwards {statistics.median(tails):.3f} ms)"


def check(path: str, draws: int, device: str = "cpu") -> None:
    import onnx
    import onnxruntime as ort
    model = with_logits_input(onnx.load(path))
    context, build_s = load_plan(model, device)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng()
    means = np.linspace(-7.0, -4.2, max(draws, 1))
    bound = 1e-5 if device == "cpu" else 1e-4
    for mean in means:
        feeds = {"images": rng.random((1, 3, 640, 640), dtype=np.float32),
                 "class_logits": (rng.standard_normal((1, 80, 8400)) * 1.2 + mean).astype(np.float32)}
        ref = session.run(None, feeds)[0]
        ours = context.execute(feeds)["output0"]
        detections = int((np.abs(ref).sum(-1) > 0).sum())
        error = np.linalg.norm(ours - ref) / max(float(np.linalg.norm(ref)), 1e-30)
        status = "ok" if ours.shape == ref.shape and error <= bound and not np.isnan(ours).any() else "FAIL"
        timing = gpu_times(context) if device == "cuda" else ""
        print(f"{path.rsplit('/', 1)[-1]} ({device}): build {build_s:.1f} s, logit mean {mean:.1f}: {detections} "
              f"detections, max abs {np.abs(ours - ref).max():.1e}, normwise {error:.1e} {status}{timing}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["yolov8n_nms", "yolo11n_nms"])
    parser.add_argument("--cache", default="/work/corpus-cache")
    parser.add_argument("--draws", type=int, default=6)
    parser.add_argument("--device", choices=("cpu", "cuda", "emulate"), default="cpu")
    args = parser.parse_args(argv)
    for name in args.models:
        check(f"{args.cache}/{name}.onnx", args.draws, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
