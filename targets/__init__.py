"""Device targets: profiles (data files with their sources), the timing model, and the DLA simulator.

``load_profile(name)`` / ``list_profiles()`` read ``targets/profiles/*.toml`` (``host`` is detected);
``edgert.targets.timing`` predicts per-layer GPU / DLA times from a profile; importing
``edgert.targets.dla`` registers the simulated DLA kernels (device ``"dla"``) in the kernel registry.
Nothing here imports onnx, the builder or the passes, so the runtime may import it.
"""

from edgert.targets.profiles import (  # noqa: F401
    DLASpec, GPUSpec, ProfileError, TargetProfile, list_profiles, load_profile,
)

__all__ = ["DLASpec", "GPUSpec", "ProfileError", "TargetProfile", "list_profiles", "load_profile"]
