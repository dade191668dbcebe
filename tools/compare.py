"""edgert compare MODEL PLAN: run onnxruntime and the plan on the same inputs and report the differences.

Per output: max abs error, normwise relative error, cosine similarity and (for 2-D outputs, classifiers)
top-1 agreement. ``--per-layer`` also exposes every intermediate ONNX value and compares it with the plan
tensor that stands for it (the output of the layer whose ``origin`` ends with the ONNX node that
produced it, else the tensor of the same name), in schedule order, and names the first layer whose error
exceeds ``--threshold``.
"""

from __future__ import annotations

import json

import numpy as np

from edgert.errors import EdgeRTError

HELP = "compare a plan's outputs (and per layer) against onnxruntime"
DEFAULT_THRESHOLD = 1e-2


def add_arguments(parser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("plan", help="plan file built from it")
    parser.add_argument("--inputs", metavar="IN.npz", help="inputs (default: random normal, fixed seed)")
    parser.add_argument("--per-layer", action="store_true", help="compare every intermediate tensor")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"normwise relative error that counts as diverging (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def metrics(out: np.ndarray, ref: np.ndarray) -> dict:
    out, ref = np.asarray(out, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    diff = out - ref
    ref_norm, out_norm = np.linalg.norm(ref), np.linalg.norm(out)
    result = {"max_abs": float(np.max(np.abs(diff), initial=0.0)),
              "normwise_rel": float(np.linalg.norm(diff) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(diff)),
              "cosine": float(out @ ref / (out_norm * ref_norm)) if out_norm > 0 and ref_norm > 0 else 1.0}
    if not np.all(np.isfinite(out)):
        result["normwise_rel"] = float("inf")
    return result


def top1_agreement(out: np.ndarray, ref: np.ndarray) -> float | None:
    if out.ndim != 2 or out.shape[1] < 2:
        return None
    return float(np.mean(out.argmax(1) == ref.argmax(1)))


def compare(model_path, plan, inputs: dict | None = None, per_layer: bool = False,
            threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The comparison report (see the module doc) as a dict."""
    import onnx
    from edgert.plan import Plan, load_plan_bytes, read_plan

    document = plan.document if isinstance(plan, Plan) else read_plan(load_plan_bytes(plan))
    model = onnx.load(model_path) if isinstance(model_path, str) else model_path
    inputs = inputs or _random_inputs(document)
    plan_tensors = _run_plan(document, inputs)
    reference = _run_onnxruntime(model, inputs, per_layer)
    report = {"outputs": {}, "threshold": threshold}
    for binding in document["bindings"]["outputs"]:
        out, ref = plan_tensors[binding["tensor"]], reference[binding["name"]]
        entry = metrics(out, ref)
        entry["top1_agreement"] = top1_agreement(out, ref)
        report["outputs"][binding["name"]] = entry
    if per_layer:
        report["layers"], report["first_diverging"] = _per_layer(model, document, plan_tensors, reference, threshold)
    return report


def _random_inputs(document) -> dict:
    rng = np.random.default_rng(0)
    return {b["name"]: rng.standard_normal(b["shape"]).astype(b["dtype"]) for b in document["bindings"]["inputs"]}


def _run_plan(document, inputs) -> dict[int, np.ndarray]:
    """Every tensor of the plan after its layer ran (copied before the arena reuses its memory)."""
    import edgert
    from edgert.kernels.cpu.int8 import kernel_for

    engine = edgert.load(_plan_of(document))
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


def _plan_of(document):
    from edgert.plan import Plan
    return Plan(document)


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
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
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
        entry = {"layer": layer["name"], "kind": layer["kind"], "onnx_value": match,
                 "precision": layer.get("precision"), **metrics(plan_tensors[tensor], reference[match])}
        layers.append(entry)
        if first is None and entry["normwise_rel"] > threshold:
            first = entry
    return layers, first


def main(args) -> int:
    inputs = None
    if args.inputs:
        try:
            with np.load(args.inputs) as data:
                inputs = {k: data[k] for k in data.files}
        except OSError as e:
            raise EdgeRTError(f"cannot read inputs {args.inputs!r}: {e}") from e
    report = compare(args.model, args.plan, inputs, args.per_layer, args.threshold)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, entry in report["outputs"].items():
        top1 = "" if entry["top1_agreement"] is None else f"  top-1 agreement {entry['top1_agreement']:.3f}"
        print(f"output {name}: max abs {entry['max_abs']:.3g}  normwise rel {entry['normwise_rel']:.3g}  "
              f"cosine {entry['cosine']:.6f}{top1}")
    if args.per_layer:
        for entry in report["layers"]:
            print(f"  {entry['layer']:<32} {entry['kind']:<16} {entry['precision'] or '':<5} "
                  f"rel {entry['normwise_rel']:.3g}")
        first = report["first_diverging"]
        print(f"first layer above {args.threshold:g}: " +
              (f"{first['layer']} ({first['kind']}, ONNX value {first['onnx_value']}, rel "
               f"{first['normwise_rel']:.3g})" if first else "none"))
    return 0
