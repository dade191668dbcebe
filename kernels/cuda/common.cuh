// edgert CUDA kernels: shared definitions. Self-contained (NVRTC from PyPI has no toolkit headers),
// and valid host C++ under -DEDGERT_EMU (emu.h) so every kernel can be tested without a GPU.
#pragma once

#ifdef EDGERT_EMU
#define EDGERT_FN inline
#else
#define EDGERT_FN __device__ __forceinline__
#endif

typedef signed char i8;
typedef unsigned char u8;
typedef short i16;
typedef unsigned short u16;
typedef int i32;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

// IEEE half stored as its bits; all arithmetic happens in float.
struct __align__(2) half_t { u16 bits; };

#ifdef EDGERT_EMU
struct alignas(16) float4 { float x, y, z, w; };   // CUDA's builtin vector type
EDGERT_FN float __uint_as_float(u32 v) { float f; std::memcpy(&f, &v, 4); return f; }
EDGERT_FN u32 __float_as_uint(float v) { u32 u; std::memcpy(&u, &v, 4); return u; }
EDGERT_FN float h2f(half_t h) { _Float16 v; std::memcpy(&v, &h.bits, 2); return float(v); }
EDGERT_FN half_t f2h(float f) { _Float16 v = _Float16(f); half_t h; std::memcpy(&h.bits, &v, 2); return h; }
#else
EDGERT_FN float h2f(half_t h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits)); return f; }
EDGERT_FN half_t f2h(float f) { half_t h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f)); return h; }
#endif

// Loads and stores between a storage type and its compute type (float for half).
EDGERT_FN float to_compute(half_t v) { return h2f(v); }
EDGERT_FN float to_compute(float v) { return v; }
EDGERT_FN double to_compute(double v) { return v; }
template <class T> EDGERT_FN T from_float(float v);
template <> EDGERT_FN float from_float<float>(float v) { return v; }
template <> EDGERT_FN half_t from_float<half_t>(float v) { return f2h(v); }
template <> EDGERT_FN double from_float<double>(float v) { return v; }
template <class T> struct compute_of { typedef T type; };
template <> struct compute_of<half_t> { typedef float type; };
// compute type → storage type (rounds to nearest for half)
template <class T> struct Store { template <class C> static EDGERT_FN T from(C v) { return T(v); } };
template <> struct Store<half_t> { template <class C> static EDGERT_FN half_t from(C v) { return f2h(float(v)); } };
template <class T, class C> EDGERT_FN T from_compute(C v) { return Store<T>::from(v); }
template <class T> EDGERT_FN T zero_of() { return T(0); }
template <> EDGERT_FN half_t zero_of<half_t>() { half_t h; h.bits = 0; return h; }

EDGERT_FN float inf_f() { return __int_as_float(0x7f800000); }
EDGERT_FN double inf_d() { return __longlong_as_double(0x7ff0000000000000LL); }
EDGERT_FN float nan_f() { return __int_as_float(0x7fc00000); }

template <class T> EDGERT_FN T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <class T> EDGERT_FN T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) { T w = __shfl_xor_sync(0xffffffffu, v, o); v = w > v ? w : v; }
    return v;
}

// Pack two halves (lo first) into one 32-bit register, as the tensor-core instructions expect.
EDGERT_FN u32 pack_half2(half_t lo, half_t hi) { return u32(lo.bits) | (u32(hi.bits) << 16); }

// -- tensor cores: mma.m16n8k16 (f16 in, f32 accumulate) and ldmatrix --------------------------
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4, t = lane % 4:
//   A (16x16, row): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B (16x8, col):  b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C (16x8):       c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
#ifdef EDGERT_EMU
namespace emu {
inline float half_of(u32 reg, int which) { half_t h; h.bits = u16(which ? reg >> 16 : reg & 0xffff); return h2f(h); }
}
EDGERT_FN void mma_16816(float d[4], const u32 a[4], const u32 b[2]) {
    emu::mma_exchange<16, float>(d, a, b, [](int warp, int r, int k) {
        const u32* src = reinterpret_cast<const u32*>(emu::slot(warp, (r & 7) * 4 + ((k & 7) >> 1)));
        return emu::half_of(src[(r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k & 1);
    }, [](int warp, int k, int n) {
        const u32* src = reinterpret_cast<const u32*>(emu::slot(warp, n * 4 + ((k & 7) >> 1)));
        return emu::half_of(src[4 + (k >= 8 ? 1 : 0)], k & 1);
    });
}
// ldmatrix.x4: lane l gives the address of row (l % 8) of matrix (l / 8); each matrix is 8x8 halves.
template <bool TRANS>
EDGERT_FN void ldmatrix_x4(u32 r[4], const half_t* row) {
    std::memcpy(emu::my_slot(), &row, sizeof(row));
    emu::sync_warp();
    int warp = emu::current->linear >> 5, lane = emu::lane();
    auto row_of = [&](int m, int i) {
        const half_t* p;
        std::memcpy(&p, emu::slot(warp, m * 8 + i), sizeof(p));
        return p;
    };
    for (int m = 0; m < 4; ++m) {
        half_t lo, hi;
        if (!TRANS) {
            const half_t* p = row_of(m, lane >> 2);
            lo = p[2 * (lane & 3)];
            hi = p[2 * (lane & 3) + 1];
        } else {
            lo = row_of(m, 2 * (lane & 3))[lane >> 2];
            hi = row_of(m, 2 * (lane & 3) + 1)[lane >> 2];
        }
        r[m] = pack_half2(lo, hi);
    }
    emu::sync_warp();
}
// mma.m16n8k8 with tf32 inputs (fp32 kernels on tensor cores, opt-in): every register holds one
// element, g = lane / 4, t = lane % 4:
//   A (16x8, row): a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]
//   B (8x8, col):  b0 = B[t][g], b1 = B[t+4][g];   C as for m16n8k16.
// to_tf32 rounds an fp32 value to tf32 (10 mantissa bits, nearest, ties away from zero: cvt.rna).
EDGERT_FN u32 to_tf32(float v) {
    u32 bits;
    std::memcpy(&bits, &v, 4);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & 0xffffe000u;
    return bits;
}
EDGERT_FN void mma_1688_tf32(float d[4], const u32 a[4], const u32 b[2]) {
    auto value = [](u32 bits) { float f; std::memcpy(&f, &bits, 4); return f; };
    emu::mma_exchange<8, float>(d, a, b, [&](int warp, int r, int k) {
        const u32* src = reinterpret_cast<const u32*>(emu::slot(warp, (r & 7) * 4 + (k & 3)));
        return value(src[(r >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]);
    }, [&](int warp, int k, int n) {
        const u32* src = reinterpret_cast<const u32*>(emu::slot(warp, n * 4 + (k & 3)));
        return value(src[4 + (k >= 4 ? 1 : 0)]);
    });
}
#else
EDGERT_FN void mma_16816(float d[4], const u32 a[4], const u32 b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <bool TRANS>
EDGERT_FN void ldmatrix_x4(u32 r[4], const half_t* row) {
    u32 address = u32(__cvta_generic_to_shared(row));
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
}
// tf32 tensor cores exist from sm_80 on; the builder never emits tf32 kernels for older arches.
EDGERT_FN u32 to_tf32(float v) {
    u32 r;
#if __CUDA_ARCH__ >= 800
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
#else
    r = __float_as_uint(v);
#endif
    return r;
}
EDGERT_FN void mma_1688_tf32(float d[4], const u32 a[4], const u32 b[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
}
#endif
