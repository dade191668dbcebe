"""int8 plans of ONNX's light zoo models (bundled with the onnx package): how many quantize / dequantize Reformat
layers and what activation arena, with data-movement layers moving int8 codes (Concatenation, Shuffle, Slice,
nearest Resize, Padding, Identity: ``edgert.int8_codes`` carriers) and without them (each such layer reads
dequantized values, as before carriers; the scales are the same, calibration ties them either way), and whether
both plans compute the same outputs (they must).

Build-time numbers (no timing), the same on every machine for a given edgert; minmax calibration on two batches of
standard-normal inputs (seeded).

    python benchmarks/int8_movement.py [--models inception_v1 inception_v2 squeezenet densenet121]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def light_model(name: str):
    import onnx
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"light_{name}.onnx")
    return onnx.load(path)


def plan_stats(model, calib: list, carriers: bool) -> tuple:
    import edgert
    from edgert import int8_codes

    kept = int8_codes.CARRY_KINDS
    int8_codes.CARRY_KINDS = kept if carriers else frozenset()   # without carriers: the plans of before
    try:
        plan = edgert.build(model, precision="int8", calib=calib, calibrator="minmax")
    finally:
        int8_codes.CARRY_KINDS = kept
    to = [layer["attrs"].get("to_dtype") for layer in plan.layers if layer["kind"] == "Reformat"]
    return plan, to.count("int8"), to.count("float32"), plan.document["memory"]["arena_bytes"]


def main() -> int:
    import edgert

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["inception_v1", "inception_v2", "squeezenet", "densenet121"])
    args = parser.parse_args()
    print("| model | carriers | quantize | dequantize | int8 arena MiB | / fp32 arena | outputs equal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in args.models:
        model = light_model(name)
        initializers = {t.name for t in model.graph.initializer}
        graph_input = next(i for i in model.graph.input if i.name not in initializers)
        shape = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        rng = np.random.default_rng(0)
        calib = [{graph_input.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(2)]
        fp32 = edgert.build(model).document["memory"]["arena_bytes"]
        x = {graph_input.name: rng.standard_normal(shape).astype(np.float32)}
        with_carriers, *on = plan_stats(model, calib, True)
        without, *off = plan_stats(model, calib, False)
        a, b = (edgert.load(p.to_bytes()).create_execution_context().execute(x) for p in (with_carriers, without))
        same = all(np.array_equal(a[k], b[k]) for k in a)
        carried = with_carriers.header["int8_codes"]["carriers"]
        for label, (quantize, dequantize, arena) in ((f"{carried}", on), ("off", off)):
            print(f"| {name} | {label} | {quantize} | {dequantize} | {arena / 2**20:.2f} | {arena / fp32:.3f}x | "
                  f"{same} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
