"""Optimization profiles: per graph input, the (min, opt, max) shapes a plan must run (TensorRT's profiles).

``normalize_profiles`` checks user profiles against the model's inputs and returns them in one form,
``[{input name: (min, opt, max)}]`` with every input present (static inputs pinned to their dims).
Errors are ShapeErrors of one line that name the input and the axis: min > opt or opt > max, a rank
that differs from the model's, an unknown input, a dim that contradicts the model's static dim, a
dim that is dynamic in the model and missing from a profile. ``load_profiles_file`` reads a TOML or
JSON file of profiles (the CLI's ``--profiles``). Pure Python: the CLI and the builder both use it.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

from edgert.errors import ShapeError

Shape = tuple
Profile = dict   # {input name: (min, opt, max)}


def parse_dims(text: str, what: str = "shape") -> Shape:
    """``1x3x48x64`` (or ``1,3,48,64``) → (1, 3, 48, 64); ShapeError on anything else."""
    parts = str(text).replace(",", "x").split("x") if str(text).strip() else []
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ShapeError(f"{what} {text!r} is not a list of integer dims such as 1x3x224x224") from None
    if not dims or any(d < 0 for d in dims):
        raise ShapeError(f"{what} {text!r} needs one or more non-negative dims such as 1x3x224x224")
    return dims


def _as_shape(value, what: str) -> Shape:
    if isinstance(value, str):
        return parse_dims(value, what)
    try:
        dims = tuple(int(d) for d in value)
    except (TypeError, ValueError):
        raise ShapeError(f"{what} {value!r} is not a shape (a sequence of integer dims)") from None
    if any(d < 0 for d in dims):
        raise ShapeError(f"{what} {dims} has a negative dim")
    return dims


def _triple(name: str, value, index: int) -> tuple[Shape, Shape, Shape]:
    where = f"profile {index}, input {name!r}"
    if isinstance(value, Mapping):
        missing = [k for k in ("min", "opt", "max") if k not in value]
        if missing:
            raise ShapeError(f"{where}: needs min, opt and max shapes, {', '.join(missing)} missing")
        value = (value["min"], value["opt"], value["max"])
    if isinstance(value, str) or (isinstance(value, Sequence) and value and not isinstance(value[0], (str, Sequence))):
        shape = _as_shape(value, where)
        return shape, shape, shape
    if not isinstance(value, Sequence) or len(value) != 3:
        raise ShapeError(f"{where}: expected (min, opt, max) shapes, found {value!r}")
    low, opt, high = (_as_shape(v, f"{where} {k}") for v, k in zip(value, ("min", "opt", "max")))
    if not len(low) == len(opt) == len(high):
        raise ShapeError(f"{where}: min {low}, opt {opt} and max {high} have different ranks")
    for axis, (a, b, c) in enumerate(zip(low, opt, high)):
        if not a <= b <= c:
            raise ShapeError(f"{where}: axis {axis} needs min <= opt <= max, found {a}, {b}, {c}")
    return low, opt, high


def normalize_profiles(profiles, input_dims: Mapping[str, list | None],
                       shapes: Mapping[str, Sequence[int]] | None = None) -> list[Profile]:
    """Profiles checked against the model's inputs (``{name: dims, None where dynamic}``), every input given."""
    if isinstance(profiles, Mapping):
        profiles = [profiles]
    if not profiles:
        raise ShapeError("profiles is empty; give at least one {input: (min, opt, max)} profile")
    fixed = {name: _as_shape(shape, f"shape of input {name!r}") for name, shape in (shapes or {}).items()}
    result = []
    for index, profile in enumerate(profiles):
        if not isinstance(profile, Mapping):
            raise ShapeError(f"profile {index} is a {type(profile).__name__}; expected a mapping of input name to "
                             "(min, opt, max) shapes")
        entries = {name: _triple(name, value, index) for name, value in profile.items()}
        for name, shape in fixed.items():
            if name in entries:
                raise ShapeError(f"input {name!r} has both a fixed shape and a range in profile {index}; give one")
            entries[name] = (shape, shape, shape)
        result.append(_complete(entries, input_dims, index))
    return result


def _complete(entries: dict, input_dims: Mapping[str, list | None], index: int) -> Profile:
    for name in entries:
        if name not in input_dims:
            known = ", ".join(sorted(input_dims)) or "none"
            raise ShapeError(f"profile {index} names unknown input {name!r}; the model's inputs are: {known}")
    profile = {}
    for name, dims in input_dims.items():
        if name not in entries:
            dynamic = None if dims is None else [a for a, d in enumerate(dims) if d is None]
            if dims is None or dynamic:
                axis = "its shape" if dims is None else f"axis {dynamic[0]}"
                raise ShapeError(f"input {name!r} is dynamic at {axis} in the model, and profile {index} gives no "
                                 f"range for it; add --min-shape/--opt-shape/--max-shape {name}=... to every profile")
            profile[name] = (tuple(dims),) * 3
            continue
        low, opt, high = entries[name]
        if dims is not None:
            if len(low) != len(dims):
                raise ShapeError(f"profile {index}, input {name!r}: shapes have rank {len(low)}, the model says "
                                 f"rank {len(dims)} ({'x'.join('?' if d is None else str(d) for d in dims)})")
            for axis, dim in enumerate(dims):
                if dim is not None and not low[axis] == high[axis] == dim:
                    raise ShapeError(f"profile {index}, input {name!r}: axis {axis} is {dim} in the model, the "
                                     f"profile gives {low[axis]}..{high[axis]}")
        profile[name] = (low, opt, high)
    return profile


def is_static(profiles: list[Profile]) -> bool:
    """One profile with min = opt = max everywhere: an ordinary static build."""
    return len(profiles) == 1 and all(low == high for low, _, high in profiles[0].values())


def load_profiles_file(path) -> list[dict]:
    """Profiles from TOML (``[[profile]]`` tables) or JSON (a list, or ``{"profiles": [...]}``); each
    profile maps an input name to ``{min = "1x3x48x64", opt = ..., max = ...}`` (or dim lists)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ShapeError(f"cannot read profiles file {path}: {e.strerror}") from None
    try:
        if path.endswith(".json"):
            document = json.loads(data)
        else:
            import tomllib
            document = tomllib.loads(data.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise ShapeError(f"profiles file {path} is not valid {'JSON' if path.endswith('.json') else 'TOML'}: "
                         f"{str(e).splitlines()[0]}") from None
    if isinstance(document, Mapping):
        document = document.get("profiles", document.get("profile"))
    if not isinstance(document, list) or not document:
        raise ShapeError(f"profiles file {path}: expected a list of profiles ([[profile]] tables in TOML, "
                         "a list or {\"profiles\": [...]} in JSON)")
    return document
