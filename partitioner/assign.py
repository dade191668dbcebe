"""Layer placement: which device (GPU or a DLA core) runs each layer, and why.

``partition(graph, profile, ...)`` sets ``node.device`` on every layer to "gpu" or "dla:N" (a target
without a GPU keeps "cpu"), in this order:

1. placement-file rules, in order, later rules winning (a rule forcing a layer onto a DLA that cannot
   run it is an error naming the rule and the capability rule);
2. the default device: the GPU, or DLA core N (``dla_core``); a layer the capability table rejects
   raises PlacementError, or with ``gpu_fallback`` goes to the GPU with the reason recorded;
3. with ``gpu_fallback``, a cost model returns each DLA segment that has a device change to the GPU
   when the GPU time it frees is less than what its transitions and submission cost (the same rule
   wherever the segment sits: between GPU layers, at the graph's inputs or at its outputs);
4. at most 16 loadables (segments) per DLA core;
5. every device change becomes an explicit Reformat layer.

The returned PartitionReport lists per layer its device and reason, the DLA segments, the number of
transitions and the predicted time per device.
"""

from __future__ import annotations

import os

from edgert.errors import PlacementError
from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import LayerKind
from edgert.partitioner.capabilities import CapabilityTable, Verdict
from edgert.partitioner.placement import PlacementRule, apply_rules, load_placement
from edgert.partitioner.report import LayerPlacement, PartitionReport
from edgert.partitioner.segments import Segment, crossings, find_segments, insert_reformats, is_dla, precision_on
from edgert.targets.layers import from_node, tensor_info
from edgert.targets.profiles import TargetProfile, load_profile
from edgert.targets.timing import TimingModel

PRECISIONS = ("fp32", "fp16", "int8")


def partition(graph: Graph, profile, *, dla_core: int | None = None, gpu_fallback: bool = False,
              placement=None, precision: str = "fp16", insert_reformats: bool = True,
              dynamic_layers: dict[str, str] | None = None) -> PartitionReport:
    """Assign every layer of ``graph`` to a device of ``profile`` (a TargetProfile or a profile name).

    ``placement`` is a placement file path or parsed rules; ``precision`` the build precision
    (the DLA runs FP16 and INT8 only). Raises PlacementError when a layer cannot go where it must.
    ``dynamic_layers``: {layer name: its shapes as a range} of a build with optimization profiles; the DLA
    needs static shapes, so those layers fail its capability check (TensorRT's rule).
    """
    profile = profile if isinstance(profile, TargetProfile) else load_profile(profile)
    if precision not in PRECISIONS:
        raise PlacementError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if any(node.kind == LayerKind.REFORMAT for node in graph.nodes):
        raise PlacementError("this graph is already partitioned (it has Reformat layers); partition the graph "
                             "as the passes left it")
    options = {"dla_core": dla_core, "gpu_fallback": gpu_fallback, "precision": precision,
               "placement": str(placement) if isinstance(placement, (str, os.PathLike)) else None}
    rules = load_placement(placement) if placement is not None else []
    if not profile.has_gpu:
        return _on_cpu(graph, profile, dla_core, rules, options)
    assigner = _Assigner(graph, profile, dla_core, gpu_fallback, precision)
    assigner.dynamic_layers = dict(dynamic_layers or {})
    assigner.assign(rules)
    if gpu_fallback:
        assigner.return_islands()
    assigner.limit_loadables()
    return assigner.finish(options, insert_reformats)


def _on_cpu(graph: Graph, profile: TargetProfile, dla_core, rules, options) -> PartitionReport:
    if dla_core is not None:
        raise PlacementError(f"target {profile.name!r} has no DLA; drop --dla-core")
    warnings = [f"target {profile.name} has no GPU or DLA; placement rules are ignored"] if rules else []
    for node in graph.nodes:
        node.device = "cpu"
    layers = [LayerPlacement(n.name, n.kind.value, "cpu", f"target {profile.name} has no GPU: runs on the CPU",
                             0.0, list(n.origin)) for n in graph.nodes]
    return PartitionReport(profile.name, options, layers, [], 0, {"cpu": 0.0, "total": 0.0}, warnings)


class _Assigner:
    def __init__(self, graph: Graph, profile: TargetProfile, dla_core, gpu_fallback: bool, precision: str):
        self.graph, self.profile, self.precision = graph, profile, precision
        self.gpu_fallback = gpu_fallback
        self.timing = TimingModel(profile)
        self.dla_core = self._checked_core(dla_core, "--dla-core")
        self.table = CapabilityTable.for_version(profile.dla.version) if profile.dla is not None else None
        self.devices: dict[int, str] = {}
        self.reasons: dict[int, str] = {}
        self.forced: set[int] = set()
        self.warnings: list[str] = []
        self._verdicts: dict[int, Verdict] = {}
        self._gpu_ms: dict[int, float] = {}
        self.dynamic_layers: dict[str, str] = {}   # {name: shape range} of layers whose shapes vary (profiles)

    # -- step 1 and 2: rules and default device -----------------------------------------------
    def _checked_core(self, core, what: str) -> int | None:
        if core is None:
            return None
        cores = self.profile.dla_cores
        if cores == 0:
            raise PlacementError(f"target {self.profile.name!r} has no DLA; drop {what} (every layer runs on the GPU)")
        if not 0 <= int(core) < cores:
            raise PlacementError(f"target {self.profile.name!r} has {cores} DLA cores (0..{cores - 1}); "
                                 f"{what} {core} does not exist")
        return int(core)

    def verdict(self, node: Node) -> Verdict:
        shapes = self.dynamic_layers.get(node.name)
        if shapes is not None:
            return Verdict(False, "DLA does not support dynamic dimensions; every dimension must be fixed at build "
                                  f"time (this layer's shapes vary over the optimization profiles: {shapes})",
                           "static_shapes")
        if id(node) not in self._verdicts:
            self._verdicts[id(node)] = self.table.check(from_node(node), self.precision)
        return self._verdicts[id(node)]

    def assign(self, rules: list[PlacementRule]) -> None:
        chosen, self.warnings = apply_rules(self.graph.nodes, rules)
        default = f"dla:{self.dla_core}" if self.dla_core is not None else "gpu"
        for node in self.graph.nodes:
            rule = chosen.get(id(node))
            if rule is not None:
                self._place_by_rule(node, rule)
            elif is_dla(default):
                self._place_on_dla(node, default)
            else:
                self._set(node, "gpu", "default device is the GPU")

    def _place_by_rule(self, node: Node, rule: PlacementRule) -> None:
        self.forced.add(id(node))
        if rule.device == "gpu":
            self._set(node, "gpu", rule.describe())
            return
        core = self.dla_core if rule.device == "dla" and self.dla_core is not None else \
            int(rule.device.partition(":")[2] or 0)
        cores = self.profile.dla_cores
        if not 0 <= core < cores:
            raise PlacementError(f"{rule.describe()} puts layers on DLA core {core}, but target "
                                 f"{self.profile.name!r} has " + (f"DLA cores 0..{cores - 1}" if cores else "no DLA"))
        verdict = self.verdict(node)
        if not verdict.ok:
            raise PlacementError(f"{rule.describe()} puts layer {node.name!r} ({node.kind.value}) on DLA core "
                                 f"{core}, but {verdict.reason} [rule {verdict.rule}]; leave the layer out of "
                                 "the rule or place it on the GPU")
        self._set(node, f"dla:{core}", rule.describe())

    def _place_on_dla(self, node: Node, device: str) -> None:
        verdict = self.verdict(node)
        if verdict.ok:
            self._set(node, device, f"default device is {device}")
        elif self.gpu_fallback:
            self._set(node, "gpu", f"GPU fallback: {verdict.reason} [rule {verdict.rule}]")
        else:
            raise PlacementError(f"layer {node.name!r} ({node.kind.value}) cannot run on DLA core "
                                 f"{device[4:]}: {verdict.reason} [rule {verdict.rule}]; rerun with "
                                 "--gpu-fallback to run such layers on the GPU, or place this one on the GPU "
                                 "with a --placement file")

    def _set(self, node: Node, device: str, reason: str) -> None:
        self.devices[id(node)], self.reasons[id(node)] = device, reason

    # -- step 3 and 4: the cost model and the loadable limit -----------------------------------
    def gpu_ms(self, node: Node) -> float:
        if id(node) not in self._gpu_ms:
            self._gpu_ms[id(node)] = self.timing.layer(from_node(node), "gpu", self._precision(node)).ms
        return self._gpu_ms[id(node)]

    def _precision(self, node: Node) -> str:
        return node.precision if node.precision in PRECISIONS else self.precision

    def _reformat_ms(self, value, source: str, target: str) -> float:
        return self.timing.reformat_ms(tensor_info(value), precision_on(source, self.precision),
                                       precision_on(target, self.precision))

    def _boundary_ms(self, segment: Segment, device: str) -> float:
        """Reformat cost at the segment's edges if its layers ran on ``device`` (others as assigned)."""
        inside = {id(n) for n in segment.nodes}
        cost = 0.0
        for node in segment.nodes:
            for value in {id(v): v for v in node.inputs if v is not None}.values():
                producer = value.producer()
                if producer is not None and id(producer) not in inside and self.devices[id(producer)] != device:
                    cost += self._reformat_ms(value, self.devices[id(producer)], device)
            for value in node.outputs:
                targets = {self.devices[id(u)] for u in value.users() if id(u) not in inside} - {device}
                cost += sum(self._reformat_ms(value, device, target) for target in targets)
        return cost

    def _balance(self, segment: Segment) -> tuple[float, float]:
        """(GPU time the segment frees, extra cost of keeping it on its DLA core instead of the GPU)."""
        gain = sum(self.gpu_ms(n) for n in segment.nodes)
        extra = self.timing.segment_overhead_ms() + self._boundary_ms(segment, segment.device) - \
            self._boundary_ms(segment, "gpu")
        return gain, extra

    def _movable(self, segments: list[Segment]) -> list[Segment]:
        return [s for s in segments if not any(id(n) in self.forced for n in s.nodes)]

    def _has_transitions(self, segment: Segment) -> bool:
        """Whether the segment reads a tensor from, or hands one to, a layer on another device."""
        return self._boundary_ms(segment, segment.device) > 0.0

    def return_islands(self) -> None:
        """Return DLA segments to the GPU when their transitions and submission cost more than the GPU time
        they free, cheapest first, until every remaining segment pays for itself.

        One rule for every segment with a transition, wherever it sits: a segment at the graph's inputs or
        outputs pays for its device changes like one between GPU layers. A segment with no transition (the
        whole graph on the DLA) stays: there is no device change to save.
        """
        while True:
            segments = [s for s in self._movable(find_segments(self.graph, self.devices)) if self._has_transitions(s)]
            for segment in sorted(segments, key=lambda s: self._balance(s)[0]):
                gain, extra = self._balance(segment)
                if extra > gain:
                    self._to_gpu(segment, f"cost model: this DLA segment of {len(segment.nodes)} layer(s) frees "
                                          f"{gain:.3f} ms of GPU time, less than the {extra:.3f} ms its "
                                          "transitions and submission add")
                    break
            else:
                return

    def limit_loadables(self) -> None:
        if self.table is None:
            return
        limit = self.table.max_loadables_per_core
        for core in range(self.profile.dla_cores):
            while True:
                segments = [s for s in find_segments(self.graph, self.devices) if s.device == f"dla:{core}"]
                if len(segments) <= limit:
                    break
                movable = self._movable(segments)
                if not self.gpu_fallback or not movable:
                    raise PlacementError(f"DLA core {core} would need {len(segments)} loadables, but at most {limit} "
                                         "fit on one core; rerun with --gpu-fallback, or place layers so that fewer "
                                         "DLA segments remain")
                worst = min(movable, key=lambda s: self._balance(s)[0] - self._balance(s)[1])
                self._to_gpu(worst, f"loadable limit: DLA core {core} holds at most {limit} loadables and this "
                                    "segment saves the least")

    def _to_gpu(self, segment: Segment, reason: str) -> None:
        for node in segment.nodes:
            self._set(node, "gpu", reason)

    # -- step 5: reformats and the report ------------------------------------------------------
    def finish(self, options: dict, with_reformats: bool) -> PartitionReport:
        for node in self.graph.nodes:
            node.device = self.devices[id(node)]
        segments = find_segments(self.graph, self.devices)
        if with_reformats:
            reformats = insert_reformats(self.graph, self.devices, self.precision, self._reformat_ms)
            transitions = len(reformats)
        else:
            transitions = len(crossings(self.graph, self.devices))
        return self._report(options, segments, transitions)

    def _layer_ms(self, node: Node) -> float:
        if node.kind == LayerKind.REFORMAT:
            return float(node.attrs.get("cost_ms", 0.0))
        return self.timing.layer(from_node(node), node.device, self._precision(node)).ms

    def _report(self, options: dict, segments: list[Segment], transitions: int) -> PartitionReport:
        layers, totals = [], {"gpu": 0.0}
        for node in self.graph.nodes:
            ms = self._layer_ms(node)
            if node.kind == LayerKind.REFORMAT:
                reason = (f"device change {node.attrs['from_device']} -> {node.attrs['to_device']}: "
                          f"{node.attrs['from_layout']} {node.attrs['from_precision']} -> "
                          f"{node.attrs['to_layout']} {node.attrs['to_precision']}")
                totals["reformat"] = totals.get("reformat", 0.0) + ms
            else:
                reason = self.reasons[id(node)]
                totals[node.device] = totals.get(node.device, 0.0) + ms
            layers.append(LayerPlacement(node.name, node.kind.value, node.device, reason, ms, list(node.origin)))
        per_layer = {id(n): p.predicted_ms for n, p in zip(self.graph.nodes, layers)}
        segment_rows = [{"device": s.device, "layers": s.names,
                         "predicted_ms": round(sum(per_layer[id(n)] for n in s.nodes), 6)} for s in segments]
        totals.setdefault("reformat", 0.0)
        totals["dla_submit"] = len(segments) * self.timing.segment_overhead_ms()
        totals["total"] = sum(totals.values())
        return PartitionReport(self.profile.name, options, layers, segment_rows, transitions, totals,
                               self.warnings)
