/* edgert.kernels.cpu._native's matrix products: NumPy's own BLAS (its cblas_sgemm, found by blas.py in the library
 * NumPy loaded and handed over as an address) called on blocks of the output over native_parallel.c's threads, each
 * block followed by the layer's epilogue (bias, activations, residual: a pointwise_ukernels.h program) while it is in
 * cache. BLAS stays single-threaded (blas.py): the split is here, a few µs per product instead of the Python pool's
 * GIL hand-offs. The blocks depend on the shapes only, never on the thread count, so one and several threads give
 * the same bits. */
#include <string.h>

#include "native_conv.h"
#include "native_parallel.h"
#include "pointwise_ukernels.h"

/* CBLAS's constants (the same in every CBLAS) */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*Sgemm32)(int, int, int, int32_t, int32_t, int32_t, float, const float *, int32_t, const float *,
                        int32_t, float, float *, int32_t);
typedef void (*Sgemm64)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                        int64_t, float, float *, int64_t);

/* multiply-adds per block (~50 µs on one core), at most GEMM_MOST_PARTS blocks (each re-packs a slice of an operand:
 * more would cost more than balancing gains on 2 cores), columns a multiple of 16, at least
 * GEMM_MIN_COLUMNS (narrower blocks lose more to BLAS's packing than the split gains), rows at least GEMM_MIN_ROWS */
#define GEMM_PART_WORK ((int64_t)1 << 22)
#define GEMM_MOST_PARTS 4
#define GEMM_MIN_COLUMNS 128
#define GEMM_MIN_ROWS 32

enum { G_BATCH, G_M, G_N, G_K, G_A_BATCH, G_B_BATCH, G_LDA, G_LDB, G_TRANS_A, G_TRANS_B, G_FIELDS };

typedef struct {
    void *sgemm;
    int ilp64;
    const float *a, *b, *bias, *residual;
    float *out;
    int64_t g[G_FIELDS];
    int64_t row_blocks, column_blocks;
    const PointwiseInstruction *program;
    int instructions;
} GemmJob;

static void gemm_part(void *context, int64_t index, int thread) {
    const GemmJob *job = context;
    const int64_t *g = job->g;
    (void)thread;
    int64_t per_batch = job->row_blocks * job->column_blocks, batch = index / per_batch, rest = index % per_batch;
    int64_t rb = rest / job->column_blocks, cb = rest % job->column_blocks;
    int64_t r0 = g[G_M] * rb / job->row_blocks, r1 = g[G_M] * (rb + 1) / job->row_blocks;
    /* column blocks on multiples of 16 floats (a cache line) */
    int64_t units = (g[G_N] + 15) / 16, c0 = units * cb / job->column_blocks * 16,
            c1 = units * (cb + 1) / job->column_blocks * 16;
    if (c1 > g[G_N]) c1 = g[G_N];
    if (r1 <= r0 || c1 <= c0) return;
    const float *a = job->a + batch * g[G_A_BATCH] + (g[G_TRANS_A] ? r0 : r0 * g[G_LDA]);
    const float *b = job->b + batch * g[G_B_BATCH] + (g[G_TRANS_B] ? c0 * g[G_LDB] : c0);
    float *out = job->out + batch * g[G_M] * g[G_N] + r0 * g[G_N] + c0;
    int ta = g[G_TRANS_A] ? CBLAS_TRANS : CBLAS_NO_TRANS, tb = g[G_TRANS_B] ? CBLAS_TRANS : CBLAS_NO_TRANS;
    if (job->ilp64)
        ((Sgemm64)job->sgemm)(CBLAS_ROW_MAJOR, ta, tb, r1 - r0, c1 - c0, g[G_K], 1.0f, a, g[G_LDA], b, g[G_LDB], 0.0f,
                              out, g[G_N]);
    else
        ((Sgemm32)job->sgemm)(CBLAS_ROW_MAJOR, ta, tb, (int32_t)(r1 - r0), (int32_t)(c1 - c0), (int32_t)g[G_K], 1.0f,
                              a, (int32_t)g[G_LDA], b, (int32_t)g[G_LDB], 0.0f, out, (int32_t)g[G_N]);
    if (!job->program) return;
    /* the epilogue: inputs out, then the bias (a row of N) and the residual (out's shape) when given */
    uint8_t scalar[3] = {0, 0, 0};
    for (int64_t r = r0; r < r1; ++r) {
        float *row = job->out + batch * g[G_M] * g[G_N] + r * g[G_N];
        const float *inputs[3];
        int count = 0;
        inputs[count++] = row + c0;
        if (job->bias) inputs[count++] = job->bias + c0;
        if (job->residual) inputs[count++] = job->residual + (row - job->out) + c0;
        pointwise_run(job->program, job->instructions, inputs, scalar, count, row + c0, 0, c1 - c0);
    }
}

static int64_t buffer_floats(const Py_buffer *buffer) { return (int64_t)(buffer->len / (Py_ssize_t)sizeof(float)); }

/* gemm(sgemm, ilp64, a, b, out, geometry, program=None, bias=None, residual=None): for each of `batch` products,
 * out[i] (M x N, contiguous) = op(a)[i] @ op(b)[i] (a and b row-major, lda / ldb floats per row, batch strides in
 * floats, 0 to share one matrix; op transposes when the flag is set), then the epilogue `program` (inputs: out, then
 * the bias of N floats and the residual of out's shape when given). sgemm: the address of a CBLAS cblas_sgemm (ilp64:
 * its integers are 64-bit). geometry: int64s batch, M, N, K, a_batch, b_batch, lda, ldb, trans_a, trans_b. */
PyObject *native_gemm(PyObject *self, PyObject *args) {
    Py_buffer a, b, out, geometry, program = {0}, bias = {0}, residual = {0};
    PyObject *program_object = Py_None, *bias_object = Py_None, *residual_object = Py_None, *result = NULL;
    unsigned long long address;
    int ilp64;
    (void)self;
    if (!PyArg_ParseTuple(args, "Kpy*y*w*y*|OOO", &address, &ilp64, &a, &b, &out, &geometry, &program_object,
                          &bias_object, &residual_object))
        return NULL;
    if (program_object != Py_None && PyObject_GetBuffer(program_object, &program, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (bias_object != Py_None && PyObject_GetBuffer(bias_object, &bias, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (residual_object != Py_None && PyObject_GetBuffer(residual_object, &residual, PyBUF_C_CONTIGUOUS) < 0) goto done;
    GemmJob job = {(void *)(uintptr_t)address, ilp64, a.buf, b.buf, bias.buf, residual.buf, out.buf, {0}, 1, 1, NULL, 0};
    if (!address || geometry.len != (Py_ssize_t)(G_FIELDS * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "gemm: expected a cblas_sgemm address and 10 int64s of geometry");
        goto done;
    }
    memcpy(job.g, geometry.buf, sizeof job.g);
    int64_t *g = job.g, a_rows = g[G_TRANS_A] ? g[G_K] : g[G_M], a_cols = g[G_TRANS_A] ? g[G_M] : g[G_K];
    int64_t b_rows = g[G_TRANS_B] ? g[G_N] : g[G_K], b_cols = g[G_TRANS_B] ? g[G_K] : g[G_N];
    int64_t a_extent, b_extent, out_floats, work;
    int bad = g[G_BATCH] < 1 || g[G_M] < 1 || g[G_N] < 1 || g[G_K] < 1 || g[G_A_BATCH] < 0 || g[G_B_BATCH] < 0
              || g[G_LDA] < a_cols || g[G_LDB] < b_cols || (g[G_TRANS_A] | g[G_TRANS_B]) & ~(int64_t)1;
    if (!bad && (checked_product(2, (int64_t[]){g[G_BATCH] - 1, g[G_A_BATCH]}, &a_extent) < 0
                 || checked_product(2, (int64_t[]){g[G_BATCH] - 1, g[G_B_BATCH]}, &b_extent) < 0
                 || checked_product(3, (int64_t[]){g[G_BATCH], g[G_M], g[G_N]}, &out_floats) < 0
                 || checked_product(4, (int64_t[]){g[G_BATCH], g[G_M], g[G_N], g[G_K]}, &work) < 0))
        goto done;
    if (!bad) {   /* the last matrix's last element must lie inside each buffer */
        a_extent += (a_rows - 1) * g[G_LDA] + a_cols;
        b_extent += (b_rows - 1) * g[G_LDB] + b_cols;
        bad = a_extent > buffer_floats(&a) || b_extent > buffer_floats(&b) || out_floats != buffer_floats(&out)
              || (bias.buf && buffer_floats(&bias) != g[G_N]) || (residual.buf && buffer_floats(&residual) != out_floats)
              || (!ilp64 && (g[G_M] > INT32_MAX || g[G_N] > INT32_MAX || g[G_K] > INT32_MAX || g[G_LDA] > INT32_MAX
                             || g[G_LDB] > INT32_MAX));
    }
    if (bad) {
        PyErr_Format(PyExc_ValueError, "gemm: geometry (batch %lld, M %lld, N %lld, K %lld, batch strides %lld/%lld, "
                     "lda %lld, ldb %lld, transposes %lld/%lld) does not fit buffers of %lld, %lld and %lld floats (bias "
                     "%lld, residual %lld)", (long long)g[0], (long long)g[1], (long long)g[2], (long long)g[3],
                     (long long)g[4], (long long)g[5], (long long)g[6], (long long)g[7], (long long)g[8],
                     (long long)g[9], (long long)buffer_floats(&a), (long long)buffer_floats(&b),
                     (long long)buffer_floats(&out), (long long)(bias.buf ? buffer_floats(&bias) : 0),
                     (long long)(residual.buf ? buffer_floats(&residual) : 0));
        goto done;
    }
    if ((char *)out.buf < (char *)a.buf + a.len && (char *)a.buf < (char *)out.buf + out.len) bad = 1;
    if ((char *)out.buf < (char *)b.buf + b.len && (char *)b.buf < (char *)out.buf + out.len) bad = 1;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "gemm: the output overlaps an operand");
        goto done;
    }
    int inputs = 1 + (bias.buf != NULL) + (residual.buf != NULL);
    if (program.buf) {
        job.instructions = (int)(program.len / (Py_ssize_t)sizeof(PointwiseInstruction));
        job.program = program.buf;
        if (program.len % (Py_ssize_t)sizeof(PointwiseInstruction) || job.instructions + inputs > PW_MAX_REGISTERS
            || pointwise_check(job.program, job.instructions, inputs) < 0) {
            PyErr_Format(PyExc_ValueError, "gemm: malformed epilogue program of %zd bytes (%d inputs)", program.len,
                         inputs);
            goto done;
        }
    } else if (inputs > 1) {
        PyErr_SetString(PyExc_ValueError, "gemm: a bias or residual without an epilogue program reading it");
        goto done;
    }
    /* blocks: by the work, spread over the batch first, then columns, then rows */
    int64_t parts = work / GEMM_PART_WORK, per_batch;
    if (parts > GEMM_MOST_PARTS) parts = GEMM_MOST_PARTS;
    per_batch = parts / g[G_BATCH];
    if (per_batch > 1) {
        int64_t most_columns = g[G_N] / GEMM_MIN_COLUMNS > 1 ? g[G_N] / GEMM_MIN_COLUMNS : 1;
        job.column_blocks = per_batch < most_columns ? per_batch : most_columns;
        int64_t rows_wanted = per_batch / job.column_blocks, most_rows = g[G_M] / GEMM_MIN_ROWS > 1 ? g[G_M] / GEMM_MIN_ROWS : 1;
        job.row_blocks = rows_wanted < most_rows ? rows_wanted : most_rows;
    }
    int threads = parallel_threads();
    Py_BEGIN_ALLOW_THREADS
    parallel_run(gemm_part, &job, g[G_BATCH] * job.row_blocks * job.column_blocks, threads);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    PyBuffer_Release(&geometry);
    if (program.buf) PyBuffer_Release(&program);
    if (bias.buf) PyBuffer_Release(&bias);
    if (residual.buf) PyBuffer_Release(&residual);
    return result;
}
