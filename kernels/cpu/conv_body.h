/* The convolution microkernels' body, included once per instruction set with CONV_SUFFIX(name) naming the build
 * (conv_ukernels.c: baseline, which is NEON on aarch64; conv_ukernels_avx2.c: AVX2+FMA and AVX-512). Written with
 * GCC/clang vector extensions: a CONV_LANES-float vector is one AVX register, two SSE or NEON registers (the AVX-512
 * build sets CONV_BODY_LANES to 16: one ZMM register, and works on up to 3 of them at once), so the same source is
 * explicit SIMD on every target without intrinsics. */
#include <string.h>

#include "conv_ukernels.h"

#if defined(__GNUC__) && !defined(__clang__)
/* keep the few-lane store loops as loops: GCC would make them memcpy calls, which cost more than the row */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

#ifndef CONV_BODY_LANES
#define CONV_BODY_LANES CONV_LANES   /* the AVX-512 build works on 16 */
#endif
typedef float ConvVector __attribute__((vector_size(CONV_BODY_LANES * sizeof(float))));

/* macros, not functions: a function taking or returning a 32-byte vector has a different ABI with and without AVX */
#ifndef CONV_LOAD
#define CONV_LOAD(vector, from) memcpy(&(vector), (from), sizeof(ConvVector))   /* an unaligned load */
#define CONV_STORE(to, vector, lanes)                                                   \
    do {                                                                                \
        if ((lanes) >= CONV_BODY_LANES) {                                               \
            memcpy((to), &(vector), sizeof(ConvVector));                                \
        } else { /* lane by lane: a memcpy call of a few floats costs more than the row */ \
            for (int64_t lane_ = 0; lane_ < (lanes); ++lane_) (to)[lane_] = (vector)[lane_];   \
        }                                                                               \
    } while (0)
#endif

#ifndef CONV_BODY_GROUP
#define CONV_BODY_GROUP 4   /* output channels (direct) or output vectors (depthwise) per pass; AVX-512 (32 registers): 8 */
#endif

/* `units` vectors of outputs (unit u: CONV_BODY_LANES outputs from input in[u] + offsets[k] to out[u], `lanes[u]` of
 * them real), up to CONV_BODY_GROUP at once: per tap, one weight and one offset serve them all */
static inline void CONV_SUFFIX(depthwise_units)(const float *const *in, float *const *out, const int64_t *lanes,
                                                int units, const int64_t *offsets, int64_t taps, const float *w,
                                                float start) {
    ConvVector acc[CONV_BODY_GROUP];
    for (int u = 0; u < CONV_BODY_GROUP; ++u) acc[u] = (ConvVector){0} + start;
    if (units == CONV_BODY_GROUP) {
        for (int64_t k = 0; k < taps; ++k) {
            float wk = w[k];
            int64_t offset = offsets[k];
            for (int u = 0; u < CONV_BODY_GROUP; ++u) {
                ConvVector x;
                CONV_LOAD(x, in[u] + offset);
                acc[u] += wk * x;
            }
        }
    } else {
        for (int64_t k = 0; k < taps; ++k)
            for (int u = 0; u < units; ++u) {
                ConvVector x;
                CONV_LOAD(x, in[u] + offsets[k]);
                acc[u] += w[k] * x;
            }
    }
    for (int u = 0; u < units; ++u) CONV_STORE(out[u], acc[u], lanes[u]);
}

void CONV_SUFFIX(conv_depthwise_rows)(float *out, int64_t rows, int64_t out_w, const float *plane, int64_t row_step,
                                      const int64_t *offsets, int64_t taps, const float *w, float start) {
    /* the plane's output vectors in row order, CONV_BODY_GROUP at a time (several rows at once when they are narrow) */
    int64_t per_row = (out_w + CONV_BODY_LANES - 1) / CONV_BODY_LANES, total = rows * per_row;
    for (int64_t first = 0; first < total; first += CONV_BODY_GROUP) {
        const float *in[CONV_BODY_GROUP];
        float *target[CONV_BODY_GROUP];
        int64_t lanes[CONV_BODY_GROUP];
        int units = total - first < CONV_BODY_GROUP ? (int)(total - first) : CONV_BODY_GROUP;
        for (int u = 0; u < units; ++u) {
            int64_t oy = (first + u) / per_row, ox = (first + u) % per_row * CONV_BODY_LANES;
            in[u] = plane + oy * row_step + ox;
            target[u] = out + oy * out_w + ox;
            lanes[u] = out_w - ox;
        }
        CONV_SUFFIX(depthwise_units)(in, target, lanes, units, offsets, taps, w, start);
    }
}


#ifndef CONV_BODY_VECTORS
#define CONV_BODY_VECTORS 2   /* vectors of outputs per pass; AVX-512 (32 registers): 3 */
#endif
#ifndef CONV_BODY_SPAN
#define CONV_BODY_SPAN (CONV_BODY_VECTORS * CONV_BODY_LANES)
#endif

/* The accumulators of CONV_BODY_GROUP output channels over `vectors` vectors of outputs, `lanes` of them real, at
 * target (channel rows `stride` apart): from the bias (start_from_bias), else the partial sums already there */
#define CONV_INIT_ACC(acc, target, stride, bias, channels, lanes, start_from_bias)                                    \
    for (int b_ = 0; b_ < CONV_BODY_GROUP; ++b_) {                                                                  \
        for (int v_ = 0; v_ < CONV_BODY_VECTORS; ++v_)                                                              \
            acc[b_][v_] = (ConvVector){0} + ((bias) && b_ < (channels) && (start_from_bias) ? (bias)[b_] : 0.0f);   \
        if ((start_from_bias) || b_ >= (channels)) continue;                                                        \
        if ((lanes) >= CONV_BODY_SPAN) {                                                                            \
            for (int v_ = 0; v_ < CONV_BODY_VECTORS; ++v_)                                                          \
                CONV_LOAD(acc[b_][v_], (target) + b_ * (stride) + v_ * CONV_BODY_LANES);                            \
        } else { /* lane by lane: the row (or the output) may end inside the span */                               \
            for (int64_t lane_ = 0; lane_ < (lanes); ++lane_)                                                       \
                acc[b_][lane_ / CONV_BODY_LANES][lane_ % CONV_BODY_LANES] = (target)[b_ * (stride) + lane_];        \
        }                                                                                                           \
    }

#define CONV_STORE_ACC(acc, target, stride, channels, lanes)                                                        \
    for (int b_ = 0; b_ < (channels) && b_ < CONV_BODY_GROUP; ++b_)                                                 \
        for (int v_ = 0; v_ < CONV_BODY_VECTORS && v_ * CONV_BODY_LANES < (lanes); ++v_)                            \
            CONV_STORE((target) + b_ * (stride) + v_ * CONV_BODY_LANES, acc[b_][v_], (lanes) - v_ * CONV_BODY_LANES);

/* One multiply-add step over NV vectors: NV loads from `from`, CONV_BODY_GROUP broadcast weights */
#define CONV_STEP(acc, NV, from, weights)                                                                           \
    do {                                                                                                            \
        ConvVector x_[NV];                                                                                          \
        for (int v_ = 0; v_ < (NV); ++v_) CONV_LOAD(x_[v_], (from) + v_ * CONV_BODY_LANES);                         \
        for (int b_ = 0; b_ < CONV_BODY_GROUP; ++b_)                                                                \
            for (int v_ = 0; v_ < (NV); ++v_) acc[b_][v_] += (weights)[b_] * x_[v_];                               \
    } while (0)

/* vectors a span of `lanes` outputs needs: a row's last few outputs take fewer (they read no further either) */
static inline int CONV_SUFFIX(span_vectors)(int64_t lanes) {
    int64_t vectors = (lanes + CONV_BODY_LANES - 1) / CONV_BODY_LANES;
    return vectors < CONV_BODY_VECTORS ? (int)vectors : CONV_BODY_VECTORS;
}

/* CONV_BODY_GROUP output channels over up to CONV_BODY_VECTORS vectors of outputs of one row, input channels
 * [c_begin, c_end): per weight, one load per vector and CONV_BODY_GROUP broadcasts feed vectors x CONV_BODY_GROUP
 * multiply-adds (the accumulators fit AVX2's 16 registers and NEON's 32 with room for the operands, 4 channels x 2
 * vectors; AVX-512's 32, 8 channels x 3 vectors). The first channel block starts from the bias, later ones from the
 * partial sums already in the output. */
static inline void CONV_SUFFIX(direct_group)(const ConvDirect *p, const float *weights, int64_t channels,
                                             int64_t first_channel, int64_t oy, int64_t ox, int64_t c_begin,
                                             int64_t c_end) {
    ConvVector acc[CONV_BODY_GROUP][CONV_BODY_VECTORS];
    int64_t plane = p->out_h * p->out_w, lanes = p->out_w - ox;
    float *target = p->out + first_channel * plane + oy * p->out_w + ox;
    const float *bias = p->bias ? p->bias + first_channel : NULL;
    CONV_INIT_ACC(acc, target, plane, bias, channels, lanes, c_begin == 0)
    const float *row = p->planes + (oy - p->first_row) * p->row_step + ox + c_begin * p->plane_elements;
    weights += c_begin * p->taps * CONV_BLOCK;
    int vectors = CONV_SUFFIX(span_vectors)(lanes);
#define CONV_DIRECT_LOOP(NV)                                                                                        \
    for (int64_t c = c_begin; c < c_end; ++c, row += p->plane_elements)                                             \
        for (int64_t k = 0; k < p->taps; ++k, weights += CONV_BLOCK) CONV_STEP(acc, NV, row + p->offsets[k], weights);
#if CONV_BODY_VECTORS > 2
    if (vectors == 3) CONV_DIRECT_LOOP(3) else
#endif
    if (vectors == 2) CONV_DIRECT_LOOP(2) else CONV_DIRECT_LOOP(1)
#undef CONV_DIRECT_LOOP
    CONV_STORE_ACC(acc, target, plane, channels, lanes)
}

/* input channels x taps per pass over the outputs: one span's taps (2 vectors each) stay within L1 */
#define CONV_CHANNEL_BLOCK_TAPS 576

void CONV_SUFFIX(conv_direct_rows)(const ConvDirect *p, int64_t row_begin, int64_t row_end) {
    int64_t per_block = p->channels * p->taps * CONV_BLOCK;
    int64_t channel_block = CONV_CHANNEL_BLOCK_TAPS / p->taps > 1 ? CONV_CHANNEL_BLOCK_TAPS / p->taps : 1;
    for (int64_t c = 0; c < p->channels; c += channel_block) {
        int64_t c_end = c + channel_block < p->channels ? c + channel_block : p->channels;
        for (int64_t m = 0; m < p->out_channels; m += CONV_BLOCK) {
            const float *weights = p->packed + (m / CONV_BLOCK) * per_block;
            int64_t block_channels = p->out_channels - m < CONV_BLOCK ? p->out_channels - m : CONV_BLOCK;
            for (int64_t oy = row_begin; oy < row_end; ++oy)
                for (int64_t ox = 0; ox < p->out_w; ox += CONV_BODY_SPAN)
                    for (int b = 0; b < block_channels; b += CONV_BODY_GROUP)
                        CONV_SUFFIX(direct_group)(p, weights + b, block_channels - b, m + b, oy, ox, c, c_end);
        }
    }
}

/* CONV_BODY_GROUP output channels over up to CONV_BODY_VECTORS vectors of columns of a pointwise convolution, input
 * channels [c_begin, c_end), as direct_group does it */
static inline __attribute__((always_inline)) void CONV_SUFFIX(pointwise_group)(const ConvPointwise *p,
                                                                               const float *weights, int64_t channels,
                                                                               int64_t first_channel, int64_t col,
                                                                               int64_t lanes, int64_t c_begin,
                                                                               int64_t c_end) {
    ConvVector acc[CONV_BODY_GROUP][CONV_BODY_VECTORS];
    float *target = p->out + first_channel * p->out_stride + col;
    const float *bias = p->bias ? p->bias + first_channel : NULL;
    CONV_INIT_ACC(acc, target, p->out_stride, bias, channels, lanes, c_begin == 0)
    const float *x = p->x + c_begin * p->x_stride + col;
    weights += c_begin * CONV_BLOCK;
    int vectors = CONV_SUFFIX(span_vectors)(lanes);
#define CONV_POINTWISE_LOOP(NV)                                                                                     \
    for (int64_t c = c_begin; c < c_end; ++c, x += p->x_stride, weights += CONV_BLOCK) CONV_STEP(acc, NV, x, weights);
#if CONV_BODY_VECTORS > 2
    if (vectors == 3) CONV_POINTWISE_LOOP(3) else
#endif
    if (vectors == 2) CONV_POINTWISE_LOOP(2) else CONV_POINTWISE_LOOP(1)
#undef CONV_POINTWISE_LOOP
    CONV_STORE_ACC(acc, target, p->out_stride, channels, lanes)
}

/* input channels per pass over a span: its vectors of each stay within L1 (48 KiB with AVX-512) */
#define CONV_POINTWISE_CHANNEL_BLOCK 256

void CONV_SUFFIX(conv_pointwise_cols)(const ConvPointwise *p, int64_t col_begin, int64_t col_end) {
    for (int64_t c = 0; c < p->channels; c += CONV_POINTWISE_CHANNEL_BLOCK) {
        int64_t c_end = c + CONV_POINTWISE_CHANNEL_BLOCK < p->channels ? c + CONV_POINTWISE_CHANNEL_BLOCK : p->channels;
        for (int64_t m = 0; m < p->out_channels; m += CONV_BODY_GROUP) {
            const float *weights = p->packed + (m / CONV_BLOCK) * p->channels * CONV_BLOCK + m % CONV_BLOCK;
            int64_t channels = p->out_channels - m < CONV_BODY_GROUP ? p->out_channels - m : CONV_BODY_GROUP;
            for (int64_t col = col_begin; col < col_end; col += CONV_BODY_SPAN) {
                int64_t lanes = col_end - col < CONV_BODY_SPAN ? col_end - col : CONV_BODY_SPAN;
                CONV_SUFFIX(pointwise_group)(p, weights, channels, m, col, lanes, c, c_end);
            }
        }
    }
}
