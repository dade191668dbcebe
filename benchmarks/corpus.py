"""The real-models corpus: export each model (cached), build it with edgert, run it on the CPU and compare
with onnxruntime; print a table (``--markdown`` for docs/corpus.md).

    python benchmarks/corpus.py [--cache DIR] [--only NAME ...] [--jobs N] [--markdown] [--json FILE]

The exporters (torch, torchvision, timm, transformers, ultralytics, onnxscript, paddle2onnx) are not
edgert dependencies: models whose exporter is not installed are listed as skipped. Each model runs in
a fresh worker process, so a crash or a leak in one does not take the others down.

Pass rule (DESIGN.md's numerics contract, fp32 on the CPU): every float output's normwise relative
error against onnxruntime ≤ 1e-5, integer outputs equal. Where onnxruntime's fp32 kernels are the
coarse side, the model is evaluated again in float64 (onnxruntime on the model with its float tensors
made double) and edgert passes when it is within 1e-5 of that, shown as "ok (float64 ref)".
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
from corpus_models import CORPUS, EXPORTER_PACKAGES  # noqa: E402

DEFAULT_CACHE = "/work/corpus-cache"
TOLERANCE = 1e-5
# ops that other work in progress adds; a model stopping at one of them says so
IN_PROGRESS = {
    "ops-rnn": ("LSTM", "GRU", "RNN", "If", "Loop", "Scan"),
    "ops-misc": ("TopK", "NonMaxSuppression", "NonZero", "ScatterND", "ScatterElements", "Scatter", "CumSum",
                 "Einsum", "GridSample", "RoiAlign", "Trilu"),
}


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
    """One line: the error, or the ops the model needs and which branch in progress adds each."""
    text = f"{type(error).__name__}: {error}".splitlines()[0].split("; supported ops")[0]
    missing = unsupported_ops(model) if model is not None else []
    if not missing:
        return text
    owner = {op: branch for branch, ops in IN_PROGRESS.items() for op in ops}
    needs = ", ".join(f"{op} ({owner[op]}, in progress)" if op in owner else op for op in missing)
    return f"needs {needs}"


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


def passes(errors: dict) -> bool:
    return all(e.get("unequal", 0) == 0 and "shape" not in e and e.get("normwise", 0.0) <= TOLERANCE
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


def run_model(name: str, cache: str) -> dict:
    """Export (cached), build, run and compare one model; the row for the table."""
    spec = CORPUS[name]
    row = {"model": name, "exporter": spec.exporter, "source": spec.source}
    missing = missing_packages(spec.exporter)
    if missing:
        row["status"] = f"skipped: {', '.join(missing)} not installed"
        return row
    stage, model = "export", None
    try:
        path = export_cached(spec, cache)
        stage = "load"
        import onnx
        model = onnx.load(path)
        row["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        row["nodes"] = len(model.graph.node)
        feeds = spec.sample(np.random.default_rng(0))
        stage = "build"
        import edgert
        start = time.perf_counter()
        plan = edgert.build(model, shapes={k: v.shape for k, v in feeds.items()})
        row["build_s"] = round(time.perf_counter() - start, 2)
        row["layers"] = len(plan.layers)
        stage = "run"
        outputs = edgert.load(plan).create_execution_context().execute(feeds)
        stage = "onnxruntime"
        errors = compare_outputs(outputs, onnxruntime_outputs(model.SerializeToString(), feeds))
        row["errors"] = errors
        if passes(errors):
            row["status"] = "ok"
            return row
        stage = "float64 reference"
        errors64 = compare_outputs(outputs, float64_outputs(model, feeds))
        row["errors_float64"] = errors64
        row["status"] = "ok (float64 ref)" if passes(errors64) else "mismatch"
    except Exception as error:  # keep going: the table says where each model stopped
        row["status"] = f"{stage}: {explain(error, model)}"
        row["traceback"] = traceback.format_exc(limit=-4)
    return row


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


def print_table(rows: list[dict], markdown: bool) -> None:
    body = table_rows(rows)
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for cells in body:
            print("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return
    widths = [max(len(r[i]) for r in body + [HEADER]) for i in range(len(HEADER) - 1)]
    for cells in [HEADER] + body:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1][:160])


def machine() -> str:
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}), "
            f"commit {commit.stdout.strip() or '?'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=DEFAULT_CACHE, help=f"exported models (default {DEFAULT_CACHE})")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these models only")
    parser.add_argument("--jobs", type=int, default=1, help="models run at once, one process each (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (docs/corpus.md)")
    parser.add_argument("--json", metavar="FILE", help="also write every row (errors per output) as JSON")
    parser.add_argument("--list", action="store_true", help="list the models and their exporters")
    args = parser.parse_args(argv)
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
    for exporter in sorted({CORPUS[n].exporter for n in names}):
        if missing_packages(exporter):
            print(f"exporter {exporter}: {', '.join(missing_packages(exporter))} not installed; its models are skipped",
                  file=sys.stderr)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs), mp_context=context, max_tasks_per_child=1) as pool:
        futures = {name: pool.submit(run_model, name, args.cache) for name in names}
        rows = []
        for name in names:
            try:
                rows.append(futures[name].result())
            except Exception as error:  # the worker died (out of memory, a crash in native code)
                rows.append({"model": name, "exporter": CORPUS[name].exporter, "status": f"worker died: {error}"})
            print(f"{name}: {rows[-1]['status'][:200]}", file=sys.stderr, flush=True)
    if args.markdown:
        print(f"Machine: {machine()}\n\nCommand: `python benchmarks/corpus.py {' '.join(argv or sys.argv[1:])}`\n")
    print_table(rows, args.markdown)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
