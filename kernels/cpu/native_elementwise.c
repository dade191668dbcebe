/* The Python side of the per-element and per-row kernels of pointwise_ukernels.c (part of the _native module,
 * whose method table is in _native.c): argument parsing, buffer and range checks, and the GIL released around
 * the pure-C kernels. Every length is checked against the others before anything runs, so a wrong call is a
 * ValueError, never a crash. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "native_elementwise.h"
#include "native_parallel.h"

/* Large calls are cut into parts over native_parallel.c's threads: parts of PART_ELEMENTS (a multiple of
 * pointwise_ukernels.c's 256-element tile) from twice that on, row kernels by whole rows; the cut depends on the
 * sizes only, and each element (or row) is computed the same way in any part: one thread or several, the same bits. */
#define PART_ELEMENTS ((int64_t)1 << 15)
#define MOST_PARTS 64
static int64_t part_elements = PART_ELEMENTS;   /* tests ask for small parts (set_threads(part_elements=)) */

void elementwise_set_part_elements(int64_t elements) { part_elements = elements > 0 ? elements : PART_ELEMENTS; }

static int64_t element_parts(int64_t elements) {
    if (elements < 2 * part_elements) return 1;
    int64_t parts = (elements + part_elements - 1) / part_elements;
    return parts < MOST_PARTS ? parts : MOST_PARTS;
}

typedef struct {
    const PointwiseInstruction *program;
    int instructions, input_count;
    const float *const *inputs;
    const uint8_t *is_scalar;
    float *out;
    int64_t first, count, parts;
} ProgramJob;

static void program_part(void *context, int64_t index, int thread) {
    const ProgramJob *job = context;
    (void)thread;
    /* part boundaries on multiples of 256 elements from `first` */
    int64_t tiles = (job->count + 255) / 256;
    int64_t begin = job->first + tiles * index / job->parts * 256, end = job->first + tiles * (index + 1) / job->parts * 256;
    if (end > job->first + job->count) end = job->first + job->count;
    if (end > begin)
        pointwise_run(job->program, job->instructions, job->inputs, job->is_scalar, job->input_count, job->out, begin, end);
}

typedef enum { ROWS_SOFTMAX, ROWS_LAYERNORM } RowKernel;

typedef struct {
    RowKernel kernel;
    const float *x, *scale, *bias;
    float *out, epsilon;
    int64_t rows, cols, parts;
} RowJob;

static void row_part(void *context, int64_t index, int thread) {
    const RowJob *job = context;
    (void)thread;
    int64_t first = job->rows * index / job->parts, last = job->rows * (index + 1) / job->parts;
    if (last <= first) return;
    if (job->kernel == ROWS_SOFTMAX)
        softmax_rows(job->x + first * job->cols, job->out + first * job->cols, last - first, job->cols);
    else
        layernorm_rows(job->x + first * job->cols, job->out + first * job->cols, last - first, job->cols, job->scale,
                       job->bias, job->epsilon);
}

/* pointwise(program, inputs, out, first=0, count=-1): a fused per-element program (pointwise_ukernels.h: one
 * PointwiseInstruction record per instruction) over elements [first, first + count) of out; each input is
 * out's length or one float32 (a scalar). out may be an input itself (same start and length), nothing else. */
PyObject *native_pointwise(PyObject *self, PyObject *args) {
    Py_buffer program, out, views[PW_MAX_REGISTERS];
    PyObject *input_tuple, *result = NULL;
    int64_t first = 0, count = -1;
    int held = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O!w*|LL", &program, &PyTuple_Type, &input_tuple, &out, &first, &count))
        return NULL;
    Py_ssize_t input_count = PyTuple_GET_SIZE(input_tuple);
    int64_t elements = out.len / (Py_ssize_t)sizeof(float);
    int instructions = (int)(program.len / (Py_ssize_t)sizeof(PointwiseInstruction));
    const float *inputs[PW_MAX_REGISTERS];
    uint8_t is_scalar[PW_MAX_REGISTERS];
    if (program.len % (Py_ssize_t)sizeof(PointwiseInstruction) || out.len % (Py_ssize_t)sizeof(float)
        || input_count > PW_MAX_REGISTERS
        || pointwise_check(program.buf, instructions, (int)input_count) < 0) {
        PyErr_Format(PyExc_ValueError, "pointwise: malformed program of %zd bytes for %zd inputs (at most %d "
                     "registers, each argument an earlier register)", program.len, input_count, PW_MAX_REGISTERS);
        goto done;
    }
    for (; held < input_count; ++held) {
        Py_buffer *view = views + held;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(input_tuple, held), view, PyBUF_C_CONTIGUOUS) < 0) goto done;
        const char *begin = view->buf, *out_begin = out.buf;
        is_scalar[held] = view->len == (Py_ssize_t)sizeof(float);
        inputs[held] = view->buf;
        if (!is_scalar[held] && view->len != out.len) {
            PyErr_Format(PyExc_ValueError, "pointwise: input %d: expected %lld float32s or one, got %zd bytes",
                         held, (long long)elements, view->len);
            ++held;
            goto done;
        }
        if (begin < out_begin + out.len && out_begin < begin + view->len && !(begin == out_begin && !is_scalar[held])) {
            PyErr_Format(PyExc_ValueError, "pointwise: input %d overlaps the output without being it", held);
            ++held;
            goto done;
        }
    }
    if (count < 0) count = elements - first;
    if (first < 0 || first > elements || count < 0 || count > elements - first) {
        PyErr_Format(PyExc_ValueError, "pointwise: elements [%lld, +%lld) outside the output's %lld",
                     (long long)first, (long long)count, (long long)elements);
        goto done;
    }
    ProgramJob job = {program.buf, instructions, (int)input_count, inputs, is_scalar, out.buf, first, count,
                      element_parts(count)};
    int threads = job.parts > 1 ? parallel_threads() : 1;
    Py_BEGIN_ALLOW_THREADS
    parallel_run(program_part, &job, job.parts, threads);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < held; ++i) PyBuffer_Release(views + i);
    PyBuffer_Release(&program);
    PyBuffer_Release(&out);
    return result;
}

/* Shared by the row kernels: out is x itself or apart from it, and the row range [*first, +*count) (count -1: to
 * the end) lies within the input's rows. 0, or -1 with a ValueError naming the kernel. */
static int check_rows(const char *kernel, const Py_buffer *x, const Py_buffer *out, int64_t rows, int64_t *first,
                      int64_t *count) {
    const char *a = x->buf, *b = out->buf;
    if (a != b && a < b + out->len && b < a + x->len) {
        PyErr_Format(PyExc_ValueError, "%s: the output overlaps the input without being it", kernel);
        return -1;
    }
    if (*count < 0) *count = rows - *first;
    if (*first < 0 || *first > rows || *count < 0 || *count > rows - *first) {
        PyErr_Format(PyExc_ValueError, "%s: rows [%lld, +%lld) outside the input's %lld", kernel, (long long)*first,
                     (long long)*count, (long long)rows);
        return -1;
    }
    return 0;
}

/* softmax(x, out, cols, first_row=0, row_count=-1): softmax over rows of `cols` contiguous floats, rows
 * [first_row, first_row + row_count); out is x's size and may be x itself (same start), nothing else. */
PyObject *native_softmax(PyObject *self, PyObject *args) {
    Py_buffer x, out;
    int64_t cols, first = 0, count = -1;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*L|LL", &x, &out, &cols, &first, &count)) return NULL;
    int64_t rows = cols > 0 ? x.len / (Py_ssize_t)sizeof(float) / cols : 0;
    if (cols < 1 || x.len != out.len || x.len % (Py_ssize_t)sizeof(float) || (x.len / (Py_ssize_t)sizeof(float)) % cols) {
        PyErr_Format(PyExc_ValueError, "softmax: expected input and output of equal size, a multiple of %lld "
                     "float32 rows; got %zd and %zd bytes", (long long)cols, x.len, out.len);
        goto done;
    }
    if (check_rows("softmax", &x, &out, rows, &first, &count) < 0) goto done;
    RowJob job = {ROWS_SOFTMAX, (const float *)x.buf + first * cols, NULL, NULL, (float *)out.buf + first * cols, 0.0f,
                  count, cols, 1};
    job.parts = element_parts(count * cols);
    if (job.parts > count) job.parts = count > 0 ? count : 1;
    int threads = job.parts > 1 ? parallel_threads() : 1;
    Py_BEGIN_ALLOW_THREADS
    parallel_run(row_part, &job, job.parts, threads);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

/* row_means(x, out, cols, first_row=0, row_count=-1): out[r] = the mean of row r of `cols` contiguous floats of x, for
 * rows [first_row, first_row + row_count); out holds one float per row, apart from x. */
PyObject *native_row_means(PyObject *self, PyObject *args) {
    Py_buffer x, out;
    int64_t cols, first = 0, count = -1;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*L|LL", &x, &out, &cols, &first, &count)) return NULL;
    int64_t elements = x.len / (Py_ssize_t)sizeof(float), rows = cols > 0 ? elements / cols : 0;
    if (cols < 1 || x.len % (Py_ssize_t)sizeof(float) || elements % cols || out.len != rows * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "row_means: expected an input of float32 rows of %lld and one output float per "
                     "row; got %zd and %zd bytes", (long long)cols, x.len, out.len);
        goto done;
    }
    if ((const char *)out.buf < (const char *)x.buf + x.len && (const char *)x.buf < (const char *)out.buf + out.len) {
        PyErr_SetString(PyExc_ValueError, "row_means: the output overlaps the input");
        goto done;
    }
    if (check_rows("row_means", &out, &out, rows, &first, &count) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    row_means((const float *)x.buf + first * cols, (float *)out.buf + first, count, cols);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

/* layernorm(x, out, cols, scale or None, bias or None, epsilon, first_row=0, row_count=-1): layer normalization
 * over rows of `cols` contiguous floats; scale and bias hold cols floats; out may be x itself, nothing else. */
PyObject *native_layernorm(PyObject *self, PyObject *args) {
    Py_buffer x, out, scale = {0}, bias = {0};
    PyObject *scale_object, *bias_object, *result = NULL;
    int64_t cols, first = 0, count = -1;
    float epsilon;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*LOOf|LL", &x, &out, &cols, &scale_object, &bias_object, &epsilon, &first,
                          &count))
        return NULL;
    if ((scale_object != Py_None && PyObject_GetBuffer(scale_object, &scale, PyBUF_C_CONTIGUOUS) < 0)
        || (bias_object != Py_None && PyObject_GetBuffer(bias_object, &bias, PyBUF_C_CONTIGUOUS) < 0))
        goto done;
    int64_t elements = x.len / (Py_ssize_t)sizeof(float), rows = cols > 0 ? elements / cols : 0;
    if (cols < 1 || x.len != out.len || x.len % (Py_ssize_t)sizeof(float) || elements % cols
        || (scale.buf && scale.len != cols * (Py_ssize_t)sizeof(float))
        || (bias.buf && bias.len != cols * (Py_ssize_t)sizeof(float))) {
        PyErr_Format(PyExc_ValueError, "layernorm: expected input and output of equal size in rows of %lld float32s "
                     "and scale/bias of one row; got %zd, %zd, %zd and %zd bytes", (long long)cols, x.len, out.len,
                     scale.len, bias.len);
        goto done;
    }
    if (check_rows("layernorm", &x, &out, rows, &first, &count) < 0) goto done;
    RowJob job = {ROWS_LAYERNORM, (const float *)x.buf + first * cols, scale.buf, bias.buf,
                  (float *)out.buf + first * cols, epsilon, count, cols, 1};
    job.parts = element_parts(count * cols);
    if (job.parts > count) job.parts = count > 0 ? count : 1;
    int threads = job.parts > 1 ? parallel_threads() : 1;
    Py_BEGIN_ALLOW_THREADS
    parallel_run(row_part, &job, job.parts, threads);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    if (scale.buf) PyBuffer_Release(&scale);
    if (bias.buf) PyBuffer_Release(&bias);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

/* isa(): the instruction set the kernels run with ("avx2+fma", "baseline" or, on aarch64, "neon") */
PyObject *native_isa(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(pointwise_isa());
}

/* the float count of a buffer, or -1 when it is not whole float32s */
static int64_t floats_in(const Py_buffer *buffer) {
    return buffer->len % (Py_ssize_t)sizeof(float) ? -1 : (int64_t)(buffer->len / (Py_ssize_t)sizeof(float));
}

/* lstm(projection, r_t, h, c, y, y_offset, y_step, steps, batch, hidden, reverse): one LSTM direction with ONNX's
 * default cell (lstm_steps); projection (steps, batch, 4 hidden), r_t (hidden, 4 hidden), h and c (batch, hidden)
 * updated in place, y written at y_offset + t * y_step + b * hidden. Every size is checked against its buffer. */
PyObject *native_lstm(PyObject *self, PyObject *args) {
    Py_buffer projection, r_t, h, c, y;
    int64_t y_offset, y_step, steps, batch, hidden, width, rows, last;
    int reverse;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*w*w*w*LLLLLp", &projection, &r_t, &h, &c, &y, &y_offset, &y_step, &steps, &batch,
                          &hidden, &reverse))
        return NULL;
    int bad = steps < 1 || batch < 1 || hidden < 1 || y_offset < 0 || y_step < 0
              || __builtin_mul_overflow(hidden, 4, &width) || __builtin_mul_overflow(steps, batch, &rows)
              || __builtin_mul_overflow(rows, width, &rows) || floats_in(&projection) != rows
              || __builtin_mul_overflow(hidden, width, &rows) || floats_in(&r_t) != rows
              || __builtin_mul_overflow(batch, hidden, &rows) || floats_in(&h) != rows || floats_in(&c) != rows
              || __builtin_mul_overflow(steps - 1, y_step, &last) || __builtin_add_overflow(last, y_offset, &last)
              || __builtin_add_overflow(last, rows, &last) || floats_in(&y) < last;
    if (bad) {
        PyErr_Format(PyExc_ValueError, "lstm: buffers of %zd, %zd, %zd, %zd and %zd bytes do not fit %lld steps of "
                     "batch %lld, hidden %lld (y at %lld + t x %lld)", projection.len, r_t.len, h.len, c.len, y.len,
                     (long long)steps, (long long)batch, (long long)hidden, (long long)y_offset, (long long)y_step);
        goto done;
    }
    float *gates = malloc(batch * width * sizeof(float));
    if (!gates) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    lstm_steps(projection.buf, r_t.buf, h.buf, c.buf, (float *)y.buf + y_offset, y_step, steps, batch, hidden,
               reverse, gates);
    Py_END_ALLOW_THREADS
    free(gates);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&projection);
    PyBuffer_Release(&r_t);
    PyBuffer_Release(&h);
    PyBuffer_Release(&c);
    PyBuffer_Release(&y);
    return result;
}
