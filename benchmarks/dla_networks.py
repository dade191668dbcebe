"""Graphs of the networks NVIDIA's published DLA measurements used, for the timing-model fit (dla_timing.py).

Built with onnx.helper (random weights: the timing model sees shapes, not values), imported and optimized
as `edgert partition` does. Only the networks whose structure is public and plain enough to write down:

- ``resnet34_backbone``: torchvision's ResNet-34 body (7x7/2 stem, max pool, basic blocks [3, 4, 6, 3],
  no pooling head) at 1280x768, the input size of the "ResNet-34 backbone" row in NVIDIA's
  Deep-Learning-Accelerator-SW README. That ONNX file (backbone_rn34_1280x768_dummy.onnx, zenodo 8144349)
  is not available here; whether it ends at the body's last stage or includes an FPN is not documented,
  so this graph is the body only (an FPN would add about 17% of the MACs; see docs/benchmarks.md).
- ``ssd_resnet34``: MLPerf's SSD-ResNet-34 at 1200x1200 (mlcommons/inference,
  vision/classification_and_detection/python/models/ssd_r34.py and base_model.py): ResNet-34 up to its
  third stage with that stage's stride set to 1 (150x150 feature map), five extra 1x1 + 3x3 blocks, and per
  feature map a location and a class 3x3 convolution with stride 3 (81 classes; 4, 6, 6, 6, 4, 4 boxes).
  The graph ends at the twelve head convolutions, as DLA-SW's prepared model does (NMS runs on the GPU
  and is not part of the measured DLA engine).
- ``ssd_mobilenet_v1``: MLPerf's SSD-MobileNetV1 at 300x300 without pre/post-processing (see the function).
- ``dla_tutorial_model_bn``: ModelBN of NVIDIA-AI-IOT/jetson_dla_tutorial (four 3x3/2 convolutions with
  BatchNorm and ReLU, 3-64-128-256-512 channels, global average pool, Linear 512-10) at 32x32: a network
  whose time is almost all fixed costs (recorded, not fitted).
"""

from __future__ import annotations

import math

import numpy as np

RESNET34_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (channels, blocks, first stride)


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.initializers, self.count = [], [], 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def node(self, op: str, inputs: list, **attrs) -> str:
        from onnx import helper
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def weight(self, array: np.ndarray) -> str:
        from onnx import numpy_helper
        name = self.name("w")
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = True,
                group: int = 1, relu6: bool = False) -> str:
        w = self.rng.normal(0.0, math.sqrt(2.0 / (c_in // group * kernel * kernel)),
                            (c_out, c_in // group, kernel, kernel))
        y = self.node("Conv", [x, self.weight(w)], kernel_shape=[kernel, kernel], strides=[stride, stride],
                      pads=[kernel // 2] * 4, group=group)
        bn = [self.rng.uniform(0.5, 1.5, c_out), self.rng.normal(0, 0.1, c_out), self.rng.normal(0, 0.1, c_out),
              self.rng.uniform(0.5, 1.5, c_out)]
        y = self.node("BatchNormalization", [y] + [self.weight(a) for a in bn], epsilon=1e-5)
        if relu6:
            return self.node("Clip", [y, self.weight(np.array(0.0)), self.weight(np.array(6.0))])
        return self.node("Relu", [y]) if relu else y

    def basic_block(self, x: str, c_in: int, c_out: int, stride: int) -> str:
        y = self.conv_bn(self.conv_bn(x, c_in, c_out, 3, stride), c_out, c_out, 3, relu=False)
        shortcut = x if stride == 1 and c_in == c_out else self.conv_bn(x, c_in, c_out, 1, stride, relu=False)
        return self.node("Relu", [self.node("Add", [y, shortcut])])


def resnet34_backbone_model(height: int = 768, width: int = 1280, seed: int = 0):
    """torchvision ResNet-34 without avgpool/fc, NCHW input 1x3xHxW: an ``onnx.ModelProto``."""
    from onnx import TensorProto, helper
    b = _Builder(seed)
    x = b.conv_bn("input", 3, 64, 7, stride=2)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for channels, blocks, stride in RESNET34_STAGES:
        for i in range(blocks):
            x = b.basic_block(x, c_in, channels, stride if i == 0 else 1)
            c_in = channels
    out = b.node("Identity", [x])
    graph = helper.make_graph(b.nodes, "resnet34_backbone",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def ssd_resnet34_model(size: int = 1200, seed: int = 0):
    """MLPerf SSD-ResNet-34 without box decoding and NMS; outputs are the 12 head convolutions."""
    from onnx import TensorProto, helper
    b = _Builder(seed)
    x = b.conv_bn("input", 3, 64, 7, stride=2)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for channels, blocks, stride in RESNET34_STAGES[:3]:
        for i in range(blocks):
            first_stride = 1 if channels == 256 else stride  # MLPerf: conv_4x (third stage) at stride 1
            x = b.basic_block(x, c_in, channels, first_stride if i == 0 else 1)
            c_in = channels
    features = [x]
    extra = ((256, 256, 512, 2, 1), (512, 256, 512, 2, 1), (512, 128, 256, 2, 1), (256, 128, 256, 2, 0),
             (256, 128, 256, 1, 0))  # (in, middle, out, stride, pad) of each extra block
    for c_in, middle, c_out, stride, pad in extra:
        y = b.node("Relu", [b.node("Conv", [x, b.weight(b.rng.normal(0, 0.05, (middle, c_in, 1, 1)))],
                                   kernel_shape=[1, 1])])
        x = b.node("Relu", [b.node("Conv", [y, b.weight(b.rng.normal(0, 0.05, (c_out, middle, 3, 3)))],
                                   kernel_shape=[3, 3], strides=[stride, stride], pads=[pad] * 4)])
        features.append(x)
    outputs = []
    for feature, boxes, channels in zip(features, (4, 6, 6, 6, 4, 4), (256, 512, 512, 256, 256, 256)):
        for per_box in (4, 81):
            w = b.weight(b.rng.normal(0, 0.05, (boxes * per_box, channels, 3, 3)))
            outputs.append(b.node("Conv", [feature, w, b.weight(np.zeros(boxes * per_box))], kernel_shape=[3, 3],
                                  strides=[3, 3], pads=[1, 1, 1, 1]))
    graph = helper.make_graph(b.nodes, "ssd_resnet34",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


MOBILENET_V1 = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))


def ssd_mobilenet_v1_model(size: int = 300, seed: int = 0):
    """MLPerf's SSD-MobileNetV1 (TF object detection ssd_mobilenet_v1_coco_2018_01_28) without preprocessing,
    box decoding and NMS: MobileNetV1 with ReLU6, feature maps at conv 11 (19x19x512) and conv 13
    (10x10x1024), four extra 1x1 + 3x3/2 blocks, and 1x1 box predictors (3 anchors on the first map, 6 on
    the others; 4 coordinates, 91 classes)."""
    from onnx import TensorProto, helper
    b = _Builder(seed)
    x, c_in = b.conv_bn("input", 3, 32, 3, stride=2, relu6=True), 32
    features = []
    for i, (channels, stride) in enumerate(MOBILENET_V1):
        x = b.conv_bn(x, c_in, c_in, 3, stride=stride, group=c_in, relu6=True)
        x, c_in = b.conv_bn(x, c_in, channels, 1, relu6=True), channels
        if i in (10, 12):
            features.append((x, channels))
    for middle, c_out in ((256, 512), (128, 256), (128, 256), (64, 128)):
        y = b.conv_bn(x, c_in, middle, 1, relu6=True)
        x, c_in = b.conv_bn(y, middle, c_out, 3, stride=2, relu6=True), c_out
        features.append((x, c_out))
    outputs = []
    for (feature, channels), anchors in zip(features, (3, 6, 6, 6, 6, 6)):
        for per_anchor in (4, 91):
            w = b.weight(b.rng.normal(0, 0.05, (anchors * per_anchor, channels, 1, 1)))
            outputs.append(b.node("Conv", [feature, w, b.weight(np.zeros(anchors * per_anchor))], kernel_shape=[1, 1]))
    graph = helper.make_graph(b.nodes, "ssd_mobilenet_v1",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def dla_tutorial_model_bn_model(size: int = 32, seed: int = 0):
    from onnx import TensorProto, helper
    b = _Builder(seed)
    x, c_in = "input", 3
    for channels in (64, 128, 256, 512):
        x, c_in = b.conv_bn(x, c_in, channels, 3, stride=2), channels
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    x = b.node("Gemm", [x, b.weight(b.rng.normal(0, 0.05, (10, 512))), b.weight(np.zeros(10))], transB=1)
    graph = helper.make_graph(b.nodes, "dla_tutorial_model_bn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def optimized_graph(model):
    """``model`` as `edgert partition` sees it (imported, optimized by the default pipeline)."""
    from edgert.onnx.importer import import_model
    from edgert.passes import optimize
    graph = import_model(model, None)
    optimize(graph)
    return graph


def resnet34_backbone_graph(height: int = 768, width: int = 1280):
    return optimized_graph(resnet34_backbone_model(height, width))


def ssd_resnet34_graph(size: int = 1200):
    return optimized_graph(ssd_resnet34_model(size))
