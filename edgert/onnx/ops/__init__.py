"""ONNX op importers, one module per family; importing this package registers all of them."""

from edgert.onnx.ops import (  # noqa: F401
    activation, constant, control_flow, conv, detection, einsum, elementwise, indexing, matmul, normalization, pad,
    pooling, quantize, recurrent, reduce, resize, tensor,
)
