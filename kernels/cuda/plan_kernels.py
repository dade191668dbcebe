"""Build a plan's ``kernels`` section for one GPU arch: lower every layer to CUDA C and launch specs,
fold per-element consumers into convolution/matmul epilogues, compile (NVRTC or nvcc, no GPU
needed) and return plain msgpack-able data:

    {"arch": "sm_90", "format": 1,
     "modules": [{"cubin": bytes, "ptx": str | None, "ptx_isa": str | None, "compiler": str}],
     "kernel_modules": {kernel name: module index},
     "launches": [[launch, ...] for each plan layer],     # launch: kernel, grid, block, smem, params, tactic
     "fused": {consumer layer index (str): producer layer index},
     "aux": [bytes, ...],                                 # tables the kernels read (conv k-offsets, ...)
     "derived": [{"tensor": t, "perm": [...]}, ...],      # constants the loader transposes once
     "workspace_bytes": int,                              # per context scratch (split-K partial sums)
     "counters": int,                                     # per context u32 counters, zeroed once
     "tactics": [str, ...]}                               # per plan layer, what ran it (see layer_tactics)

The builder stores it as ``plan["kernels"][arch]``. Convolutions and matrix products get their tactic
from a policy (``kernels.cuda.tactics``: timing cache, autotuning, cost model); the default is the
cost model for the arch.
"""

from __future__ import annotations

import concurrent.futures
import os
import re

from edgert.errors import PlanError
from edgert.kernels.cuda.compile import compile_source, normalize_arch
from edgert.kernels.cuda.library import LowerContext
from edgert.kernels.cuda.lowering import lower_plan, plan_fusions  # noqa: F401  (re-exported)
from edgert.kernels.cuda.tactics import Recorder

FORMAT = 1
_KERNEL_NAME = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')


def layer_tactics(document: dict, launches: list, fused: dict, recorder: Recorder) -> list[str]:
    """Per layer, what runs it: a chosen tactic with its source (``implicit-gemm-tap mma 64x64 splitk4
    [timing-cache]``), the launches' own tactics for single-tactic kinds, or why it has no kernel."""
    layers = document["layers"]
    chosen = {d.layer: f"{d.tactic.name} [{d.source}]" for d in recorder.decisions}
    elided = set((document.get("memory") or {}).get("elided", []))
    names = []
    for index, entries in enumerate(launches):
        if index in chosen:
            names.append(chosen[index])
        elif str(index) in fused:
            names.append(f"fused into {layers[int(fused[str(index)])]['name']}")
        elif index in elided:
            names.append("elided (in place: a view or a concat slice)")
        else:
            names.append(" + ".join(dict.fromkeys(e["tactic"] for e in entries if e["tactic"])) or "none")
    return names


def _split_source(ctx: LowerContext, units: int) -> list[str]:
    """The kernels spread over ``units`` translation units (each with the headers) to compile in parallel."""
    names = list(ctx.kernels)
    if units <= 1 or len(names) < 2 * units:
        return [ctx.source()]
    prefix = ctx.prefix()
    return [prefix + "\n" + "\n".join(ctx.kernels[name] for name in names[i::units]) for i in range(units)]


def compile_context(ctx: LowerContext, arch: str, *, ptx: bool = False, emulate: bool = False,
                    jobs: int | None = None) -> tuple[list, dict]:
    """(modules, {kernel name: module index}) for every kernel of ``ctx``, compiled in parallel units."""
    if emulate:
        module = {"cubin": b"", "ptx": None, "ptx_isa": None, "compiler": "emulator", "emu_source": ctx.source()}
        return [module], {name: 0 for name in ctx.kernels}
    sources = _split_source(ctx, jobs or min(8, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(sources)) as pool:
        results = list(pool.map(lambda src: compile_source(src, arch, ptx=ptx), sources))
    modules, kernel_modules = [], {}
    for index, (source, result) in enumerate(zip(sources, results)):
        modules.append({"cubin": result.cubin, "ptx": result.ptx, "ptx_isa": result.ptx_isa,
                        "compiler": result.compiler})
        for name in _KERNEL_NAME.findall(source):
            kernel_modules[name] = index
    return modules, kernel_modules


def compile_for_plan(document: dict, arch, *, ptx: bool = False, sm_count: int | None = None,
                     emulate: bool = False, fuse: bool = True, jobs: int | None = None, policy=None) -> dict:
    """The ``kernels`` section entry of ``document`` for ``arch`` (see the module docstring)."""
    arch = normalize_arch(arch)
    cpu_only = (document.get("memory") or {}).get("cpu_only", [])
    if cpu_only:
        names = ", ".join(document["layers"][i]["name"] for i in cpu_only[:4]) + (" ..." if len(cpu_only) > 4 else "")
        raise PlanError(f"this plan's memory was planned for the CPU runtime: {names} may write over their input, "
                          "which parallel CUDA kernels cannot; build with gpu_kernels=True (or cpu_only_aliases=False)")
    ctx, launches, fused = lower_plan(document, arch, sm_count=sm_count, fuse=fuse, policy=policy)
    modules, kernel_modules = compile_context(ctx, arch, ptx=ptx, emulate=emulate, jobs=jobs)
    return {"arch": arch, "format": FORMAT, "modules": modules, "kernel_modules": kernel_modules,
            "launches": launches, "fused": fused, "aux": list(ctx.aux), "derived": list(ctx.derived),
            "workspace_bytes": ctx.workspace_bytes, "counters": ctx.counters,
            "tactics": layer_tactics(document, launches, fused, ctx.tactic_policy)}


def compile_kernels(document: dict, archs, *, policies: dict | None = None, **options) -> dict:
    """``plan["kernels"]`` for several arches: {"sm_87": {...}, "sm_90": {...}}; ``policies``: a tactic
    policy per arch (others get the cost model)."""
    policies = {normalize_arch(a): p for a, p in (policies or {}).items()}
    return {normalize_arch(a): compile_for_plan(document, a, policy=policies.get(normalize_arch(a)), **options)
            for a in archs}


def tactic_sources(section: dict) -> dict[str, int]:
    """How many layers of a kernels section got their tactic from each source (timing cache, ...)."""
    counts: dict[str, int] = {}
    for name in section.get("tactics", []):
        if name.endswith("]") and "[" in name:
            source = name[name.rindex("[") + 1:-1]
            counts[source] = counts.get(source, 0) + 1
    return dict(sorted(counts.items()))
