/* Fused per-element programs over float32: the baseline build of pointwise_body.h, and the dispatch table
 * filled once from the CPU's features (x86-64: the AVX-512 or AVX2+FMA build of pointwise_ukernels_avx2.c where
 * cpuid says so; aarch64: NEON is the baseline, so the one build is the vector one). Pure C, no Python: tests/native/
 * cross-compiles it for aarch64 and runs it under qemu. */
#include "pointwise_ukernels.h"

#define PW_SUFFIX(name) name##_baseline
#include "pointwise_body.h"

typedef void (*PointwiseRun)(const PointwiseInstruction *, int, const float *const *, const uint8_t *, int, float *,
                             int64_t, int64_t);
typedef void (*SoftmaxRows)(const float *, float *, int64_t, int64_t);
typedef void (*RowMeans)(const float *, float *, int64_t, int64_t);
typedef void (*LayernormRows)(const float *, float *, int64_t, int64_t, const float *, const float *, float);
typedef void (*LstmSteps)(const float *, const float *, float *, float *, float *, int64_t, int64_t, int64_t, int64_t,
                          int, float *);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <stdlib.h>
#include <string.h>

#define DECLARE_BUILD(isa)                                                                                          \
    void pointwise_run_##isa(const PointwiseInstruction *program, int count, const float *const *inputs,            \
                             const uint8_t *is_scalar, int input_count, float *out, int64_t begin, int64_t end);    \
    void softmax_rows_##isa(const float *x, float *out, int64_t rows, int64_t cols);                                \
    void row_means_##isa(const float *x, float *out, int64_t rows, int64_t cols);                                   \
    void layernorm_rows_##isa(const float *x, float *out, int64_t rows, int64_t cols, const float *scale,           \
                              const float *bias, float epsilon);                                                    \
    void lstm_steps_##isa(const float *projection, const float *r_t, float *h, float *c, float *y, int64_t y_step,  \
                          int64_t steps, int64_t batch, int64_t hidden, int reverse, float *gates);
DECLARE_BUILD(avx2)
DECLARE_BUILD(avx512)

/* EDGERT_CPU_ISA=baseline or avx2 caps the build chosen (to test every build on one machine), as for convolutions */
static int capped(const char *isa) {
    const char *cap = getenv("EDGERT_CPU_ISA");
    return cap != NULL && (strcmp(cap, "baseline") == 0 || (strcmp(cap, "avx2") == 0 && strcmp(isa, "avx512") == 0));
}

static int has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !capped("avx2");
}

static int has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && has_avx2_fma() && !capped("avx512");
}

#define CHOOSE(name) (has_avx512() ? name##_avx512 : has_avx2_fma() ? name##_avx2 : name##_baseline)
static LstmSteps choose_lstm(void) { return CHOOSE(lstm_steps); }
static PointwiseRun choose(void) { return CHOOSE(pointwise_run); }
static SoftmaxRows choose_softmax(void) { return CHOOSE(softmax_rows); }
static RowMeans choose_row_means(void) { return CHOOSE(row_means); }
static LayernormRows choose_layernorm(void) { return CHOOSE(layernorm_rows); }
#else
static PointwiseRun choose(void) { return pointwise_run_baseline; }
static LstmSteps choose_lstm(void) { return lstm_steps_baseline; }
static SoftmaxRows choose_softmax(void) { return softmax_rows_baseline; }
static RowMeans choose_row_means(void) { return row_means_baseline; }
static LayernormRows choose_layernorm(void) { return layernorm_rows_baseline; }
#endif

/* the dispatch table, filled on first use (a race fills it twice with the same pointers) */
static PointwiseRun chosen;
static SoftmaxRows chosen_softmax;
static RowMeans chosen_row_means;
static LayernormRows chosen_layernorm;
static LstmSteps chosen_lstm;

void lstm_steps(const float *projection, const float *r_t, float *h, float *c, float *y, int64_t y_step,
                int64_t steps, int64_t batch, int64_t hidden, int reverse, float *gates) {
    if (!chosen_lstm) chosen_lstm = choose_lstm();
    if (steps > 0 && batch > 0 && hidden > 0)
        chosen_lstm(projection, r_t, h, c, y, y_step, steps, batch, hidden, reverse, gates);
}

void layernorm_rows(const float *x, float *out, int64_t rows, int64_t cols, const float *scale, const float *bias,
                    float epsilon) {
    if (!chosen_layernorm) chosen_layernorm = choose_layernorm();
    if (rows > 0 && cols > 0) chosen_layernorm(x, out, rows, cols, scale, bias, epsilon);
}

void row_means(const float *x, float *out, int64_t rows, int64_t cols) {
    if (!chosen_row_means) chosen_row_means = choose_row_means();
    if (rows > 0 && cols > 0) chosen_row_means(x, out, rows, cols);
}

void softmax_rows(const float *x, float *out, int64_t rows, int64_t cols) {
    if (!chosen_softmax) chosen_softmax = choose_softmax();
    if (rows > 0 && cols > 0) chosen_softmax(x, out, rows, cols);
}

const char *pointwise_isa(void) {
    if (!chosen) chosen = choose();
#if defined(__aarch64__)
    return "neon";   /* aarch64's baseline */
#else
    return chosen == pointwise_run_baseline ? "baseline" : chosen == pointwise_run_avx2 ? "avx2+fma" : "avx512";
#endif
}

int pointwise_check(const PointwiseInstruction *program, int count, int input_count) {
    if (count < 1 || input_count < 0 || input_count + count > PW_MAX_REGISTERS) return -1;
    for (int k = 0; k < count; ++k) {
        const PointwiseInstruction *in = program + k;
        int available = input_count + k;
        if (in->op < 0 || in->op >= PW_OP_COUNT || in->arg0 < 0 || in->arg0 >= available) return -1;
        if (in->op < PW_FIRST_UNARY && (in->arg1 < 0 || in->arg1 >= available)) return -1;
    }
    return 0;
}

int pointwise_run(const PointwiseInstruction *program, int count, const float *const *inputs,
                  const uint8_t *is_scalar, int input_count, float *out, int64_t begin, int64_t end) {
    if (pointwise_check(program, count, input_count) < 0 || begin < 0 || end < begin) return -1;
    if (!chosen) chosen = choose();
    chosen(program, count, inputs, is_scalar, input_count, out, begin, end);
    return 0;
}
