"""The ideal fp16 evaluation of a model: how much of an fp16 plan's error fp16 itself causes.

An fp16 plan stores its weights and activations in float16 and computes in float32 (tensor cores
accumulate in fp32; edgert's CUDA kernels compute float16 in float, and so do its CPU convolution, matrix
and Scale kernels, while its CPU PointWise programs round each step to float16, as this model rounds each
op's output). ``fp16_rounded(model)`` is
the model with exactly that rounding and nothing else: every float weight (initializers and Constant
nodes) rounded to float16 and back, and every float activation of the main graph passed through
Cast(float16) → Cast(float), graph inputs included. Like edgert's default fp16 build, the outputs of
numerically sensitive ops (softmax, normalizations, reductions, recurrent layers) and the graph's outputs
are not rounded. onnxruntime then evaluates it in float32 with its graph optimizations off (so that no
pass removes the Cast pairs). Its error against the fp32 reference is the *ideal* fp16 error: a model
whose ideal error already exceeds the numerics contract's fp16 bound is beyond fp16, whatever the
engine; an engine's own fp16 error should stay near its ideal.

The ideal rounds each weight of the model as written, before any folding: two equal constants round to
equal values, so a bias and the BatchNorm running mean that subtracts it again cancel exactly (RepViT's
token mixers). An engine that folds the BatchNorm into a scale and shift rounds the shift and the bias
apart and loses that; edgert subtracts them in float64 at build time instead (the shift_hoisting pass,
docs/corpus.md note (³)).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ops whose outputs an fp16 plan keeps in fp32 (edgert's SENSITIVE_KINDS, in ONNX terms)
FP32_OPS = frozenset({"Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
                      "RMSNormalization", "LpNormalization", "MeanVarianceNormalization", "LRN", "LSTM", "GRU", "RNN",
                      "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                      "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
# inputs that ONNX requires to be float32 whatever the data type: not weights (Resize's roi and scales)
_FLOAT_ONLY_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}
SUFFIX = "__fp16_rounded"


def _round_tensor(tensor: TensorProto) -> None:
    if tensor.data_type == TensorProto.FLOAT:
        values = numpy_helper.to_array(tensor)
        with np.errstate(over="ignore"):    # beyond 65504 an fp16 weight is inf, as in an fp16 plan
            rounded = values.astype(np.float16).astype(np.float32)
        tensor.CopyFrom(numpy_helper.from_array(rounded, tensor.name))


def _float_values(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    infos = list(graph.input) + list(graph.output) + list(graph.value_info)
    return {v.name for v in infos if v.type.tensor_type.elem_type == TensorProto.FLOAT}


def _round_pair(name: str, rounded: str) -> list:
    """Cast(float16) then Cast(float): ``name`` rounded to float16, as float32, in ``rounded``."""
    return [helper.make_node("Cast", [name], [rounded + "_half"], to=TensorProto.FLOAT16, name=rounded + "_to_half"),
            helper.make_node("Cast", [rounded + "_half"], [rounded], to=TensorProto.FLOAT, name=rounded + "_to_float")]


def fp16_rounded(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its weights and activations rounded to float16 (see the module docstring)."""
    model = onnx.shape_inference.infer_shapes(onnx.ModelProto.FromString(model.SerializeToString()))
    graph = model.graph
    float_values = _float_values(model)
    float_only = {node.input[i] for node in graph.node for i in _FLOAT_ONLY_INPUTS.get(node.op_type, ())
                  if i < len(node.input)}
    for tensor in graph.initializer:
        if tensor.name not in float_only:
            _round_tensor(tensor)
    outputs = {o.name for o in graph.output}
    initializers = {t.name for t in graph.initializer}
    renamed: dict[str, str] = {}     # value -> its rounded copy, for the graph inputs
    nodes = []
    for value in graph.input:
        if value.name in float_values and value.name not in initializers:
            renamed[value.name] = value.name + SUFFIX
            nodes += _round_pair(value.name, value.name + SUFFIX)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR and node.output[0] not in float_only:
                    _round_tensor(attribute.t)
        nodes.append(node)
        if node.op_type in FP32_OPS:
            continue
        for i, name in enumerate(node.output):
            if name and name in float_values and name not in outputs and name not in float_only:
                node.output[i] = name + SUFFIX + "_exact"
                nodes += _round_pair(name + SUFFIX + "_exact", name)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def fp16_ideal_outputs(model: onnx.ModelProto, feeds: dict) -> dict:
    """onnxruntime's outputs (CPU, float32, graph optimizations off) of ``fp16_rounded(model)``."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(fp16_rounded(model).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})))
