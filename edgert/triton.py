"""Triton Inference Server model repositories for edgert plans.

``write_repository(plans, repository)`` lays out, for each plan::

    REPO/<name>/config.pbtxt        backend "python"; inputs/outputs from the plan's bindings; batching; instances
    REPO/<name>/<version>/model.py  a TritonPythonModel (edgert/triton_model.py) that runs the plan
    REPO/<name>/<version>/model.plan

Each call adds a new version folder (1, 2, ...) beside those already there, so a rebuilt plan is served as
the model's next version. The batch dim becomes Triton's ``max_batch_size`` when the plan's inputs and outputs
all lead with one batch dim that its optimization profile lets vary from 1 (``dims`` then leave it out); other
dims that vary are ``-1``. A plan of fixed shapes is served with ``max_batch_size: 0`` and its exact dims.
Only NumPy and msgpack are imported here (the plan is read, never built).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgert.errors import EdgeRTError

TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int8": "TYPE_INT8",
                 "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "uint8": "TYPE_UINT8",
                 "bool": "TYPE_BOOL"}
PLAN_FILE = "model.plan"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class RepositoryError(EdgeRTError):
    """A Triton model repository cannot be written as asked."""


@dataclass
class TensorSpec:
    """One input or output as Triton sees it: dims without the batch dim when the model batches."""

    name: str
    dtype: str
    dims: list[int]


@dataclass
class ModelConfig:
    name: str
    max_batch_size: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    instances: int = 1
    device: str = "cpu"
    dynamic_batching: bool = False
    max_queue_delay_us: int | None = None
    preferred_batch_sizes: list[int] = field(default_factory=list)

    def to_pbtxt(self) -> str:
        lines = [f'name: "{self.name}"', 'backend: "python"', f"max_batch_size: {self.max_batch_size}"]
        for section, specs in (("input", self.inputs), ("output", self.outputs)):
            entries = ",\n".join(f'  {{ name: "{s.name}" data_type: {TRITON_DTYPES[s.dtype]} '
                                 f'dims: [ {", ".join(map(str, s.dims))} ] }}' for s in specs)
            lines.append(f"{section} [\n{entries}\n]")
        if self.dynamic_batching:
            body = []
            if self.preferred_batch_sizes:
                body.append(f"preferred_batch_size: [ {', '.join(map(str, self.preferred_batch_sizes))} ]")
            if self.max_queue_delay_us is not None:
                body.append(f"max_queue_delay_microseconds: {self.max_queue_delay_us}")
            lines.append("dynamic_batching { " + " ".join(body) + " }")
        kind = "KIND_GPU" if self.device.startswith("cuda") else "KIND_CPU"
        lines.append(f"instance_group [ {{ count: {self.instances} kind: {kind} }} ]")
        lines.append('parameters: { key: "device" value: { string_value: "%s" } }' % self.device)
        lines.append('parameters: { key: "plan_file" value: { string_value: "%s" } }' % PLAN_FILE)
        return "\n".join(lines) + "\n"


def plan_io(engine) -> tuple[list[tuple[str, str, tuple, tuple]], list[tuple[str, str, tuple, tuple]]]:
    """(name, dtype, min shape, max shape) of every input and output of a loaded engine (profile 0).

    Inputs take their range from the plan's optimization profile; outputs from the range of dims the plan records
    for them (a profile plan's tensors carry the smallest and largest dims of its probe builds).
    """
    def input_range(binding):
        get_range = getattr(engine, "get_tensor_profile_shape", None)
        if get_range is not None:
            low, _, high = get_range(binding.name, 0)
            return tuple(low), tuple(high)
        return tuple(binding.shape), tuple(binding.shape)

    inputs = [(b.name, b.dtype.name, *input_range(b)) for b in engine.inputs]
    outputs = []
    for binding in engine.outputs:
        varying = (engine.tensors[binding.tensor].get("range") if hasattr(engine, "tensors") else None)
        if varying:   # a profile plan: the smallest and largest dims its probe builds gave this output
            low, high = (tuple(dims) for dims in varying)
        else:
            low = tuple(1 if d is None or d < 0 else d for d in binding.shape)
            high = tuple(-1 if d is None or d < 0 else d for d in binding.shape)
        outputs.append((binding.name, binding.dtype.name, low, high))
    return inputs, outputs


def _batch_range(inputs, outputs) -> int:
    """The largest batch the plan runs when every input leads with a batch dim that may be 1, else 0."""
    if not inputs or any(len(low) == 0 or low[0] != 1 for _, _, low, _ in inputs):
        return 0
    highs = {high[0] for _, _, _, high in inputs}
    if len(highs) != 1 or highs == {1} or any(len(high) == 0 for _, _, _, high in outputs):
        return 0
    return highs.pop()


def model_config(engine, name: str, *, max_batch_size: int | None = None, instances: int = 1, device: str = "cpu",
                 dynamic_batching: bool = False, max_queue_delay_us: int | None = None,
                 preferred_batch_sizes: Sequence[int] = ()) -> ModelConfig:
    """The Triton configuration that serves ``engine``'s plan (see the module docstring for the rules)."""
    inputs, outputs = plan_io(engine)
    for tensor_name, dtype, _, _ in inputs + outputs:
        if dtype not in TRITON_DTYPES:
            raise RepositoryError(f"tensor {tensor_name!r} has dtype {dtype}, which Triton has no type for")
    plan_batch = _batch_range(inputs, outputs)
    if max_batch_size is None:
        max_batch_size = plan_batch
    elif max_batch_size > plan_batch:
        why = (f"its profile allows batches up to {plan_batch}" if plan_batch else
               "its inputs have no dynamic batch dim (rebuild it with a profile, e.g. --min-shape x=1x... "
               "--max-shape x=8x...)")
        raise RepositoryError(f"--max-batch-size {max_batch_size} is more than plan {name!r} can run: {why}")
    if max_batch_size < 0:
        raise RepositoryError(f"--max-batch-size must be >= 0, got {max_batch_size}")
    if dynamic_batching and max_batch_size == 0:
        raise RepositoryError(f"dynamic batching needs a batch dim: plan {name!r} is served with max_batch_size 0 "
                              "(build it with a dynamic batch profile)")
    bad = [b for b in preferred_batch_sizes if not 1 <= b <= max_batch_size]
    if bad:
        raise RepositoryError(f"preferred batch size {bad[0]} is outside 1..{max_batch_size}")
    if instances < 1:
        raise RepositoryError(f"--instances must be >= 1, got {instances}")

    def spec(entry, batched):
        tensor_name, dtype, low, high = entry
        dims = [-1 if lo != hi or hi < 0 else hi for lo, hi in zip(low, high)]
        return TensorSpec(tensor_name, dtype, dims[1:] if batched else dims)

    batched = max_batch_size > 0
    return ModelConfig(name, max_batch_size, [spec(e, batched) for e in inputs], [spec(e, batched) for e in outputs],
                       instances, device, dynamic_batching, max_queue_delay_us, list(preferred_batch_sizes))


def write_repository(plans: Sequence[str | os.PathLike], repository: str | os.PathLike, *,
                     names: Sequence[str] | None = None, **options) -> list[Path]:
    """Write (or add a version to) one Triton model per plan under ``repository``; return the version folders.

    ``options`` are those of ``model_config`` (max_batch_size, instances, device, dynamic_batching,
    max_queue_delay_us, preferred_batch_sizes) and apply to every plan.
    """
    from edgert.runtime import load

    plans = [Path(p) for p in plans]
    if not plans:
        raise RepositoryError("no plan given")
    names = list(names) if names else [_model_name(p) for p in plans]
    if len(names) != len(plans):
        raise RepositoryError(f"{len(names)} names for {len(plans)} plans; give one --name per plan")
    if len(set(names)) != len(names):
        raise RepositoryError(f"two plans would be served under one name ({_first_repeat(names)!r}); give --name")
    repository = Path(repository)
    if repository.exists() and not repository.is_dir():
        raise RepositoryError(f"repository {str(repository)!r} exists and is not a directory")
    configs = []
    for plan, name in zip(plans, names):
        if not _NAME.match(name):
            raise RepositoryError(f"model name {name!r} must use letters, digits, '_', '.' or '-' only")
        if not plan.is_file():
            raise RepositoryError(f"plan not found: {plan}")
        engine = load(str(plan), device="cpu")   # reading bindings needs no GPU, whatever the serving device
        configs.append((plan, model_config(engine, name, **options)))
    written = []
    for plan, config in configs:   # every plan checked before anything is written
        model_dir = repository / config.name
        version_dir = model_dir / str(_next_version(model_dir))
        version_dir.mkdir(parents=True)
        shutil.copyfile(plan, version_dir / PLAN_FILE)
        shutil.copyfile(Path(__file__).with_name("triton_model.py"), version_dir / "model.py")
        (model_dir / "config.pbtxt").write_text(config.to_pbtxt())
        written.append(version_dir)
    return written


def _model_name(plan: Path) -> str:
    name = plan.name[:-len(".plan")] if plan.name.endswith(".plan") else plan.stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "model"


def _first_repeat(names: Sequence[str]) -> str:
    seen = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return ""


def _next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] \
        if model_dir.is_dir() else []
    return max(versions, default=0) + 1


def numpy_dtype(triton_type: str) -> np.dtype:
    """The NumPy dtype of a Triton ``TYPE_*`` name (for clients and tests)."""
    names = {v: k for k, v in TRITON_DTYPES.items()}
    return np.dtype(names[triton_type])
