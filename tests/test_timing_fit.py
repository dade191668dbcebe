"""The timing model's DLA features (conv -> pooling on chip, per-image weight reads, memory-port cap, 2:4
sparsity), the measurements table, the reproducibility of the stored fit, and the ablation report."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from edgert.errors import EdgeRTError
from edgert.ir.kinds import LayerKind
from edgert.targets import fit as fitting
from edgert.targets import load_profile
from edgert.targets.layers import LayerInfo, TensorInfo, from_node
from edgert.targets.timing import TimingModel, dla_layer_times, dla_streamed_outputs

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _benchmark_module(name: str):
    sys.path.insert(0, BENCHMARKS)
    try:
        return __import__(name)
    finally:
        sys.path.remove(BENCHMARKS)


def _conv(c_in: int, c_out: int, size: int, kernel: int = 3, group: int = 1) -> LayerInfo:
    w = np.ones((c_out, c_in // group, kernel, kernel), np.float32)
    return LayerInfo("conv", LayerKind.CONVOLUTION, {"group": group},
                     (TensorInfo((1, c_in, size, size), "float32"), TensorInfo(w.shape, "float32", w)),
                     (TensorInfo((1, c_out, size, size), "float32"),))


def _orin(**overrides) -> TimingModel:
    return TimingModel(load_profile("jetson-agx-orin"), overrides=overrides)


# -- DLA features ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backbone():
    """torchvision's ResNet-34 body at 256x256: a 7x7 stem convolution read only by a max pool."""
    return _benchmark_module("dla_networks").resnet34_backbone_graph(256, 256)


def test_dla_convolution_feeding_pooling_keeps_the_tensor_on_chip(backbone):
    model = _orin()
    stem, pool = backbone.nodes[0], backbone.nodes[1]
    assert stem.kind == LayerKind.CONVOLUTION and pool.kind == LayerKind.POOLING
    assert dla_streamed_outputs(backbone.nodes, model, backbone.outputs) == {id(stem)}
    fused = dla_layer_times(model, backbone.nodes, "int8", 2, graph_outputs=backbone.outputs)
    plain = [model.layer(from_node(n), "dla:0", "int8", 2) for n in backbone.nodes]
    handed_over = stem.outputs[0].size * 2  # int8, batch 2: written by the convolution, read by the pooling
    assert plain[0].bytes - fused[0].bytes == handed_over and plain[1].bytes - fused[1].bytes == handed_over
    assert [t.bytes for t in fused[2:]] == [t.bytes for t in plain[2:]]
    off = _orin(dla_conv_pool_fusion=0)
    assert [t.bytes for t in dla_layer_times(off, backbone.nodes, "int8", 2)] == \
        [t.bytes for t in (off.layer(from_node(n), "dla:0", "int8", 2) for n in backbone.nodes)]
    # a convolution output that is also a graph output is written to DRAM
    assert dla_streamed_outputs(backbone.nodes, model, [stem.outputs[0]]) == set()


def test_dla_convolution_weights_are_read_once_per_image_beyond_the_conv_buffer():
    model = _orin()
    big, small = _conv(512, 512, 7), _conv(64, 64, 56, kernel=1)   # 2.25 MiB / 4 KiB of int8 weights
    fc = _conv(2048, 1000, 1, kernel=1)                              # inner product: multi-batch mode
    assert model.weight_reads(big, "dla", "int8", 4) == 4
    assert model.weight_reads(small, "dla", "int8", 4) == 1
    assert model.weight_reads(fc, "dla", "int8", 4) == 1
    assert model.weight_reads(big, "gpu", "int8", 4) == 1
    one, four = model.layer(big, "dla:0", "int8", 1), model.layer(big, "dla:0", "int8", 4)
    assert four.bytes == pytest.approx(4 * one.bytes)   # activations and weights both x4
    once = _orin(dla_conv_buffer_kib=float("inf")).layer(big, "dla:0", "int8", 4)
    assert four.bytes - once.bytes == pytest.approx(3 * 512 * 512 * 9)


def test_dla_memory_port_caps_a_slow_dla_core():
    agx, nx = _orin(), TimingModel(load_profile("jetson-orin-nx"))
    assert agx.dla_bandwidth_gbs() == pytest.approx(64 * 1.6)          # 102.4 of 204.8 GB/s
    assert nx.dla_bandwidth_gbs() == pytest.approx(64 * 0.614)         # 39.3 of 102.4 GB/s
    assert _orin(dla_port_bytes_per_clock=0).dla_bandwidth_gbs() == 204.8
    layer = _conv(256, 256, 56, kernel=1)
    capped, uncapped = nx.layer(layer, "dla:0", "int8"), \
        TimingModel(load_profile("jetson-orin-nx"), {"dla_port_bytes_per_clock": 0}).layer(layer, "dla:0", "int8")
    assert capped.memory_ms == pytest.approx(uncapped.memory_ms * 102.4 / (64 * 0.614))


def test_sparse_dla_weights_double_the_mac_rate_and_shrink_the_weights():
    model = _orin()
    conv = _conv(256, 256, 56)
    dense, sparse = model.layer(conv, "dla:0", "int8"), model.layer(conv, "dla:0", "int8", sparse=True)
    assert sparse.compute_ms == pytest.approx(dense.compute_ms / 2)
    weights = 256 * 256 * 9
    assert dense.bytes - sparse.bytes == pytest.approx(weights * (1 - 0.5 * (1 + 2 / 8)))
    depthwise = _conv(256, 256, 56, group=256)
    assert model.layer(depthwise, "dla:0", "int8", sparse=True) == model.layer(depthwise, "dla:0", "int8")
    assert model.layer(conv, "gpu", "int8", sparse=True) == model.layer(conv, "gpu", "int8")


def test_throughput_report_with_sparse_dla_engines(backbone):
    from edgert.partitioner.throughput import throughput
    dense = throughput(backbone, "jetson-agx-orin", ["dla:0"], "int8", dla_batch=1)
    sparse = throughput(backbone, "jetson-agx-orin", ["dla:0"], "int8", dla_batch=1, sparse=True)
    assert 1.0 < sparse.total_ips / dense.total_ips < 2.0
    assert "2:4 sparse" in sparse.format() and sparse.to_dict()["dla_sparse"] is True


# -- the measurements table ----------------------------------------------------------------------------------
def test_measurement_rows_are_well_formed():
    rows = fitting.load_measurements()
    for m in rows:
        assert m.sparsity in fitting.SPARSITIES and m.metric in fitting.METRICS, m.id
        assert set(m.batch) == {e.split(":")[0] for e in m.engines}, m.id          # a batch per engine kind
        assert all(isinstance(b, int) and b >= 1 for b in m.batch.values()), m.id
        assert "github.com" in m.source or "nvidia.com" in m.source, m.id
        if m.sparsity != "dense":
            assert not m.fit and "gpu" not in m.engines, m.id                   # checks, never fitted
    ids = {m.id for m in rows}
    assert {"agx-orin-dla-sw-resnet34-backbone-sparse", "agx-orin-dla-sw-ssd-resnet34-sparse",
            "agx-orin-v3.0-multistream", "orin-nx-v3.0-multistream"} <= ids


def test_malformed_sparsity_is_refused(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[[row]]\nid = "s"\ndevice = "jetson-agx-orin"\nmodel = "resnet50"\nprecision = "int8"\n'
                    'engines = "gpu"\nbatch = { gpu = 1 }\nmetric = "latency_p90_ms"\nvalue = 1.0\n'
                    'kind = "measurement"\nfit = false\nsparsity = "2:4"\nsource = "https://x"\nmeasured = "x"\n')
    with pytest.raises(EdgeRTError, match="sparse rows are modelled on DLA engines only"):
        fitting.load_measurements(path)


# -- the fit -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graphs():
    return _benchmark_module("dla_timing").default_graphs()


def test_stored_fit_is_reproducible(graphs):
    """A fresh fit of the rows marked `fit` gives the constants stored in targets/fitted.toml."""
    from edgert.targets.timing import fitted_constants
    measurements = [m for m in fitting.load_measurements() if m.fit]
    workloads = fitting.build_workloads(measurements, graphs)
    result = fitting.fit(measurements, workloads)
    stored = fitted_constants()
    for param in result.params:
        scope = stored["shared"] if param.scope == "shared" else stored[param.scope.split(":")[0]][param.scope.split(":")[1]]
        assert result.values[param.key] == pytest.approx(scope[param.constant], rel=1e-4), param.key
    assert set(stored["shared"]) | set(stored["dla"]["v2"]) | set(stored["gpu"]["Ampere"]) == \
        {p.constant for p in result.params}


def test_restarts_never_leave_a_worse_fit(graphs):
    measurements = [m for m in fitting.load_measurements() if m.fit and m.model == "resnet50"]
    workloads = fitting.build_workloads(measurements, {"resnet50": graphs["resnet50"]})

    def objective(result):  # what the fit minimizes: squared log residuals plus the pull toward the estimates
        prior = sum((p.encode(result.values[p.key]) - p.encode(p.start)) ** 2 for p in result.params)
        return sum(np.log(r) ** 2 for r in result.residuals.values()) + fitting.PRIOR_WEIGHT * prior
    restarted = fitting.fit(measurements, workloads, iterations=300)
    saved, fitting.RESTARTS = fitting.RESTARTS, 0
    try:
        single = fitting.fit(measurements, workloads, iterations=300)
    finally:
        fitting.RESTARTS = saved
    assert objective(restarted) <= objective(single) + 1e-12


def test_ablation_switches_each_feature_off(graphs, capsys):
    dla_timing = _benchmark_module("dla_timing")
    results = dla_timing.ablation(iterations=40, graphs={"resnet50": graphs["resnet50"]})
    assert [label for label, _ in results] == [label for label, _, _ in dla_timing.ABLATIONS]
    held = {m.id for m in fitting.load_measurements() if m.fit and m.model == "resnet50"}
    assert all(set(factors) == held and min(factors.values()) >= 1.0 for _, factors in results)
    # switching the per-image weight reads off changes the DLA rows' predictions
    assert results[0][1]["agx-orin-dla-sw-2dla"] != pytest.approx(results[3][1]["agx-orin-dla-sw-2dla"], rel=1e-6)
    dla_timing.print_ablation(results)
    assert "misses" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no measurement nope"):
        dla_timing.evaluate(iterations=10, graphs={"resnet50": graphs["resnet50"]}, exclude=("nope",))


def test_fast_predictions_of_sparse_rows_equal_the_throughput_report(graphs):
    """The fit's precomputed workloads rescale the sparse convolutions' MAC time by the sparse speedup
    exactly as the full timing model does."""
    from edgert.partitioner.throughput import throughput
    rows = [m for m in fitting.load_measurements() if m.sparsity != "dense"]
    workloads = fitting.build_workloads(rows, graphs)
    assert len(rows) == 2 and len(workloads) == 2
    for m, speedup in zip(rows, (1.4, 2.0)):
        profile = workloads[m.workload_key].profile
        constants = {"dla_mac_efficiency": 0.7, "dla_memory_efficiency": 0.4, "dla_sparse_mac_speedup": speedup}
        timing = TimingModel(profile, overrides=dict(fitting.base_constants(profile), **constants))
        full = throughput(graphs[m.model], profile, list(m.engines), m.precision, 1, m.batch["dla"], timing,
                          sparse=True).total_ips
        assert fitting.predict(m, workloads[m.workload_key], constants) == pytest.approx(full, rel=1e-9), m.id
