"""The real-models corpus: export each model (cached), build it with edgert, run it on the CPU and compare
with onnxruntime; print a table (``--markdown`` for docs/corpus.md).

    python benchmarks/corpus.py [--cache DIR] [--only NAME ...] [--jobs N] [--markdown] [--json FILE]
    python benchmarks/corpus.py --device cuda [--precisions fp32 fp16] [--arch sm_90] [--build-only] ...
    python benchmarks/corpus.py --device emulate --only gru_keyword_spotter ...   # CUDA kernels, no GPU

The exporters (torch, torchvision, timm, transformers, ultralytics, onnxscript, paddle2onnx) are not
edgert dependencies: models whose exporter is not installed and whose export is not in the cache are
listed as skipped. Each model runs in a fresh worker process, so a crash or a leak in one does not take
the others down. ``--cache`` may also be a folder written by benchmarks/corpus_pack.py (the graphs
with their large weights drawn again from a seed: a few MB for the whole corpus, for machines with
no exporters and no network).

Pass rule (DESIGN.md's numerics contract, fp32 on the CPU): every float output's normwise relative
error against onnxruntime ≤ 1e-5, integer outputs equal. Where onnxruntime's fp32 kernels are the
coarse side, the model is evaluated again in float64 (onnxruntime on the model with its float tensors
made double) and edgert passes when it is within 1e-5 of that, shown as "ok (float64 ref)".

``--device cuda``: per model and precision, a plan with CUDA kernels for this GPU's arch (the cost
model's tactics, no autotuning), run on the GPU and compared with onnxruntime (CPU, fp32) within the
contract's CUDA tolerance: fp32 ≤ 1e-4, fp16 ≤ 1e-2 (the default fp16 build: outputs, softmax,
normalizations and recurrent layers stay fp32). ``--build-only`` only cross-compiles (NVRTC; no GPU
needed); ``--device emulate`` runs the same kernels on edgert's CUDA emulator on the CPU (slow).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from corpus_models import CORPUS, EXPORTER_PACKAGES, RECALIBRATED_KEY  # noqa: E402

DEFAULT_CACHE = "/work/corpus-cache"


def missing_packages(exporter: str) -> list[str]:
    return [p for p in EXPORTER_PACKAGES[exporter] if importlib.util.find_spec(p) is None]


def export_cached(spec, cache: str) -> str:
    path = os.path.join(cache, f"{spec.name}.onnx")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        partial = path + f".{os.getpid()}.tmp.onnx"
        spec.export(partial)
        os.replace(partial, path)
    return path


def unsupported_ops(model) -> list[str]:
    """The model's op types (subgraphs included) that edgert's importer does not know."""
    from edgert.onnx.registry import supported_ops
    found: set[str] = set()

    def walk(graph):
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                for subgraph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(subgraph)
    walk(model.graph)
    return sorted(found - set(supported_ops()))


def explain(error: BaseException, model=None) -> str:
    """One line: the error, or the ops the model needs that edgert does not import."""
    text = f"{type(error).__name__}: {error}".splitlines()[0].split("; supported ops")[0]
    missing = unsupported_ops(model) if model is not None else []
    return f"needs {', '.join(missing)}" if missing else text


def compare_outputs(outputs: dict, reference: dict) -> dict:
    """Per output: max abs and normwise error (float), or the count of unequal elements (integer)."""
    result = {}
    for name, ref in reference.items():
        out = outputs.get(name)
        if out is None or out.shape != ref.shape:
            result[name] = {"shape": f"{None if out is None else out.shape} vs {ref.shape}"}
            continue
        if not np.issubdtype(ref.dtype, np.floating):
            result[name] = {"unequal": int(np.count_nonzero(out != ref))}
            continue
        diff = out.astype(np.float64) - ref.astype(np.float64)
        norm = np.linalg.norm(ref.astype(np.float64))
        finite = bool(np.all(np.isfinite(out)))
        result[name] = {"max_abs": float(np.max(np.abs(diff), initial=0.0)) if finite else float("inf"),
                        "normwise": (float(np.linalg.norm(diff) / norm) if norm > 0 else float(np.linalg.norm(diff)))
                        if finite else float("inf")}
    return result


def passes(errors: dict, tolerance: float) -> bool:
    return all(e.get("unequal", 0) == 0 and "shape" not in e and e.get("normwise", 0.0) <= tolerance
               for e in errors.values())


def onnxruntime_outputs(model_bytes: bytes, feeds: dict) -> dict:
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})))


def float64_outputs(model, feeds: dict) -> dict:
    """The model evaluated in float64: onnxruntime where it has double kernels, else ONNX's reference evaluator."""
    from float64_model import to_float64
    wide_model = to_float64(model)
    wide = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feeds.items()}
    try:
        return onnxruntime_outputs(wide_model.SerializeToString(), wide)
    except Exception:  # onnxruntime has no double Conv, among others
        from onnx.reference import ReferenceEvaluator
        names = [o.name for o in wide_model.graph.output]
        return dict(zip(names, ReferenceEvaluator(wide_model).run(None, wide)))


def run_model(name: str, cache: str, device: str = "cpu", precisions=("fp32",), arch: str | None = None,
              build_only: bool = False) -> dict:
    """Export (cached), build, run and compare one model; the row for the table. On the CPU (``device``
    "cpu") with fp32 only, one plan and a flat row; else one plan per precision (see ``precision_result``),
    each in ``row[precision]``."""
    spec = CORPUS[name]
    row = {"model": name, "exporter": spec.exporter, "source": spec.source}
    path = os.path.join(cache, f"{name}.onnx")
    missing = missing_packages(spec.exporter)
    if missing and not os.path.exists(path):
        row["status"] = f"skipped: {', '.join(missing)} not installed"
        return row
    stage, model = "export", None
    try:
        path = export_cached(spec, cache)
        stage = "load"
        from corpus_pack import load
        feeds = spec.sample(np.random.default_rng(0))
        start = time.perf_counter()
        model = load(path, feeds)
        row["load_s"] = round(time.perf_counter() - start, 2)   # a packed model: weights redrawn, re-centred
        row["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        row["nodes"] = len(model.graph.node)
        row["batchnorm_recalibrated"] = {p.key: p.value for p in model.metadata_props}.get(RECALIBRATED_KEY)
        if device != "cpu" or list(precisions) != ["fp32"]:
            stage = "onnxruntime"
            reference = None if build_only else onnxruntime_outputs(model.SerializeToString(), feeds)
            for precision in precisions:
                row[precision] = precision_result(model, feeds, reference, device, precision, arch, build_only)
            row["status"] = "; ".join(f"{p}: {row[p]['status']}" for p in precisions)
            return row
        stage = "build"
        import edgert
        start = time.perf_counter()
        plan = edgert.build(model, shapes={k: v.shape for k, v in feeds.items()})
        row["build_s"] = round(time.perf_counter() - start, 2)
        row["layers"] = len(plan.layers)
        stage = "run"
        outputs = edgert.load(plan).create_execution_context().execute(feeds)
        stage = "onnxruntime"
        row.update(judge(model, feeds, outputs, onnxruntime_outputs(model.SerializeToString(), feeds),
                         TOLERANCE["cpu"]["fp32"]))
        if row["status"] == "mismatch":
            row["status"] = beyond_verdict("fp32", worst(row["errors_float64"], "normwise"),
                                           row["onnxruntime_float64"], TOLERANCE["cpu"]["fp32"])
    except Exception as error:  # keep going: the table says where each model stopped
        row["status"] = f"{stage}: {explain(error, model)}"
        row["traceback"] = traceback.format_exc(limit=-4)
    return row


def judge(model, feeds: dict, outputs: dict, reference: dict, tolerance: float, float64: bool = True) -> dict:
    """errors, status; when onnxruntime's result misses the tolerance (and ``float64``), also errors_float64
    (edgert against a float64 evaluation, which may pass the model as "ok (float64 ref)") and
    onnxruntime_float64 (onnxruntime's own fp32 error against it: the ideal fp32 error, see ``beyond_verdict``).
    An fp16 plan's error dwarfs onnxruntime's fp32 one: it is judged without the float64 evaluation."""
    errors = compare_outputs(outputs, reference)
    if passes(errors, tolerance):
        return {"errors": errors, "status": "ok"}
    if not float64:
        return {"errors": errors, "status": "mismatch"}
    wide = float64_outputs(model, feeds)
    errors64 = compare_outputs(outputs, wide)
    return {"errors": errors, "errors_float64": errors64,
            "onnxruntime_float64": worst(compare_outputs(reference, wide), "normwise"),
            "status": "ok (float64 ref)" if passes(errors64, tolerance) else "mismatch"}


# DESIGN.md's numerics contract: normwise error bounds against onnxruntime (CPU, fp32), per device and precision
TOLERANCE = {"cpu": {"fp32": 1e-5, "fp16": 1e-2}, "cuda": {"fp32": 1e-4, "fp16": 1e-2}}
NEAR_IDEAL = 1.5    # a plan within this factor of its precision's ideal error loses no more than the precision
                    # does (edgert's fp16 plans that pass are 0.6-1.3x their ideal on the corpus)


def beyond_verdict(precision: str, normwise: float, ideal: float | None, bound: float) -> str:
    """The status of a plan that missed ``bound``: "beyond fp16" / "beyond fp32" when its error is within
    NEAR_IDEAL of the ideal error at that precision (the precision itself is what misses, or nearly misses,
    the bound); else a mismatch: the plan loses more than the precision explains. The ideal: for fp16,
    weights and activations rounded to float16 and computed in float32 (benchmarks/corpus_fp16.py); for fp32,
    onnxruntime's own fp32 result against the float64 evaluation (``normwise`` is then edgert's error against
    the float64 one). Both statuses name the ideal error."""
    if ideal is None:
        return "mismatch"
    if normwise <= NEAR_IDEAL * ideal:
        return f"beyond {precision} (ideal {ideal:.1e})"
    return f"mismatch (ideal {ideal:.1e})"


def precision_result(model, feeds: dict, reference: dict | None, device: str, precision: str, arch: str | None,
                     build_only: bool) -> dict:
    """One precision's plan: on the CPU runtime (``device`` "cpu"), or with CUDA kernels built (NVRTC, for
    ``arch``) and, unless ``build_only``, run on the GPU (``device`` "cuda") or on edgert's CUDA emulator
    (``device`` "emulate", small models only); compared with onnxruntime under the contract's tolerance for
    the device and ``precision``. An fp16 result also carries the ideal fp16 error (benchmarks/corpus_fp16.py)
    and, when it misses the bound, the verdict of ``beyond_verdict`` (as fp32 results that miss theirs)."""
    import edgert
    result, stage = {}, "build"
    tolerance = TOLERANCE["cpu" if device == "cpu" else "cuda"][precision]
    try:
        start = time.perf_counter()
        shapes = {k: v.shape for k, v in feeds.items()}
        if device == "cpu":
            plan = edgert.build(model, shapes=shapes, precision=precision)
        elif device == "emulate":
            from edgert.kernels.cuda.plan_kernels import compile_for_plan
            plan = edgert.build(model, shapes=shapes, precision=precision, cpu_only_aliases=False)
            plan.document["kernels"] = {arch: compile_for_plan(plan.document, arch, emulate=True)}
        else:
            # the cost model's tactics: autotuning every convolution on the GPU would make the run far longer,
            # and the tactic changes speed, not what is computed
            plan = edgert.build(model, shapes=shapes, precision=precision, gpu_kernels=True, gpu_archs=[arch],
                                autotune=False)
        result["build_s"] = round(time.perf_counter() - start, 2)
        result["layers"] = len(plan.layers)
        if build_only:
            result["status"] = "built"
            return result
        stage = "run"
        if device == "cpu":
            engine = edgert.load(plan)
        elif device == "emulate":
            from edgert.kernels.cuda import emulator
            from edgert.runtime.cuda import CudaEngine
            engine = CudaEngine(plan.document, driver=emulator.EmulatedDriver())
        else:
            engine = edgert.load(plan.to_bytes(), device="cuda")
        outputs = engine.create_execution_context().execute(feeds)
        stage = "compare"
        result.update(judge(model, feeds, outputs, reference, tolerance, float64=precision == "fp32"))
        if precision == "fp16":
            stage = "fp16 ideal"
            from corpus_fp16 import fp16_ideal_outputs
            result["ideal_normwise"] = worst(compare_outputs(fp16_ideal_outputs(model, feeds), reference), "normwise")
            if result["status"] == "mismatch":
                result["status"] = beyond_verdict("fp16", worst(result["errors"], "normwise"),
                                                  result["ideal_normwise"], tolerance)
        elif result["status"] == "mismatch":
            result["ideal_normwise"] = result["onnxruntime_float64"]
            result["status"] = beyond_verdict("fp32", worst(result["errors_float64"], "normwise"),
                                              result["ideal_normwise"], tolerance)
    except Exception as error:
        result["status"] = f"{stage}: {explain(error, model)}"[:300]
        result["traceback"] = traceback.format_exc(limit=-4)
    return result


def gpu_arch() -> str | None:
    """This machine's GPU arch (sm_XY) through cupy, None without one."""
    try:
        import cupy
        return f"sm_{cupy.cuda.Device(0).compute_capability}"
    except Exception:
        return None


def worst(errors: dict | None, key: str):
    values = [e[key] for e in (errors or {}).values() if key in e]
    return max(values) if values else None


def table_rows(rows: list[dict]) -> list[list[str]]:
    def number(x, fmt):
        return "" if x is None else format(x, fmt)
    out = []
    for row in rows:
        errors = row.get("errors_float64") if row.get("status") == "ok (float64 ref)" else row.get("errors")
        out.append([row["model"], row["exporter"], str(row.get("opset", "")), str(row.get("nodes", "")),
                    str(row.get("layers", "")), number(row.get("build_s"), ".1f"), number(worst(errors, "max_abs"), ".1e"),
                    number(worst(errors, "normwise"), ".1e"), row["status"]])
    return out


HEADER = ["model", "exporter", "opset", "nodes", "layers", "build s", "max abs", "normwise", "status"]


def precision_table(rows: list[dict], precisions) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-precision table: per precision, build seconds, normwise error and status;
    for fp16 also the ideal fp16 error (benchmarks/corpus_fp16.py)."""
    header = ["model", "exporter", "opset"]
    for precision in precisions:
        header += [f"{precision} build s", f"{precision} normwise"] + \
            (["fp16 ideal"] if precision == "fp16" else []) + [f"{precision} status"]
    body = []
    for row in rows:
        cells = [row["model"], row["exporter"], str(row.get("opset", ""))]
        for precision in precisions:
            result = row.get(precision)
            ideal = precision == "fp16"
            if result is None:   # skipped, or stopped before any build
                cells += ["", ""] + [""] * ideal + [row["status"]]
                continue
            errors = result.get("errors_float64") if result["status"] == "ok (float64 ref)" else result.get("errors")
            normwise = worst(errors, "normwise")
            cells += [format(result["build_s"], ".1f") if "build_s" in result else "",
                      "" if normwise is None else format(normwise, ".1e")]
            if ideal:
                cells.append("" if result.get("ideal_normwise") is None else format(result["ideal_normwise"], ".1e"))
            cells.append(result["status"])
        body.append(cells)
    return header, body


def print_table(header: list[str], body: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for cells in body:
            print("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return
    widths = [max(len(r[i]) for r in body + [header]) for i in range(len(header) - 1)]
    for cells in [header] + body:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1][:160])


def machine() -> str:
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}), "
            f"commit {commit.stdout.strip() or '?'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=DEFAULT_CACHE, help=f"exported models (default {DEFAULT_CACHE}); "
                        "a folder of benchmarks/corpus_pack.py works too")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these models only")
    parser.add_argument("--jobs", type=int, default=1, help="models run at once, one process each (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (docs/corpus.md)")
    parser.add_argument("--json", metavar="FILE", help="also write every row (errors per output) as JSON")
    parser.add_argument("--list", action="store_true", help="list the models and their exporters")
    parser.add_argument("--device", choices=("cpu", "cuda", "emulate"), default="cpu",
                        help="cpu: fp32 plans on the CPU runtime (default); cuda: plans with CUDA kernels on this "
                             "machine's GPU; emulate: the same on edgert's CUDA emulator (slow: small models only)")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "fp16"),
                        help="the plans' precisions (default: fp32 on the CPU, fp32 fp16 with --device cuda/emulate)")
    parser.add_argument("--arch", help="with --device cuda/emulate: the arch to compile for (default: this GPU's, "
                                       "else sm_90)")
    parser.add_argument("--build-only", action="store_true",
                        help="with --device cuda: build the plans (NVRTC cross-compiles; no GPU needed), run none")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for spec in CORPUS.values():
            missing = missing_packages(spec.exporter)
            print(f"{spec.name:36} {spec.exporter:12} {spec.source:12} {'missing ' + ', '.join(missing) if missing else ''}")
        return 0
    names = args.only or list(CORPUS)
    unknown = [n for n in names if n not in CORPUS]
    if unknown:
        print(f"corpus: unknown model(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    precisions = args.precisions or (["fp32"] if args.device == "cpu" else ["fp32", "fp16"])
    arch = args.arch or (gpu_arch() if args.device == "cuda" else None) or "sm_90"
    if args.device == "cuda" and not args.build_only and gpu_arch() is None:
        print("corpus: error: --device cuda needs a CUDA GPU and cupy (use --build-only to only cross-compile, or "
              "--device emulate)", file=sys.stderr)
        return 2
    for exporter in sorted({CORPUS[n].exporter for n in names}):
        if missing_packages(exporter):
            print(f"exporter {exporter}: {', '.join(missing_packages(exporter))} not installed; its models are "
                  f"skipped unless {args.cache} holds them", file=sys.stderr)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs), mp_context=context, max_tasks_per_child=1) as pool:
        futures = {name: pool.submit(run_model, name, args.cache, args.device, precisions, arch, args.build_only)
                   for name in names}
        rows = []
        for name in names:
            try:
                rows.append(futures[name].result())
            except Exception as error:  # the worker died (out of memory, a crash in native code)
                rows.append({"model": name, "exporter": CORPUS[name].exporter, "status": f"worker died: {error}"})
            print(f"{name}: {rows[-1]['status'][:200]}", file=sys.stderr, flush=True)
            if args.json:   # after every model: a run cut short by a time limit keeps what it finished
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1, default=str)
    if args.markdown:
        where = machine() + (f", {gpu_name()} ({arch})" if args.device == "cuda" and not args.build_only else "")
        print(f"Machine: {where}\n\nCommand: `python benchmarks/corpus.py {' '.join(argv or sys.argv[1:])}`\n")
    if args.device == "cpu" and precisions == ["fp32"]:
        print_table(HEADER, table_rows(rows), args.markdown)
    else:
        print_table(*precision_table(rows, precisions), args.markdown)
    return 0


def gpu_name() -> str:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
