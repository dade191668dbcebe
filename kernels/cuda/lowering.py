"""Lowering a whole plan to kernel sources and launch specs (no compiler involved): shared by the builder
(``plan_kernels``) and, for plans with optimization profiles, by the CUDA runtime, which lowers the plan again
at each new set of input shapes to get that shape's launches (``edgert.runtime.cuda_dynamic``). Pure Python
over the plan document: never imports onnx, the builder or a CUDA compiler.
"""

from __future__ import annotations

import re

from edgert.errors import PlanError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda.library import LowerContext, layer_program, lower_layer
from edgert.kernels.cuda.tactics import CostModel, GpuRates, Recorder

_PRODUCERS = {LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY}
_CONSUMERS = {LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.UNARY, LayerKind.SCALE,
              LayerKind.PARAMETRIC_RELU, LayerKind.POINTWISE}


def plan_fusions(ctx: LowerContext, document: dict) -> dict[int, dict]:
    """producer layer -> the per-element consumer it can finish in its epilogue.

    Legal when the consumer runs right after the producer, is the only reader of the producer's
    output (which is no graph output), keeps its shape and dtype, and its output bytes do not
    overlap the producer's inputs (the fused kernel writes them while still reading those).
    """
    layers = document["layers"]
    elided = set((document.get("memory") or {}).get("elided", []))
    uses: dict[int, int] = {}
    for layer in layers:
        for tensor in layer["inputs"]:
            uses[tensor] = uses.get(tensor, 0) + 1
    graph_outputs = {b["tensor"] for b in document["bindings"]["outputs"]}
    fusions = {}
    for index in range(len(layers) - 1):
        producer, consumer = layers[index], layers[index + 1]
        if index in elided or index + 1 in elided or LayerKind(producer["kind"]) not in _PRODUCERS:
            continue
        if LayerKind(consumer["kind"]) not in _CONSUMERS or len(consumer["outputs"]) != 1:
            continue
        if (consumer.get("attrs") or {}).get("int8") and not (producer.get("attrs") or {}).get("int8"):
            continue   # only the int8 lowering quantizes and saturates a folded int8 consumer
        source, output = producer["outputs"][0], consumer["outputs"][0]
        if source in graph_outputs or uses.get(source) != consumer["inputs"].count(source):
            continue
        if ctx.shape(output) != ctx.shape(source) or ctx.dtype(output) != ctx.dtype(source):
            continue
        if any(t >= 0 and ctx.overlaps(t, output) for t in producer["inputs"]):
            continue
        fusions[index] = {"consumer": index + 1, "program": layer_program(consumer),
                          "inputs": list(consumer["inputs"]), "source": source, "output": output}
    return fusions


def lower_plan(document: dict, arch, *, sm_count: int | None = None, fuse: bool = True, policy=None,
               conservative: bool = False):
    """(context with kernel sources, launches per layer, fused map) for ``arch``; ``policy`` picks the
    tactics (default: the cost model), and ``ctx.tactic_policy.decisions`` records each choice; ``conservative``
    turns off the fast paths that depend on a shape's parity (see ``LowerContext.conservative``)."""
    cpu_only = (document.get("memory") or {}).get("cpu_only", [])
    if cpu_only:   # parallel CUDA threads would read input another thread already overwrote
        names = ", ".join(document["layers"][i]["name"] for i in cpu_only[:4]) + (" ..." if len(cpu_only) > 4 else "")
        raise PlanError(f"this plan's memory was planned for the CPU runtime: {names} may write over their input, "
                        "which parallel CUDA kernels cannot; build with gpu_kernels=True (or cpu_only_aliases=False)")
    ctx = LowerContext(document, arch_number(arch), sm_count)
    ctx.conservative = conservative
    recorder = ctx.tactic_policy = Recorder(policy or CostModel(GpuRates.for_arch(ctx.arch, ctx.sm_count)))
    fusions = plan_fusions(ctx, document) if fuse else {}
    consumers = {f["consumer"]: producer for producer, f in fusions.items()}
    elided = set((document.get("memory") or {}).get("elided", []))
    launches = []
    for index, layer in enumerate(document["layers"]):
        if index in elided or index in consumers:
            launches.append([])
            continue
        recorder.layer = index
        launches.append([launch.to_plain() for launch in lower_layer(ctx, layer, fusions.get(index))])
    return ctx, launches, {str(c): p for c, p in consumers.items()}


def arch_number(arch) -> int:
    """90 for "sm_90", "sm_90a", "compute_90" or 90 (the compiler module's normalize_arch does the checking)."""
    match = re.search(r"(\d+)", str(arch))
    if match is None:
        raise PlanError(f"unknown GPU arch {arch!r}")
    return int(match.group(1))
