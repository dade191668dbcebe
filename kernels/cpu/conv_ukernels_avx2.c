/* The x86-64 builds of conv_body.h: AVX2+FMA (8-float vectors) and AVX-512 (16-float vectors); conv_ukernels.c calls
 * the one cpuid allows. The target is set per build, so the inline helpers are compiled for it too. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define CONV_SUFFIX(name) name##_avx2
#include "conv_body.h"
#undef CONV_SUFFIX
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC target("avx512f,avx2,fma")
#endif
#define CONV_SUFFIX(name) name##_avx512
#undef CONV_BODY_LANES
#undef CONV_BODY_GROUP
#undef CONV_BODY_VECTORS
#undef CONV_BODY_SPAN
#define CONV_BODY_LANES 16
#define CONV_BODY_GROUP 8
#define CONV_BODY_VECTORS 3
#define ConvVector ConvVector512
#include "conv_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int conv_avx2_unused;   /* ISO C wants a translation unit to declare something */
#endif
