"""edgert compare MODEL PLAN: run onnxruntime and the plan on the same inputs, report the differences, gate on them.

Per output: max abs error, normwise relative error, cosine similarity and (for 2-D outputs, classifiers)
top-1 agreement, and the gate (Polygraphy-style): each element's error |out - ref| against its tolerance
atol + rtol * |ref|; the ``--check-error-stat`` (max, mean or median) of error / tolerance over the
output must be <= 1 (with ``max``: every element within tolerance). A NaN or Inf on either side fails.
Exit status 0 when every output passes, 1 when one does not, 2 on a user error.

``--per-layer`` also exposes every intermediate ONNX value and compares it with the plan tensor that
stands for it (the output of the layer whose ``origin`` ends with the ONNX node that produced it, else
the tensor of the same name), in schedule order, and names the first layer whose normwise error
exceeds ``--threshold``.

``--save-outputs FILE.npz`` keeps the inputs (``inputs/NAME``), the reference outputs
(``reference/NAME``) and the plan's (``plan/NAME``); ``--load-outputs FILE.npz`` compares against the
saved inputs and reference instead of running onnxruntime (e.g. on a device without it).
"""

from __future__ import annotations

import json
import os

import numpy as np

from edgert.tools.args import UsageError, check_output_file, require_modules

HELP = "compare a plan's outputs (and per layer) against onnxruntime; exit 1 when they do not match"
DEFAULT_THRESHOLD = 1e-2
DEFAULT_ATOL, DEFAULT_RTOL = 1e-5, 1e-5
ERROR_STATS = {"max": np.max, "mean": np.mean, "median": np.median}


def add_arguments(parser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("plan", help="plan file built from it")
    parser.add_argument("--inputs", metavar="IN.npz", help="inputs (default: random, see --seed and --val-range)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--val-range", action="append", default=[], metavar="[NAME:][lo,hi]",
                        help="random inputs uniform in [lo,hi], for input NAME or all (repeatable; default: "
                             "standard normal)")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL:g})")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL:g})")
    parser.add_argument("--check-error-stat", default="max", choices=tuple(ERROR_STATS),
                        help="statistic of error/tolerance over an output that must be <= 1 (default max: "
                             "every element)")
    parser.add_argument("--save-outputs", metavar="FILE.npz", help="save inputs, reference and plan outputs")
    parser.add_argument("--load-outputs", metavar="FILE.npz",
                        help="compare against inputs and reference outputs saved by --save-outputs")
    parser.add_argument("--per-layer", action="store_true", help="compare every intermediate tensor")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"per-layer normwise relative error that counts as diverging (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def metrics(out: np.ndarray, ref: np.ndarray) -> dict:
    """max abs, normwise relative error and cosine; any NaN/Inf makes them inf / nan (never a perfect score)."""
    out, ref = np.asarray(out, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    finite = bool(np.all(np.isfinite(out)) and np.all(np.isfinite(ref)))
    if not finite:
        return {"max_abs": float("inf"), "normwise_rel": float("inf"), "cosine": float("nan"), "finite": False}
    diff = out - ref
    ref_norm, out_norm = np.linalg.norm(ref), np.linalg.norm(out)
    if out_norm > 0 and ref_norm > 0:
        cosine = float(out @ ref / (out_norm * ref_norm))
    else:
        cosine = 1.0 if out_norm == ref_norm else 0.0   # both all zeros agree; one all zeros does not
    return {"max_abs": float(np.max(np.abs(diff), initial=0.0)),
            "normwise_rel": float(np.linalg.norm(diff) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(diff)),
            "cosine": cosine, "finite": True}


def gate(out: np.ndarray, ref: np.ndarray, atol: float, rtol: float, stat: str = "max") -> dict:
    """The tolerance check of one output: error / (atol + rtol*|ref|) elementwise, its ``stat`` must be <= 1."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        return {"passed": False, "error_stat": float("inf"), "mismatched": int(max(out.size, ref.size)),
                "reason": f"shape {out.shape} vs reference {ref.shape}"}
    nonfinite = int(np.count_nonzero(~np.isfinite(out)) + np.count_nonzero(~np.isfinite(ref)))
    if nonfinite:
        return {"passed": False, "error_stat": float("inf"), "mismatched": nonfinite, "reason": "NaN/Inf values"}
    error, tolerance = np.abs(out - ref), atol + rtol * np.abs(ref)
    ratio = np.divide(error, tolerance, out=np.where(error > 0, np.inf, 0.0), where=tolerance > 0)
    value = float(ERROR_STATS[stat](ratio)) if ratio.size else 0.0
    return {"passed": value <= 1.0, "error_stat": value, "mismatched": int(np.count_nonzero(ratio > 1)),
            "reason": None if value <= 1.0 else f"{stat} error/tolerance {value:.3g} > 1"}


def top1_agreement(out: np.ndarray, ref: np.ndarray) -> float | None:
    if out.ndim != 2 or out.shape[1] < 2:
        return None
    return float(np.mean(out.argmax(1) == ref.argmax(1)))


def parse_val_ranges(specs: list[str]) -> dict:
    """{input name or None (all inputs): (lo, hi)} from NAME:[lo,hi], NAME:lo,hi, [lo,hi] or lo,hi."""
    ranges = {}
    for spec in specs:
        name, _, bounds = spec.rpartition(":") if ":" in spec else ("", "", spec)
        try:
            lo, hi = (float(part) for part in bounds.strip().strip("[]").split(","))
        except ValueError:
            raise UsageError(f"--val-range {spec!r} is malformed; expected NAME:[lo,hi] or lo,hi such as "
                             "input:[0,1]") from None
        if not lo <= hi:
            raise UsageError(f"--val-range {spec!r}: lo {lo:g} is above hi {hi:g}")
        ranges[name or None] = (lo, hi)
    return ranges


def compare(model_path, plan, inputs: dict | None = None, per_layer: bool = False,
            threshold: float = DEFAULT_THRESHOLD, *, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
            error_stat: str = "max", seed: int = 0, val_ranges: dict | None = None,
            reference: dict | None = None) -> dict:
    """The comparison report (see the module doc) as a dict; ``reference``: outputs to compare against
    instead of onnxruntime's."""
    import edgert
    from edgert.plan import Plan, load_plan_bytes, read_plan
    from edgert.runtime.io import check_inputs
    from edgert.tools.run import random_inputs

    document = plan.document if isinstance(plan, Plan) else read_plan(load_plan_bytes(plan))
    engine = edgert.load(Plan(document))
    if inputs is None:
        inputs = random_inputs(engine, seed, val_ranges)
    check_inputs(engine.inputs, inputs)   # the same checks and messages as `edgert run`
    plan_tensors = _run_plan(engine, document, inputs)
    if reference is None or per_layer:
        import onnx
        model = onnx.load(model_path) if isinstance(model_path, (str, os.PathLike)) else model_path
        values = {b.name: bound_values(inputs[b.name], b.scale) for b in engine.inputs}   # what the model reads
        reference = {**_run_onnxruntime(model, values, per_layer), **(reference or {})}
    report = {"outputs": {}, "threshold": threshold, "atol": atol, "rtol": rtol, "check_error_stat": error_stat,
              "inputs": inputs}
    for binding in document["bindings"]["outputs"]:
        out = bound_values(plan_tensors[binding["tensor"]], document["tensors"][binding["tensor"]].get("scale"))
        if binding["name"] not in reference:
            raise UsageError(f"the reference has no output {binding['name']!r} (outputs: "
                             f"{', '.join(sorted(reference)) or 'none'}); was it saved from another model?")
        ref = reference[binding["name"]]
        entry = {**metrics(out, ref), **gate(out, ref, atol, rtol, error_stat)}
        entry["top1_agreement"] = top1_agreement(out, ref) if entry["finite"] else None
        entry["plan"], entry["reference"] = out, ref
        report["outputs"][binding["name"]] = entry
    report["passed"] = all(entry["passed"] for entry in report["outputs"].values())
    if per_layer:
        report["layers"], report["first_diverging"] = _per_layer(model, document, plan_tensors, reference, threshold)
    return report


def bound_values(array: np.ndarray, scale) -> np.ndarray:
    """The float32 values a binding holds: int8 codes times their scale, float16 widened (--input-format /
    --output-format), anything else as it is."""
    if scale is not None:
        return (array.astype(np.float64) * scale).astype(np.float32)
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _run_plan(engine, document, inputs) -> dict[int, np.ndarray]:
    """Every tensor of the plan after its layer ran (copied before the arena reuses its memory)."""
    from edgert.kernels.cpu.int8 import kernel_for

    context = engine.create_execution_context()
    buffers = context.buffers
    for binding in engine.inputs:
        buffers[binding.tensor] = np.ascontiguousarray(inputs[binding.name], dtype=binding.dtype)
    seen = {b.tensor: buffers[b.tensor] for b in engine.inputs}
    with np.errstate(all="ignore"):
        for step, layer in zip(engine.steps, document["layers"]):
            kernel = kernel_for(step.kind, step.attrs, layer.get("device", "cpu"))
            outs = [buffers[i] for i in step.outputs]
            kernel(step.attrs, [buffers[i] if i >= 0 else None for i in step.inputs], outs)
            for tensor, out in zip(step.outputs, outs):
                seen[tensor] = np.array(out, copy=True)
    return seen


def _run_onnxruntime(model, inputs, per_layer: bool) -> dict:
    import onnx
    import onnxruntime

    model = onnx.ModelProto.FromString(model.SerializeToString())
    if per_layer:
        known = {o.name for o in model.graph.output}
        for node in model.graph.node:
            for name in node.output:
                if name and name not in known:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))
                    known.add(name)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3   # errors only: its warnings about unused initializers are noise here
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    return dict(zip(names, session.run(None, feed)))


def _per_layer(model, document, plan_tensors, reference, threshold):
    outputs_of = {node.name: list(node.output) for node in model.graph.node}
    layers, first = [], None
    for layer in document["layers"]:
        tensor = layer["outputs"][0]
        info = document["tensors"][tensor]
        # a fused layer's result is its last absorbed node's output (its tensor may keep the first one's name)
        candidates = [n for origin in reversed(layer.get("origin") or []) for n in outputs_of.get(origin, [])]
        candidates.append(info["name"])
        match = next((n for n in candidates if n in reference and tuple(reference[n].shape) == tuple(info["shape"])
                      and tensor in plan_tensors), None)
        if match is None:
            continue
        value = plan_tensors[tensor]
        if "scale" in info:   # int8 codes (edgert.int8_codes): compare the values they stand for
            value = (value.astype(np.float64) * info["scale"]).astype(np.float32)
        entry = {"layer": layer["name"], "kind": layer["kind"], "onnx_value": match,
                 "precision": layer.get("precision"), **metrics(value, reference[match])}
        layers.append(entry)
        if first is None and entry["normwise_rel"] > threshold:
            first = entry
    return layers, first


def _load_saved(path: str) -> tuple[dict, dict]:
    """(inputs, reference outputs) from a file of --save-outputs."""
    from edgert.tools.run import read_inputs

    arrays = read_inputs(path)
    inputs = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("inputs/")}
    reference = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("reference/")}
    if not reference:
        raise UsageError(f"--load-outputs {path!r} holds no reference outputs (reference/NAME arrays); write it "
                         "with edgert compare --save-outputs")
    return inputs, reference


def _save(path: str, report: dict) -> None:
    arrays = {f"inputs/{name}": array for name, array in report["inputs"].items()}
    for name, entry in report["outputs"].items():
        arrays[f"reference/{name}"], arrays[f"plan/{name}"] = entry["reference"], entry["plan"]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _check_args(args) -> None:
    if args.atol < 0 or args.rtol < 0 or not np.isfinite(args.atol) or not np.isfinite(args.rtol):
        raise UsageError(f"--atol {args.atol:g} / --rtol {args.rtol:g}: tolerances must be finite and >= 0")
    if args.load_outputs and args.inputs:
        raise UsageError("give --inputs or --load-outputs, not both (--load-outputs brings its own inputs)")
    if args.save_outputs:
        check_output_file(args.save_outputs, "--save-outputs")
    if not args.load_outputs or args.per_layer:
        require_modules("compare", "onnx", "onnxruntime")


def main(args) -> int:
    from edgert.tools.run import read_inputs

    _check_args(args)
    ranges = parse_val_ranges(args.val_range)
    inputs, reference = _load_saved(args.load_outputs) if args.load_outputs else (None, None)
    if args.inputs:
        inputs = read_inputs(args.inputs)
    report = compare(args.model, args.plan, inputs, args.per_layer, args.threshold, atol=args.atol, rtol=args.rtol,
                     error_stat=args.check_error_stat, seed=args.seed, val_ranges=ranges, reference=reference)
    if args.save_outputs:
        _save(args.save_outputs, report)
    if args.json:
        print(json.dumps(_plain(report), indent=1))
    else:
        _print_report(report, args)
    return 0 if report["passed"] else 1


def _plain(report: dict) -> dict:
    """The report without its arrays, for JSON (NaN and Inf written as JSON's NaN / Infinity)."""
    outputs = {name: {k: v for k, v in entry.items() if k not in ("plan", "reference")}
               for name, entry in report["outputs"].items()}
    return {**{k: v for k, v in report.items() if k != "inputs"}, "outputs": outputs}


def _print_report(report: dict, args) -> None:
    for name, entry in report["outputs"].items():
        top1 = "" if entry["top1_agreement"] is None else f"  top-1 agreement {entry['top1_agreement']:.3f}"
        verdict = "PASS" if entry["passed"] else f"FAIL ({entry['reason']}; {entry['mismatched']} elements)"
        print(f"output {name}: max abs {entry['max_abs']:.3g}  normwise rel {entry['normwise_rel']:.3g}  "
              f"cosine {entry['cosine']:.6f}{top1}  {args.check_error_stat} err/tol "
              f"{entry['error_stat']:.3g}  {verdict}")
    if args.per_layer:
        for entry in report["layers"]:
            print(f"  {entry['layer']:<32} {entry['kind']:<16} {entry['precision'] or '':<5} "
                  f"rel {entry['normwise_rel']:.3g}")
        first = report["first_diverging"]
        print(f"first layer above {args.threshold:g}: " +
              (f"{first['layer']} ({first['kind']}, ONNX value {first['onnx_value']}, rel "
               f"{first['normwise_rel']:.3g})" if first else "none"))
    failed = [name for name, entry in report["outputs"].items() if not entry["passed"]]
    tolerance = f"|out-ref| <= {args.atol:g} + {args.rtol:g}*|ref|, {args.check_error_stat} over elements"
    print(f"{'FAILED' if failed else 'PASSED'} ({tolerance})" + (f": {', '.join(failed)}" if failed else ""))
