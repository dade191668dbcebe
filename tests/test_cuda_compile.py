"""CUDA kernels built with no GPU (CI): arch handling, the compile cache, PTX with its ISA, the
plan's kernels section, launch parameter packing, arch selection errors, and every kernel family
compiling for sm_87 (Orin) and sm_90 (Hopper). With a host C++ compiler, a few plans also run on
the CPU emulator of the CUDA execution model against the CPU reference.

Compilation tests skip when neither NVRTC (cuda-bindings) nor nvcc is installed.
"""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import edgert  # noqa: E402
from edgert.errors import DeviceError, EdgeRTError, PlanError  # noqa: E402
from edgert.kernels.cuda import compile as cc  # noqa: E402
from edgert.kernels.cuda import emulator  # noqa: E402
from edgert.kernels.cuda.library import supported_kinds  # noqa: E402
from edgert.kernels.cuda.plan_kernels import compile_for_plan, lower_plan  # noqa: E402
from edgert.plan import Plan, read_plan  # noqa: E402
from edgert.runtime.cuda import pack_params, select_arch  # noqa: E402

needs_compiler = pytest.mark.skipif(not cc.available(), reason="no NVRTC (cuda-bindings) and no nvcc")
needs_cxx = pytest.mark.skipif(not emulator.available(), reason="no host C++ compiler for the emulator")
ARCHES = ("sm_87", "sm_90")
_FAMILY = re.compile(r"gemm_(mma|fma)<[^>]*?(BStrided|BPointwiseConv|BIm2col)<(\w+)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERT_CUDA_CACHE", str(tmp_path / "cache"))


def _resnet_plan(dtype="float32"):
    from models import MODELS
    from test_gpu import to_float16
    case = MODELS["resnet"]
    model = case.build() if dtype == "float32" else to_float16(case.build())
    options = {"precision": "fp16", "precision_rules": [{"layer": "*", "precision": "fp16"}]} if dtype == "float16" else {}
    return edgert.build(model, cpu_only_aliases=False, shapes=case.shapes, **options)


def test_arch_names_normalize_and_bad_ones_are_clear():
    assert cc.normalize_arch(90) == cc.normalize_arch("sm_90") == cc.normalize_arch("compute_90") == "sm_90"
    assert cc.normalize_arch("sm_90a") == "sm_90a"
    with pytest.raises(EdgeRTError, match="sm_87"):
        cc.normalize_arch("hopper")


@needs_compiler
def test_sm72_is_refused_with_the_reason():
    if cc.compiler().major < 13:
        pytest.skip("a CUDA 12 compiler still builds sm_72")
    with pytest.raises(EdgeRTError, match="sm_72.*(CUDA 12|dropped)"):
        cc.compile_source('extern "C" __global__ void k() {}', "sm_72")


@needs_compiler
def test_compile_cache_and_ptx_isa(tmp_path):
    source = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] *= 2.f; }'
    first = cc.compile_source(source, "sm_90", ptx=True)
    assert first.cubin[:4] == b"\x7fELF" and first.ptx_isa and re.match(r"\d+\.\d+$", first.ptx_isa)
    assert list((tmp_path / "cache").glob(f"{first.key}.*"))
    again = cc.compile_source(source, "sm_90", ptx=True)
    assert again.cubin == first.cubin and again.key == first.key
    with pytest.raises(EdgeRTError, match="compilation"):
        cc.compile_source("this is not CUDA", "sm_90")


@needs_compiler
@pytest.mark.parametrize("arch", ARCHES)
def test_every_kernel_family_compiles(arch):
    """One kernel of every family (each GEMM loader in fp16/fp32, every generated kind) for the arch."""
    from test_gpu import all_cases, case_inputs, options_for
    kernels, definitions, headers, families = {}, {}, [], set()
    context = None
    for _, name, build, dtype in all_cases():
        model = build(dtype)
        plan = edgert.build(model, cpu_only_aliases=False, shapes={k: v.shape for k, v in case_inputs(name, model).items()},
                            **options_for(name, dtype))
        context, _, _ = lower_plan(plan.document, arch)
        for kernel, source in context.kernels.items():
            match = _FAMILY.search(source)
            signature = re.search(re.escape(kernel) + r"\(\s*(?:const\s+)?(\w+)", source).group(1)
            family = match.groups() if match else (kernel.rsplit("_", 1)[0], signature)
            if family not in families:
                families.add(family)
                kernels[kernel] = source
        definitions.update(context.definitions)
        headers += [h for h in context.headers if h not in headers]
    context.kernels, context.definitions, context.headers = kernels, definitions, headers
    result = cc.compile_source(context.source(), arch)
    assert result.cubin[:4] == b"\x7fELF"
    assert {f[0] for f in families} >= {"mma", "fma", "pointwise", "copy", "reduce", "softmax", "norm", "pool", "resize",
                                        "gather", "pad", "dwconv", "directconv", "deconv", "lrn", "argextreme"}


@needs_compiler
def test_plan_kernels_section_round_trips():
    plan = _resnet_plan("float16")
    document = plan.document
    document["kernels"] = {arch: compile_for_plan(document, arch) for arch in ARCHES}
    back = read_plan(Plan(document).to_bytes())
    for arch in ARCHES:
        section = back["kernels"][arch]
        assert section["arch"] == arch and len(section["launches"]) == len(back["layers"])
        assert all(m["cubin"][:4] == b"\x7fELF" for m in section["modules"])
        names = {launch["kernel"] for launches in section["launches"] for launch in launches}
        assert names <= set(section["kernel_modules"])
    assert back["kernels"]["sm_87"]["modules"][0]["cubin"] != back["kernels"]["sm_90"]["modules"][0]["cubin"]


def test_every_layer_kind_has_a_cuda_kernel():
    from edgert.ir.kinds import LayerKind
    from edgert.kernels.cuda.library import CPU_ONLY_KINDS
    missing = set(LayerKind) - supported_kinds() - CPU_ONLY_KINDS
    assert not missing, f"no CUDA lowering for {sorted(k.value for k in missing)}"
    assert not CPU_ONLY_KINDS & supported_kinds(), "a kind with a CUDA kernel is still listed as CPU-only"


def test_epilogues_run_inside_the_conv_and_matmul_kernels():
    plan = _resnet_plan()
    context, launches, _ = lower_plan(plan.document, "sm_90")
    for layer, entries in zip(plan.document["layers"], launches):
        if layer["kind"] in ("Convolution", "MatrixMultiply"):
            assert entries, layer["name"]
    functors = "\n".join(context.definitions.values())
    assert "< 0.0f ? 0.0f" in functors   # the fused ReLU
    assert "e.p[1]" in functors                                       # bias + residual inputs


def test_kernel_level_fusion_of_a_following_pointwise_layer():
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    k = numpy_helper.from_array(np.array(0.5, np.float32), "k")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Mul", ["c", "k"], ["m"]),
             helper.make_node("Exp", ["m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, k])
    plan = edgert.build(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), cpu_only_aliases=False)
    _, launches, fused = lower_plan(plan.document, "sm_90")
    assert fused and all(launches[int(consumer)] == [] for consumer in fused)


def test_pack_params_follows_the_cuda_abi():
    data = pack_params([["i32", 7], ["t", 3, 16], ["f32", 1.5], ["align", 8], ["i64", -2]],
                       lambda entry: 0x1000 + entry[1] * 0x100 + entry[2])
    assert len(data) == 4 + 4 + 8 + 4 + 4 + 8
    assert struct.unpack_from("<i", data, 0)[0] == 7 and struct.unpack_from("<Q", data, 8)[0] == 0x1310
    assert struct.unpack_from("<f", data, 16)[0] == 1.5 and struct.unpack_from("<q", data, 24)[0] == -2
    with pytest.raises(PlanError):
        pack_params([["bogus", 1]], lambda e: 0)


def test_arch_selection_errors_name_both_arches():
    section = {"modules": [{"cubin": b"", "ptx": None}]}
    assert select_arch({"sm_90": section}, "sm_90", "H200") == ("sm_90", False)
    with pytest.raises(DeviceError, match="sm_87.*H200.*sm_90"):
        select_arch({"sm_87": section}, "sm_90", "H200")
    with pytest.raises(PlanError, match="CPU"):
        select_arch({}, "sm_90", "H200")
    ptx = {"modules": [{"cubin": b"", "ptx": ".version 9.5", "ptx_isa": "9.5"}]}
    assert select_arch({"sm_80": ptx}, "sm_90", "H200", (9, 5)) == ("sm_80", True)
    with pytest.raises(DeviceError, match="ISA 9.5.*9.0"):
        select_arch({"sm_80": ptx}, "sm_90", "H200", (9, 0))


@needs_cxx
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_resnet_runs_on_the_emulator(dtype):
    from edgert.runtime.cuda import CudaEngine
    from helpers import random_inputs
    plan = _resnet_plan(dtype)
    plan.document["kernels"] = {"sm_90": compile_for_plan(plan.document, "sm_90", emulate=True)}
    from models import MODELS
    feeds = {k: v.astype(dtype) for k, v in random_inputs(MODELS["resnet"].build(), MODELS["resnet"].shapes).items()}
    context = CudaEngine(plan.document, driver=emulator.EmulatedDriver()).create_execution_context()
    context.poison()
    got = context.execute(feeds)["logits"].astype(np.float64)
    want = edgert.load(plan).create_execution_context().execute(feeds)["logits"].astype(np.float64)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= (1e-4 if dtype == "float32" else 1e-2)


@needs_cxx
def test_tf32_option_runs_fp32_products_on_tensor_cores():
    """``tf32=True``: fp32 convolutions and matrix products take the tf32 tensor-core kernel (inputs
    rounded to 10 mantissa bits, so the error is visibly above exact fp32 yet within 2e-3)."""
    from onnx import TensorProto, helper, numpy_helper
    from edgert.runtime.cuda import CudaEngine
    rng = np.random.default_rng()
    w = (rng.standard_normal((48, 32, 3, 3)) / 17).astype(np.float32)
    m = rng.standard_normal((48 * 10 * 10, 40)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "m"], ["y"])]
    graph = helper.make_graph(nodes, "tf32", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(m, "m")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rng.standard_normal((2, 32, 10, 10)).astype(np.float32)}
    for tf32, engine in ((True, "tf32"), (False, "fma")):
        plan = edgert.build(model, cpu_only_aliases=False, tf32=tf32)
        plan.document["kernels"] = {"sm_90": compile_for_plan(plan.document, "sm_90", emulate=True)}
        tactics = [launch["tactic"] for launches in plan.document["kernels"]["sm_90"]["launches"] for launch in launches]
        assert sum(f" {engine} " in t for t in tactics) == 2, tactics
        context = CudaEngine(plan.document, driver=emulator.EmulatedDriver()).create_execution_context()
        context.poison()
        got = context.execute(feeds)["y"].astype(np.float64)
        want = edgert.load(plan).create_execution_context().execute(feeds)["y"].astype(np.float64)
        err = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert (1e-6 < err <= 2e-3) if tf32 else err <= 1e-5, (tf32, err)


@needs_cxx
def test_layer_times_run_every_layer_between_events_on_the_emulator():
    """``layer_times`` (``bench --profile``, the API's IProfiler on CUDA) runs the schedule launch by launch: one
    time per layer that launches, in schedule order, and the same outputs as the graph replay."""
    from edgert.runtime.cuda import CudaEngine
    from helpers import random_inputs
    from models import MODELS
    plan = _resnet_plan("float32")
    plan.document["kernels"] = {"sm_90": compile_for_plan(plan.document, "sm_90", emulate=True)}
    feeds = random_inputs(MODELS["resnet"].build(), MODELS["resnet"].shapes)
    context = CudaEngine(plan.document, driver=emulator.EmulatedDriver()).create_execution_context()
    want = context.execute(feeds)["logits"]
    output = next(b for b in context.engine.outputs if b.name == "logits")
    context.poison()
    for binding, array in zip(context.engine.inputs, [feeds[b.name] for b in context.engine.inputs]):
        context.driver.upload(context.addresses[binding.tensor], array)
    times = context.layer_times()
    launched = []
    for layer, _ in context.layer_calls():
        if not launched or launched[-1] != layer:
            launched.append(layer)
    assert [layer for layer, _ in times] == launched and len(set(launched)) == len(launched)
    assert all(ms > 0 for _, ms in times)
    got = np.empty(output.shape, output.dtype)
    context.driver.download(got, context.addresses[output.tensor])
    np.testing.assert_array_equal(got, want)
