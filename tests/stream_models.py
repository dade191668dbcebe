"""Models with independent branches, for auxiliary streams (tests/test_streams.py, benchmarks/streams.py).

- ``inception``: a stem convolution, then inception blocks of four towers (1x1; 1x1→3x3; 1x1→5x5;
  3x3 max pool→1x1) concatenated along channels, then global average pooling;
- ``two_head``: a small backbone whose feature map feeds two detection heads (class scores through a
  sigmoid, box offsets), each a few 3x3 convolutions: two outputs.

Random weights (He-normal, fresh per call unless a seed is given) so channel mix-ups show.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed=None):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def conv(self, x: str, cin: int, cout: int, kernel: int, relu: bool = True, stride: int = 1) -> str:
        w, b, y = self.name("w"), self.name("b"), self.name("conv")
        weights = self.rng.standard_normal((cout, cin, kernel, kernel)) * np.sqrt(2.0 / (cin * kernel * kernel))
        self.inits += [numpy_helper.from_array(weights.astype(np.float32), w),
                       numpy_helper.from_array((self.rng.standard_normal(cout) * 0.1).astype(np.float32), b)]
        pad = kernel // 2
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[kernel, kernel],
                                           pads=[pad] * 4, strides=[stride, stride], name=y))
        if not relu:
            return y
        out = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [y], [out], name=out))
        return out

    def op(self, kind: str, inputs: list, **attrs) -> str:
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def model(self, inputs: dict, outputs: dict):
        graph = helper.make_graph(
            self.nodes, "streams",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs.values()], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        for name, value in outputs.items():   # rename graph outputs to the given names
            for node in model.graph.node:
                node.output[:] = [name if o == value else o for o in node.output]
            for info in model.graph.output:
                if info.name == value:
                    info.name = name
        return model


def _inception_block(b: _Builder, x: str, cin: int, width: int) -> tuple[str, int]:
    one = b.conv(x, cin, width, 1)
    three = b.conv(b.conv(x, cin, width // 2, 1), width // 2, width, 3)
    five = b.conv(b.conv(x, cin, width // 4, 1), width // 4, width // 2, 5)
    pool = b.conv(b.op("MaxPool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]), cin, width // 2, 1)
    return b.op("Concat", [one, three, five, pool], axis=1), 3 * width


def inception(batch: int = 1, size: int = 16, width: int = 16, blocks: int = 2, seed=None):
    """(model, input shapes) of an inception-like network: four towers per block."""
    b = _Builder(seed)
    x = b.conv("image", 3, width, 3)
    channels = width
    for _ in range(blocks):
        x, channels = _inception_block(b, x, channels, width)
    pooled = b.op("GlobalAveragePool", [x])
    flat = b.op("Flatten", [pooled], axis=1)
    return b.model({"image": [batch, 3, size, size]}, {"features": flat}), {"image": (batch, 3, size, size)}


def two_head(batch: int = 1, size: int = 16, width: int = 16, depth: int = 3, classes: int = 5, seed=None):
    """(model, input shapes) of a backbone with two detection heads (scores through a sigmoid, boxes)."""
    b = _Builder(seed)
    x = b.conv(b.conv("image", 3, width, 3, stride=2), width, 2 * width, 3)
    heads = {}
    for head, out in (("scores", classes), ("boxes", 4)):
        y = x
        for _ in range(depth):
            y = b.conv(y, 2 * width, 2 * width, 3)
        y = b.conv(y, 2 * width, out, 3, relu=False)
        heads[head] = b.op("Sigmoid", [y]) if head == "scores" else y
    return b.model({"image": [batch, 3, size, size]}, heads), {"image": (batch, 3, size, size)}


STREAM_MODELS = {"inception": inception, "two_head": two_head}
