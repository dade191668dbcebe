"""Deterministic test models in the shapes real exporters produce, built with onnx.helper.

Each builder returns an ``onnx.ModelProto`` whose weights come from a seeded NumPy generator at
realistic scales (He-initialised convolutions, batch-norm statistics far from identity so a dropped
or misapplied BN shows up in the error). ``MODELS`` maps a name to the builder and the input shapes
to build and run it with:

    case = MODELS["resnet"]; model = case.build(); shapes = case.shapes
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT64_MAX = np.iinfo(np.int64).max


class GraphBuilder:
    """Accumulates nodes and weights; every weight is an initializer, or (``weights_as_constants``)
    a ``Constant`` node followed by an Identity chain, as some exporters write them."""

    def __init__(self, seed: int, opset: int = 17, weights_as_constants: bool = False):
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.weights_as_constants = weights_as_constants
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    def fresh(self, prefix: str) -> str:
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        return f"{prefix}_{self._counts[prefix]}"

    def node(self, op_type: str, inputs: Sequence[str], num_outputs: int = 1, name: str | None = None,
             **attrs) -> str | list[str]:
        name = name or self.fresh(op_type.lower())
        outputs = [f"{name}_out" if num_outputs == 1 else f"{name}_out{i}" for i in range(num_outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs[0] if num_outputs == 1 else outputs

    def weight(self, prefix: str, array, identity_chain: bool = True) -> str:
        array = np.asarray(array)
        name = self.fresh(prefix)
        tensor = numpy_helper.from_array(array, name)
        if not self.weights_as_constants:
            self.initializers.append(tensor)
            return name
        out = self.node("Constant", [], name=f"{name}_const", value=tensor)
        for _ in range((1 + self._counts[prefix] % 2) if identity_chain else 0):  # Identity chains of length 1 or 2
            out = self.node("Identity", [out])
        return out

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
              name: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        ir_version = 6 if self.opset <= 11 else 8
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  ir_version=ir_version, producer_name="edgert-tests")
        onnx.checker.check_model(model, full_check=True)
        return model

    # -- layers --------------------------------------------------------------------------------
    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1, group: int = 1,
             bias: bool = False, pad: int | None = None) -> str:
        fan_in = c_in // group * kernel * kernel
        w = self.rng.normal(0.0, math.sqrt(2.0 / fan_in), (c_out, c_in // group, kernel, kernel))
        inputs = [x, self.weight("conv_w", w.astype(np.float32))]
        if bias:
            inputs.append(self.weight("conv_b", self.rng.normal(0.0, 0.1, c_out).astype(np.float32)))
        pad = kernel // 2 if pad is None else pad
        return self.node("Conv", inputs, kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad] * 4, group=group)

    def batch_norm(self, x: str, channels: int, gamma_range=(0.5, 1.5)) -> str:
        rng = self.rng
        params = [rng.uniform(*gamma_range, channels), rng.normal(0.0, 0.2, channels),
                  rng.normal(0.0, 0.5, channels), rng.uniform(0.5, 2.0, channels)]
        names = [self.weight(p, a.astype(np.float32)) for p, a in zip(("bn_scale", "bn_bias", "bn_mean", "bn_var"),
                                                                        params)]
        return self.node("BatchNormalization", [x, *names], epsilon=1e-5)

    def conv_bn(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1, group: int = 1,
                gamma_range=(0.5, 1.5)) -> str:
        return self.batch_norm(self.conv(x, c_in, c_out, kernel, stride, group), c_out, gamma_range)

    def relu6(self, x: str) -> str:
        # Exporters feed Clip's bounds straight from Constant nodes, without Identity chains.
        low = self.weight("clip_min", np.array(0.0, np.float32), identity_chain=False)
        high = self.weight("clip_max", np.array(6.0, np.float32), identity_chain=False)
        return self.node("Clip", [x, low, high])

    def gemm(self, x: str, c_in: int, c_out: int) -> str:
        w = self.rng.normal(0.0, 1.0 / math.sqrt(c_in), (c_out, c_in)).astype(np.float32)
        b = self.rng.normal(0.0, 0.1, c_out).astype(np.float32)
        return self.node("Gemm", [x, self.weight("fc_w", w), self.weight("fc_b", b)], transB=1)

    def linear(self, x: str, c_in: int, c_out: int) -> str:
        """MatMul + Add bias, as transformer exports write a Linear layer."""
        w = self.rng.normal(0.0, 1.0 / math.sqrt(c_in), (c_in, c_out)).astype(np.float32)
        b = self.rng.normal(0.0, 0.1, c_out).astype(np.float32)
        return self.node("Add", [self.node("MatMul", [x, self.weight("linear_w", w)]), self.weight("linear_b", b)])

    def const_i64(self, prefix: str, values) -> str:
        return self.weight(prefix, np.array(values, np.int64))

    def const_f32(self, prefix: str, values) -> str:
        return self.weight(prefix, np.array(values, np.float32))


def _tensor(name: str, dims, elem_type=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, list(dims))


def _rename_output(b: GraphBuilder, value: str, name: str) -> None:
    """Give a graph output a readable name by renaming the producing node's output."""
    for node in b.nodes:
        for i, out in enumerate(node.output):
            if out == value:
                node.output[i] = name
        for i, inp in enumerate(node.input):
            if inp == value:
                node.input[i] = name


# ---------------------------------------------------------------------------------------------
def build_resnet(seed: int = 0) -> onnx.ModelProto:
    """ResNet-18-style: 7x7/2 stem + BN + Relu + MaxPool, basic blocks (one with a 1x1/2 projection
    shortcut), GlobalAveragePool, Flatten, Gemm."""
    b = GraphBuilder(seed)
    x = b.node("Relu", [b.conv_bn("input", 3, 16, 7, stride=2)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    def basic_block(x: str, c_in: int, c_out: int, stride: int) -> str:
        y = b.node("Relu", [b.conv_bn(x, c_in, c_out, 3, stride)])
        y = b.conv_bn(y, c_out, c_out, 3)
        shortcut = x if stride == 1 and c_in == c_out else b.conv_bn(x, c_in, c_out, 1, stride)
        return b.node("Relu", [b.node("Add", [y, shortcut])])

    x = basic_block(x, 16, 16, 1)
    x = basic_block(x, 16, 32, 2)
    x = basic_block(x, 32, 32, 1)
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    _rename_output(b, b.gemm(x, 32, 10), "logits")
    return b.model([_tensor("input", (1, 3, 64, 64))], [_tensor("logits", (1, 10))], "resnet")


def build_mobilenetv2(seed: int = 1) -> onnx.ModelProto:
    """MobileNetV2-style: inverted residual blocks with ReLU6 as Clip(min, max inputs), depthwise
    3x3 convs (group = channels), residual Add where shapes match, GlobalAveragePool, Reshape, Gemm."""
    b = GraphBuilder(seed)
    gamma = (0.5, 2.5)  # wide enough that Clip's upper bound 6 is reached
    x = b.relu6(b.conv_bn("input", 3, 16, 3, stride=2, gamma_range=gamma))

    def inverted_residual(x: str, c_in: int, c_out: int, stride: int, expand: int) -> str:
        hidden = c_in * expand
        y = x if expand == 1 else b.relu6(b.conv_bn(x, c_in, hidden, 1, gamma_range=gamma))
        y = b.relu6(b.conv_bn(y, hidden, hidden, 3, stride, group=hidden, gamma_range=gamma))
        y = b.conv_bn(y, hidden, c_out, 1)
        return b.node("Add", [x, y]) if stride == 1 and c_in == c_out else y

    for c_in, c_out, stride, expand in [(16, 8, 1, 1), (8, 12, 2, 6), (12, 12, 1, 6), (12, 16, 2, 6),
                                        (16, 16, 1, 6)]:
        x = inverted_residual(x, c_in, c_out, stride, expand)
    x = b.relu6(b.conv_bn(x, 16, 64, 1, gamma_range=gamma))
    x = b.node("Reshape", [b.node("GlobalAveragePool", [x]), b.const_i64("flat_shape", [1, -1])])
    _rename_output(b, b.gemm(x, 64, 10), "logits")
    return b.model([_tensor("input", (1, 3, 64, 64))], [_tensor("logits", (1, 10))], "mobilenetv2")


def build_unet(seed: int = 2) -> onnx.ModelProto:
    """UNet-style: conv encoder with MaxPool, decoder upsampling once by Resize (nearest, scales
    input) and once by ConvTranspose, Concat skip connections on channels, 1x1 conv + Sigmoid."""
    b = GraphBuilder(seed)

    def conv_relu(x: str, c_in: int, c_out: int) -> str:
        return b.node("Relu", [b.conv(x, c_in, c_out, 3, bias=True)])

    def pool(x: str) -> str:
        return b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])

    e1 = conv_relu(conv_relu("input", 3, 8), 8, 8)                 # 8 x 32 x 32
    e2 = conv_relu(conv_relu(pool(e1), 8, 16), 16, 16)              # 16 x 16 x 16
    bottleneck = conv_relu(pool(e2), 16, 32)                        # 32 x 8 x 8
    up2 = b.node("Resize", [bottleneck, "", b.const_f32("scales", [1, 1, 2, 2])], mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    d2 = conv_relu(b.node("Concat", [up2, e2], axis=1), 48, 16)     # 16 x 16 x 16
    w = b.rng.normal(0.0, math.sqrt(2.0 / (16 * 4)), (16, 8, 2, 2)).astype(np.float32)
    up1 = b.node("ConvTranspose", [d2, b.weight("deconv_w", w), b.const_f32("deconv_b", b.rng.normal(0, 0.1, 8))],
                 kernel_shape=[2, 2], strides=[2, 2])               # 8 x 32 x 32
    d1 = conv_relu(b.node("Concat", [e1, up1], axis=1), 16, 8)
    mask = b.node("Sigmoid", [b.conv(d1, 8, 2, 1, bias=True)])
    _rename_output(b, mask, "mask")
    return b.model([_tensor("input", (1, 3, 32, 32))], [_tensor("mask", (1, 2, 32, 32))], "unet")


DETECTION_ANCHORS, DETECTION_CLASSES = 3, 4


def build_detection_head(seed: int = 3) -> onnx.ModelProto:
    """YOLO-style head on two scales: 1x1 conv → Reshape (N, A, C+5, H, W) → Transpose → Sigmoid →
    Slice into xy / wh / objectness / classes (Slice with starts, ends, axes, steps inputs) → box
    decoding → Reshape (N, A*H*W, k) → Concat of both scales on the anchor axis; three outputs."""
    b = GraphBuilder(seed)
    a, c = DETECTION_ANCHORS, DETECTION_CLASSES
    scales = [("p3", 16, 16, 8), ("p4", 32, 8, 16)]  # name, channels, size, stride

    def part(x: str, start: int, end: int) -> str:
        return b.node("Slice", [x, b.const_i64("starts", [start]), b.const_i64("ends", [end]),
                                b.const_i64("axes", [-1]), b.const_i64("steps", [1])])

    parts: dict[str, list[str]] = {"boxes": [], "objectness": [], "class_probs": []}
    for name, channels, size, stride in scales:
        y = b.conv(name, channels, a * (c + 5), 1, bias=True)
        y = b.node("Reshape", [y, b.const_i64("head_shape", [1, a, c + 5, size, size])])
        y = b.node("Sigmoid", [b.node("Transpose", [y], perm=[0, 1, 3, 4, 2])])   # (1, A, H, W, C+5)
        gy, gx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        grid = np.stack([gx, gy], -1).reshape(1, 1, size, size, 2).astype(np.float32)
        xy = b.node("Mul", [b.node("Sub", [b.node("Mul", [part(y, 0, 2), b.const_f32("two", 2.0)]),
                                           b.const_f32("half", 0.5)]), b.const_f32("stride", float(stride))])
        xy = b.node("Add", [xy, b.weight("grid", grid * stride)])
        anchors = b.rng.uniform(4, 4 * stride, (1, a, 1, 1, 2)).astype(np.float32)
        wh = b.node("Mul", [b.node("Pow", [b.node("Mul", [part(y, 2, 4), b.const_f32("two", 2.0)]),
                                           b.const_f32("exponent", 2.0)]), b.weight("anchors", anchors)])
        flat = {"boxes": b.node("Concat", [xy, wh], axis=-1), "objectness": part(y, 4, 5),
                "class_probs": part(y, 5, INT64_MAX)}
        for key, value in flat.items():
            width = {"boxes": 4, "objectness": 1, "class_probs": c}[key]
            parts[key].append(b.node("Reshape", [value, b.const_i64("flat_shape", [1, -1, width])]))
    total = a * sum(size * size for _, _, size, _ in scales)
    outputs = []
    for key, values in parts.items():
        _rename_output(b, b.node("Concat", values, axis=1), key)
        outputs.append(_tensor(key, (1, total, {"boxes": 4, "objectness": 1, "class_probs": c}[key])))
    inputs = [_tensor(name, (1, channels, size, size)) for name, channels, size, _ in scales]
    return b.model(inputs, outputs, "detection_head")


def build_transformer(seed: int = 4, tokens: int = 16, width: int = 64, heads: int = 4) -> onnx.ModelProto:
    """A pre-norm transformer encoder block: LayerNormalization, Q/K/V MatMul + bias, heads by
    Reshape/Transpose, softmax(QK^T / sqrt(d)) V, output projection, residual, LayerNormalization,
    MLP with Gelu written out through Erf, residual."""
    b = GraphBuilder(seed)
    head_dim = width // heads

    def layer_norm(x: str) -> str:
        gamma = b.rng.uniform(0.5, 1.5, width).astype(np.float32)
        beta = b.rng.normal(0.0, 0.2, width).astype(np.float32)
        return b.node("LayerNormalization", [x, b.weight("ln_scale", gamma), b.weight("ln_bias", beta)],
                      axis=-1, epsilon=1e-5)

    def split_heads(x: str, perm: list[int]) -> str:
        return b.node("Transpose", [b.node("Reshape", [x, b.const_i64("heads_shape", [0, 0, heads, head_dim])])],
                      perm=perm)

    h = layer_norm("input")
    q = split_heads(b.linear(h, width, width), [0, 2, 1, 3])        # (1, H, T, d)
    k_t = split_heads(b.linear(h, width, width), [0, 2, 3, 1])      # (1, H, d, T)
    v = split_heads(b.linear(h, width, width), [0, 2, 1, 3])
    scores = b.node("Div", [b.node("MatMul", [q, k_t]), b.const_f32("sqrt_d", math.sqrt(head_dim))])
    context = b.node("MatMul", [b.node("Softmax", [scores], axis=-1), v])
    context = b.node("Reshape", [b.node("Transpose", [context], perm=[0, 2, 1, 3]),
                                 b.const_i64("merge_shape", [0, 0, -1])])
    x = b.node("Add", ["input", b.linear(context, width, width)])

    hidden = b.linear(layer_norm(x), width, 4 * width)
    erf = b.node("Erf", [b.node("Div", [hidden, b.const_f32("sqrt2", math.sqrt(2.0))])])
    gelu = b.node("Mul", [b.node("Mul", [hidden, b.node("Add", [erf, b.const_f32("one", 1.0)])]),
                          b.const_f32("half", 0.5)])
    _rename_output(b, b.node("Add", [x, b.linear(gelu, 4 * width, width)]), "output")
    shape = (1, tokens, width)
    return b.model([_tensor("input", shape)], [_tensor("output", shape)], "transformer")


def build_exporter_style(seed: int = 5) -> onnx.ModelProto:
    """Opset 11, as older exporters write: every weight a Constant node behind Identity chains, Clip
    bounds from Constant nodes, dynamic batch and spatial dims, BatchNormalization, and a
    Shape → Gather → Unsqueeze → Concat → Reshape flatten."""
    b = GraphBuilder(seed, opset=11, weights_as_constants=True)
    x = b.relu6(b.conv_bn("input", 3, 8, 3, gamma_range=(0.5, 2.5)))
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("Relu", [b.conv_bn(x, 8, 16, 3, stride=2)])
    pooled = b.node("GlobalAveragePool", [x])
    batch = b.node("Gather", [b.node("Shape", [pooled]), b.const_i64("batch_index", 0)], axis=0)
    new_shape = b.node("Concat", [b.node("Unsqueeze", [batch], axes=[0]), b.const_i64("minus_one", [-1])], axis=0)
    flat = b.node("Reshape", [pooled, new_shape])
    _rename_output(b, b.gemm(flat, 16, 10), "logits")
    return b.model([_tensor("input", ("N", 3, "H", "W"))], [_tensor("logits", ("N", 10))], "exporter_style")


class ModelCase(NamedTuple):
    build: Callable[[], onnx.ModelProto]
    shapes: dict[str, tuple[int, ...]]


MODELS: dict[str, ModelCase] = {
    "resnet": ModelCase(build_resnet, {"input": (1, 3, 64, 64)}),
    "mobilenetv2": ModelCase(build_mobilenetv2, {"input": (1, 3, 64, 64)}),
    "unet": ModelCase(build_unet, {"input": (1, 3, 32, 32)}),
    "detection_head": ModelCase(build_detection_head, {"p3": (1, 16, 16, 16), "p4": (1, 32, 8, 8)}),
    "transformer": ModelCase(build_transformer, {"input": (1, 16, 64)}),
    "exporter_style": ModelCase(build_exporter_style, {"input": (2, 3, 32, 32)}),
}
