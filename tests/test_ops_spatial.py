"""Spatial layer kinds against onnxruntime: convolution, deconvolution, pooling, normalization, LRN, resize
and padding, each through edgert.build → load → execute on fresh random inputs."""

from __future__ import annotations

import numpy as np
import pytest

import edgert
from edgert.errors import EdgeRTError, UnsupportedError
from helpers import assert_matches_ort, edgert_run, normwise_error, op_model

rng = np.random.default_rng()


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def check(op_type, inputs, attrs=None, opset=18, consts=(), tolerance=1e-5, num_outputs=1):
    model, feeds = op_model(op_type, inputs, attrs, opset, consts, num_outputs)
    return assert_matches_ort(model, feeds, tolerance=tolerance)


def check_reference(op_type, inputs, attrs=None, opset=18, consts=(), tolerance=1e-12):
    """Against ONNX's reference evaluator, for types onnxruntime has no kernel for (float64 Conv...)."""
    from onnx.reference import ReferenceEvaluator
    model, feeds = op_model(op_type, inputs, attrs, opset, consts)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = edgert_run(model, feeds)["y0"]
    assert got.dtype == want.dtype and normwise_error(got, want) <= tolerance


def build_error(op_type, inputs, attrs=None, opset=18, consts=(), error=EdgeRTError, num_outputs=1):
    model, feeds = op_model(op_type, inputs, attrs, opset, consts, num_outputs)
    with pytest.raises(error) as info:
        edgert.build(model, shapes={k: v.shape for k, v in feeds.items()})
    assert op_type in str(info.value)
    return str(info.value)


# -- Conv ---------------------------------------------------------------------------------------------
CONVS = [
    ((1, 4, 9, 9), (6, 4, 3, 3), {}),
    ((2, 4, 9, 8), (6, 4, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 4, 9, 9), (6, 4, 3, 2), {"pads": [0, 1, 2, 1], "dilations": [2, 1]}),
    ((1, 4, 13, 14), (6, 4, 3, 4), {"pads": [2, 1, 1, 2], "dilations": [2, 2], "strides": [2, 3]}),
    ((1, 4, 13, 14), (6, 4, 5, 3), {"pads": [1, 1, 1, 1], "dilations": [3, 1], "strides": [2, 2]}),
    ((1, 4, 10, 9), (6, 4, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 4, 10, 9), (6, 4, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [3, 2]}),
    ((1, 4, 10, 9), (6, 4, 3, 3), {"auto_pad": "VALID", "strides": [2, 1]}),
    ((1, 4, 9, 9), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((2, 8, 9, 9), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),                 # depthwise
    ((1, 8, 12, 11), (8, 1, 5, 5), {"group": 8, "pads": [2, 1, 2, 3], "strides": [2, 2], "dilations": [1, 2]}),
    ((1, 4, 9, 9), (16, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),                # depth multiplier 4
    ((2, 8, 7, 7), (16, 8, 1, 1), {}),                                               # pointwise
    ((1, 8, 7, 7), (16, 8, 1, 1), {"strides": [2, 2]}),
    ((1, 8, 7, 7), (16, 4, 1, 1), {"group": 2}),
    ((2, 3, 20), (5, 3, 4), {"pads": [1, 2], "strides": [3]}),                       # 1-D
    ((1, 2, 5, 6, 7), (4, 2, 3, 3, 3), {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 2]}),  # 3-D
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", CONVS)
def test_conv(x_shape, w_shape, attrs):
    bias = randn(w_shape[0])
    check("Conv", [("x", randn(*x_shape)), ("w", randn(*w_shape)), ("b", bias)], attrs, consts=("w", "b"))


def test_conv_kernel_shape_attribute_and_runtime_weights():
    check("Conv", [("x", randn(1, 3, 8, 8)), ("w", randn(5, 3, 3, 3))], {"kernel_shape": [3, 3], "pads": [1] * 4})


@pytest.mark.parametrize("dtype,tolerance", [(np.float16, 1e-2), (np.float64, 1e-12)])
def test_conv_other_float_types(dtype, tolerance):
    compare = check if dtype == np.float16 else check_reference
    compare("Conv", [("x", randn(1, 4, 8, 8, dtype=dtype)), ("w", randn(6, 4, 3, 3, dtype=dtype))],
            {"pads": [1, 1, 1, 1]}, consts=("w",), tolerance=tolerance)
    compare("Conv", [("x", randn(1, 4, 8, 8, dtype=dtype)), ("w", randn(4, 1, 3, 3, dtype=dtype))],
            {"group": 4}, consts=("w",), tolerance=tolerance)


def test_conv_large_and_tiled(monkeypatch):
    # blocks of planes on worker threads, and im2col split into several column tiles
    from edgert.kernels.cpu import convolution
    check("Conv", [("x", randn(1, 32, 40, 40)), ("w", randn(32, 1, 3, 3))], {"group": 32, "pads": [1] * 4},
          consts=("w",))
    check("Conv", [("x", randn(1, 32, 40, 40)), ("w", randn(32, 1, 3, 3))],
          {"group": 32, "pads": [1, 2, 1, 0], "strides": [2, 2], "dilations": [2, 1]}, consts=("w",))
    monkeypatch.setattr(convolution, "COLUMN_TILE_BYTES", 1 << 12)
    check("Conv", [("x", randn(2, 6, 11, 10)), ("w", randn(4, 3, 3, 3))], {"group": 2, "pads": [1] * 4},
          consts=("w",))
    check("Conv", [("x", randn(2, 6, 11, 10)), ("w", randn(4, 6, 3, 2))], {"strides": [2, 2], "pads": [1] * 4},
          consts=("w",))


def test_conv_errors():
    message = build_error("Conv", [("x", randn(1, 4, 8, 8)), ("w", randn(6, 3, 3, 3))], consts=("w",))
    assert "group" in message
    message = build_error("Conv", [("x", randn(1, 4, 8, 8)), ("w", randn(6, 4, 3, 3))], {"kernel_shape": [2, 2]},
                          consts=("w",))
    assert "kernel_shape" in message
    build_error("Conv", [("x", randn(1, 4, 8, 8)), ("w", randn(6, 4, 3, 3))], {"auto_pad": "SAME"},
                consts=("w",), error=UnsupportedError)


# -- ConvTranspose ------------------------------------------------------------------------------------
DECONVS = [
    ((1, 4, 5, 5), (4, 3, 3, 3), {}),
    ((2, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 4, 5, 5), (4, 3, 3, 3), {"strides": [2, 2], "output_padding": [1, 0], "pads": [0, 1, 1, 0]}),
    ((1, 4, 5, 5), (4, 3, 2, 2), {"strides": [2, 2]}),                                    # non-overlapping
    ((1, 4, 5, 5), (4, 3, 3, 3), {"dilations": [2, 2], "strides": [2, 1]}),
    ((1, 4, 5, 5), (4, 2, 3, 3), {"group": 2, "strides": [2, 2]}),
    ((1, 4, 5, 5), (4, 3, 3, 3), {"strides": [2, 2], "output_shape": [10, 11]}),
    ((1, 4, 5, 5), (4, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 4, 5, 5), (4, 3, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((2, 3, 7), (3, 2, 3), {"strides": [3], "pads": [1, 2]}),                             # 1-D
    ((1, 2, 3, 4, 3), (2, 2, 3, 2, 3), {"strides": [2, 1, 2]}),                           # 3-D
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", DECONVS)
def test_conv_transpose(x_shape, w_shape, attrs):
    bias = randn(w_shape[1] * attrs.get("group", 1))
    check("ConvTranspose", [("x", randn(*x_shape)), ("w", randn(*w_shape)), ("b", bias)], attrs, consts=("w", "b"))


def test_conv_transpose_runtime_weights_and_errors():
    check("ConvTranspose", [("x", randn(1, 3, 4, 4)), ("w", randn(3, 2, 3, 3))], {"strides": [2, 2]})
    message = build_error("ConvTranspose", [("x", randn(1, 3, 4, 4)), ("w", randn(3, 2, 3, 3))],
                          {"strides": [2, 2], "output_padding": [2, 2]}, consts=("w",))
    assert "output_padding" in message


# -- Pooling ------------------------------------------------------------------------------------------
POOLS = [
    {"kernel_shape": [3, 3]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1], "ceil_mode": 1},
    {"kernel_shape": [2, 2], "strides": [3, 3], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [4, 4], "strides": [3, 2], "auto_pad": "SAME_LOWER"},
    {"kernel_shape": [2, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 3], "dilations": [2, 3], "pads": [2, 1, 1, 2]},
]


@pytest.mark.parametrize("attrs", POOLS)
def test_max_pool(attrs):
    check("MaxPool", [("x", randn(2, 3, 11, 10))], attrs, opset=12)


@pytest.mark.parametrize("attrs", POOLS)
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool(attrs, include_pad):
    check("AveragePool", [("x", randn(2, 3, 11, 10))], {**attrs, "count_include_pad": include_pad}, opset=19)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    check("LpPool", [("x", randn(2, 3, 9, 8))], {"kernel_shape": [3, 2], "strides": [2, 1], "p": p,
                                                  "pads": [1, 0, 1, 1]})


@pytest.mark.parametrize("op_type,attrs", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("LpPool", {"kernel_shape": [3, 3], "strides": [2, 2], "p": 3}),
])
def test_pool_large(op_type, attrs):
    # big enough for the tap-by-tap path over blocks of planes on worker threads
    check(op_type, [("x", randn(2, 16, 40, 40))], attrs, opset=19)


def test_pool_ranks_and_types():
    check("MaxPool", [("x", randn(2, 3, 17))], {"kernel_shape": [3], "strides": [2]})
    check("AveragePool", [("x", randn(1, 2, 6, 7, 5))], {"kernel_shape": [2, 3, 2], "pads": [1] * 6})
    for dtype in (np.int8, np.uint8):
        x = rng.integers(0, 100, (1, 3, 8, 8)).astype(dtype)
        check("MaxPool", [("x", x)], {"kernel_shape": [3, 3], "pads": [1] * 4}, opset=12)
    check("MaxPool", [("x", randn(1, 3, 8, 8, dtype=np.float16))], {"kernel_shape": [2, 2]}, tolerance=1e-3)
    check("AveragePool", [("x", randn(1, 3, 8, 8, dtype=np.float16))], {"kernel_shape": [3, 3]}, tolerance=1e-2)


@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_indices(storage_order):
    # distinct values: the index of a tied maximum is implementation-defined
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8).astype(np.float32)
    check("MaxPool", [("x", x)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                  "storage_order": storage_order}, opset=12, num_outputs=2)


@pytest.mark.parametrize("op_type", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pool(op_type):
    check(op_type, [("x", randn(2, 5, 7, 6))])
    check(op_type, [("x", randn(2, 5, 9))])
    check(op_type, [("x", randn(1, 3, 4, 3, 5))])


def test_pool_errors():
    build_error("MaxPool", [("x", randn(1, 3, 8, 8))], {"kernel_shape": [3]})
    build_error("AveragePool", [("x", randn(1, 3, 8, 8))], {"kernel_shape": [9, 9]})
    build_error("MaxPool", [("x", randn(1, 3, 8, 8))], {})


# -- BatchNormalization --------------------------------------------------------------------------------
def _bn_inputs(channels, dtype=np.float32):
    return [("s", randn(channels, dtype=dtype)), ("b", randn(channels, dtype=dtype)),
            ("mean", randn(channels, dtype=dtype)), ("var", rng.random(channels).astype(dtype) + 0.5)]


@pytest.mark.parametrize("opset", [7, 9, 15])
def test_batch_norm(opset):
    params = _bn_inputs(4)
    check("BatchNormalization", [("x", randn(2, 4, 5, 6))] + params, {"epsilon": 1e-3}, opset=opset,
          consts=("s", "b", "mean", "var"))
    check("BatchNormalization", [("x", randn(3, 4))] + params, opset=opset, consts=("s", "b", "mean", "var"))


def test_batch_norm_runtime_parameters_and_types():
    check("BatchNormalization", [("x", randn(2, 4, 5, 6))] + _bn_inputs(4))
    check("BatchNormalization", [("x", randn(2, 4, 3, 3, dtype=np.float16))] + _bn_inputs(4, np.float16),
          consts=("s", "b", "mean", "var"), tolerance=1e-2)


def test_batch_norm_training_mode_is_an_error():
    message = build_error("BatchNormalization", [("x", randn(2, 4, 3, 3))] + _bn_inputs(4), {"training_mode": 1},
                          consts=("s", "b", "mean", "var"), error=UnsupportedError)
    assert "training" in message


# -- Normalization family ------------------------------------------------------------------------------
def test_instance_norm():
    check("InstanceNormalization", [("x", randn(2, 3, 5, 6)), ("s", randn(3)), ("b", randn(3))],
          {"epsilon": 1e-3}, consts=("s", "b"))
    check("InstanceNormalization", [("x", randn(2, 3, 7)), ("s", randn(3)), ("b", randn(3))])


@pytest.mark.parametrize("axis", [-1, -2, 1, 0])
def test_layer_norm(axis):
    x = randn(2, 3, 4, 5)
    norm_shape = x.shape[axis:] if axis != 0 else x.shape
    check("LayerNormalization", [("x", x), ("s", randn(*norm_shape)), ("b", randn(*norm_shape))],
          {"axis": axis, "epsilon": 1e-3}, opset=17, consts=("s",))


def test_layer_norm_mean_and_inv_std_outputs():
    check("LayerNormalization", [("x", randn(3, 4, 6)), ("s", randn(6))], opset=17, num_outputs=3)


@pytest.mark.parametrize("opset,groups", [(18, 2), (21, 3), (21, 6)])
def test_group_norm(opset, groups):
    params = groups if opset == 18 else 6
    check("GroupNormalization", [("x", randn(2, 6, 4, 5)), ("s", randn(params)), ("b", randn(params))],
          {"num_groups": groups, "epsilon": 1e-4}, opset=opset, consts=("s", "b"), tolerance=1e-4)


def test_mean_variance_normalization():
    check("MeanVarianceNormalization", [("x", randn(2, 3, 4, 5))], opset=13, tolerance=1e-4)
    check("MeanVarianceNormalization", [("x", randn(2, 3, 4, 5))], {"axes": [1, 3]}, opset=13, tolerance=1e-4)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(size):
    check("LRN", [("x", randn(2, 7, 5, 4))], {"size": size, "alpha": 1e-2, "beta": 0.6, "bias": 1.5})


def test_lrn_even_size():
    # onnxruntime takes odd sizes only (and ONNX's reference loops over the batch, not the channels): use the
    # spec's formula, whose window is [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)].
    x = randn(2, 7, 5, 4)
    model, feeds = op_model("LRN", [("x", x)], {"size": 4, "alpha": 1e-2, "beta": 0.6, "bias": 1.5})
    squares = np.pad(x.astype(np.float64) ** 2, ((0, 0), (1, 2), (0, 0), (0, 0)))
    window = sum(squares[:, i:i + 7] for i in range(4))
    want = x / (1.5 + 1e-2 / 4 * window) ** 0.6
    assert normwise_error(edgert_run(model, feeds)["y0"], want) <= 1e-6


def test_normalization_errors():
    build_error("GroupNormalization", [("x", randn(2, 6, 4)), ("s", randn(6)), ("b", randn(6))],
                {"num_groups": 4}, opset=21, consts=("s", "b"))
    build_error("InstanceNormalization", [("x", randn(2, 3, 5)), ("s", randn(4)), ("b", randn(4))],
                consts=("s", "b"))


# -- Resize / Upsample ---------------------------------------------------------------------------------
def resize(x, attrs, scales=None, sizes=None, roi=None, opset=19, tolerance=1e-5):
    f32, i64 = np.float32, np.int64
    inputs = [("x", x), ("roi", np.asarray(roi, f32)) if roi is not None else (None, None),
              ("scales", np.asarray(scales, f32)) if scales is not None else (None, None),
              ("sizes", np.asarray(sizes, i64)) if sizes is not None else (None, None)]
    while inputs[-1][0] is None:
        inputs.pop()
    return check("Resize", inputs, attrs, opset=opset, consts=("roi", "scales", "sizes"), tolerance=tolerance)


NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
COORDINATES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]


@pytest.mark.parametrize("nearest_mode", NEAREST)
@pytest.mark.parametrize("coordinates", COORDINATES)
def test_resize_nearest(nearest_mode, coordinates):
    attrs = {"mode": "nearest", "nearest_mode": nearest_mode, "coordinate_transformation_mode": coordinates}
    resize(randn(1, 2, 5, 7), attrs, scales=[1, 1, 2, 3])
    resize(randn(1, 2, 9, 7), attrs, sizes=[1, 2, 4, 3])


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coordinates", COORDINATES)
def test_resize_linear_and_cubic(mode, coordinates):
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinates}
    resize(randn(2, 3, 5, 6), attrs, scales=[1, 1, 2, 1.5])
    resize(randn(2, 3, 9, 8), attrs, sizes=[2, 3, 4, 5])


@pytest.mark.parametrize("max_period", [0, 8])
def test_resize_tap_paths(monkeypatch, max_period):
    # the gather and periodic-slice paths that long axes take instead of the dense matrix product
    from edgert.kernels.cpu import resize as kernel
    monkeypatch.setattr(kernel, "DENSE_MAX_INPUT", 0)
    monkeypatch.setattr(kernel, "MAX_PERIOD", max_period)
    kernel._axis_taps.cache_clear()
    for mode in ("linear", "cubic"):
        resize(randn(1, 2, 5, 6), {"mode": mode}, scales=[1, 1, 2, 3])
        resize(randn(1, 2, 9, 8), {"mode": mode, "exclude_outside": int(mode == "cubic")}, scales=[1, 1, 0.5, 1.5])
        resize(randn(1, 2, 16, 13), {"mode": mode, "antialias": 1}, scales=[1, 1, 0.5, 0.4], tolerance=1e-4)
    kernel._axis_taps.cache_clear()


def test_resize_cubic_options_and_3d():
    resize(randn(1, 2, 6, 5), {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, scales=[1, 1, 1.5, 2])
    resize(randn(1, 2, 9, 8), {"mode": "cubic", "exclude_outside": 1}, sizes=[1, 2, 4, 5])
    resize(randn(1, 2, 3, 4, 5), {"mode": "linear"}, scales=[1, 1, 2, 2, 0.5])


def test_resize_tf_crop_and_resize():
    attrs = {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 7.0}
    resize(randn(1, 1, 6, 6), attrs, sizes=[1, 1, 4, 5], roi=[0, 0, -0.2, 0.3, 1, 1, 0.8, 1.3])
    attrs = {**attrs, "mode": "nearest", "axes": [3, 2]}
    resize(randn(1, 1, 6, 6), attrs, sizes=[4, 5], roi=[0.3, -0.2, 1.3, 0.8])


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_resize_sizes_axes_and_aspect_policy(policy):
    resize(randn(1, 2, 6, 8), {"mode": "linear", "keep_aspect_ratio_policy": policy, "axes": [2, 3]}, sizes=[9, 9])
    resize(randn(1, 2, 6, 8), {"mode": "nearest", "axes": [-1]}, scales=[1.5])


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_antialias(mode):
    resize(randn(1, 2, 16, 13), {"mode": mode, "antialias": 1}, scales=[1, 1, 0.5, 0.4], tolerance=1e-4)
    resize(randn(1, 2, 16, 13), {"mode": mode, "antialias": 1}, sizes=[1, 2, 5, 6], tolerance=1e-4)


def test_resize_integer_and_half_types():
    x = rng.integers(0, 255, (1, 3, 5, 6)).astype(np.uint8)
    resize(x, {"mode": "nearest"}, scales=[1, 1, 2, 2])
    resize(randn(1, 3, 5, 6, dtype=np.float16), {"mode": "linear"}, scales=[1, 1, 2, 2], tolerance=1e-3)


def test_resize_older_opsets():
    resize(randn(1, 2, 4, 6), {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
           scales=[1, 1, 2, 1.5], roi=[], opset=11)
    resize(randn(1, 2, 4, 6), {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn"},
           scales=[1, 1, 2, 1.5], roi=[], opset=11)
    check("Resize", [("x", randn(1, 2, 4, 6)), ("s", np.asarray([1, 1, 2, 3], np.float32))], {"mode": "nearest"},
          opset=10, consts=("s",))
    check("Resize", [("x", randn(1, 2, 4, 6)), ("s", np.asarray([1, 1, 2, 0.5], np.float32))], {"mode": "linear"},
          opset=10, consts=("s",))


def test_upsample():
    check("Upsample", [("x", randn(1, 2, 3, 4))], {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 3.0]}, opset=7)
    check("Upsample", [("x", randn(1, 2, 3, 4)), ("s", np.asarray([1, 1, 2, 2.5], np.float32))],
          {"mode": "linear"}, opset=9, consts=("s",))


def test_resize_errors():
    x = randn(1, 2, 4, 4)
    model, feeds = op_model("Resize", [("x", x), (None, None), ("scales", np.ones(4, np.float32)),
                                       ("sizes", np.full(4, 4, np.int64))], {}, opset=19, consts=("scales", "sizes"))
    with pytest.raises(EdgeRTError, match="exactly one of scales and sizes"):
        edgert.build(model, shapes={"x": x.shape})
    model, feeds = op_model("Resize", [("x", x), (None, None), ("scales", np.ones(4, np.float32))], {}, opset=19)
    with pytest.raises(UnsupportedError, match="constant"):
        edgert.build(model, shapes={"x": x.shape, "scales": (4,)})
    build_error("Resize", [("x", x), (None, None), ("scales", np.ones(4, np.float32))], {"mode": "area"},
                consts=("scales",), error=UnsupportedError)


# -- Pad -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes(mode):
    pads = np.asarray([0, 1, 2, 1, 0, 2, 1, 3], np.int64)
    check("Pad", [("x", randn(2, 3, 4, 5)), ("pads", pads)], {"mode": mode}, opset=19, consts=("pads",))
    crop = np.asarray([0, -1, 1, 0, 0, 1, -1, 1], np.int64)
    check("Pad", [("x", randn(2, 3, 4, 5)), ("pads", crop)], {"mode": mode}, opset=19, consts=("pads",))


def test_pad_value_axes_and_types():
    pads = np.asarray([1, 2, 0, 3], np.int64)
    check("Pad", [("x", randn(2, 3, 4)), ("pads", pads), ("v", np.asarray(2.5, np.float32)),
                  ("axes", np.asarray([0, -1], np.int64))], opset=18, consts=("pads", "v", "axes"))
    x = rng.integers(-5, 5, (3, 4)).astype(np.int32)
    check("Pad", [("x", x), ("pads", pads), ("v", np.asarray(7, np.int32))], opset=13, consts=("pads", "v"))
    check("Pad", [("x", randn(3, 4))], {"pads": [1, 0, 2, 3], "value": 1.5}, opset=7)
    check("Pad", [("x", randn(3, 4))], {"pads": [1, 0, 2, 3], "mode": "reflect"}, opset=7)


def test_pad_errors():
    message = build_error("Pad", [("x", randn(3, 4)), ("pads", np.asarray([1, 1], np.int64))], consts=("pads",))
    assert "pads" in message
    build_error("Pad", [("x", randn(3, 4)), ("pads", np.zeros(4, np.int64))], error=UnsupportedError)
    build_error("Pad", [("x", randn(3, 4)), ("pads", np.zeros(4, np.int64))], {"mode": "mirror"},
                consts=("pads",), error=UnsupportedError)
