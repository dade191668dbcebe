/* Max pooling for _native.c's pool2d where the generic path's scratch copy costs more than the pooling: windows down
 * the columns (kx1 at stride kx1: CRNN's 2x1 and 4x1, the larger of k whole rows) and 2x2 at stride 2 inside the input
 * (VGG's and CRNN's): straight from each pair of input rows, no scratch copy, the even and odd columns taken apart in registers (the generic path copies every plane
 * into a padded scratch split by stride phase, then takes the maximum of four tap runs: 4-5x slower here). The taps
 * in the generic path's order (row 0 column 0, row 0 column 1, row 1 column 0, row 1 column 1) with its NaN rule, so
 * the same bits (signed zeros and NaN payloads included); rows taken in order likewise. AVX-512 only, like native_depthwise.c.
 *
 * Output plane p may lie over the input (the file comment of _native.c): each output row is written after the two
 * input rows it reads, below every input element read later. */
#include <string.h>

#include "conv_ukernels.h"
#include "native_pool.h"

/* NaN wins, as in np.maximum and _native.c's `larger` */
#define larger(v, current) ((v) != (v) ? (v) : (v) > (current) ? (v) : (current))

int max_pool_rows_pays(const Geometry *g) {
    static int avx512 = -1;
    if (avx512 < 0) avx512 = strcmp(conv_isa(), "avx512") == 0;
    return avx512 && g->kernel_w == 1 && g->stride_w == 1 && g->kernel_h == g->stride_h && g->kernel_h <= 64
           && g->dilation_h == 1 && g->pad_top == 0 && g->pad_left == 0 && g->out_width == g->width
           && g->kernel_h * g->out_height <= g->height;
}

int max_pool_2x2_pays(const Geometry *g) {
    static int avx512 = -1;
    if (avx512 < 0) avx512 = strcmp(conv_isa(), "avx512") == 0;
    return avx512 && g->kernel_h == 2 && g->kernel_w == 2 && g->stride_h == 2 && g->stride_w == 2
           && g->dilation_h == 1 && g->dilation_w == 1 && g->pad_top == 0 && g->pad_left == 0
           && 2 * g->out_height <= g->height && 2 * g->out_width <= g->width;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif
#include <immintrin.h>

static inline __m512 larger_lanes(__m512 v, __m512 current) {
    __mmask16 take = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v, current, _CMP_GT_OQ);
    return _mm512_mask_blend_ps(take, current, v);
}

void max_pool_2x2(const Geometry *g, const float *x, float *out, int64_t begin, int64_t end) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t p = begin; p < end; ++p) {
        const float *plane = x + p * g->height * g->width;
        for (int64_t oy = 0; oy < g->out_height; ++oy) {
            const float *a = plane + 2 * oy * g->width, *b = a + g->width;
            float *row = out + (p * g->out_height + oy) * g->out_width;
            int64_t ox = 0;
            for (; ox + 16 <= g->out_width; ox += 16) {
                __m512 a0 = _mm512_loadu_ps(a + 2 * ox), a1 = _mm512_loadu_ps(a + 2 * ox + 16);
                __m512 b0 = _mm512_loadu_ps(b + 2 * ox), b1 = _mm512_loadu_ps(b + 2 * ox + 16);
                __m512 m = larger_lanes(_mm512_permutex2var_ps(a0, odd, a1), _mm512_permutex2var_ps(a0, even, a1));
                m = larger_lanes(_mm512_permutex2var_ps(b0, even, b1), m);
                _mm512_storeu_ps(row + ox, larger_lanes(_mm512_permutex2var_ps(b0, odd, b1), m));
            }
            for (; ox < g->out_width; ++ox) {
                float m = larger(a[2 * ox + 1], a[2 * ox]);
                m = larger(b[2 * ox], m);
                row[ox] = larger(b[2 * ox + 1], m);
            }
        }
    }
}

void max_pool_rows(const Geometry *g, const float *x, float *out, int64_t begin, int64_t end) {
    int64_t width = g->width, taps = g->kernel_h;
    for (int64_t p = begin; p < end; ++p) {
        const float *plane = x + p * g->height * width;
        for (int64_t oy = 0; oy < g->out_height; ++oy) {
            const float *first = plane + oy * taps * width;
            float *row = out + (p * g->out_height + oy) * width;
            int64_t ox = 0;
            for (; ox + 16 <= width; ox += 16) {
                __m512 m = _mm512_loadu_ps(first + ox);
                for (int64_t k = 1; k < taps; ++k) m = larger_lanes(_mm512_loadu_ps(first + k * width + ox), m);
                _mm512_storeu_ps(row + ox, m);
            }
            for (; ox < width; ++ox) {
                float m = first[ox];
                for (int64_t k = 1; k < taps; ++k) m = larger(first[k * width + ox], m);
                row[ox] = m;
            }
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void max_pool_rows(const Geometry *g, const float *x, float *out, int64_t begin, int64_t end) {
    (void)g, (void)x, (void)out, (void)begin, (void)end;   /* never called: max_pool_rows_pays is 0 off x86-64 */
}
void max_pool_2x2(const Geometry *g, const float *x, float *out, int64_t begin, int64_t end) {
    (void)g, (void)x, (void)out, (void)begin, (void)end;   /* never called: max_pool_2x2_pays is 0 off x86-64 */
}
#endif
