"""Models built with onnx.helper that mimic the real exports of issue 16 where no exporter (torch) is installed.

    python benchmarks/mimic_models.py --out DIR        # writes DIR/mimic_*.onnx
    python benchmarks/cpu.py DIR/mimic_*.onnx --reps 20 [--kinds]

Random He-scaled weights, the layer shapes of the corpus models they stand for:

- ``mimic_mobilenet_v3``: MobileNet-v3-small's layout at 224 (stem 3->16 3x3 s2 HardSwish; inverted residual
  blocks: 1x1 expand, 3x3/5x5 depthwise (stride 2 where the resolution halves), squeeze-excite (GlobalAveragePool,
  1x1 ReLU, 1x1 HardSigmoid, Mul), 1x1 project, residual add; 1x1 576 head, pool, classifier);
- ``mimic_yolo``: a YOLOv8n-style backbone and neck at 320 (3x3 stride-2 SiLU convolutions, C2f blocks of 1x1 and
  3x3 convolutions with Split/Concat, an SPPF of 5x5 max pools, an upsampling neck, a 96->24-style head);
- ``mimic_text``: a text recognizer (conv stem over 32x128, then two GELU transformer blocks written as ONNX
  primitives: LayerNorm, MatMul attention with Softmax, Div->Erf->Add->Mul->Mul GELU).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Graph:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, array, prefix="w") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def node(self, op, inputs, **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x, cin, cout, k=1, s=1, group=1, act=None) -> str:
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        b = self.rng.standard_normal(cout) * 0.1
        y = self.node("Conv", [x, self.const(w), self.const(b, "b")], kernel_shape=[k, k], strides=[s, s],
                      pads=[k // 2] * 4, group=group)
        return self.activation(y, act)

    def activation(self, y, act):
        if act == "relu":
            return self.node("Relu", [y])
        if act == "hswish":
            return self.node("HardSwish", [y])
        if act == "silu":
            return self.node("Mul", [y, self.node("Sigmoid", [y])])
        if act == "hsigmoid":
            return self.node("HardSigmoid", [y], alpha=1 / 6, beta=0.5)
        return y

    def model(self, x_shape, output, name) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)],
                                  [helper.make_empty_tensor_value_info(output)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        _fix_int_constants(model)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        model.graph.output[0].CopyFrom(inferred.graph.output[0])   # the output's type and shape, inferred
        return model


# MobileNet-v3-small: (kernel, expanded, out, squeeze-excite, activation, stride)
MOBILENET_V3_SMALL = [(3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
                      (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1),
                      (5, 240, 40, True, "hswish", 1), (5, 120, 48, True, "hswish", 1),
                      (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
                      (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1)]


def mobilenet_v3() -> onnx.ModelProto:
    g = Graph(1)
    x, c = g.conv("input", 3, 16, 3, 2, act="hswish"), 16
    for k, expanded, out, se, act, stride in MOBILENET_V3_SMALL:
        y = g.conv(x, c, expanded, 1, act=act) if expanded != c else x
        y = g.conv(y, expanded, expanded, k, stride, group=expanded, act=act)
        if se:
            squeeze = max(8, expanded // 4)
            pooled = g.node("GlobalAveragePool", [y])
            scale = g.conv(g.conv(pooled, expanded, squeeze, 1, act="relu"), squeeze, expanded, 1, act="hsigmoid")
            y = g.node("Mul", [y, scale])
        y = g.conv(y, expanded, out, 1)
        x, c = (g.node("Add", [x, y]) if stride == 1 and out == c else y), out
    x = g.conv(x, c, 576, 1, act="hswish")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    w = g.const(g.rng.standard_normal((1000, 576)) * np.sqrt(1 / 576))
    x = g.node("Gemm", [x, w, g.const(np.zeros(1000), "b")], transB=1)
    return g.model([1, 3, 224, 224], x, "mimic_mobilenet_v3")


def c2f(g: Graph, x, cin, cout, blocks, shortcut=True):
    hidden = cout // 2
    y = g.conv(x, cin, 2 * hidden, 1, act="silu")
    a = g.name("split_a")
    b = g.name("split_b")
    g.nodes.append(helper.make_node("Split", [y, g.const(np.array([hidden, hidden]), "splits")], [a, b], axis=1))
    parts, last = [a, b], b
    for _ in range(blocks):
        z = g.conv(g.conv(last, hidden, hidden, 3, act="silu"), hidden, hidden, 3, act="silu")
        last = g.node("Add", [last, z]) if shortcut else z
        parts.append(last)
    return g.conv(g.node("Concat", parts, axis=1), (2 + blocks) * hidden, cout, 1, act="silu")


def yolo(size=320) -> onnx.ModelProto:
    g = Graph(2)
    x = g.conv("input", 3, 16, 3, 2, act="silu")
    x = g.conv(x, 16, 32, 3, 2, act="silu")
    x = c2f(g, x, 32, 32, 1)
    x = g.conv(x, 32, 64, 3, 2, act="silu")
    p3 = c2f(g, x, 64, 64, 2)
    x = g.conv(p3, 64, 128, 3, 2, act="silu")
    p4 = c2f(g, x, 128, 128, 2)
    x = g.conv(p4, 128, 256, 3, 2, act="silu")
    x = c2f(g, x, 256, 256, 1)
    x = g.conv(x, 256, 128, 1, act="silu")   # SPPF
    pools = [x]
    for _ in range(3):
        pools.append(g.node("MaxPool", [pools[-1]], kernel_shape=[5, 5], pads=[2] * 4))
    p5 = g.conv(g.node("Concat", pools, axis=1), 512, 256, 1, act="silu")
    scales = g.const(np.array([1, 1, 2, 2]), "scales")
    up = g.node("Resize", [p5, "", scales], mode="nearest")
    x = c2f(g, g.node("Concat", [up, p4], axis=1), 384, 128, 1, shortcut=False)
    up = g.node("Resize", [x, "", scales], mode="nearest")
    x = c2f(g, g.node("Concat", [up, p3], axis=1), 192, 64, 1, shortcut=False)
    # detection head at stride 8: box branch 64->64->64 and class branch 64->80->80, 1x1 outputs
    box = g.conv(g.conv(g.conv(x, 64, 64, 3, act="silu"), 64, 64, 3, act="silu"), 64, 64, 1)
    cls = g.conv(g.conv(g.conv(x, 64, 80, 3, act="silu"), 80, 80, 3, act="silu"), 80, 80, 1)
    out = g.node("Concat", [box, g.node("Sigmoid", [cls])], axis=1)
    return g.model([1, 3, size, size], out, "mimic_yolo")


def layer_norm(g: Graph, x, width):
    mean = g.node("ReduceMean", [x], axes=[-1])
    centered = g.node("Sub", [x, mean])
    var = g.node("ReduceMean", [g.node("Mul", [centered, centered])], axes=[-1])
    std = g.node("Sqrt", [g.node("Add", [var, g.const(np.array(1e-5), "eps")])])
    normed = g.node("Div", [centered, std])
    return g.node("Add", [g.node("Mul", [normed, g.const(np.ones(width), "gamma")]), g.const(np.zeros(width), "beta")])


def linear(g: Graph, x, cin, cout):
    w = g.const(g.rng.standard_normal((cin, cout)) * np.sqrt(1 / cin))
    return g.node("Add", [g.node("MatMul", [x, w]), g.const(g.rng.standard_normal(cout) * 0.02, "b")])


def gelu(g: Graph, x):
    erf = g.node("Erf", [g.node("Div", [x, g.const(np.array(np.sqrt(2.0)), "c")])])
    return g.node("Mul", [g.node("Mul", [x, g.node("Add", [erf, g.const(np.array(1.0), "one")])]),
                          g.const(np.array(0.5), "half")])


def transformer_block(g: Graph, x, width, heads, tokens):
    head = width // heads
    y = layer_norm(g, x, width)
    qkv = []
    for _ in range(3):
        t = g.node("Reshape", [linear(g, y, width, width), g.const(np.array([1, tokens, heads, head]), "shape")])
        qkv.append(g.node("Transpose", [t], perm=[0, 2, 1, 3]))
    scores = g.node("Div", [g.node("MatMul", [qkv[0], g.node("Transpose", [qkv[1]], perm=[0, 1, 3, 2])]),
                            g.const(np.array(np.sqrt(head)), "c")])
    attended = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), qkv[2]])
    merged = g.node("Reshape", [g.node("Transpose", [attended], perm=[0, 2, 1, 3]),
                                g.const(np.array([1, tokens, width]), "shape")])
    x = g.node("Add", [x, linear(g, merged, width, width)])
    y = linear(g, gelu(g, linear(g, layer_norm(g, x, width), width, 4 * width)), 4 * width, width)
    return g.node("Add", [x, y])


def text_recognizer() -> onnx.ModelProto:
    g = Graph(3)
    x = g.conv("input", 3, 32, 3, 1, act="relu")
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])                  # 16x64
    x = g.conv(x, 32, 64, 3, 1, act="relu")
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])                  # 8x32
    x = g.conv(x, 64, 128, 3, 1, act="relu")
    x = g.conv(x, 128, 192, 3, 1, act="relu")
    x = g.node("MaxPool", [x], kernel_shape=[8, 1], strides=[8, 1])                  # 1x32
    tokens = g.node("Transpose", [g.node("Squeeze", [x, g.const(np.array([2]), "axes")])], perm=[0, 2, 1])
    for _ in range(2):
        tokens = transformer_block(g, tokens, 192, 3, 32)
    logits = linear(g, layer_norm(g, tokens, 192), 192, 97)
    return g.model([1, 3, 32, 128], g.node("Softmax", [logits], axis=-1), "mimic_text")


def _fix_int_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape, axes and scale tensors as the types ONNX wants (Graph.const writes float32)."""
    ints = {"shape", "axes", "splits"}
    for tensor in model.graph.initializer:
        if tensor.name.rstrip("0123456789") in ints:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.int64), tensor.name))
    return model


MODELS = {"mimic_mobilenet_v3": mobilenet_v3, "mimic_yolo": yolo, "mimic_text": text_recognizer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, make in MODELS.items():
        model = make()
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, os.path.join(args.out, f"{name}.onnx"))
        print(os.path.join(args.out, f"{name}.onnx"))


if __name__ == "__main__":
    main()
