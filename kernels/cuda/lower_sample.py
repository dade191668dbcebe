"""Einsum (the equations the importer does not lower to matrix products), GridSample and RoiAlign.

One thread per output element, as the CPU references compute it (kernels/cpu/einsum.py, grid_sample.py,
roi_align.py): Einsum sums the products over its contracted letters in nested loops (ellipses, broadcasting and
diagonals resolved at build time into per-operand strides); GridSample maps each coordinate to pixel space,
clamps or reflects it and sums its 1, 2 or 4 taps per spatial dim; RoiAlign averages (or takes the max of) its bin's
bilinear samples. They compute in float (double for float64), so they agree with the references within the
numerics contract, not bit for bit.
"""

from __future__ import annotations

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import BLOCK, Launch, LowerContext, grid_for, lowering, ptr


# -- Einsum ------------------------------------------------------------------------------------------------
def einsum_letters(equation: str, shapes: list) -> tuple[list[str], str, dict[str, int]]:
    """(operand letters, output letters, size of each letter) with ellipses spelled as digits ('0' the outermost
    broadcast dim), following NumPy's einsum: ellipsis dims align to the right and broadcast, an implicit output is
    the ellipsis dims then the letters used once, alphabetically."""
    left, arrow, right = equation.replace(" ", "").partition("->")
    terms = left.split(",")
    if len(terms) != len(shapes):
        raise UnsupportedError(f"Einsum {equation!r}: {len(terms)} operands in the equation, {len(shapes)} inputs")
    widths = [len(shape) - (len(term) - 3) if "..." in term else 0 for term, shape in zip(terms, shapes)]
    width = max(widths, default=0)
    ellipsis = "".join(str(d) for d in range(width))
    expanded = [term.replace("...", ellipsis[width - w:]) for term, w in zip(terms, widths)]
    if arrow:
        output = right.replace("...", ellipsis)
    else:
        letters = "".join(t for t in terms).replace("...", "")
        output = ellipsis + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    sizes: dict[str, int] = {}
    for term, shape in zip(expanded, shapes):
        if len(term) != len(shape):
            raise UnsupportedError(f"Einsum {equation!r}: operand letters {term!r} for a rank-{len(shape)} input")
        for letter, dim in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(dim))
    return expanded, output, sizes


@lowering(LayerKind.EINSUM)
def lower_einsum(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    inputs, out = layer["inputs"], layer["outputs"][0]
    shapes = [ctx.shape(t) for t in inputs]
    terms, output, sizes = einsum_letters(layer["attrs"]["equation"], shapes)
    out_shape, dtype = ctx.shape(out), ctx.dtype(out)
    count = cg.numel(out_shape)
    if count == 0:
        return []
    t = cg.compute_ctype(dtype) if dtype != "bool" else "i32"
    names = {letter: f"c{index}" for index, letter in enumerate(sorted(sizes))}
    lines = ["i64 rest = i;"]
    for letter in reversed(output):
        lines.append(f"const i64 {names[letter]} = rest % {sizes[letter]}; rest /= {sizes[letter]};")
    contracted = [letter for letter in sorted(sizes) if letter not in output]
    offsets = []
    for term, shape in zip(terms, shapes):
        strides = cg.contiguous_strides(shape)
        parts = [f"{names[letter]} * {stride}" for letter, dim, stride in zip(term, shape, strides) if dim != 1]
        offsets.append(" + ".join(parts) or "0")
    product = " * ".join(f"{t}({cg.load(f'in{k}', offsets[k], ctx.dtype(tensor))})" for k, tensor in enumerate(inputs))
    loops = "".join(f"for (i64 {names[letter]} = 0; {names[letter]} < {sizes[letter]}; ++{names[letter]}) "
                    for letter in contracted)
    lines += [f"{t} total = 0;", f"{loops}total += {product};"]
    args = [f"{cg.ctype(dtype)}* out"] + [f"const {cg.ctype(ctx.dtype(tensor))}* __restrict__ in{k}"
                                          for k, tensor in enumerate(inputs)]
    body = "\n    ".join(lines)
    source = f"""
extern "C" __global__ void __launch_bounds__({BLOCK}) KERNEL({", ".join(args)}) {{
    const i64 i = i64(blockIdx.x) * {BLOCK} + threadIdx.x;
    if (i >= {count}) return;
    {body}
    out[i] = {cg.store_value('total', dtype)};
}}
"""
    return [Launch(ctx.kernel("einsum", source), grid_for(count), (BLOCK, 1, 1), [ptr(out)] + [ptr(t) for t in inputs],
                   tactic="einsum-direct")]
