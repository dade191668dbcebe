/* The fused per-element program interpreter's body, compiled once per instruction set: included by
 * pointwise_ukernels.c (the baseline, and the dispatch) and pointwise_ukernels_avx2.c (AVX2+FMA, x86-64), each
 * defining PW_SUFFIX(name) so that the two copies have their own names.
 *
 * A PointWise chain (GELU's Div -> Erf -> Add -> Mul -> Mul, SiLU, HardSwish, Mish, sigmoid/tanh chains) is
 * evaluated tile by tile, every intermediate in a TILE-float register that stays in L1, so each input is read
 * once and the output written once: one pass instead of one NumPy pass per instruction.
 *
 * The transcendental functions are branch-free polynomials (Cephes' single-precision ones: exp with a
 * two-constant ln 2 reduction, tanh and erf with a small-argument polynomial blended with an exp form) that
 * the compiler vectorizes: float32 accuracy to a few ulp, far inside the 1e-5 normwise contract. NaN goes
 * through every operation as in NumPy (max/min/relu/clip included).
 */
#include "pointwise_ukernels.h"

#include <math.h>
#include <string.h>

#ifndef PW_TILE
#define PW_TILE 256
enum { TILE = PW_TILE };
#endif

static inline float PW_SUFFIX(bits_to_float)(int32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline int32_t PW_SUFFIX(float_to_bits)(float value) {
    int32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* e^x: x = n ln2 + r, |r| <= ln2/2, e^r by Cephes' degree-6 polynomial, 2^n through the exponent bits */
static inline float PW_SUFFIX(exp_approx)(float x) {
    const float round_magic = 12582912.0f;   /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
    float unclamped = x;
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365447505531f ? -87.3365447505531f : x;
    float shifted = x * 1.44269504088896341f + round_magic;
    float n = shifted - round_magic;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    float y = p * r * r + r + 1.0f;
    int32_t exponent = (PW_SUFFIX(float_to_bits)(shifted) - PW_SUFFIX(float_to_bits)(round_magic)) + 127;
    float result = unclamped > 88.3762626647949f ? INFINITY : y * PW_SUFFIX(bits_to_float)(exponent << 23);
    return unclamped < -87.3365447505531f ? 0.0f : result;   /* as expf, less its subnormal results */
}

static inline float PW_SUFFIX(sigmoid_approx)(float x) { return 1.0f / (1.0f + PW_SUFFIX(exp_approx)(-x)); }

/* tanh: Cephes' odd polynomial below 0.625, else 1 - 2 / (e^2|x| + 1) with x's sign */
static inline float PW_SUFFIX(tanh_approx)(float x) {
    float a = fabsf(x), z = x * x;
    float small = ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z - 5.37397155531E-2f) * z
                    + 1.33314422036E-1f) * z - 3.33332819422E-1f) * z * x + x;
    float large = 1.0f - 2.0f / (PW_SUFFIX(exp_approx)(2.0f * a) + 1.0f);
    large = copysignf(large, x);
    float result = a < 0.625f ? small : large;
    return x != x ? x : result;
}

/* erf: Cephes' odd polynomial below 1, else Abramowitz-Stegun 7.1.26 (absolute error 1.5e-7) */
static inline float PW_SUFFIX(erf_approx)(float x) {
    float a = fabsf(x), z = x * x;
    float small = x * ((((((7.853861353153693E-5f * z - 8.010193625184903E-4f) * z + 5.188327685732524E-3f) * z
                          - 2.685381193529856E-2f) * z + 1.128358514861418E-1f) * z - 3.761262582423300E-1f) * z
                       + 1.128379165726710E0f);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float large = copysignf(1.0f - poly * PW_SUFFIX(exp_approx)(-z), x);
    float result = a < 1.0f ? small : large;
    return x != x ? x : result;
}

/* x * tanh(softplus(x)) = x * (e^2x + 2e^x) / (e^2x + 2e^x + 2); x itself above 20 (the ratio is 1 in float) */
static inline float PW_SUFFIX(mish_approx)(float x) {
    float e = PW_SUFFIX(exp_approx)(x < 20.0f ? x : 20.0f), q = e * e + 2.0f * e;
    float result = x * q / (q + 2.0f);
    return x < 20.0f ? result : x;
}

static inline float PW_SUFFIX(larger)(float a, float b) { return (a > b || a != a) ? a : b; }     /* NaN wins */
static inline float PW_SUFFIX(smaller)(float a, float b) { return (a < b || a != a) ? a : b; }

/* one binary instruction over n elements */
static void PW_SUFFIX(binary_tile)(int op, const float *a, const float *b, float *restrict out, int64_t n) {
    switch (op) {
    case PW_ADD: for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i]; break;
    case PW_SUB: for (int64_t i = 0; i < n; ++i) out[i] = a[i] - b[i]; break;
    case PW_MUL: for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i]; break;
    case PW_DIV: for (int64_t i = 0; i < n; ++i) out[i] = a[i] / b[i]; break;
    case PW_MAX: for (int64_t i = 0; i < n; ++i) out[i] = PW_SUFFIX(larger)(a[i], b[i]); break;
    case PW_MIN: for (int64_t i = 0; i < n; ++i) out[i] = PW_SUFFIX(smaller)(a[i], b[i]); break;
    default: break;
    }
}

static inline float PW_SUFFIX(clip)(float x, float low, float high) {
    x = x < low ? low : x;
    return x > high ? high : x;
}

/* one unary instruction over n elements */
static void PW_SUFFIX(unary_tile)(int op, const float *x, float alpha, float beta, float *restrict out, int64_t n) {
    const float root_half = 0.70710678118654752f, root_two_over_pi = 0.79788456080286536f;
    switch (op) {
    case PW_NEG: for (int64_t i = 0; i < n; ++i) out[i] = -x[i]; break;
    case PW_ABS: for (int64_t i = 0; i < n; ++i) out[i] = fabsf(x[i]); break;
    case PW_SQRT: for (int64_t i = 0; i < n; ++i) out[i] = sqrtf(x[i]); break;
    case PW_RECIP: for (int64_t i = 0; i < n; ++i) out[i] = 1.0f / x[i]; break;
    case PW_EXP:
        for (int64_t i = 0; i < n; ++i) {
            float v = x[i];
            out[i] = v != v ? v : PW_SUFFIX(exp_approx)(v);
        }
        break;
    case PW_ERF: for (int64_t i = 0; i < n; ++i) out[i] = PW_SUFFIX(erf_approx)(x[i]); break;
    case PW_TANH: for (int64_t i = 0; i < n; ++i) out[i] = PW_SUFFIX(tanh_approx)(x[i]); break;
    case PW_SIGMOID:
        for (int64_t i = 0; i < n; ++i) {
            float v = x[i];
            out[i] = v != v ? v : PW_SUFFIX(sigmoid_approx)(v);
        }
        break;
    case PW_RELU: for (int64_t i = 0; i < n; ++i) out[i] = x[i] < 0.0f ? 0.0f : x[i]; break;
    case PW_LEAKY_RELU:
        for (int64_t i = 0; i < n; ++i) out[i] = x[i] < 0.0f ? alpha * x[i] : x[i];
        break;
    case PW_CLIP: for (int64_t i = 0; i < n; ++i) out[i] = PW_SUFFIX(clip)(x[i], alpha, beta); break;
    case PW_HARD_SIGMOID: for (int64_t i = 0; i < n; ++i) out[i] = PW_SUFFIX(clip)(alpha * x[i] + beta, 0.0f, 1.0f); break;
    case PW_HARD_SWISH:
        for (int64_t i = 0; i < n; ++i) out[i] = x[i] * PW_SUFFIX(clip)(x[i] * (1.0f / 6.0f) + 0.5f, 0.0f, 1.0f);
        break;
    case PW_GELU_ERF:
        for (int64_t i = 0; i < n; ++i) out[i] = 0.5f * x[i] * (1.0f + PW_SUFFIX(erf_approx)(x[i] * root_half));
        break;
    case PW_GELU_TANH:
        for (int64_t i = 0; i < n; ++i) {
            float v = x[i];
            out[i] = 0.5f * v * (1.0f + PW_SUFFIX(tanh_approx)(root_two_over_pi * v * (1.0f + 0.044715f * v * v)));
        }
        break;
    case PW_SWISH:
        for (int64_t i = 0; i < n; ++i) {
            float v = x[i];
            out[i] = v != v ? v : v * PW_SUFFIX(sigmoid_approx)(v);
        }
        break;
    case PW_MISH:
        for (int64_t i = 0; i < n; ++i) {
            float v = x[i];
            out[i] = v != v ? v : PW_SUFFIX(mish_approx)(v);
        }
        break;
    case PW_ELU:
        for (int64_t i = 0; i < n; ++i) {
            float v = x[i];
            /* e^v - 1 cancels for small v: its Taylor series there (error below 2e-8 relative at |v| < 1/4) */
            float series = v * (1.0f + v * (0.5f + v * (1.0f / 6 + v * (1.0f / 24 + v * (1.0f / 120 + v * (1.0f / 720))))));
            float minus_one = v > -0.25f ? series : PW_SUFFIX(exp_approx)(v) - 1.0f;
            out[i] = v > 0.0f ? v : (v != v ? v : alpha * minus_one);
        }
        break;
    default: break;
    }
}

/* pointwise_run over a checked program */
void PW_SUFFIX(pointwise_run)(const PointwiseInstruction *program, int count, const float *const *inputs,
                              const uint8_t *is_scalar, int input_count, float *out, int64_t begin, int64_t end) {
    float registers[PW_MAX_REGISTERS][TILE];   /* scalar inputs broadcast, then the instructions' results */
    for (int i = 0; i < input_count; ++i)
        if (is_scalar[i])
            for (int j = 0; j < TILE; ++j) registers[i][j] = inputs[i][0];
    for (int64_t start = begin; start < end; start += TILE) {
        int64_t n = end - start < TILE ? end - start : TILE;
        const float *source[PW_MAX_REGISTERS];
        for (int i = 0; i < input_count; ++i) source[i] = is_scalar[i] ? registers[i] : inputs[i] + start;
        for (int k = 0; k < count; ++k) {
            const PointwiseInstruction *in = program + k;
            int target = input_count + k;
            /* the last result goes straight to the output: every read of this tile's inputs came before it */
            float *result = k == count - 1 ? out + start : registers[target];
            if (in->op < PW_FIRST_UNARY)
                PW_SUFFIX(binary_tile)(in->op, source[in->arg0], source[in->arg1], result, n);
            else
                PW_SUFFIX(unary_tile)(in->op, source[in->arg0], in->alpha, in->beta, result, n);
            source[target] = result;
        }
    }
}

/* the maximum of n floats ignoring NaN (softmax needs no more: a NaN input makes its own exp, hence the row's sum
 * and the whole row, NaN) and their sum, in 8 lanes so that the loops vectorize without reassociating anything
 * the compiler is not told it may */
static inline float PW_SUFFIX(row_maximum)(const float *in, int64_t n) {
    float lanes[8];
    int64_t i = 0;
    for (int j = 0; j < 8; ++j) lanes[j] = -INFINITY;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) lanes[j] = in[i + j] > lanes[j] ? in[i + j] : lanes[j];
    for (; i < n; ++i) lanes[0] = in[i] > lanes[0] ? in[i] : lanes[0];
    for (int j = 1; j < 8; ++j) lanes[0] = lanes[j] > lanes[0] ? lanes[j] : lanes[0];
    return lanes[0];
}

static inline float PW_SUFFIX(row_sum)(const float *in, int64_t n) {
    float lanes[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) lanes[j] += in[i + j];
    for (; i < n; ++i) lanes[0] += in[i];
    return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}

/* the mean of each of `rows` contiguous rows of `cols` floats (out: rows floats, apart from x) */
void PW_SUFFIX(row_means)(const float *x, float *out, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *in = x + r * cols;
        if (cols < 128) {   /* short rows (7x7 to 10x10 planes): one 8-lane pass costs less than the wide sum's setup */
            out[r] = PW_SUFFIX(row_sum)(in, cols) / (float)cols;
            continue;
        }
        float lanes[32] = {0};   /* 32 partial sums: several vector additions in flight, not one chain */
        int64_t i = 0;
        for (; i + 32 <= cols; i += 32)
            for (int j = 0; j < 32; ++j) lanes[j] += in[i + j];
        for (int j = 0; j < 8; ++j) lanes[j] += (lanes[j + 8] + lanes[j + 16]) + lanes[j + 24];
        out[r] = (PW_SUFFIX(row_sum)(lanes, 8) + PW_SUFFIX(row_sum)(in + i, cols - i)) / (float)cols;
    }
}

/* softmax over each of `rows` contiguous rows of `cols` floats: exp(x - max) / sum; out may be x itself. A row
 * with NaN, or with an infinite maximum (inf - inf), comes out NaN as in NumPy and onnxruntime. */
void PW_SUFFIX(softmax_rows)(const float *x, float *out, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *in = x + r * cols;
        float *row = out + r * cols;
        float peak = PW_SUFFIX(row_maximum)(in, cols);
        for (int64_t i = 0; i < cols; ++i) {
            float d = in[i] - peak;
            row[i] = d != d ? d : PW_SUFFIX(exp_approx)(d);
        }
        float scale = 1.0f / PW_SUFFIX(row_sum)(row, cols);
        for (int64_t i = 0; i < cols; ++i) row[i] *= scale;
    }
}

/* layer normalization of each of `rows` contiguous rows of `cols` floats: (x - mean) / sqrt(var + epsilon), then
 * times scale and plus bias (cols floats each, or NULL); two passes for the statistics, as NumPy's kernel */
void PW_SUFFIX(layernorm_rows)(const float *x, float *out, int64_t rows, int64_t cols, const float *scale,
                               const float *bias, float epsilon) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *in = x + r * cols;
        float *row = out + r * cols;
        float mean = PW_SUFFIX(row_sum)(in, cols) / (float)cols;
        float lanes[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= cols; i += 8)
            for (int j = 0; j < 8; ++j) lanes[j] += (in[i + j] - mean) * (in[i + j] - mean);
        for (; i < cols; ++i) lanes[0] += (in[i] - mean) * (in[i] - mean);
        float variance = (((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])))
                         / (float)cols;
        float inv_std = 1.0f / sqrtf(variance + epsilon);
        if (scale && bias)
            for (i = 0; i < cols; ++i) row[i] = (in[i] - mean) * inv_std * scale[i] + bias[i];
        else if (scale)
            for (i = 0; i < cols; ++i) row[i] = (in[i] - mean) * inv_std * scale[i];
        else if (bias)
            for (i = 0; i < cols; ++i) row[i] = (in[i] - mean) * inv_std + bias[i];
        else
            for (i = 0; i < cols; ++i) row[i] = (in[i] - mean) * inv_std;
    }
}

/* An LSTM direction with ONNX's default cell (sigmoid gates, tanh candidate and output, no peepholes, clip or
 * coupled gates) over `steps` steps: per step t (from the last when reverse), gates = projection[t] + h @ r_t
 * (gates i, o, f, c of `hidden` each; r_t is R transposed, hidden x 4 hidden), c = f c + i c~, h = o tanh(c),
 * y[t * y_step + batch row] = h. h and c (batch x hidden) are the state, updated in place; gates is scratch of
 * batch x 4 hidden. */
void PW_SUFFIX(lstm_steps)(const float *projection, const float *r_t, float *h, float *c, float *y, int64_t y_step,
                           int64_t steps, int64_t batch, int64_t hidden, int reverse, float *restrict gates) {
    int64_t width = 4 * hidden;
    for (int64_t position = 0; position < steps; ++position) {
        int64_t t = reverse ? steps - 1 - position : position;
        for (int64_t b = 0; b < batch; ++b) {
            float *restrict g = gates + b * width;
            const float *state = h + b * hidden;
            memcpy(g, projection + (t * batch + b) * width, width * sizeof(float));
            for (int64_t k = 0; k < hidden; ++k) {   /* g += h[k] x row k of R^T: contiguous, vectorized */
                const float *restrict row = r_t + k * width;
                float hk = state[k];
                for (int64_t j = 0; j < width; ++j) g[j] += hk * row[j];
            }
        }
        for (int64_t b = 0; b < batch; ++b) {
            float *restrict g = gates + b * width, *restrict cell = c + b * hidden, *restrict out = h + b * hidden;
            for (int64_t j = 0; j < 3 * hidden; ++j) g[j] = PW_SUFFIX(sigmoid_approx)(g[j]);
            for (int64_t j = 3 * hidden; j < width; ++j) g[j] = PW_SUFFIX(tanh_approx)(g[j]);
            for (int64_t j = 0; j < hidden; ++j) {
                cell[j] = g[2 * hidden + j] * cell[j] + g[j] * g[3 * hidden + j];
                out[j] = PW_SUFFIX(tanh_approx)(cell[j]);
            }
            for (int64_t j = 0; j < hidden; ++j) out[j] *= g[hidden + j];
            memcpy(y + t * y_step + b * hidden, out, hidden * sizeof(float));
        }
    }
}
