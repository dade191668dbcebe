"""Shape rules, one module per family of layer kinds; importing this package registers all of them."""

from edgert.ir.shapes import conv, elementwise, fused, matmul, normalization, pooling, reduce, tensor  # noqa: F401
