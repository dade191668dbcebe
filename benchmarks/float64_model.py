"""An ONNX model with its float32 tensors made float64: the float64 reference evaluation of the corpus.

Initializers, Constant nodes, graph inputs/outputs/value_info of type float become double, and Cast /
CastLike / ConstantOfShape / RandomLike-style ``to``/``dtype`` attributes naming float become double,
so onnxruntime evaluates the same graph in double precision where it has double kernels.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

_FLOAT, _DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE


def _widen_tensor(tensor: onnx.TensorProto) -> None:
    if tensor.data_type == _FLOAT:
        wide = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)
        tensor.CopyFrom(wide)


def _widen_type(value_info: onnx.ValueInfoProto) -> None:
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type == _FLOAT:
        tensor_type.elem_type = _DOUBLE


# inputs that ONNX requires to stay float32 whatever the data type (Resize's roi and scales)
_FLOAT_ONLY_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}


def _widen_graph(graph: onnx.GraphProto) -> None:
    keep = {node.input[i] for node in graph.node for i in _FLOAT_ONLY_INPUTS.get(node.op_type, ())
            if i < len(node.input)}
    for tensor in graph.initializer:
        if tensor.name not in keep:
            _widen_tensor(tensor)
    for value_info in list(graph.input) + list(graph.output) + list(graph.value_info):
        _widen_type(value_info)
    for node in graph.node:
        if any(name in keep for name in node.output):
            continue
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                _widen_tensor(attr.t)
            elif attr.type == onnx.AttributeProto.INT and attr.name in ("to", "dtype") and attr.i == _FLOAT:
                attr.i = _DOUBLE
            elif attr.type == onnx.AttributeProto.GRAPH:
                _widen_graph(attr.g)


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    wide = onnx.ModelProto.FromString(model.SerializeToString())
    _widen_graph(wide.graph)
    return wide
