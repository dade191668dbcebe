"""Layer kinds: TensorRT's coarse vocabulary, which is also the DLA capability tables' vocabulary.

ONNX op names never appear outside ``edgert/onnx``; the importer maps each ONNX op onto one or more
of these kinds, and each kind's parameters live in the node's ``attrs`` (documented per kind below).
Layers that run in int8 (on a DLA core, or on the CPU/GPU) carry ``attrs["int8"] = {"input_scales":
[...], "output_scale": s, "weight_scales": [...]}`` (per-tensor activation scales, per-channel weight
scales); their tensors still hold dequantized float32 values, and the int8 kernels (``cpu-int8``,
the DLA simulator) quantize, accumulate in int32, requantize and saturate.
Sub-operations (which activation, which elementwise op...) are string enums so that plans written
with msgpack read back as plain strings that still compare equal to the enum members.
"""

from __future__ import annotations

import enum


class LayerKind(str, enum.Enum):
    # attrs: kernel, strides, pads (begin..., end...), dilations, group, [epilogue]; inputs: x, w, [bias],
    # then any extra inputs the epilogue's "add" steps read (see kernels/cpu/epilogue.py)
    CONVOLUTION = "Convolution"
    # attrs: kernel, strides, pads, dilations, group, output_padding; inputs: x, w (C_in, C_out/g, k...), [bias]
    DECONVOLUTION = "Deconvolution"
    # attrs: type (ActivationType), alpha, beta
    ACTIVATION = "Activation"
    # attrs: op (ElementWiseOp); two inputs, NumPy broadcasting
    ELEMENTWISE = "ElementWise"
    # attrs: op (UnaryOp); ISINF also detect_positive, detect_negative (bool, default True)
    UNARY = "Unary"
    # y = x * scale + shift along `axis` (per channel); attrs: axis; inputs: x, scale, shift (pre-shaped to
    # broadcast against x, e.g. (C, 1, 1))
    SCALE = "Scale"
    # attrs: type (PoolingType), kernel, strides, pads, dilations, ceil_mode, count_include_pad (average),
    # p (LP), storage_order; outputs: y, [indices (int64, max pooling)]
    POOLING = "Pooling"
    # attrs: op (ReduceOp), axes, keepdims
    REDUCE = "Reduce"
    # attrs: first_perm (or None), reshape (or None), second_perm (or None): transpose, reshape, transpose
    SHUFFLE = "Shuffle"
    # attrs: axis
    CONCATENATION = "Concatenation"
    # attrs: starts, sizes, steps (one per axis, static)
    SLICE = "Slice"
    # attrs: mode, coordinate_mode, nearest_mode (incl. "simple" for Upsample / opset <= 10), cubic_coeff,
    # exclude_outside, extrapolation, antialias, out_shape, scales (per axis), roi (2 x rank or None)
    RESIZE = "Resize"
    # attrs: mode (PaddingMode), pads (begin..., end...), value
    PADDING = "Padding"
    # attrs: axes (softmax over their product), log (bool), hard (bool, optional: Hardmax, 1 at the first max)
    SOFTMAX = "Softmax"
    # attrs: trans_a, trans_b, [epilogue]; inputs: a, b (NumPy matmul broadcasting), then epilogue inputs
    MATRIX_MULTIPLY = "MatrixMultiply"
    # y = (x - mean) / sqrt(var + epsilon) over `axes` (within `groups` channel groups), then * scale + bias;
    # attrs: axes, epsilon, groups, [stats_dtype]; inputs: x, [scale], [bias] (pre-shaped to broadcast);
    # outputs: y, [mean, inv_std_dev]
    NORMALIZATION = "Normalization"
    # attrs: size, alpha, beta, bias (cross-channel local response normalization)
    LRN = "LRN"
    # inputs: x, slope (broadcast)
    PARAMETRIC_RELU = "ParametricReLU"
    # attrs: to (DataType)
    CAST = "Cast"
    # attrs: axis; inputs: data, indices
    GATHER = "Gather"
    # inputs: condition, x, y
    SELECT = "Select"
    # ArgMax / ArgMin form (no "k" attr): attrs op ("max" | "min"), axis, keepdims, select_last_index; output:
    # int64 indices (k = 1). Full form (attr "k"): attrs op, axis, k, sorted; outputs values, int64 indices (the
    # axis cut to k; equal values keep the lower index first, as ONNX says)
    TOPK = "TopK"
    # attrs: shape (broadcast the input to it)
    EXPAND = "Expand"
    # attrs: repeats
    TILE = "Tile"
    # copy (graph outputs that alias another tensor)
    IDENTITY = "Identity"
    # layout / precision conversion at a device boundary; attrs: from_device, to_device, from_layout,
    # to_layout, from_precision, to_precision, cost_ms (modeled)
    REFORMAT = "Reformat"
    # y = saturate(round_half_even(x / scale) + zero_point); attrs: axis, block_size (per-axis / blocked
    # scales), to (DataType);
    # inputs: x, scale, [zero_point]
    QUANTIZE = "Quantize"
    # y = (x - zero_point) * scale; attrs: axis, block_size; inputs: x, scale, [zero_point]
    DEQUANTIZE = "Dequantize"
    # a fused chain of per-element layers; attrs: program = [{"kind", "attrs", "args"}...] where args
    # index registers (inputs first, then one register per instruction); the last register is the output
    POINTWISE = "PointWise"

    # -- recurrent layers (issue 15; ONNX If / Loop / Scan are unrolled or folded at import into the kinds
    # above, so control flow adds no kind) -----------------------------------------------------------------
    # One recurrent layer (TensorRT's IRNNv2Layer), always in ONNX layout 0 (the importer transposes layout 1).
    # attrs: cell (RNNCell), hidden_size, directions (1 or 2), reverse (bool: the one direction runs backwards),
    # activations (per direction, the cell's functions in ONNX order (f, g, h), each [RNNActivation, alpha,
    # beta]), clip (float or None, applied to every activation's input), input_forget (LSTM: f = 1 - i),
    # linear_before_reset (GRU).
    # inputs: x (seq, batch, input), w (dirs, gates*hidden, input), r (dirs, gates*hidden, hidden),
    # [b (dirs, 2*gates*hidden)], [sequence_lens (batch,) int32], [initial_h (dirs, batch, hidden)],
    # [initial_c (LSTM)], [p (LSTM peepholes, dirs, 3*hidden)].
    # outputs: y (seq, dirs, batch, hidden; zero past each sequence's length), y_h (dirs, batch, hidden: the
    # state at each sequence's last valid step), and for LSTM y_c (dirs, batch, hidden).
    RNN = "RNN"

    # -- detection / tensor ops (issue 15: TopK above, and these) ------------------------------------
    # Layers marked "bounded" have a data-dependent output size: their outputs are sized to a static upper
    # bound and their last output is an int64 scalar, the real number of rows (see edgert/ir/valid_rows.py).
    # bounded. attrs: center_point_box (0 corners y1,x1,y2,x2 / 1 centers), max_output_boxes_per_class,
    # iou_threshold, score_threshold (None = keep all); inputs: boxes (B, N, 4), scores (B, C, N); outputs:
    # selected (B*C*max_output_boxes_per_class, 3) int64 rows (batch, class, box), padding rows 0; count
    NMS = "NonMaxSuppression"
    # bounded. outputs: indices (rank, numel) int64 of the non-zero elements in row-major order, padding 0; count
    NON_ZERO = "NonZero"
    # bounded. attrs: axis, select (bool). inputs: k values with data-dependent (or static) rows along ``axis``,
    # then their k counts (int64 scalars: the valid rows of value i are its first min(count_i, size_i)), then
    # with ``select`` a bool scalar condition (k = 2: only value 0's rows when it is true, only value 1's when
    # false). Output 0 holds the valid rows of each value one after another along ``axis`` (sized at the sum of
    # the sizes), zeros past them; output 1 their total count. A Concat of data-dependent rows (torchvision's 90
    # per-class detections) and an If on a count whose branches give different row counts become this layer.
    COMPACT = "Compact"
    # attrs: mode ("elements" | "nd"), axis (elements), reduction ("none" | "add" | "mul" | "max" | "min");
    # inputs: data, indices (int64/int32, negatives count from the end), updates
    SCATTER = "Scatter"
    # attrs: op ("sum"), axis, exclusive, reverse (TensorRT's ICumulativeLayer)
    CUMULATIVE = "Cumulative"
    # attrs: equation (explicit "ab,bc->ac" form with the output written out); any number of inputs
    EINSUM = "Einsum"
    # attrs: mode ("linear" | "nearest" | "cubic"), padding_mode ("zeros" | "border" | "reflection"),
    # align_corners; inputs: x (N, C, H, W), grid (N, Ho, Wo, 2) holding (x, y) in [-1, 1]
    GRID_SAMPLE = "GridSample"
    # attrs: mode ("avg" | "max"), output_height, output_width, sampling_ratio, spatial_scale,
    # half_pixel (bool: coordinate_transformation_mode half_pixel; max mode takes the max of the weighted
    # bilinear terms, as onnxruntime does); inputs: x (N, C, H, W), rois (R, 4), batch_indices (R,)
    ROI_ALIGN = "RoiAlign"


class ActivationType(str, enum.Enum):
    RELU = "relu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    LEAKY_RELU = "leaky_relu"    # alpha
    ELU = "elu"                  # alpha
    SELU = "selu"                # alpha, beta (gamma)
    SOFTSIGN = "softsign"
    SOFTPLUS = "softplus"
    CLIP = "clip"                # alpha = min, beta = max
    HARD_SIGMOID = "hard_sigmoid"  # alpha, beta
    HARD_SWISH = "hard_swish"
    THRESHOLDED_RELU = "thresholded_relu"  # alpha
    GELU_ERF = "gelu_erf"
    GELU_TANH = "gelu_tanh"
    SWISH = "swish"              # x * sigmoid(x)
    MISH = "mish"
    CELU = "celu"                # alpha


class ElementWiseOp(str, enum.Enum):
    SUM = "sum"
    SUB = "sub"
    PROD = "prod"
    DIV = "div"
    POW = "pow"
    MAX = "max"
    MIN = "min"
    MOD = "mod"          # Python-style (sign of the divisor)
    FMOD = "fmod"        # C-style (sign of the dividend)
    EQUAL = "equal"
    GREATER = "greater"
    GREATER_EQUAL = "greater_equal"
    LESS = "less"
    LESS_EQUAL = "less_equal"
    AND = "and"
    OR = "or"
    XOR = "xor"


class UnaryOp(str, enum.Enum):
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    RECIP = "recip"
    ABS = "abs"
    NEG = "neg"
    SIN = "sin"
    COS = "cos"
    TAN = "tan"
    ASIN = "asin"
    ACOS = "acos"
    ATAN = "atan"
    SINH = "sinh"
    COSH = "cosh"
    ASINH = "asinh"
    ACOSH = "acosh"
    ATANH = "atanh"
    CEIL = "ceil"
    FLOOR = "floor"
    ROUND = "round"      # half to even
    ERF = "erf"
    NOT = "not"
    SIGN = "sign"
    ISNAN = "isnan"
    ISINF = "isinf"


class PoolingType(str, enum.Enum):
    MAX = "max"
    AVERAGE = "average"
    LP = "lp"            # attrs: p


class ReduceOp(str, enum.Enum):
    SUM = "sum"
    PROD = "prod"
    MAX = "max"
    MIN = "min"
    AVG = "avg"
    L1 = "l1"
    L2 = "l2"
    SUM_SQUARE = "sum_square"
    LOG_SUM = "log_sum"
    LOG_SUM_EXP = "log_sum_exp"


class PaddingMode(str, enum.Enum):
    CONSTANT = "constant"
    REFLECT = "reflect"
    EDGE = "edge"
    WRAP = "wrap"


# Per-element kinds the elementwise-fusion pass may merge into one PointWise layer.
POINTWISE_KINDS = frozenset({LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.UNARY, LayerKind.SCALE,
                             LayerKind.PARAMETRIC_RELU})

# Kinds that only reinterpret their input's memory (candidates for views in the memory planner).
VIEW_KINDS = frozenset({LayerKind.SHUFFLE})


# -- recurrent layers (issue 15): the sub-kinds of LayerKind.RNN -------------------------------------------
class RNNCell(str, enum.Enum):
    LSTM = "lstm"     # gates i, o, f, c
    GRU = "gru"       # gates z, r, h
    RNN = "rnn"       # one gate


class RNNActivation(str, enum.Enum):
    """The activation functions ONNX's LSTM / GRU / RNN accept (their names, lower-cased)."""
    RELU = "relu"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    AFFINE = "affine"                    # alpha * x + beta
    LEAKY_RELU = "leakyrelu"             # alpha
    THRESHOLDED_RELU = "thresholdedrelu"  # alpha
    SCALED_TANH = "scaledtanh"           # alpha * tanh(beta * x)
    HARD_SIGMOID = "hardsigmoid"         # alpha, beta
    ELU = "elu"                          # alpha
    SOFTSIGN = "softsign"
    SOFTPLUS = "softplus"


# Kinds with a data-dependent output size: (axis of the bounded rows in output 0, None: the layer's "axis"
# attribute); the last output is the count.
BOUNDED_KINDS = {LayerKind.NMS: 0, LayerKind.NON_ZERO: 1, LayerKind.COMPACT: None}


def bounded_axis(node) -> int:
    """The axis of a bounded layer's (``BOUNDED_KINDS``) output 0 along which its count counts rows."""
    axis = BOUNDED_KINDS[node.kind]
    return int(node.attrs["axis"]) if axis is None else axis
