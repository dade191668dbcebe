"""Option groups shared by several tools, and their parsing into build options."""

from __future__ import annotations

import argparse
import importlib.util
import os

from edgert.errors import EdgeRTError

MAX_DIM = 2**31 - 1   # TensorRT's and the plan's dims are int32 (a larger one is a typo, never a real tensor)


class UsageError(EdgeRTError):
    """A command-line value is malformed."""


def add_shape_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", action="append", default=[], metavar="NAME=DIMS",
                        help="static shape for a model input, e.g. input=1x3x224x224 (repeatable)")


def parse_shapes(specs: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        if not sep or not name or not dims:
            raise UsageError(f"--shape {spec!r} is malformed; expected NAME=DIMS such as input=1x3x224x224")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise UsageError(f"--shape {spec!r}: dims must be integers separated by 'x', e.g. 1x3x224x224") from None
        if any(d <= 0 for d in shape):
            raise UsageError(f"--shape {spec!r}: every dim must be positive")
        if any(d > MAX_DIM for d in shape):
            raise UsageError(f"--shape {spec!r}: a dim exceeds {MAX_DIM} (2^31-1), the largest edgert accepts")
        if name in shapes:
            raise UsageError(f"--shape given twice for input {name!r}")
        shapes[name] = shape
    return shapes


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu",
                        help="where to run: cpu (default), cuda (cupy) or cuda:pycuda (needs a plan built with "
                             "--gpu-kernels)")


def require_modules(tool: str, *modules: str) -> None:
    """Fail with the extra to install when a build-side package is missing (a runtime-only install has none)."""
    extras = {"onnx": "pip install 'edgert[build]'", "onnxruntime": "pip install onnxruntime",
              "matplotlib": "pip install 'edgert[plot]'"}
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):   # a module set to None in sys.modules, or one without a spec
            found = False
        if not found:
            raise UsageError(f"edgert {tool} needs the {module} package, which this install lacks "
                             f"(a runtime-only install): {extras.get(module, f'pip install {module}')}")


def check_output_file(path: str, option: str) -> None:
    """Refuse, before any work, an output path that is a directory or inside a directory that does not exist."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a directory; give a file path inside it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path!r}: directory {parent!r} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path!r}: directory {parent!r} is not writable")
