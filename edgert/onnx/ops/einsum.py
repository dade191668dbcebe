"""ONNX importer: Einsum, lowered to Shuffle / Reduce / MatrixMultiply layers where the equation allows,
else one Einsum layer (NumPy's einsum semantics).

Lowered: one operand without repeated letters (transpose, sums over dropped letters), and two operands
without repeated letters whose shared output letters ("batch") have equal sizes. Letters in only one
operand and not in the output are summed first; then A becomes (batch, M = its own output letters,
K = contracted letters), B becomes (batch, K, N), one matrix product, and a reshape and transpose
bring (batch, M, N) into the output's letter order. Ellipses, diagonals ("ii->i"), broadcasting
batches and three or more operands keep the Einsum layer.
"""

from __future__ import annotations

import math

from edgert.ir.kinds import LayerKind, ReduceOp
from edgert.onnx.ops.tensor import reshape_to, shuffle
from edgert.onnx.registry import onnx_op


def parse(equation: str, count: int) -> tuple[list[str], str] | None:
    """(operand letter strings, output letters) of an equation without ellipses, implicit output included."""
    if "." in equation:
        return None
    left, arrow, right = equation.partition("->")
    terms = left.split(",")
    if len(terms) != count:
        return None
    if not arrow:   # implicit: the letters used once, in alphabetical order
        letters = "".join(terms)
        right = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if any(len(set(t)) != len(t) for t in terms + [right]):
        return None
    return terms, right


def _sum_out(ctx, x, term: str, keep: set[str]):
    """Sum ``x`` over the letters of ``term`` not in ``keep``; the reduced value and its letters."""
    axes = [i for i, c in enumerate(term) if c not in keep]
    if not axes:
        return x, term
    x = ctx.add(LayerKind.REDUCE, [x], {"op": ReduceOp.SUM, "axes": axes, "keepdims": False})[0]
    return x, "".join(c for c in term if c in keep)


def _to_order(ctx, x, term: str, order: str):
    return shuffle(ctx, x, first_perm=[term.index(c) for c in order])


def lower_unary(ctx, x, term: str, out: str):
    x, term = _sum_out(ctx, x, term, set(out))
    return _to_order(ctx, x, term, out)


def lower_binary(ctx, a, b, terms: list[str], out: str):
    (ta, tb), sizes = terms, {}
    for value, term in ((a, ta), (b, tb)):
        for c, d in zip(term, value.shape):
            if sizes.setdefault(c, d) != d:
                return None   # a broadcast dim: left to the Einsum layer
    a, ta = _sum_out(ctx, a, ta, set(tb) | set(out))
    b, tb = _sum_out(ctx, b, tb, set(ta) | set(out))
    batch = "".join(c for c in out if c in ta and c in tb)
    rows = "".join(c for c in ta if c in out and c not in batch)
    cols = "".join(c for c in tb if c in out and c not in batch)
    inner = "".join(c for c in ta if c not in out)

    def dims(letters):
        return [sizes[c] for c in letters]

    a = reshape_to(ctx, _to_order(ctx, a, ta, batch + rows + inner),
                   dims(batch) + [math.prod(dims(rows)), math.prod(dims(inner))])
    b = reshape_to(ctx, _to_order(ctx, b, tb, batch + inner + cols),
                   dims(batch) + [math.prod(dims(inner)), math.prod(dims(cols))])
    product = ctx.add(LayerKind.MATRIX_MULTIPLY, [a, b], {"trans_a": False, "trans_b": False})[0]
    product = reshape_to(ctx, product, dims(batch + rows + cols))
    return _to_order(ctx, product, batch + rows + cols, out)


@onnx_op("Einsum")
def einsum(ctx, node):
    equation = ctx.attrs()["equation"]
    equation = (equation.decode() if isinstance(equation, bytes) else equation).replace(" ", "")
    operands = ctx.inputs()
    parsed = parse(equation, len(operands))
    float_inputs = all(v.dtype.is_float for v in operands)
    if parsed is not None and float_inputs and len(operands) == 1:
        return [lower_unary(ctx, operands[0], parsed[0][0], parsed[1])]
    if parsed is not None and float_inputs and len(operands) == 2:
        lowered = lower_binary(ctx, *operands, *parsed)
        if lowered is not None:
            return [lowered]
    return ctx.add(LayerKind.EINSUM, operands, {"equation": equation})
