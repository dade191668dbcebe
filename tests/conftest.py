"""Shared pytest setup: ``gpu`` tests are skipped unless cupy is importable and sees a CUDA device."""

from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=1)
def cuda_device_available() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # cupy missing, no driver, no device: all mean "no GPU here"
        return False


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not cuda_device_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (cupy with at least one GPU)")
        for item in gpu_items:
            item.add_marker(skip)
