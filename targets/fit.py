"""Fitting the timing model's constants to NVIDIA's published measurements (``targets/measurements.toml``).

The fitted constants are the ones a datasheet cannot give: how much of the tensor-core peak a GPU
architecture sustains (``gpu_mac_efficiency`` per architecture), the same for each DLA version
(``dla_mac_efficiency``), the per-layer and per-inference GPU costs, the DLA submission cost and the share
of DRAM bandwidth engines get together. Everything else (peak rates, clocks, bandwidths, channel
alignment) stays as the profiles and ``timing.DEFAULTS`` say.

Predictions are the same ones ``edgert partition --throughput`` makes (``partitioner.throughput``):
single-stream / multi-stream latency = one GPU inference at the row's batch (1 / 8); offline and DLA-only
throughput = the listed engines working at once (a row with ``sparsity = "2:4"`` runs sparse DLA weights).
``build_workloads(..., settings)`` switches non-fitted model features off for an ablation. For speed the
per-layer times are computed once with unit efficiencies and rescaled per trial (``Workload``); a test
checks that this equals the full path.

    measurements = [m for m in load_measurements() if m.fit]
    workloads = build_workloads(measurements, graphs={"resnet50": graph})
    result = fit(measurements, workloads)                       # -> FitResult(constants, ...)
    held_out = leave_one_out(measurements, workloads)           # -> [(measurement, prediction)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgert.errors import EdgeRTError
from edgert.targets.profiles import TargetProfile, load_profile

MEASUREMENTS_PATH = Path(__file__).resolve().parent / "measurements.toml"
METRICS = ("offline_ips", "throughput_ips", "latency_p90_ms", "latency_p99_ms")
KINDS = ("measurement", "target")
SPARSITIES = ("dense", "2:4")


class MeasurementError(EdgeRTError):
    """The measurements data file is malformed."""


@dataclass(frozen=True)
class Measurement:
    id: str
    device: str
    model: str
    precision: str
    engines: tuple[str, ...]        # ("gpu", "dla:0", "dla:1")
    batch: dict                     # {"gpu": 256, "dla": 2}
    metric: str
    value: float
    kind: str
    fit: bool
    source: str
    measured: str
    note: str = ""
    sparsity: str = "dense"         # "dense" | "2:4" (structured-sparse weights on the DLA engines)

    @property
    def workload_key(self) -> tuple:
        """The key of this measurement's ``Workload``: (device, model, sparsity)."""
        return (self.device, self.model, self.sparsity)


@dataclass(frozen=True)
class Param:
    """A fitted constant: ``constant`` of the timing model for one scope ("shared", "gpu:Ampere", "dla:v2")."""
    constant: str
    scope: str
    start: float

    @property
    def key(self) -> str:
        return f"{self.constant}@{self.scope}"

    def encode(self, value: float) -> float:  # efficiencies live in (0, 1): logit; costs are positive: log
        return math.log(value / (1 - value)) if self.constant.endswith("efficiency") else math.log(value)

    def decode(self, z: float) -> float:
        return 1 / (1 + math.exp(-z)) if self.constant.endswith("efficiency") else math.exp(z)


@dataclass
class FitResult:
    params: list[Param]
    values: dict                    # Param.key -> fitted value
    residuals: dict = field(default_factory=dict)   # measurement id -> prediction / measurement

    def constants_for(self, profile: TargetProfile) -> dict:
        return constants_for(self.params, self.values, profile)


def load_measurements(path: Path | str = MEASUREMENTS_PATH) -> list[Measurement]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(path, "rb") as f:
        rows = tomllib.load(f).get("row", [])
    result = []
    for row in rows:
        try:
            engines = tuple("gpu" if e == "gpu" else f"dla:{e[3:]}" for e in row["engines"].split("+"))
            m = Measurement(row["id"], row["device"], row["model"], row["precision"], engines, dict(row["batch"]),
                            row["metric"], float(row["value"]), row["kind"], bool(row["fit"]), row["source"],
                            row["measured"], row.get("note", ""), row.get("sparsity", "dense"))
        except (KeyError, TypeError, ValueError) as e:
            raise MeasurementError(f"{path}: row {row.get('id', '?')!r} is malformed ({type(e).__name__}: {e}); "
                                   "every row needs id, device, model, precision, engines, batch, metric, value, "
                                   "kind, fit, source, measured") from e
        if m.metric not in METRICS or m.kind not in KINDS or (m.fit and m.kind != "measurement"):
            raise MeasurementError(f"{path}: row {m.id!r}: metric must be one of {METRICS}, kind one of {KINDS}, "
                                   f"and only measurements may be fitted (found metric {m.metric!r}, kind {m.kind!r})")
        if m.sparsity not in SPARSITIES or (m.sparsity != "dense" and "gpu" in m.engines):
            raise MeasurementError(f"{path}: row {m.id!r}: sparsity must be one of {SPARSITIES}, and sparse rows are "
                                   f"modelled on DLA engines only (found {m.sparsity!r} with engines {m.engines})")
        result.append(m)
    return result


# The DLA constants fitted per DLA version, and those shared by every device with a DLA. The three DLA-only
# measurements (ResNet-50 at 224x224, ResNet-34 at 1280x768, SSD-ResNet-34 at 1200x1200) separate
# compute-bound from memory-bound and many-small-layer networks; with one of them the MAC efficiency
# alone was fitted and the DLA-only held-out error was 1.40x (docs/benchmarks.md).
DLA_VERSION_CONSTANTS = ("dla_mac_efficiency", "dla_memory_efficiency", "dla_layer_overhead_us")
DLA_SHARED_CONSTANTS = ("dla_submit_us", "shared_memory_efficiency")


# -- parameters ----------------------------------------------------------------------------------------------
def default_params(measurements: list[Measurement]) -> list[Param]:
    """One efficiency per GPU architecture, the DLA_VERSION_CONSTANTS per DLA version the measurements cover,
    plus the shared costs."""
    from edgert.targets.timing import DEFAULTS
    profiles = [load_profile(m.device) for m in measurements]
    archs = sorted({p.gpu.architecture for p in profiles if p.gpu is not None})
    versions = sorted({p.dla.version for p in profiles if p.dla is not None and _uses_dla(measurements, p.name)})
    params = [Param("gpu_mac_efficiency", f"gpu:{arch}", DEFAULTS["gpu_mac_efficiency"]) for arch in archs]
    params += [Param(name, f"dla:v{v}", DEFAULTS[name]) for v in versions for name in DLA_VERSION_CONSTANTS]
    params += [Param(name, "shared", DEFAULTS[name])
               for name in ("gpu_layer_overhead_kcycles", "gpu_submit_us", "gpu_memory_efficiency")]
    if versions:
        params += [Param(name, "shared", DEFAULTS[name]) for name in DLA_SHARED_CONSTANTS]
    sparse_versions = sorted({load_profile(m.device).dla.version for m in measurements if m.sparsity != "dense"})
    params += [Param("dla_sparse_mac_speedup", f"dla:v{v}", DEFAULTS["dla_sparse_mac_speedup"])
               for v in sparse_versions]
    return params


def _uses_dla(measurements: list[Measurement], device: str) -> bool:
    return any(m.device == device and any(e.startswith("dla") for e in m.engines) for m in measurements)


def constants_for(params: list[Param], values: dict, profile: TargetProfile) -> dict:
    """The timing-model constants ``values`` give ``profile`` (its GPU architecture's, its DLA version's)."""
    scopes = {"shared"}
    if profile.gpu is not None:
        scopes.add(f"gpu:{profile.gpu.architecture}")
    if profile.dla is not None:
        scopes.add(f"dla:v{profile.dla.version}")
    return {p.constant: values[p.key] for p in params if p.scope in scopes and p.key in values}


# -- fast predictions ----------------------------------------------------------------------------------------
@dataclass
class _Part:
    """Layers of one engine at one batch: compute with unit MAC efficiency, element compute, memory (ms)."""
    mac_ms: np.ndarray
    fixed_ms: np.ndarray
    memory_ms: np.ndarray
    reformat_memory_ms: float = 0.0  # the reformats' copies, at unit memory efficiency
    reformats: int = 0
    sparse: np.ndarray | None = None  # layers whose MACs run at the sparse rate (mac_ms is at the dense rate)

    def ms(self, efficiency: float, per_layer_ms: float, memory_efficiency: float, sparse_speedup: float = 1.0) -> float:
        mac_ms = self.mac_ms if self.sparse is None else np.where(self.sparse, self.mac_ms / sparse_speedup, self.mac_ms)
        busy = np.maximum(mac_ms / efficiency + self.fixed_ms, self.memory_ms / memory_efficiency).sum()
        return float(busy) + (len(self.mac_ms) + self.reformats) * per_layer_ms + \
            self.reformat_memory_ms / memory_efficiency


@dataclass
class Workload:
    """What one network asks of one device's engines, precomputed for fast refits."""
    profile: TargetProfile
    gpu: dict = field(default_factory=dict)        # batch -> (_Part, dram bytes)
    dla: dict = field(default_factory=dict)        # batch -> (dla _Part, gpu _Part, segments, dram bytes)

    def gpu_layer_ms(self, c: dict) -> float:
        return c["gpu_layer_overhead_kcycles"] / self.profile.gpu.max_clock_mhz

    def gpu_batch_ms(self, batch: int, c: dict) -> float:
        part, _ = self.gpu[batch]
        return part.ms(c["gpu_mac_efficiency"], self.gpu_layer_ms(c), c["gpu_memory_efficiency"]) + \
            c["gpu_submit_us"] / 1e3

    def loads(self, engines, batch: dict, c: dict) -> list:
        from edgert.partitioner.throughput import EngineLoad
        loads = []
        for engine in engines:
            if engine == "gpu":
                ms = self.gpu_batch_ms(batch["gpu"], c)
                loads.append(EngineLoad("gpu", batch["gpu"], ms, ms, self.gpu[batch["gpu"]][1], 0))
                continue
            dla, gpu, segments, dram = self.dla[batch["dla"]]
            # fallback layers and reformats (each reformat: a GPU layer plus the cross-engine wait)
            gpu_ms = gpu.ms(c["gpu_mac_efficiency"], self.gpu_layer_ms(c), c["gpu_memory_efficiency"]) + \
                gpu.reformats * c["reformat_sync_us"] / 1e3
            dla_ms = dla.ms(c["dla_mac_efficiency"], c["dla_layer_overhead_us"] / 1e3, c["dla_memory_efficiency"],
                            c["dla_sparse_mac_speedup"]) + segments * c["dla_submit_us"] / 1e3
            loads.append(EngineLoad(engine, batch["dla"], dla_ms + gpu_ms, gpu_ms, dram, len(dla.mac_ms)))
        return loads


def build_workloads(measurements: list[Measurement], graphs: dict, settings: dict | None = None) -> dict:
    """``Measurement.workload_key`` -> Workload for every measurement whose model is in ``graphs`` (name -> IR
    graph). ``settings``: timing-model constants that are not fitted, over the stored ones (an ablation
    switches a model feature off this way, e.g. ``{"dla_conv_pool_fusion": 0}``)."""
    workloads = {}
    for m in measurements:
        if m.model not in graphs:
            continue
        workload = workloads.setdefault(m.workload_key, Workload(load_profile(m.device)))
        graph = graphs[m.model]
        if "gpu" in m.engines and m.batch["gpu"] not in workload.gpu:
            workload.gpu[m.batch["gpu"]] = _gpu_part(graph, workload.profile, m.precision, m.batch["gpu"], settings)
        if any(e.startswith("dla") for e in m.engines) and m.batch["dla"] not in workload.dla:
            workload.dla[m.batch["dla"]] = _dla_parts(graph, workload.profile, m.precision, m.batch["dla"],
                                                      m.sparsity != "dense", settings)
    return workloads


def _unit_model(profile: TargetProfile, settings: dict | None = None):
    from edgert.targets.timing import TimingModel
    return TimingModel(profile, overrides=dict(settings or {}, **{
        "gpu_mac_efficiency": 1.0, "dla_mac_efficiency": 1.0, "gpu_layer_overhead_kcycles": 0.0,
        "dla_layer_overhead_us": 0.0, "reformat_sync_us": 0.0, "gpu_memory_efficiency": 1.0,
        "dla_memory_efficiency": 1.0, "dla_sparse_mac_speedup": 1.0}))


def _part(times) -> _Part:
    mac = np.array([t.compute_ms if t.macs else 0.0 for t in times])
    fixed = np.array([0.0 if t.macs else t.compute_ms for t in times])
    return _Part(mac, fixed, np.array([t.memory_ms for t in times]))


def _gpu_part(graph, profile, precision: str, batch: int, settings: dict | None = None):
    from edgert.targets.layers import from_node
    model = _unit_model(profile, settings)
    times = [model.layer(from_node(node), "gpu", precision, batch) for node in graph.nodes]
    return _part(times), sum(t.bytes for t in times)


def _dla_parts(graph, profile, precision: str, batch: int, sparse: bool = False, settings: dict | None = None):
    from edgert.partitioner.assign import partition
    from edgert.partitioner.segments import crossings, precision_on
    from edgert.targets.layers import from_node, tensor_info
    from edgert.targets.timing import dla_layer_times, is_sparse_convolution
    model = _unit_model(profile, settings)
    saved = {id(node): node.device for node in graph.nodes}
    try:
        report = partition(graph, profile, dla_core=0, gpu_fallback=True, precision=precision,
                           insert_reformats=False)
        on_dla = [n for n in graph.nodes if n.device.startswith("dla")]
        on_gpu = [n for n in graph.nodes if not n.device.startswith("dla")]
        dla_times = dla_layer_times(model, on_dla, precision, batch, sparse, graph.outputs)
        gpu_times = [model.layer(from_node(n), "gpu", precision, batch) for n in on_gpu]
        devices = {id(n): n.device for n in graph.nodes}
        reformats = [model.reformat_ms(tensor_info(v), precision_on(s, precision), precision_on(t, precision), batch)
                     for v, s, t in crossings(graph, devices)]
        gpu = _part(gpu_times)
        gpu.reformat_memory_ms, gpu.reformats = sum(reformats), len(reformats)
        dram = sum(t.bytes for t in dla_times + gpu_times)
        dla = _part(dla_times)
        if sparse:
            dla.sparse = np.array([is_sparse_convolution(from_node(n)) for n in on_dla])
        return dla, gpu, len(report.segments), dram
    finally:
        for node in graph.nodes:
            node.device = saved[id(node)]


def predict(m: Measurement, workload: Workload, constants: dict) -> float:
    """The model's value of ``m``'s metric with ``constants`` (the fitted ones) over the estimates."""
    from edgert.partitioner.throughput import combine
    c = dict(base_constants(workload.profile), **constants)
    if m.metric in ("latency_p90_ms", "latency_p99_ms"):  # one batch on the GPU, issue to completion
        return workload.gpu_batch_ms(m.batch["gpu"], c)
    rates, _, _ = combine(workload.loads(m.engines, m.batch, c),
                          workload.profile.memory_bandwidth_gbs * c["shared_memory_efficiency"])
    return sum(rates.values())


def base_constants(profile: TargetProfile) -> dict:
    """The timing model's constants for ``profile`` with every fittable one at its estimate (not the stored fit),
    so that a held-out measurement never sees a fit that used it."""
    from edgert.targets.timing import DEFAULTS, TimingModel
    return dict(TimingModel(profile).c, **{name: DEFAULTS[name] for name in FITTABLE})


FITTABLE = ("gpu_mac_efficiency", "dla_mac_efficiency", "dla_memory_efficiency", "dla_layer_overhead_us",
            "gpu_layer_overhead_kcycles", "gpu_submit_us", "dla_submit_us",
            "shared_memory_efficiency", "gpu_memory_efficiency", "dla_sparse_mac_speedup")


# -- the fit -------------------------------------------------------------------------------------------------
PRIOR_WEIGHT = 0.002  # pulls each constant weakly toward its estimate (a larger pull worsened held-out errors)


def fit(measurements: list[Measurement], workloads: dict, params: list[Param] | None = None,
        iterations: int = 4000) -> FitResult:
    """Least squares on log(prediction / measurement) over ``measurements`` (those with a workload)."""
    used = [m for m in measurements if m.workload_key in workloads]
    params = params or default_params(used)
    start = np.array([p.encode(p.start) for p in params])
    profiles = {m.device: workloads[m.workload_key].profile for m in used}

    def residuals(z) -> list[float]:
        values = {p.key: p.decode(v) for p, v in zip(params, z)}
        return [math.log(predict(m, workloads[m.workload_key], constants_for(params, values, profiles[m.device]))
                         / m.value) for m in used]

    def objective(z) -> float:
        return sum(r * r for r in residuals(z)) + PRIOR_WEIGHT * float(((z - start) ** 2).sum())

    best = _minimize(objective, start, iterations)
    values = {p.key: p.decode(v) for p, v in zip(params, best)}
    return FitResult(params, values, {m.id: math.exp(r) for m, r in zip(used, residuals(best))})


def leave_one_out(measurements: list[Measurement], workloads: dict, iterations: int = 4000) -> list[tuple]:
    """[(measurement, prediction by a fit without it)] for every measurement with a workload."""
    used = [m for m in measurements if m.workload_key in workloads]
    params = default_params(used)
    result = []
    for held in used:
        rest = [m for m in used if m is not held]
        fitted = fit(rest, workloads, [p for p in params if p in default_params(rest) or p.scope == "shared"],
                     iterations)
        workload = workloads[held.workload_key]
        result.append((held, predict(held, workload, fitted.constants_for(workload.profile))))
    return result


def factor(prediction: float, value: float) -> float:
    """How far apart, as a ratio >= 1."""
    return max(prediction / value, value / prediction)


RESTARTS = 12  # at most this many fresh simplices around the best point so far


def _minimize(f, x0: np.ndarray, iterations: int, tolerance: float = 1e-9) -> np.ndarray:
    """Nelder-Mead restarted from its own result until a restart no longer improves ``f`` by ``tolerance``.

    One Nelder-Mead run stops when its simplex collapses, often short of the minimum in 10-11 dimensions (on
    the previous round's model a single run hid one of its two held-out misses, docs/benchmarks.md); a fresh
    simplex of the full step size around the best point lets it move on."""
    best, value = x0, f(x0)
    for _ in range(RESTARTS + 1):
        candidate = _nelder_mead(f, best, iterations)
        candidate_value = f(candidate)
        improved = value - candidate_value
        if candidate_value < value:
            best, value = candidate, candidate_value
        if improved <= tolerance:
            break
    return best


def _nelder_mead(f, x0: np.ndarray, iterations: int, step: float = 0.3, tolerance: float = 1e-10) -> np.ndarray:
    """Minimize ``f`` from ``x0`` (deterministic; the standard reflection/expansion/contraction/shrink steps)."""
    n = len(x0)
    simplex = np.vstack([x0] + [x0 + step * np.eye(n)[i] for i in range(n)])
    values = np.array([f(x) for x in simplex])
    for _ in range(iterations):
        order = np.argsort(values)
        simplex, values = simplex[order], values[order]
        if values[-1] - values[0] < tolerance:
            break
        centroid = simplex[:-1].mean(axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                simplex[1:] = simplex[0] + 0.5 * (simplex[1:] - simplex[0])
                values[1:] = [f(x) for x in simplex[1:]]
    return simplex[np.argmin(values)]
