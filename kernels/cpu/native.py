"""The native CPU kernels (``_native.c``, ``native_conv.c``, ``conv_ukernels.c``, ``pointwise_ukernels.c``): depthwise,
direct and pointwise (1x1) convolution, windowed 2-D pooling, the im2col of 2-D convolutions (whole or by output-row tiles), fused
per-element programs and the LSTM time loop, over float32.

NumPy has no formulation of the first three that is not several times slower than their arithmetic (each
gathers every window first or makes one strided pass per tap); the C module walks each plane once. A chain of
per-element layers (GELU's five, SiLU's two) costs NumPy one pass over memory per layer; the C interpreter
runs the whole chain per L1-sized tile. It is built at install when a C compiler is present (pyproject's
ext-modules, optional); without it the NumPy kernels run. ``status()`` says which (with the instruction set
and thread count), and ``edgert bench`` prints it. ``EDGERT_CPU_NATIVE=0`` turns the module off (to compare
the two paths).

The binders return a callable that runs the layer with its arrays bound (the depthwise and pooling ones may write over
their input, see _native.c: marked ``overlap_safe``), or None when the layer is not one the module covers (then the
NumPy prepare hook goes on as before). The kernels split themselves, in C, over native_parallel.c's threads (as many
as the worker pool's: ``set_threads`` at bind time) when the work is large enough: convolutions by output rows,
column tiles and channel blocks or planes, matrix products by output blocks, per-element programs by chunks, softmax
and layer normalization by rows (only im2col still splits over the Python pool, threads.py).
"""

from __future__ import annotations

import functools
import os
import struct

import numpy as np

from edgert.kernels.cpu import threads
from edgert.kernels.cpu.prepared import overlap_safe

try:
    from edgert.kernels.cpu import _native
    _ERROR = None
except ImportError as error:   # not built: no C compiler at install, or a source checkout never installed
    _native, _ERROR = None, error

ENV_SWITCH = "EDGERT_CPU_NATIVE"
DIRECT_SWITCH = "EDGERT_CPU_DIRECT"
KERNELS = ("depthwise convolution", "direct convolution", "pointwise (1x1) convolution", "2-D max/average pooling",
           "global average pooling", "im2col of 2-D convolutions",
           "fused per-element programs (GELU, SiLU, HardSwish, Mish, sigmoid/tanh chains)", "softmax", "layer normalization",
           "LSTM time loop")


def enabled() -> bool:
    return _native is not None and os.environ.get(ENV_SWITCH, "1") != "0"


def status() -> str:
    """One line for reports: whether the native kernels run, and why not."""
    if _native is None:
        return f"NumPy only (edgert.kernels.cpu._native is not built: {_ERROR}; reinstall with a C compiler)"
    if not enabled():
        return f"NumPy only ({ENV_SWITCH}=0)"
    return (f"native ({_native.isa()}, convolutions {_native.conv_isa()}, {threads.usable_cores()} threads): "
            + ", ".join(KERNELS))


# below this many multiply-adds, waking a worker of the pool costs more than the half it saves (im2col's split)
PARALLEL_MIN_WORK = 1 << 19


def _split_by_planes(call, planes: int):
    """``call(first, count)`` over every plane: the native kernel splits itself by plane ranges over native_parallel.c's
    threads when the work deserves it (never when the output starts over its input with smaller planes: output plane
    p then covers input planes below p, which a range that starts lower may still have to read)."""
    _native.set_threads(threads.thread_count())
    return functools.partial(call, 0, planes)


def _fits(*arrays) -> bool:
    return all(a is None or (a.dtype == np.float32 and a.flags.c_contiguous and a.size) for a in arrays)


def _geometry(x, out_spatial, channels, kernel, strides, dilations, begins) -> bytes:
    """The int64 geometry record of _native.c: planes, channels, input and output sizes, window."""
    n, c, height, width = x.shape
    return np.array([n * c, channels, height, width, *out_spatial, *kernel, *strides, *dilations, *begins],
                    dtype=np.int64).tobytes()


def bind_depthwise(x, w, bias, out, params):
    """out = depthwise_conv2d(x, w) + bias for a 2-D convolution with group == C_in == C_out; params from
    conv_params. None when the module is off or the arrays are not contiguous float32."""
    kernel, strides, dilations, begins, _ = params
    if not enabled() or x.ndim != 4 or not _fits(x, w, bias, out) or min(begins) < 0 \
            or w.shape[0] != x.shape[1] or out.shape[1] != x.shape[1]:
        return None
    geometry = _geometry(x, out.shape[2:], x.shape[1], kernel, strides, dilations, begins)
    call = functools.partial(_native.depthwise_conv2d, x, w, bias, out, geometry)
    return overlap_safe(_split_by_planes(call, x.shape[0] * x.shape[1]))


def bind_pool(x, out, average: bool, divisor, params):
    """2-D max pooling, or average pooling dividing by ``divisor`` (the taps that count: an int or an
    (out_h, out_w) array). None when the module is off or the arrays are not contiguous float32."""
    kernel, strides, dilations, begins, _ = params
    if not enabled() or x.ndim != 4 or not _fits(x, out) or min(begins) < 0:
        return None
    counts = None
    if average:
        counts = np.ascontiguousarray(np.broadcast_to(np.asarray(divisor, np.float32), out.shape[2:]))
    geometry = _geometry(x, out.shape[2:], x.shape[1], kernel, strides, dilations, begins)
    call = functools.partial(_native.pool2d, x, out, counts, geometry)
    return overlap_safe(_split_by_planes(call, x.shape[0] * x.shape[1]))



def bind_im2col(x, columns, out_spatial, params):
    """columns (C x taps, out_h x out_w) = the column matrix of x (1, C, H, W) for a single-group 2-D convolution
    with output size ``out_spatial``, rows in (channel, kernel row, kernel column) order: the weights' own. None
    when the module is off or the arrays are not contiguous float32."""
    kernel, strides, dilations, begins, _ = params
    if not enabled() or x.ndim != 4 or x.shape[0] != 1 or not _fits(x, columns) or min(begins) < 0:
        return None
    geometry = _geometry(x, out_spatial, x.shape[1], kernel, strides, dilations, begins)
    call, planes, workers = functools.partial(_native.im2col, x, columns, geometry), x.shape[1], threads.thread_count()
    if workers == 1 or columns.size // 4 < PARALLEL_MIN_WORK:   # a copy: ~4 elements per multiply-add
        return functools.partial(call, 0, planes)
    parts = [functools.partial(call, lo, hi - lo) for lo, hi in threads.split(planes, workers)]
    return threads.parallel(parts, functools.partial(call, 0, planes))


def bind_im2col_rows(x, columns, out_spatial, params, row_begin: int, row_count: int):
    """Like bind_im2col for output rows [row_begin, row_begin + row_count) only (a tile of the column matrix:
    columns is (C x taps, row_count x out_w)), on the calling thread. None when the module is off or the arrays
    are not contiguous float32."""
    kernel, strides, dilations, begins, _ = params
    if not enabled() or x.ndim != 4 or x.shape[0] != 1 or not _fits(x, columns) or min(begins) < 0:
        return None
    geometry = _geometry(x, out_spatial, x.shape[1], kernel, strides, dilations, begins)
    return functools.partial(_native.im2col, x, columns, geometry, 0, x.shape[1], row_begin, row_count)


CONV_BLOCK = 8   # output channels per block of the direct kernel's packed weights (conv_ukernels.h)


def pack_direct_weights(w: np.ndarray) -> np.ndarray:
    """(M, C, kh, kw) weights as conv2d_direct reads them: (ceil(M / CONV_BLOCK), C x kh x kw, CONV_BLOCK), zero
    rows past the last output channel."""
    m = w.shape[0]
    blocks = -(-m // CONV_BLOCK)
    padded = np.zeros((blocks * CONV_BLOCK, int(np.prod(w.shape[1:]))), np.float32)
    padded[:m] = w.reshape(m, -1)
    return np.ascontiguousarray(padded.reshape(blocks, CONV_BLOCK, -1).transpose(0, 2, 1))


def direct_span() -> int:
    """Outputs of a row the direct (and pointwise) kernel computes at once (three vectors of 16 with AVX-512: 48, else
    two of 8: 16), 0 without it (or with EDGERT_CPU_DIRECT=0, to compare both with im2col + GEMM and BLAS products)."""
    if not enabled() or os.environ.get(DIRECT_SWITCH, "1") == "0":
        return 0
    return 48 if _native.conv_isa() == "avx512" else 16


def activation_program(activations: list) -> bytes | None:
    """The records of a chain of activations ([{"type", "alpha", "beta"}...]) over one input, for a kernel that applies
    them in its own pass (conv2d_direct); None when one is not covered."""
    return encode_program([{"kind": "Activation", "attrs": step, "args": [index]}
                           for index, step in enumerate(activations)]) if activations else None


def bind_conv_direct(x, packed, bias, out, params, program: bytes | None = None):
    """out = activations(conv2d(x, w) + bias) straight from padded input rows (no column matrix) for a single-image,
    single-group 2-D float32 convolution, ``packed`` from pack_direct_weights, ``program`` from activation_program
    (applied to each row tile while it is in cache); split by output rows over native_parallel.c's threads when
    the work deserves it. None when the module is off or the arrays do not fit."""
    kernel, strides, dilations, begins, _ = params
    if not enabled() or x.ndim != 4 or x.shape[0] != 1 or not _fits(x, packed, bias, out) or min(begins) < 0 \
            or np.may_share_memory(x, out):
        return None
    geometry = _geometry(x, out.shape[2:], x.shape[1], kernel, strides, dilations, begins)
    _native.set_threads(threads.thread_count())
    return functools.partial(_native.conv2d_direct, x, packed, bias, out, geometry, out.shape[1], 0, out.shape[2],
                             program)


def epilogue_program(steps: list, inputs: list, out) -> tuple[bytes | None, object, list]:
    """(records, residual, rest): the leading epilogue steps (epilogue.py) as a per-element program over the output
    (register 0) and at most one residual (register 1: an added input of the output's shape apart from it), for a
    kernel that applies it to each tile in cache (conv2d_pointwise); ``rest`` are the steps it does not cover."""
    covered, residual = [], None
    for step in steps:
        if step["op"] == "add" and residual is None:
            other = inputs[step["input"]]
            if not (_fits(other) and other.shape == out.shape) or np.may_share_memory(other, out):
                break
            residual = other
        elif step["op"] != "activation":
            break
        covered.append(step)
    first_result = 1 if residual is None else 2   # results are numbered after the inputs
    program, current = [], 0
    for step in covered:
        if step["op"] == "activation":
            program.append({"kind": "Activation", "attrs": step, "args": [current]})
        else:
            program.append({"kind": "ElementWise", "attrs": {"op": "sum"}, "args": [current, 1]})
        current = first_result + len(program) - 1
    records = encode_program(program) if program else None
    if program and records is None:
        return None, None, list(steps)
    return records, residual, list(steps[len(covered):])


def bind_conv_pointwise(x, packed, bias, out, program: bytes | None = None, residual=None):
    """out (M, P) = activations(packed (from pack_direct_weights of (M, C) weights) @ x (C, P) + bias [+ residual])
    for float32 arrays, ``program`` from epilogue_program applied to each tile of columns in cache; split over
    native_parallel.c's threads by column tiles and output-channel blocks when the work deserves it. None when the module
    is off or the arrays do not fit."""
    if not enabled() or x.ndim != 2 or out.ndim != 2 or not _fits(x, packed, bias, out, residual) \
            or x.shape[1] != out.shape[1] or np.may_share_memory(x, out):
        return None
    (channels, columns), out_channels = x.shape, out.shape[0]
    _native.set_threads(threads.thread_count())
    return functools.partial(_native.conv2d_pointwise, x, packed, bias, out, channels, out_channels, 0, out_channels, 0,
                             columns, program, residual)


def gemm_epilogue(steps: list, inputs: list, out) -> tuple[bytes | None, object, object, list]:
    """(records, bias, residual, rest): the leading epilogue steps (epilogue.py) of a matrix product as a per-element
    program over each row of the output (register 0), at most one bias (a row of the output's width, broadcast over
    its rows) and one residual (an added input of the output's shape apart from it), for native_gemm.c; ``rest``:
    the steps it does not cover."""
    covered, bias, residual = [], None, None
    width = out.shape[-1]
    for step in steps:
        if step["op"] == "add":
            other = inputs[step["input"]]
            if not _fits(other) or np.may_share_memory(other, out):
                break
            if bias is None and other.size == width and other.shape[-1:] == (width,) and other.ndim <= out.ndim:
                bias = other
            elif residual is None and other.shape == out.shape:
                residual = other
            else:
                break
        elif step["op"] != "activation":
            break
        covered.append(step)
    registers = {id(array): 1 + index for index, array in enumerate(a for a in (bias, residual) if a is not None)}
    first_result = 1 + len(registers)
    program, current = [], 0
    for step in covered:
        if step["op"] == "activation":
            program.append({"kind": "Activation", "attrs": step, "args": [current]})
        else:
            program.append({"kind": "ElementWise", "attrs": {"op": "sum"},
                            "args": [current, registers[id(inputs[step["input"]])]]})
        current = first_result + len(program) - 1
    records = encode_program(program) if program else None
    if program and records is None:
        return None, None, None, list(steps)
    return records, bias, residual, list(steps[len(covered):])


def bind_gemm(a, trans_a: bool, b, trans_b: bool, out, steps: list, inputs: list):
    """(run, rest): out = op(a) @ op(b) (NumPy's matmul broadcasting over leading dims; op transposes the last two
    when the flag is set) with the leading epilogue ``steps`` fused (gemm_epilogue), as blocks of BLAS products over
    native_parallel.c's threads; ``rest`` the steps left to run after it. None when the module is off, NumPy's BLAS
    has no cblas_sgemm this module finds, or the arrays are not contiguous float32 matrices (or stacks) whose
    leading dims are the output's or all 1."""
    from edgert.kernels.cpu import blas
    sgemm = blas.sgemm() if enabled() else None
    if sgemm is None or a.ndim < 2 or b.ndim < 2 or not _fits(a, b, out) or out.ndim < 2 \
            or np.may_share_memory(a, out) or np.may_share_memory(b, out):
        return None
    k, m = (a.shape[-2], a.shape[-1]) if trans_a else (a.shape[-1], a.shape[-2])
    n = b.shape[-2] if trans_b else b.shape[-1]
    if (b.shape[-1] if trans_b else b.shape[-2]) != k or out.shape[-2:] != (m, n):
        return None
    lda, ldb = a.shape[-1], b.shape[-1]
    if b.ndim == 2 and not trans_a and a.ndim > 2:   # a stack times one matrix: one product of all the rows
        batch, m, a_step, b_step = 1, int(np.prod(a.shape[:-1])), 0, 0
        if out.shape[:-1] != a.shape[:-1]:
            return None
    else:
        lead = out.shape[:-2]
        batch = int(np.prod(lead, dtype=np.int64))
        steps_of = []
        for x in (a, b):
            x_lead = (1,) * (len(lead) - (x.ndim - 2)) + x.shape[:-2]
            if len(x_lead) != len(lead):
                return None
            if all(d == 1 for d in x_lead):
                steps_of.append(0)
            elif x_lead == lead:
                steps_of.append(x.shape[-1] * x.shape[-2])
            else:
                return None   # a partial broadcast: NumPy's matmul
        a_step, b_step = steps_of
    if batch * m == 1:   # one row (a classifier head): NumPy's matmul (BLAS's gemv) is 3x faster than sgemm blocks
        return None
    records, bias, residual, rest = gemm_epilogue(steps, inputs, out)
    blas.set_threads(1)   # the blocks are split here: BLAS's own threads would fight them (and spin)
    geometry = np.array([batch, m, n, k, a_step, b_step, lda, ldb, int(trans_a), int(trans_b)], np.int64).tobytes()
    _native.set_threads(threads.thread_count())
    return functools.partial(_native.gemm, sgemm[0], sgemm[1], a, b, out, geometry, records, bias, residual), rest


# Fused per-element programs (pointwise_ukernels.h): opcodes in the C enum's order, per layer kind
_ELEMENTWISE_CODES = {"sum": 0, "sub": 1, "prod": 2, "div": 3, "max": 4, "min": 5}
_UNARY_CODES = {"neg": 6, "abs": 7, "sqrt": 8, "recip": 9, "exp": 10, "erf": 11}
_ACTIVATION_CODES = {"tanh": 12, "sigmoid": 13, "relu": 14, "leaky_relu": 15, "clip": 16, "hard_sigmoid": 17,
                     "hard_swish": 18, "gelu_erf": 19, "gelu_tanh": 20, "swish": 21, "mish": 22, "elu": 23}
_INSTRUCTION = struct.Struct("<iiiff")   # PointwiseInstruction: op, arg0, arg1, alpha, beta
_MAX_REGISTERS = 32


def _name(value) -> str:
    """An enum member's value or a plain string (plans carry strings, passes enum members)."""
    return str(getattr(value, "value", value))


def _opcode(kind, attrs: dict) -> int | None:
    table, key = {"ElementWise": (_ELEMENTWISE_CODES, "op"), "Unary": (_UNARY_CODES, "op"),
                  "Activation": (_ACTIVATION_CODES, "type")}.get(_name(kind), (None, None))
    return None if table is None or attrs.get(key) is None else table.get(_name(attrs[key]))


def encode_program(program: list) -> bytes | None:
    """The C records of a PointWise program ([{"kind", "attrs", "args"}...], args indexing registers, inputs
    first); None when an instruction is one the native interpreter does not have."""
    records = []
    for instruction in program:
        attrs, args = instruction.get("attrs") or {}, list(instruction["args"])
        code = _opcode(instruction["kind"], attrs)
        if code is None or len(args) != (2 if code < 6 else 1) or any(a is None or a < 0 for a in args):
            return None
        with np.errstate(over="ignore"):   # a huge alpha is inf in float32, as the kernels compute it
            alpha, beta = (float(np.float32(attrs.get(name) or 0.0)) for name in ("alpha", "beta"))
        records.append(_INSTRUCTION.pack(code, args[0], args[1] if len(args) > 1 else -1, alpha, beta))
    return b"".join(records)


def bind_program(program: list, inputs: list, out):
    """run() evaluating a PointWise program over fixed float32 arrays in one native pass, split by chunks over
    native_parallel.c's threads when large. None when the module is off, an instruction is not covered, or an input is
    neither out's shape nor a scalar (broadcasts stay with NumPy) or overlaps out without being it."""
    if not enabled() or not _fits(out, *inputs) or len(inputs) + len(program) > _MAX_REGISTERS:
        return None
    for x in inputs:
        if x.size != 1 and x.shape != out.shape:
            return None
        if np.may_share_memory(x, out) and not (x.size == out.size and x.ctypes.data == out.ctypes.data):
            return None
    records = encode_program(program)
    if records is None:
        return None
    flat = out.reshape(-1)
    arrays = tuple(x.reshape(-1) for x in inputs)
    _native.set_threads(threads.thread_count())   # large programs split themselves (native_elementwise.c)
    return functools.partial(_native.pointwise, records, arrays, flat)


def lstm_steps(projection, r_t, h, c, y, direction: int, reverse: bool) -> None:
    """The time loop of one LSTM direction with ONNX's default cell: projection (steps, batch, 4 hidden) = the
    inputs' projections with both biases, r_t (hidden, 4 hidden) = R transposed, h and c (batch, hidden) the state
    (updated in place), y (steps, directions, batch, hidden) written at ``direction``. All float32, contiguous."""
    steps, batch, width = projection.shape
    hidden = width // 4
    stride = y.shape[1] * batch * hidden
    _native.lstm(projection, np.ascontiguousarray(r_t), h, c, y.reshape(-1), direction * batch * hidden, stride,
                 steps, batch, hidden, bool(reverse))


def isa() -> str:
    """The instruction set the native kernels run with, or "" without the module."""
    return _native.isa() if _native is not None else ""


def bind_softmax(x, out, axes: tuple):
    """run() computing softmax over ``axes`` of float32 ``x`` into ``out`` (may be x itself) in one native pass
    per row, rows split over native_parallel.c's threads when large. None unless ``axes`` are the trailing axes of C-contiguous
    float32 arrays that are disjoint or the same memory."""
    ndim = x.ndim
    if not enabled() or not _fits(x, out) or x.shape != out.shape or ndim == 0 \
            or sorted(a % ndim for a in axes) != list(range(ndim - len(axes), ndim)):
        return None
    if np.may_share_memory(x, out) and x.ctypes.data != out.ctypes.data:
        return None
    cols = int(np.prod(x.shape[ndim - len(axes):], dtype=np.int64))
    rows = x.size // cols
    _native.set_threads(threads.thread_count())   # large ones split themselves by rows (native_elementwise.c)
    return functools.partial(_native.softmax, x.reshape(-1), out.reshape(-1), cols)


def bind_row_means(planes, out):
    """run() writing the mean of each row of float32 ``planes`` (rows, cols) into ``out`` (rows,): global average
    pooling in one native pass (NumPy's reduce costs 3-5x as much on the 7x7-56x56 planes of classifiers and
    squeeze-excite blocks). None unless both are C-contiguous float32 arrays apart from each other."""
    if not enabled() or planes.ndim != 2 or not _fits(planes, out) or out.shape != planes.shape[:1] \
            or np.may_share_memory(planes, out):
        return None
    return functools.partial(_native.row_means, planes, out, planes.shape[1])


def bind_layernorm(x, out, axes: tuple, scale, bias, epsilon: float):
    """run() normalizing float32 ``x`` over its trailing ``axes`` into ``out`` (may be x itself), times scale plus
    bias (each None or one row's worth, broadcasting over the rest), one native pass per row, rows split over
    native_parallel.c's threads when large. None for anything else (groups, leading axes, other broadcasts, other dtypes)."""
    ndim = x.ndim
    if not enabled() or not _fits(x, out) or x.shape != out.shape or ndim == 0 \
            or sorted(a % ndim for a in axes) != list(range(ndim - len(axes), ndim)):
        return None
    cols = int(np.prod(x.shape[ndim - len(axes):], dtype=np.int64))
    for affine in (scale, bias):
        if affine is not None and (affine.dtype != np.float32 or affine.size != cols
                                   or np.broadcast_shapes(affine.shape, x.shape) != x.shape):
            return None
    if np.may_share_memory(x, out) and x.ctypes.data != out.ctypes.data:
        return None
    scale, bias = (None if a is None else np.ascontiguousarray(a).reshape(-1) for a in (scale, bias))
    _native.set_threads(threads.thread_count())   # large ones split themselves by rows (native_elementwise.c)
    return functools.partial(_native.layernorm, x.reshape(-1), out.reshape(-1), cols, scale, bias, float(epsilon))
