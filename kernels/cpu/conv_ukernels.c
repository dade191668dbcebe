/* Convolution microkernels over float32: the baseline build of conv_body.h (NEON on aarch64, SSE2 on x86-64) and
 * the dispatch table filled once from the CPU's features (x86-64: the AVX-512 or AVX2+FMA build of
 * conv_ukernels_avx2.c where cpuid says so), as pointwise_ukernels.c does. Pure C, no Python: tests/native/conv_check.c runs it natively and
 * cross-compiled for aarch64 under qemu. */
#include <stdlib.h>
#include <string.h>

#include "conv_ukernels.h"

#define CONV_SUFFIX(name) name##_baseline
#include "conv_body.h"

typedef void (*DepthwiseRows)(float *, int64_t, int64_t, const float *, int64_t, const int64_t *, int64_t,
                              const float *, float);
typedef void (*DirectRows)(const ConvDirect *, int64_t, int64_t);
typedef void (*PointwiseCols)(const ConvPointwise *, int64_t, int64_t);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
void conv_depthwise_rows_avx2(float *out, int64_t rows, int64_t out_w, const float *plane, int64_t row_step,
                              const int64_t *offsets, int64_t taps, const float *w, float start);
void conv_direct_rows_avx2(const ConvDirect *p, int64_t row_begin, int64_t row_end);
void conv_depthwise_rows_avx512(float *out, int64_t rows, int64_t out_w, const float *plane, int64_t row_step,
                                const int64_t *offsets, int64_t taps, const float *w, float start);
void conv_direct_rows_avx512(const ConvDirect *p, int64_t row_begin, int64_t row_end);
void conv_pointwise_cols_avx2(const ConvPointwise *p, int64_t col_begin, int64_t col_end);
void conv_pointwise_cols_avx512(const ConvPointwise *p, int64_t col_begin, int64_t col_end);

/* EDGERT_CPU_ISA=baseline or avx2 caps the build chosen (to test every build on one machine) */
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

/* depthwise rows narrower than 16 outputs (7x7 to 14x14 planes) waste fewer lanes in 8-float vectors; wider ones run
 * the AVX-512 build (half the instructions) where there is one */
static DepthwiseRows choose_depthwise(void) {
    return has_avx2_fma() ? conv_depthwise_rows_avx2 : conv_depthwise_rows_baseline;
}
static DepthwiseRows choose_wide_depthwise(void) {
    return has_avx512() ? conv_depthwise_rows_avx512 : choose_depthwise();
}
static DirectRows choose_direct(void) {
    return has_avx512() ? conv_direct_rows_avx512 : has_avx2_fma() ? conv_direct_rows_avx2 : conv_direct_rows_baseline;
}
/* the same build as the direct kernel's, so that conv_pointwise_span() == conv_direct_span() */
static PointwiseCols choose_pointwise(void) {
    return has_avx512() ? conv_pointwise_cols_avx512 : has_avx2_fma() ? conv_pointwise_cols_avx2
                                                                      : conv_pointwise_cols_baseline;
}
#else
static DepthwiseRows choose_depthwise(void) { return conv_depthwise_rows_baseline; }
static DepthwiseRows choose_wide_depthwise(void) { return conv_depthwise_rows_baseline; }
static DirectRows choose_direct(void) { return conv_direct_rows_baseline; }
static PointwiseCols choose_pointwise(void) { return conv_pointwise_cols_baseline; }
#endif

/* the dispatch table, filled on first use (a race fills it twice with the same pointers) */
static DepthwiseRows chosen_depthwise, chosen_wide_depthwise;
static DirectRows chosen_direct;
static PointwiseCols chosen_pointwise;

void conv_depthwise_rows(float *out, int64_t rows, int64_t out_w, const float *plane, int64_t row_step,
                         const int64_t *offsets, int64_t taps, const float *w, float start) {
    if (!chosen_depthwise) chosen_depthwise = choose_depthwise();
    if (!chosen_wide_depthwise) chosen_wide_depthwise = choose_wide_depthwise();
    if (rows > 0 && out_w > 0)
        (out_w >= 16 ? chosen_wide_depthwise : chosen_depthwise)(out, rows, out_w, plane, row_step, offsets, taps, w,
                                                                 start);
}

void conv_direct_rows(const ConvDirect *p, int64_t row_begin, int64_t row_end) {
    if (!chosen_direct) chosen_direct = choose_direct();
    if (row_end > row_begin && p->out_w > 0 && p->out_channels > 0) chosen_direct(p, row_begin, row_end);
}

void conv_pointwise_cols(const ConvPointwise *p, int64_t col_begin, int64_t col_end) {
    if (!chosen_pointwise) chosen_pointwise = choose_pointwise();
    if (col_end > col_begin && p->out_channels > 0 && p->channels > 0) chosen_pointwise(p, col_begin, col_end);
}

int64_t conv_pointwise_span(void) {
    if (!chosen_pointwise) chosen_pointwise = choose_pointwise();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (chosen_pointwise == conv_pointwise_cols_avx512) return 48;
#endif
    return 2 * CONV_LANES;
}

int64_t conv_direct_span(void) {
    if (!chosen_direct) chosen_direct = choose_direct();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (chosen_direct == conv_direct_rows_avx512) return 48;
#endif
    return 2 * CONV_LANES;
}

const char *conv_isa(void) {
    if (!chosen_direct) chosen_direct = choose_direct();
#if defined(__aarch64__)
    return "neon";   /* aarch64's baseline */
#else
    return chosen_direct == conv_direct_rows_baseline ? "baseline"
           : chosen_direct == conv_direct_rows_avx2 ? "avx2+fma" : "avx512";
#endif
}
