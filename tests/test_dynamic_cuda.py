"""CUDA kernels in plans with optimization profiles (``edgert.kernels.cuda.generic``).

CPU CI: every test model, exported with its batch (and for the CNNs H and W) dynamic, is built once with a
profile, its shape-generic kernels run on the CPU emulator of the CUDA execution model, and the outputs
match onnxruntime at min, opt, max and two random in-range shapes (fp32 1e-4, fp16 1e-2 normwise), with
every device buffer poisoned before each run. Then the context's promises: no allocation when shapes
change, a CUDA graph per distinct shape in a bounded cache, profiles switching, and the errors.

On a GPU (marked ``gpu``): the same models compiled for the device's arch by NVRTC/nvcc and run through
cupy, fp32 and fp16, plus the text recognizer at W = 64, 100, 320, 960 and async execution.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import edgert  # noqa: E402
from dynamic_models import build_text_recognizer, dynamic_export  # noqa: E402
from edgert.errors import InputError, UnsupportedError  # noqa: E402
from edgert.kernels.cuda import compile as cc  # noqa: E402
from edgert.kernels.cuda import emulator  # noqa: E402
from edgert.kernels.cuda.generic import Unit, generalize, match  # noqa: E402
from edgert.kernels.cuda.profile_kernels import compile_profile_kernels  # noqa: E402
from edgert.plan import read_plan  # noqa: E402
from edgert.runtime.cuda import CudaEngine  # noqa: E402
from helpers import normwise_error, ort_run, random_inputs  # noqa: E402
from models import MODELS  # noqa: E402
from test_dynamic_shapes import _profile_for, _test_shapes  # noqa: E402

needs_cxx = pytest.mark.skipif(not emulator.available(), reason="no host C++ compiler for the emulator")
needs_compiler = pytest.mark.skipif(not cc.available(), reason="no NVRTC (cuda-bindings) and no nvcc")
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}
ALL_FP16 = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]}
OCR_PROFILE = {"image": ((1, 3, 48, 64), (1, 3, 48, 96), (2, 3, 48, 128))}


class CountingDriver(emulator.EmulatedDriver):
    """The emulator, counting device allocations."""

    def __init__(self, arch: str = "sm_90"):
        super().__init__(arch)
        self.allocations = 0

    def alloc(self, nbytes: int):
        self.allocations += 1
        return super().alloc(nbytes)


def profile_plan(model, profiles, arch: str, *, emulate: bool, **options) -> dict:
    """A profile plan with shape-generic kernels for ``arch``, through a save/load round trip."""
    plan = edgert.build(model, profiles=profiles, cpu_only_aliases=False, **options)
    plan.document["kernels"] = {arch: compile_profile_kernels(plan.document, arch, emulate=emulate)}
    return read_plan(plan.to_bytes())


def assert_matches(context, model, shapes, tolerance: float) -> None:
    feeds = random_inputs(model, shapes)
    context.poison()   # an output element no kernel wrote reads NaN
    ours = context.execute(feeds)
    for name, want in ort_run(model, feeds).items():
        assert ours[name].shape == want.shape, f"{name} at {shapes}: {ours[name].shape} != {want.shape}"
        error = normwise_error(ours[name], want)
        assert error <= tolerance, f"{name} at {shapes}: normwise error {error:.3g}"


def dynamic_case(name: str):
    case = MODELS[name]
    axes, profile = _profile_for(name, case.shapes)
    return dynamic_export(case.build(), axes), profile


# -- CPU CI: the emulator ------------------------------------------------------------------------------------
@needs_cxx
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_with_a_profile_on_the_emulator(name):
    model, profile = dynamic_case(name)
    document = profile_plan(model, [profile], "sm_90", emulate=True)
    context = CudaEngine(document, driver=emulator.EmulatedDriver()).create_execution_context()
    for shapes in _test_shapes(profile, np.random.default_rng()):
        assert_matches(context, model, shapes, TOLERANCE["float32"])


@needs_cxx
@pytest.mark.parametrize("name", ["resnet"])   # convolutions on tensor cores: the loaders that depend on shapes
def test_fp16_models_with_a_profile_on_the_emulator(name):
    model, profile = dynamic_case(name)
    document = profile_plan(model, [profile], "sm_90", emulate=True, **ALL_FP16)
    context = CudaEngine(document, driver=emulator.EmulatedDriver()).create_execution_context()
    for shapes in _test_shapes(profile, np.random.default_rng()):
        assert_matches(context, model, shapes, TOLERANCE["float16"])


@needs_cxx
def test_layers_whose_fast_kernel_was_not_compiled_run_the_conservative_one():
    """MobileNetV2 at 37x41: two 1x1 convolutions lose their vector loader (odd pixel counts) and take a kernel
    form the build never lowered; they bind the conservative lowering's kernels, the other layers their own."""
    model, profile = dynamic_case("mobilenetv2")
    context = CudaEngine(profile_plan(model, [profile], "sm_90", emulate=True),
                         driver=emulator.EmulatedDriver()).create_execution_context()
    assert_matches(context, model, {"input": (1, 3, 37, 41)}, TOLERANCE["float32"])
    assert context._bind_shapes(((1, 3, 37, 41),)).conservative
    assert_matches(context, model, {"input": (1, 3, 34, 34)}, TOLERANCE["float32"])
    assert not context._bind_shapes(((1, 3, 34, 34),)).conservative


@needs_cxx
def test_text_recognizer_kernels_are_generic_and_shapes_allocate_nothing():
    model = build_text_recognizer()
    document = profile_plan(model, [OCR_PROFILE], "sm_90", emulate=True)
    section = document["kernels"]["sm_90"]
    # per launch form a generic kernel (fast and conservative lowering) and one for the opt shape, whatever the
    # shapes: far fewer than one per shape
    assert len(section["kernel_modules"]) <= 3 * sum(1 for layer in document["layers"])
    assert any(entry["types"] for entries in section["dynamic"]["forms"].values() for entry in entries)
    driver = CountingDriver()
    context = CudaEngine(document, driver=driver).create_execution_context()
    allocated = driver.allocations
    widths = [64, 128, 77, 101, 96, 113, 64]   # 77, 101 and 113 were never lowered at build time
    for batch, width in zip([1, 2, 2, 1, 1, 2, 1], widths):
        assert_matches(context, model, {"image": (batch, 3, 48, width)}, TOLERANCE["float32"])
    assert driver.allocations == allocated, "a shape change allocated device memory"
    assert context.bound_shapes == len(set(zip([1, 2, 2, 1, 1, 2, 1], widths)))
    # at the opt shape every launch runs the kernel specialized to it (no literal read at run time, as in a
    # static plan for that shape); elsewhere generic ones
    assert _runtime_literals(context, (1, 3, 48, 96)) == 0
    assert _runtime_literals(context, (1, 3, 48, 77)) > 0


def _runtime_literals(context, shape: tuple) -> int:
    """How many literals the kernels bound at this input shape read at run time."""
    from edgert.runtime.shapes import specialize
    engine = context.engine
    (binding,) = engine.inputs
    shapes, _ = specialize(engine.shape_engine, {binding.tensor: shape})
    matched = context._matched(*context._lowering(shapes, conservative=False))
    return sum(len(dims) for entries in matched for _, _, dims in entries)


@needs_cxx
def test_graphs_per_shape_are_cached_and_bounded():
    model = build_text_recognizer()
    context = CudaEngine(profile_plan(model, [OCR_PROFILE], "sm_90", emulate=True),
                         driver=emulator.EmulatedDriver()).create_execution_context()
    context.CACHE_SIZE = 3
    first = random_inputs(model, {"image": (1, 3, 48, 70)})
    expected = context.execute(first)["probs"]
    for width in range(80, 130, 10):
        context.execute(random_inputs(model, {"image": (1, 3, 48, width)}))
    assert context.bound_shapes == 3
    assert all(bound.graph is not None for bound in context._cache.values())
    np.testing.assert_array_equal(context.execute(first)["probs"], expected)   # evicted, bound again: same


@needs_cxx
def test_profiles_shape_api_and_range_errors():
    model = build_text_recognizer()
    profiles = [OCR_PROFILE, {"image": ((1, 3, 48, 200), (2, 3, 48, 240), (2, 3, 48, 256))}]
    document = profile_plan(model, profiles, "sm_90", emulate=True)
    assert len(document["kernels"]["sm_90"]["dynamic"]["tactics"]) == 2
    engine = CudaEngine(document, driver=emulator.EmulatedDriver())
    assert engine.num_optimization_profiles == 2
    context = engine.create_execution_context()
    assert context.get_tensor_shape("probs") == (1, 24, 37)   # profile 0's opt
    with pytest.raises(InputError, match="inside profile 1; call set_optimization_profile"):
        context.execute(random_inputs(model, {"image": (2, 3, 48, 220)}))
    context.set_optimization_profile(1)
    assert context.get_tensor_shape("probs") == (2, 60, 37)
    assert_matches(context, model, {"image": (2, 3, 48, 230)}, TOLERANCE["float32"])
    context.set_input_shape("image", (1, 3, 48, 256))
    assert context.get_tensor_shape("probs") == (1, 64, 37)
    with pytest.raises(InputError, match="outside"):
        context.set_input_shape("image", (3, 3, 48, 256))


@pytest.mark.parametrize("body", [
    "float t[{n}]; o[0] = t[0];",                       # a local array's size
    "o[0] = tile<{n}>(o);",                             # a template argument
    "switch (threadIdx.x) {{ case {n}: o[0] = 1; }}",   # a case label
    "constexpr int width = {n}; o[0] = width;",
])
def test_a_dim_needed_as_a_constant_is_a_build_error_naming_the_layer(body):
    template = 'extern "C" __global__ void __launch_bounds__(256) KERNEL(float* o) {{ ' + body + ' }}'
    units = [Unit(template.format(n=n), "pool") for n in (4, 8)]
    with pytest.raises(UnsupportedError, match=r"layer 'pool1'.*compile-time constant"):
        generalize(units, "layer 'pool1' (Pooling)")


@pytest.mark.parametrize("body", ["o[i % {n}] = 0;", "if (i < {n}) o[i] = w * x[i * {n}];", "o[0] = float({n}) / 2.5f;"])
def test_dims_in_expressions_are_hoisted(body):
    template = 'extern "C" __global__ void __launch_bounds__(256) KERNEL(float* o, float* x, float w) ' \
               '{{ const i32 i = threadIdx.x; ' + body + ' }}'
    units = [Unit(template.format(n=n), "copy") for n in (4, 8)]
    source, entry = generalize(units, "layer 'x'")
    assert "__launch_bounds__(256)" in source and entry["types"] and "__dd.v[0]" in source


def test_generic_kernels_take_the_dims_that_vary_as_arguments():
    template = 'extern "C" __global__ void KERNEL(float* o) {{ const i32 i = threadIdx.x; if (i >= {n}) return; ' \
               'o[i % {m}] = {n}u; }}'
    units = [Unit(template.format(n=n, m=7), "copy") for n in (12, 20, 3000000000)]
    source, entry = generalize(units, "layer 'x'")
    assert entry["types"] == ["long long", "unsigned"] and entry["literals"][1] == "7"
    assert "i >= ((long long)__dd.v[0])" in source and "% 7" in source and "const copy_g" in source
    name, dims = match({units[0].form: [entry]}, Unit(template.format(n=45, m=7)), "layer 'x'")
    assert name == entry["kernel"] and dims == [45, 45]
    with pytest.raises(UnsupportedError, match="layer 'x': no CUDA kernel of this plan fits"):
        match({units[0].form: [entry]}, Unit(template.format(n=45, m=8)), "layer 'x'")


@needs_cxx
def test_runtime_of_a_cuda_profile_plan_imports_no_builder_and_no_compiler(tmp_path):
    path = tmp_path / "ocr.msgpack"
    plan = edgert.build(build_text_recognizer(), profiles=[OCR_PROFILE], cpu_only_aliases=False)
    plan.document["kernels"] = {"sm_90": compile_profile_kernels(plan.document, "sm_90", emulate=True)}
    path.write_bytes(plan.to_bytes())
    script = f"""
import sys
import numpy as np
from edgert.plan import read_plan
from edgert.runtime.cuda import CudaEngine
from edgert.kernels.cuda.emulator import EmulatedDriver
document = read_plan(open({str(path)!r}, "rb").read())
context = CudaEngine(document, driver=EmulatedDriver()).create_execution_context()
assert context.execute({{"image": np.ones((2, 3, 48, 100), np.float32)}})["probs"].shape == (2, 25, 37)
bad = sorted(m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "edgert.onnx", "edgert.passes",
             "edgert.builder", "edgert.dynamic", "onnxruntime", "cuda.", "edgert.kernels.cuda.compile",
             "edgert.kernels.cuda.plan_kernels", "edgert.kernels.cuda.profile_kernels", "edgert.kernels.cuda.autotune")))
assert not bad, bad
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@needs_compiler
def test_build_with_profiles_and_gpu_kernels(tmp_path):
    """The builder's path: the generic kernels compile with the real CUDA compiler (for Orin, sm_87)."""
    model = build_text_recognizer()
    plan = edgert.build(model, profiles=[OCR_PROFILE], gpu_kernels=True, target="jetson-agx-orin")
    path = tmp_path / "ocr.plan"
    plan.save(path)
    document = read_plan(path.read_bytes())
    section = document["kernels"]["sm_87"]
    assert section["dynamic"]["forms"] and all(m["cubin"] for m in section["modules"])
    assert document["header"]["options"]["gpu_kernels"] is True
    conv = next(layer for layer in document["layers"] if layer["name"] == "conv1")
    assert "[cost-model]" in conv["tactic"]


@needs_cxx
@pytest.mark.parametrize("corrupt", [
    lambda d: d["tactics"].append({}),
    lambda d: next(iter(d["forms"].values()))[0].__setitem__("kernel", "nope"),
    lambda d: next(e for es in d["forms"].values() for e in es if e["types"])["types"].append("float"),
    lambda d: d.pop("sm_count"),
])
def test_a_corrupt_dynamic_kernels_section_is_a_plan_error(corrupt):
    from edgert.errors import PlanError
    document = profile_plan(build_text_recognizer(), [OCR_PROFILE], "sm_90", emulate=True)
    corrupt(document["kernels"]["sm_90"]["dynamic"])
    with pytest.raises(PlanError, match="malformed; rebuild the plan"):
        CudaEngine(document, driver=emulator.EmulatedDriver())


@needs_compiler
def test_tactics_come_from_the_timing_cache_at_the_opt_shape(tmp_path):
    """A timing cache keyed at the profile's opt shape (as `edgert tune` at that shape records it) decides the
    tactics; they are pinned for every other shape of the profile."""
    from edgert.kernels.cuda import autotune
    from edgert.kernels.cuda.profile_kernels import opt_document
    from edgert.kernels.cuda.tactics import candidates
    from edgert.kernels.cuda.timing_cache import TimingCache

    model = build_text_recognizer()
    cpu_plan = edgert.build(model, profiles=[OCR_PROFILE], cpu_only_aliases=False)
    cache = TimingCache({"name": "Jetson AGX Orin", "arch": "sm_87", "sm_count": 16, "driver": "13.0"})
    chosen = {}
    for key, decision in autotune.gemm_layers(opt_document(cpu_plan.document), "sm_87").items():
        other = next(t for t in candidates(decision.problem) if t.name != decision.tactic.name)
        cache.record(key, {decision.tactic.name: 20.0, other.name: 5.0})
        chosen[cpu_plan.document["layers"][decision.layer]["name"]] = other
    cache.save(tmp_path / "orin.json")
    plan = edgert.build(model, profiles=[OCR_PROFILE], target="jetson-agx-orin", timing_cache=tmp_path / "orin.json",
                        autotune=False)
    layers = {layer["name"]: layer for layer in plan.document["layers"]}
    pinned = plan.document["kernels"]["sm_87"]["dynamic"]["tactics"][0]
    assert chosen and plan.header["tactics"] == {"sm_87": {"timing-cache": len(chosen)}}
    for name, tactic in chosen.items():
        assert layers[name]["tactic"] == f"{tactic.name} [timing-cache]"
        assert pinned[name] == [[tactic.bm, tactic.bn, tactic.splits, tactic.loader, tactic.bk, tactic.nj]]


# -- on the GPU ---------------------------------------------------------------------------------------------
def _gpu_driver():
    from edgert.runtime.cuda import CupyDriver
    return CupyDriver()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["float32", "float16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_with_a_profile_on_the_gpu(name, precision):
    model, profile = dynamic_case(name)
    driver = _gpu_driver()
    options = ALL_FP16 if precision == "float16" else {}
    document = profile_plan(model, [profile], driver.arch(), emulate=False, **options)
    context = CudaEngine(document, driver=driver).create_execution_context()
    for shapes in _test_shapes(profile, np.random.default_rng()):
        assert_matches(context, model, shapes, TOLERANCE[precision])


@pytest.mark.gpu
def test_text_recognizer_every_width_on_the_gpu():
    model = build_text_recognizer()
    driver = _gpu_driver()
    profile = {"image": ((1, 3, 48, 64), (1, 3, 48, 320), (2, 3, 48, 960))}
    document = profile_plan(model, [profile], driver.arch(), emulate=False)
    engine = CudaEngine(document, driver=driver)
    graphs, plain = engine.create_execution_context(), engine.create_execution_context(use_graph=False)
    for width in (64, 100, 320, 960, 64):
        feeds = random_inputs(model, {"image": (2, 3, 48, width)})
        assert_matches(graphs, model, {"image": (2, 3, 48, width)}, TOLERANCE["float32"])
        np.testing.assert_array_equal(graphs.execute(feeds)["probs"], plain.execute(feeds)["probs"])


@pytest.mark.gpu
def test_execute_async_takes_any_shape_in_range_on_the_gpu():
    import cupy
    model = build_text_recognizer()
    driver = _gpu_driver()
    context = CudaEngine(profile_plan(model, [OCR_PROFILE], driver.arch(), emulate=False),
                         driver=driver).create_execution_context()
    for width in (70, 128):
        feeds = random_inputs(model, {"image": (2, 3, 48, width)})
        out = context.execute_async({"image": cupy.asarray(feeds["image"])})
        context.stream.synchronize()
        want = ort_run(model, feeds)["probs"]
        assert normwise_error(cupy.asnumpy(out["probs"]), want) <= TOLERANCE["float32"]


def zoo_case(zoo_name: str, unit_scale: bool = False):
    """(model with random weights and logits exposed, dynamic as the CPU zoo test has it; its profile).
    ``unit_scale``: layer outputs rescaled to unit deviation (``unit_scaled``), so that fp16 can hold them."""
    import os

    import onnx
    from test_dynamic_shapes import _ZOO_PROFILES
    from test_light_zoo import LIGHT_DIR, _random_weights, _with_logits, unit_scaled
    batch_only = ((0,), ((1, 3, 224, 224), (2, 3, 224, 224), (3, 3, 224, 224)))
    axes, (low, opt, high) = _ZOO_PROFILES.get(zoo_name, batch_only)
    model = _random_weights(_with_logits(onnx.load(os.path.join(LIGHT_DIR, f"light_{zoo_name}.onnx"))))
    if unit_scale:
        model = unit_scaled(model, random_inputs(model))
    (input_name, _), = random_inputs(model).items()
    return dynamic_export(model, {input_name: axes}), {input_name: (low, opt, high)}


def assert_zoo_matches(context, model, shapes, tolerance: float) -> None:
    from test_light_zoo import _tolerances
    feeds = random_inputs(model, shapes)
    context.poison()
    ours = context.execute(feeds)
    reference = ort_run(model, feeds)
    tolerances = _tolerances(model, reference, tolerance)   # probabilities: the logits' tolerance x max |logit|
    for name, want in reference.items():
        error = normwise_error(ours[name], want)
        assert error <= tolerances[name], f"{name} at {shapes}: normwise error {error:.3g}"


@needs_cxx
def test_squeezenet_any_size_on_the_emulator():
    """A real-size model with batch, H and W dynamic, at a shape the build never lowered (slow: ~10 s)."""
    model, profile = zoo_case("squeezenet")
    document = profile_plan(model, [profile], "sm_90", emulate=True)
    context = CudaEngine(document, driver=emulator.EmulatedDriver()).create_execution_context()
    (name, _), = profile.items()
    assert_zoo_matches(context, model, {name: (1, 3, 200, 216)}, TOLERANCE["float32"])


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["float32", "float16"])
@pytest.mark.parametrize("zoo_name", ["squeezenet", "shufflenet", "resnet50", "densenet121", "inception_v1",
                                      "inception_v2", "bvlc_alexnet"])
def test_light_zoo_with_a_profile_on_the_gpu(zoo_name, precision):
    model, profile = zoo_case(zoo_name, unit_scale=precision == "float16")
    driver = _gpu_driver()
    document = profile_plan(model, [profile], driver.arch(), emulate=False,
                            **(ALL_FP16 if precision == "float16" else {}))
    context = CudaEngine(document, driver=driver).create_execution_context()
    for shapes in _test_shapes(profile, np.random.default_rng()):
        assert_zoo_matches(context, model, shapes, TOLERANCE[precision])
