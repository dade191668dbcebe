/* edgert.kernels.cpu._native's direct convolution (conv2d_direct): the Python entry point that fills padded input
 * rows tile by tile (_native.c's scratch planes, one per input channel) and runs conv_ukernels.c's microkernels
 * over them, then the activation epilogue on each tile while it is in cache. */
#include <stdlib.h>
#include <string.h>

#include "conv_ukernels.h"
#include "native_conv.h"
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

/* conv2d_direct(x, packed, bias or None, out, geometry, out_channels, row_begin=0, row_count=-1, program=None): a
 * single-image, single-group 2-D convolution computed straight from padded input planes (conv_ukernels.h's
 * ConvDirect), for output rows [row_begin, row_begin + row_count); packed: the weights as (ceil(M / CONV_BLOCK),
 * C x taps, CONV_BLOCK); program: a per-element program of one input (pointwise_ukernels.h's records: an activation
 * epilogue) applied to each row tile right after it is computed. */
PyObject *conv2d_direct(PyObject *self, PyObject *args) {
    Py_buffer x, packed, out, geometry, bias = {0}, program = {0};
    PyObject *bias_object, *program_object = Py_None, *result = NULL;
    Geometry g;
    Scratch s;
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
    tile = DIRECT_TILE_FLOATS / per_row > 1 ? DIRECT_TILE_FLOATS / per_row : 1;   /* per_row < 2^56: no overflow */
    if (tile > row_count) tile = row_count;
    window = (tile - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 2;   /* tile > 1 only for small strides */
    if (make_scratch(&g, 0.0f, g.channels, window, 0, &s) < 0) goto done;
    /* Unit strides: the scratch rows are as wide as the padded input, so a tile's output rows can be computed as one
     * flat run over them (the padding columns computed too, then dropped): narrow rows then fill whole vectors */
    int64_t vector = CONV_VECTOR_ALIGN, flat_bytes = 0;   /* a row's last span takes only the vectors it needs */
    float *flat = NULL;
    if (g.stride_h == 1 && g.stride_w == 1 && s.row_stride < (g.out_width + vector - 1) / vector * vector) {
        if (checked_product(4, (int64_t[]){out_channels, tile, s.row_stride, sizeof(float)}, &flat_bytes) < 0
            || !(flat = malloc(flat_bytes))) {
            free_scratch(&s);
            if (!PyErr_Occurred()) PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (int64_t first = row_begin; first < row_begin + row_count; first += tile) {
        int64_t last = first + tile < row_begin + row_count ? first + tile : row_begin + row_count;
        fill_direct_rows(&g, &s, x.buf, first, last);
        if (flat)
            direct_flat_tile(&g, &s, packed.buf, bias.buf, out_channels, flat, out.buf, first, last);
        else {
            ConvDirect p = {s.data, s.elements, g.channels, g.kernel_h * g.kernel_w, g.stride_h * s.row_stride, first,
                            s.taps, packed.buf, bias.buf, out_channels, g.out_height, g.out_width, out.buf};
            conv_direct_rows(&p, first, last);
        }
        if (program.buf) direct_epilogue(&g, out_channels, out.buf, &program, first, last);
    }
    Py_END_ALLOW_THREADS
    free(flat);
    free_scratch(&s);
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
     * are read from a zero-padded copy */
    int64_t whole_end = col_begin + (columns - col_begin) / CONV_VECTOR_ALIGN * CONV_VECTOR_ALIGN, tail_bytes;
    float *tail = NULL;
    if (col_end > whole_end) {
        if (checked_product(3, (int64_t[]){channels, span, sizeof(float)}, &tail_bytes) < 0
            || !(tail = calloc(1, tail_bytes))) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            goto done;
        }
    }
    const float *x_data = x.buf, *residual_data = residual.buf ? (const float *)residual.buf + m_begin * columns : NULL;
    float *out_data = (float *)out.buf + m_begin * columns;
    ConvPointwise whole = {x_data, columns, channels, (const float *)packed.buf + m_begin * channels,
                           bias.buf ? (const float *)bias.buf + m_begin : NULL, m_count, columns, out_data};
    Py_BEGIN_ALLOW_THREADS
    for (int64_t first = col_begin; first < col_end; first += POINTWISE_TILE_COLUMNS) {
        int64_t last = first + POINTWISE_TILE_COLUMNS < col_end ? first + POINTWISE_TILE_COLUMNS : col_end;
        int64_t direct_end = last < whole_end ? last : whole_end;
        if (direct_end > first) conv_pointwise_cols(&whole, first, direct_end);
        if (last > direct_end) {
            for (int64_t c = 0; c < channels; ++c)
                memcpy(tail + c * span, x_data + c * columns + whole_end, (columns - whole_end) * sizeof(float));
            ConvPointwise part = whole;
            part.x = tail;
            part.x_stride = span;
            part.out = out_data + whole_end;
            conv_pointwise_cols(&part, direct_end - whole_end, last - whole_end);
        }
        if (program.buf) pointwise_epilogue(&program, out_data, residual_data, columns, m_count, first, last);
    }
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

