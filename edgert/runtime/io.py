"""Checks every backend makes of the caller's input arrays (shared by the CPU and CUDA engines)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from edgert.errors import InputError


def check_inputs(bindings, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The caller's arrays in binding order, contiguous; InputError on a wrong name, shape or dtype.

    Shared by every backend: ``bindings`` need ``name``, ``shape`` and ``dtype``.
    """
    expected = {b.name for b in bindings}
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; the plan's inputs are: {', '.join(sorted(expected))}")
    arrays = []
    for binding in bindings:
        if binding.name not in inputs:
            raise InputError(f"missing input {binding.name!r} ({binding.dtype.name}, shape {binding.shape})")
        array = np.asarray(inputs[binding.name])
        if array.shape != binding.shape:
            raise InputError(f"input {binding.name!r}: expected shape {binding.shape}, got {array.shape}")
        if array.dtype != binding.dtype and array.dtype.newbyteorder("=") == binding.dtype:
            raise InputError(f"input {binding.name!r}: expected {binding.dtype.name} in native byte order "
                             f"({binding.dtype.str}), got {array.dtype.str} ({_byte_order(array.dtype)}); use "
                             f"arr.astype({binding.dtype.str!r})")
        if array.dtype != binding.dtype:
            raise InputError(f"input {binding.name!r}: expected dtype {binding.dtype.name}, got "
                             f"{array.dtype.name} (convert with .astype(np.{binding.dtype.name}))")
        arrays.append(np.ascontiguousarray(array))
    return arrays


def _byte_order(dtype: np.dtype) -> str:
    return "big-endian" if dtype.str.startswith(">") else "little-endian"
