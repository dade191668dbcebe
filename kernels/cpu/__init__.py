"""NumPy kernels, one module per layer kind: the numeric reference and the embedded default backend."""

from edgert.kernels.cpu import (  # noqa: F401
    activation, cast, concatenation, convolution, convolution_prepared, deconvolution, elementwise, expand, gather,
    identity, lrn, matrix_multiply, normalization, padding, parametric_relu, pooling, reduce, resize, scale, select,
    shuffle, pointwise, quantize, recurrent, slice, softmax, tile, topk, unary,
)
from edgert.kernels.cpu import (  # noqa: F401  (detection / tensor ops, issue 15)
    compact, cumulative, einsum, grid_sample, nms, non_zero, roi_align, scatter,
)
