/* edgert.kernels.cpu._native's direct convolution (conv2d_direct): the Python entry point that fills padded input
 * rows tile by tile (_native.c's scratch planes, one per input channel) and runs conv_ukernels.c's microkernels
 * over them, then the activation epilogue on each tile while it is in cache. */
#include <stdlib.h>
#include <string.h>

#include "conv_ukernels.h"
#include "native_conv.h"
#include "native_elementwise.h"
#include "native_parallel.h"
#include "pointwise_ukernels.h"

/* The padded rows output rows [row_begin, row_end) read, per input channel, into the scratch window (whose top
 * becomes the first of them): zeroed (one row more, which the microkernel's spare lanes may reach), then the input
 * rows among them copied in. */
static void fill_direct_rows(const Geometry *g, Scratch *s, const float *input, int64_t row_begin, int64_t row_end) {
    int64_t top = row_begin * g->stride_h, bottom = (row_end - 1) * g->stride_h + (g->kernel_h - 1) * g->dilation_h + 2;
    int64_t window = s->elements / s->row_stride;
    if (bottom > s->rows) bottom = s->rows;
    if (bottom > top + window) bottom = top + window;
    int64_t first_row = top - g->pad_top, end_row = bottom - g->pad_top;
    if (first_row < 0) first_row = 0;
    if (end_row > g->height) end_row = g->height;
    s->top = top;
    for (int64_t c = 0; c < g->channels; ++c) {
        Scratch plane = *s;
        plane.data = s->data + c * s->elements;
        memset(plane.data, 0, (bottom - top) * s->row_stride * sizeof(float));
        if (end_row > first_row) fill_rows(g, &plane, input + c * g->height * g->width, first_row, end_row);
    }
}

/* scratch rows per input channel that one tile of a direct convolution aims at (C x rows x row_stride floats:
 * about half a core's L2, so a tile's rows stay cached while every output channel block reads them) */
#define DIRECT_TILE_FLOATS ((int64_t)1 << 15)

/* The epilogue program over output rows [first, last) of every output channel, while they are still in cache */
static void direct_epilogue(const Geometry *g, int64_t out_channels, float *out, const Py_buffer *program, int64_t first,
                            int64_t last) {
    int count = (int)(program->len / (Py_ssize_t)sizeof(PointwiseInstruction));
    const uint8_t vector[1] = {0};
    int64_t plane = g->out_height * g->out_width;
    for (int64_t m = 0; m < out_channels; ++m) {
        float *rows = out + m * plane + first * g->out_width;
        const float *inputs[1] = {rows};
        pointwise_run(program->buf, count, inputs, vector, 1, rows, 0, (last - first) * g->out_width);
    }
}

/* Output rows [first, last) of a unit-stride convolution as one flat run over the scratch window's rows (into `flat`:
 * out_channels x rows x row_stride floats), then each row's real columns copied out */
static void direct_flat_tile(const Geometry *g, const Scratch *s, const float *packed, const float *bias,
                             int64_t out_channels, float *flat, float *out, int64_t first, int64_t last) {
    int64_t positions = (last - first) * s->row_stride, plane = g->out_height * g->out_width;
    ConvDirect p = {s->data, s->elements, g->channels, g->kernel_h * g->kernel_w, positions, 0, s->taps, packed, bias,
                    out_channels, 1, positions, flat};
    conv_direct_rows(&p, 0, 1);
    for (int64_t m = 0; m < out_channels; ++m)
        for (int64_t row = first; row < last; ++row)
            memcpy(out + m * plane + row * g->out_width, flat + m * positions + (row - first) * s->row_stride,
                   g->out_width * sizeof(float));
}

/* multiply-adds per part of a convolution split over native_parallel.c's threads (~15 µs on one core: a worker that
 * wakes late takes fewer parts), and at most this many parts per thread */
#define CONV_PART_WORK ((int64_t)1 << 20)
#define PARTS_PER_THREAD 4
NATIVE_INTERNAL int64_t conv_part_work = CONV_PART_WORK;   /* set_threads(part_work=) */

typedef struct {
    const Geometry *g;
    const float *x, *packed, *bias;
    float *out;
    int64_t out_channels, row_begin, row_end, tile, tiles, parts;
    const Py_buffer *program;
    Scratch scratch[PARALLEL_MAX_THREADS];   /* one window (and flat tile) per thread */
    float *flat[PARALLEL_MAX_THREADS];
} DirectJob;

static void free_direct_job(DirectJob *job, int threads) {
    for (int t = 0; t < threads; ++t) {
        free_scratch(&job->scratch[t]);
        free(job->flat[t]);
        job->flat[t] = NULL;
    }
}

/* one part: a range of row tiles, each filled into the thread's window, computed, then its epilogue */
static void direct_part(void *context, int64_t index, int thread) {
    DirectJob *job = context;
    const Geometry *g = job->g;
    Scratch *s = &job->scratch[thread];
    int64_t tile_first = job->tiles * index / job->parts, tile_last = job->tiles * (index + 1) / job->parts;
    for (int64_t t = tile_first; t < tile_last; ++t) {
        int64_t first = job->row_begin + t * job->tile;
        int64_t last = first + job->tile < job->row_end ? first + job->tile : job->row_end;
        fill_direct_rows(g, s, job->x, first, last);
        if (job->flat[thread])
            direct_flat_tile(g, s, job->packed, job->bias, job->out_channels, job->flat[thread], job->out, first, last);
        else {
            ConvDirect p = {s->data, s->elements, g->channels, g->kernel_h * g->kernel_w, g->stride_h * s->row_stride,
                            first, s->taps, job->packed, job->bias, job->out_channels, g->out_height, g->out_width,
                            job->out};
            conv_direct_rows(&p, first, last);
        }
        if (job->program) direct_epilogue(g, job->out_channels, job->out, job->program, first, last);
    }
}

/* conv2d_direct(x, packed, bias or None, out, geometry, out_channels, row_begin=0, row_count=-1, program=None): a
 * single-image, single-group 2-D convolution computed straight from padded input planes (conv_ukernels.h's
 * ConvDirect), for output rows [row_begin, row_begin + row_count); packed: the weights as (ceil(M / CONV_BLOCK),
 * C x taps, CONV_BLOCK); program: a per-element program of one input (pointwise_ukernels.h's records: an activation
 * epilogue) applied to each row tile right after it is computed. */
PyObject *conv2d_direct(PyObject *self, PyObject *args) {
    Py_buffer x, packed, out, geometry, bias = {0}, program = {0};
    PyObject *bias_object, *program_object = Py_None, *result = NULL;
    Geometry g;
    (void)self;
    int64_t out_channels, row_begin = 0, row_count = -1, blocks, block_rows;
    if (!PyArg_ParseTuple(args, "y*y*Ow*y*L|LLO", &x, &packed, &bias_object, &out, &geometry, &out_channels,
                          &row_begin, &row_count, &program_object))
        return NULL;
    if (bias_object != Py_None && PyObject_GetBuffer(bias_object, &bias, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (program_object != Py_None && PyObject_GetBuffer(program_object, &program, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (program.buf && (program.len % (Py_ssize_t)sizeof(PointwiseInstruction)
                        || program.len > (Py_ssize_t)(PW_MAX_REGISTERS * sizeof(PointwiseInstruction))
                        || pointwise_check(program.buf, (int)(program.len / (Py_ssize_t)sizeof(PointwiseInstruction)),
                                           1) < 0)) {
        PyErr_Format(PyExc_ValueError, "conv2d_direct: malformed epilogue program of %zd bytes (one input, at most %d "
                     "registers, each argument an earlier register)", program.len, PW_MAX_REGISTERS);
        goto done;
    }
    if (read_geometry(&geometry, &g) < 0) goto done;
    if (out_channels < 1 || g.planes != g.channels) {
        PyErr_Format(PyExc_ValueError, "conv2d_direct: expected one image and >= 1 output channels, got %lld planes of "
                     "%lld channels and %lld output channels", (long long)g.planes, (long long)g.channels,
                     (long long)out_channels);
        goto done;
    }
    if (row_count < 0) row_count = g.out_height - row_begin;
    if (row_begin < 0 || row_begin > g.out_height || row_count < 0 || row_count > g.out_height - row_begin) {
        PyErr_Format(PyExc_ValueError, "conv2d_direct: output rows [%lld, +%lld) outside the output's %lld",
                     (long long)row_begin, (long long)row_count, (long long)g.out_height);
        goto done;
    }
    blocks = out_channels / CONV_BLOCK + (out_channels % CONV_BLOCK != 0);
    if (checked_product(3, (int64_t[]){g.channels, g.kernel_h, g.kernel_w}, &block_rows) < 0
        || CHECK_SIZE(&x, "input", g.planes, g.height, g.width) < 0
        || CHECK_SIZE(&packed, "packed weights", blocks, block_rows, CONV_BLOCK) < 0
        || CHECK_SIZE(&out, "output", out_channels, g.out_height, g.out_width) < 0
        || (bias.buf && CHECK_SIZE(&bias, "bias", out_channels) < 0))
        goto done;
    if ((char *)out.buf < (char *)x.buf + x.len && (char *)x.buf < (char *)out.buf + out.len) {
        PyErr_SetString(PyExc_ValueError, "conv2d_direct: the output overlaps the input");
        goto done;
    }
    if (row_count == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* output rows per tile, and the padded rows a tile reads (one spare) */
    int64_t per_row = g.channels * g.stride_h * g.width, tile, window;   /* input floats per output row, roughly */
    if (g.channels > MAX_SCRATCH_FLOATS || g.stride_h > MAX_SCRATCH_FLOATS || g.width > MAX_SCRATCH_FLOATS
        || g.channels * g.stride_h > MAX_SCRATCH_FLOATS || (g.kernel_h - 1) > MAX_SCRATCH_FLOATS / g.dilation_h) {
        PyErr_SetString(PyExc_ValueError, "conv2d_direct: channels, stride, width or kernel reach beyond any real "
                        "layer's (check the geometry)");
        goto done;
    }
    int64_t work, parts;
    if (checked_product(6, (int64_t[]){out_channels, row_count, g.out_width, g.channels, g.kernel_h, g.kernel_w},
                        &work) < 0)
        goto done;
    parts = parallel_parts(work, conv_part_work, PARTS_PER_THREAD);
    if (parts > row_count) parts = row_count;
    tile = DIRECT_TILE_FLOATS / per_row > 1 ? DIRECT_TILE_FLOATS / per_row : 1;   /* per_row < 2^56: no overflow */
    if (tile > (row_count + parts - 1) / parts) tile = (row_count + parts - 1) / parts;   /* at least a tile a part */
    window = (tile - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 2;   /* tile > 1 only for small strides */
    int64_t tiles = (row_count + tile - 1) / tile;
    if (parts > tiles) parts = tiles;
    int threads = parts > 1 ? parallel_threads() : 1;
    DirectJob job = {&g, x.buf, packed.buf, bias.buf, out.buf, out_channels, row_begin, row_begin + row_count, tile,
                     tiles, parts, program.buf ? &program : NULL, {{0}}, {NULL}};
    /* a scratch window (and flat tile) per thread */
    for (int t = 0; t < threads; ++t) {
        if (make_scratch(&g, 0.0f, g.channels, window, 0, &job.scratch[t]) < 0) {
            free_direct_job(&job, t);
            goto done;
        }
    }
    /* Unit strides: the scratch rows are as wide as the padded input, so a tile's output rows can be computed as one
     * flat run over them (the padding columns computed too, then dropped): narrow rows then fill whole vectors */
    int64_t vector = CONV_VECTOR_ALIGN, flat_bytes = 0;   /* a row's last span takes only the vectors it needs */
    Scratch *s0 = &job.scratch[0];
    if (g.stride_h == 1 && g.stride_w == 1 && s0->row_stride < (g.out_width + vector - 1) / vector * vector) {
        if (checked_product(4, (int64_t[]){out_channels, tile, s0->row_stride, sizeof(float)}, &flat_bytes) < 0) {
            free_direct_job(&job, threads);
            goto done;
        }
        for (int t = 0; t < threads; ++t)
            if (!(job.flat[t] = malloc(flat_bytes))) {
                free_direct_job(&job, threads);
                PyErr_NoMemory();
                goto done;
            }
    }
    Py_BEGIN_ALLOW_THREADS
    parallel_run(direct_part, &job, parts, threads);
    Py_END_ALLOW_THREADS
    free_direct_job(&job, threads);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&packed);
    PyBuffer_Release(&out);
    PyBuffer_Release(&geometry);
    if (bias.buf) PyBuffer_Release(&bias);
    if (program.buf) PyBuffer_Release(&program);
    return result;
}

/* columns of a pointwise convolution per tile: computed for every output channel, then the epilogue over them while
 * they are in L2 (a multiple of CONV_VECTOR_ALIGN) */
#define POINTWISE_TILE_COLUMNS 256

static int overlaps(const Py_buffer *a, const Py_buffer *b) {
    return (const char *)a->buf < (const char *)b->buf + b->len && (const char *)b->buf < (const char *)a->buf + a->len;
}

/* The epilogue program (inputs: the output itself, then the residual when given) over columns [first, last) of
 * output channels [0, count) of rows `columns` apart */
static void pointwise_epilogue(const Py_buffer *program, float *out, const float *residual, int64_t columns,
                               int64_t count, int64_t first, int64_t last) {
    int instructions = (int)(program->len / (Py_ssize_t)sizeof(PointwiseInstruction));
    const uint8_t vector[2] = {0, 0};
    for (int64_t m = 0; m < count; ++m) {
        float *row = out + m * columns + first;
        const float *inputs[2] = {row, residual ? residual + m * columns + first : NULL};
        pointwise_run(program->buf, instructions, inputs, vector, residual ? 2 : 1, row, 0, last - first);
    }
}

typedef struct {
    ConvPointwise whole;   /* every output channel of the call, columns from 0 */
    const float *residual; /* the call's first output channel's row of it, or NULL */
    const float *tail;     /* x's columns from whole_end on, zero-padded to span columns per channel */
    int64_t span;
    const Py_buffer *program;
    int64_t col_begin, col_end, whole_end, column_groups, channel_groups, tiles;
} PointwiseJob;

/* one part: a range of column tiles x a range of output-channel blocks, each tile followed by its epilogue */
static void pointwise_part(void *context, int64_t index, int thread) {
    const PointwiseJob *job = context;
    (void)thread;
    int64_t group = index / job->channel_groups, block_group = index % job->channel_groups;
    int64_t blocks = job->whole.out_channels / CONV_BLOCK + (job->whole.out_channels % CONV_BLOCK != 0);
    int64_t m_first = blocks * block_group / job->channel_groups * CONV_BLOCK;
    int64_t m_last = blocks * (block_group + 1) / job->channel_groups * CONV_BLOCK;
    if (m_last > job->whole.out_channels) m_last = job->whole.out_channels;
    int64_t tile_first = job->tiles * group / job->column_groups, tile_last = job->tiles * (group + 1) / job->column_groups;
    ConvPointwise part = job->whole;
    part.packed += m_first * part.channels;
    if (part.bias) part.bias += m_first;
    part.out_channels = m_last - m_first;
    part.out += m_first * part.out_stride;
    const float *residual = job->residual ? job->residual + m_first * part.out_stride : NULL;
    for (int64_t tile = tile_first; tile < tile_last; ++tile) {
        int64_t first = job->col_begin + tile * POINTWISE_TILE_COLUMNS;
        int64_t last = first + POINTWISE_TILE_COLUMNS < job->col_end ? first + POINTWISE_TILE_COLUMNS : job->col_end;
        int64_t direct_end = last < job->whole_end ? last : job->whole_end;
        if (direct_end > first) conv_pointwise_cols(&part, first, direct_end);
        if (last > direct_end) {
            ConvPointwise padded = part;
            padded.x = job->tail;
            padded.x_stride = job->span;
            padded.out = part.out + job->whole_end;
            conv_pointwise_cols(&padded, direct_end - job->whole_end, last - job->whole_end);
        }
        if (job->program)
            pointwise_epilogue(job->program, part.out, residual, part.out_stride, part.out_channels, first, last);
    }
}

/* conv2d_pointwise(x, packed, bias or None, out, channels, out_channels, m_begin=0, m_count=-1, col_begin=0,
 * col_count=-1, program=None, residual=None): out (M, P) = packed (ceil(M / CONV_BLOCK), C, CONV_BLOCK) applied to
 * x (C, P) plus bias, for output channels [m_begin, +m_count) (m_begin a multiple of CONV_BLOCK) and columns
 * [col_begin, +col_count); program: a per-element program over the output (input 0) and the residual (input 1, an
 * (M, P) array apart from the output), applied to each tile of columns right after it is computed. */
PyObject *conv2d_pointwise(PyObject *self, PyObject *args) {
    Py_buffer x, packed, out, bias = {0}, program = {0}, residual = {0};
    PyObject *bias_object, *program_object = Py_None, *residual_object = Py_None, *result = NULL;
    int64_t channels, out_channels, m_begin = 0, m_count = -1, col_begin = 0, col_count = -1, columns, blocks;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*Ow*LL|LLLLOO", &x, &packed, &bias_object, &out, &channels, &out_channels,
                          &m_begin, &m_count, &col_begin, &col_count, &program_object, &residual_object))
        return NULL;
    if (bias_object != Py_None && PyObject_GetBuffer(bias_object, &bias, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (program_object != Py_None && PyObject_GetBuffer(program_object, &program, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (residual_object != Py_None && PyObject_GetBuffer(residual_object, &residual, PyBUF_C_CONTIGUOUS) < 0) goto done;
    if (channels < 1 || out_channels < 1 || out.len % (Py_ssize_t)sizeof(float)
        || (out.len / (Py_ssize_t)sizeof(float)) % out_channels) {
        PyErr_Format(PyExc_ValueError, "conv2d_pointwise: expected >= 1 input and output channels and an output of "
                     "whole rows, got %lld, %lld and %zd bytes", (long long)channels, (long long)out_channels, out.len);
        goto done;
    }
    columns = (int64_t)(out.len / (Py_ssize_t)sizeof(float)) / out_channels;
    blocks = out_channels / CONV_BLOCK + (out_channels % CONV_BLOCK != 0);
    if (CHECK_SIZE(&x, "input", channels, columns) < 0 || CHECK_SIZE(&packed, "packed weights", blocks, channels,
                                                                      CONV_BLOCK) < 0
        || (bias.buf && CHECK_SIZE(&bias, "bias", out_channels) < 0)
        || (residual.buf && CHECK_SIZE(&residual, "residual", out_channels, columns) < 0))
        goto done;
    if (program.buf && (program.len % (Py_ssize_t)sizeof(PointwiseInstruction)
                        || program.len > (Py_ssize_t)(PW_MAX_REGISTERS * sizeof(PointwiseInstruction))
                        || pointwise_check(program.buf, (int)(program.len / (Py_ssize_t)sizeof(PointwiseInstruction)),
                                           residual.buf ? 2 : 1) < 0)) {
        PyErr_Format(PyExc_ValueError, "conv2d_pointwise: malformed epilogue program of %zd bytes (%d inputs, at most "
                     "%d registers, each argument an earlier register)", program.len, residual.buf ? 2 : 1,
                     PW_MAX_REGISTERS);
        goto done;
    }
    if (residual.buf && !program.buf) {
        PyErr_SetString(PyExc_ValueError, "conv2d_pointwise: a residual without an epilogue program reading it");
        goto done;
    }
    if (overlaps(&out, &x) || (residual.buf && overlaps(&out, &residual))) {
        PyErr_SetString(PyExc_ValueError, "conv2d_pointwise: the output overlaps the input or the residual");
        goto done;
    }
    if (m_count < 0) m_count = out_channels - m_begin;
    if (col_count < 0) col_count = columns - col_begin;
    if (m_begin < 0 || m_begin % CONV_BLOCK || m_begin > out_channels || m_count < 0 || m_count > out_channels - m_begin
        || col_begin < 0 || col_begin > columns || col_count < 0 || col_count > columns - col_begin) {
        PyErr_Format(PyExc_ValueError, "conv2d_pointwise: output channels [%lld, +%lld) (the first a multiple of %d) or "
                     "columns [%lld, +%lld) outside the output's %lld x %lld", (long long)m_begin, (long long)m_count,
                     CONV_BLOCK, (long long)col_begin, (long long)col_count, (long long)out_channels,
                     (long long)columns);
        goto done;
    }
    if (m_count == 0 || col_count == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    int64_t span = conv_pointwise_span(), col_end = col_begin + col_count;
    /* spans (from col_begin, at multiples of CONV_VECTOR_ALIGN) read x directly up to whole_end; the last few columns
     * are read from a zero-padded copy, made once before the parts run */
    int64_t whole_end = col_begin + (columns - col_begin) / CONV_VECTOR_ALIGN * CONV_VECTOR_ALIGN, tail_bytes;
    float *tail = NULL;
    if (col_end > whole_end) {
        if (checked_product(3, (int64_t[]){channels, span, sizeof(float)}, &tail_bytes) < 0
            || !(tail = calloc(1, tail_bytes))) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            goto done;
        }
        for (int64_t c = 0; c < channels; ++c)
            memcpy(tail + c * span, (const float *)x.buf + c * columns + whole_end, (columns - whole_end) * sizeof(float));
    }
    PointwiseJob job = {{x.buf, columns, channels, (const float *)packed.buf + m_begin * channels,
                         bias.buf ? (const float *)bias.buf + m_begin : NULL, m_count, columns,
                         (float *)out.buf + m_begin * columns},
                        residual.buf ? (const float *)residual.buf + m_begin * columns : NULL, tail, span,
                        program.buf ? &program : NULL, col_begin, col_end, whole_end, 0, 0, 0};
    int64_t tiles = (col_count + POINTWISE_TILE_COLUMNS - 1) / POINTWISE_TILE_COLUMNS;
    int64_t channel_blocks = m_count / CONV_BLOCK + (m_count % CONV_BLOCK != 0), work, parts;
    if (checked_product(3, (int64_t[]){m_count, channels, col_count}, &work) < 0) goto done;
    parts = parallel_parts(work, conv_part_work, PARTS_PER_THREAD);
    /* column groups first (the weights are read once per group), then channel groups within each */
    job.column_groups = parts < tiles ? parts : tiles;
    job.channel_groups = parts / job.column_groups < channel_blocks ? parts / job.column_groups : channel_blocks;
    job.tiles = tiles;
    int threads = parallel_threads();
    Py_BEGIN_ALLOW_THREADS
    parallel_run(pointwise_part, &job, job.column_groups * job.channel_groups, threads);
    Py_END_ALLOW_THREADS
    free(tail);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&packed);
    PyBuffer_Release(&out);
    if (bias.buf) PyBuffer_Release(&bias);
    if (program.buf) PyBuffer_Release(&program);
    if (residual.buf) PyBuffer_Release(&residual);
    return result;
}

PyObject *native_conv_isa(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(conv_isa());
}


/* set_threads(count, part_work=-1, lag=-1, part_elements=-1): the threads native_parallel.c splits the native kernels
 * over (the caller counted); part_work > 0: multiply-adds per part of a convolution (0: the default; tests ask for 1,
 * the most parts); part_elements > 0: elements per part of a per-element or row kernel (0: the default); lag 0 / 1:
 * the lag pause off / on (tests turn it off: a loaded machine would otherwise make them run inline). -1 leaves a
 * setting as it is. */
PyObject *native_set_threads(PyObject *self, PyObject *args, PyObject *keywords) {
    static char *names[] = {"count", "part_work", "lag", "part_elements", NULL};
    int count, lag = -1;
    long long part_work = -1, part_elements = -1;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, keywords, "i|LiL", names, &count, &part_work, &lag, &part_elements))
        return NULL;
    if (count < 1 || count > PARALLEL_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "set_threads: expected 1 to %d threads, got %d", PARALLEL_MAX_THREADS, count);
        return NULL;
    }
    parallel_set_threads(count);
    if (part_work >= 0) conv_part_work = part_work > 0 ? part_work : CONV_PART_WORK;
    if (part_elements >= 0) elementwise_set_part_elements(part_elements);
    if (lag >= 0) parallel_set_lag(lag);
    return Py_NewRef(Py_None);
}

/* parallel_stats() -> (threads, jobs split, jobs of several parts run inline, lag pauses) */
PyObject *native_parallel_stats(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    ParallelStats stats = parallel_stats();
    return Py_BuildValue("iLLL", parallel_threads(), (long long)stats.split, (long long)stats.inline_,
                         (long long)stats.lags);
}
