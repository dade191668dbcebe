"""Semantic validation at load: a plan re-signed after changing its layers' attrs, tensors or memory (a valid
checksum, wrong meaning) is a one-line PlanError naming what is wrong, never a kernel run on sizes that
disagree with its tensors; and the header is covered by the checksum (format 2)."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import numpy as np
import pytest

import edgert
import edgert.plan
from edgert.errors import PlanError
from edgert.plan import read_plan, write_plan
from plan_models import (INPUT_SHAPE, OUTPUT_SHAPE, build_small_cnn, decoded, layer_of_kind, resigned, small_cnn,
                         wide_model)


@pytest.fixture(scope="module")
def plan_bytes():
    return build_small_cnn()


def _pool(d, which="max"):
    return next(layer for layer in d["layers"] if layer["kind"] == "Pooling" and layer["attrs"]["type"] == which)


def _conv(d):
    return layer_of_kind(d, "Convolution")


def _output_tensor(d, layer):
    return d["tensors"][layer["outputs"][0]]


def _place(d, tensor_id, offset):
    for entry in d["memory"]["pools"]["cpu"]["offsets"]:
        if entry[0] == tensor_id:
            entry[1] = offset


def _wide_layer(d, kind):
    """Mutations named with _wide_layer apply to the wide model's plan (the test picks it by this name)."""
    return layer_of_kind(d, kind)


def _set_constant(d, tensor_id, value):
    entry = next(c for c in d["constants"] if c["tensor"] == tensor_id)
    blob = bytearray(d["blob"])
    blob[entry["offset"]:entry["offset"] + 8] = np.int64(value).tobytes()
    d["blob"] = bytes(blob)


MUTATIONS = {
    "pool pads 2^31-111": (lambda d: _pool(d)["attrs"].update(pads=[2**31 - 111] * 4), "Pooling"),
    "pool pads negative": (lambda d: _pool(d)["attrs"].update(pads=[-1, 0, 0, 0]), "'pads'"),
    "pool kernel larger": (lambda d: _pool(d)["attrs"].update(kernel=[5, 5]), "computes"),
    "pool kernel one value": (lambda d: _pool(d)["attrs"].update(kernel=[2]), "kernel"),
    "pool type unknown": (lambda d: _pool(d)["attrs"].update(type="median"), "'type'"),
    "pool type missing": (lambda d: _pool(d)["attrs"].pop("type"), "'type'"),
    "pool strides zero": (lambda d: _pool(d)["attrs"].update(strides=[0, 2]), "'strides'"),
    "pool strides huge": (lambda d: _pool(d)["attrs"].update(strides=[2**40, 2]), "'strides'"),
    "conv group zero": (lambda d: _conv(d)["attrs"].update(group=0), "'group'"),
    "conv group 2": (lambda d: _conv(d)["attrs"].update(group=2), "group"),
    "conv dilations as text": (lambda d: _conv(d)["attrs"].update(dilations="1,1"), "'dilations'"),
    "conv epilogue adds a missing input": (lambda d: _conv(d)["attrs"]["epilogue"].append({"op": "add", "input": 7}),
                                           "epilogue"),
    "conv epilogue bad activation": (lambda d: _conv(d)["attrs"]["epilogue"][0].update(type="relu6"), "'type'"),
    "conv output tensor shape": (lambda d: _output_tensor(d, _conv(d)).update(shape=[1, 4, 12, 13]), "computes"),
    "conv output tensor dtype": (lambda d: _output_tensor(d, _conv(d)).update(dtype="float16"), "computes"),
    "conv inputs swapped": (lambda d: _conv(d).update(inputs=_conv(d)["inputs"][::-1]), "Convolution"),
    "concat axis": (lambda d: layer_of_kind(d, "Concatenation")["attrs"].update(axis=3), "Concatenation"),
    "reshape element count": (lambda d: layer_of_kind(d, "Shuffle")["attrs"].update(reshape=[1, 289]), "reshape"),
    "softmax axes": (lambda d: layer_of_kind(d, "Softmax")["attrs"].update(axes=[5]), "axes"),
    "matmul epilogue input": (lambda d: layer_of_kind(d, "MatrixMultiply")["attrs"]["epilogue"][0].update(input=0),
                              "adds a tensor"),
    "kind changed": (lambda d: _pool(d).update(kind="Softmax"), "'axes'"),
    "kind unknown": (lambda d: _pool(d).update(kind="Convolution3000"), "unknown kind"),
    "device unknown": (lambda d: _pool(d).update(device="tpu:0"), "tpu"),
    "int beyond int64": (lambda d: _pool(d)["attrs"].update(p=2**64 - 1), "int64"),
    "layers out of order": (lambda d: d["layers"].insert(0, d["layers"].pop(1)), "before any layer writes it"),
    "layer writes a constant": (lambda d: _pool(d).update(outputs=[_conv(d)["inputs"][1]]), "constant"),
    "layer writes the input": (lambda d: _conv(d).update(outputs=[d["bindings"]["inputs"][0]["tensor"]]),
                               "graph input"),
    "output never written": (lambda d: d["layers"].pop(), "no layer writes"),
    "arena alignment zero": (lambda d: d["memory"].update(alignment=0), "alignment"),
    "arena offset misaligned": (lambda d: d["memory"]["pools"]["cpu"]["offsets"][0].__setitem__(1, 2), "offset 2"),
    "pool offsets missing": (lambda d: d["memory"]["pools"]["cpu"].pop("offsets"), "no offsets"),
    "pooling over its input from another offset": (lambda d: _place(d, _pool(d, "average")["outputs"][0], 256),
                                                   "writes over its input"),
    "resize roi too short": (lambda d: _wide_layer(d, "Resize")["attrs"].update(roi=[0.0, 1.0]), "roi"),
    "pointwise register undefined": (lambda d: _wide_layer(d, "PointWise")["attrs"]["program"][1].update(args=[9]),
                                     "registers"),
    "pointwise kind not per-element": (lambda d: _wide_layer(d, "PointWise")["attrs"]["program"][1].update(
        kind="Pooling"), "cannot hold"),
    "padding mode": (lambda d: _wide_layer(d, "Padding")["attrs"].update(mode="mirror"), "'mode'"),
    "gather index constant out of range": (lambda d: _set_constant(d, _wide_layer(d, "Gather")["inputs"][1], 99),
                                           "indices"),
    "constant in the arena": (lambda d: d["memory"]["pools"]["cpu"]["offsets"].append([_conv(d)["inputs"][1], 0]),
                              "constant"),
}


@pytest.fixture(scope="module")
def wide_plan_bytes():
    return edgert.build(wide_model()).to_bytes()


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_changed_meaning_is_a_plan_error(plan_bytes, wide_plan_bytes, name):
    mutate, expected = MUTATIONS[name]
    document = decoded(wide_plan_bytes if "_wide_layer" in mutate.__code__.co_names else plan_bytes)
    mutate(document)
    with pytest.raises(PlanError) as info:
        edgert.load(resigned(document))
    message = str(info.value)
    assert "\n" not in message and expected in message, message


@pytest.fixture(scope="module")
def int8_plan_bytes():
    calibration = [{"x": np.random.default_rng().standard_normal(INPUT_SHAPE).astype(np.float32)} for _ in range(3)]
    return edgert.build(small_cnn(), precision="int8", calib=calibration).to_bytes()


def _int8(d, kind):
    return layer_of_kind(d, kind)["attrs"]["int8"]


INT8_MUTATIONS = {
    "conv input scale negative": (lambda d: _int8(d, "Convolution").update(input_scales=[-1.0]), "input scales"),
    "conv input scale nan": (lambda d: _int8(d, "Convolution").update(input_scales=[float("nan")]), "input scales"),
    "conv input scales missing": (lambda d: _int8(d, "Convolution").pop("input_scales"), "input scales"),
    "conv weight scales short": (lambda d: _int8(d, "Convolution").update(weight_scales=[1.0, 1.0]), "weight scales"),
    "matmul weight scales long": (lambda d: _int8(d, "MatrixMultiply").update(weight_scales=[1.0] * 11),
                                  "weight scales"),
    "output scale zero": (lambda d: _int8(d, "Convolution").update(output_scale=0.0), "output_scale"),
}


@pytest.mark.parametrize("name", sorted(INT8_MUTATIONS))
def test_int8_scales_the_kernels_cannot_use_are_plan_errors(int8_plan_bytes, name):
    mutate, expected = INT8_MUTATIONS[name]
    document = decoded(int8_plan_bytes)
    mutate(document)
    with pytest.raises(PlanError, match=expected):
        edgert.load(resigned(document))


def test_two_input_bindings_on_one_tensor(plan_bytes):
    document = decoded(plan_bytes)
    twin = dict(document["bindings"]["inputs"][0], name="x_again")
    document["bindings"]["inputs"].append(twin)
    with pytest.raises(PlanError, match="repeats"):
        edgert.load(resigned(document))


def test_unchanged_plan_still_runs(plan_bytes):
    x = np.random.default_rng().standard_normal(INPUT_SHAPE).astype(np.float32)
    y = edgert.load(resigned(decoded(plan_bytes))).create_execution_context().execute({"x": x})["y"]
    assert y.shape == OUTPUT_SHAPE and np.allclose(y.sum(), 1.0, atol=1e-5)


def test_crafted_pooling_pads_exit_2_not_a_segfault(plan_bytes, tmp_path):
    """The issue's crash: pads of 2^31-111 on a pooling layer made `edgert run` die of SIGSEGV (exit 139)."""
    document = decoded(plan_bytes)
    _pool(document)["attrs"]["pads"] = [2**31 - 111] * 4
    path = tmp_path / "crafted.plan"
    path.write_bytes(resigned(document))
    done = subprocess.run([sys.executable, "-m", "edgert.tools.cli", "run", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "plan is corrupt" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_format_1_is_refused_naming_the_version(plan_bytes, monkeypatch):
    document = decoded(plan_bytes)
    monkeypatch.setattr(edgert.plan, "_format_version", lambda document: 1)
    old = write_plan(document)
    monkeypatch.undo()
    with pytest.raises(PlanError, match=r"format version 1 .*older.*rebuild"):
        read_plan(old)


def test_every_header_byte_is_covered_by_the_checksum(plan_bytes):
    """Format 1 accepted 66 of 200 single-byte header flips (free text, option values); now none is."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(plan_bytes)
    unpacker.read_map_header()
    unpacker.skip()
    unpacker.skip()
    header_end = unpacker.tell()
    accepted = []
    for position in range(header_end):
        for bit in (0, 7):
            data = bytearray(plan_bytes)
            data[position] ^= 1 << bit
            try:
                read_plan(bytes(data))
                accepted.append((position, bit))
            except PlanError:
                pass
    assert not accepted, f"{len(accepted)} header flips accepted, e.g. {accepted[:5]}"


def test_every_layer_kind_the_cpu_runs_has_an_attr_schema():
    """A kind added without a schema would make every plan holding it fail to load."""
    from edgert.ir.kinds import LayerKind
    from edgert.kernels import registry
    from edgert.runtime.attr_schema import SCHEMAS
    missing = sorted(kind.value for kind in registry.kinds("cpu") if kind not in SCHEMAS)
    assert not missing, f"kinds with CPU kernels but no attr schema: {missing}"


@pytest.mark.parametrize("value", [1e39, float("inf"), float("nan")])
def test_lrn_float_attributes_must_be_finite_float32(value):
    from edgert.ir.kinds import LayerKind
    from edgert.runtime.attr_schema import check_attrs
    with pytest.raises(PlanError, match="finite float32"):
        check_attrs(LayerKind.LRN, {"size": 3, "alpha": value, "beta": 0.75, "bias": 1.0}, "layer 'lrn'")
    check_attrs(LayerKind.LRN, {"size": 3, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, "layer 'lrn'")
