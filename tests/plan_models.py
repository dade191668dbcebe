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
