"""The native 2-D resize (kernels/cpu/native_resize.c through resize.py's prepare hook): float32 linear and cubic
resizes of the last two axes against the NumPy kernel, one and three threads bit for bit, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from edgert.kernels.cpu import native, resize
from helpers import normwise_error
from test_cpu_native_threads import pool_of_three  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(not native.enabled(), reason="native module not built")
rng = np.random.default_rng()


def attrs_for(x_shape, out_shape, mode, coordinates="half_pixel", **extra):
    scales = [o / i for o, i in zip(out_shape, x_shape)]
    return {"mode": mode, "coordinate_mode": coordinates, "out_shape": list(out_shape), "scales": scales, **extra}


CASES = [((1, 21, 40, 40), (1, 21, 320, 320), "linear", "pytorch_half_pixel"),   # LRASPP's head: 8x up
         ((1, 128, 20, 20), (1, 128, 40, 40), "linear", "half_pixel"),
         ((2, 3, 9, 8), (2, 3, 4, 5), "linear", "align_corners"),
         ((1, 2, 5, 6), (1, 2, 10, 9), "cubic", "asymmetric"),
         ((1, 2, 16, 13), (1, 2, 8, 5), "cubic", "half_pixel_symmetric"),
         ((1, 3, 7, 7), (1, 3, 7, 21), "linear", "half_pixel")]   # the height kept


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[2]}-{c[3]}-{c[0][2]}x{c[0][3]}-to-{c[1][2]}x{c[1][3]}")
def test_matches_the_numpy_kernel(case, pool_of_three):
    x_shape, out_shape, mode, coordinates = case
    attrs = attrs_for(x_shape, out_shape, mode, coordinates)
    x = rng.standard_normal(x_shape).astype(np.float32)
    want = np.empty(out_shape, np.float32)
    resize.resize(attrs, [x], [want])
    out = np.full(out_shape, np.nan, np.float32)
    run = resize.prepare_resize(attrs, [x], [out], None)
    assert run is not None and run.func is native._native.resize2d
    results = []
    for count in (1, 3):
        native._native.set_threads(count)
        out[...] = np.nan
        run()
        results.append(out.copy())
    assert np.array_equal(results[0], results[1])
    assert normwise_error(out, want) <= 1e-6


def test_antialias_matches_the_numpy_kernel():
    attrs = attrs_for((1, 2, 16, 13), (1, 2, 5, 6), "linear", antialias=1)
    x = rng.standard_normal((1, 2, 16, 13)).astype(np.float32)
    want, out = np.empty((1, 2, 5, 6), np.float32), np.empty((1, 2, 5, 6), np.float32)
    resize.resize(attrs, [x], [want])
    resize.prepare_resize(attrs, [x], [out], None)()
    assert normwise_error(out, want) <= 1e-6


def test_what_it_leaves_to_numpy():
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    out = np.empty((1, 2, 4, 5), np.float32)
    crop = attrs_for(x.shape, out.shape, "linear", "tf_crop_and_resize", roi=[0, 0, -0.2, 0.3, 1, 1, 0.8, 1.3])
    assert resize._bind_native_resize(crop, x, out) is None   # extrapolates
    channels = np.empty((1, 4, 6, 6), np.float32)
    assert resize._bind_native_resize(attrs_for(x.shape, channels.shape, "linear"), x, channels) is None
    assert resize._bind_native_resize(attrs_for(x.shape, out.shape, "linear"), x.astype(np.float64), out) is None


def test_malformed_calls_are_refused():
    x, out = np.zeros((1, 4, 4), np.float32), np.zeros((1, 8, 8), np.float32)
    rows, weights = np.zeros((8, 2), np.int64), np.full((8, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="outside the input"):
        native._native.resize2d(x, out, 1, 4, 4, 8, 8, rows + 4, weights, rows, weights)
    with pytest.raises(ValueError, match="index / float32 weight"):
        native._native.resize2d(x, out, 1, 4, 4, 8, 8, rows, weights[:, :1].copy(), rows, weights)
    with pytest.raises(ValueError, match="output"):
        native._native.resize2d(x, out[:, :4], 1, 4, 4, 8, 8, rows, weights, rows, weights)
