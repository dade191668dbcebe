"""Autotuning: time the candidate tactics of a plan's convolutions and matrix products on a GPU.

``tune_plan(document, driver)`` lowers the plan once with the cost model to find its GEMM layers and
their keys (layers with one key are timed once), lowers every candidate tactic of each key into one
set of kernels (the layer's real epilogue and fused consumer included), compiles them together, and
loads them with the plan's own memory layout through the runtime (``CudaEngine``), so alignment,
weights and workspace are those of the real plan. For each key it then fills the layer's inputs
with random values, runs every candidate once and checks its output against the cost model's pick
(a tactic that computes something else is rejected, never timed), and times the rest: warm-up,
then the median of ``samples`` timings of a CUDA graph holding as many back-to-back runs as make it
last about ``TARGET_US`` (so short kernels are timed without host launch gaps, above the event
resolution of about a microsecond).

The timer is injectable: ``timer(run) -> microseconds`` that one call of ``run`` takes.
``EventTimer`` uses CUDA events on the context's stream (cupy); ``WallTimer`` synchronizes and
reads the host clock, which is what the CPU emulator (``emulator.EmulatedDriver``) offers, so the
whole harness runs in tests without a GPU.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Callable

import numpy as np

from edgert.kernels.cuda.compile import arch_number, normalize_arch
from edgert.kernels.cuda.library import SM_COUNTS, LowerContext, lower_layer
from edgert.kernels.cuda.plan_kernels import FORMAT, compile_context, lower_plan, plan_fusions
from edgert.kernels.cuda.tactics import CostModel, Decision, FixedPolicy, GpuRates

TARGET_US = 200.0
_TOLERANCE = {"float16": 2e-2, "float32": 1e-3, "float64": 1e-9, "int8": 0.0}   # int8: codes, exactly


@dataclasses.dataclass
class KeyResult:
    layer: str                       # the first plan layer with this key
    default: str                     # the cost model's tactic
    timings: dict                    # tactic name -> median microseconds
    rejected: list                   # tactics whose output disagreed with the default's
    estimates: dict                  # tactic name -> the cost model's estimate, microseconds

    @property
    def fastest(self) -> str:
        return min(self.timings, key=lambda name: (self.timings[name], name))


class WallTimer:
    """Host clock around a synchronized run (the emulator's timer; coarse on a GPU)."""

    def __init__(self, driver, stream):
        self.driver, self.stream = driver, stream

    def __call__(self, run: Callable[[], None]) -> float:
        self.driver.synchronize(self.stream)
        started = time.perf_counter()
        run()
        self.driver.synchronize(self.stream)
        return (time.perf_counter() - started) * 1e6


class EventTimer:
    """CUDA events recorded on the stream around a run (cupy)."""

    def __init__(self, stream):
        import cupy
        self.cupy, self.stream = cupy, stream
        self.start, self.end = cupy.cuda.Event(), cupy.cuda.Event()

    def __call__(self, run: Callable[[], None]) -> float:
        self.start.record(self.stream)
        run()
        self.end.record(self.stream)
        self.end.synchronize()
        return self.cupy.cuda.get_elapsed_time(self.start, self.end) * 1e3


def measure(driver, stream, calls: list, timer, *, warmup: int = 3, samples: int = 10) -> float:
    """Median microseconds of one pass over ``calls`` (function, grid, block, smem, params).

    The passes are captured into a CUDA graph and timed by replaying it, so kernels shorter than a
    Python launch are timed back to back, not with the host's launch gaps between them.
    """
    def graph_of(count: int):
        return driver.capture(stream, lambda launch: [launch(*call, stream) for _ in range(count) for call in calls])

    single = graph_of(1)
    for _ in range(warmup):
        driver.replay(single, stream)
    once = max(timer(lambda: driver.replay(single, stream)), 1e-3)
    count = max(1, min(100, int(TARGET_US / once)))
    graph = graph_of(count)
    driver.replay(graph, stream)
    return statistics.median(timer(lambda: driver.replay(graph, stream)) / count for _ in range(max(1, samples)))


def gemm_layers(document: dict, arch: str, gpu: GpuRates | None = None) -> dict[str, Decision]:
    """{key: the cost model's decision for the first layer with that key}, in plan order."""
    policy = CostModel(gpu) if gpu is not None else None
    ctx, _, _ = lower_plan(document, arch, sm_count=gpu.sm_count if gpu else None, policy=policy)
    found: dict[str, Decision] = {}
    for decision in ctx.tactic_policy.decisions:
        found.setdefault(decision.problem.key, decision)
    return found


def _lower_candidates(document: dict, arch: str, layers: dict[str, Decision], gpu: GpuRates,
                      max_candidates: int | None):
    """One context holding every candidate's kernels; {key: [(tactic name, launches)]}, default first."""
    ctx = LowerContext(document, arch_number(arch), gpu.sm_count)
    fusions = plan_fusions(ctx, document)
    model, lowered, estimates = CostModel(gpu), {}, {}
    for key, decision in layers.items():
        ranked = model.ranked(decision.problem)
        estimates[key] = {t.name: us for t, us in ranked}
        order = [decision.tactic.name] + [t.name for t, _ in ranked if t.name != decision.tactic.name]
        order = order[:max_candidates] if max_candidates else order
        layer = document["layers"][decision.layer]
        lowered[key] = []
        for name in order:
            ctx.tactic_policy = FixedPolicy(name)
            launches = [launch.to_plain() for launch in lower_layer(ctx, layer, fusions.get(decision.layer))]
            lowered[key].append((name, launches))
    return ctx, lowered, estimates, fusions


def _tuning_engine(document: dict, arch: str, ctx: LowerContext, driver, jobs: int | None):
    """An engine over the plan's memory layout holding every candidate kernel, and one context."""
    from edgert.runtime.cuda import CudaEngine
    modules, kernel_modules = compile_context(ctx, arch, emulate=driver.name == "emulator", jobs=jobs)
    section = {"arch": arch, "format": FORMAT, "modules": modules, "kernel_modules": kernel_modules,
               "launches": [[] for _ in document["layers"]], "fused": {}, "aux": list(ctx.aux),
               "derived": list(ctx.derived), "workspace_bytes": ctx.workspace_bytes, "counters": ctx.counters}
    engine = CudaEngine(dict(document, kernels={arch: section}), driver=driver)
    return engine, engine.create_execution_context(use_graph=False)


def tune_plan(document: dict, driver, *, gpu: GpuRates | None = None, timer=None, skip=(), warmup: int = 3,
              samples: int = 10, max_candidates: int | None = None, jobs: int | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, KeyResult]:
    """Time the candidates of every GEMM layer key of ``document`` not in ``skip`` on ``driver``'s GPU.

    ``gpu``: the rates the cost model orders candidates by (default: the arch's); ``max_candidates``
    keeps the cost model's pick and the next best by its estimates.
    """
    arch = normalize_arch(driver.arch())
    gpu = gpu or gpu_rates(arch)
    layers = {k: d for k, d in gemm_layers(document, arch, gpu).items() if k not in set(skip)}
    if not layers:
        return {}
    log = log or (lambda message: None)
    ctx, lowered, estimates, fusions = _lower_candidates(document, arch, layers, gpu, max_candidates)
    log(f"compiling {len(ctx.kernels)} kernels for {sum(len(v) for v in lowered.values())} candidates "
        f"of {len(lowered)} layer keys")
    engine, context = _tuning_engine(document, arch, ctx, driver, jobs)
    timer = timer or (EventTimer(context.stream) if driver.name == "cupy" else WallTimer(driver, context.stream))
    results = {}
    from edgert.progress import track
    for key, candidates in track(lowered.items(), "autotuning: layer keys", len(lowered)):
        decision = layers[key]
        layer = document["layers"][decision.layer]
        result = _tune_key(engine, context, layer, fusions.get(decision.layer), candidates, timer, warmup, samples)
        done = results[key] = KeyResult(layer["name"], decision.tactic.name, result[0], result[1], estimates[key])
        log(f"{layer['name']}: {done.fastest} {done.timings[done.fastest]:.1f} us "
            f"(cost model: {done.default} {done.timings[done.default]:.1f} us)")
    return results


def _tune_key(engine, context, layer: dict, fusion: dict | None, candidates: list, timer, warmup: int,
              samples: int) -> tuple[dict, list]:
    """({name: median us}, [rejected names]) for one key's candidates (the first is the reference)."""
    fusion = fusion or {}
    output = fusion.get("output", layer["outputs"][0])
    inputs = [t for t in list(layer["inputs"]) + list(fusion.get("inputs", []))
              if t >= 0 and t not in (output, fusion.get("source")) and engine.constant_ptr(t) is None]
    feeds = _random_feeds(engine, inputs)
    reference, timings, rejected = None, {}, []
    driver, stream = context.driver, context.stream
    for name, launches in candidates:
        calls = [(engine.functions[e["kernel"]], tuple(e["grid"]), tuple(e["block"]), int(e.get("smem", 0)),
                  context._pack(e)) for e in launches]
        result = _run_checked(context, feeds, output, engine.document["tensors"][output], calls)
        if reference is None:
            reference = result
        elif not _agrees(result, reference, engine.document["tensors"][output]["dtype"]):
            rejected.append(name)
            continue
        timings[name] = measure(driver, stream, calls, timer, warmup=warmup, samples=samples)
        driver.synchronize(stream)
    return timings, rejected


def _random_feeds(engine, tensors: list[int]) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for tensor in dict.fromkeys(tensors):
        info = engine.document["tensors"][tensor]
        if info["dtype"] == "int8":   # int8 codes (edgert.int8_codes): the full range, not a cluster at 0
            feeds[tensor] = rng.integers(-128, 128, info["shape"]).astype(np.int8)
        else:
            feeds[tensor] = (rng.standard_normal(info["shape"]) * 0.5).astype(info["dtype"])
    return feeds


def _run_checked(context, feeds: dict, output: int, info: dict, calls: list) -> np.ndarray:
    """Upload the inputs again (an in-place consumer may have changed them), run once, read the output."""
    driver = context.driver
    for tensor, array in feeds.items():
        driver.upload(context.addresses[tensor], array, context.stream)
    for call in calls:
        driver.launch(*call, context.stream)
    result = np.empty(info["shape"], info["dtype"])
    driver.download(result, context.addresses[output], context.stream)
    driver.synchronize(context.stream)
    return result


def _agrees(result: np.ndarray, reference: np.ndarray, dtype: str) -> bool:
    got, want = result.astype(np.float64), reference.astype(np.float64)
    if not np.all(np.isfinite(got)) and not np.array_equal(np.isfinite(got), np.isfinite(want)):
        return False
    scale = np.linalg.norm(np.nan_to_num(want)) or 1.0
    return float(np.linalg.norm(np.nan_to_num(got - want))) / scale <= _TOLERANCE.get(dtype, 1e-3)


# -- builds ------------------------------------------------------------------------------------------
def local_gpu(arch: str | None = None):
    """The cupy driver of this machine's GPU (of ``arch``, when given), or None."""
    try:
        from edgert.runtime.cuda import CupyDriver
        driver = CupyDriver()
        found = normalize_arch(driver.arch())
    except Exception:  # no cupy, no driver, no device: no GPU to tune on
        return None
    return driver if arch is None or found == normalize_arch(arch) else None


def device_info(driver) -> dict:
    """What a timing cache records about the GPU it was measured on."""
    arch = normalize_arch(driver.arch())
    info = {"name": driver.device_name(), "arch": arch, "sm_count": SM_COUNTS.get(arch_number(arch), 32)}
    runtime = getattr(driver, "runtime", None)
    if runtime is not None:   # cupy
        props = runtime.getDeviceProperties(driver.device.id)
        version = runtime.driverGetVersion()
        info.update(sm_count=int(props["multiProcessorCount"]), driver=f"{version // 1000}.{version % 1000 // 10}")
    return info


def gpu_rates(arch: str, profile=None) -> GpuRates:
    """The cost model's rates for ``arch``: the target profile's GPU when it is that arch, else defaults."""
    if profile is not None and profile.gpu is not None and normalize_arch(profile.gpu.arch) == arch \
            and profile.gpu.sm_count:
        return GpuRates.from_profile(profile)
    return GpuRates.for_arch(arch_number(arch), SM_COUNTS.get(arch_number(arch), 32))


def build_policies(document: dict, archs: list[str], *, profile=None, timing_cache=None, autotune=None,
                   log: Callable[[str], None] | None = None) -> dict:
    """The tactic policy of each arch for a build: timings from ``timing_cache`` (a path or a
    ``TimingCache``), then autotuning of the layers it lacks when this machine has a GPU of the arch
    (``autotune``: None = whenever it has one, False = never, True = required), then the cost model.
    New timings go into the cache, and into its file when given a path."""
    from edgert.errors import DeviceError
    from edgert.kernels.cuda.tactics import TimingPolicy
    from edgert.kernels.cuda.timing_cache import TimingCache, TimingCacheError

    path = None if timing_cache is None or isinstance(timing_cache, TimingCache) else timing_cache
    cache = timing_cache if isinstance(timing_cache, TimingCache) else None
    archs = [normalize_arch(a) for a in archs]
    drivers = {a: local_gpu(a) if autotune is not False else None for a in archs}
    if autotune and not any(drivers.values()):
        raise DeviceError(f"autotuning needs a GPU of {', '.join(archs)} on this machine, and there is none; "
                          "build with --no-autotune, or use a timing cache recorded on the device (`edgert tune`)")
    if path is not None:
        try:
            cache = TimingCache.load(path)
        except TimingCacheError:
            if not any(drivers.values()) or os.path.exists(path):
                raise
            cache = None   # a new file, which autotuning fills
    if cache is not None and cache.arch not in archs:
        raise TimingCacheError(f"the timing cache was recorded on {cache.describe()}, but the plan is for "
                               f"{', '.join(archs)}: record one on such a device with `edgert tune`")
    policies = {}
    for arch in archs:
        gpu = gpu_rates(arch, profile)
        timings = dict(cache.entries) if cache is not None and cache.arch == arch else {}
        sources = {key: "timing-cache" for key in timings}
        if drivers[arch] is not None:
            tuned = tune_plan(document, drivers[arch], gpu=gpu, skip=timings, log=log)
            cache = cache or TimingCache(device_info(drivers[arch]))
            for key, result in tuned.items():
                timings[key], sources[key] = result.timings, "autotune"
                cache.record(key, result.timings)
            if tuned and path is not None:
                cache.save(path)
        policies[arch] = TimingPolicy(timings, CostModel(gpu), sources)
    return policies
