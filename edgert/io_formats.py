"""I/O formats: the element type of a plan's input and output bindings (``BuildConfig.input_formats`` /
``output_formats``; ``edgert build --input-format NAME=fp16``; TensorRT's ``ITensor.dtype`` with
``allowed_formats``, trtexec's ``--inputIOFormats=fp16:chw``).

A format is ``fp32`` (the default), ``fp16`` or ``int8``, optionally followed by a layout: ``:linear`` (alias
``:chw``, NCHW, the default) or one of TensorRT's channel-vectorized layouts of a 4-D NCHW tensor (``LAYOUTS``:
``chw2/4/16/32``: N x ceil(C/K) x H x W x K; ``hwc``, ``hwc8/16``: N x H x W x ceil(C/K)*K, channels past C
zero). A layout is converted by explicit layers named after the binding (``x_from_chw32``: a Shuffle, and a
Slice dropping the padded channels; ``y_to_hwc8``: a Padding and a Shuffle), shown by ``inspect``; they move
int8 codes as they are. A binding in another type than float32 makes the caller feed (or receive) that type,
and the conversion the plan would do anyway disappears where it can:

- an fp16 input feeds the layers that read it in fp16 directly (the fp16 build's Cast goes), and an int8
  quantize Reformat reads the half values as they are; other readers get one ``Cast`` to float32;
- an int8 input holds codes at the input's calibrated (or Q/DQ) scale: it feeds int8 layers reading it at that
  scale directly (the quantize Reformat goes); other readers get one dequantize ``Reformat``;
- an fp16 output: the layer producing it computes fp16 in an fp16 build (``apply_precision``'s
  ``narrow_outputs``), so the Cast back to float32 goes; otherwise a Cast to float16 is added;
- an int8 output is written as int8 codes by the int8 layer producing it (or, with int8 codes, by a layer
  moving codes: ``apply_int8_codes``'s ``code_outputs``), at that layer's output scale; in an int8 build that layer runs int8 even though it
  produces an output. The binding's scale is in the plan (``tensors[i].scale``), shown by ``inspect`` and the
  runtime's bindings.

Everything here is exact: half -> float -> half and codes -> values -> codes round-trip, so a plan with I/O
formats computes what the float32 plan computes on the converted inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgert.errors import EdgeRTError
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import infer_node

DTYPES = {"fp32": DataType.FLOAT, "fp16": DataType.HALF, "int8": DataType.INT8}
# TensorRT's binding layouts of an NCHW tensor: name -> (kind, vector width). chwK: N x ceil(C/K) x H x W x K;
# hwcK: N x H x W x ceil(C/K)*K (hwc: K = 1); channels past C are zeros (int8 code 0).
LAYOUTS = {"linear": None, "chw": None, "hwc": ("hwc", 1), "hwc8": ("hwc", 8), "hwc16": ("hwc", 16),
           "chw2": ("chw", 2), "chw4": ("chw", 4), "chw16": ("chw", 16), "chw32": ("chw", 32)}


class IOFormatError(EdgeRTError):
    """An I/O format that is malformed, names no binding, or cannot be honoured by the plan."""


@dataclass(frozen=True)
class IOFormat:
    dtype: str = "fp32"
    layout: str = "linear"

    def __str__(self) -> str:
        return self.dtype if self.layout == "linear" else f"{self.dtype}:{self.layout}"


@dataclass
class IOReport:
    scales: dict = field(default_factory=dict)     # int8 binding tensor name -> scale
    conversions: int = 0                            # Cast / Reformat layers added for a binding
    removed: int = 0                                # conversions the formats made unnecessary

    def to_dict(self) -> dict:
        return {"conversions_added": self.conversions, "conversions_removed": self.removed}


def parse_format(text, what: str = "format") -> IOFormat:
    """``fp16``, ``int8:chw``, ``fp32:linear`` ... (case-insensitive)."""
    if isinstance(text, IOFormat):
        return text
    dtype, _, layout = str(text).strip().lower().partition(":")
    if dtype not in DTYPES:
        raise IOFormatError(f"{what}: {text!r} has type {dtype!r}; expected one of {', '.join(DTYPES)} "
                            "(optionally :linear)")
    layout = layout or "linear"
    if layout not in LAYOUTS:
        raise IOFormatError(f"{what}: {text!r} has layout {layout!r}; expected one of {', '.join(LAYOUTS)} "
                            "(chw is linear NCHW)")
    return IOFormat(dtype, "linear" if LAYOUTS[layout] is None else layout)


def physical_shape(shape, layout: str) -> tuple:
    """The binding's shape in ``layout`` for an NCHW ``shape``."""
    if LAYOUTS[layout] is None:
        return tuple(shape)
    kind, width = LAYOUTS[layout]
    n, c, h, w = shape
    blocks = -(-c // width)
    return (n, h, w, blocks * width) if kind == "hwc" else (n, blocks, h, w, width)


def parse_formats(source, what: str) -> dict[str, IOFormat]:
    """{binding name: IOFormat} from a mapping or from ``NAME=FORMAT`` strings (the command line's)."""
    if not source:
        return {}
    if isinstance(source, str):
        source = [source]
    items = source.items() if isinstance(source, dict) else [_split(entry, what) for entry in source]
    formats = {}
    for name, text in items:
        if name in formats:
            raise IOFormatError(f"{what}: {name!r} is given twice")
        formats[str(name)] = parse_format(text, f"{what} {name}")
    return formats


def _split(entry, what: str) -> tuple[str, str]:
    name, sep, text = str(entry).rpartition("=")
    if not sep or not name:
        raise IOFormatError(f"{what}: {entry!r} is not NAME=FORMAT (e.g. images=fp16, logits=int8)")
    return name, text


def to_plain(formats: dict[str, IOFormat]) -> dict[str, str] | None:
    return {name: str(fmt) for name, fmt in formats.items()} or None


def check_names(graph: Graph, inputs: dict, outputs: dict) -> None:
    """Every named binding exists and is float32 (a format converts the model's float32 bindings)."""
    known = {"input": {v.name: v for v in graph.inputs},
             "output": dict(zip(graph.output_names, graph.outputs))}
    for direction, formats in (("input", inputs), ("output", outputs)):
        for name, fmt in formats.items():
            value = known[direction].get(name)
            if value is None:
                raise IOFormatError(f"--{direction}-format {name}={fmt}: the model has no {direction} {name!r}; its "
                                    f"{direction}s are: {', '.join(known[direction]) or 'none'}")
            if value.dtype != DataType.FLOAT:
                raise IOFormatError(f"--{direction}-format {name}={fmt}: {direction} {name!r} is "
                                    f"{value.dtype.value}; formats convert float32 bindings only")
            if fmt.layout != "linear" and len(value.shape) != 4:
                raise IOFormatError(f"--{direction}-format {name}={fmt}: layout {fmt.layout} is a layout of NCHW "
                                    f"tensors; {direction} {name!r} has shape {tuple(value.shape)}")


def narrow_outputs(graph: Graph, outputs: dict) -> set[int]:
    """Ids of the output values asked for in fp16 or int8 (their producers need not stay fp32)."""
    return {id(v) for v, name in zip(graph.outputs, graph.output_names)
            if name in outputs and outputs[name].dtype != "fp32"}


def int8_outputs(graph: Graph, outputs: dict) -> set[int]:
    """Ids of the output values asked for in int8 (``apply_int8_codes``' ``code_outputs``)."""
    return {id(v) for v, name in zip(graph.outputs, graph.output_names)
            if name in outputs and outputs[name].dtype == "int8"}


def apply_io_formats(graph: Graph, inputs: dict, outputs: dict, scales: dict, code_scales: dict) -> IOReport:
    """Retype the bindings named in ``inputs`` / ``outputs`` and place the conversions (see the module doc).

    ``scales``: the build's activation scales (int8 inputs take theirs); ``code_scales``: int8 code tensors of
    ``edgert.int8_codes`` (which already made the int8 outputs it could codes)."""
    report = IOReport()
    for value in list(graph.inputs):
        fmt = inputs.get(value.name)
        if fmt is not None and fmt != IOFormat():
            _narrow_input(graph, value, fmt, scales, report)
    for index, name in enumerate(graph.output_names):
        fmt = outputs.get(name)
        if fmt is not None and fmt.dtype != "fp32":
            _narrow_output(graph, index, name, fmt, code_scales, report)
        if fmt is not None and fmt.layout != "linear":
            _output_layout(graph, index, fmt.layout, report)
    graph.toposort()
    return report


# -- inputs ----------------------------------------------------------------------------------------------------
def _narrow_input(graph: Graph, value: Value, fmt: IOFormat, scales: dict, report: IOReport) -> None:
    readers = list(value.uses())
    scale = None
    if fmt.dtype == "int8":
        scale = scales.get(value.name)
        if not scale:
            raise IOFormatError(f"--input-format {value.name}=int8: input {value.name!r} has no int8 scale; build "
                                "with --precision int8 and calibration (--calib), a Q/DQ pair on the input, or "
                                "ITensor.set_dynamic_range")
        report.scales[value.name] = float(scale)
    value.dtype = DTYPES[fmt.dtype]
    device = readers[0][0].device if readers else "cpu"
    source = value   # the binding's values in NCHW order
    if fmt.layout != "linear":
        source = _input_layout(graph, value, fmt.layout, device, scale, report)
    if fmt.dtype == "fp32":
        wide = source
    else:
        widen = _to_float(graph, source, scale, device, f"{value.name}_to_fp32" if scale is None else
                          f"dequantize({value.name})")
        wide = widen.outputs[0]
        report.conversions += 1
    for node, slot in readers:
        node.set_input(slot, wide)
    graph.outputs = [wide if v is value else v for v in graph.outputs]
    if fmt.dtype == "fp32":
        return
    for node, slot in list(wide.uses()):
        if fmt.dtype == "fp16" and _is_cast_to(node, DataType.HALF):
            _bypass(graph, node, source, report)
        elif fmt.dtype == "fp16" and _is_quantize(node):
            node.set_input(slot, source)   # quantizing float(h) or h gives the same codes
        elif fmt.dtype == "int8" and _is_quantize(node) and float(node.attrs["scale"]) == scale:
            _bypass(graph, node, source, report)
        elif fmt.dtype == "int8" and _reads_codes_at(node, slot, scale):
            node.set_input(slot, source)
    if not wide.uses() and all(v is not wide for v in graph.outputs):
        graph.remove_node(widen)
        report.conversions -= 1


# -- layouts: explicit Shuffle / Slice / Padding layers (they move int8 codes as they are) ------------------------
def _input_layout(graph: Graph, value: Value, layout: str, device: str, scale, report: IOReport) -> Value:
    """Retype the binding ``value`` to ``layout``'s shape; return the NCHW tensor of the layers converting it."""
    kind, width = LAYOUTS[layout]
    n, c, h, w = value.shape
    value.shape = physical_shape((n, c, h, w), layout)
    blocks = -(-c // width)
    if kind == "hwc":
        attrs = {"first_perm": [0, 3, 1, 2], "reshape": None, "second_perm": None}
    else:
        attrs = {"first_perm": [0, 1, 4, 2, 3], "reshape": [n, blocks * width, h, w], "second_perm": None}
    out = _layout_layer(graph, LayerKind.SHUFFLE, value, attrs, f"{value.name}_from_{layout}", device, scale, report)
    if blocks * width != c:
        attrs = {"starts": [0, 0, 0, 0], "sizes": [n, c, h, w], "steps": [1, 1, 1, 1]}
        out = _layout_layer(graph, LayerKind.SLICE, out, attrs, f"{value.name}_unpad_channels", device, scale,
                            report)
    return out


def _output_layout(graph: Graph, index: int, layout: str, report: IOReport) -> None:
    """The output ``index`` (NCHW) through the layers writing it in ``layout``."""
    value = graph.outputs[index]
    kind, width = LAYOUTS[layout]
    n, c, h, w = value.shape
    blocks = -(-c // width)
    scale = report.scales.get(value.name)
    device = value.producer().device if value.producer() is not None else "cpu"
    name = graph.output_names[index]
    out = value
    if blocks * width != c:
        attrs = {"mode": "constant", "pads": [0, 0, 0, 0, 0, blocks * width - c, 0, 0], "value": 0.0}
        out = _layout_layer(graph, LayerKind.PADDING, out, attrs, f"{name}_pad_channels", device, scale, report)
    if kind == "hwc":
        attrs = {"first_perm": [0, 2, 3, 1], "reshape": None, "second_perm": None}
    else:
        attrs = {"first_perm": None, "reshape": [n, blocks, width, h, w], "second_perm": [0, 1, 3, 4, 2]}
    out = _layout_layer(graph, LayerKind.SHUFFLE, out, attrs, f"{name}_to_{layout}", device, scale, report)
    graph.outputs[index] = out


def _layout_layer(graph: Graph, kind: LayerKind, value: Value, attrs: dict, name: str, device: str, scale,
                  report: IOReport) -> Value:
    node = graph.add_node(kind, [value], attrs, name=name)
    node.device = device
    node.precision = {DataType.HALF: "fp16", DataType.INT8: "int8"}.get(value.dtype, "fp32")
    infer_node(node)
    if scale is not None:   # int8 codes move through as they are, at the binding's scale
        report.scales[node.outputs[0].name] = float(scale)
    report.conversions += 1
    return node.outputs[0]


def _to_float(graph: Graph, value: Value, scale, device: str, name: str) -> Node:
    if scale is None:
        node = graph.add_node(LayerKind.CAST, [value], {"to": DataType.FLOAT.value}, name=name)
        node.precision = "fp32"
    else:
        node = _dequantize(graph, value, scale, device, name)
    node.device = device
    infer_node(node)
    return node


def _dequantize(graph: Graph, value: Value, scale: float, device: str, name: str) -> Node:
    attrs = {"from_device": device, "to_device": device, "from_layout": "linear", "to_layout": "linear",
             "from_precision": "int8", "to_precision": "fp32", "to_dtype": DataType.FLOAT.value,
             "scale": float(scale), "cost_ms": 0.0}
    node = graph.add_node(LayerKind.REFORMAT, [value], attrs, name=name)
    node.precision = "int8"
    return node


def _is_cast_to(node: Node, dtype: DataType) -> bool:
    return node.kind == LayerKind.CAST and DataType(node.attrs.get("to")) == dtype


def _is_quantize(node: Node) -> bool:
    return node.kind == LayerKind.REFORMAT and node.attrs.get("to_dtype") == DataType.INT8.value


def _reads_codes_at(node: Node, slot: int, scale: float) -> bool:
    from edgert.int8_codes import CODE_KINDS

    spec = node.attrs.get("int8") or {}
    scales = spec.get("input_scales") or []
    return node.kind in CODE_KINDS and not node.device.startswith("dla") and slot < len(scales) \
        and float(scales[slot]) == scale


def _bypass(graph: Graph, node: Node, value: Value, report: IOReport) -> None:
    """``node`` converts back to what ``value`` holds: its readers read ``value``."""
    graph.replace_all_uses(node.outputs[0], value)
    graph.remove_node(node)
    report.removed += 1


# -- outputs ---------------------------------------------------------------------------------------------------
def _narrow_output(graph: Graph, index: int, name: str, fmt: IOFormat, code_scales: dict, report) -> None:
    value = graph.outputs[index]
    others = [use for use in value.uses()]
    if fmt.dtype == "fp16":
        producer = value.producer()
        if producer is not None and _is_cast_to(producer, DataType.FLOAT) and not others \
                and producer.inputs[0].dtype == DataType.HALF and graph.outputs.count(value) == 1:
            graph.outputs[index] = producer.inputs[0]
            graph.remove_node(producer)
            report.removed += 1
            return
        node = graph.add_node(LayerKind.CAST, [value], {"to": DataType.HALF.value}, name=f"{name}_to_fp16")
        node.device = producer.device if producer is not None else "cpu"
        node.precision = "fp16"
        infer_node(node)
        graph.outputs[index] = node.outputs[0]
        report.conversions += 1
        return
    if value.dtype == DataType.INT8 and value.name in code_scales:   # edgert.int8_codes made it codes already
        report.scales[value.name] = float(code_scales[value.name])
        return
    scale = _output_scale(value)
    if scale is None:
        producer = value.producer()
        if producer is not None and producer.kind == LayerKind.CAST and producer.inputs[0].producer() is not None:
            producer = producer.inputs[0].producer()   # name the layer computing it, not the Cast after it
        what = f"layer {producer.name!r} ({producer.kind.value}, {producer.precision or 'fp32'})" \
            if producer is not None else "no layer"
        raise IOFormatError(f"--output-format {name}=int8: output {name!r} is produced by {what}; an int8 output "
                            "is written by an int8 layer (build with --precision int8 and calibration, or a "
                            "precision rule making that layer int8)")
    if graph.outputs.count(value) != 1:
        raise IOFormatError(f"--output-format {name}=int8: the tensor of output {name!r} is also another output")
    if others:   # the plan's own readers of the output keep reading values
        wide = _dequantize(graph, value, scale, value.producer().device, f"dequantize({value.name})")
        wide.device = value.producer().device
        infer_node(wide)
        for node, slot in others:
            node.set_input(slot, wide.outputs[0])
        report.conversions += 1
    value.dtype = DataType.INT8
    report.scales[value.name] = scale


def _output_scale(value: Value) -> float | None:
    """The scale the int8 layer producing ``value`` writes codes at (None: no int8 layer produces it)."""
    from edgert.int8_codes import CODE_KINDS

    producer = value.producer()
    if producer is None or producer.device.startswith("dla") or len(producer.outputs) != 1 \
            or value.dtype != DataType.FLOAT:
        return None
    spec = producer.attrs.get("int8")
    if spec and producer.kind in CODE_KINDS and spec.get("output_scale", 0) > 0:
        return float(spec["output_scale"])
    return None
