"""Shape rules: MatrixMultiply (NumPy matmul semantics after the optional transposes)."""

from __future__ import annotations

from edgert.errors import ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import shape_rule
from edgert.ir.shapes.elementwise import broadcast


def _transposed(shape, flag) -> tuple[int, ...]:
    shape = tuple(shape)
    return shape[:-2] + (shape[-1], shape[-2]) if flag and len(shape) >= 2 else shape


def matmul_shape(node, a_shape, b_shape) -> tuple[int, ...]:
    """numpy.matmul's result shape: 1-D operands gain a dim for the product and lose it after."""
    if not a_shape or not b_shape:
        raise ShapeError(f"layer {node.name!r}: matrix multiply of a scalar (shapes {a_shape} and {b_shape}); "
                         "operands need rank >= 1")
    a = (1,) + tuple(a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b = tuple(b_shape) + (1,) if len(b_shape) == 1 else tuple(b_shape)
    if a[-1] != b[-2]:
        raise ShapeError(f"layer {node.name!r}: matrix multiply of shapes {tuple(a_shape)} and {tuple(b_shape)}: "
                         f"inner dimensions {a[-1]} and {b[-2]} differ")
    batch = broadcast(node, a[:-2], b[:-2])
    return batch + (a[-2],) * (len(a_shape) > 1) + (b[-1],) * (len(b_shape) > 1)


@shape_rule(LayerKind.MATRIX_MULTIPLY)
def matrix_multiply(node):
    a, b = node.inputs[:2]  # further inputs feed the fused epilogue (residual / bias adds)
    codes_by_weights = a.dtype == DataType.INT8 and b.is_const and b.dtype == DataType.FLOAT  # edgert.int8_codes
    if a.dtype != b.dtype and not codes_by_weights:
        raise ShapeError(f"layer {node.name!r}: matrix multiply of mismatched types {a.dtype.value} and "
                         f"{b.dtype.value}")
    a_shape = _transposed(a.shape, node.attrs.get("trans_a", False))
    b_shape = _transposed(b.shape, node.attrs.get("trans_b", False))
    return [(a.dtype, matmul_shape(node, a_shape, b_shape))]
