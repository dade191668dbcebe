"""Direct calls of the native module with sizes no plan should carry: every one is a ValueError or an
OverflowError (or TypeError for a wrong buffer), never a crash, a wrap-around or a giant allocation.

The module checks every size product for 64-bit overflow, every buffer's length against the geometry, and
caps the per-plane scratch (a crafted plan's pads of 2^31 used to wrap ``rows * row_stride * 4`` to 0).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgert.kernels.cpu import native

pytestmark = pytest.mark.skipif(native._native is None, reason="the native module is not built")

FIELDS = ("planes", "channels", "height", "width", "out_height", "out_width", "kernel_h", "kernel_w",
          "stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left")
GOOD = dict(zip(FIELDS, (2, 2, 4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1)))   # 3x3, stride 1, pad 1 on 2 planes of 4x4
EXTREMES = (-1, -(2 ** 63), 0, 2 ** 31 - 111, 2 ** 31, 2 ** 32, 2 ** 62, 2 ** 63 - 1)


def geometry(**changes) -> bytes:
    return np.array([changes.get(name, GOOD[name]) for name in FIELDS], np.int64).tobytes()


def arrays():
    x = np.random.default_rng().standard_normal((1, 2, 4, 4)).astype(np.float32)
    return x, np.zeros((1, 2, 4, 4), np.float32), np.ones((2, 3, 3), np.float32)


def calls(x, out, w, geo):
    """Each native entry point over the same arrays and geometry."""
    columns = np.zeros(2 * 9 * 16, np.float32)
    return {"depthwise": lambda: native._native.depthwise_conv2d(x, w, None, out, geo),
            "max pool": lambda: native._native.pool2d(x, out, None, geo),
            "average pool": lambda: native._native.pool2d(x, out, np.ones(16, np.float32), geo),
            "im2col": lambda: native._native.im2col(x, columns, geo),
            "direct": lambda: native._native.conv2d_direct(x, np.zeros((1, 18, 8), np.float32), None, out[0], geo, 2)}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", EXTREMES)
def test_extreme_geometry_fields_are_errors(field, value):
    x, out, w = arrays()
    for name, call in calls(x, out, w, geometry(**{field: value})).items():
        if field.startswith("pad") and value == 0:
            call()   # no padding is valid: the scratch plane covers every window the output size asks for
            continue
        with pytest.raises((ValueError, OverflowError)):
            call()


def test_pads_of_a_crafted_plan_are_refused():
    # issue 18: pooling pads of 2^31 - 111 wrapped the scratch size to 0 and segfaulted
    x, out, w = arrays()
    for call in calls(x, out, w, geometry(pad_top=2 ** 31 - 111, pad_left=2 ** 31 - 111)).values():
        with pytest.raises(ValueError, match="scratch plane"):
            call()


def test_wrapping_plane_products_are_refused():
    # planes * height * width == 2^64 + 16 wraps to the true length of a 16-float buffer without the check
    x = np.zeros(16, np.float32)
    geo = geometry(planes=2 ** 32, channels=1, height=2 ** 32 + 1, width=1, out_height=1, out_width=1, kernel_h=1,
                   kernel_w=1, pad_top=0, pad_left=0)
    with pytest.raises(OverflowError, match="overflows"):
        native._native.pool2d(x, x.copy(), None, geo)


@pytest.mark.parametrize("shrink", ["input", "output", "weights", "bias", "divisor", "columns"])
def test_mismatched_buffers_are_refused(shrink):
    x, out, w = arrays()
    bias, divisor, columns = np.zeros(2, np.float32), np.ones(16, np.float32), np.zeros(2 * 9 * 16, np.float32)
    short = {"input": x, "output": out, "weights": w, "bias": bias, "divisor": divisor, "columns": columns}
    short[shrink] = short[shrink].reshape(-1)[:-1]
    geo = geometry()
    calls_for = {"depthwise": lambda a: native._native.depthwise_conv2d(a["input"], a["weights"], a["bias"],
                                                                        a["output"], geo),
                 "pool": lambda a: native._native.pool2d(a["input"], a["output"], a["divisor"], geo),
                 "im2col": lambda a: native._native.im2col(a["input"], a["columns"], geo)}
    uses = {"depthwise": ("input", "weights", "bias", "output"), "pool": ("input", "output", "divisor"),
            "im2col": ("input", "columns")}
    for name, call in calls_for.items():
        if shrink in uses[name]:
            with pytest.raises(ValueError, match=f"{shrink}: expected"):
                call(short)


def test_wrong_argument_types_are_type_errors():
    x, out, w = arrays()
    with pytest.raises(TypeError):
        native._native.pool2d(x, out, 3.5, geometry())   # a divisor that is no buffer
    with pytest.raises(TypeError):
        native._native.depthwise_conv2d(x, w, None, out.tobytes(), geometry())   # read-only output
    with pytest.raises(TypeError):
        native._native.im2col(x, np.zeros(288, np.float32))   # geometry missing


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 6), st.sampled_from(EXTREMES)), min_size=14, max_size=14),
       st.sampled_from(["depthwise", "max pool", "average pool", "im2col"]))
def test_random_geometries_never_crash(fields, entry):
    x, out, w = arrays()
    call = calls(x, out, w, np.array(fields, np.int64).tobytes())[entry]
    try:
        call()
    except (ValueError, OverflowError):
        return
    # it ran: then the geometry matched every buffer, and the output is finite
    assert np.isfinite(out).all()
