"""edgert run PLAN: execute a plan on given or random inputs and summarize the outputs."""

from __future__ import annotations

import os
import time

import numpy as np

from edgert.errors import InputError
from edgert.tools.args import add_device_option

HELP = "run a plan on inputs from an .npz file (random inputs when none are given)"


def add_arguments(parser) -> None:
    parser.add_argument("plan", help="plan file")
    parser.add_argument("--inputs", help=".npz file with one array per input name")
    parser.add_argument("--output", help="write the outputs to this .npz file")
    parser.add_argument("--seed", type=int, default=None, help="seed for random inputs")
    add_device_option(parser)


def random_inputs(engine, seed=None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for binding in engine.inputs:
        if binding.dtype.kind == "f":
            feeds[binding.name] = rng.standard_normal(binding.shape).astype(binding.dtype)
        elif binding.dtype.kind == "b":
            feeds[binding.name] = rng.random(binding.shape) > 0.5
        else:
            feeds[binding.name] = rng.integers(0, 2, binding.shape).astype(binding.dtype)
    return feeds


def read_inputs(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise InputError(f"inputs file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as e:
        raise InputError(f"cannot read {path} as an .npz of arrays: {e}") from None


def main(args) -> int:
    from edgert.runtime import load

    engine = load(args.plan, device=args.device)
    feeds = read_inputs(args.inputs) if args.inputs else random_inputs(engine, args.seed)
    context = engine.create_execution_context()
    started = time.perf_counter()
    outputs = context.execute(feeds)
    milliseconds = (time.perf_counter() - started) * 1e3
    source = args.inputs or "random inputs"
    print(f"ran {args.plan} on {args.device} with {source}: {milliseconds:.2f} ms")
    for name, array in outputs.items():
        stats = ""
        if array.size and array.dtype.kind in "fiub":
            values = array.astype(np.float64)
            stats = f" min {values.min():.4g} max {values.max():.4g} mean {values.mean():.4g}"
        print(f"  {name}: {array.dtype.name} {tuple(array.shape)}{stats}")
    if args.output:
        np.savez(args.output, **outputs)
        print(f"wrote {args.output}")
    return 0
