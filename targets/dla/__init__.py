"""The DLA simulator: DLA numerics on the NumPy kernels (device ``"dla"`` in the kernel registry).

Importing this package registers the kernels; ``kernel_for(kind, device)`` picks the kernel a layer
placed on ``device`` ("cpu", "gpu", "dla:N") runs with when the GPU is simulated by the CPU kernels.
"""

from __future__ import annotations

from edgert.ir.kinds import LayerKind
from edgert.kernels.registry import lookup
from edgert.targets.dla import kernels  # noqa: F401  (registers the "dla" kernels)
from edgert.targets.dla.kernels import DLA_KINDS
from edgert.targets.dla.numerics import quantize, quantize_weights, to_fp16

__all__ = ["DLA_KINDS", "kernel_for", "quantize", "quantize_weights", "to_fp16"]


def kernel_for(kind, device: str):
    """The kernel for a layer of ``kind`` on ``device``: the simulator's on a DLA core and for Reformat
    layers, the CPU reference otherwise (GPU layers run on the CPU when no GPU backend is loaded)."""
    kind = LayerKind(kind)
    if kind == LayerKind.REFORMAT or str(device).startswith("dla"):
        return lookup(kind, "dla")
    return lookup(kind, "cpu")
