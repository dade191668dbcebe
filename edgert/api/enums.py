"""TensorRT 10's enums and data types, under TensorRT's member names, mapped onto edgert's IR vocabulary.

Each enum whose members stand for an IR sub-kind carries the IR value (``ActivationType.RELU.ir`` is
``edgert.ir.kinds.ActivationType.RELU``); members edgert cannot run are absent, so a script that uses one
fails with AttributeError at the line that names it rather than building something else.
"""

from __future__ import annotations

import enum
import math

import numpy as np

from edgert.ir import kinds as ir
from edgert.ir.dtypes import DataType as IRType


class DataType(enum.IntEnum):
    """TensorRT's tensor element types (TensorRT's integer values)."""
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8

    @property
    def itemsize(self) -> int:
        return self.ir.itemsize

    @property
    def ir(self) -> IRType:
        return _TO_IR[self]

    @classmethod
    def of(cls, ir_type: IRType) -> "DataType":
        try:
            return _FROM_IR[IRType(ir_type)]
        except KeyError:
            raise TypeError(f"edgert type {IRType(ir_type).value} has no TensorRT DataType "
                            f"(TensorRT has {', '.join(m.name for m in cls)})") from None


_TO_IR = {DataType.FLOAT: IRType.FLOAT, DataType.HALF: IRType.HALF, DataType.INT8: IRType.INT8,
          DataType.INT32: IRType.INT32, DataType.BOOL: IRType.BOOL, DataType.UINT8: IRType.UINT8,
          DataType.INT64: IRType.INT64}
_FROM_IR = {v: k for k, v in _TO_IR.items()}

# module-level aliases, as ``tensorrt.float32``
float32, float16, int8, int32, int64, uint8 = (DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32,
                                                DataType.INT64, DataType.UINT8)
bool_ = DataType.BOOL


def nptype(dtype: DataType):
    """The NumPy scalar type of a TensorRT DataType (``trt.nptype(trt.float32)`` is ``np.float32``)."""
    return DataType(dtype).ir.numpy.type


def volume(shape) -> int:
    """The number of elements of a shape (``trt.volume``)."""
    return math.prod(int(d) for d in shape)


class _IRMapped(enum.Enum):
    """An enum whose values are IR sub-kinds (``member.ir``)."""

    @property
    def ir(self):
        return self.value


def _ir_enum(name: str, pairs: dict) -> type:
    return _IRMapped(name, pairs)


ActivationType = _ir_enum("ActivationType", {
    "RELU": ir.ActivationType.RELU, "SIGMOID": ir.ActivationType.SIGMOID, "TANH": ir.ActivationType.TANH,
    "LEAKY_RELU": ir.ActivationType.LEAKY_RELU, "ELU": ir.ActivationType.ELU, "SELU": ir.ActivationType.SELU,
    "SOFTSIGN": ir.ActivationType.SOFTSIGN, "SOFTPLUS": ir.ActivationType.SOFTPLUS, "CLIP": ir.ActivationType.CLIP,
    "HARD_SIGMOID": ir.ActivationType.HARD_SIGMOID, "THRESHOLDED_RELU": ir.ActivationType.THRESHOLDED_RELU,
    "GELU_ERF": ir.ActivationType.GELU_ERF, "GELU_TANH": ir.ActivationType.GELU_TANH,
    # edgert kinds TensorRT spells as fused layers
    "HARD_SWISH": ir.ActivationType.HARD_SWISH, "SWISH": ir.ActivationType.SWISH, "MISH": ir.ActivationType.MISH,
    "CELU": ir.ActivationType.CELU,
})
# TensorRT's SCALED_TANH (alpha * tanh(beta * x)) has no IR activation: INetworkDefinition builds it from two layers.

ElementWiseOperation = _ir_enum("ElementWiseOperation", {
    "SUM": ir.ElementWiseOp.SUM, "PROD": ir.ElementWiseOp.PROD, "MAX": ir.ElementWiseOp.MAX,
    "MIN": ir.ElementWiseOp.MIN, "SUB": ir.ElementWiseOp.SUB, "DIV": ir.ElementWiseOp.DIV,
    "POW": ir.ElementWiseOp.POW, "AND": ir.ElementWiseOp.AND, "OR": ir.ElementWiseOp.OR,
    "XOR": ir.ElementWiseOp.XOR, "EQUAL": ir.ElementWiseOp.EQUAL, "GREATER": ir.ElementWiseOp.GREATER,
    "LESS": ir.ElementWiseOp.LESS,
})

UnaryOperation = _ir_enum("UnaryOperation", {
    "EXP": ir.UnaryOp.EXP, "LOG": ir.UnaryOp.LOG, "SQRT": ir.UnaryOp.SQRT, "RECIP": ir.UnaryOp.RECIP,
    "ABS": ir.UnaryOp.ABS, "NEG": ir.UnaryOp.NEG, "SIN": ir.UnaryOp.SIN, "COS": ir.UnaryOp.COS,
    "TAN": ir.UnaryOp.TAN, "SINH": ir.UnaryOp.SINH, "COSH": ir.UnaryOp.COSH, "ASIN": ir.UnaryOp.ASIN,
    "ACOS": ir.UnaryOp.ACOS, "ATAN": ir.UnaryOp.ATAN, "ASINH": ir.UnaryOp.ASINH, "ACOSH": ir.UnaryOp.ACOSH,
    "ATANH": ir.UnaryOp.ATANH, "CEIL": ir.UnaryOp.CEIL, "FLOOR": ir.UnaryOp.FLOOR, "ERF": ir.UnaryOp.ERF,
    "NOT": ir.UnaryOp.NOT, "SIGN": ir.UnaryOp.SIGN, "ROUND": ir.UnaryOp.ROUND, "ISINF": ir.UnaryOp.ISINF,
    "ISNAN": ir.UnaryOp.ISNAN,
})

PoolingType = _ir_enum("PoolingType", {"MAX": ir.PoolingType.MAX, "AVERAGE": ir.PoolingType.AVERAGE})

ReduceOperation = _ir_enum("ReduceOperation", {
    "SUM": ir.ReduceOp.SUM, "PROD": ir.ReduceOp.PROD, "MAX": ir.ReduceOp.MAX, "MIN": ir.ReduceOp.MIN,
    "AVG": ir.ReduceOp.AVG,
})

TopKOperation = _ir_enum("TopKOperation", {"MAX": "max", "MIN": "min"})

PaddingMode = _ir_enum("PaddingMode", {"CONSTANT": ir.PaddingMode.CONSTANT, "REFLECT": ir.PaddingMode.REFLECT,
                                       "EDGE": ir.PaddingMode.EDGE, "WRAP": ir.PaddingMode.WRAP})


class MatrixOperation(enum.IntEnum):
    NONE = 0
    TRANSPOSE = 1
    VECTOR = 2


class ScaleMode(enum.IntEnum):
    UNIFORM = 0
    CHANNEL = 1
    ELEMENTWISE = 2


class InterpolationMode(enum.IntEnum):
    NEAREST = 0
    LINEAR = 1
    CUBIC = 2


ResizeMode = InterpolationMode   # TensorRT 8's name, still accepted by TensorRT 10


class ResizeCoordinateTransformation(enum.Enum):
    ALIGN_CORNERS = "align_corners"
    ASYMMETRIC = "asymmetric"
    HALF_PIXEL = "half_pixel"


class ResizeRoundMode(enum.Enum):
    HALF_UP = "round_prefer_ceil"
    HALF_DOWN = "round_prefer_floor"
    FLOOR = "floor"
    CEIL = "ceil"


class SampleMode(enum.IntEnum):
    STRICT_BOUNDS = 0
    WRAP = 1
    CLAMP = 2
    FILL = 3
    REFLECT = 4


class GatherMode(enum.IntEnum):
    DEFAULT = 0
    ELEMENT = 1
    ND = 2


class ScatterMode(enum.IntEnum):
    ELEMENT = 0
    ND = 1


class CumulativeOperation(enum.IntEnum):
    SUM = 0


class RNNOperation(enum.IntEnum):
    RELU = 0
    TANH = 1
    LSTM = 2
    GRU = 3


class PaddingType(enum.IntEnum):   # pooling/convolution padding_mode
    EXPLICIT_ROUND_DOWN = 0
    EXPLICIT_ROUND_UP = 1
    SAME_UPPER = 2
    SAME_LOWER = 3


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0      # accepted and ignored, as in TensorRT 10 (every network is explicit-batch)
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4


class TensorFormat(enum.IntEnum):
    """TensorRT's binding layouts (``ITensor.allowed_formats`` is a bit mask of them), TensorRT's values; the
    DLA-only and 3-D ones are absent. ``layout`` is edgert's name (``edgert.io_formats.LAYOUTS``)."""
    LINEAR = 0
    CHW2 = 1
    HWC8 = 2
    CHW4 = 3
    CHW16 = 4
    CHW32 = 5
    HWC = 8
    HWC16 = 11

    @property
    def layout(self) -> str:
        return self.name.lower()


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


class TensorLocation(enum.IntEnum):
    DEVICE = 0
    HOST = 1


class ProfilingVerbosity(enum.IntEnum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class LayerInformationFormat(enum.IntEnum):
    ONELINE = 0
    JSON = 1


class BuilderFlag(enum.IntEnum):
    """TensorRT's builder flags. The ones edgert has no counterpart for are members too (scripts name them),
    but ``IBuilderConfig.set_flag`` refuses them with the reason."""
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5
    DISABLE_TIMING_CACHE = 6
    TF32 = 7
    SPARSE_WEIGHTS = 8
    SAFETY_SCOPE = 9
    OBEY_PRECISION_CONSTRAINTS = 10
    PREFER_PRECISION_CONSTRAINTS = 11
    DIRECT_IO = 12
    REJECT_EMPTY_ALGORITHMS = 13
    VERSION_COMPATIBLE = 14
    EXCLUDE_LEAN_RUNTIME = 15
    FP8 = 16
    BF16 = 18


# Flags edgert cannot honour, with the reason the config gives when one is set.
UNSUPPORTED_FLAGS = {
    BuilderFlag.REFIT: "edgert plans are not refittable; rebuild the plan with new weights",
    BuilderFlag.SPARSE_WEIGHTS: "edgert has no structured-sparsity kernels",
    BuilderFlag.SAFETY_SCOPE: "edgert has no safety runtime",
    BuilderFlag.VERSION_COMPATIBLE: "edgert plans record their edgert version; there is no lean runtime",
    BuilderFlag.EXCLUDE_LEAN_RUNTIME: "edgert has no lean runtime",
    BuilderFlag.FP8: "edgert computes in fp32, fp16 or int8",
    BuilderFlag.BF16: "edgert computes in fp32, fp16 or int8",
    BuilderFlag.DEBUG: "edgert has no debug tensors; use ExecutionContext.execute_each hooks",
}


def dims(shape, what: str = "shape") -> tuple[int, ...]:
    """A shape from a tuple, list, NumPy array or ``Dims``-like iterable (TensorRT accepts all of them)."""
    try:
        return tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"{what} {shape!r} is not a sequence of ints (a tuple, list or Dims)") from None


def axes_from_mask(mask: int, rank: int, what: str = "axes") -> list[int]:
    """TensorRT's axes bitmask (bit i = axis i) as a list of axes, checked against the rank."""
    mask = int(mask)
    if mask <= 0 or mask >> rank:
        raise ValueError(f"{what} bitmask {mask:#b} names no axis or an axis beyond rank {rank}; "
                         f"set bit i for axis i (e.g. 1 << {rank - 1} for the last axis)")
    return [axis for axis in range(rank) if mask >> axis & 1]


def as_array(weights, what: str = "weights") -> np.ndarray:
    """TensorRT ``Weights`` are NumPy arrays here (or anything np.asarray takes; None = empty)."""
    if weights is None:
        return np.zeros(0, np.float32)
    return np.ascontiguousarray(np.asarray(getattr(weights, "numpy", lambda: weights)()))


def Weights(array=None, *args) -> np.ndarray:  # noqa: N802 - TensorRT's name
    """TensorRT's ``Weights``: here just the NumPy array (``trt.Weights()`` is empty)."""
    return as_array(array)


class Dims(tuple):
    """TensorRT's ``Dims``: a tuple of ints (``Dims([1, 3])``, ``Dims2(1, 3)``, ``DimsHW(3, 3)``)."""

    def __new__(cls, shape=()):
        return super().__new__(cls, (int(d) for d in shape))


class Dims2(Dims):
    def __new__(cls, d0, d1):
        return super().__new__(cls, (d0, d1))


DimsHW = Dims2


class Dims3(Dims):
    def __new__(cls, d0, d1, d2):
        return super().__new__(cls, (d0, d1, d2))


class Dims4(Dims):
    def __new__(cls, d0, d1, d2, d3):
        return super().__new__(cls, (d0, d1, d2, d3))
