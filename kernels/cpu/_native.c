/* edgert.kernels.cpu._native: the CPU kernels NumPy cannot express without copies.
 *
 * Depthwise convolution and windowed pooling do a few operations per element and read every input element
 * once per window that covers it. In NumPy that means gathering the windows first (a copy the size of the
 * input times the taps) or one strided pass per tap; here each plane is copied once into a padded scratch
 * plane whose columns are split by stride phase, so that every tap of an output row reads one contiguous run:
 * the loops have no edge cases and the compiler vectorizes them. 3x3 windows (MobileNet's depthwise layers,
 * ResNet's max pooling) take one straight-line pass per output row.
 *
 * The module is optional: built at install when a C compiler is present (pyproject's ext-modules, optional),
 * else the NumPy kernels run and `edgert bench` says which. Both give the same results to rounding (the
 * tests run both). Functions take C-contiguous float32 buffers and a geometry of int64s (kernels/cpu/native.py
 * builds it) and release the GIL while they work; an optional plane range (and for im2col an output-row range)
 * lets the worker pool (threads.py) split a layer. Every size product is checked for 64-bit overflow and every
 * buffer's length against it, and scratch planes are capped, so a crafted geometry is a ValueError or an
 * OverflowError, never a crash. The fused per-element programs and row kernels live in pointwise_ukernels.c (pure C), their
 * Python entry points in native_elementwise.c; the direct convolution's microkernels in conv_ukernels.c (pure C, also
 * the depthwise rows here), its entry point in native_conv.c (sharing this file's geometry and scratch: native_conv.h).
 *
 * Output may overlap input when it starts where the input starts and its planes are no larger than the
 * input's (the memory planner puts such a layer's output over its input when the input dies there): output
 * plane p then only overlaps input planes <= p, and plane p is copied into the scratch plane before
 * anything of output plane p is written.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conv_ukernels.h"
#include "native_conv.h"
#include "native_elementwise.h"
#include "native_depthwise.h"
#include "native_fused.h"
#include "native_parallel.h"
#include "native_pool.h"

/* x86-64: the hot loops are compiled twice, for AVX2 and for the baseline (SSE2), and the loader picks one by cpuid
 * at first call (GCC/clang function multiversioning), so one wheel runs on any x86-64 and fast on recent ones
 * ("avx2", a feature, not "arch=haswell": GCC dispatches an arch= clone only on that very CPU model). aarch64 needs no clones: NEON is its baseline and -O3 vectorizes for it. */
#if defined(__x86_64__) && defined(__has_attribute) && !defined(EDGERT_NO_CLONES)
#if __has_attribute(target_clones)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SIMD_CLONES
#define SIMD_CLONES
#endif

/* a * b, or -1 with OverflowError set when it does not fit an int64 (operands are >= 0) */
NATIVE_INTERNAL int checked_multiply(int64_t a, int64_t b, int64_t *product) {
    if (__builtin_mul_overflow(a, b, product)) {
        PyErr_Format(PyExc_OverflowError, "size product %lld x %lld overflows 64 bits: the geometry is not a real "
                     "layer's", (long long)a, (long long)b);
        return -1;
    }
    return 0;
}

static int checked_add(int64_t a, int64_t b, int64_t *sum) {
    if (__builtin_add_overflow(a, b, sum)) {
        PyErr_Format(PyExc_OverflowError, "size sum %lld + %lld overflows 64 bits: the geometry is not a real "
                     "layer's", (long long)a, (long long)b);
        return -1;
    }
    return 0;
}

/* the product of count sizes, checked */
NATIVE_INTERNAL int checked_product(int count, const int64_t *sizes, int64_t *product) {
    *product = 1;
    for (int i = 0; i < count; ++i)
        if (checked_multiply(*product, sizes[i], product) < 0) return -1;
    return 0;
}

static const char *const FIELD_NAMES[GEOMETRY_FIELDS] = {
    "planes", "channels", "height", "width", "out_height", "out_width", "kernel_h", "kernel_w",
    "stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left"};

NATIVE_INTERNAL int read_geometry(Py_buffer *buffer, Geometry *g) {
    if (buffer->len != (Py_ssize_t)(GEOMETRY_FIELDS * sizeof(int64_t))) {
        PyErr_Format(PyExc_ValueError, "geometry: expected %d int64s, got %zd bytes", GEOMETRY_FIELDS, buffer->len);
        return -1;
    }
    memcpy(g, buffer->buf, sizeof(Geometry));
    int64_t *field = (int64_t *)g;
    for (int i = 0; i < GEOMETRY_FIELDS; ++i)
        if (field[i] < (i < 12 ? 1 : 0)) {   /* sizes, kernel, strides and dilations >= 1, pads >= 0 */
            PyErr_Format(PyExc_ValueError, "geometry: %s is %lld, expected >= %d", FIELD_NAMES[i],
                         (long long)field[i], i < 12 ? 1 : 0);
            return -1;
        }
    if (g->planes % g->channels) {
        PyErr_SetString(PyExc_ValueError, "geometry: planes must be a multiple of channels");
        return -1;
    }
    return 0;
}

/* element count of a buffer of `count` dims, checked for overflow and against the buffer's length */
NATIVE_INTERNAL int check_size(Py_buffer *buffer, const char *what, int count, const int64_t *dims) {
    int64_t elements, bytes;
    if (checked_product(count, dims, &elements) < 0 || checked_multiply(elements, sizeof(float), &bytes) < 0)
        return -1;
    if (buffer->len != bytes) {
        PyErr_Format(PyExc_ValueError, "%s: expected %lld float32s, got %zd bytes", what, (long long)elements,
                     buffer->len);
        return -1;
    }
    return 0;
}

/* The planes [first, first + count) one call works on (count -1: through the last), so that a worker pool can
 * split a layer by planes; -1 with ValueError when the range leaves [0, planes) */
static int plane_range(const Geometry *g, int64_t first, int64_t count, int64_t *begin, int64_t *end) {
    if (count < 0) count = g->planes - first;
    if (first < 0 || first > g->planes || count < 0 || count > g->planes - first) {
        PyErr_Format(PyExc_ValueError, "planes [%lld, +%lld) outside the layer's %lld planes", (long long)first,
                     (long long)count, (long long)g->planes);
        return -1;
    }
    *begin = first;
    *end = first + count;
    return 0;
}

/* 0 when the output may be written while the input is read plane by plane (disjoint, or overlapping as the
 * top of this file allows), else -1 with the error set */
static int check_overlap(const Geometry *g, Py_buffer *x, Py_buffer *out) {
    const char *x_begin = x->buf, *out_begin = out->buf;
    if (!(out_begin < x_begin + x->len && x_begin < out_begin + out->len)) return 0;
    if (out_begin == x_begin && g->out_height * g->out_width <= g->height * g->width) return 0;
    PyErr_SetString(PyExc_ValueError, "an output overlapping its input must start where the input starts and "
                    "have planes no larger than the input's");
    return -1;
}

NATIVE_INTERNAL void free_scratch(Scratch *s) {
    free(s->data);
    free(s->taps);
    free(s->phases);
}


/* the padded extent one axis needs: (out - 1) * stride + (kernel - 1) * dilation + 1, at least pad + size */
static int padded_extent(int64_t out, int64_t stride, int64_t kernel, int64_t dilation, int64_t pad, int64_t size,
                         int64_t *extent) {
    int64_t reach, span, inside;
    if (checked_multiply(out - 1, stride, &reach) < 0 || checked_multiply(kernel - 1, dilation, &span) < 0
        || checked_add(reach, span, extent) < 0 || checked_add(*extent, 1, extent) < 0
        || checked_add(pad, size, &inside) < 0)
        return -1;
    if (inside > *extent) *extent = inside;
    return 0;
}

/* The scratch of `copies` planes (elements apart, CONV_READ_SLACK spare floats after the last: the microkernels
 * read whole vectors) of all padded rows or, window_rows > 0, of that many (a window that moves down: s->top), each
 * filled with `padding` when fill is set. */
NATIVE_INTERNAL int make_scratch(const Geometry *g, float padding, int64_t copies, int64_t window_rows, int fill, Scratch *s) {
    int64_t width, elements, taps, total;
    s->data = NULL;
    s->taps = s->phases = NULL;
    if (padded_extent(g->out_height, g->stride_h, g->kernel_h, g->dilation_h, g->pad_top, g->height, &s->rows) < 0
        || padded_extent(g->out_width, g->stride_w, g->kernel_w, g->dilation_w, g->pad_left, g->width, &width) < 0
        || checked_multiply(g->kernel_h, g->kernel_w, &taps) < 0)
        return -1;
    s->phase_width = width / g->stride_w + (width % g->stride_w != 0);
    if (checked_multiply(s->phase_width, g->stride_w, &s->row_stride) < 0
        || checked_multiply(window_rows > 0 && window_rows < s->rows ? window_rows : s->rows, s->row_stride,
                            &elements) < 0
        || checked_multiply(elements, copies, &total) < 0)
        return -1;
    s->top = 0;
    s->elements = elements;
    if (s->rows > MAX_SCRATCH_FLOATS / s->row_stride || total > MAX_SCRATCH_FLOATS || taps > MAX_SCRATCH_FLOATS || g->stride_w > MAX_SCRATCH_FLOATS) {
        PyErr_Format(PyExc_ValueError, "scratch planes of %lld floats (%lld taps) exceed %lld: the geometry is not "
                     "a real layer's (check its pads, strides and kernel)", (long long)total, (long long)taps,
                     (long long)MAX_SCRATCH_FLOATS);
        return -1;
    }
    s->data = malloc((total + CONV_READ_SLACK) * sizeof(float));
    s->taps = malloc(taps * sizeof(int64_t));
    s->phases = malloc(3 * g->stride_w * sizeof(int64_t));
    if (!s->data || !s->taps || !s->phases) {
        free_scratch(s);
        PyErr_NoMemory();
        return -1;
    }
    for (int64_t i = 0; fill && i < total + CONV_READ_SLACK; ++i) s->data[i] = padding;   /* only the interior changes */
    for (int64_t ky = 0; ky < g->kernel_h; ++ky)
        for (int64_t kx = 0; kx < g->kernel_w; ++kx) {
            int64_t column = kx * g->dilation_w;
            s->taps[ky * g->kernel_w + kx] = ky * g->dilation_h * s->row_stride
                                             + (column % g->stride_w) * s->phase_width + column / g->stride_w;
        }
    for (int64_t phase = 0, step = g->stride_w; phase < step; ++phase) {
        int64_t ix = ((phase - g->pad_left) % step + step) % step;
        s->phases[3 * phase] = ix;
        s->phases[3 * phase + 1] = phase * s->phase_width + (ix + g->pad_left) / step;
        s->phases[3 * phase + 2] = ix < g->width ? (g->width - ix + step - 1) / step : 0;
    }
    return 0;
}

/* input rows [first_row, end_row) of a plane -> the scratch plane's interior */
NATIVE_INTERNAL SIMD_CLONES void fill_rows(const Geometry *g, const Scratch *s, const float *source, int64_t first_row,
                                  int64_t end_row) {
    int64_t step = g->stride_w;
    for (int64_t iy = first_row; iy < end_row; ++iy) {
        float *row = s->data + (iy + g->pad_top - s->top) * s->row_stride;
        const float *in = source + iy * g->width;
        if (step == 1) {   /* a loop, not memcpy: most rows are narrow (7-56 floats), where a call costs more */
            float *restrict target = row + g->pad_left;
            for (int64_t j = 0; j < g->width; ++j) target[j] = in[j];
            continue;
        }
        if (step == 2) {   /* both phases in one pass over the row */
            const int64_t *even = s->phases + 3 * (g->pad_left % 2), *odd = s->phases + 3 * ((g->pad_left + 1) % 2);
            float *restrict a = row + even[1], *restrict b = row + odd[1];
            int64_t pairs = g->width / 2;
            for (int64_t j = 0; j < pairs; ++j) {
                a[j] = in[2 * j];
                b[j] = in[2 * j + 1];
            }
            if (g->width % 2) a[pairs] = in[2 * pairs];
            continue;
        }
        for (int64_t phase = 0; phase < step; ++phase) {
            const int64_t *p = s->phases + 3 * phase;
            const float *restrict from = in + p[0];
            float *restrict target = row + p[1];
            for (int64_t j = 0; j < p[2]; ++j) target[j] = from[j * step];
        }
    }
}

/* a whole input plane -> the scratch plane's interior */
static void fill_plane(const Geometry *g, const Scratch *s, const float *source) {
    fill_rows(g, s, source, 0, g->height);
}

/* NaN wins, as in np.maximum (a macro, not a function: an inline function is not inlined into the AVX2 clones) */
#define larger(v, current) ((v) != (v) ? (v) : (v) > (current) ? (v) : (current))   /* selects, no branches */

/* row = the maximum of row and `group` (1-4) tap runs (NaN wins) */
SIMD_CLONES static void maximum_taps(float *restrict row, int64_t n, const float *base, const int64_t *offsets,
                                int64_t group) {
    for (int64_t k = 0; k < group; ++k) {
        const float *restrict a = base + offsets[k];
        for (int64_t ox = 0; ox < n; ++ox) row[ox] = larger(a[ox], row[ox]);
    }
}

enum Op { MULTIPLY_ADD, MAXIMUM };

/* One output plane from the scratch plane: out = start + sum of weights x taps, or the maximum of the taps. */
SIMD_CLONES static void window_plane(const Geometry *g, const Scratch *s, enum Op op, const float *w, float start,
                         float *out) {
    int64_t taps = g->kernel_h * g->kernel_w, n = g->out_width;
    if (op == MULTIPLY_ADD) {   /* the SIMD microkernel: every tap of CONV_LANES outputs in registers */
        conv_depthwise_rows(out, g->out_height, n, s->data, g->stride_h * s->row_stride, s->taps, taps, w, start);
        return;
    }
    for (int64_t oy = 0; oy < g->out_height; ++oy) {
        const float *base = s->data + oy * g->stride_h * s->row_stride;
        float *restrict row = out + oy * n;
        if (taps == 9) {   /* one pass */
            const float *restrict a0 = base + s->taps[0], *restrict a1 = base + s->taps[1], *restrict a2 = base + s->taps[2];
            const float *restrict a3 = base + s->taps[3], *restrict a4 = base + s->taps[4], *restrict a5 = base + s->taps[5];
            const float *restrict a6 = base + s->taps[6], *restrict a7 = base + s->taps[7], *restrict a8 = base + s->taps[8];
            for (int64_t ox = 0; ox < n; ++ox) {
                float m = larger(a1[ox], a0[ox]);
                m = larger(a2[ox], m);
                m = larger(a3[ox], m);
                m = larger(a4[ox], m);
                m = larger(a5[ox], m);
                m = larger(a6[ox], m);
                m = larger(a7[ox], m);
                row[ox] = larger(a8[ox], m);
            }
            continue;
        }
        for (int64_t ox = 0; ox < n; ++ox) row[ox] = -INFINITY;
        for (int64_t k = 0; k < taps; k += 4)   /* one pass per four taps (5x5: 7 passes, not 25) */
            maximum_taps(row, n, base, s->taps + k, taps - k < 4 ? taps - k : 4);
    }
}

/* A depthwise convolution or pooling over planes [begin, end), split by plane ranges over native_parallel.c's threads
 * (each with its own scratch plane) when the work deserves it and the output is not over a larger input (there output
 * plane p covers input planes below p, which another part may still have to read: one part, in order). */
typedef struct {
    const Geometry *g;
    enum Op op;
    const float *x, *weights, *bias, *divisor;
    int per_channel;   /* weights: one window per channel (depthwise), else one window for every plane (pooling) */
    float *out;
    int64_t begin, end, parts;
    int threads;
    Scratch scratch[PARALLEL_MAX_THREADS];
    enum { BY_WINDOW, BY_LANES, MAX_2X2, MAX_ROWS } kernel;   /* window_plane, or native_depthwise.c / native_pool.c's */
    float *lanes[PARALLEL_MAX_THREADS];   /* BY_LANES: each thread's scratch (depthwise_lanes_scratch_floats) */
} PlaneJob;

/* multiply-adds (outputs x taps) per part of a depthwise convolution or pooling: a quarter of a convolution's part */
#define PLANE_PART_WORK(conv) ((conv) / 4 > 0 ? (conv) / 4 : 1)

static void plane_part(void *context, int64_t index, int thread) {
    PlaneJob *job = context;
    const Geometry *g = job->g;
    Scratch *s = &job->scratch[thread];
    int64_t planes = job->end - job->begin, taps = g->kernel_h * g->kernel_w, out_plane = g->out_height * g->out_width;
    int64_t first = job->begin + planes * index / job->parts, last = job->begin + planes * (index + 1) / job->parts;
    if (job->kernel == BY_LANES) {   /* parts of whole blocks of 16 planes */
        int64_t blocks = (planes + 15) / 16;
        first = job->begin + 16 * (blocks * index / job->parts);
        last = job->begin + 16 * (blocks * (index + 1) / job->parts);
        depthwise_lanes(g, job->x, job->weights, job->bias, job->out, first, last < job->end ? last : job->end,
                        job->lanes[thread]);
        return;
    }
    if (job->kernel != BY_WINDOW) {
        (job->kernel == MAX_2X2 ? max_pool_2x2 : max_pool_rows)(g, job->x, job->out, first, last);
        return;
    }
    for (int64_t p = first; p < last; ++p) {
        int64_t c = p % g->channels;
        float *target = job->out + p * out_plane;
        fill_plane(g, s, job->x + p * g->height * g->width);
        window_plane(g, s, job->op, job->per_channel ? job->weights + c * taps : job->weights,
                     job->bias ? job->bias[c] : 0.0f, target);
        if (job->divisor)
            for (int64_t i = 0; i < out_plane; ++i) target[i] /= job->divisor[i];
    }
}

/* the parts and the threads' scratch planes (padding filled once); -1 with the error set */
static int start_plane_job(PlaneJob *job, const Py_buffer *x, const Py_buffer *out, float padding) {
    const Geometry *g = job->g;
    int64_t planes = job->end - job->begin, work;
    int shrinking_over_input = (const char *)out->buf < (const char *)x->buf + x->len
                               && (const char *)x->buf < (const char *)out->buf + out->len
                               && g->out_height * g->out_width < g->height * g->width;
    if (checked_product(4, (int64_t[]){planes, g->out_height * g->out_width, g->kernel_h, g->kernel_w}, &work) < 0)
        return -1;
    job->parts = shrinking_over_input || planes < 2 ? 1 : parallel_parts(work, PLANE_PART_WORK(conv_part_work), 4);
    if (job->parts > planes) job->parts = planes > 0 ? planes : 1;
    job->threads = job->parts > 1 ? parallel_threads() : 1;
    for (int t = 0; t < job->threads; ++t)
        if (make_scratch(g, padding, 1, 0, 1, &job->scratch[t]) < 0) {
            job->threads = t;
            return -1;
        }
    return 0;
}

/* depthwise_conv2d(x, weights, bias or None, out, geometry): out = conv(x, weights) + bias with one filter per
 * plane (group == channels, one output channel each); weights (channels, kernel_h, kernel_w). */
static PyObject *depthwise_conv2d(PyObject *self, PyObject *args) {
    Py_buffer x, w, out, geometry, bias = {0};
    PyObject *bias_object, *result = NULL;
    Geometry g;
    PlaneJob job = {0};
    (void)self;
    int64_t first = 0, count = -1, begin, end;
    if (!PyArg_ParseTuple(args, "y*y*Ow*y*|LL", &x, &w, &bias_object, &out, &geometry, &first, &count)) return NULL;
    if (bias_object != Py_None && PyObject_GetBuffer(bias_object, &bias, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (read_geometry(&geometry, &g) < 0 || CHECK_SIZE(&x, "input", g.planes, g.height, g.width) < 0
        || CHECK_SIZE(&w, "weights", g.channels, g.kernel_h, g.kernel_w) < 0
        || CHECK_SIZE(&out, "output", g.planes, g.out_height, g.out_width) < 0
        || (bias.buf && CHECK_SIZE(&bias, "bias", g.channels) < 0) || check_overlap(&g, &x, &out) < 0
        || plane_range(&g, first, count, &begin, &end) < 0)
        goto done;
    PlaneJob fields = {&g, MULTIPLY_ADD, x.buf, w.buf, bias.buf, NULL, 1, out.buf, begin, end, 1, 1, {{0}}, BY_WINDOW,
                       {0}};
    job = fields;
    if (start_plane_job(&job, &x, &out, 0.0f) < 0) goto done;   /* checks the window first */
    if (depthwise_lanes_pays(&g)) {   /* narrow planes, 16 at a time (native_depthwise.c) */
        int64_t floats = depthwise_lanes_scratch_floats(&g), blocks = (end - begin + 15) / 16;
        job.kernel = BY_LANES;
        if (job.parts > blocks) job.parts = blocks > 0 ? blocks : 1;
        for (int t = 0; t < job.threads; ++t)
            if (!(job.lanes[t] = floats <= MAX_SCRATCH_FLOATS
                                     ? aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64) : NULL)) {
                PyErr_NoMemory();
                goto done;
            }
    }
    Py_BEGIN_ALLOW_THREADS
    parallel_run(plane_part, &job, job.parts, job.threads);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    for (int t = 0; t < job.threads; ++t) {
        free_scratch(&job.scratch[t]);
        free(job.lanes[t]);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&w);
    PyBuffer_Release(&out);
    PyBuffer_Release(&geometry);
    if (bias.buf) PyBuffer_Release(&bias);
    return result;
}

/* pool2d(x, out, divisor or None, geometry): max pooling, or with a divisor (out_height x out_width float32s: the
 * taps that count for each output) average pooling. */
static PyObject *pool2d(PyObject *self, PyObject *args) {
    Py_buffer x, out, geometry, divisor = {0};
    PyObject *divisor_object, *result = NULL;
    Geometry g;
    PlaneJob job = {0};
    float *ones = NULL;
    (void)self;
    int64_t first = 0, count = -1, begin, end;
    if (!PyArg_ParseTuple(args, "y*w*Oy*|LL", &x, &out, &divisor_object, &geometry, &first, &count)) return NULL;
    if (divisor_object != Py_None && PyObject_GetBuffer(divisor_object, &divisor, PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    int average = divisor.buf != NULL;
    if (read_geometry(&geometry, &g) < 0 || CHECK_SIZE(&x, "input", g.planes, g.height, g.width) < 0
        || CHECK_SIZE(&out, "output", g.planes, g.out_height, g.out_width) < 0
        || (average && CHECK_SIZE(&divisor, "divisor", g.out_height, g.out_width) < 0)
        || check_overlap(&g, &x, &out) < 0 || plane_range(&g, first, count, &begin, &end) < 0)
        goto done;
    PlaneJob fields = {&g, average ? MULTIPLY_ADD : MAXIMUM, x.buf, NULL, NULL, divisor.buf, 0, out.buf, begin, end,
                       1, 1, {{0}}, BY_WINDOW, {0}};
    job = fields;
    if (start_plane_job(&job, &x, &out, average ? 0.0f : -INFINITY) < 0) goto done;   /* checks the window first */
    if (!average && (max_pool_2x2_pays(&g) || max_pool_rows_pays(&g)))   /* native_pool.c: no scratch copy */
        job.kernel = max_pool_2x2_pays(&g) ? MAX_2X2 : MAX_ROWS;
    int64_t taps = g.kernel_h * g.kernel_w;
    ones = malloc(taps * sizeof(float));   /* average pooling: a window of weights 1 */
    if (!ones) {
        PyErr_NoMemory();
        goto done;
    }
    for (int64_t k = 0; k < taps; ++k) ones[k] = 1.0f;
    job.weights = ones;
    Py_BEGIN_ALLOW_THREADS
    parallel_run(plane_part, &job, job.parts, job.threads);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    for (int t = 0; t < job.threads; ++t) free_scratch(&job.scratch[t]);
    free(ones);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    PyBuffer_Release(&geometry);
    if (divisor.buf) PyBuffer_Release(&divisor);
    return result;
}

/* The columns of output rows [row_begin, row_begin + rows) for planes [begin, end): only the input rows those
 * windows reach are copied into the scratch plane. */
static void im2col_rows(const Geometry *g, const Scratch *s, const float *input, float *columns, int64_t begin,
                        int64_t end, int64_t row_begin, int64_t rows) {
    int64_t taps = g->kernel_h * g->kernel_w, positions = rows * g->out_width;
    int64_t top = row_begin * g->stride_h - g->pad_top;   /* first input row read, in input coordinates */
    int64_t bottom = top + (rows - 1) * g->stride_h + (g->kernel_h - 1) * g->dilation_h + 1;
    int64_t first_row = top < 0 ? 0 : top, end_row = bottom > g->height ? g->height : bottom;
    size_t run = g->out_width * sizeof(float);
    if (rows == 0) return;
    for (int64_t p = begin; p < end; ++p) {
        fill_rows(g, s, input + p * g->height * g->width, first_row, end_row > first_row ? end_row : first_row);
        for (int64_t k = 0; k < taps; ++k) {
            float *row = columns + (p * taps + k) * positions;
            const float *tap = s->data + s->taps[k] + row_begin * g->stride_h * s->row_stride;
            for (int64_t oy = 0; oy < rows; ++oy)
                memcpy(row + oy * g->out_width, tap + oy * g->stride_h * s->row_stride, run);
        }
    }
}

/* im2col(x, columns, geometry, first=0, count=-1, row_begin=0, row_count=-1): the column matrix of a single-image,
 * single-group 2-D convolution (for output rows [row_begin, row_begin + row_count): an L2-sized tile), rows
 * (channel, kernel row, kernel column), columns the output positions: columns @ weights.reshape(M, -1) is the
 * convolution. Each row of an output row is one contiguous run of the scratch plane. */
static PyObject *im2col(PyObject *self, PyObject *args) {
    Py_buffer x, columns, geometry;
    Geometry g;
    Scratch s;
    PyObject *result = NULL;
    (void)self;
    int64_t first = 0, count = -1, row_begin = 0, row_count = -1, begin, end;
    if (!PyArg_ParseTuple(args, "y*w*y*|LLLL", &x, &columns, &geometry, &first, &count, &row_begin, &row_count))
        return NULL;
    if (read_geometry(&geometry, &g) < 0) goto done;
    if (row_count < 0) row_count = g.out_height - row_begin;
    if (row_begin < 0 || row_begin > g.out_height || row_count < 0 || row_count > g.out_height - row_begin) {
        PyErr_Format(PyExc_ValueError, "im2col: output rows [%lld, +%lld) outside the output's %lld",
                     (long long)row_begin, (long long)row_count, (long long)g.out_height);
        goto done;
    }
    if (CHECK_SIZE(&x, "input", g.planes, g.height, g.width) < 0
        || CHECK_SIZE(&columns, "columns", g.planes, g.kernel_h, g.kernel_w, row_count, g.out_width) < 0
        || plane_range(&g, first, count, &begin, &end) < 0 || make_scratch(&g, 0.0f, 1, 0, 1, &s) < 0)
        goto done;
    if ((char *)columns.buf < (char *)x.buf + x.len && (char *)x.buf < (char *)columns.buf + columns.len) {
        free_scratch(&s);
        PyErr_SetString(PyExc_ValueError, "im2col: the columns overlap the input");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    im2col_rows(&g, &s, x.buf, columns.buf, begin, end, row_begin, row_count);
    Py_END_ALLOW_THREADS
    free_scratch(&s);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&columns);
    PyBuffer_Release(&geometry);
    return result;
}

static PyMethodDef methods[] = {
    {"softmax", native_softmax, METH_VARARGS, "softmax(x, out, cols, first_row=0, row_count=-1)"},
    {"row_means", native_row_means, METH_VARARGS, "row_means(x, out, cols, first_row=0, row_count=-1)"},
    {"layernorm", native_layernorm, METH_VARARGS, "layernorm(x, out, cols, scale, bias, epsilon, first_row=0, row_count=-1)"},
    {"isa", native_isa, METH_NOARGS, "isa() -> the instruction set the kernels run with"},
    {"conv_isa", native_conv_isa, METH_NOARGS, "conv_isa() -> the instruction set the convolution microkernels run with"},
    {"pointwise", native_pointwise, METH_VARARGS, "pointwise(program, inputs, out, first=0, count=-1)"},
    {"im2col", im2col, METH_VARARGS, "im2col(x, columns, geometry, first=0, count=-1, row_begin=0, row_count=-1)"},
    {"lstm", native_lstm, METH_VARARGS,
     "lstm(projection, r_t, h, c, y, y_offset, y_step, steps, batch, hidden, reverse)"},
    {"conv2d_direct", conv2d_direct, METH_VARARGS,
     "conv2d_direct(x, packed, bias, out, geometry, out_channels, row_begin=0, row_count=-1, program=None)"},
    {"conv2d_pointwise", conv2d_pointwise, METH_VARARGS,
     "conv2d_pointwise(x, packed, bias, out, channels, out_channels, m_begin=0, m_count=-1, col_begin=0, "
     "col_count=-1, program=None, residual=None)"},
    {"set_threads", (PyCFunction)(void (*)(void))native_set_threads, METH_VARARGS | METH_KEYWORDS,
     "set_threads(count, part_work=-1, lag=-1, part_elements=-1): threads of the native kernels' parallel loop"},
    {"gemm", native_gemm, METH_VARARGS,
     "gemm(sgemm, ilp64, a, b, out, geometry, program=None, bias=None, residual=None): blocks of BLAS products + epilogue"},
    {"resize2d", native_resize2d, METH_VARARGS,
     "resize2d(x, out, planes, in_h, in_w, out_h, out_w, row_index, row_weight, col_index, col_weight)"},
    {"parallel_stats", native_parallel_stats, METH_NOARGS,
     "parallel_stats() -> (threads, jobs split, jobs of several parts run inline, lag pauses)"},
    {"depthwise_conv2d", depthwise_conv2d, METH_VARARGS, "depthwise_conv2d(x, weights, bias, out, geometry, first=0, count=-1)"},
    {"squeeze_excite", native_squeeze_excite, METH_VARARGS,
     "squeeze_excite(x, out, pooled, hidden, scale, reduce_t, reduce_bias, expand_t, expand_bias, reduce_program, "
     "expand_program, work, images, channels, reduced)"},
    {"pool2d", pool2d, METH_VARARGS, "pool2d(x, out, divisor, geometry, first=0, count=-1)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "edgert's native CPU kernels", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
