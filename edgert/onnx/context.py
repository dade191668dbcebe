"""The state an op importer works with: the IR graph under construction and ONNX-name lookups."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import BOUNDED_KINDS, LayerKind
from edgert.ir.shape_inference import infer_node

# ONNX TensorProto data types edgert can carry, by ONNX enum value.
ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: DataType.FLOAT,
    onnx.TensorProto.FLOAT16: DataType.HALF,
    onnx.TensorProto.DOUBLE: DataType.DOUBLE,
    onnx.TensorProto.INT8: DataType.INT8,
    onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.INT16: DataType.INT16,
    onnx.TensorProto.UINT16: DataType.UINT16,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.UINT32: DataType.UINT32,
    onnx.TensorProto.INT64: DataType.INT64,
    onnx.TensorProto.UINT64: DataType.UINT64,
    onnx.TensorProto.BOOL: DataType.BOOL,
}


def onnx_dtype(elem_type: int, where: str) -> DataType:
    try:
        return ONNX_DTYPES[elem_type]
    except KeyError:
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() \
            else str(elem_type)
        raise UnsupportedError(f"{where}: data type {name} is not supported "
                               f"(supported: {', '.join(d.value for d in ONNX_DTYPES.values())})") from None


def tensor_to_array(tensor: onnx.TensorProto, where: str) -> np.ndarray:
    onnx_dtype(tensor.data_type, where)
    try:
        return np.array(numpy_helper.to_array(tensor))
    except Exception as e:  # external data missing, malformed raw_data...
        raise ModelError(f"{where}: cannot read tensor {tensor.name!r}: {e}") from e


class ImportContext:
    """Maps ONNX value names to IR values while the importer walks the ONNX graph."""

    def __init__(self, graph: Graph, opset: int, fold_constants: bool = True):
        self.graph = graph
        self.opset = opset
        self.fold_constants = fold_constants
        self.values: dict[str, Value] = {}
        self.node: onnx.NodeProto | None = None  # the ONNX node being imported

    # -- reading the ONNX node -----------------------------------------------------------------
    @property
    def where(self) -> str:
        node = self.node
        return f"{node.op_type} node {node.name or (node.output[0] if node.output else '?')!r}" if node else "model"

    def input(self, index: int, required: bool = True) -> Value | None:
        node = self.node
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if required:
                raise ModelError(f"{self.where}: input {index} is required")
            return None
        try:
            return self.values[name]
        except KeyError:
            raise ModelError(f"{self.where}: input {name!r} is not produced by any earlier node, "
                             "initializer or graph input") from None

    def inputs(self) -> list[Value | None]:
        return [self.input(i, required=False) for i in range(len(self.node.input))]

    def num_inputs(self) -> int:
        """Number of inputs, not counting trailing empty (omitted) ones."""
        names = list(self.node.input)
        while names and not names[-1]:
            names.pop()
        return len(names)

    def attrs(self) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in self.node.attribute}

    def const_input(self, index: int, what: str, required: bool = True) -> np.ndarray | None:
        """The data of a constant input, or an UnsupportedError explaining it must be constant."""
        value = self.input(index, required)
        if value is None:
            return None
        if not value.is_const:
            source = _data_dependent_source(value)
            if source is not None:
                raise UnsupportedError(
                    f"{self.where}: {what} (input {index}, {self.node.input[index]!r}) depends on the number of rows "
                    f"{source.kind.value} layer {source.name!r} finds at run time, and edgert needs it at build time "
                    "(plans have static shapes; data-dependent sizes only flow through row-wise layers, see "
                    "edgert/ir/valid_rows.py); cut the graph before this node and do this step after edgert")
            raise UnsupportedError(f"{self.where}: {what} (input {index}, {self.node.input[index]!r}) must be a "
                                   "constant known at build time; give static input shapes with --shape so it can "
                                   "be folded")
        return value.const

    # -- building IR -----------------------------------------------------------------------------
    def constant(self, array, name: str = "const") -> Value:
        return self.graph.constant(np.asarray(array), name=name)

    def add(self, kind: LayerKind, inputs: Sequence[Value | None], attrs: dict | None = None, *,
            num_outputs: int = 1, name: str | None = None) -> list[Value]:
        """Add one IR layer, infer its output shapes, and fold it now if every input is constant."""
        onnx_name = self.node.name or (self.node.output[0] if self.node.output else self.node.op_type)
        node = self.graph.add_node(kind, inputs, attrs, name=name or onnx_name, num_outputs=num_outputs,
                                   origin=[onnx_name])
        try:
            infer_node(node)
        except ShapeError as e:
            raise ShapeError(f"{self.where}: {e}") from e
        if self.fold_constants and all(v is None or v.is_const for v in node.inputs):
            return self._fold(node)
        return list(node.outputs)

    def _fold(self, node: Node) -> list[Value]:
        from edgert.passes.constant_folding import fold
        return fold(self.graph, node)

    def check_rank(self, value: Value, ranks, what: str = "input") -> None:
        if len(value.shape) not in ranks:
            raise ShapeError(f"{self.where}: {what} {value.name!r} has rank {len(value.shape)} "
                             f"(shape {value.shape}); expected rank {' or '.join(map(str, ranks))}")


def _data_dependent_source(value: Value):
    """The NonZero / NMS layer whose run-time count ``value`` is computed from, or None."""
    seen, stack = set(), [value]
    while stack:
        current = stack.pop()
        producer = current.producer()
        if producer is None or id(current) in seen:
            continue
        seen.add(id(current))
        if producer.kind in BOUNDED_KINDS and current is producer.outputs[-1]:
            return producer
        stack += [v for v in producer.inputs if v is not None]
    return None
