"""Kernels the memory planner may run in place (output over a dying input) give the same result in place."""

from __future__ import annotations

import numpy as np
import pytest

from edgert.ir.kinds import ActivationType, ElementWiseOp, LayerKind, UnaryOp
from edgert.kernels.registry import lookup

_RNG = np.random.default_rng()
_ARITHMETIC = [ElementWiseOp.SUM, ElementWiseOp.SUB, ElementWiseOp.PROD, ElementWiseOp.DIV, ElementWiseOp.POW,
               ElementWiseOp.MAX, ElementWiseOp.MIN, ElementWiseOp.MOD, ElementWiseOp.FMOD]
_FLOAT_UNARY = [op for op in UnaryOp if op not in (UnaryOp.NOT, UnaryOp.ISNAN, UnaryOp.ISINF)]


def _cases():
    for kind in ActivationType:
        yield pytest.param(LayerKind.ACTIVATION, {"type": kind, "alpha": 0.3, "beta": 0.7}, 1, 0,
                           id=f"act-{kind.value}")
    for op in _ARITHMETIC:
        for slot in (0, 1):
            yield pytest.param(LayerKind.ELEMENTWISE, {"op": op}, 2, slot, id=f"ew-{op.value}-slot{slot}")
    for op in _FLOAT_UNARY:
        yield pytest.param(LayerKind.UNARY, {"op": op}, 1, 0, id=f"unary-{op.value}")
    yield pytest.param(LayerKind.SCALE, {"axis": 1}, 3, 0, id="scale")
    yield pytest.param(LayerKind.PARAMETRIC_RELU, {}, 2, 0, id="prelu")


def _inputs(kind, arity):
    x = _RNG.uniform(0.2, 0.9, (2, 3, 4, 5)).astype(np.float32)
    if arity == 1:
        return [x]
    if kind == LayerKind.ELEMENTWISE:
        return [x, _RNG.uniform(0.2, 0.9, (2, 3, 4, 5)).astype(np.float32)]
    per_channel = [_RNG.uniform(0.2, 0.9, (3, 1, 1)).astype(np.float32) for _ in range(arity - 1)]
    return [x, *per_channel]


@pytest.mark.parametrize("kind, attrs, arity, slot", list(_cases()))
def test_in_place_equals_out_of_place(kind, attrs, arity, slot):
    kernel = lookup(kind)
    inputs = _inputs(kind, arity)
    fresh = np.empty_like(inputs[slot])
    aliased = [a.copy() for a in inputs]
    with np.errstate(all="ignore"):  # e.g. acosh of values below 1: NaN in both runs, compared as equal
        kernel(attrs, [a.copy() for a in inputs], [fresh])
        kernel(attrs, aliased, [aliased[slot]])
    np.testing.assert_array_equal(aliased[slot], fresh)
