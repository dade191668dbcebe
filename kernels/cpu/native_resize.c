/* edgert.kernels.cpu._native's separable 2-D resize (linear or cubic over the last two axes of float32 planes): each
 * part, a block of output rows of one plane, resizes the input rows that block reads along the width into a
 * per-thread buffer, then blends them along the height into the output, over native_parallel.c's threads. NumPy's
 * path makes a pass (or a BLAS product) per axis and tap over whole tensors; this writes each output once. Each
 * output is computed the same way whichever part holds it, so one and several threads give the same bits. */
#include <stdlib.h>
#include <string.h>

#include "native_conv.h"
#include "native_parallel.h"

/* output floats per part (~20 µs of blending on one core) */
#define RESIZE_PART_OUTPUTS ((int64_t)1 << 15)

typedef struct {
    const float *x;
    float *out;
    int64_t planes, in_h, in_w, out_h, out_w, row_taps, col_taps, row_blocks;
    const int64_t *row_index, *col_index;   /* (out_h, row_taps), (out_w, col_taps): clamped source rows / columns */
    const float *row_weight, *col_weight;
    float *rows[PARALLEL_MAX_THREADS];       /* per thread: in_h x out_w, the input rows resized along the width */
} ResizeJob;

static void resize_part(void *context, int64_t index, int thread) {
    ResizeJob *job = context;
    int64_t plane = index / job->row_blocks, block = index % job->row_blocks;
    int64_t first = job->out_h * block / job->row_blocks, last = job->out_h * (block + 1) / job->row_blocks;
    if (last <= first) return;
    const float *x = job->x + plane * job->in_h * job->in_w;
    float *out = job->out + plane * job->out_h * job->out_w, *rows = job->rows[thread];
    int64_t low = job->in_h, high = -1, out_w = job->out_w;
    for (int64_t i = first * job->row_taps; i < last * job->row_taps; ++i) {
        if (job->row_index[i] < low) low = job->row_index[i];
        if (job->row_index[i] > high) high = job->row_index[i];
    }
    for (int64_t h = low; h <= high; ++h) {   /* along the width: the rows this block reads */
        const float *source = x + h * job->in_w;
        float *row = rows + h * out_w;
        for (int64_t ox = 0; ox < out_w; ++ox) {
            const int64_t *taps = job->col_index + ox * job->col_taps;
            const float *weights = job->col_weight + ox * job->col_taps;
            float sum = weights[0] * source[taps[0]];
            for (int64_t k = 1; k < job->col_taps; ++k) sum += weights[k] * source[taps[k]];
            row[ox] = sum;
        }
    }
    for (int64_t oy = first; oy < last; ++oy) {   /* along the height: a blend of whole rows, vectorized */
        const int64_t *taps = job->row_index + oy * job->row_taps;
        const float *weights = job->row_weight + oy * job->row_taps;
        float *target = out + oy * out_w;
        const float *row = rows + taps[0] * out_w;
        float weight = weights[0];
        for (int64_t ox = 0; ox < out_w; ++ox) target[ox] = weight * row[ox];
        for (int64_t k = 1; k < job->row_taps; ++k) {
            row = rows + taps[k] * out_w;
            weight = weights[k];
            for (int64_t ox = 0; ox < out_w; ++ox) target[ox] += weight * row[ox];
        }
    }
}

static int indices_within(const Py_buffer *indices, int64_t limit) {
    const int64_t *values = indices->buf;
    for (Py_ssize_t i = 0; i < indices->len / (Py_ssize_t)sizeof(int64_t); ++i)
        if (values[i] < 0 || values[i] >= limit) return 0;
    return 1;
}

/* resize2d(x, out, planes, in_h, in_w, out_h, out_w, row_index, row_weight, col_index, col_weight): out[p][oy][ox] =
 * sum_j row_weight[oy][j] * sum_k col_weight[ox][k] * x[p][row_index[oy][j]][col_index[ox][k]], every index inside the
 * input (int64 indices, float32 weights, as many taps per output in each table). */
PyObject *native_resize2d(PyObject *self, PyObject *args) {
    Py_buffer x, out, row_index, row_weight, col_index, col_weight;
    long long planes, in_h, in_w, out_h, out_w;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*LLLLLy*y*y*y*", &x, &out, &planes, &in_h, &in_w, &out_h, &out_w, &row_index,
                          &row_weight, &col_index, &col_weight))
        return NULL;
    ResizeJob job = {x.buf, out.buf, planes, in_h, in_w, out_h, out_w, 0, 0, 1, row_index.buf, col_index.buf,
                     row_weight.buf, col_weight.buf, {NULL}};
    int threads = 1;
    if (planes < 1 || in_h < 1 || in_w < 1 || out_h < 1 || out_w < 1 || row_index.len % (8 * out_h)
        || col_index.len % (8 * out_w) || row_index.len == 0 || col_index.len == 0
        || row_weight.len * 2 != row_index.len || col_weight.len * 2 != col_index.len) {
        PyErr_SetString(PyExc_ValueError, "resize2d: expected >= 1 planes and sizes, and int64 index / float32 weight "
                        "tables of as many taps per output row and column");
        goto done;
    }
    job.row_taps = row_index.len / 8 / out_h;
    job.col_taps = col_index.len / 8 / out_w;
    if (CHECK_SIZE(&x, "input", planes, in_h, in_w) < 0 || CHECK_SIZE(&out, "output", planes, out_h, out_w) < 0)
        goto done;
    if (!indices_within(&row_index, in_h) || !indices_within(&col_index, in_w)) {
        PyErr_SetString(PyExc_ValueError, "resize2d: a tap index outside the input");
        goto done;
    }
    if ((char *)out.buf < (char *)x.buf + x.len && (char *)x.buf < (char *)out.buf + out.len) {
        PyErr_SetString(PyExc_ValueError, "resize2d: the output overlaps the input");
        goto done;
    }
    int64_t row_floats;
    if (checked_multiply(in_h, out_w, &row_floats) < 0) goto done;
    int64_t plane_outputs = out_h * out_w, parts_per_plane = plane_outputs / RESIZE_PART_OUTPUTS;
    if (parts_per_plane > out_h) parts_per_plane = out_h;
    job.row_blocks = parts_per_plane > 1 ? parts_per_plane : 1;
    threads = job.row_blocks * planes > 1 ? parallel_threads() : 1;
    for (int t = 0; t < threads; ++t)
        if (!(job.rows[t] = malloc((size_t)row_floats * sizeof(float)))) {
            PyErr_NoMemory();
            goto done;
        }
    Py_BEGIN_ALLOW_THREADS
    parallel_run(resize_part, &job, planes * job.row_blocks, threads);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    for (int t = 0; t < threads; ++t) free(job.rows[t]);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    PyBuffer_Release(&row_index);
    PyBuffer_Release(&row_weight);
    PyBuffer_Release(&col_index);
    PyBuffer_Release(&col_weight);
    return result;
}
