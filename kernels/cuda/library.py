"""CUDA kernel library: each layer of a plan is lowered, at build time, to CUDA C source (generated
from the layer's attrs and baked shapes, instantiating the templates in ``*.cuh``) and to launch
specs (kernel name, grid, block, parameters as data). The device only loads cubins and replays the
launches: it never compiles and never decides anything.

A launch's parameters are a flat list the runtime packs with C alignment rules:
``["t", tensor, byte_offset]`` (a tensor's device address), ``["a", aux, byte_offset]`` (a table this
plan ships for the kernels), ``["d", derived, byte_offset]`` (a constant the runtime transposes once at
load time, e.g. weights in the order a kernel reads them), ``["w", byte_offset]`` (the context's
scratch workspace), ``["c", byte_offset]`` (its counters, zero before and after every kernel), ``["0"]`` (null),
``["i32"|"i64"|"f32"|"f64", value]``, ``["align", n]`` (pad to n bytes, for struct parameters).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg

HERE = Path(__file__).parent
BLOCK = 256
# Per-element kinds lowered as one-instruction programs (PointWise carries its own program).
ELEMENTWISE_KINDS = {LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.UNARY, LayerKind.SCALE,
                     LayerKind.PARAMETRIC_RELU, LayerKind.SELECT, LayerKind.CAST, LayerKind.IDENTITY,
                     LayerKind.REFORMAT, LayerKind.POINTWISE}
SM_COUNTS = {75: 40, 80: 108, 86: 84, 87: 16, 89: 128, 90: 132, 100: 148, 110: 20, 120: 170}


@dataclasses.dataclass
class Launch:
    kernel: str
    grid: tuple
    block: tuple
    params: list
    smem: int = 0
    tactic: str = ""

    def to_plain(self) -> dict:
        return {"kernel": self.kernel, "grid": [int(g) for g in self.grid], "block": [int(b) for b in self.block],
                "smem": int(self.smem), "params": self.params, "tactic": self.tactic}


def header(name: str) -> str:
    return (HERE / name).read_text().replace("#pragma once", "")


class LowerContext:
    """What lowering needs to know about the plan, and what it produces besides launches."""

    def __init__(self, document: dict, arch: int, sm_count: int | None = None):
        self.document = document
        self.tensors = document["tensors"]
        self.arch = arch
        self.sm_count = sm_count or SM_COUNTS.get(arch, 32)
        self.kernels: dict[str, str] = {}      # name -> source defining it
        self.definitions: dict[str, str] = {}  # helper types (epilogue functors) shared by kernels
        self.headers: list[str] = []            # .cuh files the kernels need, in include order
        self.aux: list[bytes] = []
        self.derived: list[dict] = []          # constants the runtime re-lays out at load time
        self.workspace_bytes = 0
        self.counters = 0                       # u32 counters kept at zero between kernels
        self._addresses = _tensor_addresses(document)
        # fp32 matrix products on tf32 tensor cores (sm_80+): the build option `tf32`, off by default
        options = (document.get("header") or {}).get("options") or {}
        self.tf32 = bool(options.get("tf32")) and arch >= 80
        self.tactic_policy = None               # kernels.cuda.tactics policy; None: the cost model
        # Profile plans: no fast path whose use depends on a dim's parity (vector loads of rows, pixel pairs,
        # swapped operands), so that one kernel form serves every shape of the profile (kernels/cuda/generic.py)
        self.conservative = False

    # -- tensors --
    def shape(self, tensor: int) -> tuple:
        return tuple(int(d) for d in self.tensors[tensor]["shape"])

    def dtype(self, tensor: int) -> str:
        return self.tensors[tensor]["dtype"]

    def itemsize(self, tensor: int) -> int:
        return np.dtype(self.dtype(tensor)).itemsize

    def aligned(self, tensor: int, extra_bytes: int = 0, alignment: int = 16) -> bool:
        """True when the tensor's device address (+ extra_bytes) is a multiple of ``alignment``."""
        place = self._addresses.get(tensor)
        base = 256 if place is None else place[1]
        return (base + extra_bytes) % alignment == 0

    def byte_range(self, tensor: int):
        """(pool, start, stop) of an arena tensor, None for inputs and constants."""
        place = self._addresses.get(tensor)
        if place is None or place[0] is None:
            return None
        # a plan lowered at smaller shapes than its memory plan's (optimization profiles) keeps the planned
        # extents, so that overlap decisions (and so the kernels' form) do not change with the shapes
        planned = self.document.get("planned_tensors") or self.tensors
        nbytes = cg.numel(planned[tensor]["shape"]) * self.itemsize(tensor)
        return place[0], place[1], place[1] + nbytes

    def placed_at(self, tensor: int, base: int, byte_offset: int) -> bool:
        """True when ``tensor`` lives exactly ``byte_offset`` bytes into ``base`` (a planner alias)."""
        a, b = self._addresses.get(tensor), self._addresses.get(base)
        return a is not None and b is not None and a[0] is not None and a[0] == b[0] and a[1] == b[1] + byte_offset

    def overlaps(self, a: int, b: int) -> bool:
        ra, rb = self.byte_range(a), self.byte_range(b)
        return ra is not None and rb is not None and ra[0] == rb[0] and ra[1] < rb[2] and rb[1] < ra[2]

    # -- products --
    def need(self, *names: str) -> None:
        for name in names:
            if name not in self.headers:
                self.headers.append(name)

    def kernel(self, base: str, source: str) -> str:
        """Register a kernel whose source spells its name ``KERNEL``; identical sources share one kernel."""
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        name = f"{base}_{digest}"
        self.kernels.setdefault(name, source.replace("KERNEL", name))
        return name

    def add_aux(self, array: np.ndarray) -> list:
        data = np.ascontiguousarray(array).tobytes()
        for index, existing in enumerate(self.aux):
            if existing == data:
                return ["a", index, 0]
        self.aux.append(data)
        return ["a", len(self.aux) - 1, 0]

    def derive(self, tensor: int, perm: Sequence[int] | None = None, dtype: str | None = None) -> list:
        """A constant transposed by ``perm`` and/or converted to ``dtype``, computed once by the runtime
        when it loads the plan (weights in the order and type a kernel reads them)."""
        if not self.is_constant(tensor):
            raise UnsupportedError(f"tensor {self.tensors[tensor]['name']!r} must be a constant to be re-laid out")
        rank = len(self.shape(tensor))
        entry = {"tensor": int(tensor), "perm": [int(p) for p in (perm if perm is not None else range(rank))],
                 "dtype": str(dtype or self.dtype(tensor))}
        if entry not in self.derived:
            self.derived.append(entry)
        return ["d", self.derived.index(entry), 0]

    def operand(self, tensor: int, dtype: str) -> list:
        """Pointer param reading ``tensor`` as ``dtype``: the tensor itself, or a converted copy of a constant."""
        if self.dtype(tensor) == dtype:
            return ptr(tensor)
        if not self.is_constant(tensor):
            raise UnsupportedError(f"tensor {self.tensors[tensor]['name']!r} is {self.dtype(tensor)} where the kernel "
                                   f"computes in {dtype}, and is no constant to convert")
        return self.derive(tensor, dtype=dtype)

    def is_constant(self, tensor: int) -> bool:
        place = self._addresses.get(tensor)
        return place is not None and place[0] is None

    def need_counters(self, count: int) -> None:
        self.counters = max(self.counters, int(count))

    def need_workspace(self, nbytes: int) -> None:
        self.workspace_bytes = max(self.workspace_bytes, int(nbytes))

    def define(self, name: str, source: str) -> str:
        self.definitions.setdefault(name, source)
        return name

    def prefix(self) -> str:
        return "\n".join([header("common.cuh"), cg.HELPERS] + [header(name) for name in self.headers]
                         + list(self.definitions.values()))

    def source(self) -> str:
        return "\n".join([self.prefix()] + list(self.kernels.values()))


def _tensor_addresses(document: dict) -> dict[int, tuple]:
    """tensor -> (pool or None, byte offset whose alignment is known)."""
    addresses = {}
    for entry in document.get("constants", []):
        addresses[int(entry["tensor"])] = (None, int(entry["offset"]))
    memory = document.get("memory") or {}
    for name, pool in (memory.get("pools") or {}).items():
        for tensor, offset in pool.get("offsets", []):
            addresses[int(tensor)] = (name, int(offset))
    return addresses


# -- registry ------------------------------------------------------------------------------------
Lowering = Callable[[LowerContext, dict, dict], list]
_LOWERINGS: dict[LayerKind, Lowering] = {}


def lowering(*kinds: LayerKind):
    def decorate(fn: Lowering) -> Lowering:
        for kind in kinds:
            if kind in _LOWERINGS:
                raise RuntimeError(f"a CUDA lowering for {kind.value} is already registered")
            _LOWERINGS[kind] = fn
        return fn
    return decorate


# Kinds that run on the CPU backend only (a gpu_kernels build containing one fails naming it): none today. Every kind
# of issue 15 has its CUDA kernel (lower_detect.py, lower_sample.py, lower_compact.py); a new kind without one goes here.
CPU_ONLY_KINDS: frozenset = frozenset()


def lower_layer(ctx: LowerContext, layer: dict, fusion: dict | None = None) -> list[Launch]:
    """Launches for one plan layer; ``fusion`` = {"program", "inputs", "output"} of a folded consumer."""
    from edgert.kernels.cuda import (  # noqa: F401
        lower_compact, lower_conv, lower_copy, lower_detect, lower_gemm, lower_int8, lower_reduce, lower_rnn,
        lower_sample, lower_scan,
    )
    kind = LayerKind(layer["kind"])
    if (layer.get("attrs") or {}).get("int8") and not str(layer.get("device", "")).startswith("dla"):
        return lower_int8.lower_int8_layer(ctx, layer, fusion or {})   # the CPU int8 reference's numerics
    if kind == LayerKind.REFORMAT and (layer.get("attrs") or {}).get("to_dtype"):
        return lower_int8.reformat_codes(ctx, layer)   # int8 codes: quantize / dequantize (edgert.int8_codes)
    if str(layer.get("device", "")).startswith("dla"):
        raise UnsupportedError(f"layer {layer['name']!r} is placed on {layer['device']}; only GPU layers get CUDA "
                               "kernels")
    fn = _LOWERINGS.get(kind)
    if fn is None:
        raise UnsupportedError(f"layer {layer['name']!r}: no CUDA kernel for {kind.value} yet "
                               "(run it on the CPU: build without a GPU target)")
    return fn(ctx, layer, fusion or {})


def supported_kinds() -> set[LayerKind]:
    from edgert.kernels.cuda import (  # noqa: F401
        lower_compact, lower_conv, lower_copy, lower_detect, lower_gemm, lower_reduce, lower_rnn, lower_sample,
        lower_scan,
    )
    return set(_LOWERINGS)


def grid_for(count: int, block: int = BLOCK) -> tuple:
    return (max(1, -(-int(count) // block)), 1, 1)


def ptr(tensor: int, offset: int = 0) -> list:
    return ["t", int(tensor), int(offset)]


# -- per-element programs ------------------------------------------------------------------------
def layer_program(layer: dict) -> list:
    """The layer as a program: PointWise's own, or one instruction reading every input."""
    if LayerKind(layer["kind"]) == LayerKind.POINTWISE:
        return list(layer["attrs"]["program"])
    return [{"kind": layer["kind"], "attrs": layer.get("attrs") or {}, "args": list(range(len(layer["inputs"])))}]


def input_index(ctx: LowerContext, tensor: int, out_shape: Sequence[int], var: str,
                coordinates: dict | None = None) -> str:
    """Index expression reading ``tensor`` (broadcast to ``out_shape``) at flat output index ``var``.

    ``coordinates`` maps an output axis to a variable already holding that coordinate (the channel
    of a convolution epilogue), used when the input varies along that axis only.
    """
    shape = ctx.shape(tensor)
    strides = cg.broadcast_strides(shape, out_shape)
    if cg.numel(shape) == 1:
        return "0"
    if strides == cg.contiguous_strides(out_shape) and cg.numel(shape) == cg.numel(out_shape):
        return var
    varying = [axis for axis, s in enumerate(strides) if s != 0 and out_shape[axis] != 1]
    if coordinates and len(varying) == 1 and varying[0] in coordinates:
        axis = varying[0]
        return coordinates[axis] if strides[axis] == 1 else f"{coordinates[axis]} * {strides[axis]}"
    return cg.index_expr(var, out_shape, strides)


def program_body(ctx: LowerContext, program: list, sources: list, out_dtype: str) -> tuple[list[str], str]:
    """C statements evaluating ``program`` and the final value converted to ``out_dtype``'s compute type.

    ``sources`` gives each input register as (expression, compute type); a register is materialized
    in a local variable the first time an instruction reads it.
    """
    lines: list[str] = []
    registers: list = [None] * len(sources)
    for index, (expr, ctype) in enumerate(sources):
        lines.append(f"{ctype} r{index} = {expr};")
        registers[index] = (f"r{index}", ctype)
    for instruction in program:
        args = [registers[a] if a >= 0 else None for a in instruction["args"]]
        expr, ctype = cg.emit_instruction(instruction["kind"], instruction.get("attrs") or {}, args)
        name = f"r{len(registers)}"
        lines.append(f"{ctype} {name} = {expr};")
        registers.append((name, ctype))
    value, ctype = registers[-1]
    return lines, cg.cast_expr(value, ctype, out_dtype)


def pointwise_kernel(ctx: LowerContext, program: list, inputs: list[int], output: int) -> Launch:
    """One thread per output element: read each input (broadcast), run the program, store."""
    out_shape, out_dtype = ctx.shape(output), ctx.dtype(output)
    count = cg.numel(out_shape)
    itype = cg.index_type(count, *(cg.numel(ctx.shape(t)) for t in inputs if t >= 0))
    params, sources, args = [ptr(output)], [], [f"{cg.ctype(out_dtype)}* out"]
    for position, tensor in enumerate(inputs):
        if tensor < 0:
            sources.append(("0", "float"))
            continue
        dtype = ctx.dtype(tensor)
        restrict = "" if ctx.overlaps(tensor, output) else " __restrict__"
        args.append(f"const {cg.ctype(dtype)}*{restrict} in{position}")
        params.append(ptr(tensor))
        index = input_index(ctx, tensor, out_shape, "i")
        sources.append((cg.load(f"in{position}", index, dtype), cg.compute_ctype(dtype)))
    lines, value = program_body(ctx, program, sources, out_dtype)
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    {itype} i = {itype}(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = {cg.store_value(value, out_dtype)};
}}
"""
    name = ctx.kernel("pointwise", source)
    return Launch(name, grid_for(count), (BLOCK, 1, 1), params, tactic="pointwise")


@lowering(*ELEMENTWISE_KINDS)
def lower_elementwise(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    output = layer["outputs"][0]
    if cg.numel(ctx.shape(output)) == 0:
        return []
    return [pointwise_kernel(ctx, layer_program(layer), list(layer["inputs"]), output)]
