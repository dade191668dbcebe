"""The package's exceptions: one base class, one subclass per family of failure.

Messages follow one shape: what was expected, what was found, what to do. The CLI prints
``str(error)`` on one line and exits with status 2 for any ``EdgeRTError``.
"""


class EdgeRTError(Exception):
    """Base class of every error edgert raises on purpose (user errors, bad models, bad plans)."""


class ModelError(EdgeRTError):
    """The model cannot be read or is not valid ONNX."""


class UnsupportedError(EdgeRTError):
    """The model uses an operator, attribute or data type edgert does not implement."""


class ShapeError(EdgeRTError):
    """Shapes are missing, dynamic without a build-time value, or contradict each other."""


class GraphError(EdgeRTError):
    """The IR graph is inconsistent (a verifier failure or an illegal rewrite)."""


class PlanError(EdgeRTError):
    """A plan file is missing, corrupt, truncated, from a newer format, or for another target."""


class InputError(EdgeRTError):
    """Inputs given at run time do not match the plan's bindings."""


class PlacementError(EdgeRTError):
    """A layer cannot run on the device it was assigned to."""


class DeviceError(EdgeRTError):
    """A device (CUDA, DLA) is missing or reported an error."""
