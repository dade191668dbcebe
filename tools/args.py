"""Option groups shared by several tools, and their parsing into build options."""

from __future__ import annotations

import argparse

from edgert.errors import EdgeRTError


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
        if name in shapes:
            raise UsageError(f"--shape given twice for input {name!r}")
        shapes[name] = shape
    return shapes


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu",
                        help="where to run: cpu (default), cuda (cupy) or cuda:pycuda (needs a plan built with "
                             "--gpu-kernels)")
