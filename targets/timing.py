"""Timing model: predicted time of a layer on the GPU or on one DLA core of a target profile.

Per layer: the larger of compute time (multiply-accumulates / (peak rate x efficiency x channel
utilization)) and memory time (bytes moved / (bandwidth x efficiency)), plus a fixed per-layer cost.
A DLA segment (loadable) adds a submission cost, every device change a Reformat (a GPU copy kernel
converting layout and precision, plus the cross-engine synchronization), and every GPU inference a
fixed submission cost (input copy, launch, completion wait).

Where the constants come from, lowest precedence first: ``DEFAULTS`` below (estimates), the fit to
NVIDIA's published measurements in ``targets/fitted.toml`` (per GPU architecture and DLA version, see
``edgert.targets.fit``), a profile's ``[timing]`` table, and the ``overrides`` of one model.
``TimingModel.basis(name)`` says which of them a constant came from. Peak rates, clocks and
bandwidths come from the profile's data file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.targets.layers import LayerInfo, TensorInfo
from edgert.targets.profiles import TargetProfile

BYTES = {"int8": 1, "fp16": 2, "fp32": 4}

DEFAULTS = {
    # GPU, TensorRT-style kernels. Estimate: a large tensor-core convolution / GEMM kernel sustains about
    # 70% of the dense peak; small layers lose more through channel padding, memory and launch costs,
    # which the model charges separately (whole ResNet-50 then lands near the published 40-50%).
    "gpu_mac_efficiency": 0.7,
    "gpu_memory_efficiency": 0.7,      # achievable fraction of LPDDR bandwidth for streaming kernels
    # Kernel ramp-up, tail and dependency wait per layer (launched from a CUDA graph), in thousands of GPU
    # clock cycles: a slower GPU clock stretches it (3 us at 1.3 GHz before the fit).
    "gpu_layer_overhead_kcycles": 3.9,
    "gpu_channel_align_int8": 32,      # tensor-core tiles pad channels to these multiples (CHW32 / HWC8)
    "gpu_channel_align_fp16": 8,
    # Inferred: TensorRT runs a network's first convolution (3 input channels) with kernels for inputs
    # padded to 4 channels (NVIDIA's MLPerf harness feeds ResNet-50 in CHW4), not to a full tensor-core tile.
    "gpu_input_channel_align": 4,
    # DLA. The convolution core's MAC array is cut into input-channel x output-channel atoms
    # (NVDLA: "atomic-C" x "atomic-K"); small channel counts leave parts of it idle.
    # Estimate, replaced per DLA version by the fit in targets/fitted.toml.
    "dla_mac_efficiency": 0.33,
    "dla_memory_efficiency": 0.35,     # one DLA core's share of DRAM bandwidth (shared with GPU/CPU)
    "dla_channel_align_int8": 64,
    "dla_channel_align_fp16": 32,
    "dla_depthwise_utilization": 0.0,  # 0: depthwise runs as a grouped convolution (one channel per atom)
    # Inferred from the data (docs/benchmarks.md): a first convolution on few channels runs in NVDLA's image
    # input mode, where the pixels (padded to 4 channels: TensorRT's DLA_HWC4 input, which NVIDIA's DLA
    # measurements use) are "channel pre-extended" by the kernel width, so kernel_w x 4 input channels fill
    # the MAC atoms instead of 3 of 64 (nvdla.org/hw/format.html, "Channel pre-extension for image input").
    "dla_image_input_channels": 4,
    # NVDLA's fused operation: the convolution pipeline hands its output (through the SDP) straight to the
    # pooling engine (PDP), so a convolution's output read only by a pooling layer on the same core never
    # goes through DRAM (nvdla.org/hw/v1/hwarch.html, "Fused operation"). 1: modelled, 0: off (ablation).
    "dla_conv_pool_fusion": 1,
    # NVDLA runs a batch of convolutions image by image: its multi-batch mode is for inner-product layers
    # only, and a convolution's weights are re-used across hardware layers only while they stay in the
    # convolution buffer (nvdla.org/hw/v1/ias/programming_guide.html, "Convolution pipeline programming").
    # So a DLA convolution whose weights exceed the buffer reads them from DRAM once per image, not once per
    # batch. Inferred: 512 KiB is NVDLA nv_full's buffer; Orin's is not published. inf: once per batch (ablation).
    "dla_conv_buffer_kib": 512.0,
    # 2:4 structured sparsity on the DLA (TensorRT --sparsity=force): the MAC array skips the zero half, twice
    # the dense rate (published: 105 sparse vs 52.5 dense INT8 TOPS on AGX Orin); the weights are stored as
    # the kept half plus a 2-bit index per kept value (inferred, as on Ampere's sparse tensor cores).
    "dla_sparse_mac_speedup": 2.0,
    "dla_sparse_index_bits": 2,
    # A DLA core reads and writes DRAM through one memory interface clocked with the core: at most this many
    # bytes per DLA clock, whatever the DRAM could give (inferred: NVDLA's primary memory interface, DBBIF, is
    # a 512-bit AXI port in the core clock domain, nvdla.org/hw/v1/integration_guide.html). A slow DLA clock
    # (Orin NX: 614 MHz, 39 GB/s) then caps it below its DRAM share. 0: no cap (ablation).
    "dla_port_bytes_per_clock": 64,
    "dla_elements_per_clock": 32,      # per-element engines (SDP, PDP, CDP): elements per clock
    "dla_layer_overhead_us": 2.0,      # per hardware operation, scheduled by the DLA's own sequencer
    "dla_submit_us": 60.0,             # submitting one loadable and waiting for it (per segment per run)
    "reformat_sync_us": 10.0,          # cross-engine event wait at a GPU<->DLA boundary
    "gpu_submit_us": 20.0,             # per GPU inference (batch): input copy, launch, completion wait
    # Engines running at once (GPU and DLA cores on different requests) share DRAM: together they move at
    # most this fraction of the bandwidth (edgert.partitioner.throughput).
    "shared_memory_efficiency": 0.8,
}
# DLA 2.0 (Orin) adds native depthwise convolution (Jetson AGX Orin technical brief).
VERSION_DEFAULTS = {2: {"dla_depthwise_utilization": 0.25}}
FITTED_PATH = Path(__file__).resolve().parent / "fitted.toml"


@functools.lru_cache(maxsize=None)
def fitted_constants() -> dict:
    """The fitted constants: {"shared": {...}, "gpu": {architecture: {...}}, "dla": {"v1": {...}, ...}}."""
    if not FITTED_PATH.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(FITTED_PATH, "rb") as f:
        return tomllib.load(f)


def constant_layers(profile: TargetProfile, overrides: dict | None = None) -> list[tuple[str, dict]]:
    """(basis, constants) from lowest to highest precedence for ``profile``."""
    fitted = fitted_constants()
    layers = [("estimated", DEFAULTS)]
    if profile.dla is not None:
        layers.append(("estimated", VERSION_DEFAULTS.get(profile.dla.version, {})))
    layers.append(("fitted", fitted.get("shared", {})))
    if profile.gpu is not None:
        layers.append(("fitted", fitted.get("gpu", {}).get(profile.gpu.architecture, {})))
    if profile.dla is not None:
        layers.append(("fitted", fitted.get("dla", {}).get(f"v{profile.dla.version}", {})))
    layers.append((f"profile {profile.name}", profile.timing))
    layers.append(("override", overrides or {}))
    return layers


@dataclass(frozen=True)
class LayerTime:
    macs: float
    bytes: float
    compute_ms: float
    memory_ms: float
    overhead_ms: float

    @property
    def ms(self) -> float:
        return max(self.compute_ms, self.memory_ms) + self.overhead_ms

    @property
    def bound(self) -> str:
        return "compute" if self.compute_ms >= self.memory_ms else "memory"


def device_kind(device: str) -> str:
    return "dla" if device.startswith("dla") else device


class TimingModel:
    """Predicts per-layer, per-reformat and per-segment times for one profile."""

    def __init__(self, profile: TargetProfile, overrides: dict | None = None):
        self.profile = profile
        self.c, self._basis = {}, {}
        for basis, constants in constant_layers(profile, overrides):
            for name, value in constants.items():
                if name not in DEFAULTS:
                    continue  # provenance entries of the fitted file, not constants
                self.c[name], self._basis[name] = value, basis

    def basis(self, name: str) -> str:
        """Where constant ``name`` came from: "estimated", "fitted", "profile NAME" or "override"."""
        return self._basis[name]

    # -- layers ------------------------------------------------------------------------------
    def layer(self, info: LayerInfo, device: str, precision: str = "fp16", batch: int = 1, *,
              streamed_input: bool = False, streamed_output: bool = False, sparse: bool = False) -> LayerTime:
        """Time of ``info`` on ``device`` ("gpu" or "dla:N"); ``batch`` scales activations, and weights only
        where the device reads them once per image (``weight_reads``).

        ``streamed_input`` / ``streamed_output``: the first input / the output stays on chip (a DLA
        convolution feeding its pooling layer, ``dla_layer_times``). ``sparse``: 2:4 structured-sparse
        weights (DLA convolutions only).
        """
        macs = layer_macs(info) * batch
        kind = device_kind(device)
        sparse = sparse and kind == "dla" and is_sparse_convolution(info)
        moved = layer_bytes(info, precision, batch, self.onchip_bytes(kind), skip_input=streamed_input,
                            skip_output=streamed_output, weight_reads=self.weight_reads(info, kind, precision, batch),
                            weight_fraction=self.sparse_weight_fraction(precision) if sparse else 1.0)
        if kind == "dla":
            return self._dla(info, macs, moved, precision, batch, sparse)
        if kind == "gpu":
            return self._gpu(info, macs, moved, precision)
        return LayerTime(macs, moved, 0.0, 0.0, 0.0)  # cpu: not modeled

    def _gpu(self, info: LayerInfo, macs: float, moved: float, precision: str) -> LayerTime:
        gpu, c = self.profile.gpu, self.c
        if gpu is None:
            return LayerTime(macs, moved, 0.0, 0.0, 0.0)
        if _is_depthwise(info) or precision == "fp32":
            # no tensor cores: CUDA cores at the FP32 rate (x2 for packed half / int8 dot products)
            peak = gpu.fp32_tflops * 1e12 / 2 * (1 if precision == "fp32" else 2)
            utilization = 1.0
        else:
            peak = (gpu.int8_dense_tops if precision == "int8" else gpu.fp16_dense_tflops) * 1e12 / 2
            utilization = _channel_utilization(info, c[f"gpu_channel_align_{_int8_or_fp16(precision)}"],
                                               c["gpu_input_channel_align"])
        compute = macs / (peak * c["gpu_mac_efficiency"] * utilization) if macs else 0.0
        memory = moved / (self.profile.memory_bandwidth_gbs * 1e9 * c["gpu_memory_efficiency"])
        return LayerTime(macs, moved, compute * 1e3, memory * 1e3, self.gpu_layer_overhead_ms())

    def weight_reads(self, info: LayerInfo, kind: str, precision: str, batch: int) -> int:
        """How many times a batch reads the layer's weights from DRAM: once, or once per image for a DLA
        convolution whose weights do not fit in the convolution buffer (``dla_conv_buffer_kib``)."""
        if kind != "dla" or info.kind not in (LayerKind.CONVOLUTION, LayerKind.DECONVOLUTION) or \
                _is_inner_product(info):
            return 1
        weights = sum(t.size for t in info.inputs if t is not None and t.is_const) * BYTES[_int8_or_fp16(precision)]
        return batch if weights > self.c["dla_conv_buffer_kib"] * 1024.0 else 1

    def sparse_weight_fraction(self, precision: str) -> float:
        """Stored size of 2:4 sparse weights relative to dense: the kept half plus its indices."""
        bits = 8 * BYTES[_int8_or_fp16(precision)]
        return 0.5 * (1.0 + self.c["dla_sparse_index_bits"] / bits)

    def _dla(self, info: LayerInfo, macs: float, moved: float, precision: str, batch: int,
             sparse: bool = False) -> LayerTime:
        dla, c = self.profile.dla, self.c
        if dla is None:
            return LayerTime(macs, moved, float("inf"), 0.0, 0.0)
        precision = _int8_or_fp16(precision)  # DLA computes FP32 requests in FP16
        if macs:
            align = c[f"dla_channel_align_{precision}"]
            if _is_depthwise(info):
                utilization = c["dla_depthwise_utilization"] or 1.0 / align
            elif _is_image_input(info, c["dla_image_input_channels"]):
                utilization = _image_input_utilization(info, align, c["dla_image_input_channels"])
            else:
                utilization = _channel_utilization(info, align)
            rate = dla.rate_tops(precision) * (c["dla_sparse_mac_speedup"] if sparse else 1.0)
            compute = macs / (rate * 1e12 / 2 * c["dla_mac_efficiency"] * utilization)
        else:
            elements = sum(t.size for t in info.inputs if t is not None and not t.is_const) * batch
            compute = elements / (c["dla_elements_per_clock"] * dla.max_clock_mhz * 1e6)
        memory = moved / (self.dla_bandwidth_gbs() * 1e9 * c["dla_memory_efficiency"])
        return LayerTime(macs, moved, compute * 1e3, memory * 1e3, c["dla_layer_overhead_us"] / 1e3)

    def dla_bandwidth_gbs(self) -> float:
        """What one DLA core could move at most: the DRAM bandwidth, capped by its memory port."""
        dram, port = self.profile.memory_bandwidth_gbs, self.c["dla_port_bytes_per_clock"]
        dla = self.profile.dla
        return min(dram, port * dla.max_clock_mhz / 1e3) if port and dla is not None else dram

    def onchip_bytes(self, kind: str) -> float:
        """On-chip memory that keeps activations out of DRAM: the GPU's L2, one DLA core's SRAM share."""
        if kind == "gpu" and self.profile.gpu is not None:
            return self.profile.gpu.l2_kib * 1024.0
        if kind == "dla" and self.profile.dla is not None:
            dla = self.profile.dla
            return dla.sram_kib * 1024.0 / (dla.cores if dla.sram_shared else 1)
        return 0.0

    # -- boundaries --------------------------------------------------------------------------
    def reformat_ms(self, tensor: TensorInfo, from_precision: str, to_precision: str, batch: int = 1) -> float:
        """A GPU kernel converting layout and precision at a device change, plus the engines' synchronization."""
        moved = tensor.size * batch * (BYTES.get(from_precision, 4) + BYTES.get(to_precision, 4))
        memory = moved / (self.profile.memory_bandwidth_gbs * 1e9 * self.c["gpu_memory_efficiency"])
        return memory * 1e3 + self.gpu_layer_overhead_ms() + self.c["reformat_sync_us"] / 1e3

    def segment_overhead_ms(self) -> float:
        return self.c["dla_submit_us"] / 1e3

    def gpu_layer_overhead_ms(self) -> float:
        gpu = self.profile.gpu
        return self.c["gpu_layer_overhead_kcycles"] / gpu.max_clock_mhz if gpu is not None and gpu.max_clock_mhz else 0.0

    def gpu_submit_ms(self) -> float:
        return self.c["gpu_submit_us"] / 1e3


# -- work per layer ----------------------------------------------------------------------------
def layer_macs(info: LayerInfo) -> int:
    """Multiply-accumulates of one layer (0 for layers that only move or combine elements)."""
    kind = info.kind
    if kind == LayerKind.CONVOLUTION:
        w = info.input(1)
        return info.output.size * int(np.prod(w.shape[1:], dtype=np.int64)) if w is not None else 0
    if kind == LayerKind.DECONVOLUTION:
        x, w = info.input(0), info.input(1)
        return x.size * int(np.prod(w.shape[1:], dtype=np.int64)) if w is not None else 0
    if kind == LayerKind.MATRIX_MULTIPLY:
        a = info.input(0)
        reduction = a.shape[-2] if info.attrs.get("trans_a") and a.rank >= 2 else a.shape[-1]
        return info.output.size * int(reduction)
    return 0


def layer_bytes(info: LayerInfo, precision: str, batch: int = 1, onchip_bytes: float = 0.0, *,
                skip_input: bool = False, skip_output: bool = False, weight_reads: int = 1,
                weight_fraction: float = 1.0) -> float:
    """DRAM bytes read and written: activations at ``precision`` (x batch), constants (weights)
    ``weight_reads`` times (x ``weight_fraction``: compressed sparse weights).

    An activation that fits in half of ``onchip_bytes`` (the GPU's L2, the DLA's SRAM) is produced and
    consumed on chip and costs no DRAM traffic; so are a first input / an output streamed between fused
    engines (``skip_input`` / ``skip_output``).
    """
    size = BYTES.get(precision, 4)
    inputs = [t for t in info.inputs if t is not None and not t.is_const]
    activations = (inputs[1:] if skip_input else inputs) + ([] if skip_output else list(info.outputs))
    dram = sum(t.size * batch * size for t in activations if t.size * batch * size > onchip_bytes / 2)
    weights = sum(t.size for t in info.inputs if t is not None and t.is_const)
    return float(dram + weights * size * weight_reads * weight_fraction)


def _int8_or_fp16(precision: str) -> str:
    return "int8" if precision == "int8" else "fp16"


def _is_depthwise(info: LayerInfo) -> bool:
    if info.kind != LayerKind.CONVOLUTION:
        return False
    group = int(info.attrs.get("group", 1))
    return group > 1 and group == info.input(0).shape[1]


def is_sparse_convolution(info: LayerInfo) -> bool:
    """Whether 2:4 sparse weights speed the layer up on the DLA: dense (not depthwise) convolutions."""
    return info.kind == LayerKind.CONVOLUTION and not _is_depthwise(info)


def _is_inner_product(info: LayerInfo) -> bool:
    """A 1x1 convolution on a 1x1 map: NVDLA runs it as an inner product (multi-batch mode shares weights)."""
    return info.kind == LayerKind.CONVOLUTION and all(int(d) == 1 for d in info.output.shape[2:]) and \
        all(int(d) == 1 for d in info.input(1).shape[2:])


def _is_image_input(info: LayerInfo, pixel_channels: int) -> bool:
    return info.kind == LayerKind.CONVOLUTION and int(info.attrs.get("group", 1)) == 1 and \
        0 < info.input(1).shape[1] <= pixel_channels


def _image_input_utilization(info: LayerInfo, align: int, pixel_channels: int) -> float:
    """Image input mode: input channels x kernel width of real data in atoms sized for pixel_channels x width."""
    weights = info.input(1).shape
    kernel_w = int(weights[3]) if len(weights) > 3 else 1
    extended = pixel_channels * kernel_w
    return weights[1] * kernel_w / (-(-extended // align) * align) * _fill(info.output.shape[1], align)


def _channel_utilization(info: LayerInfo, align: int, small_input_align: int = 0) -> float:
    """Fraction of the MAC array's channel atoms a layer fills (input channels per group x output channels).

    ``small_input_align``: input channels up to this count are padded only to it (a first layer's RGB).
    """
    if info.kind == LayerKind.CONVOLUTION:
        c_in = info.input(1).shape[1]
        c_out = info.output.shape[1] // int(info.attrs.get("group", 1))
    elif info.kind == LayerKind.DECONVOLUTION:
        c_in, c_out = info.input(0).shape[1], info.output.shape[1]
    elif info.kind == LayerKind.MATRIX_MULTIPLY:
        a = info.input(0)
        c_in = a.shape[-2] if info.attrs.get("trans_a") and a.rank >= 2 else a.shape[-1]
        c_out = info.output.shape[-1]
    else:
        return 1.0
    in_align = small_input_align if 0 < c_in <= small_input_align else align
    return _fill(c_in, in_align) * _fill(c_out, align)


def _fill(channels: int, align: int) -> float:
    return channels / (-(-channels // align) * align)


def dla_streamed_outputs(nodes, model: TimingModel, graph_outputs=()) -> set[int]:
    """ids of the ``nodes`` (all on one DLA core) whose output goes straight into a pooling layer among them
    (NVDLA fused operation; ``dla_conv_pool_fusion``): a convolution whose only reader is that pooling layer,
    not a graph output."""
    if not model.c["dla_conv_pool_fusion"]:
        return set()
    members, outputs = {id(node) for node in nodes}, {id(value) for value in graph_outputs}
    streamed = set()
    for node in nodes:
        if node.kind != LayerKind.CONVOLUTION or len(node.outputs) != 1:
            continue
        uses = node.outputs[0].uses()
        if len(uses) == 1 and uses[0][0].kind == LayerKind.POOLING and uses[0][1] == 0 and \
                id(uses[0][0]) in members and id(node.outputs[0]) not in outputs:
            streamed.add(id(node))
    return streamed


def dla_layer_times(model: TimingModel, nodes, precision: str, batch: int, sparse: bool = False,
                    graph_outputs=()) -> list[LayerTime]:
    """Times of ``nodes`` (IR nodes, in order) on one DLA core, with convolution -> pooling kept on chip."""
    from edgert.targets.layers import from_node
    streamed = dla_streamed_outputs(nodes, model, graph_outputs)
    fed = {id(node.outputs[0].uses()[0][0]) for node in nodes if id(node) in streamed}
    return [model.layer(from_node(node), "dla:0", precision, batch, streamed_output=id(node) in streamed,
                        streamed_input=id(node) in fed, sparse=sparse) for node in nodes]


def nodes_ms(model: TimingModel, nodes, device: str, precision: str = "fp16", batch: int = 1) -> float:
    """Predicted time of running ``nodes`` (IR nodes) one after another on ``device`` at ``batch``."""
    from edgert.targets.layers import from_node
    return sum(model.layer(from_node(node), device, precision, batch).ms for node in nodes)
