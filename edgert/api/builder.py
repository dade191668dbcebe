"""``Builder``: networks, configs and profiles in, a serialized plan (``IHostMemory``) out, as in TensorRT.

``build_serialized_network`` runs edgert's builder on the network's IR graph (a copy: the network stays
editable), with the typed settings the config gives (``IBuilderConfig.build_config``: edgert's
``BuildConfig``, which is all the builder reads). A network with
dynamic inputs is built through ``edgert.dynamic.build_profiles`` at the profiles' probe shapes; a network
that OnnxParser filled and nobody edited builds from the ONNX model itself, exactly as ``edgert.build``.
Failures are reported as TensorRT does (an ERROR to the logger and None) and kept in ``builder.last_error``.
"""

from __future__ import annotations

import contextlib

from edgert.api.config import (IBuilderConfig, IOptimizationProfile, scratch_directory, write_back_cache)
from edgert.api.definition import INetworkDefinition
from edgert.api.logger import report, routed
from edgert.errors import EdgeRTError, UnsupportedError


class IHostMemory(bytes):
    """A serialized plan: bytes (write it to a file, hand it to ``Runtime.deserialize_cuda_engine``) with
    TensorRT's ``nbytes`` and ``dtype``."""

    @property
    def nbytes(self) -> int:
        return len(self)

    @property
    def dtype(self):
        from edgert.api.enums import DataType
        return DataType.UINT8


class Builder:
    def __init__(self, logger=None):
        self.logger = logger
        self.target = "host"   # edgert's own: the device profile the platform_* queries describe
        self.max_threads = 1
        self.last_error: EdgeRTError | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    # -- factories --------------------------------------------------------------------------------------
    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        config = IBuilderConfig()
        config.target = self.target
        return config

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    # -- what the target offers ---------------------------------------------------------------------------
    def _profile(self):
        from edgert.targets import load_profile
        return None if self.target == "host" else load_profile(self.target)

    @property
    def platform_has_fast_fp16(self) -> bool:
        profile = self._profile()
        return profile is not None and profile.gpu is not None and int(profile.gpu.arch[3:]) >= 53

    @property
    def platform_has_fast_int8(self) -> bool:
        profile = self._profile()
        return profile is not None and (profile.dla is not None or
                                        profile.gpu is not None and int(profile.gpu.arch[3:]) >= 61)

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802 - TensorRT's name
        profile = self._profile()
        return profile.dla_cores if profile is not None else 0

    @property
    def max_DLA_batch_size(self) -> int:  # noqa: N802
        return 4096 if self.num_DLA_cores else 1   # edgert's DLA checks bound dims, not the batch on its own

    @property
    def platform_has_tf32(self) -> bool:
        profile = self._profile()
        return profile is not None and profile.gpu is not None and int(profile.gpu.arch[3:]) >= 80

    # -- building -------------------------------------------------------------------------------------------
    def is_network_supported(self, network: INetworkDefinition, config: IBuilderConfig) -> bool:
        return self.build_serialized_network(network, config) is not None

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        self.last_error = None
        try:
            with routed(self.logger), monitored(config.progress_monitor), scratch_directory() as scratch:
                settings, profiles = config.build_config(network, scratch)
                plan = build_network(network, settings, profiles)
                write_back_cache(config.int8_calibrator, scratch)
        except EdgeRTError as e:
            self.last_error = e
            report(self.logger, 1, str(e))
            return None
        _report_build(self.logger, plan, settings)
        return IHostMemory(plan.to_bytes())

    def build_engine_with_config(self, network: INetworkDefinition, config: IBuilderConfig):
        """Build and deserialize in one step (an ICudaEngine, or None on failure)."""
        from edgert.api.runtime import Runtime
        plan = self.build_serialized_network(network, config)
        return Runtime(self.logger).deserialize_cuda_engine(plan) if plan is not None else None


@contextlib.contextmanager
def monitored(monitor):
    """Tell ``monitor`` (TensorRT's IProgressMonitor) of the build and of edgert's progress tasks inside it."""
    if monitor is None:
        yield
        return
    from edgert import progress

    monitor.phase_start("build", None, 1)
    progress.add_monitor(monitor)
    try:
        yield
        monitor.step_complete("build", 1)
    finally:
        progress.remove_monitor(monitor)
        monitor.phase_finish("build")


def _report_build(logger, plan, settings) -> None:
    """What the build did, at INFO (summary, rewrites per pass) and VERBOSE (each layer's device and precision)."""
    header = plan.header
    report(logger, 3, f"built a plan of {len(plan.layers)} layers for target {settings.target} "
                      f"({settings.precision}), activation arena {plan.document['memory']['arena_bytes']} bytes")
    passes = ", ".join(f"{name} {count}" for name, count in (header.get("passes") or {}).items() if count)
    if passes:
        report(logger, 3, f"graph rewrites: {passes}")
    for note in (header.get("precision") or {}).get("notes", []):
        report(logger, 3, note)
    for layer in plan.layers:
        report(logger, 4, f"layer {layer['name']} ({layer['kind']}): {layer.get('device', 'cpu')}, "
                          f"{layer.get('precision')}")


def init_libnvinfer_plugins(logger, namespace: str = "") -> bool:
    """TensorRT scripts call this first; edgert has no plugin library to register."""
    return True


def build_network(network: INetworkDefinition, settings, profiles=None):
    """A Plan of ``network`` with edgert's ``BuildConfig`` ``settings`` (``IBuilderConfig.build_config``)."""
    from edgert.builder import build

    if network.onnx_model is not None and not network._edited_after_parse:
        return build(network.onnx_model, profiles=profiles, config=settings)
    if network.onnx_model is not None and network.dynamic_inputs:
        raise UnsupportedError("a parsed ONNX network with dynamic inputs cannot be edited through the layer API "
                               "(its shape arithmetic was folded at import); edit the ONNX model, or export it "
                               "with static shapes")
    if profiles is None:
        return _build_graph(network, None, settings)
    from edgert.dynamic import build_profiles
    return build_profiles(lambda shapes, config: _build_graph(network, shapes, config), network.input_dims(),
                          profiles, None, settings)


def _build_graph(network: INetworkDefinition, shapes, settings):
    """``edgert.builder.build`` for the network's graph at ``shapes``."""
    from edgert.builder import build_graph

    graph = network.graph_at(shapes)
    graph.verify()
    return build_graph(graph, settings)
