"""The ``kernels`` section of a plan with optimization profiles (see ``generic`` for the design).

Per profile: the tactics are chosen at its opt shape (the policy: timing cache, autotuning or the cost
model) and pinned; the plan is then lowered at the profile's probe shapes (min, opt, max, the staggered
ones) and a few more random shapes in range, every launch's kernel unit is collected by form, and each
form becomes one generic kernel (or a build error naming the layer), plus one kernel specialized to the
opt shape (every literal constant: what a static plan for that shape would run; the runtime prefers the
kernel with the fewest run-time literals that fits). The section adds to the static one:

    "dynamic": {"forms": {form digest: [{"kernel": name, "literals": [text | None], "types": [C type]}]},
                "tactics": [{layer name: [[bm, bn, splits, loader, bk, nj], ...]} per profile],
                "sm_count": int, "aux_bytes": int}

``launches`` holds no launches (the runtime lowers the plan at the shapes it runs); ``workspace_bytes``,
``counters``, ``aux_bytes`` and ``derived`` cover every shape lowered here, so a context sized by them does
not allocate when shapes change.
"""

from __future__ import annotations

import numpy as np

from edgert.errors import EdgeRTError
from edgert.kernels.cuda.compile import normalize_arch
from edgert.kernels.cuda.generic import PinnedPolicy, generalize, launch_units, lower_at, pinned_tactics
from edgert.kernels.cuda.library import SM_COUNTS, LowerContext
from edgert.kernels.cuda.plan_kernels import compile_context, layer_tactics

FORMAT_DYNAMIC = 2           # the kernels section format: 2 adds "dynamic" (runtimes reading only 1 refuse it)
EXTRA_RANDOM_SHAPES = 3
AUX_ALIGNMENT = 256


def profile_shapes(profile: dict, seed: int) -> list[dict]:
    """The shapes a profile's kernels are lowered at: min, opt, max, staggered, and random ones."""
    from edgert.dynamic import probe_shapes

    shapes = [s for _, _, s in probe_shapes([profile])]
    rng = np.random.default_rng(seed)
    for _ in range(EXTRA_RANDOM_SHAPES):   # the same axis and range of several inputs moves together (a batch)
        drawn: dict = {}
        shapes.append({name: tuple(drawn.setdefault((axis, lo, hi), int(rng.integers(lo, hi + 1)))
                                   for axis, (lo, hi) in enumerate(zip(low, high)))
                       for name, (low, _, high) in profile.items()})
    return shapes + parity_shapes(profile)


def parity_shapes(profile: dict, limit: int = 8) -> list[dict]:
    """Shapes near opt with every combination of odd and even varying dims (a kernel's fast paths depend on
    parities: vector loads of even pixel counts, pixel-pair stores), so that some lowering covers each form."""
    varying = sorted({(axis, lo, hi) for low, _, high in profile.values()
                      for axis, (lo, hi) in enumerate(zip(low, high)) if lo != hi})
    shapes = []
    for combo in range(min(1 << len(varying), limit)):
        chosen = {}
        for bit, (axis, lo, hi) in enumerate(varying):
            opt = next(o[axis] for low, o, high in profile.values() if low[axis] == lo and high[axis] == hi)
            value = opt if opt % 2 == (combo >> bit) & 1 else opt + 1 if opt + 1 <= hi else opt - 1
            chosen[(axis, lo, hi)] = value if lo <= value <= hi else opt
        shapes.append({name: tuple(chosen.get((axis, lo, hi), o)
                                   for axis, (lo, o, hi) in enumerate(zip(low, opt, high)))
                       for name, (low, opt, high) in profile.items()})
    return shapes


def aux_bytes(aux: list) -> int:
    return sum(-(-len(data) // AUX_ALIGNMENT) * AUX_ALIGNMENT for data in aux)


class _Collector:
    """Units by form across every lowering, and the sizes the context must hold."""

    def __init__(self, document: dict):
        self.document = document
        self.forms: dict[tuple, list] = {}
        self.where: dict[tuple, str] = {}
        self.headers: list[str] = []
        self.workspace = self.counters = self.aux = 0
        self.derived: list[dict] = []
        self.at_opt: dict[tuple, object] = {}   # key -> the unit lowered at its profile's opt shape

    def add(self, ctx, launches: list, profile: int, conservative: bool = False, opt: bool = False) -> None:
        layers = self.document["layers"]
        for (index, position), _, unit in launch_units(ctx, launches, layers):
            # one launch of one layer in one profile and lowering mode: units of other layers (or of this layer
            # with another profile's tactic or mode) may share the form with other constants
            key = (profile, conservative, index, position, unit.form)
            self.forms.setdefault(key, []).append(unit)
            if opt:
                self.at_opt.setdefault(key, unit)
            self.where.setdefault(key, f"layer {layers[index]['name']!r} ({layers[index]['kind']})")
        self.headers += [h for h in ctx.headers if h not in self.headers]
        self.workspace = max(self.workspace, ctx.workspace_bytes)
        self.counters = max(self.counters, ctx.counters)
        self.aux = max(self.aux, aux_bytes(ctx.aux))
        self.derived += [d for d in ctx.derived if d not in self.derived]


def compile_profile_kernels(document: dict, arch, *, policy=None, ptx: bool = False, sm_count: int | None = None,
                            emulate: bool = False, jobs: int | None = None) -> dict:
    """The ``kernels`` section entry of a profile plan ``document`` for ``arch``."""
    from edgert.runtime.engine import Engine
    from edgert.runtime.shapes import specialize

    arch = normalize_arch(arch)
    engine = Engine(document)
    arch_digits = int("".join(c for c in arch if c.isdigit()))
    sm_count = sm_count or SM_COUNTS.get(arch_digits, 32)
    collector, pinned_per_profile, opt_lowering = _Collector(document), [], None

    def tensor_shapes(inputs: dict) -> list:
        shapes, _ = specialize(engine, {b.tensor: tuple(inputs[b.name]) for b in engine.inputs})
        return shapes

    for index, profile in enumerate(engine.profiles):
        opt = {name: triple[1] for name, triple in profile.items()}
        ctx, launches, fused = lower_at(document, tensor_shapes(opt), arch, sm_count, policy)
        pinned = pinned_tactics(document, ctx.tactic_policy.decisions)
        pinned_per_profile.append(pinned)
        opt_lowering = opt_lowering or (launches, fused, ctx.tactic_policy)
        collector.add(ctx, launches, index, opt=True)
        # each shape with the opt shape's tactics, then without the parity-dependent fast paths (general loader,
        # K unsplit): that lowering's kernel forms serve any shape whose fast forms were not compiled
        shapes_list = profile_shapes(profile, seed=index)
        for shapes, general in [(s, False) for s in shapes_list] + [(s, True) for s in shapes_list]:
            try:
                ctx, launches, _ = lower_at(document, tensor_shapes(shapes), arch, sm_count,
                                            PinnedPolicy(pinned, general), conservative=general)
            except EdgeRTError as e:
                shown = ", ".join(f"{n}={'x'.join(map(str, s))}" for n, s in shapes.items())
                raise type(e)(f"CUDA kernels at shapes {shown} (profile {index}): {e}") from e
            collector.add(ctx, launches, index, general)
    return _section(document, arch, collector, pinned_per_profile, opt_lowering, sm_count,
                    ptx=ptx, emulate=emulate, jobs=jobs)


def _section(document, arch, collector: _Collector, pinned_per_profile, opt_lowering, sm_count, **compile_options):
    table, module = {}, LowerContext(document, int("".join(c for c in arch if c.isdigit())), sm_count)
    for key, units in collector.forms.items():
        # the generic kernel of the form, and one specialized to the opt shape (every literal a constant, as in a
        # static plan): the runtime takes the kernel with the most constants that fits, so a profile plan runs
        # at its opt shape the kernels a static plan built for that shape would
        variants = [units] + ([[collector.at_opt[key]]] if key in collector.at_opt else [])
        for samples in variants:
            source, entry = generalize(samples, collector.where[key])
            entries = table.setdefault(units[0].form, [])
            if entry not in entries:
                entries.append(entry)
            module.kernels.setdefault(entry["kernel"], source)
    module.headers = list(collector.headers)
    modules, kernel_modules = compile_context(module, arch, **compile_options)
    launches, fused, recorder = opt_lowering
    return {"arch": arch, "format": FORMAT_DYNAMIC, "modules": modules, "kernel_modules": kernel_modules,
            "launches": [[] for _ in document["layers"]], "fused": fused, "aux": [],
            "derived": collector.derived, "workspace_bytes": collector.workspace, "counters": collector.counters,
            "tactics": layer_tactics(document, launches, fused, recorder),
            "dynamic": {"forms": table, "tactics": pinned_per_profile, "sm_count": sm_count,
                        "aux_bytes": 2 * collector.aux}}   # a shape may bind layers of two lowerings


def compile_kernels(document: dict, archs, *, policies: dict | None = None, **options) -> dict:
    """``plan["kernels"]`` of a profile plan for several arches (``plan_kernels.compile_kernels``'s twin)."""
    policies = {normalize_arch(a): p for a, p in (policies or {}).items()}
    return {normalize_arch(a): compile_profile_kernels(document, a, policy=policies.get(normalize_arch(a)), **options)
            for a in archs}


def opt_document(document: dict, profile: int = 0) -> dict:
    """The plan as lowered at a profile's opt shapes (what autotuning times)."""
    from edgert.kernels.cuda.generic import layer_attrs, resolved_document
    from edgert.runtime.engine import Engine
    from edgert.runtime.shapes import specialize

    engine = Engine(document)
    opt = engine.profiles[profile]
    shapes, _ = specialize(engine, {b.tensor: tuple(opt[b.name][1]) for b in engine.inputs})
    return resolved_document(document, shapes, layer_attrs(document, shapes))
