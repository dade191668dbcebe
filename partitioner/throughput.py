"""Throughput of engines running at once: the GPU and each DLA core working on different requests.

This is MLPerf offline's setup on Jetson: one copy of the network per engine, each engine fed its own
batches. Every engine's time per batch comes from the timing model (``engine_loads``); ``combine`` then
shares what the engines share:

- the GPU: a DLA engine's fallback layers and its Reformat layers run on the GPU, and take GPU time
  away from the GPU's own copy of the network;
- DRAM: together the engines move at most ``shared_memory_efficiency`` x the memory bandwidth; when
  their combined demand exceeds it, every engine slows down by the same factor.

    report = throughput(graph, "jetson-agx-orin", engines=["gpu", "dla:0", "dla:1"], precision="int8")
    report.total_ips, report.format()
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgert.errors import PlacementError
from edgert.ir.graph import Graph
from edgert.targets.layers import from_node, tensor_info
from edgert.targets.profiles import TargetProfile, load_profile
from edgert.targets.timing import TimingModel, dla_layer_times


@dataclass(frozen=True)
class EngineLoad:
    """One engine's copy of the network, alone on the device."""
    engine: str             # "gpu" or "dla:N"
    batch: int
    batch_ms: float         # one batch on this engine alone
    gpu_ms: float           # GPU time per batch: the network itself ("gpu"), fallback layers + reformats (DLA)
    dram_bytes: float       # DRAM traffic per batch
    layers: int             # layers that run on the engine itself

    @property
    def alone_ips(self) -> float:
        return self.batch / self.batch_ms * 1e3 if self.batch_ms > 0 else 0.0


@dataclass
class ThroughputReport:
    target: str
    precision: str
    loads: list[EngineLoad]
    rates: dict = field(default_factory=dict)  # engine -> images/s when all run at once
    bandwidth_gbs: float = 0.0                 # what the engines may move together
    demand_gbs: float = 0.0                    # what they would move at their unshared rates
    scale: float = 1.0                         # < 1: the shared-bandwidth bound binds
    sparse: bool = False                       # the DLA engines run 2:4 structured-sparse weights
    estimated: list = field(default_factory=list)  # efficiency constants this report rests on that no measurement fitted

    @property
    def total_ips(self) -> float:
        return sum(self.rates.values())

    def to_dict(self) -> dict:
        return {"target": self.target, "precision": self.precision,
                "engines": [{"engine": load.engine, "batch": load.batch, "batch_ms": round(load.batch_ms, 6),
                             "alone_ips": round(load.alone_ips, 3), "concurrent_ips": round(self.rates[load.engine], 3),
                             "dram_mb_per_image": round(load.dram_bytes / load.batch / 1e6, 3)}
                            for load in self.loads],
                "bandwidth_gbs": round(self.bandwidth_gbs, 3), "demand_gbs": round(self.demand_gbs, 3),
                "bandwidth_bound": self.scale < 1.0, "dla_sparse": self.sparse, "total_ips": round(self.total_ips, 3),
                "estimated_constants": list(self.estimated)}

    def format(self) -> str:
        weights = ", DLA weights 2:4 sparse" if self.sparse else ""
        lines = [f"throughput on {self.target} ({self.precision}{weights}), engines working at once on different requests:",
                 f"  {'engine':8} {'batch':>5} {'ms/batch':>9} {'alone img/s':>12} {'together img/s':>15} {'MB/img':>7}"]
        for load in self.loads:
            lines.append(f"  {load.engine:8} {load.batch:5d} {load.batch_ms:9.3f} {load.alone_ips:12.1f} "
                         f"{self.rates[load.engine]:15.1f} {load.dram_bytes / load.batch / 1e6:7.2f}")
        bound = "binds: every engine slowed by" if self.scale < 1.0 else "does not bind; headroom"
        factor = self.scale if self.scale < 1.0 else self.bandwidth_gbs / max(self.demand_gbs, 1e-9)
        lines.append(f"shared DRAM bandwidth: engines need {self.demand_gbs:.1f} GB/s of {self.bandwidth_gbs:.1f} GB/s "
                     f"usable ({bound} {factor:.2f}x)")
        lines.append(f"total: {self.total_ips:.1f} images/s")
        if self.estimated:
            lines.append(f"note: {', '.join(self.estimated)} for {self.target} are estimates that no published measurement "
                         "fitted; read these engines' numbers as rough (docs/benchmarks.md, DLA section)")
        return "\n".join(lines)


def parse_engines(text: str, profile: TargetProfile) -> list[str]:
    """"gpu,dla0,dla1" (or "all") -> ["gpu", "dla:0", "dla:1"], checked against the profile."""
    known = (["gpu"] if profile.has_gpu else []) + [f"dla:{core}" for core in range(profile.dla_cores)]
    if text.strip() == "all":
        return known
    engines = []
    for word in (w.strip() for w in text.split(",") if w.strip()):
        name = f"dla:{word[3:].lstrip(':')}" if word.startswith("dla") else word
        if name not in known:
            raise PlacementError(f"engine {word!r} does not exist on target {profile.name!r}; expected a "
                                 f"comma-separated list of {', '.join(e.replace(':', '') for e in known)} or 'all'")
        if name not in engines:
            engines.append(name)
    if not engines:
        raise PlacementError("no engine given; expected e.g. --engines gpu,dla0,dla1")
    return engines


def engine_loads(graph: Graph, profile: TargetProfile, engines: list[str], precision: str = "int8",
                 gpu_batch: int = 256, dla_batch: int = 2, timing: TimingModel | None = None,
                 sparse: bool = False) -> list[EngineLoad]:
    """The load of each engine running its own copy of ``graph`` (node devices are left as they were).

    ``sparse``: the DLA engines run 2:4 structured-sparse weights (TensorRT ``--sparsity=force``)."""
    timing = timing or TimingModel(profile)
    saved = {id(node): node.device for node in graph.nodes}
    try:
        loads, dla_load = [], None
        for engine in engines:
            if engine == "gpu":
                loads.append(_gpu_load(graph, timing, precision, gpu_batch))
                continue
            if dla_load is None:  # the DLA cores of a device are identical: one partition serves every core
                dla_load = _dla_load(graph, profile, timing, precision, dla_batch, sparse)
            loads.append(EngineLoad(engine, *dla_load))
        return loads
    finally:
        for node in graph.nodes:
            node.device = saved[id(node)]


def _gpu_load(graph: Graph, timing: TimingModel, precision: str, batch: int) -> EngineLoad:
    times = [timing.layer(from_node(node), "gpu", precision, batch) for node in graph.nodes]
    batch_ms = sum(t.ms for t in times) + timing.gpu_submit_ms()
    return EngineLoad("gpu", batch, batch_ms, batch_ms, sum(t.bytes for t in times), len(times))


def _dla_load(graph: Graph, profile: TargetProfile, timing: TimingModel, precision: str, batch: int,
              sparse: bool = False) -> tuple:
    """(batch, batch_ms, gpu_ms, dram_bytes, layers) of one DLA core running the network with GPU fallback."""
    from edgert.partitioner.assign import partition
    from edgert.partitioner.segments import crossings, precision_on

    report = partition(graph, profile, dla_core=0, gpu_fallback=True, precision=precision, insert_reformats=False)
    on_dla = [node for node in graph.nodes if node.device.startswith("dla")]
    dla_times = dla_layer_times(timing, on_dla, precision, batch, sparse, graph.outputs)
    gpu_times = [timing.layer(from_node(node), "gpu", precision, batch)
                 for node in graph.nodes if not node.device.startswith("dla")]
    dla_ms, gpu_ms = sum(t.ms for t in dla_times), sum(t.ms for t in gpu_times)
    dram, layers = sum(t.bytes for t in dla_times + gpu_times), len(dla_times)
    devices = {id(node): node.device for node in graph.nodes}
    for value, source, target in crossings(graph, devices):
        gpu_ms += timing.reformat_ms(tensor_info(value), precision_on(source, precision),
                                     precision_on(target, precision), batch)
    dla_ms += len(report.segments) * timing.segment_overhead_ms()
    # the engine's batch takes its DLA time plus the GPU work it waits for (fallback layers, reformats)
    return batch, dla_ms + gpu_ms, gpu_ms, dram, layers


def combine(loads: list[EngineLoad], bandwidth_gbs: float) -> tuple[dict, float, float]:
    """(engine -> images/s together, DRAM demand in GB/s at the unshared rates, scale applied to every engine)."""
    rates = {load.engine: load.alone_ips for load in loads if load.engine != "gpu"}
    gpu_busy = sum(rates[load.engine] / load.batch * load.gpu_ms / 1e3 for load in loads if load.engine != "gpu")
    if gpu_busy > 1.0:  # the DLA engines' GPU work alone saturates the GPU
        rates = {engine: rate / gpu_busy for engine, rate in rates.items()}
        gpu_busy = 1.0
    for load in loads:
        if load.engine == "gpu":
            rates["gpu"] = (1.0 - gpu_busy) * load.alone_ips
    demand = sum(rates[load.engine] / load.batch * load.dram_bytes for load in loads) / 1e9
    scale = min(1.0, bandwidth_gbs / demand) if demand > 0 else 1.0
    return {load.engine: rates[load.engine] * scale for load in loads}, demand, scale


def throughput(graph: Graph, profile, engines: list[str] | None = None, precision: str = "int8",
               gpu_batch: int = 256, dla_batch: int = 2, timing: TimingModel | None = None,
               sparse: bool = False) -> ThroughputReport:
    """Images/s of ``graph`` with ``engines`` (default: the GPU and every DLA core) working at once;
    ``sparse``: the DLA engines run 2:4 structured-sparse weights."""
    profile = profile if isinstance(profile, TargetProfile) else load_profile(profile)
    if not profile.has_gpu:
        raise PlacementError(f"target {profile.name!r} has no GPU or DLA to predict throughput for")
    timing = timing or TimingModel(profile)
    engines = engines or parse_engines("all", profile)
    if precision == "fp32" and any(e.startswith("dla") for e in engines):
        raise PlacementError("the DLA runs fp16 and int8 only; use --precision fp16 or int8 with DLA engines")
    loads = engine_loads(graph, profile, engines, precision, gpu_batch, dla_batch, timing, sparse)
    bandwidth = profile.memory_bandwidth_gbs * timing.c["shared_memory_efficiency"]
    rates, demand, scale = combine(loads, bandwidth)
    efficiencies = (["gpu_mac_efficiency", "gpu_memory_efficiency"] if "gpu" in engines else []) + \
        (["dla_mac_efficiency", "dla_memory_efficiency"] if any(e.startswith("dla") for e in engines) else [])
    estimated = [name for name in efficiencies if name in timing.c and timing.basis(name) == "estimated"]
    return ThroughputReport(profile.name, precision, loads, rates, bandwidth, demand, scale, sparse, estimated)
