// CPU emulation of the CUDA execution model, for testing edgert's kernels without a GPU.
//
// A module's source is compiled by the host C++ compiler with -DEDGERT_EMU and this header
// included first. Blocks run one after another; each thread of a block is a fiber (ucontext)
// on one OS thread, switched at __syncthreads() and at warp-level exchanges (shuffles, mma,
// ldmatrix), so barriers, shared memory and warp collectives behave as on the device.
// Because one block runs at a time, `__shared__` can simply be `static`.
// A barrier that not every live thread reaches is reported as a deadlock instead of hanging.
#pragma once
#include <ucontext.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

namespace emu {

enum State { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

struct Fiber {
    ucontext_t context;
    uint3 tid;
    int linear;
    State state;
    std::vector<char> stack;
};

inline ucontext_t scheduler_context;
inline Fiber* current = nullptr;
inline std::vector<Fiber> fibers;
inline uint3 block_idx;
inline dim3 block_dim, grid_dim;
inline void (*entry)(const char*) = nullptr;
inline const char* entry_params = nullptr;
inline std::string error;
// Per-warp exchange area: each lane publishes up to 64 bytes before a warp barrier.
inline std::vector<unsigned char> exchange;

inline void yield(State state) {
    current->state = state;
    swapcontext(&current->context, &scheduler_context);
}

inline void sync_block() { yield(AT_BLOCK_BARRIER); }
inline void sync_warp() { yield(AT_WARP_BARRIER); }

inline int lane() { return current->linear & 31; }
inline unsigned char* slot(int warp, int lane_id) { return &exchange[(size_t(warp) * 32 + lane_id) * 64]; }
inline unsigned char* my_slot() { return slot(current->linear >> 5, lane()); }

static void fiber_main() {
    entry(entry_params);
    current->state = DONE;
    swapcontext(&current->context, &scheduler_context);
}

// Release barriers once every live thread (of the block, or of a warp) waits at them.
inline bool release() {
    bool all_block = true, any_live = false;
    for (auto& f : fibers) {
        if (f.state == DONE) continue;
        any_live = true;
        if (f.state != AT_BLOCK_BARRIER) all_block = false;
    }
    if (!any_live) return false;
    if (all_block) {
        for (auto& f : fibers) if (f.state != DONE) f.state = RUNNABLE;
        return true;
    }
    bool released = false;
    size_t warps = (fibers.size() + 31) / 32;
    for (size_t w = 0; w < warps; ++w) {
        bool waiting = true, live = false;
        for (size_t i = w * 32; i < std::min(fibers.size(), w * 32 + 32); ++i) {
            if (fibers[i].state == DONE) continue;
            live = true;
            if (fibers[i].state != AT_WARP_BARRIER) waiting = false;
        }
        if (live && waiting) {
            for (size_t i = w * 32; i < std::min(fibers.size(), w * 32 + 32); ++i)
                if (fibers[i].state != DONE) fibers[i].state = RUNNABLE;
            released = true;
        }
    }
    return released;
}

inline bool run_block(size_t stack_bytes) {
    size_t threads = size_t(block_dim.x) * block_dim.y * block_dim.z;
    if (fibers.size() != threads) fibers.resize(threads);
    exchange.assign(((threads + 31) / 32) * 32 * 64, 0);
    for (size_t i = 0; i < threads; ++i) {
        Fiber& f = fibers[i];
        if (f.stack.size() != stack_bytes) f.stack.assign(stack_bytes, 0);
        f.linear = int(i);
        f.tid = {unsigned(i % block_dim.x), unsigned((i / block_dim.x) % block_dim.y),
                 unsigned(i / (size_t(block_dim.x) * block_dim.y))};
        f.state = RUNNABLE;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.data();
        f.context.uc_stack.ss_size = f.stack.size();
        f.context.uc_link = nullptr;
        makecontext(&f.context, fiber_main, 0);
    }
    for (;;) {
        bool ran = false;
        for (auto& f : fibers) {
            if (f.state != RUNNABLE) continue;
            current = &f;
            swapcontext(&scheduler_context, &f.context);
            ran = true;
        }
        if (ran) continue;
        if (!release()) break;
    }
    for (auto& f : fibers) {
        if (f.state != DONE) {
            error = "deadlock: thread " + std::to_string(f.linear) + " of block (" + std::to_string(block_idx.x) +
                    "," + std::to_string(block_idx.y) + "," + std::to_string(block_idx.z) +
                    ") waits at a barrier that other threads never reach";
            return false;
        }
    }
    return true;
}

// Kernel parameters arrive packed as the CUDA driver lays them out: each at its natural alignment.
template <class T>
T take(const char* buffer, size_t& offset) {
    offset = (offset + alignof(T) - 1) / alignof(T) * alignof(T);
    T value;
    std::memcpy(&value, buffer + offset, sizeof(T));
    offset += sizeof(T);
    return value;
}

template <class... A>
struct Invoke {
    template <void (*F)(A...)>
    static void call(const char* buffer) {
        size_t offset = 0;
        std::tuple<A...> args{take<A>(buffer, offset)...};
        std::apply(F, args);
    }
};

template <class... A>
Invoke<A...> invoker_of(void (*)(A...));

inline int launch(void (*fn)(const char*), unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                  unsigned bz, const char* params) {
    entry = fn;
    entry_params = params;
    grid_dim = {gx, gy, gz};
    block_dim = {bx, by, bz};
    error.clear();
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                block_idx = {x, y, z};
                if (!run_block(256 * 1024)) return 1;
            }
    return 0;
}

template <class T>
T shfl(T value, int source_lane) {
    std::memcpy(my_slot(), &value, sizeof(T));
    sync_warp();
    T result;
    std::memcpy(&result, slot(current->linear >> 5, source_lane & 31), sizeof(T));
    sync_warp();
    return result;
}

}  // namespace emu

#define EDGERT_EMU_KERNEL(name) \
    extern "C" int emu_launch_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, \
                                     const char* params) { \
        return emu::launch(&decltype(emu::invoker_of(name))::template call<name>, gx, gy, gz, bx, by, bz, params); \
    }

extern "C" const char* emu_error() { return emu::error.c_str(); }

#define threadIdx (emu::current->tid)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define __syncthreads() emu::sync_block()
#define __syncwarp(...) emu::sync_warp()
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

template <class T> T __shfl_xor_sync(unsigned, T v, int m, int = 32) { return emu::shfl(v, emu::lane() ^ m); }
template <class T> T __shfl_down_sync(unsigned, T v, int d, int = 32) {
    int src = emu::lane() + d;
    return emu::shfl(v, src < 32 ? src : emu::lane());
}
template <class T> T __shfl_sync(unsigned, T v, int src, int = 32) { return emu::shfl(v, src); }
template <class T> T __ldg(const T* p) { return *p; }
template <class T> T __ldcg(const T* p) { return *p; }
template <class T> T atomicAdd(T* address, T value) { T old = *address; *address = old + value; return old; }
inline void __threadfence() {}
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

// ==== tensor-core mma through the warp's exchange area (common.cuh and int8.cuh use it) ================
namespace emu {
// Each lane publishes its fragments (a0..a3, b0, b1), then computes its four C elements (rows g, g + 8,
// columns 2t, 2t + 1) as d + sum over k of A(warp, r, k) * B(warp, k, n), summed in type Sum.
template <int K, class Sum, class Acc, class GetA, class GetB>
inline void mma_exchange(Acc d[4], const unsigned a[4], const unsigned b[2], GetA A, GetB B) {
    unsigned* mine = reinterpret_cast<unsigned*>(my_slot());
    for (int i = 0; i < 4; ++i) mine[i] = a[i];
    mine[4] = b[0];
    mine[5] = b[1];
    sync_warp();
    const int warp = current->linear >> 5, g = lane() >> 2, t = lane() & 3;
    Acc result[4];
    for (int i = 0; i < 4; ++i) {
        const int r = g + (i >= 2 ? 8 : 0), n = 2 * t + (i & 1);
        Sum s = Sum(0);
        for (int k = 0; k < K; ++k) s += Sum(A(warp, r, k) * B(warp, k, n));
        result[i] = Acc(Sum(d[i]) + s);
    }
    sync_warp();
    for (int i = 0; i < 4; ++i) d[i] = result[i];
}
}  // namespace emu

// ==== int8 (kernels/cuda/int8.cuh): dp4a and the s8 tensor-core mma ====================================
// __dp4a: four signed byte products added to c, wrapping like the 32-bit hardware adder.
inline int __dp4a(int a, int b, int c) {
    unsigned sum = unsigned(c);
    for (int i = 0; i < 4; ++i)
        sum += unsigned(int(static_cast<signed char>(a >> (8 * i))) * int(static_cast<signed char>(b >> (8 * i))));
    return int(sum);
}

namespace emu {
// mma.m16n8k32.row.col.s32.s8.s8.s32 through the warp's exchange area. Fragments (PTX ISA), g = lane / 4,
// t = lane % 4, four consecutive k per register (lowest byte first):
//   A: a0 = A[g][4t..], a1 = A[g+8][4t..], a2 = A[g][16+4t..], a3 = A[g+8][16+4t..]
//   B: b0 = B[4t..][g], b1 = B[16+4t..][g];  C: c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
inline void mma_s8_16832(int d[4], const unsigned a[4], const unsigned b[2]) {
    auto byte_of = [](unsigned reg, int k) { return int(static_cast<signed char>(reg >> (8 * (k & 3)))); };
    mma_exchange<32, unsigned>(d, a, b, [&](int warp, int r, int k) {   // unsigned: wraps like the hardware
        const unsigned* src = reinterpret_cast<const unsigned*>(slot(warp, (r & 7) * 4 + ((k & 15) >> 2)));
        return byte_of(src[(r >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0)], k);
    }, [&](int warp, int k, int n) {
        const unsigned* src = reinterpret_cast<const unsigned*>(slot(warp, n * 4 + ((k & 15) >> 2)));
        return byte_of(src[4 + (k >= 16 ? 1 : 0)], k);
    });
}
}  // namespace emu
