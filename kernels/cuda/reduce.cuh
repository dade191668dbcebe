// Row reductions for Reduce, Softmax, Normalization and TopK: a row is reduced by one thread
// (GROUP = 1), one warp (GROUP = 32) or one block (GROUP = 256); every thread of the group gets
// the result. Must be reached by every thread of the group (barriers inside for GROUP > 32).
#pragma once

template <int GROUP, class T, class F>
EDGERT_FN T reduce_group(T v, F combine) {
    if (GROUP == 1) return v;
    for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (GROUP <= 32) return v;
    __shared__ T partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // a previous call may still be reading `partial`
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = partial[0];
    for (int i = 1; i < GROUP / 32; ++i) v = combine(v, partial[i]);
    return v;
}

// (value, index) pairs for ArgMax/ArgMin and Hardmax, reduced as two scalars.
template <class T>
struct Arg { T v; i64 i; };

template <int GROUP, class T, class Better>
EDGERT_FN Arg<T> reduce_arg(Arg<T> a, Better better) {
    if (GROUP == 1) return a;
    for (int o = 16; o > 0; o >>= 1) {
        Arg<T> b;
        b.v = __shfl_xor_sync(0xffffffffu, a.v, o);
        b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
        if (better(b, a)) a = b;
    }
    if (GROUP <= 32) return a;
    __shared__ T values[32];
    __shared__ i64 indices[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();
    if (lane == 0) { values[warp] = a.v; indices[warp] = a.i; }
    __syncthreads();
    a.v = values[0];
    a.i = indices[0];
    for (int i = 1; i < GROUP / 32; ++i) {
        Arg<T> b;
        b.v = values[i];
        b.i = indices[i];
        if (better(b, a)) a = b;
    }
    return a;
}
