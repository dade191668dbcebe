"""The native matrix products (kernels/cpu/native_gemm.c through native.bind_gemm): NumPy's cblas_sgemm on blocks of the
output over native_parallel.c's threads, the epilogue (bias, activations, residual) applied to each block. Against
float64 NumPy, whole models against onnxruntime, one and three threads bit for bit, and malformed calls refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgert.kernels.cpu import blas, native
from helpers import normwise_error
from test_cpu_native_threads import pool_of_three  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(not native.enabled() or blas.sgemm() is None,
                                reason="no native module or no cblas_sgemm in NumPy's BLAS")
rng = np.random.default_rng()


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# (a shape, b shape, trans_a, trans_b): a stack times a matrix, batched, broadcast batches, transposes, odd sizes
CASES = [((197, 192), (192, 768), False, False), ((1, 197, 192), (192, 576), False, False),
         ((197, 192), (192, 192), False, True), ((1, 3, 197, 64), (1, 3, 64, 197), False, False),
         ((1, 3, 197, 197), (3, 197, 64), False, False), ((2, 5, 7), (7, 3), False, False),
         ((4, 33, 17), (1, 17, 65), False, False), ((17, 33), (65, 17), True, True), ((3, 9, 40), (3, 9, 20), True, False),
         ((1, 1), (1, 1), False, False)]


def product(a, b, trans_a, trans_b):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.matmul(a64.swapaxes(-1, -2) if trans_a else a64, b64.swapaxes(-1, -2) if trans_b else b64)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}@{c[1]}-t{int(c[2])}{int(c[3])}")
def test_gemm_matches_float64(case):
    a_shape, b_shape, trans_a, trans_b = case
    a, b = randn(*a_shape), randn(*b_shape)
    want = product(a, b, trans_a, trans_b)
    out = np.full(want.shape, np.nan, np.float32)
    bound = native.bind_gemm(a, trans_a, b, trans_b, out, [], [a, b])
    if want.size // want.shape[-1] == 1:   # a single row is left to NumPy's matmul (gemv)
        assert bound is None
        return
    run, rest = bound
    run()
    assert rest == [] and normwise_error(out, want) <= 1e-6


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


EPILOGUES = {   # steps over inputs [a, b, bias, residual]; what they compute from the product, bias and residual
    "bias": ([{"op": "add", "input": 2}], lambda y, c, r: y + c),
    "bias-gelu": ([{"op": "add", "input": 2}, {"op": "activation", "type": "gelu_erf"}], lambda y, c, r: _gelu(y + c)),
    "bias-residual": ([{"op": "add", "input": 2}, {"op": "add", "input": 3}], lambda y, c, r: y + c + r),
    "relu-residual": ([{"op": "activation", "type": "relu"}, {"op": "add", "input": 3}],
                      lambda y, c, r: np.maximum(y, 0) + r),
}


@pytest.mark.parametrize("epilogue", EPILOGUES)
@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[6]], ids=["stack", "batched", "broadcast"])
def test_epilogue_split_over_three_threads(epilogue, case, pool_of_three):
    a_shape, b_shape, trans_a, trans_b = case
    a, b = randn(*a_shape), randn(*b_shape)
    want = product(a, b, trans_a, trans_b)
    bias, residual = randn(want.shape[-1]), randn(*want.shape)
    steps, expected = EPILOGUES[epilogue]
    out = np.full(want.shape, np.nan, np.float32)
    run, rest = native.bind_gemm(a, trans_a, b, trans_b, out, steps, [a, b, bias, residual])
    assert rest == []
    results = []
    for count in (1, 3):   # the blocks depend on the shapes only: the same bits on one thread and three
        native._native.set_threads(count)
        out[...] = np.nan
        run()
        results.append(out.copy())
    assert np.array_equal(results[0], results[1])
    assert normwise_error(out, expected(want, bias.astype(np.float64), residual.astype(np.float64))) <= 1e-5


def test_epilogue_steps_it_cannot_fuse_are_left():
    a, b = randn(8, 4), randn(4, 16)
    out = np.empty((8, 16), np.float32)
    column = randn(8, 1)   # a broadcast over columns: not a bias of the output's width
    steps = [{"op": "activation", "type": "relu"}, {"op": "add", "input": 2}, {"op": "activation", "type": "relu"}]
    run, rest = native.bind_gemm(a, False, b, False, out, steps, [a, b, column])
    assert rest == steps[1:]
    run()
    np.testing.assert_allclose(out, np.maximum(a @ b, 0), rtol=1e-5, atol=1e-5)


def test_what_it_does_not_take():
    a, b = randn(2, 3, 4), randn(3, 4, 5)
    assert native.bind_gemm(a, False, b, False, np.empty((3, 3, 5), np.float32), [], [a, b]) is None   # 2 vs 3: partial
    assert native.bind_gemm(a[:, :, :2], False, b[0, :2], False, np.empty((2, 3, 5), np.float32), [], [a, b]) is None
    assert native.bind_gemm(a.astype(np.float64), False, b, False, np.empty((2, 3, 5)), [], [a, b]) is None
    assert native.bind_gemm(a[0, 0], False, b[0], False, np.empty(5, np.float32), [], [a, b]) is None   # 1-D


def test_malformed_calls_are_refused():
    address, ilp64 = blas.sgemm()
    a, b, out = randn(4, 8), randn(8, 5), np.empty((4, 5), np.float32)

    def geometry(*fields):
        return np.array(fields, np.int64).tobytes()
    gemm = native._native.gemm
    with pytest.raises(ValueError, match="does not fit"):
        gemm(address, ilp64, a, b, out, geometry(1, 4, 5, 9, 0, 0, 8, 5, 0, 0))   # K past a's rows
    with pytest.raises(ValueError, match="does not fit"):
        gemm(address, ilp64, a, b, out, geometry(2, 4, 5, 8, 32, 0, 8, 5, 0, 0))   # a second batch nobody holds
    with pytest.raises(ValueError, match="cblas_sgemm address"):
        gemm(0, ilp64, a, b, out, geometry(1, 4, 5, 8, 0, 0, 8, 5, 0, 0))
    with pytest.raises(ValueError, match="overlaps"):
        gemm(address, ilp64, a, b, a.reshape(-1)[:20], geometry(1, 4, 5, 8, 0, 0, 8, 5, 0, 0))   # out over a
    with pytest.raises(ValueError, match="without an epilogue"):
        gemm(address, ilp64, a, b, out, geometry(1, 4, 5, 8, 0, 0, 8, 5, 0, 0), None, randn(5))
    gemm(address, ilp64, a, b, out, geometry(1, 4, 5, 8, 0, 0, 8, 5, 0, 0))
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
