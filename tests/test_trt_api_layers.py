"""Every layer kind of the IR is reachable from an ``INetworkDefinition.add_*`` method, and each such network,
built with ``Builder`` and run through ``IExecutionContext.execute_async_v3`` on host pointers, matches a NumPy
reference (or onnxruntime on the equivalent one-node ONNX model where NumPy would restate the kernel).

Reformat and PointWise are made by the builder (partitioner, fusion passes), not by users;
``test_kinds_covered`` checks that list. RNN comes from edgert's own ``add_rnn`` (TensorRT 10 has no RNN layer)."""

from __future__ import annotations

import numpy as np
import pytest

import edgert as trt
from edgert.ir.kinds import LayerKind
from helpers import normwise_error, op_model, ort_run

NOT_USER_KINDS = {LayerKind.REFORMAT, LayerKind.POINTWISE, LayerKind.COMPACT}   # made by the builder / importer
rng = np.random.default_rng()


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def run_network(feeds: dict, build) -> list[np.ndarray]:
    """Inputs from ``feeds``, ``build(network, *inputs) -> [tensors]`` marked as outputs; build, run, return."""
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    network = builder.create_network(0)
    inputs = [network.add_input(name, _dtype(a), a.shape) for name, a in feeds.items()]
    outputs = build(network, *inputs)
    for index, tensor in enumerate(outputs):
        tensor.name = f"out{index}"
        network.mark_output(tensor)
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    assert plan is not None, builder.last_error
    engine = trt.Runtime().deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    arrays = {name: np.ascontiguousarray(a) for name, a in feeds.items()}
    results = []
    for index in range(len(outputs)):
        name = f"out{index}"
        results.append(np.zeros(engine.get_tensor_shape(name), trt.nptype(engine.get_tensor_dtype(name))))
    for name, array in arrays.items():
        context.set_tensor_address(name, array.ctypes.data)
    for index, array in enumerate(results):
        context.set_tensor_address(f"out{index}", array.ctypes.data)
    assert context.execute_async_v3(0)
    # outputs whose size depends on the data are written at their real shape, which the context then reports
    return [array.reshape(-1)[:int(np.prod(shape))].reshape(shape) for index, array in enumerate(results)
            for shape in [context.get_tensor_shape(f"out{index}")]]


def _dtype(array) -> "trt.DataType":
    return {np.dtype(np.float32): trt.float32, np.dtype(np.int32): trt.int32, np.dtype(np.int64): trt.int64,
            np.dtype(np.bool_): trt.bool}[np.dtype(array.dtype)]


def ort_reference(op, inputs, attrs=None, consts=(), num_outputs=1, opset=18):
    model, feeds = op_model(op, inputs, attrs, opset=opset, consts=consts, num_outputs=num_outputs)
    result = ort_run(model, feeds)
    return [result[f"y{i}"] for i in range(num_outputs)]


# -- cases: kind -> () -> (feeds, build, reference outputs) -------------------------------------------
def case_convolution():
    x, w, b = f32(1, 4, 9, 9), f32(6, 2, 3, 3), f32(6)

    def build(net, t):
        conv = net.add_convolution_nd(t, 6, (3, 3), w, b)
        conv.stride_nd, conv.padding_nd, conv.num_groups = (2, 2), (1, 1), 2
        return [conv.get_output(0)]
    ref = ort_reference("Conv", [("x", x), ("w", w), ("b", b)], {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                                                 "group": 2}, consts=("w", "b"))
    return {"x": x}, build, ref


def case_deconvolution():
    x, w, b = f32(1, 4, 5, 5), f32(4, 3, 3, 3), f32(3)

    def build(net, t):
        deconv = net.add_deconvolution_nd(t, 3, (3, 3), w, b)
        deconv.stride_nd = (2, 2)
        return [deconv.get_output(0)]
    return {"x": x}, build, ort_reference("ConvTranspose", [("x", x), ("w", w), ("b", b)], {"strides": [2, 2]},
                                          consts=("w", "b"))


def case_pooling():
    x = f32(1, 3, 8, 8)

    def build(net, t):
        pool = net.add_pooling_nd(t, trt.PoolingType.AVERAGE, (3, 3))
        pool.stride_nd, pool.padding_nd = (2, 2), (1, 1)
        return [pool.get_output(0)]
    return {"x": x}, build, ort_reference("AveragePool", [("x", x)], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                                       "pads": [1, 1, 1, 1]})


def case_activation():
    x = f32(2, 3, 4)

    def build(net, t):
        act = net.add_activation(t, trt.ActivationType.LEAKY_RELU)
        act.alpha = 0.3
        clip = net.add_activation(act.get_output(0), trt.ActivationType.CLIP)
        clip.alpha, clip.beta = -0.5, 0.8
        return [clip.get_output(0)]
    return {"x": x}, build, [np.clip(np.where(x > 0, x, 0.3 * x), -0.5, 0.8)]


def case_elementwise():
    a, b = f32(2, 3, 4), f32(1, 3, 1)
    return {"a": a, "b": b}, lambda net, p, q: [net.add_elementwise(p, q, trt.ElementWiseOperation.SUB)
                                                .get_output(0)], [a - b]


def case_unary():
    x = f32(3, 5)
    return {"x": x}, lambda net, t: [net.add_unary(t, trt.UnaryOperation.ABS).get_output(0)], [np.abs(x)]


def case_scale():
    x, scale, shift = f32(2, 3, 4, 4), f32(3), f32(3)
    return {"x": x}, lambda net, t: [net.add_scale(t, trt.ScaleMode.CHANNEL, shift, scale).get_output(0)], \
        [x * scale[:, None, None] + shift[:, None, None]]


def case_reduce():
    x = f32(2, 3, 4)
    return {"x": x}, lambda net, t: [net.add_reduce(t, trt.ReduceOperation.MAX, 0b101, True).get_output(0)], \
        [x.max(axis=(0, 2), keepdims=True)]


def case_shuffle():
    x = f32(2, 3, 4)

    def build(net, t):
        shuffle = net.add_shuffle(t)
        shuffle.first_transpose, shuffle.reshape_dims, shuffle.second_transpose = (2, 0, 1), (0, -1), (1, 0)
        return [shuffle.get_output(0)]
    return {"x": x}, build, [x.transpose(2, 0, 1).reshape(4, 6).T]


def case_concatenation():
    a, b = f32(2, 3), f32(2, 5)

    def build(net, p, q):
        concat = net.add_concatenation([p, q])
        concat.axis = 1
        return [concat.get_output(0)]
    return {"a": a, "b": b}, build, [np.concatenate([a, b], axis=1)]


def case_slice():
    x = f32(4, 9)
    return {"x": x}, lambda net, t: [net.add_slice(t, (1, 0), (2, 3), (2, 3)).get_output(0)], [x[1:4:2, 0:9:3]]


def case_resize():
    x = f32(1, 2, 3, 4)

    def build(net, t):
        resize = net.add_resize(t)
        resize.shape = (1, 2, 6, 8)
        resize.resize_mode = trt.InterpolationMode.LINEAR
        resize.coordinate_transformation = trt.ResizeCoordinateTransformation.HALF_PIXEL
        return [resize.get_output(0)]
    sizes = np.array([1, 2, 6, 8], np.int64)
    return {"x": x}, build, ort_reference("Resize", [("x", x), (None, None), (None, None), ("sizes", sizes)],
                                          {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
                                          consts=("sizes",))


def case_padding():
    x = f32(1, 2, 3, 3)
    return {"x": x}, lambda net, t: [net.add_padding_nd(t, (1, 0), (0, 2)).get_output(0)], \
        [np.pad(x, [(0, 0), (0, 0), (1, 0), (0, 2)])]


def case_softmax():
    x = f32(2, 5, 3)

    def build(net, t):
        softmax = net.add_softmax(t)
        softmax.axes = 1 << 1
        return [softmax.get_output(0)]
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    return {"x": x}, build, [e / e.sum(axis=1, keepdims=True)]


def case_matrix_multiply():
    a, b = f32(2, 4, 3), f32(2, 5, 4)
    return {"a": a, "b": b}, lambda net, p, q: [net.add_matrix_multiply(p, trt.MatrixOperation.TRANSPOSE, q,
                                                                        trt.MatrixOperation.TRANSPOSE).get_output(0)], \
        [a.transpose(0, 2, 1).astype(np.float64) @ b.transpose(0, 2, 1)]


def case_normalization():
    x, scale, bias = f32(2, 3, 4, 5), f32(1, 3, 1, 1), f32(1, 3, 1, 1)

    def build(net, t):
        s = net.add_constant(scale.shape, scale).get_output(0)
        b = net.add_constant(bias.shape, bias).get_output(0)
        return [net.add_normalization(t, s, b, 0b1100).get_output(0)]
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    return {"x": x}, build, [(x - mean) / np.sqrt(var + 1e-5) * scale + bias]


def case_lrn():
    x = f32(1, 6, 4, 4)
    return {"x": x}, lambda net, t: [net.add_lrn(t, 3, 1e-2, 0.75, 1.0).get_output(0)], \
        ort_reference("LRN", [("x", x)], {"size": 3, "alpha": 1e-2, "beta": 0.75, "bias": 1.0})


def case_parametric_relu():
    x, slope = f32(2, 3, 4), f32(3, 1)

    def build(net, t):
        return [net.add_parametric_relu(t, net.add_constant(slope.shape, slope).get_output(0)).get_output(0)]
    return {"x": x}, build, [np.where(x > 0, x, x * slope)]


def case_cast():
    x = f32(3, 4) * 10
    return {"x": x}, lambda net, t: [net.add_cast(t, trt.int32).get_output(0)], [x.astype(np.int32)]


def case_gather():
    x, indices = f32(5, 3), np.array([[4, 0], [2, 2]], np.int32)
    return {"x": x, "i": indices}, lambda net, t, i: [net.add_gather(t, i, 0).get_output(0)], [x[indices]]


def case_select():
    c, a, b = rng.random((3, 4)) > 0.5, f32(3, 4), f32(3, 4)
    return {"c": c, "a": a, "b": b}, lambda net, *t: [net.add_select(*t).get_output(0)], [np.where(c, a, b)]


def case_topk():
    x = f32(3, 7)

    def build(net, t):
        topk = net.add_topk(t, trt.TopKOperation.MIN, 2, 1 << 1)
        return [topk.get_output(0), topk.get_output(1)]
    order = np.argsort(x, axis=1, kind="stable")[:, :2]
    return {"x": x}, build, [np.take_along_axis(x, order, axis=1), order]


def case_expand():
    x = f32(3, 1)
    return {"x": x}, lambda net, t: [net.add_expand(t, (2, 3, 4)).get_output(0)], [np.broadcast_to(x, (2, 3, 4))]


def case_tile():
    x = f32(2, 3)
    return {"x": x}, lambda net, t: [net.add_tile(t, (2, 3)).get_output(0)], [np.tile(x, (2, 3))]


def case_identity():
    x = f32(2, 3)
    return {"x": x}, lambda net, t: [net.add_identity(t).get_output(0)], [x]


def case_quantize_dequantize():
    x, scale = f32(2, 8), np.array(0.05, np.float32)

    def build(net, t):
        s = net.add_constant((), scale).get_output(0)
        q = net.add_quantize(t, s)
        return [q.get_output(0), net.add_dequantize(q.get_output(0), s).get_output(0)]
    q = np.clip(np.round(x / scale), -128, 127).astype(np.int8)
    return {"x": x}, build, [q, q.astype(np.float32) * scale]


def case_nms():
    boxes = np.sort(rng.random((1, 6, 4)).astype(np.float32).reshape(1, 6, 2, 2), axis=2).reshape(1, 6, 4)
    scores = rng.random((1, 2, 6)).astype(np.float32)

    def build(net, b, s):
        nms = net.add_nms(b, s, 3)
        nms.iou_threshold = 0.5
        return [nms.get_output(0)]
    ref = ort_reference("NonMaxSuppression", [("b", boxes), ("s", scores), ("m", np.array([3], np.int64)),
                                              ("iou", np.array([0.5], np.float32))], consts=("m", "iou"))
    return {"b": boxes, "s": scores}, build, ref


def case_non_zero():
    x = (rng.random((3, 4)) > 0.5).astype(np.float32)
    return {"x": x}, lambda net, t: [net.add_non_zero(t).get_output(0)], [np.array(np.nonzero(x), np.int64)]


def case_scatter():
    data, indices, updates = f32(4, 3), np.array([[1], [3]], np.int64), f32(2, 3)
    expected = data.copy()
    expected[[1, 3]] = updates
    return {"d": data, "i": indices, "u": updates}, \
        lambda net, d, i, u: [net.add_scatter(d, i, u, trt.ScatterMode.ND).get_output(0)], [expected]


def case_cumulative():
    x = f32(3, 5)
    return {"x": x}, lambda net, t: [net.add_cumulative(t, 1, trt.CumulativeOperation.SUM, False, True)
                                     .get_output(0)], [np.cumsum(x[:, ::-1], axis=1)[:, ::-1]]


def case_einsum():
    a, b = f32(2, 3), f32(3, 4)
    return {"a": a, "b": b}, lambda net, p, q: [net.add_einsum([p, q], "ij,jk->ik").get_output(0)], \
        [a.astype(np.float64) @ b]


def case_grid_sample():
    x, grid = f32(1, 2, 4, 5), rng.uniform(-1, 1, (1, 3, 3, 2)).astype(np.float32)
    return {"x": x, "g": grid}, lambda net, t, g: [net.add_grid_sample(t, g).get_output(0)], \
        ort_reference("GridSample", [("x", x), ("g", grid)], {"mode": "linear"}, opset=20)


def case_roi_align():
    x = f32(1, 2, 8, 8)
    rois, indices = np.array([[0.5, 1.0, 6.0, 5.5]], np.float32), np.array([0], np.int64)
    return {"x": x, "r": rois, "i": indices}, \
        lambda net, t, r, i: [net.add_roi_align(t, r, i, 2, 3, sampling_ratio=2).get_output(0)], \
        ort_reference("RoiAlign", [("x", x), ("r", rois), ("i", indices)], {"output_height": 2, "output_width": 3,
                                                                            "sampling_ratio": 2}, opset=16)


def case_rnn():
    seq, batch, features, hidden = 5, 2, 3, 4
    x, w, r, b = f32(seq, batch, features), f32(2, 4 * hidden, features), f32(2, 4 * hidden, hidden), f32(2, 8 * hidden)

    def build(net, t):
        consts = [net.add_constant(a.shape, a).get_output(0) for a in (w, r, b)]
        layer = net.add_rnn(t, *consts, cell="lstm", direction="bidirectional")
        return [layer.get_output(i) for i in range(3)]
    return {"x": x}, build, ort_reference("LSTM", [("x", x), ("w", w), ("r", r), ("b", b)],
                                          {"hidden_size": hidden, "direction": "bidirectional"},
                                          consts=("w", "r", "b"), num_outputs=3, opset=14)


CASES = {
    LayerKind.RNN: case_rnn,
    LayerKind.CONVOLUTION: case_convolution, LayerKind.DECONVOLUTION: case_deconvolution,
    LayerKind.POOLING: case_pooling, LayerKind.ACTIVATION: case_activation, LayerKind.ELEMENTWISE: case_elementwise,
    LayerKind.UNARY: case_unary, LayerKind.SCALE: case_scale, LayerKind.REDUCE: case_reduce,
    LayerKind.SHUFFLE: case_shuffle, LayerKind.CONCATENATION: case_concatenation, LayerKind.SLICE: case_slice,
    LayerKind.RESIZE: case_resize, LayerKind.PADDING: case_padding, LayerKind.SOFTMAX: case_softmax,
    LayerKind.MATRIX_MULTIPLY: case_matrix_multiply, LayerKind.NORMALIZATION: case_normalization,
    LayerKind.LRN: case_lrn, LayerKind.PARAMETRIC_RELU: case_parametric_relu, LayerKind.CAST: case_cast,
    LayerKind.GATHER: case_gather, LayerKind.SELECT: case_select, LayerKind.TOPK: case_topk,
    LayerKind.EXPAND: case_expand, LayerKind.TILE: case_tile, LayerKind.IDENTITY: case_identity,
    LayerKind.QUANTIZE: case_quantize_dequantize, LayerKind.DEQUANTIZE: case_quantize_dequantize,
    LayerKind.NMS: case_nms, LayerKind.NON_ZERO: case_non_zero, LayerKind.SCATTER: case_scatter,
    LayerKind.CUMULATIVE: case_cumulative, LayerKind.EINSUM: case_einsum, LayerKind.GRID_SAMPLE: case_grid_sample,
    LayerKind.ROI_ALIGN: case_roi_align,
}


def test_kinds_covered():
    assert set(CASES) | NOT_USER_KINDS == set(LayerKind)


@pytest.mark.parametrize("kind", sorted(CASES, key=lambda k: k.value), ids=lambda k: k.value)
def test_layer_kind_from_add_method_matches_reference(kind):
    feeds, build, expected = CASES[kind]()
    got = run_network(feeds, build)
    assert len(got) == len(expected)
    for ours, ref in zip(got, expected):
        ref = np.asarray(ref)
        if ours.dtype.kind in "iub":
            np.testing.assert_array_equal(ours, ref)
        else:
            assert normwise_error(ours, ref) <= 1e-5, kind
