"""int8 codes between int8 layers: a build step after precision assignment (``BuildConfig.int8_codes``).

``apply_precision`` leaves int8 layers reading and writing float32 tensors of dequantized values (q * s). This
step makes int8 activations travel as int8 codes q instead, with each code tensor's scale s kept in the plan
(``tensors[i].scale``):

- a *code layer* is an int8 layer (``attrs["int8"]``) of a kind in ``CODE_KINDS``, not on a DLA core and not
  producing a graph output. It reads every activation input as int8 codes at its ``input_scales[slot]`` and
  writes its output as int8 codes at its ``output_scale``; an int8 layer producing a graph output reads codes
  too and writes the dequantized values (float32) its output binding has;
- where a float tensor feeds a code layer, a quantize ``Reformat`` (``to_dtype`` int8, ``scale``) converts it
  once per tensor; where a code tensor feeds any other layer, a dequantize ``Reformat`` (``to_dtype`` float32)
  gives that layer the dequantized values it read before. Both are layers of the plan, shown by ``inspect``
  with a ``cost_ms`` estimate (the target's timing model; a streaming-bandwidth estimate for host builds).

- a *carrier* is a layer that only moves values (``CARRY_KINDS``: Shuffle, Slice, Concatenation, nearest
  Resize, Padding with zeros or copied edges, Identity) whose activation inputs all hold codes at one scale s:
  it moves the int8 codes as they are (the CPU and CUDA kernels of those kinds are dtype-generic) and its
  output holds codes at s. Moving q and dequantizing gives what dequantizing q and moving does, so this is
  exact. A Concatenation of codes at different scales is no carrier (its inputs are dequantized), nor is a
  layer whose readers want another scale cheaper than a requantize: so calibration gives every tensor that
  data movement ties together one scale (``precision.tie_moved_scales``, as TensorRT gives a concat's inputs
  its output's scale); scales set by Q/DQ nodes are kept as the model gives them. The memory
  planner writes the producers of a carried concat straight into their slices (in place), as for floats.

Numerics are unchanged: an int8 kernel quantizing a float input computes round(q * s / s) = q, so a plan with
codes computes the very codes (and outputs) of the plan without them. What changes is the bytes: an int8
tensor takes a quarter of the arena a float32 one does.

CUDA: the int8 kernels (``kernels/cuda/lower_int8*.py``) read and write codes too, bit-exact with the CPU
kernels on the emulator; until that is measured on a GPU, builds for CUDA kernels (compiled into the plan,
or ``cpu_only_aliases=False``) take codes only when ``int8_codes=True`` asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgert.errors import EdgeRTError
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import infer_node
from edgert.runtime.validate import CODE_CARRIER_KINDS, copies_values

# The int8 kernels that read and write codes (kernels/cpu/int8.py, kernels/cuda/lower_int8*.py): every kind
# precision.py runs int8. A PointWise program computes on the dequantized values of its code inputs.
CODE_KINDS = frozenset({LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY, LayerKind.POOLING,
                        LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.SCALE, LayerKind.POINTWISE})
CARRY_KINDS = CODE_CARRIER_KINDS   # the plan validator checks carriers by the same set
HOST_STREAM_GBS = 10.0   # host builds have no target profile: a modest streaming bandwidth for Reformat costs


class Int8CodesError(EdgeRTError):
    """int8 codes were asked for where the plan's kernels cannot read them."""


@dataclass
class CodesReport:
    scales: dict = field(default_factory=dict)      # code tensor name -> scale
    quantize: int = 0                               # Reformat layers added, each way
    dequantize: int = 0
    carriers: int = 0                               # data-movement layers moving codes as they are

    def to_dict(self) -> dict:
        return {"code_tensors": len(self.scales), "quantize_reformats": self.quantize,
                "dequantize_reformats": self.dequantize, "carriers": self.carriers}


def wanted(option, precision_report, cpu_kernels: bool) -> bool:
    """Whether to run the step: ``option`` None = whenever the plan has int8 layers and runs the CPU kernels
    (no CUDA kernels compiled into it, now or later: ``cpu_only_aliases``)."""
    has_int8 = "int8" in precision_report.layers.values()
    if option is None:
        return has_int8 and cpu_kernels
    return bool(option) and has_int8


def apply_int8_codes(graph: Graph, target: str = "host", code_outputs: set = frozenset()) -> CodesReport:
    """Retype the tensors between code layers to int8 and insert the Reformat layers (see module doc).
    ``code_outputs``: ids of graph output values whose binding holds codes (an int8 output format,
    ``edgert.io_formats``): their producers write codes as between layers."""
    report = CodesReport()
    outputs = {id(v) for v in graph.outputs} - set(code_outputs)
    readers = [node for node in graph.nodes if reads_codes(node)]
    coders = [node for node in readers if is_code_layer(node, outputs)]
    if not readers:
        return report
    cost = _cost_model(target)
    for node in coders:
        value = node.outputs[0]
        value.dtype = DataType.INT8
        report.scales[value.name] = float(node.attrs["int8"]["output_scale"])
    coder_ids, reader_ids = {id(n) for n in coders}, {id(n) for n in readers}
    carrier_ids = _mark_carriers(graph, report, outputs)
    converted: dict = {}
    for node in list(graph.nodes):
        if id(node) in reader_ids:
            _feed_codes(graph, node, report, converted, cost)
        elif id(node) not in carrier_ids:
            _feed_floats(graph, node, report, converted, cost)
    graph.toposort()
    for node in graph.nodes:
        infer_node(node)
        if id(node) in reader_ids and id(node) not in coder_ids:
            node.outputs[0].dtype = DataType.FLOAT   # reads codes, writes the values its output binding has
        expect = DataType.INT8 if id(node) in coder_ids or id(node) in carrier_ids else None
        if expect is not None and node.outputs[0].dtype != expect:
            raise Int8CodesError(f"internal: code layer {node.name!r} infers {node.outputs[0].dtype.value}")
    return report


def reads_codes(node: Node) -> bool:
    """An int8 layer whose kernel reads its activation inputs as codes (a code layer, or one whose float output
    is a graph output: it then reads codes and writes dequantized values)."""
    spec = node.attrs.get("int8")
    return bool(spec) and node.kind in CODE_KINDS and not node.device.startswith("dla") \
        and len(node.outputs) == 1 and node.outputs[0].dtype == DataType.FLOAT and spec.get("output_scale", 0) > 0


def is_code_layer(node: Node, graph_outputs: set) -> bool:
    return reads_codes(node) and id(node.outputs[0]) not in graph_outputs


def _mark_carriers(graph: Graph, report: CodesReport, graph_outputs: set) -> set:
    """Retype the outputs of the layers that carry codes (in graph order, so chains of carriers carry)."""
    carriers = set()
    for node in graph.nodes:
        scale = carried_scale(node, report.scales, graph_outputs)
        if scale is None:
            continue
        node.outputs[0].dtype = DataType.INT8
        report.scales[node.outputs[0].name] = scale
        report.carriers += 1
        carriers.add(id(node))
    return carriers


def carried_scale(node: Node, scales: dict, graph_outputs: set) -> float | None:
    """The scale of the codes ``node`` carries, or None when it is no carrier (see the module doc)."""
    if node.kind not in CARRY_KINDS or node.attrs.get("int8") or node.device.startswith("dla") \
            or len(node.outputs) != 1 or node.outputs[0].dtype != DataType.FLOAT \
            or id(node.outputs[0]) in graph_outputs or not copies_values(node.kind, node.attrs):
        return None
    data = [value for _, value in _activation_slots(node)]
    if not data or node.inputs[0] is None or node.inputs[0] not in data:
        return None
    found = {scales.get(value.name) if value.dtype == DataType.INT8 else None for value in data}
    if len(found) != 1 or None in found:
        return None
    return found.pop()


def _activation_slots(node: Node):
    for slot, value in enumerate(node.inputs):
        if value is not None and not value.is_const and (value.dtype.is_float or value.dtype == DataType.INT8):
            yield slot, value


def _feed_codes(graph: Graph, node: Node, report: CodesReport, converted: dict, cost) -> None:
    """Every activation input of a code layer as codes at the scale the layer reads it with."""
    scales = node.attrs["int8"].get("input_scales") or []
    for slot, value in _activation_slots(node):
        scale = float(scales[slot]) if slot < len(scales) else 0.0
        if not scale > 0:
            raise Int8CodesError(f"layer {node.name!r} reads {value.name!r} without an int8 scale")
        if value.dtype == DataType.INT8 and report.scales.get(value.name) == scale:
            continue
        wide = _dequantized(graph, value, report, converted, cost) if value.dtype == DataType.INT8 else value
        node.set_input(slot, _reformat(graph, wide, DataType.INT8, scale, report, converted, cost))


def _feed_floats(graph: Graph, node: Node, report: CodesReport, converted: dict, cost) -> None:
    """Any other layer (and the graph outputs) read a code tensor through its dequantize Reformat."""
    if node.kind == LayerKind.REFORMAT and node.attrs.get("to_dtype"):
        return
    for slot, value in enumerate(node.inputs):
        if value is not None and value.name in report.scales and value.dtype == DataType.INT8:
            node.set_input(slot, _dequantized(graph, value, report, converted, cost))


def _dequantized(graph, value, report, converted, cost) -> Value:
    return _reformat(graph, value, DataType.FLOAT, report.scales[value.name], report, converted, cost)


def _reformat(graph: Graph, value: Value, to: DataType, scale: float, report: CodesReport, converted: dict,
              cost) -> Value:
    """One Reformat per (tensor, type, scale), placed right after the tensor's producer."""
    key = (id(value), to, scale)
    if key in converted:
        return converted[key]
    source, target = ("int8", "fp32") if to == DataType.FLOAT else ("fp32", "int8")
    device = value.producer().device if value.producer() is not None else _first_reader_device(value)
    attrs = {"from_device": device, "to_device": device, "from_layout": "linear", "to_layout": "linear",
             "from_precision": source, "to_precision": target, "to_dtype": to.value, "scale": float(scale),
             "cost_ms": float(cost(value))}
    verb = "dequantize" if to == DataType.FLOAT else "quantize"
    node = graph.add_node(LayerKind.REFORMAT, [value], attrs, name=f"{verb}({value.name})")
    node.device = device
    node.precision = "int8"
    infer_node(node)
    if to == DataType.INT8:
        report.scales[node.outputs[0].name] = float(scale)
        report.quantize += 1
    else:
        report.dequantize += 1
    converted[key] = node.outputs[0]
    return node.outputs[0]


def _first_reader_device(value: Value) -> str:
    users = [user for user, _ in value.uses()]
    return users[0].device if users else "cpu"


def _cost_model(target: str):
    """cost_ms(value): the time to read the tensor as float32 and write it as int8 codes (or back)."""
    from edgert.targets.layers import tensor_info

    if target == "host":
        def host_ms(value: Value) -> float:
            count = 1
            for dim in value.shape:
                count *= int(dim)
            return count * 5 / (HOST_STREAM_GBS * 1e9) * 1e3
        return host_ms
    from edgert.targets import load_profile
    from edgert.targets.timing import TimingModel

    model = TimingModel(load_profile(target))
    return lambda value: model.reformat_ms(tensor_info(value), "fp32", "int8")
