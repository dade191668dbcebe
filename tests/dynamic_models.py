"""Models for the dynamic-shape tests: an OCR-style text recognizer, and dynamic exports of the test models."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_text_recognizer(seed: int = 0, classes: int = 37) -> onnx.ModelProto:
    """N x 3 x 48 x W (N and W dynamic), as OCR exporters write a CRNN-style recognizer: strided convs with
    BatchNorm and ReLU, a (4, 1) max pool over height, a Reshape whose target is computed from Shape
    (N, C*H, W), Transpose to (N, T, C*H), a MatMul + Add classifier per time step and Softmax over classes."""
    rng = np.random.default_rng(seed)
    initializers, nodes = [], []

    def weight(name, array):
        initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def conv_bn_relu(x, c_in, c_out, name, stride):
        w = weight(f"{name}_w", (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (c_in * 9))).astype(np.float32))
        bn = [weight(f"{name}_{p}", a.astype(np.float32)) for p, a in
              (("scale", rng.uniform(0.5, 1.5, c_out)), ("bias", rng.normal(0, 0.2, c_out)),
               ("mean", rng.normal(0, 0.3, c_out)), ("var", rng.uniform(0.5, 2.0, c_out)))]
        nodes.append(helper.make_node("Conv", [x, w], [f"{name}_conv"], pads=[1, 1, 1, 1], strides=list(stride),
                                      kernel_shape=[3, 3], name=name))
        nodes.append(helper.make_node("BatchNormalization", [f"{name}_conv", *bn], [f"{name}_bn"], name=f"{name}_bn"))
        nodes.append(helper.make_node("Relu", [f"{name}_bn"], [f"{name}_out"], name=f"{name}_relu"))
        return f"{name}_out"

    x = conv_bn_relu("image", 3, 8, "conv1", (2, 2))        # 24 x ceil(W/2)
    x = conv_bn_relu(x, 8, 16, "conv2", (2, 2))             # 12 x ceil(W/4)
    nodes.append(helper.make_node("MaxPool", [x], ["pooled"], kernel_shape=[4, 1], strides=[4, 1], name="pool"))
    x = conv_bn_relu("pooled", 16, 16, "conv3", (1, 1))     # 16 x 3 x T
    nodes += [
        helper.make_node("Shape", [x], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", weight("batch_axis", np.array([0], np.int64))], ["batch"], axis=0),
        helper.make_node("Gather", ["shape", weight("time_axis", np.array([3], np.int64))], ["time"], axis=0),
        helper.make_node("Concat", ["batch", weight("minus_one", np.array([-1], np.int64)), "time"], ["target"],
                         axis=0, name="target"),
        helper.make_node("Reshape", [x, "target"], ["sequence"], name="to_sequence"),
        helper.make_node("Transpose", ["sequence"], ["steps"], perm=[0, 2, 1], name="time_major"),
    ]
    w = weight("fc_w", (rng.standard_normal((48, classes)) * 0.2).astype(np.float32))
    b = weight("fc_b", (rng.standard_normal(classes) * 0.1).astype(np.float32))
    nodes += [helper.make_node("MatMul", ["steps", w], ["scores"], name="classifier"),
              helper.make_node("Add", ["scores", b], ["logits"], name="classifier_bias"),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="softmax")]
    graph = helper.make_graph(nodes, "text_recognizer",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 48, "W"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "T", classes]),
                               helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", "T", classes])],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def dynamic_export(model: onnx.ModelProto, axes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """``model`` as an exporter with dynamic axes writes it: the given input axes become named dims, output
    shapes are left to inference, and Reshape targets that spell the batch as a literal 1 copy it (0) instead."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for info in model.graph.input:
        for axis in axes.get(info.name, ()):
            dim = info.type.tensor_type.shape.dim[axis]
            dim.Clear()
            dim.dim_param = f"{info.name}_{axis}"
    for info in model.graph.output:
        info.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    if any(0 in a for a in axes.values()):
        targets = {node.input[1] for node in model.graph.node if node.op_type == "Reshape"}
        for tensor in model.graph.initializer:
            if tensor.name in targets:
                array = numpy_helper.to_array(tensor).copy()
                if array.ndim == 1 and array.size and array[0] == 1:
                    array[0] = 0
                    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return model
