"""Layer views with TensorRT's attributes (``stride_nd``, ``reshape_dims``, ``axes`` ...), each resolved into
its IR node's attrs against the current input shapes (see ``edgert.api.network``)."""

from __future__ import annotations

import enum
import math

import numpy as np

from edgert.api import enums as E
from edgert.api.network import ILayer
from edgert.errors import ShapeError, UnsupportedError
from edgert.ir.kinds import LayerKind, PoolingType as IRPooling

LayerType = enum.Enum("LayerType", [k.name for k in LayerKind] + ["CONSTANT"])


def _tuple(value, what: str) -> tuple:
    return E.dims(value, what)


class _Spatial(ILayer):
    """Shared by convolution, deconvolution and pooling: window, strides, pre/post padding, dilations."""

    def __init__(self, network, node, window):
        super().__init__(network, node)
        self._window = _tuple(window, "kernel shape")
        n = len(self._window)
        self._stride, self._dilation = (1,) * n, (1,) * n
        self._pre, self._post = (0,) * n, (0,) * n

    stride_nd = property(lambda self: self._stride, lambda self, v: self._param("stride", _tuple(v, "stride")))
    dilation_nd = property(lambda self: self._dilation,
                           lambda self, v: self._param("dilation", _tuple(v, "dilation")))
    pre_padding = property(lambda self: self._pre, lambda self, v: self._param("pre", _tuple(v, "pre_padding")))
    post_padding = property(lambda self: self._post, lambda self, v: self._param("post", _tuple(v, "post_padding")))

    @property
    def padding_nd(self) -> tuple:
        return self._pre

    @padding_nd.setter
    def padding_nd(self, value) -> None:
        self._pre = self._post = _tuple(value, "padding")
        self._network._changed()

    def _window_attrs(self) -> dict:
        n = len(self._window)
        for what, values in (("stride", self._stride), ("dilation", self._dilation), ("pre_padding", self._pre),
                             ("post_padding", self._post)):
            if len(values) != n:
                raise ShapeError(f"layer {self.name!r}: {what} {values} needs {n} values, one per window axis")
        return {"kernel": list(self._window), "strides": list(self._stride), "dilations": list(self._dilation),
                "pads": list(self._pre) + list(self._post)}


class _Weighted(_Spatial):
    """Convolution and deconvolution: TensorRT's flat kernel and bias weights, shaped here for the IR."""

    def __init__(self, network, node, num_output_maps, kernel_shape, kernel, bias):
        super().__init__(network, node, kernel_shape)
        self._maps, self._groups = int(num_output_maps), 1
        self._kernel, self._bias = E.as_array(kernel, "kernel"), E.as_array(bias, "bias")

    num_output_maps = property(lambda self: self._maps, lambda self, v: self._param("maps", int(v)))
    num_groups = property(lambda self: self._groups, lambda self, v: self._param("groups", int(v)))
    kernel_size_nd = property(lambda self: self._window,
                              lambda self, v: self._param("window", _tuple(v, "kernel shape")))
    kernel = property(lambda self: self._kernel, lambda self, v: self._param("kernel", E.as_array(v)))
    bias = property(lambda self: self._bias, lambda self, v: self._param("bias", E.as_array(v)))

    def _weight_shape(self, channels: int) -> tuple:
        raise NotImplementedError

    def _resolve(self) -> dict:
        channels = self._input_shape()[1]
        shape = self._weight_shape(channels)
        if self._kernel.size != math.prod(shape):
            raise ShapeError(f"layer {self.name!r}: kernel weights hold {self._kernel.size} values, expected "
                             f"{math.prod(shape)} for shape {shape} (output maps, input channels / groups, "
                             "window)")
        self._network._set_const(self._node, 1, self._kernel.reshape(shape))
        if self._bias.size:
            if self._bias.size != self._maps:
                raise ShapeError(f"layer {self.name!r}: bias holds {self._bias.size} values, expected "
                                 f"{self._maps} (one per output map)")
            self._network._set_const(self._node, 2, self._bias.reshape(-1))
        elif len(self._node.inputs) > 2:
            self._node.set_input(2, None)
            self._node._inputs.pop()   # no bias: the IR leaves the optional input out
        return {**self._window_attrs(), "group": self._groups}


class IConvolutionLayer(_Weighted):
    def _weight_shape(self, channels: int) -> tuple:
        return (self._maps, channels // max(self._groups, 1)) + self._window


class IDeconvolutionLayer(_Weighted):
    def _weight_shape(self, channels: int) -> tuple:
        return (channels, self._maps // max(self._groups, 1)) + self._window

    def _resolve(self) -> dict:
        return {**super()._resolve(), "output_padding": [0] * len(self._window)}


class IPoolingLayer(_Spatial):
    def __init__(self, network, node, type, window_size):  # noqa: A002
        super().__init__(network, node, window_size)
        self._type, self._excludes_padding = E.PoolingType(type), True

    type = property(lambda self: self._type, lambda self, v: self._param("type", E.PoolingType(v)))
    window_size_nd = property(lambda self: self._window,
                              lambda self, v: self._param("window", _tuple(v, "window")))
    average_count_excludes_padding = property(lambda self: self._excludes_padding,
                                              lambda self, v: self._param("excludes_padding", bool(v)))

    def _resolve(self) -> dict:
        attrs = {**self._window_attrs(), "type": self._type.ir, "ceil_mode": False}
        if self._type.ir == IRPooling.AVERAGE:
            attrs["count_include_pad"] = not self._excludes_padding
        return attrs


class IActivationLayer(ILayer):
    def __init__(self, network, node, type):  # noqa: A002
        super().__init__(network, node)
        self._type, self._alpha, self._beta = E.ActivationType(type), 0.0, 0.0

    type = property(lambda self: self._type, lambda self, v: self._param("type", E.ActivationType(v)))
    alpha = property(lambda self: self._alpha, lambda self, v: self._param("alpha", float(v)))
    beta = property(lambda self: self._beta, lambda self, v: self._param("beta", float(v)))

    def _resolve(self) -> dict:
        if self._type == E.ActivationType.SOFTPLUS and (self._alpha, self._beta) != (1.0, 1.0):
            raise UnsupportedError(f"layer {self.name!r}: SOFTPLUS with alpha {self._alpha}, beta {self._beta}; "
                                   "edgert runs log(1 + exp(x)) only: set alpha = beta = 1")
        return {"type": self._type.ir, "alpha": self._alpha, "beta": self._beta}


class _OpLayer(ILayer):
    """Layers whose one attribute is an operation enum (elementwise, unary)."""

    op_enum: type = None

    def __init__(self, network, node, op):
        super().__init__(network, node)
        self._op = self.op_enum(op)

    op = property(lambda self: self._op, lambda self, v: self._param("op", self.op_enum(v)))

    def _resolve(self) -> dict:
        return {"op": self._op.ir}


class IElementWiseLayer(_OpLayer):
    op_enum = E.ElementWiseOperation


class IUnaryLayer(_OpLayer):
    op_enum = E.UnaryOperation


class IScaleLayer(ILayer):
    """y = x * scale + shift per UNIFORM / CHANNEL / ELEMENTWISE mode; ``power`` must be 1 (or empty)."""

    def __init__(self, network, node, mode, shift, scale, power):
        super().__init__(network, node)
        self._mode, self._axis = E.ScaleMode(mode), 1
        self._shift, self._scale, self._power = E.as_array(shift), E.as_array(scale), E.as_array(power)

    mode = property(lambda self: self._mode, lambda self, v: self._param("mode", E.ScaleMode(v)))
    channel_axis = property(lambda self: self._axis, lambda self, v: self._param("axis", int(v)))
    shift = property(lambda self: self._shift, lambda self, v: self._param("shift", E.as_array(v)))
    scale = property(lambda self: self._scale, lambda self, v: self._param("scale", E.as_array(v)))
    power = property(lambda self: self._power, lambda self, v: self._param("power", E.as_array(v)))

    def _resolve(self) -> dict:
        shape = self._input_shape()
        if self._power.size and not np.all(self._power == 1):
            raise UnsupportedError(f"layer {self.name!r}: scale power {self._power} other than 1 is not supported; "
                                   "add an elementwise POW layer after the scale")
        axis = self._axis
        target = {E.ScaleMode.UNIFORM: (1,) * (len(shape) - axis),
                  E.ScaleMode.CHANNEL: (shape[axis],) + (1,) * (len(shape) - axis - 1),
                  E.ScaleMode.ELEMENTWISE: tuple(shape[axis:])}[self._mode]
        dtype = self._node.inputs[0].dtype.numpy
        for slot, array, fill in ((1, self._scale, 1.0), (2, self._shift, 0.0)):
            values = array if array.size else np.full(math.prod(target), fill, dtype)
            if values.size != math.prod(target):
                raise ShapeError(f"layer {self.name!r}: {('scale', 'shift')[slot - 1]} holds {values.size} values, "
                                 f"expected {math.prod(target)} for mode {self._mode.name} on input {shape}")
            self._network._set_const(self._node, slot, values.astype(dtype).reshape(target))
        return {"axis": axis}


class _AxesLayer(ILayer):
    """Layers with TensorRT's axes bitmask."""

    def __init__(self, network, node, axes: int):
        super().__init__(network, node)
        self._axes = int(axes)

    axes = property(lambda self: self._axes, lambda self, v: self._param("axes", int(v)))

    def _axes_list(self) -> list[int]:
        return E.axes_from_mask(self._axes, len(self._input_shape()), f"layer {self.name!r} axes")


class ISoftMaxLayer(_AxesLayer):
    def _resolve(self) -> dict:
        return {"axes": self._axes_list(), "log": False}


class IReduceLayer(_AxesLayer):
    def __init__(self, network, node, op, axes, keep_dims):
        super().__init__(network, node, axes)
        self._op, self._keep = E.ReduceOperation(op), bool(keep_dims)

    op = property(lambda self: self._op, lambda self, v: self._param("op", E.ReduceOperation(v)))
    keep_dims = property(lambda self: self._keep, lambda self, v: self._param("keep", bool(v)))

    def _resolve(self) -> dict:
        return {"op": self._op.ir, "axes": self._axes_list(), "keepdims": self._keep}


class ITopKLayer(_AxesLayer):
    def __init__(self, network, node, op, k, axes):
        super().__init__(network, node, axes)
        self._op, self._k = E.TopKOperation(op), int(k)

    op = property(lambda self: self._op, lambda self, v: self._param("op", E.TopKOperation(v)))
    k = property(lambda self: self._k, lambda self, v: self._param("k", int(v)))

    def _resolve(self) -> dict:
        axes = self._axes_list()
        if len(axes) != 1:
            raise ShapeError(f"layer {self.name!r}: top-k axes bitmask {self._axes:#b} must name exactly one axis")
        return {"op": self._op.ir, "axis": axes[0], "k": self._k, "sorted": True}


class INormalizationLayer(_AxesLayer):
    def __init__(self, network, node, axes):
        super().__init__(network, node, axes)
        self._epsilon, self._groups = 1e-5, 1

    epsilon = property(lambda self: self._epsilon, lambda self, v: self._param("epsilon", float(v)))
    num_groups = property(lambda self: self._groups, lambda self, v: self._param("groups", int(v)))

    def _resolve(self) -> dict:
        return {"axes": self._axes_list(), "epsilon": self._epsilon, "groups": self._groups}


class IConcatenationLayer(ILayer):
    def __init__(self, network, node):
        super().__init__(network, node)
        self._axis = max(0, len(self._input_shape()) - 3)   # TensorRT's default

    axis = property(lambda self: self._axis, lambda self, v: self._param("axis", int(v)))

    def _resolve(self) -> dict:
        rank = len(self._input_shape())
        return {"axis": self._axis + rank if self._axis < 0 else self._axis}


class IShuffleLayer(ILayer):
    """first_transpose, reshape_dims (0 copies the input dim while ``zero_is_placeholder``, -1 is inferred),
    second_transpose."""

    def __init__(self, network, node):
        super().__init__(network, node)
        self._first = self._second = self._reshape = None
        self._zero_is_placeholder = True

    first_transpose = property(lambda self: self._first or tuple(range(len(self._input_shape()))),
                               lambda self, v: self._param("first", _tuple(v, "first_transpose")))
    second_transpose = property(lambda self: self._second or tuple(range(8)),
                                lambda self, v: self._param("second", _tuple(v, "second_transpose")))
    reshape_dims = property(lambda self: self._reshape,
                            lambda self, v: self._param("reshape", _tuple(v, "reshape_dims")))
    zero_is_placeholder = property(lambda self: self._zero_is_placeholder,
                                   lambda self, v: self._param("zero_is_placeholder", bool(v)))

    def _resolve(self) -> dict:
        shape = self._input_shape()
        if self._first is not None:
            shape = tuple(shape[p] for p in self._first)
        target = None
        if self._reshape is not None:
            target = [shape[i] if d == 0 and self._zero_is_placeholder else d for i, d in enumerate(self._reshape)]
            if target.count(-1) > 1:
                raise ShapeError(f"layer {self.name!r}: reshape_dims {self._reshape} has more than one -1")
            if -1 in target:
                known = math.prod(d for d in target if d != -1)
                target[target.index(-1)] = math.prod(shape) // known if known else 0
        return {"first_perm": list(self._first) if self._first is not None else None, "reshape": target,
                "second_perm": list(self._second) if self._second is not None else None}


class IMatrixMultiplyLayer(ILayer):
    def __init__(self, network, node, op0, op1):
        super().__init__(network, node)
        self._op0, self._op1 = E.MatrixOperation(op0), E.MatrixOperation(op1)

    op0 = property(lambda self: self._op0, lambda self, v: self._param("op0", E.MatrixOperation(v)))
    op1 = property(lambda self: self._op1, lambda self, v: self._param("op1", E.MatrixOperation(v)))

    def _resolve(self) -> dict:
        for index, op in enumerate((self._op0, self._op1)):
            if op == E.MatrixOperation.VECTOR and len(self._input_shape(index)) != 1:
                raise UnsupportedError(f"layer {self.name!r}: MatrixOperation.VECTOR on the rank-"
                                       f"{len(self._input_shape(index))} input {index} is not supported; reshape it "
                                       "to a matrix with a shuffle layer")
        return {"trans_a": self._op0 == E.MatrixOperation.TRANSPOSE,
                "trans_b": self._op1 == E.MatrixOperation.TRANSPOSE}


class IResizeLayer(ILayer):
    def __init__(self, network, node):
        super().__init__(network, node)
        self._shape = self._scales = None
        self._mode = E.InterpolationMode.NEAREST
        self._coordinates = E.ResizeCoordinateTransformation.ASYMMETRIC
        self._rounding = E.ResizeRoundMode.FLOOR
        self._cubic = -0.75
        self._exclude_outside = False

    shape = property(lambda self: self._shape, lambda self, v: self._param("shape", _tuple(v, "resize shape")))
    scales = property(lambda self: self._scales,
                      lambda self, v: self._param("scales", tuple(float(s) for s in v)))
    resize_mode = property(lambda self: self._mode, lambda self, v: self._param("mode", E.InterpolationMode(v)))
    coordinate_transformation = property(lambda self: self._coordinates, lambda self, v: self._param(
        "coordinates", E.ResizeCoordinateTransformation(v)))
    nearest_rounding = property(lambda self: self._rounding,
                                lambda self, v: self._param("rounding", E.ResizeRoundMode(v)))
    cubic_coeff = property(lambda self: self._cubic, lambda self, v: self._param("cubic", float(v)))
    exclude_outside = property(lambda self: self._exclude_outside,
                               lambda self, v: self._param("exclude_outside", bool(v)))

    def _resolve(self) -> dict:
        shape = self._input_shape()
        if self._scales is not None:
            scales = list(self._scales)
            out = [int(math.floor(d * s)) for d, s in zip(shape, scales)]
        else:
            out = list(self._shape if self._shape is not None else shape)
            scales = [o / d if d else 1.0 for o, d in zip(out, shape)]
        if len(out) != len(shape):
            raise ShapeError(f"layer {self.name!r}: resize to {out} needs one size per axis of {shape}")
        return {"mode": self._mode.name.lower(), "coordinate_mode": self._coordinates.value,
                "nearest_mode": self._rounding.value, "cubic_coeff": self._cubic,
                "exclude_outside": self._exclude_outside, "extrapolation": 0.0, "antialias": False,
                "out_shape": out, "scales": scales, "roi": None}


class ISliceLayer(ILayer):
    def __init__(self, network, node, start, shape, stride):
        super().__init__(network, node)
        self._start, self._shape, self._stride = (_tuple(start, "start"), _tuple(shape, "shape"),
                                                  _tuple(stride, "stride"))
        self._mode = E.SampleMode.STRICT_BOUNDS

    start = property(lambda self: self._start, lambda self, v: self._param("start", _tuple(v, "start")))
    shape = property(lambda self: self._shape, lambda self, v: self._param("shape", _tuple(v, "shape")))
    stride = property(lambda self: self._stride, lambda self, v: self._param("stride", _tuple(v, "stride")))
    mode = property(lambda self: self._mode, lambda self, v: self._param("mode", E.SampleMode(v)))

    def _resolve(self) -> dict:
        if self._mode != E.SampleMode.STRICT_BOUNDS:
            raise UnsupportedError(f"layer {self.name!r}: slice mode {self._mode.name} is not supported (only "
                                   "STRICT_BOUNDS); edgert has add_tile / add_expand for WRAP and stride-0 uses")
        return {"starts": list(self._start), "sizes": list(self._shape), "steps": list(self._stride)}


class IPaddingLayer(ILayer):
    def __init__(self, network, node, pre, post):
        super().__init__(network, node)
        self._pre, self._post = _tuple(pre, "pre_padding"), _tuple(post, "post_padding")

    pre_padding_nd = property(lambda self: self._pre, lambda self, v: self._param("pre", _tuple(v, "pre")))
    post_padding_nd = property(lambda self: self._post, lambda self, v: self._param("post", _tuple(v, "post")))

    def _resolve(self) -> dict:
        lead = len(self._input_shape()) - len(self._pre)
        if lead < 0 or len(self._pre) != len(self._post):
            raise ShapeError(f"layer {self.name!r}: paddings {self._pre} / {self._post} do not fit input "
                             f"{self._input_shape()} (they pad its last axes)")
        return {"mode": "constant", "pads": [0] * lead + list(self._pre) + [0] * lead + list(self._post), "value": 0.0}


class IGatherLayer(ILayer):
    def __init__(self, network, node, axis, mode):
        super().__init__(network, node)
        self._axis, self._mode = int(axis), E.GatherMode(mode)
        if self._mode != E.GatherMode.DEFAULT:
            raise UnsupportedError(f"gather mode {self._mode.name} is not supported by the network API (only "
                                   "DEFAULT); ONNX GatherElements / GatherND import through OnnxParser")

    axis = property(lambda self: self._axis, lambda self, v: self._param("axis", int(v)))
    num_elementwise_dims = property(lambda self: 0)

    def _resolve(self) -> dict:
        return {"axis": self._axis}


class ICastLayer(ILayer):
    def __init__(self, network, node, to_type):
        super().__init__(network, node)
        self._to = E.DataType(to_type)

    to_type = property(lambda self: self._to, lambda self, v: self._param("to", E.DataType(v)))

    def _resolve(self) -> dict:
        return {"to": self._to.ir.value}


class IGenericLayer(ILayer):
    """Layers whose attrs are fixed at creation (identity, select, LRN, quantize, scatter, NMS, the layers the
    ONNX parser creates ...); settable TensorRT attributes are listed per layer in ``SETTABLE``."""

    SETTABLE: dict[LayerKind, tuple] = {
        LayerKind.LRN: ("window_size", "alpha", "beta", "k"), LayerKind.QUANTIZE: ("axis",),
        LayerKind.DEQUANTIZE: ("axis",), LayerKind.SCATTER: ("axis",),
        LayerKind.GRID_SAMPLE: ("align_corners",), LayerKind.CUMULATIVE: ("exclusive", "reverse"),
        LayerKind.EINSUM: ("equation",), LayerKind.NMS: ("iou_threshold", "score_threshold"),
    }
    _RENAMED = {"window_size": "size", "k": "bias"}   # TensorRT name -> IR attr where they differ

    def __getattr__(self, name: str):
        node = self.__dict__.get("_node")
        if node is not None and name in self.SETTABLE.get(node.kind, ()):
            return node.attrs[self._RENAMED.get(name, name)]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        node = self.__dict__.get("_node")
        if node is not None and name in self.SETTABLE.get(node.kind, ()):
            node.attrs[self._RENAMED.get(name, name)] = value
            self._network._changed()
        else:
            super().__setattr__(name, value)
