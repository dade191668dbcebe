"""Small layers bound to fixed arrays by their prepare hooks: log-softmax (the CTC head of text recognizers) gives the
generic kernel's results bit for bit, rows with infinities included, and allocates nothing per run."""

from __future__ import annotations

import numpy as np
import pytest

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup, lookup_prepare
from edgert.runtime.engine import Workspace

rng = np.random.default_rng()


class _Engine:   # what Workspace needs of an engine: its constants and the derived-array cache
    constants: dict = {}
    derived: dict = {}


@pytest.mark.parametrize("shape, axes", [((32, 1, 37), (2,)), ((4, 6, 5), (1,)), ((3, 4, 5), (1, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_prepared_log_softmax_is_the_kernel_bit_for_bit(shape, axes, dtype):
    x = (5 * rng.standard_normal(shape)).astype(dtype)
    x.reshape(-1)[:3] = [np.inf, -np.inf, -1e4]
    attrs = {"axes": list(axes), "log": True}
    want = np.empty_like(x)
    with np.errstate(all="ignore"):   # inf - inf: NaN rows, as onnxruntime gives
        lookup(LayerKind.SOFTMAX)(attrs, [x], [want])
    got = np.full_like(x, np.nan)
    run = lookup_prepare(LayerKind.SOFTMAX)(attrs, [x], [got], Workspace(_Engine()))
    assert run is not None
    with np.errstate(all="ignore"):
        for _ in range(2):   # scratch is rewritten every run
            run()
    np.testing.assert_array_equal(got, want)


def test_prepared_log_softmax_over_its_own_input():
    x = rng.standard_normal((8, 37)).astype(np.float32)
    want = np.empty_like(x)
    lookup(LayerKind.SOFTMAX)({"axes": [1], "log": True}, [x], [want])
    run = lookup_prepare(LayerKind.SOFTMAX)({"axes": [1], "log": True}, [x], [x], Workspace(_Engine()))
    run()
    np.testing.assert_array_equal(x, want)
