"""The timing model against published numbers: ResNet-50 INT8, GPU vs one DLA core, AGX Orin and Orin NX.

NVIDIA's MLPerf Inference v3.0 (edge, closed, offline) submissions give about 4500 images/s on the
Jetson AGX Orin GPU against about 600 on one of its DLA cores, and 1700 vs 230 on Jetson Orin NX.
This script predicts the same throughputs for ONNX's light ResNet-50 with edgert's timing model
(GPU: every layer; DLA: the layers `partition(..., dla_core=0, gpu_fallback=True)` keeps on the DLA,
plus one submission per batch) and prints the GPU/DLA ratios next to the published ones.

    python benchmarks/dla_timing.py [--batch 8] [--precision int8]

Layers are fused as TensorRT fuses them (residual add + ReLU into the convolution) when edgert has
the conv-epilogue pass. Note that the DLA efficiency constant of the timing model was fitted to the
AGX Orin DLA figure; the GPU figures and everything on Orin NX are predictions.
"""

from __future__ import annotations

import argparse
import importlib
import os

PUBLISHED = {  # images/s: (GPU, one DLA core), MLPerf Inference v3.0 edge offline, ResNet-50 INT8
    "jetson-agx-orin": (4500.0, 600.0),
    "jetson-orin-nx": (1700.0, 230.0),
}
TOLERANCE = 1.5


def light_resnet50_graph():
    """ONNX's light ResNet-50 as an optimized IR graph, epilogues fused before elementwise chains."""
    import onnx
    from edgert.onnx.importer import import_model
    from edgert.passes import PIPELINE, optimize

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")
    graph = import_model(path, None)
    try:
        conv_fusion = importlib.import_module("edgert.passes.conv_fusion")
    except ImportError:
        conv_fusion = None
    if conv_fusion is not None:
        optimize(graph, disabled=[p for p in PIPELINE if p in ("elementwise_fusion", "conv_fusion")])
        conv_fusion.run(graph)
    optimize(graph)
    return graph


def predict(graph, target: str, precision: str = "int8", batch: int = 8) -> dict:
    """Predicted images/s of the whole model on the GPU and of its DLA share on DLA core 0."""
    from edgert.partitioner.assign import partition
    from edgert.targets import load_profile
    from edgert.targets.timing import TimingModel, nodes_ms

    profile = load_profile(target)
    model = TimingModel(profile)
    gpu_ms = nodes_ms(model, graph.nodes, "gpu", precision, batch)
    # sets node.device; without Reformat layers the graph stays reusable for the next target
    report = partition(graph, profile, dla_core=0, gpu_fallback=True, precision=precision, insert_reformats=False)
    on_dla = [n for n in graph.nodes if n.device.startswith("dla")]
    dla_ms = nodes_ms(model, on_dla, "dla:0", precision, batch) + len(report.segments) * model.segment_overhead_ms()
    return {"gpu_ips": batch / gpu_ms * 1e3, "dla_ips": batch / dla_ms * 1e3,
            "dla_layers": len(on_dla), "layers": len(graph.nodes)}


def compare(precision: str = "int8", batch: int = 8) -> list[dict]:
    graph = light_resnet50_graph()
    rows = []
    for target, (gpu, dla) in PUBLISHED.items():
        p = predict(graph, target, precision, batch)
        predicted, published = p["gpu_ips"] / p["dla_ips"], gpu / dla
        factor = max(predicted, published) / min(predicted, published)
        rows.append(dict(p, target=target, published_gpu=gpu, published_dla=dla, predicted_ratio=predicted,
                         published_ratio=published, factor=factor, within=factor <= TOLERANCE))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default="int8", choices=("int8", "fp16"))
    args = parser.parse_args()
    print(f"ResNet-50 (ONNX light model), {args.precision}, batch {args.batch}: images/s, predicted vs MLPerf v3.0")
    print(f"{'target':18} {'GPU pred':>9} {'GPU pub':>8} {'DLA pred':>9} {'DLA pub':>8} "
          f"{'ratio pred':>10} {'ratio pub':>9} {'factor':>7}  within {TOLERANCE}x")
    for r in compare(args.precision, args.batch):
        print(f"{r['target']:18} {r['gpu_ips']:9.0f} {r['published_gpu']:8.0f} {r['dla_ips']:9.0f} "
              f"{r['published_dla']:8.0f} {r['predicted_ratio']:10.2f} {r['published_ratio']:9.2f} "
              f"{r['factor']:7.2f}  {'yes' if r['within'] else 'NO'}   ({r['dla_layers']}/{r['layers']} layers on DLA)")


if __name__ == "__main__":
    main()
