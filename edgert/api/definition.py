"""``INetworkDefinition``: TensorRT's ``add_*`` layer methods (names and argument order as in TensorRT 10)
over the IR graph of ``edgert.api.network``. Layers TensorRT has no method for (Expand, Tile, RoiAlign) get
edgert's own ``add_expand`` / ``add_tile`` / ``add_roi_align`` / ``add_rnn`` (TensorRT 10 removed its RNN layer);
Reformat and PointWise are made by the builder's partitioner and fusion passes, not by users (as TensorRT's
reformatting layers and pointwise fusions are)."""

from __future__ import annotations

import numpy as np

from edgert.api import enums as E
from edgert.api import layers as L
from edgert.api.network import IConstantLayer, ILayer, ITensor, NetworkBase
from edgert.errors import GraphError, ShapeError
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import infer_node


class INetworkDefinition(NetworkBase):

    def _add(self, kind: LayerKind, inputs, make_view, num_outputs: int = 1, attrs: dict | None = None) -> ILayer:
        for tensor in inputs:
            if tensor is not None and (not isinstance(tensor, ITensor) or tensor._network is not self):
                raise GraphError(f"{kind.value} layer: input {tensor!r} is not a tensor of this network")
        self._refresh()
        node = self._graph.add_node(kind, [t._value if t is not None else None for t in inputs], attrs,
                                    name=f"{kind.value}_{len(self._layers)}", num_outputs=num_outputs)
        try:
            view = make_view(node)
        except Exception:
            node._detach()
            self._graph.nodes.remove(node)
            raise
        self._layers.append(view)
        self._changed()
        try:
            view._sync()
            infer_node(node)
            self._dirty = False   # everything before was refreshed and this layer was just inferred
        except ShapeError:
            # TensorRT scripts set attributes after add_* (num_groups, axis ...): the shapes are checked again
            # at the next use (a shape query, another add_*, the build), which raises if they still do not fit
            pass
        return view

    def _generic(self, kind: LayerKind, inputs, attrs: dict | None = None, num_outputs: int = 1) -> ILayer:
        return self._add(kind, inputs, lambda node: L.IGenericLayer(self, node), num_outputs, attrs)

    # -- convolution, pooling, activations ---------------------------------------------------------
    def add_convolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias=None):  # noqa: A002
        return self._add(LayerKind.CONVOLUTION, [input], lambda node: L.IConvolutionLayer(
            self, node, num_output_maps, kernel_shape, kernel, bias))

    def add_deconvolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias=None):  # noqa: A002
        return self._add(LayerKind.DECONVOLUTION, [input], lambda node: L.IDeconvolutionLayer(
            self, node, num_output_maps, kernel_shape, kernel, bias))

    def add_pooling_nd(self, input, type, window_size):  # noqa: A002
        return self._add(LayerKind.POOLING, [input], lambda node: L.IPoolingLayer(self, node, type, window_size))

    def add_activation(self, input, type):  # noqa: A002
        return self._add(LayerKind.ACTIVATION, [input], lambda node: L.IActivationLayer(self, node, type))

    def add_parametric_relu(self, input, slope):  # noqa: A002
        return self._generic(LayerKind.PARAMETRIC_RELU, [input, slope])

    def add_lrn(self, input, window, alpha, beta, k):  # noqa: A002
        return self._generic(LayerKind.LRN, [input], {"size": int(window), "alpha": float(alpha),
                                                      "beta": float(beta), "bias": float(k)})

    # -- per element -------------------------------------------------------------------------------
    def add_elementwise(self, input1, input2, op):
        return self._add(LayerKind.ELEMENTWISE, [input1, input2], lambda node: L.IElementWiseLayer(self, node, op))

    def add_unary(self, input, op):  # noqa: A002
        return self._add(LayerKind.UNARY, [input], lambda node: L.IUnaryLayer(self, node, op))

    def add_scale(self, input, mode, shift=None, scale=None, power=None):  # noqa: A002
        return self._add(LayerKind.SCALE, [input], lambda node: L.IScaleLayer(self, node, mode, shift, scale, power))

    def add_scale_nd(self, input, mode, shift=None, scale=None, power=None, channel_axis=1):  # noqa: A002
        def make(node):
            view = L.IScaleLayer(self, node, mode, shift, scale, power)
            view._axis = int(channel_axis)
            return view
        return self._add(LayerKind.SCALE, [input], make)

    def add_select(self, condition, then_input, else_input):
        return self._generic(LayerKind.SELECT, [condition, then_input, else_input])

    def add_cast(self, input, to_type):  # noqa: A002
        return self._add(LayerKind.CAST, [input], lambda node: L.ICastLayer(self, node, to_type))

    def add_identity(self, input):  # noqa: A002
        return self._generic(LayerKind.IDENTITY, [input])

    def add_quantize(self, input, scale, output_type=E.DataType.INT8):  # noqa: A002
        return self._generic(LayerKind.QUANTIZE, [input, scale], {"axis": 1, "block_size": 0,
                                                                   "to": E.DataType(output_type).ir.value})

    def add_dequantize(self, input, scale, output_type=E.DataType.FLOAT):  # noqa: A002
        if E.DataType(output_type) != E.DataType.FLOAT:
            raise ShapeError(f"dequantize to {E.DataType(output_type).name} is not supported; edgert dequantizes "
                             "to FLOAT (add a cast layer after it)")
        return self._generic(LayerKind.DEQUANTIZE, [input, scale], {"axis": 1, "block_size": 0})

    # -- reductions --------------------------------------------------------------------------------
    def add_softmax(self, input):  # noqa: A002
        rank = len(input._value.shape)
        return self._add(LayerKind.SOFTMAX, [input], lambda node: L.ISoftMaxLayer(self, node, 1 << max(0, rank - 3)))

    def add_reduce(self, input, op, axes, keep_dims):  # noqa: A002
        return self._add(LayerKind.REDUCE, [input], lambda node: L.IReduceLayer(self, node, op, axes, keep_dims))

    def add_topk(self, input, op, k, axes):  # noqa: A002
        return self._add(LayerKind.TOPK, [input], lambda node: L.ITopKLayer(self, node, op, k, axes), num_outputs=2)

    def add_normalization(self, input, scale, bias, axesMask):  # noqa: A002,N803 - TensorRT's argument name
        return self._add(LayerKind.NORMALIZATION, [input, scale, bias],
                         lambda node: L.INormalizationLayer(self, node, axesMask))

    def add_cumulative(self, input, axis, op=E.CumulativeOperation.SUM, exclusive=False, reverse=False):  # noqa: A002
        axis = int(np.asarray(axis._value.const).reshape(-1)[0]) if isinstance(axis, ITensor) else int(axis)
        return self._generic(LayerKind.CUMULATIVE, [input], {"op": "sum", "axis": axis, "exclusive": bool(exclusive),
                                                             "reverse": bool(reverse)})

    def add_einsum(self, inputs, equation: str):
        return self._generic(LayerKind.EINSUM, list(inputs), {"equation": str(equation)})

    # -- data movement -----------------------------------------------------------------------------
    def add_concatenation(self, inputs):
        return self._add(LayerKind.CONCATENATION, list(inputs), lambda node: L.IConcatenationLayer(self, node))

    def add_shuffle(self, input):  # noqa: A002
        return self._add(LayerKind.SHUFFLE, [input], lambda node: L.IShuffleLayer(self, node))

    def add_slice(self, input, start, shape, stride):  # noqa: A002
        return self._add(LayerKind.SLICE, [input], lambda node: L.ISliceLayer(self, node, start, shape, stride))

    def add_padding_nd(self, input, pre_padding, post_padding):  # noqa: A002
        return self._add(LayerKind.PADDING, [input],
                         lambda node: L.IPaddingLayer(self, node, pre_padding, post_padding))

    def add_resize(self, input):  # noqa: A002
        return self._add(LayerKind.RESIZE, [input], lambda node: L.IResizeLayer(self, node))

    def add_gather(self, input, indices, axis):  # noqa: A002
        return self._add(LayerKind.GATHER, [input, indices],
                         lambda node: L.IGatherLayer(self, node, axis, E.GatherMode.DEFAULT))

    def add_gather_v2(self, input, indices, mode):  # noqa: A002
        return self._add(LayerKind.GATHER, [input, indices], lambda node: L.IGatherLayer(self, node, 0, mode))

    def add_scatter(self, data, indices, updates, mode):
        mode = E.ScatterMode(mode)
        return self._generic(LayerKind.SCATTER, [data, indices, updates],
                             {"mode": "elements" if mode == E.ScatterMode.ELEMENT else "nd", "axis": 0,
                              "reduction": "none"})

    def add_non_zero(self, input):  # noqa: A002
        return self._generic(LayerKind.NON_ZERO, [input], num_outputs=2)

    def add_matrix_multiply(self, input0, op0, input1, op1):
        return self._add(LayerKind.MATRIX_MULTIPLY, [input0, input1],
                         lambda node: L.IMatrixMultiplyLayer(self, node, op0, op1))

    def add_constant(self, shape, weights) -> IConstantLayer:
        array = E.as_array(weights)
        shape = E.dims(shape, "constant shape")
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise ShapeError(f"add_constant: weights hold {array.size} values, shape {shape} needs "
                             f"{int(np.prod(shape, dtype=np.int64))}")
        value = self._graph.constant(array.reshape(shape), name=f"Constant_{len(self._layers)}")
        layer = IConstantLayer(self, value)
        self._layers.append(layer)
        return layer

    # -- detection and sampling ----------------------------------------------------------------------
    def add_nms(self, boxes, scores, max_output_boxes_per_class):
        count = max_output_boxes_per_class
        count = int(np.asarray(count._value.const).reshape(-1)[0]) if isinstance(count, ITensor) else int(count)
        return self._generic(LayerKind.NMS, [boxes, scores], {"center_point_box": 0, "max_output_boxes_per_class":
                                                               count, "iou_threshold": 0.0, "score_threshold": None},
                             num_outputs=2)

    def add_grid_sample(self, input, grid):  # noqa: A002
        return self._generic(LayerKind.GRID_SAMPLE, [input, grid], {"mode": "linear", "padding_mode": "zeros",
                                                                     "align_corners": False})

    # -- edgert's own (TensorRT spells these with slice modes or plugins) -----------------------------
    def add_expand(self, input, shape):  # noqa: A002
        return self._generic(LayerKind.EXPAND, [input], {"shape": list(E.dims(shape))})

    def add_tile(self, input, repeats):  # noqa: A002
        return self._generic(LayerKind.TILE, [input], {"repeats": list(E.dims(repeats))})

    def add_rnn(self, input, weights, recurrence, bias=None, *, cell: str = "lstm",  # noqa: A002
                direction: str = "forward", initial_hidden=None, initial_cell=None, clip=None):
        """edgert's recurrent layer (TensorRT 10 has none; ONNX's LSTM / GRU / RNN): input (seq, batch, features);
        weights (dirs, gates*hidden, features), recurrence (dirs, gates*hidden, hidden) and bias (dirs,
        2*gates*hidden) in ONNX's gate order; outputs y (seq, dirs, batch, hidden), y_h and for LSTM y_c."""
        from edgert.ir.kinds import RNNActivation, RNNCell
        cell = RNNCell(cell)
        if direction not in ("forward", "reverse", "bidirectional"):
            raise GraphError(f"add_rnn: direction {direction!r} is not forward, reverse or bidirectional")
        directions = 2 if direction == "bidirectional" else 1
        default = {RNNCell.LSTM: ["sigmoid", "tanh", "tanh"], RNNCell.GRU: ["sigmoid", "tanh"], RNNCell.RNN: ["tanh"]}
        hidden = int(recurrence.shape[-1])
        attrs = {"cell": cell, "hidden_size": hidden, "directions": directions, "reverse": direction == "reverse",
                 "activations": [[[RNNActivation(f), 0.0, 0.0] for f in default[cell]] for _ in range(directions)],
                 "clip": None if clip is None else float(clip), "input_forget": False, "linear_before_reset": False}
        inputs = [input, weights, recurrence, bias, None, initial_hidden,
                  initial_cell if cell == RNNCell.LSTM else None, None]
        return self._generic(LayerKind.RNN, inputs, attrs, num_outputs=3 if cell == RNNCell.LSTM else 2)

    def add_roi_align(self, input, rois, batch_indices, output_height: int, output_width: int,  # noqa: A002
                      spatial_scale: float = 1.0, sampling_ratio: int = 0, mode: str = "avg"):
        return self._generic(LayerKind.ROI_ALIGN, [input, rois, batch_indices], {
            "mode": mode, "output_height": int(output_height), "output_width": int(output_width),
            "sampling_ratio": int(sampling_ratio), "spatial_scale": float(spatial_scale), "half_pixel": True})
