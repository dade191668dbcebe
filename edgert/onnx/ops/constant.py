"""ONNX importers whose outputs are known at build time, or that only forward their input.

Constant, ConstantOfShape, Shape, Size, Range and EyeLike become constants (shapes are static, so
Shape and Size fold, except along a data-dependent axis: the rows of a NonZero or NMS result, whose
count Shape and Size then compute at run time; a ConstantOfShape shaped by such a count becomes an Expand
of its value sized at the bound that carries the count); Identity and Dropout (inference) return their
input Value itself.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from edgert.errors import ModelError, UnsupportedError
from edgert.ir.kinds import BOUNDED_KINDS, ElementWiseOp, LayerKind
from edgert.ir.limits import check_shape
from edgert.ir.valid_rows import bounded_values
from edgert.onnx.context import onnx_dtype, tensor_to_array
from edgert.onnx.ops.tensor import reshape_to
from edgert.onnx.registry import onnx_op

# Constant's scalar/list attributes and the NumPy type each holds.
_CONSTANT_LIST_ATTRS = {"value_float": np.float32, "value_floats": np.float32,
                        "value_int": np.int64, "value_ints": np.int64}


@onnx_op("Constant")
def constant(ctx, node):
    attrs = ctx.attrs()
    if len(attrs) != 1:
        raise ModelError(f"{ctx.where}: Constant needs exactly one value attribute, found {sorted(attrs) or 'none'}")
    (name, value), = attrs.items()
    if name == "value":
        return [ctx.constant(tensor_to_array(value, ctx.where), name=node.output[0])]
    if name in _CONSTANT_LIST_ATTRS:
        return [ctx.constant(np.array(value, dtype=_CONSTANT_LIST_ATTRS[name]), name=node.output[0])]
    if name in ("sparse_value", "value_string", "value_strings"):
        raise UnsupportedError(f"{ctx.where}: Constant attribute {name!r} is not supported (edgert carries dense "
                               "numeric tensors only); store the value as a dense 'value' tensor")
    raise ModelError(f"{ctx.where}: unknown Constant attribute {name!r}")


@onnx_op("ConstantOfShape")
def constant_of_shape(ctx, node):
    from edgert.onnx.count_inputs import CountInput, count_input
    shape = count_input(ctx, 0, "the output shape")
    if shape is None:
        ctx.const_input(0, "the output shape")   # required: raises
    counted = shape if isinstance(shape, CountInput) else None
    if counted is not None:
        shape = np.asarray(counted.at_bound())
    if shape.ndim != 1 or (shape.size and shape.min() < 0):
        raise ModelError(f"{ctx.where}: the shape input must be a 1-D tensor of non-negative dims, "
                         f"found {shape.tolist()}")
    fill = ctx.attrs().get("value")
    fill = tensor_to_array(fill, ctx.where) if fill is not None else np.zeros(1, np.float32)
    if fill.size != 1:
        raise ModelError(f"{ctx.where}: 'value' must hold exactly one element, found shape {fill.shape}")
    check_shape([int(d) for d in shape], fill.dtype.itemsize, ctx.where)   # before allocating it
    if counted is not None:
        return [_filled_rows(ctx, counted, [int(d) for d in shape], fill)]
    return [ctx.constant(np.full(tuple(int(d) for d in shape), fill.reshape(()), dtype=fill.dtype),
                         name=node.output[0])]


def _filled_rows(ctx, shape, bound: list[int], fill):
    """A constant-filled value shaped by a count (torchvision's labels: ``full_like`` of a class's kept scores):
    the whole bound filled, its valid rows counted by the one count the shape reads, along the one axis that
    changes with it (an Expand reading the count: edgert/ir/valid_rows.py); the probes check it."""
    from edgert.onnx.count_inputs import check_probes, count_bound
    if len(shape.counts) != 1:
        raise UnsupportedError(
            f"{ctx.where}: the output shape depends on the counts of {len(shape.counts)} data-dependent layers "
            f"({', '.join(repr(c.producer().name) for c in shape.counts)}); edgert sizes a ConstantOfShape by one "
            "count; cut the graph before this node")
    (count,) = shape.counts
    empty = np.asarray(shape.at({id(count): 0})).tolist()
    varying = [axis for axis, (a, b) in enumerate(zip(empty, bound)) if a != b]
    if len(varying) != 1:
        raise UnsupportedError(
            f"{ctx.where}: the output shape {bound} at the bound of {count.producer().kind.value} layer "
            f"{count.producer().name!r} ({count_bound(count)} rows) is {empty} with none; edgert carries a count "
            "along one axis only; cut the graph before this node")
    value = ctx.constant(fill.reshape(()))
    (out,) = ctx.add(LayerKind.EXPAND, [value, count], {"shape": bound, "rows_axis": varying[0]})
    check_probes(ctx, out, lambda probe: np.asarray(shape.at(probe)).tolist(), [count], "the output shape (input 0)")
    return out


def data_dependent_rows(ctx, x):
    """(count, axis) when ``x``'s size along ``axis`` is data-dependent (it holds a NonZero or NMS result's
    rows: edgert/ir/valid_rows.py), else None."""
    if not any(n.kind in BOUNDED_KINDS for n in ctx.graph.nodes):
        return None
    return bounded_values(ctx.graph, strict=False).get(id(x))


def valid_rows(ctx, rows, size: int):
    """min(count * scale, size): the rows of a value ``size`` long that are valid (after a prefix slice, fewer
    than the count of the layer that bounded them; after a reshape merged them with the axes after them,
    ``scale`` per counted row)."""
    count = rows.count
    if rows.scale != 1:
        (count,) = ctx.add(LayerKind.ELEMENTWISE, [count, ctx.constant(np.array(rows.scale, np.int64))],
                           {"op": ElementWiseOp.PROD})
    (clamped,) = ctx.add(LayerKind.ELEMENTWISE, [count, ctx.constant(np.array(size, np.int64))],
                         {"op": ElementWiseOp.MIN})
    return clamped


@onnx_op("Shape")
def shape(ctx, node):
    attrs = ctx.attrs()
    x = ctx.input(0)
    # Python slicing clamps start/end exactly as Shape-15 specifies (negative counts from the end).
    axes = list(range(len(x.shape)))[attrs.get("start", 0):attrs.get("end", None)]
    rows = data_dependent_rows(ctx, x)
    if rows is None or rows.axis not in axes:
        return [ctx.constant(np.array([x.shape[a] for a in axes], dtype=np.int64), name=node.output[0])]
    # the size along the data-dependent axis is the count, known only at run time (the static dim is its bound)
    axis = rows.axis
    pieces = []
    for static, part in itertools.groupby(axes, key=lambda a: a != axis):
        part = list(part)
        pieces += ([ctx.constant(np.array([x.shape[a] for a in part], dtype=np.int64))] if static
                   else [reshape_to(ctx, valid_rows(ctx, rows, x.shape[axis]), [1])])
    return [pieces[0]] if len(pieces) == 1 else ctx.add(LayerKind.CONCATENATION, pieces, {"axis": 0})


@onnx_op("Size")
def size(ctx, node):
    x = ctx.input(0)
    rows = data_dependent_rows(ctx, x)
    if rows is None:
        return [ctx.constant(np.array(math.prod(x.shape), dtype=np.int64), name=node.output[0])]
    axis = rows.axis   # the count times the other dims, at run time
    count = valid_rows(ctx, rows, x.shape[axis])
    other = np.array(math.prod(x.shape[:axis] + x.shape[axis + 1:]), dtype=np.int64)
    return ctx.add(LayerKind.ELEMENTWISE, [count, ctx.constant(other)], {"op": ElementWiseOp.PROD})


@onnx_op("Range")
def range_(ctx, node):
    start, limit, delta = (ctx.const_input(i, what) for i, what in enumerate(("start", "limit", "delta")))
    if any(v.size != 1 for v in (start, limit, delta)):
        raise ModelError(f"{ctx.where}: start, limit and delta must be scalars, found shapes "
                         f"{start.shape}, {limit.shape}, {delta.shape}")
    start, limit, delta = (v.reshape(()) for v in (start, limit, delta))
    if delta == 0:
        raise ModelError(f"{ctx.where}: delta is 0; Range needs a non-zero step")
    if np.issubdtype(start.dtype, np.integer):
        count = max(-((int(start) - int(limit)) // int(delta)), 0)  # exact ceil((limit - start) / delta)
        check_shape((count,), 8, ctx.where)
        values = int(start) + np.arange(count, dtype=np.int64) * int(delta)
    else:
        # The difference in the input type, the division in double, as onnxruntime computes it.
        count = max(math.ceil(float(limit - start) / float(delta)), 0)
        check_shape((count,), start.dtype.itemsize, ctx.where)
        values = start + np.arange(count, dtype=start.dtype) * delta
    return [ctx.constant(values.astype(start.dtype), name=node.output[0])]


@onnx_op("EyeLike")
def eye_like(ctx, node):
    x = ctx.input(0)
    ctx.check_rank(x, (2,))
    attrs = ctx.attrs()
    dtype = x.dtype.numpy
    if "dtype" in attrs:
        dtype = onnx_dtype(attrs["dtype"], ctx.where).numpy
    return [ctx.constant(np.eye(*x.shape, k=attrs.get("k", 0), dtype=dtype), name=node.output[0])]


@onnx_op("Identity")
def identity(ctx, node):
    return [ctx.input(0)]


@onnx_op("Dropout")
def dropout(ctx, node):
    """Inference: output = input; the mask (if asked for) is all ones/true."""
    x = ctx.input(0)
    if ctx.opset >= 12:
        _check_inference(ctx)
    outputs = [x]
    if len(node.output) > 1 and node.output[1]:
        mask_type = x.dtype.numpy if ctx.opset < 10 else np.bool_  # Dropout-7 masks have the input's type
        outputs.append(ctx.constant(np.ones(x.shape, dtype=mask_type), name=node.output[1]))
    return outputs


def _check_inference(ctx) -> None:
    training = ctx.input(2, required=False)
    if training is None:
        return
    if not training.is_const:
        raise UnsupportedError(f"{ctx.where}: training_mode ({training.name!r}) is a runtime input; edgert runs "
                               "inference only — make it a constant false or remove it")
    if not bool(np.asarray(training.const).reshape(())):
        return
    ratio = ctx.const_input(1, "ratio", required=False)
    ratio = 0.5 if ratio is None else float(np.asarray(ratio).reshape(()))
    if ratio != 0.0:
        raise UnsupportedError(f"{ctx.where}: training_mode is true with ratio {ratio}; edgert runs inference "
                               "only (random dropout is not supported) — export the model in eval mode")
