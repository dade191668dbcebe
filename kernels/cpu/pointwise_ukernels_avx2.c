/* The AVX2+FMA build of pointwise_body.h (x86-64 only; pointwise_ukernels.c calls it where cpuid allows). The
 * target is set for the whole file, so the inline math helpers are compiled for it too and vectorize. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
#define PW_SUFFIX(name) name##_avx2
#include "pointwise_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int pointwise_avx2_unused;   /* ISO C wants a translation unit to declare something */
#endif
