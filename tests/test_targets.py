"""Target profiles (data files with sources, host detection), `edgert targets`, and the timing model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import pytest

from edgert.errors import EdgeRTError
from edgert.ir.kinds import LayerKind
from edgert.targets import fit as fitting
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


def test_timing_constants_say_where_they_come_from():
    orin, thor, xavier = (TimingModel(load_profile(n)) for n in ("jetson-agx-orin", "jetson-agx-thor", "jetson-agx-xavier"))
    assert orin.basis("gpu_mac_efficiency") == "fitted" and orin.basis("dla_mac_efficiency") == "fitted"
    assert thor.basis("gpu_mac_efficiency") == "estimated"      # no Blackwell measurement was fitted
    assert xavier.basis("dla_mac_efficiency") == "estimated"    # no DLA v1 measurement was fitted
    assert orin.basis("gpu_channel_align_int8") == "estimated"
    assert TimingModel(load_profile("jetson-agx-orin"), {"dla_submit_us": 1.0}).basis("dla_submit_us") == "override"
    slow = profiles.TargetProfile(**{**load_profile("jetson-agx-orin").__dict__, "gpu": profiles.GPUSpec(
        **{**load_profile("jetson-agx-orin").gpu.__dict__, "max_clock_mhz": 650.0})})
    assert TimingModel(slow).gpu_layer_overhead_ms() == pytest.approx(2 * orin.gpu_layer_overhead_ms())


# -- the fit to published measurements ---------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet50():
    sys.path.insert(0, BENCHMARKS)
    try:
        import dla_timing
    finally:
        sys.path.remove(BENCHMARKS)
    return dla_timing.light_resnet50_graph()


def test_measurements_file_separates_measurements_from_targets():
    rows = fitting.load_measurements()
    assert len({m.id for m in rows}) == len(rows)
    for m in rows:
        assert m.source.startswith("https://") and m.measured and m.value > 0, m.id
        assert m.kind in ("measurement", "target") and (not m.fit or m.kind == "measurement"), m.id
        assert m.fit or m.note, f"{m.id}: a row left out of the fit says why"
    targets = {(m.device, m.engines, m.value) for m in rows if m.kind == "target"}
    # the numbers edgert once called published MLPerf results are the harness's expected QPS
    assert ("jetson-agx-orin", ("gpu",), 4500.0) in targets and ("jetson-agx-orin", ("dla:0",), 600.0) in targets
    assert ("jetson-orin-nx", ("gpu",), 1700.0) in targets and ("jetson-orin-nx", ("dla:0",), 230.0) in targets
    offline = [m for m in rows if m.id == "agx-orin-v3.0-offline"][0]
    assert offline.kind == "measurement" and offline.value == 6438.1 and offline.engines == ("gpu", "dla:0", "dla:1")


def test_malformed_measurements_are_refused(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[[row]]\nid = "x"\ndevice = "jetson-agx-orin"\n')
    with pytest.raises(EdgeRTError, match="row 'x' is malformed"):
        fitting.load_measurements(path)
    good = ('[[row]]\nid = "t"\ndevice = "jetson-agx-orin"\nmodel = "resnet50"\nprecision = "int8"\nengines = "gpu"\n'
            'batch = { gpu = 1 }\nmetric = "latency_p90_ms"\nvalue = 1.0\nkind = "target"\nfit = true\n'
            'source = "https://x"\nmeasured = "nothing"\n')
    path.write_text(good)
    with pytest.raises(EdgeRTError, match="only measurements may be fitted"):
        fitting.load_measurements(path)


def _random_constants(rng) -> dict:
    return {"gpu_mac_efficiency": rng.uniform(0.3, 0.9), "dla_mac_efficiency": rng.uniform(0.3, 0.9),
            "gpu_layer_overhead_kcycles": rng.uniform(1, 10), "gpu_submit_us": rng.uniform(5, 60),
            "gpu_memory_efficiency": rng.uniform(0.5, 0.9), "dla_submit_us": rng.uniform(20, 80),
            "shared_memory_efficiency": rng.uniform(0.4, 0.9), "dla_memory_efficiency": rng.uniform(0.15, 0.6),
            "dla_layer_overhead_us": rng.uniform(1, 10)}


def test_fast_predictions_equal_the_throughput_report(resnet50):
    from edgert.partitioner.throughput import engine_loads, throughput
    rows = [m for m in fitting.load_measurements() if m.model == "resnet50"]
    workloads = fitting.build_workloads(rows, {"resnet50": resnet50})
    rng = np.random.default_rng()
    for m in rows:
        constants = _random_constants(rng)
        profile = workloads[m.workload_key].profile
        fast = fitting.predict(m, workloads[m.workload_key], constants)
        timing = TimingModel(profile, overrides=dict(fitting.base_constants(profile), **constants))
        if m.metric.startswith("latency"):
            full = engine_loads(resnet50, profile, ["gpu"], m.precision, gpu_batch=m.batch["gpu"],
                                timing=timing)[0].batch_ms
        else:
            full = throughput(resnet50, profile, list(m.engines), m.precision, m.batch.get("gpu", 1),
                              m.batch.get("dla", 1), timing).total_ips
        assert fast == pytest.approx(full, rel=1e-9), m.id


def test_fit_recovers_the_predictions_of_known_constants(resnet50):
    rows = [m for m in fitting.load_measurements() if m.fit and m.model == "resnet50"]
    workloads = fitting.build_workloads(rows, {"resnet50": resnet50})
    truth = {"gpu_mac_efficiency": 0.55, "dla_mac_efficiency": 0.5, "gpu_layer_overhead_kcycles": 6.0,
             "gpu_submit_us": 30.0, "gpu_memory_efficiency": 0.75, "dla_submit_us": 40.0,
             "shared_memory_efficiency": 0.85}
    synthetic = [dataclasses.replace(m, value=fitting.predict(m, workloads[m.workload_key], truth)) for m in rows]
    result = fitting.fit(synthetic, workloads, iterations=3000)
    assert max(abs(np.log(r)) for r in result.residuals.values()) < 0.03, result.residuals


def test_leave_one_out_never_sees_the_held_out_measurement(resnet50):
    rows = [m for m in fitting.load_measurements()
            if m.fit and m.model == "resnet50" and m.device in ("jetson-agx-orin", "jetson-orin-nx")]
    workloads = fitting.build_workloads(rows, {"resnet50": resnet50})
    first = fitting.leave_one_out(rows, workloads, iterations=600)
    moved = [dataclasses.replace(m, value=m.value * 10) if m.id == "orin-nx-v3.0-singlestream" else m for m in rows]
    second = fitting.leave_one_out(moved, workloads, iterations=600)
    for (a, pa), (b, pb) in zip(first, second):
        if a.id == "orin-nx-v3.0-singlestream":
            assert pa == pytest.approx(pb)           # its own prediction ignores its value
        else:
            assert pa != pytest.approx(pb, rel=1e-6)  # every other fit used it


def test_stored_fit_meets_the_published_anchors(resnet50):
    """The constants in targets/fitted.toml: MLPerf v3.0 ResNet-50 offline (GPU + 2 DLA) on AGX Orin and
    single-stream latency on AGX Orin and Orin NX within 1.25x; held-out errors are in docs/benchmarks.md."""
    from edgert.partitioner.throughput import engine_loads, throughput
    orin = throughput(resnet50, "jetson-agx-orin", ["gpu", "dla:0", "dla:1"], "int8", 256, 2)
    assert fitting.factor(orin.total_ips, 6438.1) <= 1.25, orin.format()
    for target, published in (("jetson-agx-orin", 0.633478), ("jetson-orin-nx", 1.087793)):
        latency = engine_loads(resnet50, load_profile(target), ["gpu"], "int8", gpu_batch=1)[0].batch_ms
        assert fitting.factor(latency, published) <= 1.25, (target, latency)


def test_benchmark_report_and_written_fit_round_trip(resnet50, tmp_path, monkeypatch, capsys):
    from edgert.targets import timing
    sys.path.insert(0, BENCHMARKS)
    try:
        import dla_timing
    finally:
        sys.path.remove(BENCHMARKS)
    evaluation = dla_timing.evaluate(iterations=300, graphs={"resnet50": resnet50})
    dla_timing.print_report(evaluation)
    out = capsys.readouterr().out
    assert "agx-orin-v3.0-offline" in out and "held-out" in out and "total:" in out and "6438.1" in out
    assert {m.id for m, _ in evaluation["held_out"]} == set(evaluation["fit"].residuals)
    path = tmp_path / "fitted.toml"
    dla_timing.write_fitted(evaluation["fit"], evaluation["held_out"], str(path))
    monkeypatch.setattr(timing, "FITTED_PATH", path)
    timing.fitted_constants.cache_clear()
    try:
        orin = TimingModel(load_profile("jetson-agx-orin"))
        for key, value in evaluation["fit"].constants_for(load_profile("jetson-agx-orin")).items():
            assert orin.c[key] == pytest.approx(value, rel=1e-5) and orin.basis(key) == "fitted", key
    finally:
        timing.fitted_constants.cache_clear()


def _stem(c_in: int, kernel: int = 7) -> LayerInfo:
    w = np.zeros((64, c_in, kernel, kernel), np.float32)
    return LayerInfo("stem", LayerKind.CONVOLUTION, {"group": 1}, (TensorInfo((1, c_in, 224, 224), "float32"),
                     TensorInfo(w.shape, "float32", w)), (TensorInfo((1, 64, 112, 112), "float32"),))


def test_dla_first_convolution_runs_in_image_input_mode():
    """3 RGB channels x kernel width 7 fill 21 of 64 int8 atom lanes (pre-extended to 4 x 7 = 28), not 3 of 64;
    a 5-channel input is not a pixel format and pads to 64 channels as before."""
    model = TimingModel(load_profile("jetson-agx-orin"), overrides={"dla_mac_efficiency": 1.0})
    rate = load_profile("jetson-agx-orin").dla.rate_tops("int8") * 1e12 / 2
    rgb = model.layer(_stem(3), "dla:0", "int8")
    assert rgb.compute_ms == pytest.approx(rgb.macs / (rate * 21 / 64) * 1e3)
    five = model.layer(_stem(5), "dla:0", "int8")
    assert five.compute_ms == pytest.approx(five.macs / (rate * 5 / 64) * 1e3)
    no_mode = TimingModel(load_profile("jetson-agx-orin"), overrides={"dla_mac_efficiency": 1.0,
                                                                       "dla_image_input_channels": 0})
    assert no_mode.layer(_stem(3), "dla:0", "int8").compute_ms == pytest.approx(rgb.macs / (rate * 3 / 64) * 1e3)


def test_published_dla_networks_have_the_published_shapes():
    """SSD-ResNet-34 at 1200x1200: the 12 head outputs of MLPerf's resnet34-ssd1200.onnx (50x50 ... 3x3;
    4 or 6 boxes x 4 coordinates / 81 classes), about 433 GFLOP; ResNet-34's body: 1/32 of the input."""
    from edgert.targets.layers import from_node
    from edgert.targets.timing import layer_macs
    sys.path.insert(0, BENCHMARKS)
    try:
        import dla_networks
    finally:
        sys.path.remove(BENCHMARKS)
    ssd = dla_networks.ssd_resnet34_graph(1200)
    heads = sorted(tuple(v.shape) for v in ssd.outputs)
    expected = [(1, c, s, s) for s, boxes in ((50, 4), (25, 6), (13, 6), (7, 6), (3, 4), (3, 4))
                for c in (boxes * 4, boxes * 81)]
    assert heads == sorted(expected)
    assert 2 * sum(layer_macs(from_node(n)) for n in ssd.nodes) / 1e9 == pytest.approx(433, rel=0.01)
    ssd_mobilenet = dla_networks.optimized_graph(dla_networks.ssd_mobilenet_v1_model(300))
    expected = [(1, c, s, s) for s, anchors in ((19, 3), (10, 6), (5, 6), (3, 6), (2, 6), (1, 6))
                for c in (anchors * 4, anchors * 91)]
    assert sorted(tuple(v.shape) for v in ssd_mobilenet.outputs) == sorted(expected)
    body = dla_networks.resnet34_backbone_graph(768, 1280)
    assert [tuple(v.shape) for v in body.outputs] == [(1, 512, 24, 40)]
    assert all(n.kind in (LayerKind.CONVOLUTION, LayerKind.POOLING) for n in body.nodes)
