"""edgert: build compact inference plans for embedded NVIDIA devices and run them with a small loader.

``edgert.build`` (needs ``onnx``) is imported lazily so that ``import edgert.runtime`` on a device
pulls in only NumPy and msgpack.
"""

__version__ = "0.1.0"


def build(model, **options):
    """Import an ONNX model (path, bytes or ModelProto), optimize it and return a ``Plan``."""
    from edgert.builder import build as _build
    return _build(model, **options)


def load(plan, device=None):
    """Load a plan (path, bytes or ``Plan``) and return an ``Engine``."""
    from edgert.runtime import load as _load
    return _load(plan, device=device)


def __getattr__(name):
    if name == "Plan":
        from edgert.plan import Plan
        return Plan
    import importlib
    errors = importlib.import_module("edgert.errors")
    if hasattr(errors, name):
        return getattr(errors, name)
    # TensorRT's Python API (``import edgert as trt``): Logger, Builder, Runtime, OnnxParser, DataType, float32 ...
    if not name.startswith("_"):
        api = importlib.import_module("edgert.api")
        if name in api.__all__ or name == "bool":
            return getattr(api, "bool_" if name == "bool" else name)
    raise AttributeError(f"module 'edgert' has no attribute {name!r}")
