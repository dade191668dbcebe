"""The Ultralytics nms=True corpus models with real detections: edgert against onnxruntime.

With random weights the class logits are the detection head's bias (about -11.5 and -8.8: scores in the
sigmoid tail, equal within a level, none above the 0.25 threshold), so the corpus row of yolov8n_nms /
yolo11n_nms compares two all-zero [1, 300, 6] outputs. Here the class logits (the input of the head's last
Sigmoid) become a graph input drawn at random (normal, deviation 1.2, mean -7 to -4.2: from no box up to
thousands passing 0.25, so the detections fill from none to all 300 rows); the boxes still come from the
network on a random image. Prints one line per draw: detections, max abs and normwise error.

    python benchmarks/corpus_nms_candidates.py [--cache /work/corpus-cache] [--draws 6] [yolov8n_nms yolo11n_nms]
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


def check(path: str, draws: int) -> None:
    import onnx
    import onnxruntime as ort
    import edgert
    model = with_logits_input(onnx.load(path))
    start = time.perf_counter()
    plan = edgert.build(model)
    build_s = time.perf_counter() - start
    context = edgert.load(plan.to_bytes()).create_execution_context()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng()
    means = np.linspace(-7.0, -4.2, max(draws, 1))
    for mean in means:
        feeds = {"images": rng.random((1, 3, 640, 640), dtype=np.float32),
                 "class_logits": (rng.standard_normal((1, 80, 8400)) * 1.2 + mean).astype(np.float32)}
        ref = session.run(None, feeds)[0]
        ours = context.execute(feeds)["output0"]
        detections = int((np.abs(ref).sum(-1) > 0).sum())
        error = np.linalg.norm(ours - ref) / max(float(np.linalg.norm(ref)), 1e-30)
        status = "ok" if ours.shape == ref.shape and error <= 1e-5 and not np.isnan(ours).any() else "FAIL"
        print(f"{path.rsplit('/', 1)[-1]}: build {build_s:.1f} s, logit mean {mean:.1f}: {detections} detections, "
              f"max abs {np.abs(ours - ref).max():.1e}, normwise {error:.1e} {status}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["yolov8n_nms", "yolo11n_nms"])
    parser.add_argument("--cache", default="/work/corpus-cache")
    parser.add_argument("--draws", type=int, default=6)
    args = parser.parse_args(argv)
    for name in args.models:
        check(f"{args.cache}/{name}.onnx", args.draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
