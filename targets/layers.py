"""A device-neutral view of one layer (kind, attrs, tensor shapes, constants) for capability checks and timing.

Built from an IR node (``from_node``) or from the instructions of a fused layer (``members``), so the
capability rules and the timing model never depend on how the graph stores things.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind

# Epilogue step ops of fused Convolution / MatrixMultiply layers -> the layer kind and attrs they stand for.
_EPILOGUE_KINDS = {
    "activation": lambda step: (LayerKind.ACTIVATION, {k: v for k, v in step.items() if k not in ("op", "input")}),
    "swish": lambda step: (LayerKind.ACTIVATION, {"type": ActivationType.SWISH}),
    "add": lambda step: (LayerKind.ELEMENTWISE, {"op": ElementWiseOp.SUM}),
    "sum": lambda step: (LayerKind.ELEMENTWISE, {"op": ElementWiseOp.SUM}),
    "mul": lambda step: (LayerKind.ELEMENTWISE, {"op": ElementWiseOp.PROD}),
}


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str                       # NumPy name: float32, float16, int64, bool ...
    const: np.ndarray | None = None  # the data of a constant (weights, scales)

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_float(self) -> bool:
        return np.dtype(self.dtype).kind == "f"


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: LayerKind
    attrs: dict
    inputs: tuple[TensorInfo | None, ...]
    outputs: tuple[TensorInfo, ...]
    precision: str | None = None     # the layer's own precision, when one was chosen

    def input(self, index: int) -> TensorInfo | None:
        return self.inputs[index] if index < len(self.inputs) else None

    @property
    def output(self) -> TensorInfo:
        return self.outputs[0]


def tensor_info(value) -> TensorInfo | None:
    if value is None:
        return None
    return TensorInfo(tuple(value.shape), value.dtype.value, value.const)


def from_node(node) -> LayerInfo:
    """The view of an IR node (``edgert.ir.graph.Node``)."""
    return LayerInfo(node.name, node.kind, dict(node.attrs), tuple(tensor_info(v) for v in node.inputs),
                     tuple(tensor_info(v) for v in node.outputs), node.precision)


def members(layer: LayerInfo) -> list[LayerInfo]:
    """The plain layers a fused layer stands for (itself for an unfused one).

    A PointWise layer expands into its program's instructions; a Convolution / MatrixMultiply with an
    ``epilogue`` into the layer without it plus one layer per epilogue step.
    """
    if layer.kind == LayerKind.POINTWISE:
        return _program_members(layer)
    steps = layer.attrs.get("epilogue") or ()
    if not steps:
        return [layer]
    core = LayerInfo(layer.name, layer.kind, {k: v for k, v in layer.attrs.items() if k != "epilogue"},
                     layer.inputs[:3] if layer.kind == LayerKind.CONVOLUTION else layer.inputs[:2],
                     layer.outputs, layer.precision)
    result = [core]
    out = layer.output
    for index, step in enumerate(steps):
        extra = (layer.input(step["input"]),) if "input" in step else ()
        if step.get("op") == "add" and _is_bias(layer, extra[0]):
            continue  # a per-output-channel constant add is the layer's own bias
        make = _EPILOGUE_KINDS.get(step.get("op"))
        kind, attrs = make(step) if make else (None, {"op": step.get("op")})
        name = f"{layer.name} epilogue step {index + 1} ({step.get('op')})"
        result.append(LayerInfo(name, kind, dict(attrs, epilogue_step=True), (out,) + extra, (out,),
                                layer.precision))
    return result


def _is_bias(layer: LayerInfo, extra: TensorInfo | None) -> bool:
    if extra is None or not extra.is_const:
        return False
    axis = 1 if layer.kind in (LayerKind.CONVOLUTION, LayerKind.DECONVOLUTION) else layer.output.rank - 1
    channels = layer.output.shape[axis]
    shape = (1,) * (layer.output.rank - extra.rank) + tuple(extra.shape)
    return all(d == 1 or (i == axis and d == channels) for i, d in enumerate(shape))


def _program_members(layer: LayerInfo) -> list[LayerInfo]:
    registers: list[TensorInfo | None] = list(layer.inputs)
    dtype = layer.output.dtype
    result = []
    for index, instruction in enumerate(layer.attrs.get("program") or ()):
        args = tuple(registers[r] if r >= 0 else None for r in instruction["args"])
        shape = np.broadcast_shapes(*(a.shape for a in args if a is not None))
        out = TensorInfo(tuple(shape), dtype)
        name = f"{layer.name} instruction {index + 1} ({instruction['kind']})"
        result.append(LayerInfo(name, LayerKind(instruction["kind"]), dict(instruction["attrs"]), args, (out,),
                                layer.precision))
        registers.append(out)
    return result
