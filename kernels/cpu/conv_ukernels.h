/* Convolution microkernels over float32 (kernels/cpu/conv_ukernels.c): pure C, no Python, so that the same code is
 * tested natively and cross-compiled for aarch64 under qemu (tests/native/conv_check.c).
 *
 * Both read "tap runs" from padded scratch planes laid out as _native.c's Scratch: for output row oy, kernel tap k
 * reads plane[offsets[k] + oy * row_step + ox] for ox in [0, out_w). They work on one to three vectors of CONV_LANES
 * (AVX-512: 16) outputs of a row at a time and may read up to 16 - 1 floats past the last run, and up to 2 x 16 - 1
 * past the last depthwise run (the caller's scratch keeps CONV_READ_SLACK spare floats at its end); those lanes are
 * never written out. */
#ifndef EDGERT_CONV_UKERNELS_H
#define EDGERT_CONV_UKERNELS_H

#include <stdint.h>

#define CONV_LANES 8          /* the AVX-512 build's vectors hold 16 */
#define CONV_READ_SLACK 32
/* every build's vectors divide this many floats: the pointwise kernel reads whole vectors of it from each span's start */
#define CONV_VECTOR_ALIGN 16
/* output channels one direct-convolution block computes: the packed weights' last axis */
#define CONV_BLOCK 8

/* Depthwise (or average-pooling) rows: out[oy][ox] = start + sum_k w[k] * plane[offsets[k] + oy * row_step + ox]
 * for oy in [0, rows) (out rows out_w apart). */
void conv_depthwise_rows(float *out, int64_t rows, int64_t out_w, const float *plane, int64_t row_step,
                         const int64_t *offsets, int64_t taps, const float *w, float start);

/* A direct convolution over every input channel's scratch plane (plane_elements apart, holding the rows that output
 * rows from first_row on read):
 * out[m][oy][ox] = bias[m] + sum_{c, k} w[m][c][k] * plane_c[offsets[k] + (oy - first_row) * row_step + ox]
 * for output rows [row_begin, row_end), output channels [0, out_channels) (planes out_h x out_w apart).
 * packed: the weights as (ceil(out_channels / CONV_BLOCK), channels x taps, CONV_BLOCK), zeros past the last channel;
 * bias: out_channels floats or NULL. */
typedef struct {
    const float *planes;
    int64_t plane_elements, channels, taps, row_step, first_row;
    const int64_t *offsets;
    const float *packed, *bias;
    int64_t out_channels, out_h, out_w;
    float *out;
} ConvDirect;

void conv_direct_rows(const ConvDirect *p, int64_t row_begin, int64_t row_end);

/* A pointwise (1x1, unit-stride) convolution, a matrix product with the weights packed as the direct kernel's:
 * out[m][col] = bias[m] + sum_c w[m][c] * x[c * x_stride + col] for columns [col_begin, col_end) and output channels
 * [0, out_channels) (rows out_stride apart). Spans of conv_pointwise_span() columns start at col_begin; each reads
 * whole vectors, up to the first multiple of CONV_VECTOR_ALIGN columns from its start at or past col_end: the caller
 * makes sure they are readable (a copy of a row's last few columns: see native_conv.c); the outputs past col_end are
 * never written. */
typedef struct {
    const float *x;
    int64_t x_stride, channels;
    const float *packed, *bias;
    int64_t out_channels, out_stride;
    float *out;
} ConvPointwise;

void conv_pointwise_cols(const ConvPointwise *p, int64_t col_begin, int64_t col_end);

/* columns conv_pointwise_cols computes at once (up to three vectors of the chosen build: as conv_direct_span) */
int64_t conv_pointwise_span(void);

/* outputs of a row conv_direct_rows computes at once (AVX-512: three vectors of 16, else two of 8) */
int64_t conv_direct_span(void);

/* which build runs: "avx512", "avx2+fma", "baseline" or "neon" */
const char *conv_isa(void);

#endif
