"""Semantic validation of a decoded plan, run by ``edgert.load`` before any kernel is bound.

``edgert.plan_schema`` has already checked the document's structure (types, ids in range, constants
inside the blob, arena offsets inside the arena). This module checks what the document *means*, so
that a plan crafted with a valid checksum can never reach a kernel with sizes that disagree with its
tensors:

- every layer's kind is one this edgert runs, on a known device, with attrs of the right types and
  ranges (``attr_schema``), fused epilogues and PointWise programs included;
- every layer's output dtypes and shapes are recomputed from its input tensors and attrs by the very
  shape rules the builder uses (``edgert.ir.shapes``) and must equal the plan's tensors;
- every tensor a layer reads exists by then (a graph input, a constant or an earlier layer's output),
  no layer writes a constant or a graph input, every graph output is written;
- arena placements keep each tensor aligned to its element size and never put a constant or an input
  in the arena; the arena alignment is a sane power of two;
- plans with auxiliary streams (``edgert.streams``): every layer names a stream in range, waits name earlier
  layers on other streams, and every layer's producers are ordered before it (no interleaving reads early).

Every failure is a one-line ``PlanError`` naming the layer or tensor. Needs NumPy only (no onnx).
"""

from __future__ import annotations

import re

import numpy as np

from edgert.errors import EdgeRTError, PlanError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import POINTWISE_KINDS, LayerKind
from edgert.ir.shape_inference import rule_for
from edgert.runtime.attr_schema import SCHEMAS, check_attrs, fail, is_int
from edgert.streams import check_layers as check_stream_fields

_DEVICE = re.compile(r"cpu|gpu|dla(:\d{1,2})?")
MAX_ALIGNMENT = 1 << 16


class _Tensor:
    """What a shape rule reads of a value: name, dtype, shape and, for constants, the data."""

    __slots__ = ("name", "dtype", "shape", "const")

    def __init__(self, name: str, dtype: DataType, shape: tuple, const: np.ndarray | None = None):
        self.name, self.dtype, self.shape, self.const = name, dtype, shape, const

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def size(self) -> int:
        return _count(self.shape)


class _Layer:
    """What a shape rule reads of a node."""

    __slots__ = ("name", "kind", "attrs", "inputs", "outputs")

    def __init__(self, name: str, kind: LayerKind, attrs: dict, inputs: list, outputs: list):
        self.name, self.kind, self.attrs, self.inputs, self.outputs = name, kind, attrs, tuple(inputs), tuple(outputs)


def validate_plan(document: dict) -> None:
    """Raise PlanError unless every layer of ``document`` agrees with its tensors (see the module doc)."""
    tensors = [_Tensor(t["name"], DataType(t["dtype"]), tuple(t["shape"])) for t in document["tensors"]]
    for entry in document["constants"]:
        tensor = tensors[entry["tensor"]]
        tensor.const = np.frombuffer(document["blob"], tensor.dtype.numpy, count=_count(tensor.shape),
                                     offset=entry["offset"]).reshape(tensor.shape)
    constant_ids = {entry["tensor"] for entry in document["constants"]}
    input_ids = {b["tensor"] for b in document["bindings"]["inputs"]}
    _check_bindings(document, tensors, constant_ids)
    written = set(input_ids | constant_ids)
    for index, layer in enumerate(document["layers"]):
        kind = _kind(layer["kind"], f"layer {index} {layer['name']!r}")
        where = f"layer {index} {layer['name']!r} ({kind.value})"
        attrs = layer.get("attrs") or {}
        device = layer.get("device", "cpu")
        if not isinstance(device, str) or not _DEVICE.fullmatch(device):
            fail(where, f"is placed on {device!r}, expected cpu, gpu or dla:N")
        check_attrs(kind, attrs, where)
        for tensor_id in layer["inputs"]:
            if tensor_id >= 0 and tensor_id not in written:
                fail(where, f"reads tensor {tensor_id} ({tensors[tensor_id].name!r}) before any layer writes it")
        for tensor_id in layer["outputs"]:
            if tensor_id in constant_ids or tensor_id in input_ids:
                fail(where, f"writes tensor {tensor_id} ({tensors[tensor_id].name!r}), a constant or graph input")
        inputs = [tensors[i] if i >= 0 else None for i in layer["inputs"]]
        outputs = [tensors[i] for i in layer["outputs"]]
        node = _Layer(layer["name"], kind, attrs, inputs, outputs)
        _check_shapes(node, where)
        if kind == LayerKind.POINTWISE:
            _check_program(node, where)
        _check_epilogue(node, where)
        _check_int8(node, where)
        _check_codes(layer, kind, attrs, document["tensors"], where)
        written.update(layer["outputs"])
    for binding in document["bindings"]["outputs"]:
        if binding["tensor"] not in written:
            fail(f"output binding {binding['name']!r}", f"names tensor {binding['tensor']}, which no layer writes")
    _check_memory(document, tensors, constant_ids | input_ids)
    check_stream_fields(document["layers"], fail)


def _count(shape) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _kind(name, where: str) -> LayerKind:
    try:
        kind = LayerKind(name)
    except ValueError:
        raise PlanError(f"{where} has unknown kind {name!r}; the plan needs a newer edgert") from None
    if kind not in SCHEMAS:
        fail(where, f"has kind {kind.value}, which this edgert cannot run")
    return kind


def _check_bindings(document: dict, tensors: list, constant_ids: set) -> None:
    for direction in ("inputs", "outputs"):
        names, seen = set(), set()
        for binding in document["bindings"][direction]:
            where = f"{direction[:-1]} binding {binding['name']!r}"
            if binding["name"] in names or binding["tensor"] in seen:
                fail(where, "repeats the name or the tensor of another binding")
            if direction == "inputs" and binding["tensor"] in constant_ids:
                fail(where, "is bound to a constant")
            names.add(binding["name"])
            seen.add(binding["tensor"])


def _run_rule(node: _Layer, where: str) -> list:
    """The shape rule's (dtype, shape) per output; any failure of the rule on these attrs is a PlanError."""
    rule = rule_for(node.kind)
    if rule is None:
        fail(where, f"has kind {node.kind.value}, which has no shape rule")
    try:
        results = rule(node)
        return [(DataType(dtype), tuple(int(d) for d in shape)) for dtype, shape in results]
    except EdgeRTError as e:
        raise PlanError(f"plan is corrupt: {where}: {e}") from None
    except Exception as e:  # noqa: BLE001 -- attrs of a crafted plan can break a rule in any way
        raise PlanError(f"plan is corrupt: {where} has attrs its {node.kind.value} shape rule cannot use "
                        f"({type(e).__name__}: {str(e)[:120]})") from None


def _check_shapes(node: _Layer, where: str) -> None:
    results = _run_rule(node, where)
    if len(results) != len(node.outputs):
        fail(where, f"has {len(node.outputs)} outputs, a {node.kind.value} layer with these inputs has "
                    f"{len(results)}")
    for tensor, (dtype, shape) in zip(node.outputs, results):
        # an int8 layer reads codes or values and writes either (edgert.int8_codes, edgert.io_formats)
        either = bool(node.attrs.get("int8")) and {dtype, tensor.dtype} <= {DataType.INT8, DataType.FLOAT}
        if shape != tensor.shape or (dtype != tensor.dtype and not either):
            fail(where, f"computes {dtype.value} {shape} from its inputs, but its output tensor {tensor.name!r} "
                        f"is {tensor.dtype.value} {tensor.shape}")


def _check_epilogue(node: _Layer, where: str) -> None:
    steps = node.attrs.get("epilogue") or []
    if not steps:
        return
    out_shape = node.outputs[0].shape
    for position, step in enumerate(steps):
        at = f"{where} epilogue step {position}"
        if not isinstance(step, dict) or step.get("op") not in ("activation", "add"):
            fail(at, "is neither an activation nor an add")
        if step["op"] == "activation":
            check_attrs(LayerKind.ACTIVATION, {k: v for k, v in step.items() if k != "op"}, at)
            continue
        slot = step.get("input")
        if not is_int(slot) or not 0 <= slot < len(node.inputs) or node.inputs[slot] is None:
            fail(at, f"adds input {slot!r}, but the layer has {len(node.inputs)} inputs")
        if _broadcast(node.inputs[slot].shape, out_shape) != out_shape:
            fail(at, f"adds a tensor of shape {node.inputs[slot].shape} to the output {out_shape}")


def _check_int8(node: _Layer, where: str) -> None:
    """int8 scales the int8 kernels can use: activation scales 0 (not quantized) or positive, the first one set
    for convolutions and matrix products, one weight scale per output channel."""
    spec = node.attrs.get("int8")
    if not spec:
        return
    scales = spec.get("input_scales") or []
    if any(not (scale == 0 or 0 < scale < float("inf")) for scale in scales):
        fail(where, f"has int8 input scales {scales}; each must be 0 (not quantized) or positive and finite")
    if node.kind not in (LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY):
        return
    if not scales or not scales[0] > 0:
        fail(where, f"has int8 input scales {scales}; the first (its input's) must be positive")
    weights = spec.get("weight_scales")
    w = node.inputs[1] if len(node.inputs) > 1 else None
    if weights is not None and w is not None:
        axis = 0 if node.kind == LayerKind.CONVOLUTION or node.attrs.get("trans_b") else 1
        if len(w.shape) < 2 or len(weights) != w.shape[axis]:
            fail(where, f"has {len(weights)} int8 weight scales for weights of shape {w.shape} (one per output "
                        "channel)")


# Layers that only move values: they may move int8 codes as they are (edgert.int8_codes "carriers").
CODE_CARRIER_KINDS = frozenset({LayerKind.SHUFFLE, LayerKind.SLICE, LayerKind.CONCATENATION, LayerKind.RESIZE,
                                LayerKind.PADDING, LayerKind.IDENTITY})


def _check_codes(layer: dict, kind: LayerKind, attrs: dict, tensors: list, where: str) -> None:
    """int8 code tensors (format 3: dtype int8 with a scale) are written and read at their own scale: by int8
    layers (``output_scale`` / ``input_scales[slot]``) or by the quantize / dequantize Reformat layers."""
    spec = attrs.get("int8") or {}
    reformat = kind == LayerKind.REFORMAT and attrs.get("to_dtype") is not None
    if reformat and attrs.get("scale") is None:
        fail(where, f"converts to {attrs['to_dtype']} without an int8 scale")
    if kind in CODE_CARRIER_KINDS and not spec and not reformat:
        _check_carrier(layer, tensors, where)
        return
    for slot, tensor_id in enumerate(layer["inputs"]):
        tensor = tensors[tensor_id] if tensor_id >= 0 else {}
        if "scale" not in tensor:
            continue
        scales = spec.get("input_scales") or []
        reads = attrs.get("scale") if reformat and slot == 0 else scales[slot] if slot < len(scales) else None
        if reads != tensor["scale"]:
            fail(where, f"reads the int8 codes of tensor {tensor['name']!r} (scale {tensor['scale']}) at scale "
                        f"{reads}; codes are read by int8 layers and Reformat layers at their own scale")
    for tensor_id in layer["outputs"]:
        tensor = tensors[tensor_id]
        writes = attrs.get("scale") if reformat else spec.get("output_scale") if spec else None
        if "scale" in tensor and writes != tensor["scale"]:
            fail(where, f"writes the int8 codes of tensor {tensor['name']!r} (scale {tensor['scale']}) at scale "
                        f"{writes}")
        if tensor["dtype"] == "int8" and "scale" not in tensor and (spec or reformat):
            fail(where, f"writes int8 tensor {tensor['name']!r} as codes, but the tensor has no scale")


def _check_carrier(layer: dict, tensors: list, where: str) -> None:
    """A data-movement layer moving int8 codes: every code input and its output hold codes of one scale."""
    read = {tensors[i].get("scale") for i in layer["inputs"] if i >= 0 and tensors[i]["dtype"] == "int8"}
    written = {tensors[i].get("scale") for i in layer["outputs"]}
    codes = read | written
    if codes - {None} and len(read | written) != 1:
        names = [tensors[i]["name"] for i in [*layer["inputs"], *layer["outputs"]] if i >= 0]
        fail(where, f"moves int8 codes between tensors {names} of scales {sorted(codes, key=str)}; a layer that "
                    "moves codes reads and writes codes of one scale")
    if codes - {None} and not copies_values(LayerKind(layer["kind"]), layer.get("attrs") or {}):
        fail(where, "moves int8 codes but computes new values (interpolation, a nonzero pad value); only layers "
                    "that copy values move codes")


def copies_values(kind: LayerKind, attrs: dict) -> bool:
    """Whether a layer of ``CODE_CARRIER_KINDS`` only copies values (or writes zeros, whose int8 code is 0)."""
    if kind == LayerKind.RESIZE:
        return attrs.get("mode", "nearest") == "nearest" and attrs.get("coordinate_mode") != "tf_crop_and_resize"
    if kind == LayerKind.PADDING:
        mode = str(getattr(attrs.get("mode"), "value", attrs.get("mode", "constant")))
        return mode != "constant" or float(attrs.get("value", 0.0) or 0.0) == 0.0
    return kind in CODE_CARRIER_KINDS


def _broadcast(*shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _check_program(node: _Layer, where: str) -> None:
    """A PointWise program: known per-element kinds, registers defined before use, shapes that fit the output."""
    program = node.attrs["program"]
    if not isinstance(program, list) or not program:
        fail(where, "has a PointWise program that is not a non-empty list")
    registers = list(node.inputs)
    out = node.outputs[0]
    for position, instruction in enumerate(program):
        at = f"{where} instruction {position}"
        if not isinstance(instruction, dict) or not isinstance(instruction.get("attrs"), dict) or \
                not isinstance(instruction.get("args"), list):
            fail(at, "is not a map with kind, attrs and args")
        kind = _kind(instruction.get("kind"), at)
        if kind not in POINTWISE_KINDS:
            fail(at, f"has kind {kind.value}, which a PointWise program cannot hold")
        check_attrs(kind, instruction["attrs"], at)
        args = instruction["args"]
        if not all(is_int(r) and -1 <= r < len(registers) for r in args) or all(r == -1 for r in args):
            fail(at, f"reads registers {args}, but only {len(registers)} are defined")
        result = _Tensor(f"register {len(registers)}", out.dtype, ())
        (dtype, result.shape), = _run_rule(_Layer(at, kind, instruction["attrs"],
                                                  [registers[r] if r >= 0 else None for r in args], [result]), at)
        if _broadcast(result.shape, out.shape) != out.shape:
            fail(at, f"computes shape {result.shape}, which does not broadcast to the output {out.shape}")
        registers.append(result)
    if registers[-1].shape != out.shape:
        fail(where, f"program ends with shape {registers[-1].shape}, its output is {out.shape}")


def _check_overlaps(document: dict, tensors: list, placed: dict) -> None:
    """Pooling and convolution kernels may write over their input only from its first byte, with output planes
    no larger than the input's (the native kernels read each plane before writing it, and refuse anything else)."""
    for index, layer in enumerate(document["layers"]):
        if layer["kind"] not in (LayerKind.POOLING.value, LayerKind.CONVOLUTION.value) or not layer["inputs"]:
            continue
        source, target = layer["inputs"][0], layer["outputs"][0]
        if source not in placed or target not in placed or placed[source][0] != placed[target][0]:
            continue
        (_, x_at, x_bytes), (_, out_at, out_bytes) = placed[source], placed[target]
        if out_at < x_at + x_bytes and x_at < out_at + out_bytes and not (
                out_at == x_at and _count(tensors[target].shape[2:]) <= _count(tensors[source].shape[2:])):
            fail(f"layer {index} {layer['name']!r} ({layer['kind']})", "writes over its input in the arena other than "
                 "from its first byte with planes no larger than the input's")


def _check_memory(document: dict, tensors: list, unplaced: set) -> None:
    memory = document.get("memory") or {}
    alignment = memory.get("alignment", 256)
    if not is_int(alignment) or not 1 <= alignment <= MAX_ALIGNMENT or alignment & (alignment - 1):
        fail("memory.alignment", f"is {alignment!r}, expected a power of two up to {MAX_ALIGNMENT}")
    placed = {}
    for name, pool in (memory.get("pools") or {}).items():
        if "offsets" not in pool:
            fail(f"memory pool {name!r}", "has no offsets")
        for tensor_id, offset in pool["offsets"]:
            tensor = tensors[tensor_id]
            placed[tensor_id] = (name, offset, _count(tensor.shape) * tensor.dtype.itemsize)
            if tensor_id in unplaced:
                fail(f"memory pool {name!r}", f"places tensor {tensor_id} ({tensor.name!r}), a constant or graph "
                                              "input, in the arena")
            if offset % tensor.dtype.itemsize:
                fail(f"memory pool {name!r}", f"places tensor {tensor_id} at offset {offset}, not a multiple of "
                                              f"its element size {tensor.dtype.itemsize}")
    _check_overlaps(document, tensors, placed)
