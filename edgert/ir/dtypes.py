"""Tensor element types of the IR, named by their NumPy spelling so plans stay readable."""

from __future__ import annotations

import enum

import numpy as np


class DataType(str, enum.Enum):
    FLOAT = "float32"
    HALF = "float16"
    DOUBLE = "float64"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    BOOL = "bool"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def is_float(self) -> bool:
        return self in (DataType.FLOAT, DataType.HALF, DataType.DOUBLE)

    @classmethod
    def of(cls, dtype) -> "DataType":
        """The DataType of a NumPy dtype (or anything np.dtype accepts)."""
        name = np.dtype(dtype).name
        try:
            return cls(name)
        except ValueError:
            raise TypeError(f"no edgert data type for NumPy dtype {name!r}") from None
