"""Size limits every shape obeys, at build and at load, so that no size arithmetic can overflow.

TensorRT allows at most 8 dims per tensor (``nvinfer1::Dims::MAX_DIMS``); edgert takes the same limit.
Every dim fits a signed 32-bit int (CUDA launch and index arithmetic, the native C kernels), and no
tensor may exceed 1 TiB, so element counts times item sizes stay far inside int64.
"""

from __future__ import annotations

from edgert.errors import ShapeError

MAX_RANK = 8
MAX_DIM = (1 << 31) - 1
MAX_TENSOR_BYTES = 1 << 40


def check_shape(shape, itemsize: int, where: str) -> None:
    """ShapeError unless ``shape`` has at most MAX_RANK dims, each in 0..MAX_DIM, and fits MAX_TENSOR_BYTES."""
    shape = tuple(shape)
    if len(shape) > MAX_RANK:
        raise ShapeError(f"{where}: shape has rank {len(shape)}, above edgert's (and TensorRT's) limit of "
                         f"{MAX_RANK} dims; reshape the model to fewer dims")
    for axis, dim in enumerate(shape):
        if not 0 <= int(dim) <= MAX_DIM:
            raise ShapeError(f"{where}: dim {dim} at axis {axis} of shape {shape} is outside 0..{MAX_DIM} "
                             "(dims must fit a 32-bit int); check the model's or --shape's dims")
    count = 1
    for dim in shape:
        count *= int(dim)
    if count * itemsize > MAX_TENSOR_BYTES:
        raise ShapeError(f"{where}: shape {shape} needs {count * itemsize / 2**40:.1f} TiB ({count * itemsize} "
                         f"bytes), above the {MAX_TENSOR_BYTES >> 40} TiB limit of one tensor; check the shapes")
