/* Fused per-element programs over float32 (kernels/cpu/pointwise_ukernels.c): pure C, no Python, so that the
 * same code is tested natively and cross-compiled for aarch64 under qemu (tests/native/). */
#ifndef EDGERT_POINTWISE_UKERNELS_H
#define EDGERT_POINTWISE_UKERNELS_H

#include <stdint.h>

/* opcodes: binary ones read two registers, unary ones one (and up to two float parameters) */
enum PointwiseOp {
    PW_ADD, PW_SUB, PW_MUL, PW_DIV, PW_MAX, PW_MIN,                            /* binary */
    PW_NEG, PW_ABS, PW_SQRT, PW_RECIP, PW_EXP, PW_ERF, PW_TANH, PW_SIGMOID,    /* unary */
    PW_RELU, PW_LEAKY_RELU, PW_CLIP, PW_HARD_SIGMOID, PW_HARD_SWISH, PW_GELU_ERF, PW_GELU_TANH, PW_SWISH,
    PW_MISH, PW_ELU,
    PW_OP_COUNT
};
#define PW_FIRST_UNARY PW_NEG
#define PW_MAX_REGISTERS 32

/* One instruction: result register = inputs + its index; args index registers (inputs first). */
typedef struct {
    int32_t op, arg0, arg1;
    float alpha, beta;
} PointwiseInstruction;

/* Runs `count` instructions over elements [begin, end) of `inputs` (each either `elements` long or one scalar:
 * is_scalar[i]) into out. Returns 0, or -1 when the program is malformed (checked first, nothing written). */
int pointwise_run(const PointwiseInstruction *program, int count, const float *const *inputs,
                  const uint8_t *is_scalar, int input_count, float *out, int64_t begin, int64_t end);

/* softmax over `rows` contiguous rows of `cols` floats (out may be x itself) */
void softmax_rows(const float *x, float *out, int64_t rows, int64_t cols);

/* the mean of each of `rows` contiguous rows of `cols` floats into out[0, rows) (apart from x) */
void row_means(const float *x, float *out, int64_t rows, int64_t cols);

/* layer normalization over `rows` contiguous rows of `cols` floats; scale and bias are cols floats or NULL */
void layernorm_rows(const float *x, float *out, int64_t rows, int64_t cols, const float *scale, const float *bias,
                    float epsilon);

/* An LSTM direction with ONNX's default cell over `steps` steps (pointwise_body.h says what it computes);
 * gates: scratch of batch x 4 hidden floats */
void lstm_steps(const float *projection, const float *r_t, float *h, float *c, float *y, int64_t y_step,
                int64_t steps, int64_t batch, int64_t hidden, int reverse, float *gates);

/* which build runs: "avx512", "avx2+fma", "baseline" or "neon" (the dispatch table is filled on first use) */
const char *pointwise_isa(void);

/* 0 when the program is well formed for input_count inputs, else -1 */
int pointwise_check(const PointwiseInstruction *program, int count, int input_count);

#endif
