"""Per-layer precision: fp32 / fp16 / int8, chosen after partitioning and before scheduling.

``apply_precision(graph, precision, rules=..., calibration=...)``:
- fp16: every eligible layer computes on float16 tensors with float16 weights; Cast layers convert at
  the boundaries. Graph inputs and outputs keep their dtype. Numerically sensitive layers (Softmax,
  Normalization, Reduce, LRN, RNN, and the layers producing graph outputs) stay fp32 unless a rule forces them,
  and so do the layers that compute on data-dependent rows (edgert/ir/valid_rows.py: detection post-processing,
  where torchvision offsets each class's boxes by up to 30 000 before NMS: float16 keeps 4 bits of a pixel there)
  and those whose results a NonZero / NMS / Compact reads (a score threshold is decided in float32).
- int8: layers that can run int8 (``INT8_KINDS`` and their conditions) get ``attrs["int8"] =
  {"input_scales": [...], "output_scale": s, "weight_scales": [...]}`` (the DLA simulator's convention:
  tensors keep holding dequantized float32 values, so one plan runs on the CPU int8 kernels and on the DLA).
  Activation scales come from calibration (``edgert.calibration``) or from Q/DQ pairs in the model;
  weight scales are per output channel, symmetric (max|w_c| / 127). Layers that cannot run int8 fall
  back to fp16.
- Layers that only move data (Shuffle, Slice, Concatenation, nearest Resize...) follow their input's type, so a
  reshape between two fp16 layers needs no Cast.
- int8 data movement: the calibrated tensors that layers only moving values tie together (a concat's inputs
  and output; the input and output of a Shuffle, Slice, nearest Resize, zero Padding, Identity) get one scale,
  the largest of theirs (``tie_moved_scales``; TensorRT likewise gives a concat's inputs its output's
  scale), so those layers move int8 codes of one scale, a concat in place (``edgert.int8_codes``). Scales from
  Q/DQ nodes are kept as the model gives them.
- DLA layers keep float32 tensors (Reformat layers convert at the DLA boundary) and compute fp16 or int8.

Per-layer rules (later rules win), in a TOML file that may be the placement file:

    [[rule]]
    layer = "head/*"       # glob over layer names and the names a fused layer absorbed
    precision = "fp32"     # or kind = "Softmax"; both may be given (both must match)
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from edgert.errors import EdgeRTError
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import BOUNDED_KINDS, ElementWiseOp, LayerKind
from edgert.ir.shape_inference import infer_node

PRECISIONS = ("fp32", "fp16", "int8")
SENSITIVE_KINDS = frozenset({LayerKind.SOFTMAX, LayerKind.NORMALIZATION, LayerKind.REDUCE, LayerKind.LRN,
                             LayerKind.RNN})   # a recurrence compounds fp16 rounding over every step
# Layers that only move or select data: computing them in a narrower type loses nothing.
FOLLOW_KINDS = frozenset({LayerKind.SHUFFLE, LayerKind.SLICE, LayerKind.CONCATENATION, LayerKind.PADDING,
                          LayerKind.GATHER, LayerKind.IDENTITY, LayerKind.EXPAND, LayerKind.TILE,
                          LayerKind.SELECT, LayerKind.TOPK, LayerKind.COMPACT})
# Layers whose output type is fixed by their attrs or that sit at a device boundary: never retyped.
FIXED_KINDS = frozenset({LayerKind.CAST, LayerKind.REFORMAT})
INT8_KINDS = frozenset({LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY, LayerKind.POOLING,
                        LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.POINTWISE, LayerKind.SCALE})
_INT8_ELEMENTWISE = frozenset({ElementWiseOp.SUM, ElementWiseOp.SUB, ElementWiseOp.PROD, ElementWiseOp.MAX,
                               ElementWiseOp.MIN})
_STORAGE = {"fp32": DataType.FLOAT, "fp16": DataType.HALF, "int8": DataType.FLOAT}
_KINDS = {kind.value.lower(): kind for kind in LayerKind}


class PrecisionError(EdgeRTError):
    """A precision rule or request cannot be honoured."""


@dataclass(frozen=True)
class PrecisionRule:
    index: int
    precision: str
    layer: str | None = None
    kind: LayerKind | None = None

    def matches(self, node: Node) -> bool:
        if self.layer is not None and not any(fnmatch.fnmatchcase(n, self.layer) for n in [node.name, *node.origin]):
            return False
        if self.kind is None:
            return True
        from edgert.partitioner.placement import member_kinds
        return self.kind in member_kinds(node)


@dataclass
class PrecisionReport:
    precision: str
    layers: dict = field(default_factory=dict)      # layer name -> "fp32" | "fp16" | "int8"
    notes: list = field(default_factory=list)       # why a layer did not get what was asked
    unscaled: list = field(default_factory=list)    # layers that could run int8 but had no scales (ran fp16)
    casts: int = 0
    scales: dict = field(default_factory=dict)      # activation scales by tensor name (calibration, Q/DQ)

    def counts(self) -> dict:
        result: dict[str, int] = {}
        for value in self.layers.values():
            result[value] = result.get(value, 0) + 1
        return result

    def to_dict(self) -> dict:
        return {"precision": self.precision, "counts": self.counts(), "casts": self.casts,
                "notes": list(self.notes), "layers": dict(self.layers)}


# -- rules -------------------------------------------------------------------------------------------------
def load_rules(source, what: str = "precision rules") -> list[PrecisionRule]:
    """Precision rules from a TOML path, a parsed dict or a list of rule dicts; rules without a
    ``precision`` key (placement rules in a shared file) are skipped."""
    if source is None:
        return []
    if isinstance(source, (list, tuple)) and all(isinstance(r, PrecisionRule) for r in source):
        return list(source)
    from edgert.partitioner.placement import read_rule_file
    data, where = read_rule_file(source, what, PrecisionError)
    rules = []
    for index, entry in enumerate(data.get("rule", []), start=1):
        if "precision" in entry:
            rules.append(_parse_rule(entry, index, where))
    return rules


def _parse_rule(entry: dict, index: int, where: str) -> PrecisionRule:
    from edgert.partitioner.placement import check_rule_keys
    check_rule_keys(entry, index, where, PrecisionError)
    precision = str(entry["precision"]).lower()
    if precision not in PRECISIONS:
        raise PrecisionError(f"{where}: rule {index} has precision {entry['precision']!r}; expected one of "
                             f"{', '.join(PRECISIONS)}")
    kind = None
    if "kind" in entry:
        kind = _KINDS.get(str(entry["kind"]).lower())
        if kind is None:
            raise PrecisionError(f"{where}: rule {index} names unknown kind {entry['kind']!r}")
    return PrecisionRule(index, precision, entry.get("layer"), kind)


# -- entry point -------------------------------------------------------------------------------------------
def apply_precision(graph: Graph, precision: str, *, rules=None, calibration=None,
                    narrow_outputs: set = frozenset()) -> PrecisionReport:
    """Choose each layer's precision, set int8 scales, retype tensors and insert Casts (see module doc).

    ``calibration``: an ``edgert.calibration.CalibrationTable`` (or a dict tensor name -> scale) giving
    per-tensor activation scales; Q/DQ scales recorded by the importer are used where it has none.
    ``narrow_outputs``: ids of graph output values bound as fp16 or int8 (``edgert.io_formats``): the layers
    producing them take the build precision instead of staying fp32.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    report = PrecisionReport(precision)
    rules = load_rules(rules)
    scales = report.scales = _activation_scales(graph, calibration)
    forced = _forced(graph, rules)
    outputs = ({id(v) for v in graph.outputs} - set(narrow_outputs)) | _on_counted_rows(graph)
    wanted: dict[int, str | None] = {}
    for node in graph.nodes:
        choice = forced.get(id(node)) or _default_choice(node, precision, outputs)
        if choice == "int8" and _moves_data(node):
            choice = None   # int8 data movement moves what comes in: int8 codes, where edgert.int8_codes makes them
        if choice == "int8":
            choice = _try_int8(node, scales, report, forced=id(node) in forced)
        if node.device.startswith("dla"):
            choice = node.precision = _dla_choice(node, choice, precision, report)
            report.layers[node.name] = choice
        wanted[id(node)] = choice
    _retype(graph, wanted, report)
    return report


def _on_counted_rows(graph: Graph) -> set[int]:
    """The outputs of the layers that read data-dependent rows and of those whose results a data-dependent layer
    reads (a NonZero's mask: a score threshold decided in float32), kept fp32 like graph outputs."""
    from edgert.ir.valid_rows import bounded_values
    bounded = [node for node in graph.nodes if node.kind in BOUNDED_KINDS]
    if not bounded:
        return set()
    rows = bounded_values(graph, strict=False)
    kept = {id(out) for node in graph.nodes if any(v is not None and id(v) in rows for v in node.inputs)
            for out in node.outputs}
    return kept | {id(v) for node in bounded for v in node.inputs if v is not None}


def _forced(graph: Graph, rules: list[PrecisionRule]) -> dict[int, str]:
    chosen = {}
    for rule in rules:
        for node in graph.nodes:
            if rule.matches(node):
                chosen[id(node)] = rule.precision
    return chosen


def _default_choice(node: Node, precision: str, outputs: set[int]) -> str | None:
    """None = the layer follows its input's type (data movement, or a type the model chose itself)."""
    if _moves_data(node):
        return None
    if any(v is not None and v.dtype.is_float and v.dtype != DataType.FLOAT for v in node.inputs):
        return None  # a float16 / float64 layer of the model keeps its own type unless a rule says otherwise
    if precision == "fp32" or node.kind in FIXED_KINDS:
        return "fp32"
    if node.kind in SENSITIVE_KINDS or any(id(v) in outputs for v in node.outputs):
        return "fp32"
    return precision


def _moves_data(node: Node) -> bool:
    """FOLLOW_KINDS, and a nearest-neighbour Resize (it only copies values; interpolating modes compute)."""
    if node.kind == LayerKind.RESIZE:
        from edgert.runtime.validate import copies_values
        return copies_values(node.kind, node.attrs)
    return node.kind in FOLLOW_KINDS


def _dla_choice(node: Node, choice, precision: str, report: PrecisionReport) -> str:
    """The DLA computes fp16 or int8 only (the partitioner set the build precision on its layers)."""
    if choice == "int8":
        return "int8"
    node.attrs.pop("int8", None)
    if choice == "fp32":
        report.notes.append(f"{node.name}: on {node.device}, which has no fp32; runs fp16")
    return "fp16"


# -- int8 --------------------------------------------------------------------------------------------------
def _activation_scales(graph: Graph, calibration) -> dict[str, float]:
    """Per-tensor scales: Q/DQ scales the importer recorded (``graph.tensor_scales``), then calibration."""
    given = dict(getattr(graph, "tensor_scales", None) or {})
    scales = dict(given)
    if calibration is not None:
        scales.update(getattr(calibration, "scales", calibration))
        tie_moved_scales(graph, scales, keep=set(given))
    return scales


def tie_moved_scales(graph: Graph, scales: dict, keep: set = frozenset()) -> None:
    """Give each group of tensors tied by layers that only move values (``copies_values``) the largest scale of
    the group, in place in ``scales``; a group holding a name of ``keep`` (Q/DQ scales) keeps its scales.

    Why: such a layer moves int8 codes as they are only when its inputs hold codes of one scale and its readers
    read them at that scale; the largest scale of a group saturates no value that calibration kept."""
    from edgert.runtime.validate import copies_values

    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name
    for node in graph.nodes:
        if len(node.outputs) != 1 or node.attrs.get("int8") or not copies_values(node.kind, node.attrs):
            continue
        tied = [v.name for v in [*node.inputs, node.outputs[0]] if v is not None and not v.is_const
                and v.dtype.is_float and v.name in scales]
        for name in tied[1:]:
            parent[root(name)] = root(tied[0])
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(root(name), []).append(name)
    for members in groups.values():
        if len(members) > 1 and not keep.intersection(members):
            largest = max(scales[name] for name in members)
            for name in members:
                scales[name] = largest


def int8_blocker(node: Node) -> str | None:
    """Why ``node`` cannot run int8 (None when it can)."""
    if node.kind not in INT8_KINDS:
        return f"{node.kind.value} has no int8 implementation"
    if node.kind == LayerKind.ELEMENTWISE and node.attrs.get("op") not in _INT8_ELEMENTWISE:
        return f"ElementWise {node.attrs.get('op')} has no int8 implementation"
    if any(v.dtype != DataType.FLOAT for v in node.outputs):
        return "its output is not float32"
    for slot, value in enumerate(node.inputs):
        if value is None or not value.dtype.is_float:
            continue
        if node.kind == LayerKind.MATRIX_MULTIPLY and slot == 1 and (not value.is_const or len(value.shape) != 2):
            return "its second operand is not a 2-D constant weight"
        if value.is_const and not _constant_operand_ok(node, slot):
            return f"its input {slot} is a constant the int8 kernel does not read wide"
    return None


def _constant_operand_ok(node: Node, slot: int) -> bool:
    """Constants the int8 kernels take as weights (slot 1) or keep wide (biases, scale/shift)."""
    if node.kind in (LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY):
        return slot in (1, 2)
    return node.kind == LayerKind.SCALE and slot in (1, 2)


def _try_int8(node: Node, scales: dict[str, float], report: PrecisionReport, forced: bool) -> str:
    reason = int8_blocker(node)
    missing = [v.name for v in [*node.inputs, node.outputs[0]]
               if v is not None and not v.is_const and v.dtype.is_float and not scales.get(v.name)]
    if reason is None and missing:
        reason = f"no int8 scale for tensor {missing[0]!r} (calibrate, or give Q/DQ scales)"
        report.unscaled.append(node.name)
    if reason is not None:
        if forced:
            report.notes.append(f"{node.name}: int8 requested by a rule, but {reason}; runs fp16")
        node.attrs.pop("int8", None)
        return "fp16"
    spec = {"input_scales": [float(scales[v.name]) if v is not None and not v.is_const and v.dtype.is_float
                             else 0.0 for v in node.inputs],
            "output_scale": float(scales[node.outputs[0].name])}
    if node.kind in (LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY):
        spec["weight_scales"] = weight_scales(node)
    node.attrs["int8"] = spec
    return "int8"


def weight_scales(node: Node) -> list[float]:
    """Per-output-channel symmetric scales max|w_c| / 127 (1.0 for an all-zero channel)."""
    w = np.asarray(node.inputs[1].const, np.float64)
    axis = 0 if node.kind == LayerKind.CONVOLUTION else (0 if node.attrs.get("trans_b") else 1)
    amax = np.max(np.abs(w), axis=tuple(i for i in range(w.ndim) if i != axis))
    return [float(a / 127.0) if a > 0 else 1.0 for a in amax]


# -- retyping ----------------------------------------------------------------------------------------------
def _retype(graph: Graph, wanted: dict[int, str | None], report: PrecisionReport) -> None:
    """Give every layer the tensor type of its precision, inserting Casts where types meet."""
    original = {id(v): v.dtype for v in graph.values()}
    casts: dict[tuple[int, DataType], Value] = {}
    halves: dict[int, Value] = {}
    for node in list(graph.nodes):
        if node.kind == LayerKind.CAST and node.inputs[0] is not None and node.inputs[0].dtype.is_float:
            report.layers[node.name] = "fp32"
            continue  # a Cast reads any type
        storage = _storage(node, wanted.get(id(node)), original)
        for slot, value in enumerate(node.inputs):
            if value is None or not value.dtype.is_float or value.dtype == DataType.DOUBLE:
                continue
            want = storage if storage is not None else original[id(value)]
            if value.dtype == want:
                continue
            if value.is_const:
                node.set_input(slot, _half_constant(graph, value, halves) if want == DataType.HALF else value)
            else:
                node.set_input(slot, _cast(graph, value, want, node, casts, report))
        if storage is not None:
            infer_node(node)
            choice = wanted.get(id(node))
            node.precision = choice if choice is not None else _PRECISION_OF[storage]
            report.layers[node.name] = node.precision
    for index, value in enumerate(graph.outputs):
        if value.dtype != original[id(value)]:
            graph.outputs[index] = _cast(graph, value, original[id(value)], None, casts, report)
    graph.toposort()


_PRECISION_OF = {DataType.FLOAT: "fp32", DataType.HALF: "fp16"}


def _storage(node: Node, choice: str | None, original: dict) -> DataType | None:
    """The float type ``node`` computes on, or None to leave the node's types as they are."""
    if node.device.startswith("dla") or node.kind in FIXED_KINDS:
        return None
    floats = [v for v in [*node.inputs, *node.outputs] if v is not None and v.dtype.is_float]
    if not floats or any(original.get(id(v), v.dtype) not in (DataType.FLOAT, DataType.HALF) for v in floats):
        return None
    if choice is not None:
        return _STORAGE[choice]
    activations = [v for v in node.inputs if v is not None and not v.is_const and v.dtype.is_float]
    return activations[0].dtype if activations else DataType.FLOAT


def _half_constant(graph: Graph, value: Value, halves: dict[int, Value]) -> Value:
    if id(value) not in halves:
        data = np.clip(value.const, -65504.0, 65504.0).astype(np.float16)
        halves[id(value)] = graph.constant(data, name=f"{value.name}_fp16")
    return halves[id(value)]


def _cast(graph: Graph, value: Value, to: DataType, reader: Node | None, casts: dict, report) -> Value:
    key = (id(value), to)
    if key not in casts:
        node = graph.add_node(LayerKind.CAST, [value], {"to": to.value},
                              name=f"{value.name}_to_{_PRECISION_OF.get(to, to.value)}", origin=[])
        producer = value.producer()
        devices = [n.device for n in (reader, producer) if n is not None and not n.device.startswith("dla")]
        node.device = devices[0] if devices else "cpu"
        infer_node(node)
        casts[key] = node.outputs[0]
        report.casts += 1
    return casts[key]
