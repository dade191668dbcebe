/* Checks kernels/cpu/conv_ukernels.c without Python: the direct convolution and the depthwise rows over padded planes
 * (built here the way _native.c's scratch lays them out for unit column strides) against a double-precision loop, for
 * widths below, at and past the vector spans, output channels not a multiple of the block, strides 1-2, dilation,
 * 2x2 / 3x3 / 5x5 kernels, with and without bias, row ranges; and the pointwise (1x1) kernel over column ranges. Built and run by tests/test_cpu_native_aarch64.py on the
 * host and, cross-compiled, under qemu-aarch64 (the NEON build). Prints one line per failing case and exits 1 when any
 * fails, else prints the ISA and "ok". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_ukernels.h"

typedef struct {
    int channels, height, width, out_channels, kernel, stride, dilation, pad;
} Case;

static float value(int i, double salt) { return (float)sin(i * 12.9898 + salt); }   /* deterministic in [-1, 1] */

/* the padded planes (zero border, CONV_READ_SLACK spare floats), tap offsets and the direct weights' packing */
static float *padded_planes(const Case *c, const float *x, int64_t *row_stride, int64_t *plane_elements) {
    int rows = c->height + 2 * c->pad + 1, stride = c->width + 2 * c->pad;
    *row_stride = stride;
    *plane_elements = (int64_t)rows * stride;
    float *planes = calloc(*plane_elements * c->channels + CONV_READ_SLACK, sizeof(float));
    for (int ch = 0; ch < c->channels; ++ch)
        for (int y = 0; y < c->height; ++y)
            memcpy(planes + ch * *plane_elements + (y + c->pad) * stride + c->pad, x + (ch * c->height + y) * c->width,
                   c->width * sizeof(float));
    return planes;
}

/* output (m, oy, ox) in double precision, rows at the case's stride and columns at unit stride (the layout the
 * microkernels see for a unit column stride; _native.c's column phases make every stride look like that) */
static double reference(const Case *c, const float *x, const float *w, double start, int m, int oy, int ox) {
    double sum = start;
    for (int ch = 0; ch < c->channels; ++ch)
        for (int ky = 0; ky < c->kernel; ++ky)
            for (int kx = 0; kx < c->kernel; ++kx) {
                int iy = oy * c->stride + ky * c->dilation - c->pad, ix = ox + kx * c->dilation - c->pad;
                if (iy >= 0 && iy < c->height && ix >= 0 && ix < c->width)
                    sum += (double)w[((m * c->channels + ch) * c->kernel + ky) * c->kernel + kx]
                           * x[(ch * c->height + iy) * c->width + ix];
            }
    return sum;
}

static int compare(const char *what, const Case *c, const float *got, const double *want, int64_t n) {
    double error = 0, norm = 0;
    for (int64_t i = 0; i < n; ++i) {
        error += (got[i] - want[i]) * (got[i] - want[i]);
        norm += want[i] * want[i];
    }
    if (!(sqrt(error) <= 1e-6 * sqrt(norm))) {
        printf("FAIL %s: C%d %dx%d M%d k%d s%d d%d p%d: normwise error %.3g\n", what, c->channels, c->height, c->width,
               c->out_channels, c->kernel, c->stride, c->dilation, c->pad, norm > 0 ? sqrt(error / norm) : error);
        return 1;
    }
    return 0;
}

static int check_direct(const Case *c, int with_bias) {
    int span = (c->kernel - 1) * c->dilation + 1;
    int oh = (c->height + 2 * c->pad - span) / c->stride + 1, ow = c->width + 2 * c->pad - span + 1;
    int taps = c->kernel * c->kernel, blocks = (c->out_channels + CONV_BLOCK - 1) / CONV_BLOCK;
    int64_t plane = (int64_t)oh * ow, row_stride, plane_elements;
    float *x = malloc(sizeof(float) * c->channels * c->height * c->width), *bias = malloc(sizeof(float) * c->out_channels);
    float *w = malloc(sizeof(float) * c->out_channels * c->channels * taps);
    float *packed = calloc((size_t)blocks * c->channels * taps * CONV_BLOCK, sizeof(float));
    float *out = malloc(sizeof(float) * c->out_channels * plane);
    double *want = malloc(sizeof(double) * c->out_channels * plane);
    int64_t *offsets = malloc(sizeof(int64_t) * taps);
    for (int i = 0; i < c->channels * c->height * c->width; ++i) x[i] = value(i, 0.5);
    for (int i = 0; i < c->out_channels * c->channels * taps; ++i) w[i] = value(i, 1.5);
    for (int m = 0; m < c->out_channels; ++m) {
        bias[m] = value(m, 2.5);
        for (int k = 0; k < c->channels * taps; ++k)
            packed[((m / CONV_BLOCK) * c->channels * taps + k) * CONV_BLOCK + m % CONV_BLOCK] = w[m * c->channels * taps + k];
    }
    float *planes = padded_planes(c, x, &row_stride, &plane_elements);
    for (int ky = 0; ky < c->kernel; ++ky)
        for (int kx = 0; kx < c->kernel; ++kx)
            offsets[ky * c->kernel + kx] = (int64_t)ky * c->dilation * row_stride + kx * c->dilation;
    /* two row ranges, the second starting mid-plane with its planes' rows shifted (first_row) */
    int split = oh / 2;
    ConvDirect top = {planes, plane_elements, c->channels, taps, c->stride * row_stride, 0, offsets, packed,
                      with_bias ? bias : NULL, c->out_channels, oh, ow, out};
    conv_direct_rows(&top, 0, split);
    ConvDirect bottom = top;
    bottom.planes = planes + split * c->stride * row_stride;
    bottom.first_row = split;
    conv_direct_rows(&bottom, split, oh);
    for (int m = 0; m < c->out_channels; ++m)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                want[(m * oh + oy) * ow + ox] = reference(c, x, w, with_bias ? bias[m] : 0.0, m, oy, ox);
    int failed = compare(with_bias ? "direct+bias" : "direct", c, out, want, c->out_channels * plane);
    /* depthwise rows: channel 0's plane with output channel 0's first taps as its filter */
    float start = with_bias ? bias[0] : 0.0f;
    conv_depthwise_rows(out, oh, ow, planes, c->stride * row_stride, offsets, taps, w, start);
    Case one = *c;
    one.channels = 1;
    for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox) want[oy * ow + ox] = reference(&one, x, w, start, 0, oy, ox);
    failed += compare("depthwise", c, out, want, plane);
    free(x), free(bias), free(w), free(packed), free(out), free(want), free(offsets), free(planes);
    return failed;
}

/* the pointwise kernel: x (channels, columns) read in whole spans (a copy with CONV_READ_SLACK spare floats), two
 * column ranges (the second starting mid-row at a span boundary), with and without bias, partial sums across the
 * 256-channel blocks */
static int check_pointwise(int channels, int columns, int out_channels, int with_bias) {
    int blocks = (out_channels + CONV_BLOCK - 1) / CONV_BLOCK;
    float *x = calloc((size_t)channels * columns + CONV_READ_SLACK, sizeof(float));
    float *w = malloc(sizeof(float) * out_channels * channels), *bias = malloc(sizeof(float) * out_channels);
    float *packed = calloc((size_t)blocks * channels * CONV_BLOCK, sizeof(float));
    float *out = malloc(sizeof(float) * out_channels * columns);
    double *want = malloc(sizeof(double) * out_channels * columns);
    for (int i = 0; i < channels * columns; ++i) x[i] = value(i, 3.5);
    for (int m = 0; m < out_channels; ++m) {
        bias[m] = value(m, 4.5);
        for (int c = 0; c < channels; ++c) {
            w[m * channels + c] = value(m * channels + c, 5.5);
            packed[((m / CONV_BLOCK) * channels + c) * CONV_BLOCK + m % CONV_BLOCK] = w[m * channels + c];
        }
    }
    ConvPointwise p = {x, columns, channels, packed, with_bias ? bias : NULL, out_channels, columns, out};
    int64_t split = columns / 2 / conv_pointwise_span() * conv_pointwise_span();
    conv_pointwise_cols(&p, 0, split);
    conv_pointwise_cols(&p, split, columns);
    for (int m = 0; m < out_channels; ++m)
        for (int col = 0; col < columns; ++col) {
            double sum = with_bias ? bias[m] : 0.0;
            for (int c = 0; c < channels; ++c) sum += (double)w[m * channels + c] * x[c * columns + col];
            want[m * columns + col] = sum;
        }
    Case c = {channels, 1, columns, out_channels, 1, 1, 1, 0};
    int failed = compare(with_bias ? "pointwise+bias" : "pointwise", &c, out, want, (int64_t)out_channels * columns);
    free(x), free(w), free(bias), free(packed), free(out), free(want);
    return failed;
}

int main(void) {
    const Case cases[] = {
        {3, 20, 37, 16, 3, 2, 1, 1}, {16, 9, 16, 24, 3, 1, 1, 1}, {5, 7, 7, 7, 5, 1, 1, 2}, {4, 11, 45, 9, 3, 1, 2, 2},
        {2, 8, 33, 13, 2, 2, 1, 0}, {1, 5, 3, 1, 3, 1, 1, 1}, {8, 6, 64, 40, 1, 1, 1, 0},
        {70, 5, 19, 9, 3, 1, 1, 1}, {30, 4, 37, 5, 5, 2, 1, 2},   /* input channels in several blocks of 576 taps */
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
        for (int with_bias = 0; with_bias < 2; ++with_bias) failures += check_direct(&cases[i], with_bias);
    const int pointwise[][3] = {{16, 49, 96}, {3, 5, 7}, {24, 100, 13}, {300, 70, 20}, {8, 64, 8}, {260, 33, 9}};
    for (size_t i = 0; i < sizeof pointwise / sizeof pointwise[0]; ++i)
        for (int with_bias = 0; with_bias < 2; ++with_bias)
            failures += check_pointwise(pointwise[i][0], pointwise[i][1], pointwise[i][2], with_bias);
    printf("%s %s\n", conv_isa(), failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
