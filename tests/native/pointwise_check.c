/* Checks kernels/cpu/pointwise_ukernels.c without Python: every opcode over a sweep of inputs against double
 * precision libm, the GELU chain as the fusion pass emits it, softmax rows, row means and the LSTM time loop. Built
 * and run by tests/test_cpu_native_aarch64.py on the host and, cross-compiled, under qemu-aarch64 (the NEON build).
 * Prints one line per failing case and exits 1 when any fails, else prints the ISA and "ok". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "pointwise_ukernels.h"

enum { N = 4099 };   /* not a multiple of the 256-element tile */

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static double reference(int op, double x, double alpha, double beta) {
    switch (op) {
    case PW_NEG: return -x;
    case PW_ABS: return fabs(x);
    case PW_SQRT: return sqrt(fabs(x));
    case PW_RECIP: return 1.0 / x;
    case PW_EXP: return exp(x);
    case PW_ERF: return erf(x);
    case PW_TANH: return tanh(x);
    case PW_SIGMOID: return sigmoid(x);
    case PW_RELU: return x < 0 ? 0 : x;
    case PW_LEAKY_RELU: return x < 0 ? alpha * x : x;
    case PW_CLIP: return x < alpha ? alpha : (x > beta ? beta : x);
    case PW_HARD_SIGMOID: return fmin(1.0, fmax(0.0, alpha * x + beta));
    case PW_HARD_SWISH: return x * fmin(1.0, fmax(0.0, x / 6 + 0.5));
    case PW_GELU_ERF: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case PW_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case PW_SWISH: return x * sigmoid(x);
    case PW_MISH: return x * tanh(log1p(exp(x)));
    case PW_ELU: return x > 0 ? x : alpha * expm1(x);
    default: return NAN;
    }
}

/* normwise error of got against want, and whether every element is within 2e-6 of the largest |want| */
static int compare(const char *what, const float *got, const double *want, int n) {
    double error = 0, norm = 0, largest = 0;
    for (int i = 0; i < n; ++i) largest = fmax(largest, fabs(want[i]));
    for (int i = 0; i < n; ++i) {
        double d = got[i] - want[i];
        error += d * d;
        norm += want[i] * want[i];
        if (!(fabs(d) <= 2e-6 * fabs(want[i]) + 2e-7 * fmax(1.0, largest))) {
            printf("FAIL %s: element %d: got %.9g, want %.9g\n", what, i, got[i], want[i]);
            return 1;
        }
    }
    if (norm > 0 && sqrt(error / norm) > 1e-6) {
        printf("FAIL %s: normwise error %.3g\n", what, sqrt(error / norm));
        return 1;
    }
    return 0;
}

static int check_unary(int op, double scale, float *x, float *out, double *want) {
    PointwiseInstruction program = {op, 0, -1, 0.2f, 0.7f};
    const float *inputs[1] = {x};
    uint8_t scalar[1] = {0};
    for (int i = 0; i < N; ++i) {
        x[i] = (float)(scale * sin(i * 12.9898) * 1.7);   /* a deterministic spread over [-1.7, 1.7] x scale */
        if (op == PW_EXP && x[i] > 80) x[i] = 80;
        if (op == PW_RECIP && fabsf(x[i]) < 1e-3f) x[i] = 1;
    }
    for (int i = 0; i < N; ++i) want[i] = reference(op, x[i], (float)0.2f, (float)0.7f);
    if (op == PW_SQRT)
        for (int i = 0; i < N; ++i) x[i] = fabsf(x[i]);
    if (pointwise_run(&program, 1, inputs, scalar, 1, out, 0, N) != 0) {
        printf("FAIL op %d: refused\n", op);
        return 1;
    }
    char what[64];
    snprintf(what, sizeof what, "op %d at scale %g", op, scale);
    return compare(what, out, want, N);
}

static int check_gelu_chain(float *x, float *out, double *want) {
    const float root2 = 1.41421356f, one = 1.0f, half = 0.5f;
    PointwiseInstruction program[5] = {{PW_DIV, 0, 1, 0, 0}, {PW_ERF, 4, -1, 0, 0}, {PW_ADD, 5, 2, 0, 0},
                                       {PW_MUL, 0, 6, 0, 0}, {PW_MUL, 7, 3, 0, 0}};
    const float *inputs[4] = {x, &root2, &one, &half};
    uint8_t scalar[4] = {0, 1, 1, 1};
    for (int i = 0; i < N; ++i) {
        x[i] = (float)(4 * sin(i * 78.233));
        want[i] = reference(PW_GELU_ERF, x[i], 0, 0);
    }
    if (pointwise_run(program, 5, inputs, scalar, 4, out, 0, N) != 0) return 1;
    PointwiseInstruction bad = {PW_ADD, 0, 3, 0, 0};   /* reads a register nobody wrote */
    if (pointwise_run(&bad, 1, inputs, scalar, 1, out, 0, N) != -1) {
        printf("FAIL: a malformed program ran\n");
        return 1;
    }
    return compare("gelu chain", out, want, N);
}

static int check_softmax(float *x, float *out, double *want) {
    enum { COLS = 1031 };   /* rows of an odd length: the 8-lane loops' tails */
    int rows = N / COLS;
    for (int i = 0; i < rows * COLS; ++i) x[i] = (float)(20 * sin(i * 3.7));
    for (int r = 0; r < rows; ++r) {
        double peak = -INFINITY, total = 0;
        for (int i = 0; i < COLS; ++i)   /* not fmax: aarch64 gcc 12 -O3 crashes vectorizing that reduction */
            if (x[r * COLS + i] > peak) peak = x[r * COLS + i];
        for (int i = 0; i < COLS; ++i) total += exp(x[r * COLS + i] - peak);
        for (int i = 0; i < COLS; ++i) want[r * COLS + i] = exp(x[r * COLS + i] - peak) / total;
    }
    softmax_rows(x, out, rows, COLS);
    return compare("softmax", out, want, rows * COLS);
}

/* row means: short rows (the 8-lane sum) and long ones (the 32-lane sum, and its tail) */
static int check_row_means(float *x, float *out, double *want) {
    int failed = 0;
    const int widths[] = {49, 1031, 131};
    for (int w = 0; w < 3; ++w) {
        int cols = widths[w], rows = N / cols;
        for (int i = 0; i < rows * cols; ++i) x[i] = (float)(1 + sin(i * 1.3));
        for (int r = 0; r < rows; ++r) {
            double total = 0;
            for (int i = 0; i < cols; ++i) total += x[r * cols + i];
            want[r] = total / cols;
        }
        row_means(x, out, rows, cols);
        failed += compare("row means", out, want, rows);
    }
    return failed;
}

/* an LSTM direction (steps forward and reversed, batch 2, hidden 13: past an 8-lane vector) against double precision */
static int check_lstm(int reverse) {
    enum { STEPS = 4, BATCH = 2, HIDDEN = 13, WIDTH = 4 * HIDDEN, DIRS = 2 };
    float projection[STEPS * BATCH * WIDTH], r_t[HIDDEN * WIDTH], h[BATCH * HIDDEN], c[BATCH * HIDDEN];
    float y[STEPS * DIRS * BATCH * HIDDEN], gates[BATCH * WIDTH];
    double hd[BATCH * HIDDEN], cd[BATCH * HIDDEN], want[STEPS * BATCH * HIDDEN], g[WIDTH];
    for (int i = 0; i < STEPS * BATCH * WIDTH; ++i) projection[i] = (float)(2 * sin(i * 1.37));
    for (int i = 0; i < HIDDEN * WIDTH; ++i) r_t[i] = (float)(0.4 * sin(i * 2.11));
    for (int i = 0; i < BATCH * HIDDEN; ++i) {
        hd[i] = h[i] = (float)(0.5 * sin(i * 0.73));
        cd[i] = c[i] = (float)sin(i * 0.91);
    }
    for (int position = 0; position < STEPS; ++position) {
        int t = reverse ? STEPS - 1 - position : position;
        for (int b = 0; b < BATCH; ++b) {
            for (int j = 0; j < WIDTH; ++j) {
                g[j] = projection[(t * BATCH + b) * WIDTH + j];
                for (int k = 0; k < HIDDEN; ++k) g[j] += hd[b * HIDDEN + k] * r_t[k * WIDTH + j];
            }
            for (int j = 0; j < HIDDEN; ++j) {
                double i_ = sigmoid(g[j]), o = sigmoid(g[HIDDEN + j]), f = sigmoid(g[2 * HIDDEN + j]);
                cd[b * HIDDEN + j] = f * cd[b * HIDDEN + j] + i_ * tanh(g[3 * HIDDEN + j]);
                want[(t * BATCH + b) * HIDDEN + j] = o * tanh(cd[b * HIDDEN + j]);
            }
        }
        for (int i = 0; i < BATCH * HIDDEN; ++i) hd[i] = want[t * BATCH * HIDDEN + i];
    }
    /* y as (steps, directions, batch, hidden), this direction the second */
    lstm_steps(projection, r_t, h, c, y + BATCH * HIDDEN, DIRS * BATCH * HIDDEN, STEPS, BATCH, HIDDEN, reverse, gates);
    float got[STEPS * BATCH * HIDDEN];
    for (int t = 0; t < STEPS; ++t)
        for (int i = 0; i < BATCH * HIDDEN; ++i) got[t * BATCH * HIDDEN + i] = y[(t * DIRS + 1) * BATCH * HIDDEN + i];
    return compare(reverse ? "lstm reversed" : "lstm", got, want, STEPS * BATCH * HIDDEN)
           + compare("lstm cell state", c, cd, BATCH * HIDDEN);
}

int main(void) {
    float *x = malloc(N * sizeof(float)), *out = malloc(N * sizeof(float));
    double *want = malloc(N * sizeof(double));
    const double scales[] = {1e-4, 1.0, 10.0, 50.0};
    int failures = 0;
    for (int op = PW_FIRST_UNARY; op < PW_OP_COUNT; ++op)
        for (int s = 0; s < 4; ++s) failures += check_unary(op, scales[s], x, out, want);
    failures += check_gelu_chain(x, out, want);
    failures += check_softmax(x, out, want);
    failures += check_row_means(x, out, want);
    failures += check_lstm(0) + check_lstm(1);
    printf("%s %s\n", pointwise_isa(), failures ? "FAILED" : "ok");
    free(x);
    free(out);
    free(want);
    return failures ? 1 : 0;
}
