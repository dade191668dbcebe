/* Depthwise convolution of narrow planes with channels in vector lanes (native_depthwise.c), for _native.c */
#ifndef EDGERT_NATIVE_DEPTHWISE_H
#define EDGERT_NATIVE_DEPTHWISE_H

#include "native_conv.h"

/* whether depthwise_lanes runs this geometry: output rows narrower than 16, the AVX-512 microkernels chosen */
int depthwise_lanes_pays(const Geometry *g);
/* the floats of scratch depthwise_lanes needs (to be 64-byte aligned) */
int64_t depthwise_lanes_scratch_floats(const Geometry *g);
/* planes [begin, end) of x (geometry g: planes of height x width, channels g->channels) into out, weights
 * (channels, taps) and bias (channels or NULL); pure C, no Python calls (runs without the GIL) */
void depthwise_lanes(const Geometry *g, const float *x, const float *w, const float *bias, float *out, int64_t begin,
                     int64_t end, float *scratch);

#endif
