"""Dynamic shapes at run time: the plan's shape program, evaluated on the host when input shapes change.

A plan built with optimization profiles (``edgert.build(..., profiles=...)``, see ``edgert.dynamic``)
keeps every layer's attributes as built for one probe shape, plus, for each integer attribute that
depends on the input shapes, a small **dim expression** over the layer's own input shapes:

    ["const", c]                 c
    ["dim", k, a]                dim a of input k  (k = -1: input 0 after the Shuffle's first_perm)
    ["dim_add", k, a, c]         dim + c            (slice sizes up to the end, minus a margin)
    ["dim_mul", k, a, c]         dim * c            (Resize by an integer scale)
    ["dim_div", k, a, c]         dim // c           (a dim split into a constant block)
    ["prod", k, a, b]            product of dims a..b-1 of input k (Flatten, merged dims)
    ["infer"]                    elements of input 0 over the product of the list's other entries (Reshape -1)

``specialize`` walks the layers in plan order: it resolves each layer's attributes from the shapes its
inputs have now, then runs the layer kind's shape rule (``edgert.ir.shapes``, the same rules the build
used) for its output shapes. So the program is a few integer operations per layer, run once per distinct
input shape set (the execution context caches the result), never per element, and needs only NumPy.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from edgert.errors import InputError, PlanError, ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.ir.limits import check_shape

EXPRESSION_OPS = ("const", "dim", "dim_add", "dim_mul", "dim_div", "prod", "infer")


class _ShapeValue:
    """What a shape rule reads of a tensor: dtype, shape and, for constants, the data."""

    __slots__ = ("name", "dtype", "shape", "const")

    def __init__(self, name, dtype, shape, const=None):
        self.name, self.dtype, self.shape, self.const = name, dtype, tuple(shape), const

    @property
    def is_const(self) -> bool:
        return self.const is not None


class _ShapeNode:
    __slots__ = ("name", "kind", "attrs", "inputs", "outputs")

    def __init__(self, name, kind, attrs, inputs, num_outputs):
        self.name, self.kind, self.attrs, self.inputs = name, kind, attrs, inputs
        self.outputs = (None,) * num_outputs


def source_shape(kind: LayerKind, attrs: dict, input_shapes: list, index: int) -> tuple:
    """The shape an expression's input index names: -1 is input 0 after a Shuffle's first transpose."""
    if index == -1:
        perm = attrs.get("first_perm") if kind == LayerKind.SHUFFLE else None
        shape = tuple(input_shapes[0])
        return tuple(shape[p] for p in perm) if perm is not None else shape
    return tuple(input_shapes[index])


def evaluate(expr, kind: LayerKind, attrs: dict, input_shapes: list, siblings=None) -> int:
    """One dim expression's value for a layer whose inputs have ``input_shapes``."""
    op = expr[0]
    if op == "const":
        return int(expr[1])
    if op == "infer":
        known = math.prod(int(d) for d in siblings)
        total = math.prod(source_shape(kind, attrs, input_shapes, -1))
        if known == 0 or total % known:
            raise ShapeError(f"cannot infer a dim: {total} elements over {known}")
        return total // known
    shape = source_shape(kind, attrs, input_shapes, int(expr[1]))
    if op == "prod":
        return math.prod(shape[int(expr[2]):int(expr[3])])
    dim = int(shape[int(expr[2])])
    if op == "dim":
        return dim
    if op == "dim_add":
        return dim + int(expr[3])
    if op == "dim_mul":
        return dim * int(expr[3])
    if op == "dim_div":
        return dim // int(expr[3])
    raise PlanError(f"unknown dim expression {op!r}; the plan needs a newer edgert")


def resolve_attrs(kind: LayerKind, attrs: dict, dynamic: list, input_shapes: list) -> dict:
    """``attrs`` with every dynamic leaf (``[path, expr]`` pairs) evaluated; "infer" leaves last."""
    if not dynamic:
        return attrs
    resolved = copy.deepcopy(attrs)
    ordered = sorted(dynamic, key=lambda entry: entry[1][0] == "infer")
    for path, expr in ordered:
        parent = resolved
        for key in path[:-1]:
            parent = parent[key]
        siblings = None
        if expr[0] == "infer":
            siblings = [v for i, v in enumerate(parent) if i != path[-1]]
        parent[path[-1]] = evaluate(expr, kind, resolved, input_shapes, siblings)
    return resolved


def specialize(engine, input_shapes: dict[int, tuple]) -> tuple[list, list]:
    """(shape of every tensor, attrs of every layer) for graph inputs (tensor id -> shape) of these shapes."""
    from edgert.ir.shape_inference import rule_for

    shapes: list = [None] * len(engine.tensors)
    dtypes = engine.tensor_dtypes
    for tensor_id, array in engine.constants.items():
        shapes[tensor_id] = array.shape
    for tensor_id, shape in input_shapes.items():
        shapes[tensor_id] = tuple(shape)
    layer_attrs = []
    for step in engine.steps:
        attrs, results = _specialize_layer(engine, step, shapes, dtypes, rule_for)
        for tensor_id, (_, shape) in zip(step.outputs, results):
            shapes[tensor_id] = tuple(int(d) for d in shape)
            check_shape(shapes[tensor_id], dtypes[tensor_id].itemsize, f"layer {step.name!r} output")
        layer_attrs.append(attrs)
    return shapes, layer_attrs


def _specialize_layer(engine, step, shapes, dtypes, rule_for):
    """(attrs, output dtypes and shapes) of one layer at the current shapes. A shape the layer cannot take is an
    InputError; a program that cannot even be evaluated (a plan made by something other than edgert's builder)
    is a PlanError, never a Python exception."""
    from edgert.runtime.attr_schema import check_attrs

    in_shapes = [shapes[i] if i >= 0 else None for i in step.inputs]
    try:
        attrs = resolve_attrs(step.kind, step.attrs, step.dynamic, in_shapes)
        if step.dynamic:
            check_attrs(step.kind, attrs, f"layer {step.name!r} at these shapes")
        values = [None if i < 0 else _ShapeValue(engine.tensors[i]["name"], dtypes[i], shapes[i],
                                                   engine.constants.get(i)) for i in step.inputs]
        return attrs, rule_for(step.kind)(_ShapeNode(step.name, step.kind, attrs, values, len(step.outputs)))
    except ShapeError as e:
        raise InputError(f"these input shapes do not fit the model: {e}") from None
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError) as e:
        raise PlanError(f"plan is corrupt: the shape program of layer {step.name!r} fails "
                        f"({type(e).__name__}: {e}); rebuild the plan with `edgert build`") from None


def check_in_profile(profile: dict, name: str, shape: tuple, index: int) -> None:
    """InputError naming the input, axis, value and range when ``shape`` is outside the profile's range."""
    low, _, high = profile[name]
    if len(shape) != len(low):
        raise InputError(f"input {name!r}: expected rank {len(low)} (profile {index}: {format_range(low, high)}), "
                         f"got shape {tuple(shape)}")
    for axis, (dim, lo, hi) in enumerate(zip(shape, low, high)):
        if not lo <= dim <= hi:
            raise InputError(f"input {name!r}: dim {dim} at axis {axis} is outside optimization profile {index}'s "
                             f"range {lo}..{hi} (profile shapes {format_range(low, high)}); build with a "
                             "profile that covers it")


def format_range(low, high) -> str:
    """``1-8x3x48x64-960``: each dim as ``min-max`` where it varies."""
    return "x".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(low, high))


def np_shape_bytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
