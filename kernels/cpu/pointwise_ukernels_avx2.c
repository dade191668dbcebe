/* The x86-64 builds of pointwise_body.h: AVX2+FMA and AVX-512 (pointwise_ukernels.c calls the one cpuid allows). The
 * target is set per build, so the inline math helpers are compiled for it too and vectorize; the AVX-512 build asks
 * for 512-bit vectors (GCC's default for AVX-512 targets is 256-bit ones). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define PW_SUFFIX(name) name##_avx2
#include "pointwise_body.h"
#undef PW_SUFFIX
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"), min_vector_width(512))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC target("avx512f,avx2,fma,prefer-vector-width=512")
#endif
#define PW_SUFFIX(name) name##_avx512
#include "pointwise_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int pointwise_avx2_unused;   /* ISO C wants a translation unit to declare something */
#endif
