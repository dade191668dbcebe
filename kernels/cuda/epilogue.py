"""Epilogues of convolution and matrix kernels, generated as a C++ functor per distinct chain.

A chain is a little register program: register 0 is the accumulator; further registers read
tensors at the output element (a per-channel vector such as a bias, a residual of the output's
shape, any broadcastable tensor) or apply per-element instructions (the same instruction set as
PointWise). It is built from the layer's bias, its ``attrs["epilogue"]`` ({"op": "activation", type, alpha,
beta} / {"op": "add", "input": i}, see kernels/cpu/epilogue.py) and, when the plan lets it, the
following per-element layer folded in at kernel level (``fusion``).

The functor has the signature the GEMM templates call:
``static OutCompute apply(Acc acc, i64 flat, i32 m, i32 n, const EpiArgs& e)`` where ``flat`` is the
output element's index and ``m``/``n`` its GEMM coordinates (channel and pixel for convolutions).
"""

from __future__ import annotations

import hashlib

from edgert.errors import UnsupportedError
from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import LowerContext, input_index, ptr

MAX_TENSORS = 8


class Epilogue:
    def __init__(self, ctx: LowerContext, out_shape, out_dtype: str, coordinates: dict):
        self.ctx = ctx
        self.out_shape, self.out_dtype = tuple(out_shape), out_dtype
        self.coordinates = coordinates          # output axis -> C variable holding that coordinate
        self.registers: list[tuple] = [("acc",)]
        self.tensors: list[int] = []

    @property
    def last(self) -> int:
        return len(self.registers) - 1

    def tensor(self, tensor: int, axis: int | None = None) -> int:
        """A register reading ``tensor``; ``axis`` marks a vector indexed by that output axis."""
        self.registers.append(("tensor", tensor, axis))
        return self.last

    def op(self, kind: LayerKind, attrs: dict, args: list[int]) -> int:
        self.registers.append(("op", kind, attrs, list(args)))
        return self.last

    def add_bias(self, bias: int, axis: int) -> None:
        self.op(LayerKind.ELEMENTWISE, {"op": ElementWiseOp.SUM}, [self.last, self.tensor(bias, axis)])

    def add_layer_epilogue(self, layer: dict) -> None:
        """The layer's ``attrs["epilogue"]`` steps: activations, and adds of one of its inputs
        (``{"op": "add", "input": i}``, broadcast: a residual, or a bias along the last axis)."""
        inputs = list(layer["inputs"])
        for step in (layer.get("attrs") or {}).get("epilogue") or []:
            if step.get("op") == "activation":
                attrs = {"type": ActivationType(step["type"]), "alpha": step.get("alpha", 0.0),
                         "beta": step.get("beta", 0.0)}
                self.op(LayerKind.ACTIVATION, attrs, [self.last])
            elif step.get("op") == "add":
                index = int(step["input"])
                if not 0 <= index < len(inputs) or inputs[index] < 0:
                    raise UnsupportedError(f"layer {layer['name']!r}: epilogue adds input {index}, which it lacks")
                self.op(LayerKind.ELEMENTWISE, {"op": ElementWiseOp.SUM}, [self.last, self.tensor(inputs[index])])
            else:
                raise UnsupportedError(f"layer {layer['name']!r}: unknown epilogue step {step!r}")

    def add_consumer(self, fusion: dict) -> None:
        """Inline a following per-element layer whose input ``fusion['source']`` is this kernel's result."""
        mapping = []
        result = self.last
        for tensor in fusion["inputs"]:
            mapping.append(result if tensor == fusion["source"] else (self.tensor(tensor) if tensor >= 0 else -1))
        for instruction in fusion["program"]:
            args = [mapping[a] if a >= 0 else -1 for a in instruction["args"]]
            mapping.append(self.op(LayerKind(instruction["kind"]), instruction.get("attrs") or {}, args))

    def code(self, acc_ctype: str) -> tuple[str, str, list]:
        """(functor name, its C++ source, the EpiArgs pointer params)."""
        out_ctype = cg.compute_ctype(self.out_dtype)
        lines, values, tensors = [], [], []
        for index, register in enumerate(self.registers):
            if register[0] == "acc":
                lines.append(f"{acc_ctype} r0 = acc;")
                values.append(("r0", acc_ctype))
                continue
            if register[0] == "tensor":
                tensor, axis = register[1], register[2]
                slot = len(tensors)
                tensors.append(tensor)
                dtype = self.ctx.dtype(tensor)
                index_text = self.coordinates[axis] if axis is not None else \
                    input_index(self.ctx, tensor, self.out_shape, "flat", self.coordinates)
                pointer = f"((const {cg.ctype(dtype)}*)e.p[{slot}])"
                expr, ctype = cg.load(pointer, index_text, dtype), cg.compute_ctype(dtype)
            else:
                _, kind, attrs, args = register
                expr, ctype = cg.emit_instruction(kind, attrs, [values[a] if a >= 0 else None for a in args])
            lines.append(f"{ctype} r{index} = {expr};")
            values.append((f"r{index}", ctype))
        if len(tensors) > MAX_TENSORS:
            raise UnsupportedError(f"epilogue reads {len(tensors)} tensors; at most {MAX_TENSORS} fit")
        value, ctype = values[-1]
        body = "\n        ".join(lines)
        source = f"""
struct EPI {{
    static EDGERT_FN {out_ctype} apply({acc_ctype} acc, i64 flat, i32 m, i32 n, const EpiArgs& e) {{
        {body}
        return {cg.cast_expr(value, ctype, self.out_dtype)};
    }}
}};
"""
        name = "Epi_" + hashlib.sha256(source.encode()).hexdigest()[:12]
        params = [ptr(t) for t in tensors] + [["0"]] * (MAX_TENSORS - len(tensors))
        return name, source.replace("EPI", name), params
