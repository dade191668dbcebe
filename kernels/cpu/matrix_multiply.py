"""CPU kernel: MatrixMultiply (attrs: trans_a, trans_b, epilogue); NumPy matmul semantics incl. 1-D operands.

Everything goes to BLAS through np.matmul with transposes as views. A stack of matrices times one
matrix is flattened into a single GEMM, and float16 is computed in float32 (NumPy has no half BLAS).
The prepare hook binds the same product (and the epilogue) to the layer's fixed arrays: float32 products of
contiguous operands to the native module (native.bind_gemm: NumPy's own cblas_sgemm on blocks of the output over
native_parallel.c's threads, the bias, activations and residual add applied to each block while it is in cache),
the others to blas.bind_gemm (column blocks over the worker pool).
"""

from __future__ import annotations

import numpy as np

from edgert.ir.kinds import LayerKind
from edgert.kernels.cpu import native
from edgert.kernels.cpu.blas import bind_gemm, gemm_threads, matmul
from edgert.kernels.cpu.epilogue import apply_epilogue, bind_epilogue
from edgert.kernels.cpu.prepared import sequence
from edgert.kernels.registry import register, register_prepare


def _transposed(x, flag):
    return x.swapaxes(-1, -2) if flag and x.ndim >= 2 else x


def matmul_into(a, b, out) -> None:
    """out = a @ b, written into ``out`` (contiguous, the broadcast result shape)."""
    gemm_threads(2 * out.size * (a.shape[-1] if a.ndim else 1))
    if a.dtype == np.float16:
        np.copyto(out, np.matmul(a.astype(np.float32), b.astype(np.float32)), casting="unsafe")
        return
    flops = 2 * out.size * (a.shape[-1] if a.ndim else 1)
    if a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous and out.flags.c_contiguous:
        matmul(a.reshape(-1, a.shape[-1]), b, out.reshape(-1, b.shape[-1]), flops)
    elif out.dtype == a.dtype == b.dtype and a.ndim and b.ndim:
        matmul(a, b, out, flops)
    elif out.dtype == a.dtype == b.dtype:
        np.matmul(a, b, out=out)
    else:
        np.copyto(out, np.matmul(a, b), casting="unsafe")


@register(LayerKind.MATRIX_MULTIPLY)
def matrix_multiply(attrs, inputs, outputs):
    a = _transposed(inputs[0], attrs.get("trans_a", False))
    b = _transposed(inputs[1], attrs.get("trans_b", False))
    matmul_into(a, b, outputs[0])
    apply_epilogue(attrs, inputs, outputs[0])


@register_prepare(LayerKind.MATRIX_MULTIPLY)
def prepare_matrix_multiply(attrs, inputs, outputs, workspace):
    trans_a, trans_b = bool(attrs.get("trans_a", False)), bool(attrs.get("trans_b", False))
    fused = native.bind_gemm(inputs[0], trans_a, inputs[1], trans_b, outputs[0], list(attrs.get("epilogue") or ()),
                             inputs)
    if fused is not None:
        product, rest = fused
        return sequence([product, bind_epilogue({"epilogue": rest}, inputs, outputs[0])])
    a = _transposed(inputs[0], attrs.get("trans_a", False))
    b = _transposed(inputs[1], attrs.get("trans_b", False))
    out = outputs[0]
    if not (out.dtype == a.dtype == b.dtype and out.dtype.kind == "f" and out.dtype != np.float16) \
            or not out.flags.c_contiguous or a.ndim == 0 or b.ndim == 0:
        return None
    flops = 2 * out.size * a.shape[-1]
    if a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous:   # a stack of matrices times one: one GEMM
        product = bind_gemm(a.reshape(-1, a.shape[-1]), b, out.reshape(-1, b.shape[-1]), flops)
    else:
        product = bind_gemm(a, b, out, flops)
    return sequence([product, bind_epilogue(attrs, inputs, out)])
