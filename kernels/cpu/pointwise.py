"""CPU kernel: PointWise, a fused chain of per-element layers evaluated block by block.

The output is processed in blocks of about BLOCK_ELEMENTS elements, and the whole program runs on
one block before the next, so each input is read once and the output written once while the
intermediates stay in cache. Each instruction is an ordinary per-element kernel.

The prepare hook runs the whole program in one native pass where the native module covers its
instructions and operands (native.bind_program: float32, operands of the output's shape or scalars), else
handles programs of one block: each instruction is bound once (through its own kind's
prepare hook where it has one) to fixed registers in the context's scratch memory.
"""

from __future__ import annotations

import functools

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu import native
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import lookup, lookup_prepare, register, register_prepare

BLOCK_ELEMENTS = 1 << 17  # 512 KiB of float32 per operand: a core's L2, few Python calls per layer


def blocks(shape: tuple):
    """Index tuples (ints for outer axes, one slice) covering ``shape`` in blocks of ~BLOCK_ELEMENTS."""
    axis, inner = len(shape), 1
    while axis > 0 and inner * shape[axis - 1] <= BLOCK_ELEMENTS:
        axis -= 1
        inner *= shape[axis]
    if axis == 0:
        yield None  # everything at once
        return
    split = axis - 1
    step = max(1, BLOCK_ELEMENTS // inner)
    for outer in np.ndindex(*shape[:split]):
        for start in range(0, shape[split], step):
            yield outer + (slice(start, min(start + step, shape[split])),)


def _part(array: np.ndarray, block: tuple, out_shape: tuple) -> np.ndarray:
    """The part of a (possibly broadcasting) input that meets the output block."""
    rank = len(out_shape)
    array = array.reshape((1,) * (rank - array.ndim) + array.shape)
    index = []
    for axis, i in enumerate(block):
        if array.shape[axis] == out_shape[axis]:
            index.append(i)
        else:  # a broadcast axis of size 1: keep it as a slice, or drop it where the output drops it
            index.append(slice(None) if isinstance(i, slice) else 0)
    return array[tuple(index)]


_resolved: dict[int, tuple] = {}


def _kernels(program: list) -> list:
    """The kernel of each instruction, resolved once per program (plans keep their attrs for good)."""
    cached = _resolved.get(id(program))
    if cached is None or cached[0] is not program:
        cached = (program, [lookup(LayerKind(instruction["kind"])) for instruction in program])
        _resolved[id(program)] = cached
    return cached[1]


def run_program(program: list, inputs: list, out: np.ndarray) -> None:
    kernels = _kernels(program)
    last = len(program) - 1
    if out.size <= BLOCK_ELEMENTS:  # one block: no slicing, fewest calls
        registers = list(inputs)
        for position, (instruction, kernel) in enumerate(zip(program, kernels)):
            args = [registers[r] if r >= 0 else None for r in instruction["args"]]
            target = out if position == last else \
                np.empty(np.broadcast_shapes(*(a.shape for a in args if a is not None)), out.dtype)
            kernel(instruction["attrs"], args, [target])
            registers.append(target)
        return
    for block in blocks(out.shape):
        if block is None:
            registers, target_out = list(inputs), out
        else:
            registers, target_out = [_part(x, block, out.shape) for x in inputs], out[block]
        for position, instruction in enumerate(program):
            args = [registers[r] if r >= 0 else None for r in instruction["args"]]
            if position == len(program) - 1:
                target = target_out
            else:
                target = np.empty(np.broadcast_shapes(*(a.shape for a in args if a is not None)), out.dtype)
            kernels[position](instruction["attrs"], args, [target])
            registers.append(target)


@register(LayerKind.POINTWISE)
def pointwise(attrs, inputs, outputs):
    run_program(attrs["program"], list(inputs), outputs[0])


@register_prepare(LayerKind.POINTWISE)
def prepare_pointwise(attrs, inputs, outputs, workspace):
    program, out = attrs["program"], outputs[0]
    fused = native.bind_program(program, list(inputs), out)   # one native pass over the data, any size
    if fused is not None:
        return fused
    if out.size > BLOCK_ELEMENTS:
        return None   # block by block: the kernel slices its operands per block
    registers, calls = list(inputs), []
    for position, instruction in enumerate(program):
        args = [registers[r] if r >= 0 else None for r in instruction["args"]]
        target = out if position == len(program) - 1 else \
            workspace.scratch(np.broadcast_shapes(*(a.shape for a in args if a is not None)), out.dtype)
        kind = LayerKind(instruction["kind"])
        prepare = lookup_prepare(kind)
        run = prepare(instruction["attrs"], args, [target], workspace) if prepare is not None else None
        calls.append(run or functools.partial(lookup(kind), instruction["attrs"], args, [target]))
        registers.append(target)
    return sequence(calls)
