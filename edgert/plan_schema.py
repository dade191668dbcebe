"""Structural validation of a decoded plan document, so the runtime can trust every index and size.

Checked here: types of every field the runtime reads, tensor ids in range, dtypes known, shapes
non-negative and bounded, constants inside the blob with the byte count their shape implies, and
arena offsets inside the arena. Unknown optional fields are ignored (forward compatibility).
"""

from __future__ import annotations

import numpy as np

from edgert.errors import PlanError
from edgert.ir.limits import MAX_DIM, MAX_RANK, MAX_TENSOR_BYTES

DTYPES = frozenset({"float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                    "int64", "uint64", "bool"})


def _fail(where: str, what: str):
    raise PlanError(f"plan is corrupt: {where} {what}")


def _expect(value, kind, where: str):
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        _fail(where, f"should be {getattr(kind, '__name__', kind)}, found {type(value).__name__}")
    return value


def _tensor_bytes(dtype: str, shape, where: str) -> int:
    if dtype not in DTYPES:
        _fail(where, f"has unknown dtype {dtype!r}")
    _expect(shape, list, f"{where} shape")
    if len(shape) > MAX_RANK:
        _fail(where, f"has rank {len(shape)} > {MAX_RANK}")
    count = 1
    for dim in shape:
        if not 0 <= _expect(dim, int, f"{where} dim") <= MAX_DIM:
            _fail(where, f"has dim {dim}, outside 0..{MAX_DIM}")
        count *= dim
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes > MAX_TENSOR_BYTES:
        _fail(where, f"claims {nbytes} bytes")
    return nbytes


def _validate_tensors(document: dict) -> list[int]:
    sizes = []
    for index, tensor in enumerate(_expect(document.get("tensors"), list, "tensors")):
        where = f"tensor {index}"
        _expect(tensor, dict, where)
        _expect(tensor.get("name"), str, f"{where} name")
        sizes.append(_tensor_bytes(tensor.get("dtype"), tensor.get("shape"), where))
        if "scale" in tensor:   # int8 codes (format 3): the scale of their values
            scale = tensor["scale"]
            if tensor["dtype"] != "int8" or isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                    or not 0 < scale < float("inf"):
                _fail(where, f"has scale {scale!r} on a {tensor['dtype']} tensor; a scale is a positive finite "
                             "number on an int8 tensor of codes")
    return sizes


def _tensor_ref(value, count: int, where: str, optional: bool = False) -> int:
    _expect(value, int, where)
    if not (-1 if optional else 0) <= value < count:
        _fail(where, f"refers to tensor {value}, but the plan has {count}")
    return value


def _validate_bindings(document: dict, tensors: list[dict]) -> None:
    bindings = _expect(document.get("bindings"), dict, "bindings")
    for direction in ("inputs", "outputs"):
        for index, binding in enumerate(_expect(bindings.get(direction), list, f"bindings.{direction}")):
            where = f"{direction[:-1]} binding {index}"
            _expect(binding, dict, where)
            _expect(binding.get("name"), str, f"{where} name")
            tensor = tensors[_tensor_ref(binding.get("tensor"), len(tensors), where)]
            if binding.get("dtype") != tensor["dtype"] or binding.get("shape") != tensor["shape"]:
                _fail(where, "disagrees with its tensor's dtype/shape")
            if "rows" in binding:
                _validate_rows(binding["rows"], tensor, tensors, where)


def _validate_rows(rows, tensor: dict, tensors: list[dict], where: str) -> None:
    """A data-dependent output: its row count is an int64 scalar tensor, its axis one of the output's."""
    _expect(rows, dict, f"{where} rows")
    count = tensors[_tensor_ref(rows.get("tensor"), len(tensors), f"{where} rows")]
    axis = _expect(rows.get("axis"), int, f"{where} rows axis")
    if count["dtype"] != "int64" or count["shape"] != [] or not 0 <= axis < len(tensor["shape"]):
        _fail(where, f"rows must name an int64 scalar count and an axis of shape {tensor['shape']}, found "
                     f"{count['dtype']} {count['shape']} and axis {axis}")


def _validate_constants(document: dict, tensors: list[dict], sizes: list[int]) -> None:
    blob_size = len(document.get("blob", b""))
    for index, entry in enumerate(_expect(document.get("constants"), list, "constants")):
        where = f"constant {index}"
        _expect(entry, dict, where)
        tensor = _tensor_ref(entry.get("tensor"), len(tensors), where)
        offset, nbytes = _expect(entry.get("offset"), int, f"{where} offset"), _expect(entry.get("nbytes"), int,
                                                                                      f"{where} nbytes")
        if nbytes != sizes[tensor]:
            _fail(where, f"holds {nbytes} bytes, its shape needs {sizes[tensor]}")
        if offset < 0 or offset + nbytes > blob_size:
            _fail(where, f"lies outside the constants blob ({offset}+{nbytes} > {blob_size})")


def _validate_layers(document: dict, count: int) -> None:
    for index, layer in enumerate(_expect(document.get("layers"), list, "layers")):
        where = f"layer {index}"
        _expect(layer, dict, where)
        _expect(layer.get("name"), str, f"{where} name")
        _expect(layer.get("kind"), str, f"{where} kind")
        _expect(layer.get("attrs", {}), dict, f"{where} attrs")
        for slot in _expect(layer.get("inputs"), list, f"{where} inputs"):
            _tensor_ref(slot, count, f"{where} input", optional=True)
        for slot in _expect(layer.get("outputs"), list, f"{where} outputs"):
            _tensor_ref(slot, count, f"{where} output")


def _validate_memory(document: dict, count: int, sizes: list[int]) -> None:
    memory = document.get("memory")
    if memory is None:
        return
    _expect(memory, dict, "memory")
    for name, pool in _expect(memory.get("pools", {}), dict, "memory.pools").items():
        where = f"memory pool {name!r}"
        _expect(pool, dict, where)
        arena = _expect(pool.get("arena_bytes"), int, f"{where} arena_bytes")
        if not 0 <= arena <= MAX_TENSOR_BYTES:
            _fail(where, f"claims an arena of {arena} bytes")
        for entry in _expect(pool.get("offsets", []), list, f"{where} offsets"):
            _expect(entry, list, f"{where} offset entry")
            if len(entry) != 2:
                _fail(where, "has a malformed offset entry")
            tensor = _tensor_ref(entry[0], count, f"{where} tensor")
            offset = _expect(entry[1], int, f"{where} offset")
            if offset < 0 or offset + sizes[tensor] > arena:
                _fail(where, f"places tensor {tensor} outside the arena")
    layers = len(document.get("layers", []))
    for key in ("elided", "overwrite", "cpu_only"):
        for step in _expect(memory.get(key, []), list, f"memory.{key}"):
            if not 0 <= _expect(step, int, f"memory.{key} step") < layers:
                _fail(f"memory.{key}", f"names layer {step}, but the plan has {layers}")


# Dim expressions of plans with optimization profiles (edgert.runtime.shapes): op -> number of int arguments.
_EXPRESSION_ARITY = {"const": 1, "dim": 2, "dim_add": 3, "dim_mul": 3, "dim_div": 3, "prod": 3, "infer": 0}


def _validate_profiles(document: dict) -> None:
    profiles = document.get("profiles")
    if profiles is None:
        return
    for index, profile in enumerate(_expect(profiles, list, "profiles")):
        where = f"optimization profile {index}"
        for name, ranges in _expect(_expect(profile, dict, where).get("inputs"), dict, f"{where} inputs").items():
            for key in ("min", "opt", "max"):
                for dim in _expect(_expect(ranges, dict, f"{where} {name!r}").get(key), list, f"{where} {name!r} {key}"):
                    _expect(dim, int, f"{where} {name!r} {key} dim")
    for index, layer in enumerate(document["layers"]):
        for entry in _expect(layer.get("dynamic", []), list, f"layer {index} dynamic"):
            where = f"layer {index} dim expression"
            if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], list) or \
                    not isinstance(entry[1], list) or not entry[1]:
                _fail(where, "is not a [path, expression] pair")
            path, expr = entry
            if _EXPRESSION_ARITY.get(expr[0]) != len(expr) - 1 or any(not isinstance(a, int) for a in expr[1:]):
                _fail(where, f"{expr!r} is not a known expression")
            target = layer.get("attrs", {})
            for key in path:
                ok = (isinstance(target, dict) and key in target) or \
                    (isinstance(target, list) and isinstance(key, int) and 0 <= key < len(target))
                if not ok:
                    _fail(where, f"names attr path {path!r}, which the layer does not have")
                target = target[key]


def validate_document(document: dict) -> None:
    header = _expect(document.get("header"), dict, "header")
    _expect(header.get("edgert_version", ""), str, "header edgert_version")
    _expect(document.get("blob", b""), (bytes, memoryview), "blob")
    sizes = _validate_tensors(document)
    tensors = document["tensors"]
    _validate_bindings(document, tensors)
    _validate_constants(document, tensors, sizes)
    _validate_layers(document, len(tensors))
    _validate_memory(document, len(tensors), sizes)
    _validate_profiles(document)
    _expect(document.get("kernels", {}), dict, "kernels")
