"""The CPU NonMaxSuppression kernel on many candidates: median seconds per case (one batch, one class).

Cases: boxes 10-80 px wide in a 640 px image (2000 and 8000 of them: a YOLO-like tangle, one group), SSDlite's
batched NMS (27 000 boxes of 90 classes, each class shifted apart by the class-offset trick), and 27 000 boxes
spread over a 57 600 px square (no two groups apart along x, few overlaps). ``--kernel-file`` times another
version of kernels/cpu/nms.py (``git show REV:kernels/cpu/nms.py > /tmp/nms_rev.py``), interleaved with this
one; ``--max-boxes`` skips the larger cases (the old kernel's IoU matrix of 27 000 boxes takes 5.4 GB).

    python benchmarks/nms_kernel.py [--repeats 3] [--max-boxes N] [--kernel-file FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time

import numpy as np


def case(rng, count: int, spread: float, classes: int = 1):
    corner = rng.uniform(0, spread, (1, count, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(10, 80, (1, count, 2))], axis=2)
    boxes += (rng.integers(0, classes, count) * (spread + 81))[None, :, None]
    return boxes.astype(np.float32), rng.random((1, 1, count)).astype(np.float32)


CASES = [("2000 boxes, 640 px", 2000, 640.0, 1), ("8000 boxes, 640 px", 8000, 640.0, 1),
         ("27000 boxes, 90 classes apart", 27000, 320.0, 90), ("27000 boxes, 57600 px", 27000, 57600.0, 1)]


def load_kernel(path: str):
    """The ``nms`` function of a kernels/cpu/nms.py file, without registering it (this edgert has its own)."""
    import edgert.kernels.registry as registry
    spec = importlib.util.spec_from_file_location("nms_other", path)
    module = importlib.util.module_from_spec(spec)
    register = registry.register
    registry.register = lambda kind: (lambda fn: fn)
    try:
        spec.loader.exec_module(module)
    finally:
        registry.register = register
    return module.nms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-boxes", type=int, default=None)
    parser.add_argument("--kernel-file", default=None, help="another nms.py to time beside this checkout's")
    args = parser.parse_args(argv)
    from edgert.kernels.cpu.nms import nms
    kernels = {"this": nms}
    if args.kernel_file:
        kernels["other"] = load_kernel(args.kernel_file)
    attrs = {"center_point_box": 0, "max_output_boxes_per_class": 10**6, "iou_threshold": 0.5,
             "score_threshold": None}
    print("| case | kept | " + " | ".join(f"{name} median s" for name in kernels) + " |")
    print("|---|---|" + "---|" * len(kernels))
    for name, count, spread, classes in CASES:
        if args.max_boxes is not None and count > args.max_boxes:
            continue
        boxes, scores = case(np.random.default_rng(count + classes), count, spread, classes)
        times, kept = {k: [] for k in kernels}, {}
        for _ in range(args.repeats):
            for kernel_name, kernel in kernels.items():   # interleaved
                outputs = [np.zeros((count, 3), np.int64), np.zeros((), np.int64)]
                start = time.perf_counter()
                kernel(attrs, [boxes, scores], outputs)
                times[kernel_name].append(time.perf_counter() - start)
                kept[kernel_name] = outputs[0][:int(outputs[1])].copy()
        if len({k.tobytes() for k in kept.values()}) != 1:
            print(f"{name}: the kernels select different boxes", file=sys.stderr)
            return 1
        medians = " | ".join(f"{statistics.median(t):.2f}" for t in times.values())
        print(f"| {name} | {len(kept['this'])} | {medians} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
