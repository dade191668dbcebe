"""The timing model against NVIDIA's published measurements: the fit, held-out errors, and GPU + DLA concurrency.

Reads targets/measurements.toml (MLPerf Inference log summaries, NVIDIA's Deep-Learning-Accelerator-SW
tables; harness *targets* are listed there too, marked and never fitted), predicts every row edgert can
build a graph for (ResNet-50: ONNX's light model; the DLA-SW and DLA-tutorial networks of dla_networks.py;
all optimized as `edgert partition` optimizes them), fits
the timing model's free constants to the rows marked `fit`, and reports:

- the fitted constants (with --write, stored in targets/fitted.toml, which TimingModel reads);
- in-sample and leave-one-out errors (each measurement predicted by a fit that did not see it);
- the concurrency report for the MLPerf offline setup (GPU + both DLA cores) next to the results;
- with --ablation, the held-out factors of fits with each model feature switched off (ABLATIONS).

    python benchmarks/dla_timing.py [--write] [--iterations 4000] [--exclude ID,...]
    python benchmarks/dla_timing.py --ablation
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1.25


def light_resnet50_graph():
    """ONNX's light ResNet-50 as `edgert partition` sees it (imported, optimized by the default pipeline)."""
    import onnx
    from edgert.onnx.importer import import_model
    from edgert.passes import optimize

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")
    graph = import_model(path, None)
    optimize(graph)
    return graph


def default_graphs() -> dict:
    """model name (as in targets/measurements.toml) -> IR graph, for every network edgert can build."""
    import dla_networks
    return {"resnet50": light_resnet50_graph(),
            "resnet34-backbone-1280x768": dla_networks.resnet34_backbone_graph(768, 1280),
            "ssd-resnet34-1200": dla_networks.ssd_resnet34_graph(1200),
            "ssd-mobilenetv1-300": dla_networks.optimized_graph(dla_networks.ssd_mobilenet_v1_model(300)),
            "dla-tutorial-model-bn-32x32": dla_networks.optimized_graph(dla_networks.dla_tutorial_model_bn_model())}


def evaluate(iterations: int = 4000, graphs: dict | None = None, settings: dict | None = None,
             exclude: tuple = ()) -> dict:
    """{"fit": FitResult, "rows": [...], "held_out": [(measurement, prediction)], "workloads": ...}.

    ``settings``: timing-model constants over the stored ones, for the workloads (an ablation);
    ``exclude``: ids of fitted measurements to leave out."""
    from edgert.targets import fit as fitting

    graphs = graphs or default_graphs()
    measurements = fitting.load_measurements()
    unknown = set(exclude) - {m.id for m in measurements}
    if unknown:
        raise SystemExit(f"--exclude: no measurement {', '.join(sorted(unknown))} in targets/measurements.toml")
    workloads = fitting.build_workloads(measurements, graphs, settings)
    used = [m for m in measurements if m.fit and m.id not in exclude and m.workload_key in workloads]
    result = fitting.fit(used, workloads, iterations=iterations)
    rows = []
    for m in measurements:
        workload = workloads.get(m.workload_key)
        prediction = fitting.predict(m, workload, result.constants_for(workload.profile)) if workload else None
        rows.append((m, prediction))
    held_out = fitting.leave_one_out(used, workloads, iterations)
    return {"fit": result, "rows": rows, "held_out": held_out, "workloads": workloads, "graphs": graphs}


def write_fitted(result, held_out, path: str) -> None:
    """targets/fitted.toml: the constants per scope, with where they came from."""
    from edgert.targets.fit import factor
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    lines = ["# Timing-model constants fitted to NVIDIA's published measurements (targets/measurements.toml) by",
             "# `python benchmarks/dla_timing.py --write`; read by edgert.targets.timing (basis \"fitted\").",
             f"# Written {datetime.date.today()} at commit {commit.strip() or '?'}; least squares on log(prediction /",
             "# measurement) with a weak pull toward the estimates in timing.DEFAULTS.",
             "# Fitted on: " + ", ".join(result.residuals), "# Held-out (leave-one-out) factors: " +
             ", ".join(f"{m.id} {factor(p, m.value):.3f}" for m, p in held_out), ""]
    scopes: dict = {}
    for param in result.params:
        scopes.setdefault(param.scope, []).append(param)
    for scope in sorted(scopes, key=lambda s: (s != "shared", s)):
        header = "shared" if scope == "shared" else f"{scope.split(':')[0]}.{scope.split(':')[1]}"
        lines.append(f"[{header}]")
        lines.extend(f"{p.constant} = {result.values[p.key]:.6g}" for p in scopes[scope])
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def print_report(evaluation: dict) -> None:
    from edgert.partitioner.throughput import throughput
    from edgert.targets.fit import factor

    result = evaluation["fit"]
    print("fitted constants:")
    for param in result.params:
        print(f"  {param.key:40} {result.values[param.key]:10.4g}   (estimate before the fit {param.start:g})")
    held = {m.id: p for m, p in evaluation["held_out"]}
    print(f"\n{'measurement':36} {'kind':11} {'metric':15} {'published':>10} {'fitted':>10} {'held-out':>10} {'factor':>7}")
    for m, prediction in evaluation["rows"]:
        shown = f"{prediction:10.4g}" if prediction is not None else f"{'-':>10}"
        out = held.get(m.id)
        worst = factor(out, m.value) if out is not None else None
        mark = "" if worst is None else ("  ok" if worst <= TOLERANCE else f"  > {TOLERANCE}x")
        print(f"{m.id:36} {m.kind:11} {m.metric:15} {m.value:10.4g} {shown} "
              f"{(f'{out:10.4g}' if out is not None else '-'.rjust(10))} "
              f"{(f'{worst:7.3f}' if worst is not None else '-'.rjust(7))}{mark}")
    graph = evaluation["graphs"]["resnet50"]
    for target, published in (("jetson-agx-orin", 6438.1), ("jetson-orin-nx", 2517.99)):
        from edgert.targets import load_profile
        from edgert.targets.timing import TimingModel
        profile = load_profile(target)
        timing = TimingModel(profile, overrides=result.constants_for(profile))
        report = throughput(graph, profile, precision="int8", timing=timing)
        print(f"\n{report.format()}\npublished (MLPerf v3.0 offline, GPU + 2 DLA): {published:.1f}; "
              f"factor {factor(report.total_ips, published):.3f}")


# Each model feature switched off in turn: (label, timing constants over the stored ones, fit restarts or None).
ABLATIONS = (
    ("stored model (every feature on)", {}, None),
    ("DLA first layer not in image input mode (3/64 of the atoms)", {"dla_image_input_channels": 0}, None),
    ("DLA convolution -> pooling through DRAM", {"dla_conv_pool_fusion": 0}, None),
    ("DLA weights read once per batch", {"dla_conv_buffer_kib": float("inf")}, None),
    ("no DLA memory-port cap", {"dla_port_bytes_per_clock": 0}, None),
    ("the previous round's model (image input mode only)", {"dla_conv_pool_fusion": 0,
                                                              "dla_conv_buffer_kib": float("inf"),
                                                              "dla_port_bytes_per_clock": 0}, None),
    ("one Nelder-Mead run per fit (no restarts)", {}, 0),
)


def ablation(iterations: int, graphs: dict | None = None, exclude: tuple = ()) -> list[tuple]:
    """[(label, {measurement id: held-out factor})] for each entry of ABLATIONS; ``exclude``: measurement
    ids left out of every fit (an ablation of data rather than of the model)."""
    from edgert.targets import fit as fitting
    graphs = graphs or default_graphs()
    results = []
    for label, settings, restarts in ABLATIONS:
        saved = fitting.RESTARTS
        fitting.RESTARTS = saved if restarts is None else restarts
        try:
            evaluation = evaluate(iterations, graphs, settings, exclude)
        finally:
            fitting.RESTARTS = saved
        results.append((label, {m.id: fitting.factor(p, m.value) for m, p in evaluation["held_out"]}))
    return results


def print_ablation(results: list[tuple]) -> None:
    ids = list(results[0][1])
    print(f"held-out factors with one model feature switched off ({TOLERANCE}x target):")
    print(f"{'model':52} {'worst':>6} {'misses':>6}")
    for label, factors in results:
        worst = max(factors.values())
        misses = sum(f > TOLERANCE for f in factors.values())
        print(f"{label[:52]:52} {worst:6.3f} {misses:6d}")
    print("\nper measurement (columns: the models above, in order):")
    for i in ids:
        print(f"  {i:36} " + " ".join(f"{factors[i]:6.3f}" for _, factors in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4000, help="Nelder-Mead iterations per fit")
    parser.add_argument("--write", action="store_true", help="store the fitted constants in targets/fitted.toml")
    parser.add_argument("--ablation", action="store_true",
                        help="refit with each model feature switched off and print the held-out factors")
    parser.add_argument("--exclude", default="", metavar="IDS",
                        help="comma-separated measurement ids to leave out of the fit (with --ablation: of every fit)")
    args = parser.parse_args()
    exclude = tuple(i for i in args.exclude.split(",") if i)
    if args.ablation:
        print_ablation(ablation(args.iterations, exclude=exclude))
        return
    evaluation = evaluate(args.iterations, exclude=exclude)
    print_report(evaluation)
    if args.write:
        path = os.path.join(ROOT, "targets", "fitted.toml")
        write_fitted(evaluation["fit"], evaluation["held_out"], path)
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
