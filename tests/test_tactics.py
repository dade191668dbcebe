"""Tactics of the CUDA backend (no GPU needed): candidate enumeration, the cost model against the tile
rule, layer keys, the timing cache file, the autotuning harness on the CPU emulator, `edgert build
--timing-cache` choosing the cached fastest tactic, and `edgert tune` refusing to run without a GPU.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from edgert.kernels.cuda import autotune, emulator
from edgert.kernels.cuda import compile as cc
from edgert.kernels.cuda.library import LowerContext, lower_layer
from edgert.kernels.cuda.plan_kernels import compile_context, compile_for_plan, plan_fusions
from edgert.kernels.cuda.tactics import (CostModel, FixedPolicy, GemmProblem, GpuRates, candidates, rule_tiles,
                                         smem_bytes, tile_ok)
from edgert.kernels.cuda.timing_cache import VERSION, TimingCache, TimingCacheError
from edgert.plan import load_plan_bytes, read_plan
from edgert.runtime.cuda import CudaEngine
from edgert.tools.cli import main

needs_compiler = pytest.mark.skipif(not cc.available(), reason="no NVRTC (cuda-bindings) and no nvcc")
needs_cxx = pytest.mark.skipif(not emulator.available(), reason="no host C++ compiler for the emulator")
TAP = (("tapmajor", "implicit-gemm-tap"), ("im2col", "implicit-gemm"))
ONE_BY_ONE = (("pointwise", "conv1x1"), ("im2col", "implicit-gemm"))
H100 = GpuRates.for_arch(90, 132)
ORIN = GpuRates.for_arch(87, 16)


@pytest.fixture(autouse=True)
def kernel_cache(tmp_path_factory, monkeypatch):
    """One compile cache for the module: tests that lower the same kernels compile them once."""
    monkeypatch.setenv("EDGERT_CUDA_CACHE", str(tmp_path_factory.getbasetemp() / "tactics-kernels"))


def problem(M, N, K, dtype="float16", algorithms=TAP, Z=1, split=True, arch=90, op="conv", tap_channels=64):
    engine, bk = ("mma", 32) if dtype == "float16" else ("fma", 16)
    return GemmProblem(arch, op, dtype, engine, bk, M, N, K, Z, split, algorithms, tap_channels=tap_channels)


def two_gemm_model(dtype="float32"):
    """A 3x3 convolution (+ bias + Relu) and, on a second input, a matrix product: two GEMM layers."""
    rng = np.random.default_rng()
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.FLOAT16

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(dtype), name)

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y1"], name="relu"),
             helper.make_node("MatMul", ["m", "v"], ["y2"], name="matmul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [1, 32, 6, 6]),
                                           helper.make_tensor_value_info("m", elem, [40, 64])],
                              [helper.make_tensor_value_info("y1", elem, None), helper.make_tensor_value_info(
                                  "y2", elem, None)],
                              [weight("w", (48, 32, 3, 3)), weight("b", (48,)), weight("v", (64, 72))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def build(dtype="float32", **options):
    fp16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]} if dtype == "float16" else {}
    return edgert.build(two_gemm_model(dtype), cpu_only_aliases=False, **fp16, **options)


class ByLayer:
    """Test policy: a named tactic per layer name."""

    def __init__(self, names: dict):
        self.names = names

    def choose(self, layer, gemm):
        return FixedPolicy(self.names[layer["name"]]).choose(layer, gemm)


# -- candidates and the cost model ------------------------------------------------------------------
@pytest.mark.parametrize("gemm", [
    problem(96, 144, 576), problem(256, 3136, 64, "float32", ONE_BY_ONE),
    problem(512, 512, 512, "float64", (("strided_vec", "gemm"),), split=False, op="matmul"),
    problem(40, 72, 64, Z=6, split=False, op="matmul", algorithms=(("strided", "gemm"),))])
def test_candidates_are_valid_distinct_and_include_the_cost_model_pick(gemm):
    found = candidates(gemm)
    names = [t.name for t in found]
    assert len(names) == len(set(names)) > 1
    fit = {d: 32 if d <= 32 else 64 if d <= 64 else 128 for d in (gemm.M, gemm.N)}
    for tactic in found:
        k_tiles = gemm.k_tiles_of(tactic.bk)
        assert tactic.bk in gemm.k_tile_options and tile_ok(gemm, tactic.bm, tactic.bn, tactic.loader, tactic.bk)
        assert smem_bytes(gemm, tactic.bm, tactic.bn, tactic.bk) <= 48 * 1024
        assert tactic.bm <= fit[gemm.M] and tactic.bn <= fit[gemm.N]
        assert 1 <= tactic.splits <= k_tiles and (tactic.splits == 1 or gemm.allow_split)
        per_split = math.ceil(k_tiles / tactic.splits)
        assert math.ceil(k_tiles / per_split) == tactic.splits   # the count the kernel really runs
        assert tactic.name.startswith(dict(gemm.algorithms)[tactic.loader] + f" {gemm.engine} ")
        assert (f" bk{tactic.bk} " in tactic.name) == (tactic.bk != gemm.bk)
    assert {t.loader for t in found} == {loader for loader, _ in gemm.algorithms}
    assert CostModel(H100).best(gemm).name in names
    if gemm.dtype == "float32":   # the FMA kernel's 1x1 vector loader needs 64 columns
        assert not any(t.loader == "pointwise" and t.bn < 64 for t in found)
    if gemm.dtype == "float64":   # 128-wide fp64 tiles would need more than 48 KiB of shared memory
        assert max(t.bm * t.bn for t in found) == 64 * 64


@pytest.mark.parametrize("gpu, gemm, expected", [
    (H100, problem(64, 3136, 576), "implicit-gemm-tap mma 64x64 w16 bk64 splitk3"),           # resnet50 3x3, batch 1
    (H100, problem(256, 3136, 64, algorithms=ONE_BY_ONE), "conv1x1 mma 64x64 w16 bk64 splitk1"),
    (H100, problem(512, 196, 4608), "implicit-gemm-tap mma 64x64 w16 bk64 splitk8"),
    (H100, problem(64, 8 * 12544, 147, algorithms=TAP[1:]), "implicit-gemm mma 64x128 splitk1"),  # stem, batch 8
    (H100, problem(1000, 1, 2048, "float32", (("strided_vec", "gemm-swapped"),), op="matmul"),
     "gemm-swapped fma 64x32 splitk16"),
    (ORIN, problem(64, 3136, 576, "float32", arch=87), "implicit-gemm-tap fma 64x128 splitk1"),
    (ORIN, problem(2048, 49, 512, "float32", arch=87), "implicit-gemm-tap fma 128x64 splitk2"),
    (ORIN, problem(128, 784, 1152, "float32", arch=87), "implicit-gemm-tap fma 64x64 splitk1"),
    (H100, problem(256, 32, 64, "float32", ONE_BY_ONE), "implicit-gemm fma 64x32 splitk1"),  # 1x1 loader needs BN 64
    (H100, problem(512, 512, 512, "float64", split=False), "implicit-gemm-tap fma 64x64 splitk1"),
])
def test_cost_model_keeps_the_tile_rule_on_typical_layers(gpu, gemm, expected):
    """The rule's tile and split; tensor-core tiles take 32x16 warp tiles and the double-depth K tile where
    the templates allow (the stem's 64x128 tile allows neither)."""
    assert CostModel(gpu).best(gemm).name == expected


def test_estimates_rank_the_obvious_cases():
    model = CostModel(H100)
    big = problem(1024, 12544, 576)
    ranked = dict((t.name, us) for t, us in model.ranked(big))
    assert all(us > 0 for us in ranked.values())
    # A problem that fills the GPU: big tiles beat tiny ones, and splitting K only adds work.
    assert ranked["implicit-gemm-tap mma 128x128 splitk1"] < ranked["implicit-gemm-tap mma 32x32 splitk1"]
    assert ranked["implicit-gemm-tap mma 128x128 splitk1"] < ranked["implicit-gemm-tap mma 128x128 splitk4"]
    # One tile's worth of work: splitting K over more SMs is faster.
    small = dict((t.name, us) for t, us in model.ranked(problem(64, 64, 4608)))
    assert small["implicit-gemm-tap mma 64x64 splitk8"] < small["implicit-gemm-tap mma 64x64 splitk1"]
    assert rule_tiles(problem(64, 64, 4608), 132) == (64, 64, 16)


def test_layer_keys_name_what_fixes_the_kernel():
    plan = build()
    layers = autotune.gemm_layers(plan.document, "sm_90")
    keys = sorted(layers)
    assert len(keys) == 2
    conv_key = next(k for k in keys if "|conv|" in k)
    assert conv_key.startswith("sm_90|conv|float32|M48 N36 K288 Z1|split|implicit-gemm-tap,implicit-gemm|conv ")
    assert "|Epi_" in conv_key
    assert autotune.gemm_layers(plan.document, "sm_90") == layers          # stable
    assert sorted(autotune.gemm_layers(plan.document, "sm_87")) != keys    # per arch
    half = sorted(autotune.gemm_layers(build("float16").document, "sm_90"))
    assert all("|float16|" in k for k in half) and not set(half) & set(keys)


# -- timing cache ---------------------------------------------------------------------------------------
DEVICE = {"name": "NVIDIA H100 80GB HBM3", "arch": "sm_90", "sm_count": 132, "driver": "13.0"}


def test_timing_cache_round_trip_and_merge(tmp_path):
    cache = TimingCache(DEVICE)
    cache.record("k1", {"a": 10.0, "b": 7.25})
    path = tmp_path / "t.json"
    cache.save(path)
    loaded = TimingCache.load(path, arch="sm_90")
    assert loaded.entries == {"k1": {"a": 10.0, "b": 7.25}} and loaded.device == DEVICE
    data = json.loads(path.read_text())
    assert data["format"] == "edgert-timing-cache" and data["version"] == VERSION and data["edgert_version"]
    other = TimingCache(DEVICE)
    other.record("k1", {"b": 9.0, "c": 3.0})
    other.record("k2", {"a": 1.0})
    loaded.merge(other)
    assert loaded.entries == {"k1": {"a": 10.0, "b": 9.0, "c": 3.0}, "k2": {"a": 1.0}}   # newer timings win
    with pytest.raises(TimingCacheError, match="one timing cache per GPU"):
        loaded.merge(TimingCache(dict(DEVICE, name="NVIDIA H200")))


@pytest.mark.parametrize("edit, expected", [
    (lambda d: "not json {", "not a timing cache"),
    (lambda d: dict(d, format="something-else"), "not an edgert timing cache"),
    (lambda d: dict(d, version=VERSION + 1), "newer than this edgert"),
    (lambda d: dict(d, edgert_version="0.0.1"), "recorded by edgert 0.0.1"),
    (lambda d: dict(d, entries={"k": {"a": -1}}), "positive microseconds"),
    (lambda d: dict(d, device={"name": "x"}), "no device arch"),
])
def test_bad_timing_caches_are_refused_with_the_reason(tmp_path, edit, expected):
    path = tmp_path / "t.json"
    TimingCache(DEVICE, {"k": {"a": 1.0}}).save(path)
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(TimingCacheError, match=expected):
        TimingCache.load(path)


def test_timing_cache_of_another_arch_or_missing_is_refused(tmp_path):
    path = tmp_path / "t.json"
    TimingCache(DEVICE).save(path)
    with pytest.raises(TimingCacheError, match="recorded on NVIDIA H100.*sm_90.*plan is for sm_87.*edgert tune"):
        TimingCache.load(path, arch="sm_87")
    with pytest.raises(TimingCacheError, match="does not exist.*edgert tune"):
        TimingCache.load(tmp_path / "missing.json")


# -- kernels of many tactics --------------------------------------------------------------------------
@needs_compiler
def test_tactics_of_both_engines_compile_for_sm90():
    """A few candidates of each layer (both tile extremes, split and not, both loaders), one NVRTC run."""
    for dtype in ("float32", "float16"):
        plan = build(dtype)
        ctx = LowerContext(plan.document, 90)
        fusions = plan_fusions(ctx, plan.document)
        for key, decision in autotune.gemm_layers(plan.document, "sm_90").items():
            found = candidates(decision.problem)
            picks = {found[0].name, found[-1].name, next(t.name for t in found if t.splits > 1)}
            for name in picks:
                ctx.tactic_policy = FixedPolicy(name)
                (launch,) = lower_layer(ctx, plan.document["layers"][decision.layer], fusions.get(decision.layer))
                assert launch.tactic == name
        modules, kernel_modules = compile_context(ctx, "sm_90", jobs=2)
        assert set(kernel_modules) == set(ctx.kernels) and all(m["cubin"][:4] == b"\x7fELF" for m in modules)


@needs_cxx
@pytest.mark.parametrize("dtype, tactics", [
    ("float32", {"conv": "implicit-gemm fma 64x32 splitk3", "matmul": "gemm fma 32x128 splitk1"}),
    ("float16", {"conv": "implicit-gemm-tap mma 32x64 splitk9", "matmul": "gemm mma 64x32 splitk2"}),
    ("float16", {"conv": "implicit-gemm mma 64x64 w16 bk64 splitk3", "matmul": "gemm mma 32x64 w16 splitk1"}),
    ("tf32", {"conv": "implicit-gemm tf32 64x32 w16 bk32 splitk2", "matmul": "gemm tf32 32x32 splitk1"}),
])
def test_other_tactics_compute_the_same_on_the_emulator(dtype, tactics):
    tf32 = dtype == "tf32"
    dtype = "float32" if tf32 else dtype
    plan = build(dtype, tf32=True) if tf32 else build(dtype)
    conv = next(layer["name"] for layer in plan.document["layers"] if layer["kind"] == "Convolution")
    names = {conv: tactics["conv"], "matmul": tactics["matmul"]}
    section = compile_for_plan(plan.document, "sm_90", emulate=True, policy=ByLayer(names))
    assert sorted(t for t in section["tactics"] if "[" in t) == sorted(f"{n} [fixed]" for n in names.values())
    plan.document["kernels"] = {"sm_90": section}
    rng = np.random.default_rng()
    feeds = {"x": rng.standard_normal((1, 32, 6, 6)).astype(dtype), "m": rng.standard_normal((40, 64)).astype(dtype)}
    context = CudaEngine(plan.document, driver=emulator.EmulatedDriver()).create_execution_context()
    context.poison()
    got = context.execute(feeds)
    want = edgert.load(plan).create_execution_context().execute(feeds)
    for name in ("y1", "y2"):
        ref = want[name].astype(np.float64)
        error = np.linalg.norm(got[name].astype(np.float64) - ref) / np.linalg.norm(ref)
        assert error <= (2e-3 if tf32 else 1e-4 if dtype == "float32" else 1e-2), (name, error)


@needs_cxx
def test_autotune_harness_runs_on_the_emulator_with_an_injected_timer():
    plan = build()
    driver = emulator.EmulatedDriver("sm_90")
    calls = []

    def timer(run):   # the host clock, counting what the harness asks for
        calls.append(run)
        return autotune.WallTimer(driver, None)(run)

    results = autotune.tune_plan(plan.document, driver, timer=timer, warmup=0, samples=2, max_candidates=3)
    assert set(results) == set(autotune.gemm_layers(plan.document, "sm_90"))
    for result in results.values():
        assert list(result.timings)[0] == result.default and len(result.timings) == 3 and not result.rejected
        assert all(us > 0 for us in result.timings.values()) and result.fastest in result.timings
    assert len(calls) == 2 * 3 * (1 + 2)   # per candidate: one probe, then two samples of the graph
    skipped = autotune.tune_plan(plan.document, driver, timer=timer, skip=list(results), max_candidates=3)
    assert skipped == {}


# -- builds that read a timing cache ------------------------------------------------------------------
def _cache_preferring_other_tactics(document, arch) -> tuple[TimingCache, dict]:
    """A hand-written cache in which a tactic other than the cost model's is fastest for each layer."""
    cache, chosen = TimingCache(dict(DEVICE, arch=arch, name="Jetson AGX Orin")), {}
    for key, decision in autotune.gemm_layers(document, arch).items():
        default = decision.tactic
        other = next(t for t in candidates(decision.problem) if (t.bm, t.bn) != (default.bm, default.bn))
        cache.record(key, {default.name: 20.0, other.name: 5.0, "no such tactic mma 8x8 splitk1": 1.0})
        chosen[decision.layer] = other
    return cache, chosen


@needs_compiler
def test_build_with_a_timing_cache_uses_its_fastest_tactics(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(two_gemm_model().SerializeToString())
    document = edgert.build(str(model), cpu_only_aliases=False).document
    cache, chosen = _cache_preferring_other_tactics(document, "sm_87")
    cache.save(tmp_path / "orin.json")
    argv = ["build", str(model), "-o", str(tmp_path / "a.plan"), "--target", "jetson-agx-orin",
            "--timing-cache", str(tmp_path / "orin.json"), "--no-autotune"]
    assert main(argv) == 0
    assert "tactics for sm_87: 2 timing-cache" in capsys.readouterr().out
    document = read_plan(load_plan_bytes(tmp_path / "a.plan"))
    section = document["kernels"]["sm_87"]
    for index, tactic in chosen.items():
        (launch,) = section["launches"][index]
        assert launch["tactic"] == tactic.name and launch["grid"][:2] == [
            math.ceil(int(launch["params"][8][1]) / tactic.bn), math.ceil(int(launch["params"][7][1]) / tactic.bm)]
        assert document["layers"][index]["tactic"] == f"{tactic.name} [timing-cache]"
    assert main(["inspect", str(tmp_path / "a.plan")]) == 0
    table = capsys.readouterr().out
    assert all(f"{t.name} [timing-cache]" in table for t in chosen.values())
    # The same cache gives the same plan, byte for byte; no cache gives the cost model's tactics.
    assert main(argv[:3] + [str(tmp_path / "b.plan")] + argv[4:]) == 0
    assert (tmp_path / "a.plan").read_bytes() == (tmp_path / "b.plan").read_bytes()
    plain = edgert.build(str(model), target="jetson-agx-orin", gpu_kernels=True, autotune=False)
    assert plain.header["tactics"] == {"sm_87": {"cost-model": 2}}


def test_build_refuses_a_timing_cache_of_another_arch(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(two_gemm_model().SerializeToString())
    TimingCache(DEVICE).save(tmp_path / "h100.json")
    status = main(["build", str(model), "-o", str(tmp_path / "p.plan"), "--target", "jetson-agx-orin",
                   "--timing-cache", str(tmp_path / "h100.json"), "--no-autotune"])
    assert status == 2 and not (tmp_path / "p.plan").exists()
    with pytest.raises(TimingCacheError, match="plan is for sm_87"):
        edgert.build(str(model), target="jetson-agx-orin", timing_cache=tmp_path / "h100.json", autotune=False)
    with pytest.raises(TimingCacheError, match="does not exist"):
        edgert.build(str(model), target="jetson-agx-orin", timing_cache=tmp_path / "none.json", autotune=False)


@needs_cxx
@needs_compiler
def test_tune_records_a_cache_that_a_cross_build_uses(tmp_path):
    from edgert.tools.tune import report_lines, tune_model
    model = tmp_path / "m.onnx"
    model.write_bytes(two_gemm_model().SerializeToString())
    driver = emulator.EmulatedDriver("sm_87")
    path = str(tmp_path / "orin.json")
    cache, results = tune_model(str(model), path, driver, target="jetson-agx-orin", candidates=2, samples=1,
                                warmup=0)
    assert len(results) == 2 and len(report_lines(results)) == 2
    assert TimingCache.load(path, arch="sm_87").entries == cache.entries and len(cache.entries) == 2
    again, more = tune_model(str(model), path, driver, target="jetson-agx-orin", candidates=2, samples=1, warmup=0)
    assert more == {} and again.entries == cache.entries   # known layers are not timed again
    plan = edgert.build(str(model), target="jetson-agx-orin", timing_cache=path, autotune=False)
    assert plan.header["tactics"] == {"sm_87": {"timing-cache": 2}}
    for result in results.values():
        layer = next(layer for layer in plan.document["layers"] if layer["name"] == result.layer)
        assert layer["tactic"] == f"{result.fastest} [timing-cache]"
    with pytest.raises(edgert.EdgeRTError, match="target 'jetson-agx-thor' has sm_110, but this GPU"):
        tune_model(str(model), path, driver, target="jetson-agx-thor")


def test_tune_without_a_gpu_exits_2_with_one_line(tmp_path, capsys):
    from conftest import cuda_device_available
    if cuda_device_available():
        pytest.skip("this machine has a GPU")
    model = tmp_path / "m.onnx"
    model.write_bytes(two_gemm_model().SerializeToString())
    assert main(["tune", str(model), "--timing-cache", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a CUDA GPU" in err[0] and not (tmp_path / "t.json").exists()


def test_double_depth_k_tiles_for_tensor_cores_only_where_the_templates_allow():
    """Tensor-core kernels also offer a K tile twice as deep (only for tiles whose shared memory still
    fits); tap-major needs it to divide the channels; the FMA kernel keeps its one K tile."""
    deep = [t for t in candidates(problem(512, 196, 4608, tap_channels=512)) if t.bk == 64]
    assert deep and all(t.bm * t.bn <= 64 * 64 for t in deep)
    assert {t.loader for t in deep} == {"tapmajor", "im2col"}
    narrow = candidates(problem(64, 3136, 288, tap_channels=32))
    assert not any(t.bk == 64 and t.loader == "tapmajor" for t in narrow)
    assert any(t.bk == 64 and t.loader == "im2col" for t in narrow)
    assert all(t.bk == 16 for t in candidates(problem(256, 3136, 576, "float32")))


def test_narrow_warp_tiles_double_the_warps_within_256_threads():
    """Tensor-core tiles also come with 32x16 warp tiles (w16): twice the warps, half the accumulators
    each; never past 256 threads, nor where the 1x1 vector loader would lack K rows; not for FMA."""
    narrow = [t for t in candidates(problem(512, 196, 4608, tap_channels=512)) if t.nj == 2]
    assert narrow and all(" w16 " in t.name and (t.bm // 32) * (t.bn // 16) * 32 <= 256 for t in narrow)
    assert not any(t.nj == 2 and t.bm == 128 and t.bn == 32 and t.bk == 32
                   for t in candidates(problem(256, 3136, 64, algorithms=ONE_BY_ONE)) if t.loader == "pointwise")
    assert all(t.nj == 4 for t in candidates(problem(256, 3136, 576, "float32")))


@pytest.mark.gpu
def test_tune_and_build_on_the_gpu(tmp_path, capsys):
    """On a GPU: `edgert tune` records real timings, a build with the cache takes the fastest tactic
    of every GEMM layer, and the plan runs on the GPU like the CPU reference."""
    from conftest import cuda_device_available
    if not cuda_device_available():
        pytest.skip("no CUDA GPU")
    from edgert.runtime.cuda import CupyDriver
    arch = CupyDriver().arch()
    model, cache, out = tmp_path / "m.onnx", tmp_path / "t.json", tmp_path / "m.plan"
    model.write_bytes(two_gemm_model().SerializeToString())
    assert main(["tune", str(model), "--timing-cache", str(cache), "--candidates", "6"]) == 0
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 2 and all(len(timings) >= 2 and min(timings.values()) > 0 for timings in entries.values())
    assert main(["build", str(model), "-o", str(out), "--timing-cache", str(cache), "--no-autotune"]) == 0
    document = read_plan(out.read_bytes())
    assert document["header"]["tactics"] == {arch: {"timing-cache": 2}}
    fastest = {min(t, key=t.get) for t in entries.values()}
    chosen = {layer["tactic"].rsplit(" [", 1)[0] for layer in document["layers"]
              if "[timing-cache]" in (layer["tactic"] or "")}
    assert chosen == fastest
    rng = np.random.default_rng()
    feeds = {b["name"]: rng.standard_normal(b["shape"]).astype(np.float32) for b in document["bindings"]["inputs"]}
    got = edgert.load(str(out), device="cuda").create_execution_context().execute(feeds)
    want = edgert.load(str(out)).create_execution_context().execute(feeds)
    for name in want:
        assert np.linalg.norm(got[name] - want[name]) <= 1e-4 * np.linalg.norm(want[name])
