"""torchvision's SSDlite with decisive detections: edgert (fp32 and fp16 plans, CPU) against onnxruntime.

With random weights SSDlite's class scores are a softmax over 91 near-equal logits: every one of the 90 classes
scores about 1/91 > 0.001 (torchvision's score threshold) on all 3234 anchors, so the corpus row compares 300 detections chosen among 27 000
near-ties (fp32 matches; fp16 rounding reorders the ties, "beyond fp16" like its ideal). Here the class logits
(the input of the head's Softmax, [1, 3234, 91]) become a graph input drawn at random (normal, deviation 1.2,
the background logit raised by 14 down to 7: from no box above the 0.001 score threshold up to thousands), so
that the detections are decided by clear margins, from none to all 300 rows; the boxes still come from the
network on a random image. Prints one line per draw and precision: detections, per output max abs and normwise
error (labels: mismatches), and whether the shapes and labels agree and the float outputs are within the
numerics contract (CPU: fp32 1e-5, fp16 1e-2; CUDA kernels: fp32 1e-4, fp16 1e-2).

    python benchmarks/corpus_ssdlite_detections.py [--cache /work/corpus-cache] [--draws 6] [--precisions fp32 fp16]
        [--device cpu|emulate|cuda] [--arch sm_90]

``--device emulate`` builds the plans with CUDA kernels (for ``--arch``) and runs them on edgert's CUDA emulator
on the CPU (slow: minutes per draw); ``--device cuda`` builds them for this machine's GPU and runs them there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

NAME = "tv_ssdlite320_mobilenet_v3_large"
TOLERANCE = {"cpu": {"fp32": 1e-5, "fp16": 1e-2}, "cuda": {"fp32": 1e-4, "fp16": 1e-2}}   # corpus.py's contract


def with_logits_input(model):
    import onnx
    from onnx import helper
    softmax = next(node for node in model.graph.node if node.op_type == "Softmax")
    model.graph.input.append(helper.make_tensor_value_info("class_logits", onnx.TensorProto.FLOAT, [1, 3234, 91]))
    softmax.input[0] = "class_logits"
    return model


def errors(ours: dict, ref: dict, tolerance: float) -> tuple[str, bool]:
    parts, ok = [], True
    for name, want in ref.items():
        got = ours[name]
        if got.shape != want.shape:
            parts.append(f"{name} shape {got.shape} vs {want.shape}")
            ok = False
        elif want.dtype.kind != "f":
            wrong = int((got != want).sum())
            parts.append(f"{name} {wrong} differ")
            ok = ok and wrong == 0
        else:
            diff = float(np.abs(got - want).max()) if want.size else 0.0
            norm = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)) if want.size else 0.0
            parts.append(f"{name} max abs {diff:.1e} normwise {norm:.1e}")
            ok = ok and norm <= tolerance
    return ", ".join(parts), ok


def execution_context(model, precision: str, device: str, arch: str):
    """An execution context of the model's plan: on the CPU runtime, or with CUDA kernels on the emulator / GPU."""
    import edgert
    if device == "cpu":
        return edgert.load(edgert.build(model, precision=precision).to_bytes()).create_execution_context()
    if device == "emulate":
        from edgert.kernels.cuda import emulator
        from edgert.kernels.cuda.plan_kernels import compile_for_plan
        from edgert.runtime.cuda import CudaEngine
        plan = edgert.build(model, precision=precision, cpu_only_aliases=False)
        plan.document["kernels"] = {arch: compile_for_plan(plan.document, arch, emulate=True)}
        return CudaEngine(plan.document, driver=emulator.EmulatedDriver()).create_execution_context()
    from corpus import gpu_arch
    plan = edgert.build(model, precision=precision, gpu_kernels=True, gpu_archs=[gpu_arch()], autotune=False)
    return edgert.load(plan.to_bytes(), device="cuda").create_execution_context()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="/work/corpus-cache")
    parser.add_argument("--draws", type=int, default=6)
    parser.add_argument("--precisions", nargs="+", choices=sorted(TOLERANCE["cpu"]), default=["fp32", "fp16"])
    parser.add_argument("--device", choices=("cpu", "emulate", "cuda"), default="cpu",
                        help="cpu: the CPU runtime; emulate: CUDA kernels on edgert's CUDA emulator; cuda: this GPU")
    parser.add_argument("--arch", default="sm_90", help="with --device emulate: the arch the kernels are built for")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import onnxruntime as ort
    from corpus import CORPUS
    from corpus_pack import load
    feeds = CORPUS[NAME].sample(np.random.default_rng(0))
    model = with_logits_input(load(os.path.join(args.cache, f"{NAME}.onnx"), feeds))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    contexts = {}
    tolerance = TOLERANCE["cpu" if args.device == "cpu" else "cuda"]
    for precision in args.precisions:
        start = time.perf_counter()
        contexts[precision] = execution_context(model, precision, args.device, args.arch)
        print(f"{NAME} {precision} ({args.device}): build {time.perf_counter() - start:.1f} s", flush=True)
    rng = np.random.default_rng()
    failed = 0
    for background in np.linspace(14.0, 7.0, max(args.draws, 1)):
        logits = rng.standard_normal((1, 3234, 91)) * 1.2
        logits[..., 0] += background
        draw = {"images": rng.random((3, 320, 320), dtype=np.float32), "class_logits": logits.astype(np.float32)}
        names = [o.name for o in session.get_outputs()]
        ref = dict(zip(names, session.run(names, draw)))
        for precision, context in contexts.items():
            text, ok = errors(context.execute(draw), ref, tolerance[precision])
            failed += not ok
            print(f"background +{background:.1f} {precision}: {ref['scores'].shape[0]} detections, {text} "
                  f"{'ok' if ok else 'FAIL'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
