"""``IBuilderConfig``, ``IOptimizationProfile``, ``ITimingCache`` and TensorRT's int8 calibrator interfaces.

The config is typed: its attributes are fixed (``__slots__``), so a misspelt setting is an AttributeError,
never an option silently ignored; flags edgert cannot honour are refused by ``set_flag`` with the reason.
``build_config(network)`` turns it into edgert's typed ``BuildConfig``, which is what the builder reads.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from edgert.api.enums import (UNSUPPORTED_FLAGS, BuilderFlag, DeviceType, MemoryPoolType, ProfilingVerbosity,
                              dims)
from edgert.errors import EdgeRTError, ShapeError, UnsupportedError


class IOptimizationProfile:
    """Per input, the (min, opt, max) shapes the plan must run (``set_shape``), as in TensorRT."""

    def __init__(self):
        self._shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002 - TensorRT's argument names
        shapes = tuple(dims(s, f"profile shape of {input!r}") for s in (min, opt, max))
        if not len(shapes[0]) == len(shapes[1]) == len(shapes[2]):
            raise ShapeError(f"profile input {input!r}: min {shapes[0]}, opt {shapes[1]}, max {shapes[2]} have "
                             "different ranks")
        self._shapes[str(input)] = shapes

    def get_shape(self, input: str) -> list:  # noqa: A002
        return list(self._shapes[input]) if input in self._shapes else []

    def __bool__(self) -> bool:
        return bool(self._shapes)

    def as_dict(self) -> dict:
        return dict(self._shapes)


class ITimingCache:
    """Wraps edgert's timing cache (``edgert.kernels.cuda.timing_cache``), serialized as its JSON."""

    def __init__(self, data: bytes = b""):
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return self.data

    def combine(self, other: "ITimingCache", ignore_mismatch: bool = False) -> bool:
        raise UnsupportedError("combining timing caches is not supported; record one with `edgert tune`")


class IProgressMonitor:
    """TensorRT's build progress interface (``config.progress_monitor``): the build is one phase ("build"), and
    edgert's long steps inside it (calibration passes, autotuning) are phases of their own; returning False from
    ``step_complete`` cancels the build (``build_serialized_network`` returns None)."""

    def __init__(self):
        pass

    def phase_start(self, phase_name: str, parent_phase, num_steps: int) -> None:
        pass

    def step_complete(self, phase_name: str, step: int) -> bool:
        return True

    def phase_finish(self, phase_name: str) -> None:
        pass


class IInt8Calibrator:
    """TensorRT's calibrator interface: ``get_batch_size()``, ``get_batch(names)`` (a list of host pointers,
    one per input in ``names`` order, or None when done; NumPy arrays are accepted too),
    ``read_calibration_cache()`` (bytes or None), ``write_calibration_cache(cache)``."""

    algorithm = "entropy"

    def __init__(self):
        pass

    def get_batch_size(self) -> int:
        return 1

    def get_batch(self, names):   # pragma: no cover - interface
        return None

    def read_calibration_cache(self):
        return None

    def write_calibration_cache(self, cache) -> None:
        pass


class IInt8EntropyCalibrator2(IInt8Calibrator):
    algorithm = "entropy"


class IInt8EntropyCalibrator(IInt8Calibrator):
    algorithm = "entropy"


class IInt8MinMaxCalibrator(IInt8Calibrator):
    algorithm = "minmax"


class IInt8LegacyCalibrator(IInt8Calibrator):
    """edgert runs its percentile calibrator for TensorRT's legacy (percentile/quantile) one."""
    algorithm = "percentile"


class IBuilderConfig:
    __slots__ = ("_flags", "_device_types", "_profiles", "_pools", "_timing_cache", "default_device_type",
                 "DLA_core", "int8_calibrator", "builder_optimization_level", "profiling_verbosity", "target",
                 "placement", "gpu_kernels", "avg_timing_iterations", "progress_monitor", "max_aux_streams")

    def __init__(self):
        self._flags = {BuilderFlag.TF32}          # TensorRT's default
        self._device_types: dict[str, DeviceType] = {}
        self._profiles: list[IOptimizationProfile] = []
        self._pools: dict[MemoryPoolType, int] = {}
        self._timing_cache = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.int8_calibrator = None
        self.builder_optimization_level = 3
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.avg_timing_iterations = 1
        self.progress_monitor = None
        self.max_aux_streams = 0    # TensorRT's default is -1 (builder's choice); edgert's: one stream
        # edgert's own: the device profile to cross-build for, placement rules (a TOML file or rule dicts),
        # and CUDA kernels compiled into the plan
        self.target = "host"
        self.placement = None
        self.gpu_kernels = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    # -- flags ---------------------------------------------------------------------------------------
    def set_flag(self, flag) -> None:
        flag = BuilderFlag(flag)
        if flag in UNSUPPORTED_FLAGS:
            raise UnsupportedError(f"BuilderFlag.{flag.name} is not supported: {UNSUPPORTED_FLAGS[flag]}")
        self._flags.add(flag)

    def clear_flag(self, flag) -> None:
        self._flags.discard(BuilderFlag(flag))

    def get_flag(self, flag) -> bool:
        return BuilderFlag(flag) in self._flags

    @property
    def flags(self) -> int:
        return sum(1 << int(f) for f in self._flags)

    @flags.setter
    def flags(self, mask: int) -> None:
        self._flags = set()
        for flag in BuilderFlag:
            if int(mask) >> int(flag) & 1:
                self.set_flag(flag)

    # -- devices ---------------------------------------------------------------------------------------
    def set_device_type(self, layer, device_type) -> None:
        self._device_types[layer.name] = DeviceType(device_type)

    def get_device_type(self, layer) -> DeviceType:
        return self._device_types.get(layer.name, DeviceType(self.default_device_type))

    def is_device_type_set(self, layer) -> bool:
        return layer.name in self._device_types

    def reset_device_type(self, layer) -> None:
        self._device_types.pop(layer.name, None)

    def can_run_on_DLA(self, layer) -> bool:  # noqa: N802 - TensorRT's name
        """Whether the target's DLA can run ``layer`` at the build precision (edgert's capability tables; the
        DLA computes fp16 and int8 only, so an fp32 config says False)."""
        from edgert.partitioner.capabilities import CapabilityTable
        from edgert.targets import load_profile

        profile = load_profile(self.target) if self.target != "host" else None
        if profile is None or profile.dla is None or layer._node is None:
            return False
        layer._network._refresh()
        return bool(CapabilityTable.for_version(profile.dla_version).check_node(layer._node, self.precision))

    # -- profiles, memory, timing cache -----------------------------------------------------------------
    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile:
            raise ShapeError("the optimization profile has no shapes; call profile.set_shape(input, min, opt, max)")
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._profiles)

    def set_memory_pool_limit(self, pool, pool_size: int) -> None:
        pool = MemoryPoolType(pool)
        if pool != MemoryPoolType.WORKSPACE:
            raise UnsupportedError(f"memory pool {pool.name} has no limit in edgert; WORKSPACE bounds the plan's "
                                   "activation arena")
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool) -> int:
        from edgert.build_options import default_max_arena
        return self._pools.get(MemoryPoolType(pool), default_max_arena(self.target))

    def create_timing_cache(self, serialized_timing_cache: bytes = b"") -> ITimingCache:
        return ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool = False) -> bool:
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing_cache

    # -- edgert's side -----------------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """The build precision: int8 when INT8 is set, else fp16 when FP16 is, else fp32."""
        return "int8" if BuilderFlag.INT8 in self._flags else "fp16" if BuilderFlag.FP16 in self._flags else "fp32"

    def build_config(self, network, scratch_dir: str):
        """(edgert's ``BuildConfig``, the optimization profiles or None) for this config and ``network``;
        ``scratch_dir`` holds files the calibrator's cache passes through."""
        from edgert.build_options import BuildConfig

        options = self._build_options(network, scratch_dir)
        profiles = options.pop("profiles", None)
        return BuildConfig.from_options(**options), profiles

    def _build_options(self, network, scratch_dir: str) -> dict:
        options = {"target": self.target, "precision": self.precision,
                   "optimize": int(self.builder_optimization_level) > 0,
                   "gpu_fallback": BuilderFlag.GPU_FALLBACK in self._flags}
        options.update(self._placement_options(network))
        rules = self._precision_rules(network)
        if rules:
            options["precision_rules"] = rules
        if self.max_aux_streams:
            options["max_aux_streams"] = int(self.max_aux_streams)
        if MemoryPoolType.WORKSPACE in self._pools:
            options["max_arena"] = self._pools[MemoryPoolType.WORKSPACE]
        if self.gpu_kernels:
            options["gpu_kernels"] = True
            options["tf32"] = BuilderFlag.TF32 in self._flags
            if self._timing_cache is not None and self._timing_cache.data:
                path = os.path.join(scratch_dir, "timing_cache.json")
                with open(path, "wb") as f:
                    f.write(self._timing_cache.data)
                options["timing_cache"] = path
        if self.precision == "int8" or rules and any(r["precision"] == "int8" for r in rules):
            options.update(self._int8_options(network, scratch_dir))
        if self._profiles:
            options["profiles"] = [p.as_dict() for p in self._profiles]
        options.update(network.io_format_options())
        return options

    def _placement_options(self, network) -> dict:
        wants_dla = self.default_device_type == DeviceType.DLA or DeviceType.DLA in self._device_types.values()
        if not wants_dla:
            return {"placement": self.placement} if self.placement is not None else {}
        if int(self.DLA_core) < 0:
            raise EdgeRTError("layers are placed on the DLA but config.DLA_core is -1; set config.DLA_core = 0 "
                              "(or another core of the target)")
        rules = []
        if self.placement is not None:
            from edgert.partitioner.placement import read_rule_file
            rules += read_rule_file(self.placement, "placement file", EdgeRTError)[0].get("rule", [])
        if self.default_device_type == DeviceType.GPU:
            rules.append({"layer": "*", "device": "gpu"})
        rules += [{"layer": name, "device": device.name.lower()} for name, device in self._device_types.items()]
        return {"dla_core": int(self.DLA_core), "placement": rules}

    def _precision_rules(self, network) -> list[dict]:
        """Layers' ``precision`` (and float ``set_output_type``), obeyed as TensorRT does: with the flags only."""
        if not ({BuilderFlag.OBEY_PRECISION_CONSTRAINTS, BuilderFlag.PREFER_PRECISION_CONSTRAINTS} & self._flags):
            return []
        names = {"FLOAT": "fp32", "HALF": "fp16", "INT8": "int8"}
        rules = []
        for layer in network._layers:
            wanted = layer._precision or next(iter(layer._output_types.values()), None)
            if wanted is not None and layer._node is not None and wanted.name in names:
                rules.append({"layer": layer.name, "precision": names[wanted.name]})
        return rules

    def _int8_options(self, network, scratch_dir: str) -> dict:
        calibrator = self.int8_calibrator
        if calibrator is None:
            ranges = network._dynamic_ranges
            if not ranges:
                return {}
            return {"calibration": {name: max(abs(low), abs(high), 1e-12) / 127.0
                                    for name, (low, high) in ranges.items()}}
        cache_path = os.path.join(scratch_dir, "calibration.json")
        cached = calibrator.read_calibration_cache()
        if cached:
            with open(cache_path, "wb") as f:
                f.write(bytes(cached))
            return {"calib_cache": cache_path, "calibrator": calibrator.algorithm}
        return {"calib": list(calibration_batches(calibrator, network)), "calibrator": calibrator.algorithm,
                "calib_cache": cache_path}


def calibration_batches(calibrator, network):
    """Input dicts from ``calibrator.get_batch(names)`` until it returns None (host pointers or arrays)."""
    from edgert.api.runtime import host_array

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    names = [t.name for t in inputs]
    while True:
        batch = calibrator.get_batch(names)
        if not batch:
            return
        if len(batch) != len(names):
            raise EdgeRTError(f"calibrator.get_batch returned {len(batch)} buffers for {len(names)} inputs {names}")
        feeds = {}
        for tensor, item in zip(inputs, batch):
            shape = tuple(int(d) for d in tensor._value.shape)
            if isinstance(item, (int, np.integer)):
                feeds[tensor.name] = host_array(int(item), shape, tensor._value.dtype.numpy).copy()
            else:
                feeds[tensor.name] = np.asarray(item, tensor._value.dtype.numpy).reshape(shape)
        yield feeds


def write_back_cache(calibrator, scratch_dir: str) -> None:
    """Hand a calibration edgert computed to ``calibrator.write_calibration_cache`` (edgert's JSON cache)."""
    path = os.path.join(scratch_dir, "calibration.json")
    if calibrator is not None and os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        json.loads(data)   # it is edgert's JSON cache; a broken one fails here, not at the next build
        calibrator.write_calibration_cache(data)


def scratch_directory():
    return tempfile.TemporaryDirectory(prefix="edgert-build-")
