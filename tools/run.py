"""edgert run PLAN: execute a plan on given or random inputs and summarize the outputs."""

from __future__ import annotations

import os
import time

import numpy as np

from edgert import log
from edgert.errors import InputError
from edgert.tools.args import UsageError, add_device_option, check_output_file

HELP = "run a plan on inputs from an .npz file (random inputs when none are given)"


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file")
    parser.add_argument("--inputs", help=".npz file with one array per input name")
    parser.add_argument("--output", help="write the outputs to this file (.npz format, written at exactly this path)")
    parser.add_argument("--seed", type=int, default=None, help="seed for random inputs")
    parser.add_argument("--check-finite", action="store_true",
                        help="check every layer's output and name the first one that holds NaN or Inf (CPU)")
    add_device_option(parser)


def random_inputs(engine, seed=None, ranges: dict | None = None) -> dict[str, np.ndarray]:
    """Random arrays for the engine's inputs: standard normal floats, 0/1 integers and booleans, or uniform
    in ``ranges[name]`` (``ranges[None]``: every input) = (lo, hi); an int8 binding of codes gets the codes of
    such values at its scale."""
    rng = np.random.default_rng(seed)
    ranges = ranges or {}
    unknown = sorted(set(ranges) - {None} - {b.name for b in engine.inputs})
    if unknown:
        raise UsageError(f"--val-range names unknown input {unknown[0]!r}; the plan's inputs are: "
                         f"{', '.join(b.name for b in engine.inputs)}")
    feeds = {}
    for binding in engine.inputs:
        bounds = ranges.get(binding.name, ranges.get(None))
        if getattr(binding, "scale", None) is not None:   # int8 codes (--input-format NAME=int8): of such values
            values = rng.uniform(*bounds, binding.shape) if bounds is not None else rng.standard_normal(binding.shape)
            feeds[binding.name] = np.clip(np.rint(values / binding.scale), -128, 127).astype(np.int8)
        elif binding.dtype.kind == "b":
            feeds[binding.name] = rng.random(binding.shape) > 0.5
        elif bounds is not None and binding.dtype.kind == "f":
            feeds[binding.name] = rng.uniform(*bounds, binding.shape).astype(binding.dtype)
        elif bounds is not None:
            low, high = int(np.ceil(bounds[0])), int(np.floor(bounds[1]))
            feeds[binding.name] = rng.integers(low, max(high, low) + 1, binding.shape).astype(binding.dtype)
        elif binding.dtype.kind == "f":
            feeds[binding.name] = rng.standard_normal(binding.shape).astype(binding.dtype)
        else:
            feeds[binding.name] = rng.integers(0, 2, binding.shape).astype(binding.dtype)
    return feeds


def read_inputs(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (no pickles); InputError for anything else."""
    if not os.path.isfile(path):
        raise InputError(f"inputs file not found: {path}" if not os.path.isdir(path) else
                         f"inputs {path!r} is a directory; expected an .npz file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"PK"):   # np.load would call anything else pickled data
        raise InputError(f"{path} is not an .npz file (write one with np.savez(path, name=array))")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise InputError(f"{path} holds a single array (.npy); expected an .npz with one array per input "
                                 "name (np.savez(path, name=array))")
            return {name: data[name] for name in data.files}
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot read {path} as an .npz of arrays: {str(e).splitlines()[0] if str(e) else e!r}") \
            from None


def write_outputs(path: str, outputs: dict) -> None:
    """The outputs as an .npz at exactly ``path`` (np.savez on a name would append .npz)."""
    with open(path, "wb") as f:
        np.savez(f, **outputs)


def nonfinite_outputs(outputs: dict) -> list[str]:
    """'name: n of m values are NaN/Inf' for each floating output that has any."""
    found = []
    for name, array in outputs.items():
        if array.dtype.kind == "f" and array.size:
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                found.append(f"{name}: {bad} of {array.size} values are NaN/Inf")
    return found


def execute_checking_finite(context, feeds: dict) -> tuple[dict, str | None]:
    """(outputs, first layer whose output holds NaN/Inf or None), checking after every layer."""
    first = []

    def after_layer(name: str, outs: list) -> None:
        if not first and any(o.dtype.kind == "f" and not np.all(np.isfinite(o)) for o in outs):
            first.append(name)

    if not hasattr(context, "execute_each"):
        raise UsageError("--check-finite needs --device cpu (it checks each layer's output on the host)")
    outputs = context.execute_each(feeds, after_layer)
    return outputs, (first[0] if first else None)


def main(args) -> int:
    from edgert.runtime import load

    if args.output:
        check_output_file(args.output, "--output")   # before the inference, not after it
    engine = load(args.plan, device=args.device)
    feeds = read_inputs(args.inputs) if args.inputs else random_inputs(engine, args.seed)
    context = engine.create_execution_context()
    first_nonfinite = None
    started = time.perf_counter()
    if args.check_finite:
        outputs, first_nonfinite = execute_checking_finite(context, feeds)
    else:
        outputs = context.execute(feeds)
    milliseconds = (time.perf_counter() - started) * 1e3
    source = args.inputs or "random inputs"
    print(f"ran {args.plan} on {args.device} with {source}: {milliseconds:.2f} ms")
    for name, array in outputs.items():
        stats = ""
        if array.size and array.dtype.kind in "fiub":
            values = array.astype(np.float64)
            with np.errstate(invalid="ignore"):   # NaN outputs print as nan; the warning below says why
                stats = f" min {values.min():.4g} max {values.max():.4g} mean {values.mean():.4g}"
        print(f"  {name}: {array.dtype.name} {tuple(array.shape)}{stats}")
    _warn_nonfinite(outputs, args.check_finite, first_nonfinite)
    if args.output:
        write_outputs(args.output, outputs)
        print(f"wrote {args.output}")
    return 0


def _warn_nonfinite(outputs: dict, checked: bool, first_layer: str | None) -> None:
    found = nonfinite_outputs(outputs)
    if found:
        where = (f"; layer {first_layer!r} was the first to produce NaN/Inf" if first_layer else
                 "" if checked else "; rerun with --check-finite to name the first layer that produced them")
        log.warning(f"non-finite outputs ({'; '.join(found)}){where} (an fp16 overflow? pin that layer to fp32 "
                    "or the GPU with a placement rule, or build with --precision fp32)")
    elif first_layer:
        log.warning(f"layer {first_layer!r} produced NaN/Inf, though the outputs are finite")

