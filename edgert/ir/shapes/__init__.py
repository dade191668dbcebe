"""Shape rules, one module per family of layer kinds; importing this package registers all of them."""

from edgert.ir.shapes import (  # noqa: F401
    conv, detection, elementwise, fused, matmul, normalization, pooling, quantize, recurrent, reduce, tensor,
)
