/* Max pooling over whole rows or 2x2 at stride 2 (native_pool.c), for _native.c's pool2d */
#ifndef EDGERT_NATIVE_POOL_H
#define EDGERT_NATIVE_POOL_H

#include "native_conv.h"

/* whether max_pool_2x2 runs this geometry: 2x2 windows at stride 2 inside the input, the AVX-512 kernels chosen */
int max_pool_2x2_pays(const Geometry *g);
/* planes [begin, end) of x into out; pure C, no Python calls (runs without the GIL) */
void max_pool_2x2(const Geometry *g, const float *x, float *out, int64_t begin, int64_t end);

/* whether max_pool_rows runs this geometry: kx1 windows at stride kx1 inside the input, no padding, AVX-512 */
int max_pool_rows_pays(const Geometry *g);
void max_pool_rows(const Geometry *g, const float *x, float *out, int64_t begin, int64_t end);

#endif
