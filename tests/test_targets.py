"""Target profiles (data files with sources, host detection), `edgert targets`, and the timing model."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgert.errors import EdgeRTError
from edgert.ir.kinds import LayerKind
from edgert.targets import list_profiles, load_profile, profiles
from edgert.targets.layers import LayerInfo, TensorInfo
from edgert.targets.timing import TimingModel

JETSONS = ["jetson-agx-orin", "jetson-orin-nx", "jetson-orin-nano", "jetson-agx-xavier", "jetson-xavier-nx",
           "drive-agx-orin", "jetson-agx-thor"]
BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def test_every_profile_is_listed_and_cites_sources():
    assert set(JETSONS) | {"host"} == set(list_profiles())
    for name in JETSONS:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.sources and all("http" in s for s in profile.sources), name
        assert profile.gpu.arch.startswith("sm_") and profile.gpu.sm_count > 0
        assert profile.gpu.int8_dense_tops > profile.gpu.fp16_dense_tflops > 0
        assert profile.memory_gb > 0 and profile.memory_bandwidth_gbs > 0 and profile.cpu_cores > 0
        json.dumps(profile.to_dict())


@pytest.mark.parametrize("name, version, cores, sram_kib", [
    ("jetson-agx-orin", 2, 2, 1024), ("jetson-orin-nx", 2, 2, 1024), ("drive-agx-orin", 2, 2, 1024),
    ("jetson-agx-xavier", 1, 2, 4096), ("jetson-xavier-nx", 1, 2, 4096),
    ("jetson-orin-nano", None, 0, None), ("jetson-agx-thor", None, 0, None)])
def test_dla_versions_and_cores(name, version, cores, sram_kib):
    profile = load_profile(name)
    assert profile.dla_version == version and profile.dla_cores == cores
    if version is not None:
        assert profile.dla.sram_kib == sram_kib
        assert profile.dla.int8_dense_tops_per_core > profile.dla.fp16_dense_tflops_per_core > 0


def test_published_peak_rates_add_up():
    orin = load_profile("jetson-agx-orin")
    # 275 sparse TOPS = 2 x (GPU dense + 2 DLA cores dense)
    assert 2 * (orin.gpu.int8_dense_tops + 2 * orin.dla.int8_dense_tops_per_core) == pytest.approx(275, rel=0.01)
    xavier = load_profile("jetson-agx-xavier")
    assert 2 * xavier.dla.int8_dense_tops_per_core == pytest.approx(11.4, rel=0.01)


def test_cuda_toolkits_per_arch():
    xavier, orin, thor = (load_profile(n).gpu for n in ("jetson-agx-xavier", "jetson-agx-orin", "jetson-agx-thor"))
    assert xavier.arch == "sm_72" and not xavier.can_compile_with("13.0") and xavier.can_compile_with("12.6")
    assert orin.arch == "sm_87" and orin.can_compile_with("13.0") and not orin.can_compile_with("11.0")
    assert thor.arch == "sm_110" and thor.cuda_toolkits == ["13.0"] and not thor.can_compile_with("12.8")
    assert "13.0" not in xavier.cuda_toolkits and "13.0" in orin.cuda_toolkits


def test_unknown_profile_names_the_choices():
    with pytest.raises(EdgeRTError, match="unknown target 'jetson-tx9'.*jetson-agx-orin"):
        load_profile("jetson-tx9")


def test_host_is_detected():
    host = load_profile("host")
    assert host.name == "host" and host.dla is None
    assert host.cpu_cores == (os.cpu_count() or 1) and host.memory_gb > 0
    if host.gpu is not None:
        assert host.gpu.arch.startswith("sm_")


def test_host_gpu_from_nvidia_smi(monkeypatch):
    class Done:
        stdout = "NVIDIA H100 80GB HBM3, 9.0, 1980\n"

    monkeypatch.setattr(profiles, "_gpu_from_cupy", lambda: None)
    monkeypatch.setattr(profiles.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(profiles.subprocess, "run", lambda *a, **k: Done())
    host = profiles.detect_host()
    assert host.gpu.arch == "sm_90" and host.gpu.sm_count == 132
    assert host.gpu.int8_dense_tops == pytest.approx(2 * 4096 * 132 * 1.98e9 / 1e12, rel=0.01)
    assert host.gpu.can_compile_with("12.0") and not host.gpu.can_compile_with("11.4")


def test_host_without_gpu(monkeypatch):
    monkeypatch.setattr(profiles, "_gpu_from_cupy", lambda: None)
    monkeypatch.setattr(profiles.shutil, "which", lambda name: None)
    assert profiles.detect_host().gpu is None


def _targets_tool(argv, capsys):
    from edgert.tools import targets
    parser = argparse.ArgumentParser()
    targets.add_arguments(parser)
    assert targets.main(parser.parse_args(argv)) == 0
    return capsys.readouterr().out


def test_targets_tool_lists_profiles(capsys):
    out = _targets_tool([], capsys)
    for name in JETSONS + ["host"]:
        assert name in out
    assert "sm_87" in out and "v2 x2" in out and "v1 x2" in out
    data = json.loads(_targets_tool(["--json"], capsys))
    assert {p["name"] for p in data} == set(JETSONS) | {"host"}
    detail = _targets_tool(["jetson-agx-xavier"], capsys)
    assert "source:" in detail and "estimated:" in detail and "13.0" not in detail.split("compile sm_72:")[1][:80]


# -- timing model ------------------------------------------------------------------------------------
def _conv(channels: int, size: int, kernel: int = 3, group: int = 1) -> LayerInfo:
    w = np.zeros((channels, channels // group, kernel, kernel), np.float32)
    x = TensorInfo((1, channels, size, size), "float32")
    return LayerInfo("conv", LayerKind.CONVOLUTION, {"kernel": [kernel] * 2, "group": group},
                     (x, TensorInfo(w.shape, "float32", w)), (TensorInfo((1, channels, size, size), "float32"),))


def test_timing_model_compute_and_memory_bounds():
    model = TimingModel(load_profile("jetson-agx-orin"))
    big = model.layer(_conv(256, 56), "gpu", "int8")
    assert big.bound == "compute" and big.macs == 56 * 56 * 256 * 256 * 9
    relu = LayerInfo("relu", LayerKind.ACTIVATION, {"type": "relu"}, (TensorInfo((8, 256, 56, 56), "float32"),),
                     (TensorInfo((8, 256, 56, 56), "float32"),))
    assert model.layer(relu, "gpu", "fp16").bound == "memory"
    assert model.layer(_conv(256, 56), "gpu", "int8").ms < model.layer(_conv(256, 56), "gpu", "fp16").ms
    # one DLA core is slower than the whole GPU, and small channel counts waste the MAC array
    assert model.layer(_conv(256, 56), "dla:0", "int8").ms > big.ms
    per_mac = lambda t: t.compute_ms / t.macs  # noqa: E731
    assert per_mac(model.layer(_conv(8, 112), "dla:0", "int8")) > per_mac(model.layer(_conv(256, 56), "dla:0", "int8"))
    assert model.reformat_ms(TensorInfo((1, 64, 56, 56), "float32"), "fp16", "fp16") > model.segment_overhead_ms() / 10


def test_depthwise_is_native_on_dla_v2_only():
    depthwise = _conv(128, 56, group=128)
    orin, xavier = TimingModel(load_profile("jetson-agx-orin")), TimingModel(load_profile("jetson-agx-xavier"))
    def slowdown(model):  # depthwise vs dense compute time per multiply-accumulate
        dw, dense = model.layer(depthwise, "dla:0", "fp16"), model.layer(_conv(128, 56), "dla:0", "fp16")
        return (dw.compute_ms / dw.macs) / (dense.compute_ms / dense.macs)

    assert slowdown(xavier) > slowdown(orin) > 1


def test_profile_overrides_timing_constants():
    base = load_profile("jetson-agx-orin")
    faster = profiles.TargetProfile(**{**base.__dict__, "timing": {"dla_submit_us": 10.0}})
    assert TimingModel(faster).segment_overhead_ms() == pytest.approx(0.01)


def test_resnet50_gpu_dla_ratio_matches_mlperf():
    """NVIDIA MLPerf Inference v3.0: ResNet-50 INT8, AGX Orin GPU ~4500 vs ~600 images/s per DLA core,
    Orin NX 1700 vs 230; the timing model's ratio must be within 1.5x of each."""
    sys.path.insert(0, BENCHMARKS)
    try:
        import dla_timing
    finally:
        sys.path.remove(BENCHMARKS)
    for row in dla_timing.compare("int8", batch=8):
        assert row["within"], row
        assert row["dla_layers"] >= row["layers"] - 2  # everything but the classifier tail on the DLA


def test_benchmark_script_runs():
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "dla_timing.py")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "jetson-agx-orin" in done.stdout and "jetson-orin-nx" in done.stdout
