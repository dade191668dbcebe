"""The attributes each layer kind may carry in a plan, with their types and ranges (checked at load).

A plan's checksum only proves that the file is the one a writer made; it says nothing about whether
that writer was edgert. So every attribute a kernel reads is checked here before any kernel sees it:
its type, its range (no negative strides, no pads of 2^31, no unknown enum names) and, for lists, the
type of every element. Lengths and the agreement of attrs with tensor shapes are the shape rules'
business (``edgert.ir.shapes``), which the validator runs after these checks.

``SCHEMAS[kind]`` maps an attribute name to a checker ``(value, where) -> None``; names listed in
``REQUIRED[kind]`` must be present. Attributes a kind does not list are ignored by its kernels, so
they are only checked generically (plain msgpack values, ints within int64, bounded nesting).
"""

from __future__ import annotations

import math

from edgert.errors import PlanError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import (ActivationType, ElementWiseOp, LayerKind, PaddingMode, PoolingType, ReduceOp,
                             RNNActivation, RNNCell, UnaryOp)
from edgert.ir.limits import MAX_DIM   # every size, pad, stride or index fits a signed 32-bit int

MAX_NESTING = 8              # attrs are shallow: a PointWise program's instruction attrs are the deepest
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)


def fail(where: str, what: str):
    raise PlanError(f"plan is corrupt: {where} {what}; rebuild the plan with `edgert build`")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value, where: str) -> None:
    if not (is_int(value) or isinstance(value, float)):
        fail(where, f"should be a number, found {type(value).__name__}")


def _boolean(value, where: str) -> None:
    if not isinstance(value, (bool, int)) or is_int(value) and value not in (0, 1):
        fail(where, f"should be a boolean, found {value!r}")


def _text(value, where: str) -> None:
    if not isinstance(value, str):
        fail(where, f"should be a string, found {type(value).__name__}")


def integer(low: int = -MAX_DIM, high: int = MAX_DIM):
    def check(value, where: str) -> None:
        if not is_int(value):
            fail(where, f"should be an integer, found {type(value).__name__}")
        if not low <= value <= high:
            fail(where, f"is {value}, expected {low}..{high}")
    return check


def int_list(low: int = -MAX_DIM, high: int = MAX_DIM, nonzero: bool = False, optional: bool = False):
    element = integer(low, high)

    def check(value, where: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, list):
            fail(where, f"should be a list of integers, found {type(value).__name__}")
        for item in value:
            element(item, where)
            if nonzero and item == 0:
                fail(where, "has a 0 where it needs a non-zero value")
    return check


def float_list(optional: bool = False):
    def check(value, where: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, list):
            fail(where, f"should be a list of numbers, found {type(value).__name__}")
        for item in value:
            _number(item, where)
    return check


def one_of(choices):
    names = frozenset(getattr(c, "value", c) for c in choices)

    def check(value, where: str) -> None:
        if not isinstance(value, str) or value not in names:
            fail(where, f"is {value!r}, expected one of {', '.join(sorted(names))}")
    return check


def optional(checker):
    def check(value, where: str) -> None:
        if value is not None:
            checker(value, where)
    return check


def positive_number(value, where: str) -> None:
    _number(value, where)
    if not (value > 0 and math.isfinite(value)):
        fail(where, f"is {value}, expected a positive finite number")


def float32_number(value, where: str) -> None:
    """A finite float32 value (ONNX float attributes are float32; kernels cast them to the data's dtype)."""
    _number(value, where)
    if not (math.isfinite(value) and abs(value) <= 3.4028234663852886e38):
        fail(where, f"is {value}, expected a finite float32 number")


_DTYPE = one_of(DataType)
_SPATIAL = {"kernel": int_list(1), "strides": int_list(1), "dilations": int_list(1), "pads": int_list(0)}
_ACTIVATION = {"type": one_of(ActivationType), "alpha": _number, "beta": _number}
_RESIZE_MODES = ("nearest", "linear", "cubic")
_COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                     "tf_half_pixel_for_nn", "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
_QUANTIZE = {"axis": integer(), "block_size": integer(0)}
_RNN_FUNCTION = one_of(RNNActivation)


def _rnn_activations(value, where: str) -> None:
    """Per direction, the cell's functions in ONNX order, each [RNNActivation, alpha, beta]."""
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        fail(where, "should list the activations of one or two directions")
    for functions in value:
        if not isinstance(functions, list) or not 1 <= len(functions) <= 3:
            fail(where, "should hold one to three functions per direction")
        for function in functions:
            if not isinstance(function, list) or len(function) != 3:
                fail(where, "should hold [name, alpha, beta] per function")
            _RNN_FUNCTION(function[0], where)
            for number in function[1:]:
                if number is not None:
                    _number(number, where)

SCHEMAS: dict[LayerKind, dict] = {
    LayerKind.CONVOLUTION: {**_SPATIAL, "group": integer(1)},
    # ConvTranspose pads may be negative: they then widen the output (the shape rule checks the result)
    LayerKind.DECONVOLUTION: {**_SPATIAL, "pads": int_list(), "group": integer(1), "output_padding": int_list(0)},
    LayerKind.ACTIVATION: _ACTIVATION,
    LayerKind.ELEMENTWISE: {"op": one_of(ElementWiseOp)},
    LayerKind.UNARY: {"op": one_of(UnaryOp), "detect_positive": _boolean, "detect_negative": _boolean},
    LayerKind.SCALE: {"axis": integer()},
    LayerKind.POOLING: {**_SPATIAL, "type": one_of(PoolingType), "ceil_mode": _boolean,
                        "count_include_pad": _boolean, "p": positive_number, "storage_order": integer(0, 1)},
    LayerKind.REDUCE: {"op": one_of(ReduceOp), "axes": int_list(0), "keepdims": _boolean,
                       "rows_axis": optional(integer(0))},   # with a row count (input 1): only those rows reduce
    LayerKind.SHUFFLE: {"first_perm": int_list(0, optional=True), "reshape": int_list(0, optional=True),
                        "second_perm": int_list(0, optional=True)},
    LayerKind.CONCATENATION: {"axis": integer(0)},
    LayerKind.SLICE: {"starts": int_list(0), "sizes": int_list(0), "steps": int_list(nonzero=True)},
    LayerKind.RESIZE: {"mode": one_of(_RESIZE_MODES), "coordinate_mode": one_of(_COORDINATE_MODES),
                       "nearest_mode": one_of(_NEAREST_MODES), "cubic_coeff": _number,
                       "exclude_outside": _boolean, "extrapolation": _number, "antialias": _boolean,
                       "out_shape": int_list(0), "scales": float_list(), "roi": float_list(optional=True)},
    LayerKind.PADDING: {"mode": one_of(PaddingMode), "pads": int_list(), "value": _number},
    LayerKind.SOFTMAX: {"axes": int_list(0), "log": _boolean, "hard": _boolean},
    LayerKind.MATRIX_MULTIPLY: {"trans_a": _boolean, "trans_b": _boolean},
    LayerKind.NORMALIZATION: {"axes": int_list(), "epsilon": _number, "groups": integer(1),
                              "stats_dtype": optional(_DTYPE)},
    LayerKind.LRN: {"size": integer(1), "alpha": float32_number, "beta": float32_number, "bias": float32_number},
    LayerKind.PARAMETRIC_RELU: {},
    LayerKind.CAST: {"to": _DTYPE},
    LayerKind.GATHER: {"axis": integer(0)},
    LayerKind.SELECT: {},
    LayerKind.TOPK: {"op": one_of(("max", "min")), "axis": integer(0), "keepdims": _boolean,
                     "select_last_index": _boolean, "k": integer(0), "sorted": _boolean},
    LayerKind.EXPAND: {"shape": int_list(0), "rows_axis": optional(integer(0))},   # rows counted by input 1
    LayerKind.TILE: {"repeats": int_list(0)},
    LayerKind.IDENTITY: {},
    LayerKind.REFORMAT: {"from_device": _text, "to_device": _text, "from_layout": optional(_text),
                         "to_layout": optional(_text), "from_precision": optional(_text),
                         "to_precision": optional(_text), "cost_ms": _number,
                         "to_dtype": optional(one_of((DataType.INT8, DataType.FLOAT))),
                         "scale": optional(positive_number)},
    LayerKind.QUANTIZE: {**_QUANTIZE, "to": _DTYPE},
    LayerKind.DEQUANTIZE: dict(_QUANTIZE),
    LayerKind.POINTWISE: {},   # its program is checked instruction by instruction (validate.py)
    LayerKind.RNN: {"cell": one_of(RNNCell), "hidden_size": integer(1), "directions": integer(1, 2),
                    "reverse": _boolean, "activations": _rnn_activations, "clip": optional(positive_number),
                    "input_forget": _boolean, "linear_before_reset": _boolean},
    LayerKind.NMS: {"center_point_box": integer(0, 1), "max_output_boxes_per_class": integer(0),
                    "iou_threshold": _number, "score_threshold": optional(_number)},
    LayerKind.NON_ZERO: {},
    LayerKind.COMPACT: {"axis": integer(0), "select": _boolean},
    LayerKind.SCATTER: {"mode": one_of(("elements", "nd")), "axis": integer(0),
                        "reduction": one_of(("none", "add", "mul", "max", "min")),
                        "rows_axis": optional(integer(0))},   # with a row count (input 3): its axis
    LayerKind.CUMULATIVE: {"op": one_of(("sum",)), "axis": integer(0), "exclusive": _boolean, "reverse": _boolean},
    LayerKind.EINSUM: {"equation": _text},
    LayerKind.GRID_SAMPLE: {"mode": one_of(("linear", "nearest", "cubic")),
                            "padding_mode": one_of(("zeros", "border", "reflection")), "align_corners": _boolean},
    LayerKind.ROI_ALIGN: {"mode": one_of(("avg", "max")), "output_height": integer(1), "output_width": integer(1),
                          "sampling_ratio": integer(0), "spatial_scale": _number, "half_pixel": _boolean},
}

REQUIRED: dict[LayerKind, tuple[str, ...]] = {
    LayerKind.CONVOLUTION: ("kernel",), LayerKind.DECONVOLUTION: ("kernel",),
    LayerKind.ACTIVATION: ("type",), LayerKind.ELEMENTWISE: ("op",), LayerKind.UNARY: ("op",),
    LayerKind.POOLING: ("type", "kernel"), LayerKind.REDUCE: ("op", "axes"), LayerKind.CONCATENATION: ("axis",),
    LayerKind.SLICE: ("starts", "sizes", "steps"), LayerKind.RESIZE: ("out_shape", "scales"),
    LayerKind.PADDING: ("pads",), LayerKind.SOFTMAX: ("axes",), LayerKind.NORMALIZATION: ("axes", "epsilon"),
    LayerKind.LRN: ("size",), LayerKind.CAST: ("to",), LayerKind.GATHER: ("axis",),
    LayerKind.TOPK: ("op", "axis"), LayerKind.EXPAND: ("shape",), LayerKind.TILE: ("repeats",),
    LayerKind.QUANTIZE: ("to",), LayerKind.POINTWISE: ("program",),
}
# The kinds of real exports (issue 15): their importers write every attribute, and their kernels read them all.
REQUIRED.update({kind: tuple(SCHEMAS[kind]) for kind in (
    LayerKind.RNN, LayerKind.NMS, LayerKind.COMPACT, LayerKind.SCATTER, LayerKind.CUMULATIVE, LayerKind.EINSUM, LayerKind.GRID_SAMPLE,
    LayerKind.ROI_ALIGN)})
REQUIRED[LayerKind.SCATTER] = ("mode", "axis", "reduction")   # rows_axis only with a row count

# Kinds whose epilogue steps may follow their result (kernels/cpu/epilogue.py).
EPILOGUE_KINDS = frozenset({LayerKind.CONVOLUTION, LayerKind.MATRIX_MULTIPLY})
INT8_SCHEMA = {"input_scales": float_list(), "output_scale": positive_number, "weight_scales": float_list(True)}


def check_plain(value, where: str, depth: int = 0) -> None:
    """Plain msgpack data only, ints within int64 (NumPy converts them), nesting bounded."""
    if depth > MAX_NESTING:
        fail(where, f"nests deeper than {MAX_NESTING} levels")
    if is_int(value):
        if not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
            fail(where, f"holds the integer {value}, outside int64")
    elif isinstance(value, list):
        for item in value:
            check_plain(item, where, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_plain(item, f"{where}.{key}", depth + 1)
    elif not isinstance(value, (str, float, bool, bytes, type(None))):
        fail(where, f"holds a {type(value).__name__}")


def check_attrs(kind: LayerKind, attrs: dict, where: str) -> None:
    """Types and ranges of one layer's attrs (or one PointWise instruction's)."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        fail(where, f"has kind {kind.value}, which this edgert cannot run")
    check_plain(attrs, f"{where} attrs")
    for name in REQUIRED.get(kind, ()):
        if name not in attrs:
            fail(where, f"lacks the attribute {name!r} that {kind.value} layers need")
    for name, checker in schema.items():
        if name in attrs:
            checker(attrs[name], f"{where} attribute {name!r}")
    if kind in EPILOGUE_KINDS and attrs.get("epilogue") is not None:
        if not isinstance(attrs["epilogue"], list):
            fail(where, "has an epilogue that is not a list of steps")
    if attrs.get("int8"):
        spec = attrs["int8"]
        if not isinstance(spec, dict):
            fail(where, "has int8 scales that are not a map")
        for name, checker in INT8_SCHEMA.items():
            if name in spec:
                checker(spec[name], f"{where} int8 {name}")
        if "output_scale" not in spec:
            fail(where, "has int8 scales without an output_scale")
