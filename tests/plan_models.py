"""A small CNN whose plan exercises the layer kinds crafted-plan tests mutate (convolution with a fused
activation, max and average pooling, reshape, matrix product, concatenation, softmax), and helpers to
decode a plan, change it and write it back with a valid checksum."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

import edgert
from edgert.plan import read_plan, write_plan

INPUT_SHAPE = (1, 3, 12, 12)
OUTPUT_SHAPE = (1, 10)


def small_cnn() -> onnx.ModelProto:
    rng = np.random.default_rng()

    def weight(name, shape):
        return onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["m"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["r"], ["a"], name="avgpool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["m", "a"], ["cat"], name="concat", axis=1),
        helper.make_node("Reshape", ["cat", "shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "fc"], ["logits0"], name="fc"),
        helper.make_node("Add", ["logits0", "fc_bias"], ["logits"], name="fc_add"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    initializers = [weight("w", (4, 3, 3, 3)), weight("b", (4,)), weight("fc", (288, 10)), weight("fc_bias", (10,)),
                    onnx.numpy_helper.from_array(np.array([1, 288], np.int64), "shape")]
    graph = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                 list(INPUT_SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(OUTPUT_SHAPE))],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def decoded(plan_bytes: bytes) -> dict:
    """A mutable copy of a plan's document (the blob as bytes, not a view of ``plan_bytes``)."""
    document = read_plan(plan_bytes)
    document["blob"] = bytes(document["blob"])
    return document


def resigned(document: dict) -> bytes:
    """``document`` written back with a valid checksum, as an attacker with the writer would."""
    return write_plan(document)


def layer_of_kind(document: dict, kind: str) -> dict:
    return next(layer for layer in document["layers"] if layer["kind"] == kind)


def build_small_cnn() -> bytes:
    return edgert.build(small_cnn()).to_bytes()


WIDE_INPUT_SHAPE = (1, 4, 6, 6)


def wide_model() -> onnx.ModelProto:
    """More kinds: padding, depthwise convolution, LRN, resize, slice, transpose, gather, normalization, reduce,
    a comparison, cast and a fused PointWise chain (output (1, 4, 6, 6), float32)."""
    rng = np.random.default_rng()

    def const(name, array):
        return onnx.numpy_helper.from_array(np.asarray(array), name)

    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="reflect"),
        helper.make_node("Conv", ["p", "dw"], ["d"], name="depthwise", group=4),
        helper.make_node("Sigmoid", ["d"], ["s"], name="sigmoid"),
        helper.make_node("Mul", ["d", "s"], ["sw"], name="swish"),
        helper.make_node("LRN", ["sw"], ["l"], name="lrn", size=3),
        helper.make_node("Resize", ["l", "", "scales"], ["up"], name="resize", mode="linear"),
        helper.make_node("Slice", ["up", "starts", "ends", "axes", "steps"], ["sl"], name="slice"),
        helper.make_node("Transpose", ["sl"], ["t"], name="transpose", perm=[0, 1, 3, 2]),
        helper.make_node("Gather", ["t", "idx"], ["g"], name="gather", axis=1),
        helper.make_node("LayerNormalization", ["g", "gamma", "beta"], ["n"], name="norm", axis=-1),
        helper.make_node("ReduceMean", ["n", "raxes"], ["r"], name="reduce", keepdims=1),
        helper.make_node("Greater", ["n", "r"], ["gt"], name="greater"),
        helper.make_node("Cast", ["gt"], ["gtf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Add", ["n", "gtf"], ["a"], name="add"),
        helper.make_node("Neg", ["a"], ["ng"], name="neg"),
        helper.make_node("Tanh", ["ng"], ["th"], name="tanh"),
        helper.make_node("Mul", ["th", "half"], ["y"], name="half"),
    ]
    initializers = [
        const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
        const("dw", rng.standard_normal((4, 1, 3, 3)).astype(np.float32)),
        const("scales", np.array([1, 1, 2, 2], np.float32)),
        const("starts", np.array([1, 1], np.int64)), const("ends", np.array([13, 13], np.int64)),
        const("axes", np.array([2, 3], np.int64)), const("steps", np.array([2, 2], np.int64)),
        const("idx", np.array([3, 0, 2, 1], np.int64)),
        const("gamma", rng.standard_normal(6).astype(np.float32)),
        const("beta", rng.standard_normal(6).astype(np.float32)),
        const("raxes", np.array([2], np.int64)), const("half", np.array([0.5], np.float32)),
    ]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          list(WIDE_INPUT_SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
