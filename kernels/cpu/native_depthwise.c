/* Depthwise convolution of narrow planes with channels in vector lanes (_native.c's depthwise_conv2d calls it).
 *
 * The row kernel (conv_ukernels.h) puts an output row in a vector's lanes: planes narrower than 16 outputs (7x7 to
 * 14x14, where MobileNetV3 and LCNet spend most of their depthwise time) leave lanes empty and pay a plane's setup
 * for a few vectors of work. Here 16 planes at a time are laid out in a padded scratch with one plane per lane
 * (position-major, 16 floats per position), so every output position of the 16 planes is one full AVX-512 vector:
 * acc = bias; acc += w[tap] * in[tap] for the taps in order -- the same sum in the same order as the row kernel, so
 * the same bits. Only where the convolution microkernels run AVX-512 (conv_isa(), which EDGERT_CPU_ISA caps).
 *
 * Output plane p may lie over input planes <= p (the file comment of _native.c): a block's 16 input planes are all
 * in the scratch before any of its output planes is written.
 */
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "conv_ukernels.h"
#include "native_depthwise.h"

#define LANES 16
#define GROUP 7   /* output positions of a row computed at once (one weight load serves them all): 7 divides 7 and 14 */
#define NARROW_WIDTH 16         /* rows this wide fill the row kernel's vectors already */
#define MAX_TAPS 64   /* and the bound on every kernel size, stride and dilation, so that sizes stay far from overflow */
#define MAX_PLANE ((int64_t)1 << 26)   /* floats a plane may hold: 16 planes' offsets fit the gathers' int32 indices */

/* the padded extent (rows or columns) the windows of `out` outputs reach, from the first padded row or column */
static int64_t reach(int64_t out, int64_t stride, int64_t kernel, int64_t dilation) {
    return (out - 1) * stride + (kernel - 1) * dilation + 1;
}

int depthwise_lanes_pays(const Geometry *g) {
    static int avx512 = -1;
    if (avx512 < 0) avx512 = strcmp(conv_isa(), "avx512") == 0;
    return avx512 && g->out_width < NARROW_WIDTH && g->out_height > 0 && g->out_width > 0 && g->out_height <= MAX_PLANE
           && g->kernel_h <= MAX_TAPS && g->kernel_w <= MAX_TAPS && g->kernel_h * g->kernel_w <= MAX_TAPS
           && g->stride_h <= MAX_TAPS && g->stride_w <= MAX_TAPS && g->dilation_h <= MAX_TAPS
           && g->dilation_w <= MAX_TAPS && g->height * g->width <= MAX_PLANE && g->out_height * g->out_width <= MAX_PLANE;
}

int64_t depthwise_lanes_scratch_floats(const Geometry *g) {
    int64_t rows = reach(g->out_height, g->stride_h, g->kernel_h, g->dilation_h);
    int64_t columns = reach(g->out_width, g->stride_w, g->kernel_w, g->dilation_w);
    /* the padded planes, the weights and bias, and the reads of a row's last group past its end (into the weights:
     * never stored) */
    return (rows * columns + g->kernel_h * g->kernel_w + 1 + GROUP * g->stride_w) * LANES;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

typedef float Lanes __attribute__((vector_size(LANES * sizeof(float)), aligned(LANES * sizeof(float))));

/* lane l of a vector <-> plane l: plane offsets for gathers and scatters, and the mask of the block's real planes */
typedef struct {
    __m512i in, out;
    __mmask16 mask;
} Planes;

/* input planes -> the lanes of the scratch's interior, one gather per position (padding stays zero: written once
 * per call; a missing plane's lane stays zero) */
static void fill_lanes(const Geometry *g, const float *input, const Planes *planes, int64_t columns, float *scratch) {
    int64_t rows = reach(g->out_height, g->stride_h, g->kernel_h, g->dilation_h) - g->pad_top;
    int64_t count = columns - g->pad_left;   /* input rows and columns the windows reach */
    rows = rows < g->height ? rows : g->height;
    count = count < g->width ? count : g->width;
    for (int64_t iy = 0; iy < rows; ++iy) {
        float *row = scratch + ((iy + g->pad_top) * columns + g->pad_left) * LANES;
        for (int64_t ix = 0; ix < count; ++ix)
            _mm512_store_ps(row + ix * LANES, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), planes->mask, planes->in,
                                                                        input + iy * g->width + ix, 4));
    }
}

/* one output row of the block, scattered to its planes */
static void row_lanes(const Geometry *g, const float *scratch, int64_t columns, const Lanes *weights,
                      const Lanes *bias, int64_t oy, const Planes *planes, float *out) {
    int64_t taps_x = g->kernel_w, taps_y = g->kernel_h;
    const float *top = scratch + oy * g->stride_h * columns * LANES;
    for (int64_t ox = 0; ox < g->out_width; ox += GROUP) {
        int count = g->out_width - ox < GROUP ? (int)(g->out_width - ox) : GROUP;
        Lanes acc[GROUP];
        for (int u = 0; u < GROUP; ++u) acc[u] = *bias;
        for (int64_t ky = 0; ky < taps_y; ++ky) {
            const float *line = top + ky * g->dilation_h * columns * LANES;
            for (int64_t kx = 0; kx < taps_x; ++kx) {
                Lanes w = weights[ky * taps_x + kx];
                const float *at = line + ((ox * g->stride_w) + kx * g->dilation_w) * LANES;
                for (int u = 0; u < GROUP; ++u)   /* past `count`: positions inside the scratch, never stored */
                    acc[u] += w * *(const Lanes *)(at + u * g->stride_w * LANES);
            }
        }
        for (int u = 0; u < count; ++u)
            _mm512_mask_i32scatter_ps(out + oy * g->out_width + ox + u, planes->mask, planes->out, (__m512)acc[u], 4);
    }
}

void depthwise_lanes(const Geometry *g, const float *x, const float *w, const float *bias, float *out, int64_t begin,
                     int64_t end, float *scratch) {
    int64_t rows = reach(g->out_height, g->stride_h, g->kernel_h, g->dilation_h);
    int64_t columns = reach(g->out_width, g->stride_w, g->kernel_w, g->dilation_w);
    int64_t taps = g->kernel_h * g->kernel_w, in_plane = g->height * g->width;
    int64_t out_plane = g->out_height * g->out_width;
    Lanes *weights = (Lanes *)(scratch + rows * columns * LANES), *start = weights + taps;
    const __m512i lane_index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    memset(scratch, 0, rows * columns * LANES * sizeof(float));
    for (int64_t first = begin; first < end; first += LANES) {
        int lanes = end - first < LANES ? (int)(end - first) : LANES;
        for (int lane = 0; lane < LANES; ++lane) {   /* missing lanes: zero weights, never stored */
            int64_t c = (first + (lane < lanes ? lane : 0)) % g->channels;
            for (int64_t k = 0; k < taps; ++k) weights[k][lane] = lane < lanes ? w[c * taps + k] : 0.0f;
            (*start)[lane] = lane < lanes && bias ? bias[c] : 0.0f;
        }
        Planes planes = {_mm512_mullo_epi32(_mm512_set1_epi32((int)in_plane), lane_index),
                         _mm512_mullo_epi32(_mm512_set1_epi32((int)out_plane), lane_index),
                         (__mmask16)((1u << lanes) - 1)};
        fill_lanes(g, x + first * in_plane, &planes, columns, scratch);
        for (int64_t oy = 0; oy < g->out_height; ++oy)
            row_lanes(g, scratch, columns, weights, start, oy, &planes, out + first * out_plane);
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void depthwise_lanes(const Geometry *g, const float *x, const float *w, const float *bias, float *out, int64_t begin,
                     int64_t end, float *scratch) {
    (void)g, (void)x, (void)w, (void)bias, (void)out, (void)begin, (void)end, (void)scratch;   /* never called */
}
#endif
