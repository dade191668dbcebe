/* The _native module's fused layer groups: several small layers of a network in one call, where each alone costs
 * more in dispatch (a Python call, argument parsing, a NumPy broadcast) than in arithmetic.
 *
 * squeeze_excite: MobileNetV3's, LCNet's and EfficientNet's squeeze-excite block, global average pool -> 1x1
 * convolution (+ activations) -> 1x1 convolution (+ activations) -> per-channel scale of the block's input: four
 * layers of 3-20 µs of work each, run here in one pass over the block's input and one over its output. The pooled,
 * hidden and scale vectors are still written to their own tensors (in the layers' order), so every tensor of the
 * plan holds what the unfused layers would have left there; they are computed in the caller's private `work` floats,
 * so those tensors may share memory with each other or with the output (the memory planner reuses them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "native_fused.h"
#include "pointwise_ukernels.h"

/* x86-64: the loops below compiled for AVX2 and the baseline, picked by cpuid at first call (as in _native.c) */
#if defined(__x86_64__) && defined(__has_attribute) && !defined(EDGERT_NO_CLONES)
#if __has_attribute(target_clones)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SIMD_CLONES
#define SIMD_CLONES
#endif

/* v[0, n) = activations(v) in place; program: records of pointwise_ukernels.h over one input, or NULL */
static void apply_program(const Py_buffer *program, float *v, int64_t n) {
    if (!program->buf) return;
    const float *inputs[1] = {v};
    const uint8_t vector[1] = {0};
    pointwise_run(program->buf, (int)(program->len / (Py_ssize_t)sizeof(PointwiseInstruction)), inputs, vector, 1,
                  v, 0, n);
}

/* y[0, m) = bias + x[0, k) @ w_t, w_t (k, m) row-major (the transposed 1x1 weights: the loop over m vectorizes) */
SIMD_CLONES static void vector_times_matrix(const float *x, const float *w_t, const float *bias, float *y, int64_t k, int64_t m) {
    for (int64_t j = 0; j < m; ++j) y[j] = bias ? bias[j] : 0.0f;
    for (int64_t i = 0; i < k; ++i) {
        const float xi = x[i];
        const float *restrict row = w_t + i * m;
        float *restrict target = y;
        for (int64_t j = 0; j < m; ++j) target[j] += xi * row[j];
    }
}

/* out = x * scale[c] over each of `channels` planes of `positions` floats; out may be x itself */
SIMD_CLONES static void scale_planes(const float *x, const float *scale, float *out, int64_t channels,
                                     int64_t positions) {
    for (int64_t c = 0; c < channels; ++c) {
        const float s = scale[c];
        const float *from = x + c * positions;
        float *to = out + c * positions;   /* may be `from` itself: each element is read before it is written */
        for (int64_t i = 0; i < positions; ++i) to[i] = from[i] * s;
    }
}

static int check_program(const Py_buffer *program) {
    if (!program->buf) return 0;
    int count = (int)(program->len / (Py_ssize_t)sizeof(PointwiseInstruction));
    if (program->len % (Py_ssize_t)sizeof(PointwiseInstruction) || count > PW_MAX_REGISTERS
        || pointwise_check(program->buf, count, 1) < 0) {
        PyErr_Format(PyExc_ValueError, "squeeze_excite: malformed activation program of %zd bytes (one input, at most "
                     "%d registers)", program->len, PW_MAX_REGISTERS);
        return -1;
    }
    return 0;
}

static int overlaps(const Py_buffer *a, const Py_buffer *b) {
    return (const char *)a->buf < (const char *)b->buf + b->len && (const char *)b->buf < (const char *)a->buf + a->len;
}

/* squeeze_excite(x, out, pooled, hidden, scale, reduce_t, reduce_bias, expand_t, expand_bias, reduce_program,
 * expand_program, work, images, channels, reduced): for each image, pooled = the mean of each channel's plane of x
 * (images x channels planes of equal size), hidden = reduce_program(pooled @ reduce_t + reduce_bias), scale =
 * expand_program(hidden @ expand_t + expand_bias), out = x * scale per channel. reduce_t (channels, reduced) and
 * expand_t (reduced, channels) are the 1x1 weights transposed; biases and programs may be None; work holds
 * 2 x channels + reduced floats. out is x itself or apart from it; pooled, hidden, scale and work are apart from x. */
PyObject *native_squeeze_excite(PyObject *self, PyObject *args) {
    Py_buffer x, out, pooled, hidden, scale, reduce_t, expand_t, work;
    Py_buffer reduce_bias = {0}, expand_bias = {0}, reduce_program = {0}, expand_program = {0};
    PyObject *objects[4], *result = NULL;
    int64_t images, channels, reduced;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*w*w*w*y*Oy*OOOw*LLL", &x, &out, &pooled, &hidden, &scale, &reduce_t, &objects[0],
                          &expand_t, &objects[1], &objects[2], &objects[3], &work, &images, &channels, &reduced))
        return NULL;
    Py_buffer *optional[4] = {&reduce_bias, &expand_bias, &reduce_program, &expand_program};
    for (int i = 0; i < 4; ++i)
        if (objects[i] != Py_None && PyObject_GetBuffer(objects[i], optional[i], PyBUF_C_CONTIGUOUS) < 0) goto done;
    const Py_ssize_t f = (Py_ssize_t)sizeof(float);
    int64_t planes = images * channels, positions = planes > 0 ? x.len / f / planes : 0;
    if (images < 1 || channels < 1 || reduced < 1 || images > INT32_MAX || channels > INT32_MAX || reduced > INT32_MAX
        || x.len % f || positions < 1 || x.len != planes * positions * f || out.len != x.len
        || pooled.len != planes * f || scale.len != planes * f || hidden.len != images * reduced * f
        || reduce_t.len != channels * reduced * f || expand_t.len != channels * reduced * f
        || (reduce_bias.buf && reduce_bias.len != reduced * f) || (expand_bias.buf && expand_bias.len != channels * f)
        || work.len < (2 * channels + reduced) * f) {
        PyErr_Format(PyExc_ValueError, "squeeze_excite: buffers do not fit %lld images of %lld channels reduced to %lld "
                     "(input %zd bytes, output %zd, pooled %zd, hidden %zd, scale %zd, work %zd)", (long long)images,
                     (long long)channels, (long long)reduced, x.len, out.len, pooled.len, hidden.len, scale.len, work.len);
        goto done;
    }
    if ((overlaps(&x, &out) && x.buf != out.buf) || overlaps(&x, &pooled) || overlaps(&x, &hidden)
        || overlaps(&x, &scale) || overlaps(&x, &work) || overlaps(&out, &work) || overlaps(&pooled, &work)
        || overlaps(&hidden, &work) || overlaps(&scale, &work)) {
        PyErr_SetString(PyExc_ValueError, "squeeze_excite: the output must be the input itself or apart from it, and "
                        "the pooled, hidden, scale and work buffers apart from the input and work apart from all");
        goto done;
    }
    if (check_program(&reduce_program) < 0 || check_program(&expand_program) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    float *mean = work.buf, *middle = mean + channels, *factor = middle + reduced;
    for (int64_t n = 0; n < images; ++n) {
        const float *input = (const float *)x.buf + n * channels * positions;
        float *output = (float *)out.buf + n * channels * positions;
        row_means(input, mean, channels, positions);
        memcpy((float *)pooled.buf + n * channels, mean, channels * sizeof(float));
        vector_times_matrix(mean, reduce_t.buf, reduce_bias.buf, middle, channels, reduced);
        apply_program(&reduce_program, middle, reduced);
        memcpy((float *)hidden.buf + n * reduced, middle, reduced * sizeof(float));
        vector_times_matrix(middle, expand_t.buf, expand_bias.buf, factor, reduced, channels);
        apply_program(&expand_program, factor, channels);
        memcpy((float *)scale.buf + n * channels, factor, channels * sizeof(float));
        scale_planes(input, factor, output, channels, positions);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    PyBuffer_Release(&pooled);
    PyBuffer_Release(&hidden);
    PyBuffer_Release(&scale);
    PyBuffer_Release(&reduce_t);
    PyBuffer_Release(&expand_t);
    PyBuffer_Release(&work);
    for (int i = 0; i < 4; ++i)
        if (optional[i]->buf) PyBuffer_Release(optional[i]);
    return result;
}
