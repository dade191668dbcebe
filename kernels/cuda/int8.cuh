// int8 kernels: integer matrix products for Convolution and MatrixMultiply layers whose attrs carry int8
// scales, and the quantize / saturate helpers every int8 kernel shares (lower_int8.py generates the rest).
//
// Numerics are those of the CPU reference (kernels/cpu/int8.py): tensors hold dequantized floats,
// activations quantize to q = clamp(rint(x / s), -128, 127) while a tile loads, weights arrive as int8
// codes quantized at build time, products accumulate exactly in int32 (dp4a on sm_61+, or the s8 tensor-core
// mma.m16n8k32 on sm_80+), and a generated epilogue functor adds the int32 bias, rescales, runs the fused
// steps and saturates to int8 at the output scale.
//
// Exactness: the reference computes in float64. Here every rounding to an int8 code takes a float estimate
// and, when the estimate lies within 2^-12 of a rounding boundary (k + 1/2), redoes that value in double
// the way the reference does (i8_near). Input codes are then always exact (a float estimate of x / s is off
// by < 2^-16 in code units); output codes are exact unless a fused chain loses more than 2^-12 code units
// to float rounding (cancellation between large operands).
//
// Tiles: A (weight codes) is stored at build time k-major in 32-bit words of four consecutive k,
// [group][K / 4][M padded], so a tile is a straight 16-byte copy; B (activations) is gathered (implicit
// im2col: tap-major when the channels per group are a multiple of 32, k = (ky, kx, channel) with the weights
// permuted to match, else through a k table; or matrix rows) and packed into words as it goes to shared
// memory: int8 codes as they are, floats quantized. Shared tiles are [k word][m or n] (+8 words of padding:
// conflict-free for the dp4a vector reads and the mma fragment reads alike), two buffers and two register
// sets, one barrier per k-tile of 32. Split-K: int32 partial sums in a workspace, added by the last block of
// a tile (exact, so the result does not depend on the split).
#pragma once

struct I8Args { const void* p[16]; };   // pointers the generated epilogue reads: bias, rescales, tables, tensors
struct alignas(16) I8Words { u32 w[4]; };
struct alignas(16) I8Floats { float v[4]; };

// -- integer dot products ---------------------------------------------------------------------------------
#ifdef EDGERT_EMU
EDGERT_FN i32 i8_dp4a(u32 a, u32 b, i32 c) { return __dp4a(int(a), int(b), c); }
EDGERT_FN void i8_mma_16832(i32 d[4], const u32 a[4], const u32 b[2]) { emu::mma_s8_16832(d, a, b); }
#else
EDGERT_FN i32 i8_dp4a(u32 a, u32 b, i32 c) {
    i32 d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
// Fragments (PTX ISA, mma.m16n8k32 .s8), g = lane / 4, t = lane % 4, four consecutive k per register:
//   A (16x32, row): a0 = A[g][4t..], a1 = A[g+8][4t..], a2 = A[g][16+4t..], a3 = A[g+8][16+4t..]
//   B (32x8, col):  b0 = B[4t..][g], b1 = B[16+4t..][g]
//   C (16x8):       c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
EDGERT_FN void i8_mma_16832(i32 d[4], const u32 a[4], const u32 b[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
#endif

// int8 codes (edgert.int8_codes) load as the integer-valued floats the quantizers take.
EDGERT_FN float to_compute(i8 v) { return float(v); }

// -- quantize and saturate ----------------------------------------------------------------------------------
// True when r (a float estimate, in code units) is within 2^-12 of a rounding boundary k + 1/2.
EDGERT_FN bool i8_near(float r) { return fabsf(r - floorf(r) - 0.5f) < 0x1p-12f; }

EDGERT_FN float i8_clamp(float q) { return q < -128.f ? -128.f : (q > 127.f ? 127.f : q); }   // NaN stays NaN

// Code of x at scale s (inv = float(1 / s)), exactly as the reference's rint(double(x) / s).
EDGERT_FN float i8_code(float x, float inv, double scale) {
    const float r = x * inv;
    if (i8_near(r)) return i8_clamp(float(rint(double(x) / scale)));
    return i8_clamp(rintf(r));
}

// The code as an integer (NaN, which integers cannot hold, becomes 0), and as a byte for dp4a / mma.
EDGERT_FN i32 i8_int(float x, float inv, double scale) {
    const float q = i8_code(x, inv, scale);
    return q == q ? i32(q) : 0;
}
EDGERT_FN u32 i8_byte(float x, float inv, double scale) { return u32(u8(i8(i8_int(x, inv, scale)))); }

// Saturate a float estimate r of value / scale; ``near`` says the caller must redo the value in double.
EDGERT_FN float i8_round(float r, bool& near) {
    near = near || i8_near(r);
    return i8_clamp(rintf(r));
}
EDGERT_FN float i8_round_exact(double value, double scale) { return i8_clamp(float(rint(value / scale))); }

// The stored (dequantized) value of code q: table[q + 128] = float32(q * scale), computed at build time
// exactly as the reference rounds q * scale (float64) into a float32 tensor.
EDGERT_FN float i8_value(float q, const float* table) { return q == q ? __ldg(table + int(q) + 128) : nan_f(); }

// -- loaders ------------------------------------------------------------------------------------------------
constexpr int I8_KT = 8;   // words (of four k) per k-tile

// A: weight words [group][KW][MP] (MP a multiple of BM, KW of I8_KT: no bounds to check).
template <class G>
struct I8ALoader {
    static constexpr int CHUNKS = I8_KT * G::BM / 4, PER = (CHUNKS + G::THREADS - 1) / G::THREADS;
    I8Words reg[PER];
    const u32* a;

    EDGERT_FN void fetch(i32 kw0) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            const int q = threadIdx.x + i * G::THREADS;
            if (q < CHUNKS) reg[i] = *reinterpret_cast<const I8Words*>(a + i64(kw0 + q / (G::BM / 4)) * G::MP +
                                                                       (q % (G::BM / 4)) * 4);
        }
    }
    EDGERT_FN void store(u32* smem) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            const int q = threadIdx.x + i * G::THREADS;
            if (q < CHUNKS)
                *reinterpret_cast<I8Words*>(smem + (q / (G::BM / 4)) * (G::BM + 8) + (q % (G::BM / 4)) * 4) = reg[i];
        }
    }
};

// B loaders: each thread owns one column n of the tile and words kw_first + i * STEP of it; raw values are
// fetched early (to overlap the math) and packed into words when they go to shared memory: int8 codes as
// they are, floats quantized at the input's scale.
template <class G, class T> struct I8Bits {
    static EDGERT_FN u32 of(T v) { return i8_byte(to_compute(v), G::X_INV, G::X_SCALE); }
};
template <class G> struct I8Bits<G, i8> {
    static EDGERT_FN u32 of(i8 v) { return u32(u8(v)); }
};

template <class G, class T>
struct I8BBase {
    static constexpr int STEP = G::THREADS / G::BN, PER = I8_KT / STEP;
    static_assert(PER * STEP == I8_KT, "tile shape");
    T reg[PER][4];
    int kw_first, n_local;
    bool valid;

    EDGERT_FN void place(i32 n_block) {
        n_local = threadIdx.x % G::BN;
        kw_first = threadIdx.x / G::BN;
        valid = n_block + n_local < G::N;
    }
    EDGERT_FN void store(u32* smem) const {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            u32 word = 0;
#pragma unroll
            for (int e = 0; e < 4; ++e) word |= I8Bits<G, T>::of(reg[i][e]) << (8 * e);
            smem[(kw_first + i * STEP) * (G::BN + 8) + n_local] = word;
        }
    }
};

// Convolution: column n = output pixel over the batch, k = (channel, ky, kx) through the table {offset, dy, dx}.
template <class G, class T>
struct I8Im2col : I8BBase<G, T> {
    using I8BBase<G, T>::reg; using I8BBase<G, T>::kw_first; using I8BBase<G, T>::valid;
    const T* base;
    const i32* tab;
    i32 iy0, ix0;

    EDGERT_FN void init(const T* x, const i32* ktab, i32 n_block, i32 group) {
        this->place(n_block);
        const i32 n = valid ? n_block + this->n_local : 0;
        const i32 img = n / G::OHW, pix = n % G::OHW;
        iy0 = (pix / G::OW) * G::SH - G::PH;
        ix0 = (pix % G::OW) * G::SW - G::PW;
        base = x + img * G::IN_IMG + i64(group) * G::GROUP_IN + i64(iy0) * G::W + ix0;
        tab = ktab;
    }
    EDGERT_FN void fetch(i32 kw0) {
#pragma unroll
        for (int i = 0; i < this->PER; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const i32 k = (kw0 + kw_first + i * this->STEP) * 4 + e;
                T v = zero_of<T>();
                if (valid && k < G::K) {
                    const i32* entry = tab + 4 * k;
                    const i32 iy = iy0 + __ldg(entry + 1), ix = ix0 + __ldg(entry + 2);
                    if (u32(iy) < u32(G::H) && u32(ix) < u32(G::W)) v = base[__ldg(entry)];
                }
                reg[i][e] = v;
            }
    }
};

// Convolution with k ordered (ky, kx, channel) and channels per group a multiple of 32 (the weight words are
// permuted to match at build time): a k-tile is 32 channels of one tap, so a thread checks its pixel's
// bounds once per tile and reads the channels at a fixed stride, no table.
template <class G, class T>
struct I8Tap : I8BBase<G, T> {
    using I8BBase<G, T>::reg; using I8BBase<G, T>::kw_first; using I8BBase<G, T>::valid;
    const T* base;
    i32 iy0, ix0;

    EDGERT_FN void init(const T* x, const i32*, i32 n_block, i32 group) {
        this->place(n_block);
        const i32 n = valid ? n_block + this->n_local : 0;
        const i32 img = n / G::OHW, pix = n % G::OHW;
        iy0 = (pix / G::OW) * G::SH - G::PH;
        ix0 = (pix % G::OW) * G::SW - G::PW;
        base = x + img * G::IN_IMG + i64(group) * G::GROUP_IN + i64(iy0) * G::W + ix0 + kw_first * 4 * G::PLANE;
    }
    EDGERT_FN void fetch(i32 kw0) {
        const i32 k0 = kw0 * 4, tap = k0 / G::C, c0 = k0 - tap * G::C, ky = tap / G::KX, kx = tap - ky * G::KX;
        const i32 dy = ky * G::DH, dx = kx * G::DW;
        const bool ok = valid && u32(iy0 + dy) < u32(G::H) && u32(ix0 + dx) < u32(G::W);
        const T* src = base + i64(c0) * G::PLANE + dy * G::W + dx;
#pragma unroll
        for (int i = 0; i < this->PER; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) reg[i][e] = ok ? src[i64(i * this->STEP * 4 + e) * G::PLANE] : zero_of<T>();
    }
};

// Matrix product (computed transposed: columns are the rows of the activations):
// B(k, n) = x[(n / ROWS) * BATCH_STRIDE + (n % ROWS) * ROW_STRIDE + k * K_STRIDE]; VEC: four k in one load.
template <class G, class T>
struct I8Rows : I8BBase<G, T> {
    using I8BBase<G, T>::reg; using I8BBase<G, T>::kw_first; using I8BBase<G, T>::valid;
    const T* base;

    EDGERT_FN void init(const T* x, const i32*, i32 n_block, i32) {
        this->place(n_block);
        const i64 n = valid ? n_block + this->n_local : 0;
        base = x + (n / G::ROWS) * G::BATCH_STRIDE + (n % G::ROWS) * G::ROW_STRIDE;
    }
    EDGERT_FN void fetch(i32 kw0) {
#pragma unroll
        for (int i = 0; i < this->PER; ++i) {
            const i32 k0 = (kw0 + kw_first + i * this->STEP) * 4;
            if constexpr (G::VEC) {   // float32 rows, 16-byte aligned
                if (valid && k0 < G::K) {
                    const I8Floats v = *reinterpret_cast<const I8Floats*>(base + k0);
#pragma unroll
                    for (int e = 0; e < 4; ++e) reg[i][e] = v.v[e];
                    continue;
                }
            }
#pragma unroll
            for (int e = 0; e < 4; ++e)
                reg[i][e] = valid && k0 + e < G::K ? base[i64(k0 + e) * G::K_STRIDE] : zero_of<T>();
        }
    }
};

// -- math: dp4a (4x4 outputs per thread) and tensor cores (32x32 per warp) -----------------------------------
template <class G, class E, class O>
EDGERT_FN void i8_store(O* out, const I8Args& e, i32 group, i32 m, i32 n, i32 acc) {
    if (m >= G::M || n >= G::N) return;
    const i32 channel = group * G::M + m;
    const i64 flat = G::offset(channel, n);
    out[flat] = from_compute<O>(E::apply(acc, flat, channel, e));
}

template <class G>
struct I8Dp4a {
    static_assert(G::THREADS == G::BM * G::BN / 16, "4x4 outputs per thread");
    static constexpr int ACC = 16;
    i32 acc[4][4];
    int tx, ty;

    EDGERT_FN void zero() {
        tx = threadIdx.x % (G::BN / 4);
        ty = threadIdx.x / (G::BN / 4);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = 0;
    }
    EDGERT_FN void compute(const u32* as, const u32* bs) {
#pragma unroll
        for (int kw = 0; kw < I8_KT; ++kw) {
            const I8Words a = *reinterpret_cast<const I8Words*>(as + kw * (G::BM + 8) + ty * 4);
            const I8Words b = *reinterpret_cast<const I8Words*>(bs + kw * (G::BN + 8) + tx * 4);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = i8_dp4a(a.w[i], b.w[j], acc[i][j]);
        }
    }
    template <class E, class O>
    EDGERT_FN void finish(O* out, const I8Args& e, i32 group, i32 m_block, i32 n_block) const {
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
                i8_store<G, E>(out, e, group, m_block + ty * 4 + i, n_block + tx * 4 + j, acc[i][j]);
    }
};

template <class G>
struct I8Mma {
    static constexpr int WM = G::BM / 32;
    static_assert(G::THREADS == (G::BM / 32) * (G::BN / 32) * 32, "one warp per 32x32 outputs");
    static constexpr int ACC = 32;
    i32 acc[2][4][4];
    int wm, wn, g, t;

    EDGERT_FN void zero() {
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        wm = warp % WM; wn = warp / WM; g = lane / 4; t = lane % 4;
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int c = 0; c < 4; ++c) acc[i][j][c] = 0;
    }
    EDGERT_FN void compute(const u32* as, const u32* bs) {
        constexpr int LDA = G::BM + 8, LDB = G::BN + 8;
        u32 af[2][4], bf[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const u32* col = as + wm * 32 + i * 16 + g;
            af[i][0] = col[t * LDA];
            af[i][1] = col[t * LDA + 8];
            af[i][2] = col[(4 + t) * LDA];
            af[i][3] = col[(4 + t) * LDA + 8];
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const u32* col = bs + wn * 32 + j * 8 + g;
            bf[j][0] = col[t * LDB];
            bf[j][1] = col[(4 + t) * LDB];
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) i8_mma_16832(acc[i][j], af[i], bf[j]);
    }
    template <class E, class O>
    EDGERT_FN void finish(O* out, const I8Args& e, i32 group, i32 m_block, i32 n_block) const {
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int c = 0; c < 4; ++c)
                    i8_store<G, E>(out, e, group, m_block + wm * 32 + i * 16 + g + (c >= 2 ? 8 : 0),
                                   n_block + wn * 32 + j * 8 + 2 * t + (c & 1), acc[i][j][c]);
    }
};

// -- split-K ------------------------------------------------------------------------------------------------
// Every split block of an output tile leaves its int32 partial sums in the workspace, [tile][split][thread][ACC]
// (each thread's contiguous: 16-byte stores and loads); the last block to arrive (a counter per tile, reset by
// that block) adds them up and runs the epilogue. Integer sums are exact in any order (MAX_K bounds them), so
// the result is the one a single block computes.
template <class G, int ACC>
EDGERT_FN bool i8_split_sum(i32* acc, i32* ws, u32* counters, i64 tile, i32 split) {
    static_assert(ACC % 4 == 0, "16-byte chunks");
    float4* mine = reinterpret_cast<float4*>(ws + ((tile * G::SPLITS + split) * G::THREADS + threadIdx.x) * ACC);
#pragma unroll
    for (int q = 0; q < ACC / 4; ++q) {
        float4 v;
        v.x = __uint_as_float(u32(acc[4 * q])); v.y = __uint_as_float(u32(acc[4 * q + 1]));
        v.z = __uint_as_float(u32(acc[4 * q + 2])); v.w = __uint_as_float(u32(acc[4 * q + 3]));
        mine[q] = v;
    }
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counters + tile, 1u) == u32(G::SPLITS - 1);
    __syncthreads();
    if (!last) return false;
    __threadfence();
#pragma unroll
    for (int i = 0; i < ACC; ++i) acc[i] = 0;
    for (int z = 0; z < G::SPLITS; ++z) {
        const float4* part = reinterpret_cast<const float4*>(ws + ((tile * G::SPLITS + z) * G::THREADS + threadIdx.x) * ACC);
#pragma unroll
        for (int q = 0; q < ACC / 4; ++q) {
            const float4 v = __ldcg(part + q);
            acc[4 * q] += i32(__float_as_uint(v.x)); acc[4 * q + 1] += i32(__float_as_uint(v.y));
            acc[4 * q + 2] += i32(__float_as_uint(v.z)); acc[4 * q + 3] += i32(__float_as_uint(v.w));
        }
    }
    if (threadIdx.x == 0) counters[tile] = 0u;
    return true;
}

// -- the GEMM: grid (N tiles, M tiles, groups * SPLITS) -----------------------------------------------------
// Two shared buffers and two register sets per loader: while tile t computes, the loads of tiles t + 1 (stored
// at the end of the step) and t + 2 (issued at its start) are in flight.
template <class G, class Math, class BLoad, class E, class T, class O>
EDGERT_FN void i8_gemm(const u32* a, const T* x, O* out, const i32* ktab, i32* ws, u32* counters, const I8Args& e) {
    __shared__ __align__(16) u32 As[2][I8_KT * (G::BM + 8)];
    __shared__ __align__(16) u32 Bs[2][I8_KT * (G::BN + 8)];
    const i32 group = blockIdx.z / G::SPLITS, split = blockIdx.z % G::SPLITS;
    const i32 m_block = blockIdx.y * G::BM, n_block = blockIdx.x * G::BN;
    I8ALoader<G> al[2];
    BLoad bl[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        al[r].a = a + i64(group) * G::KW * G::MP + m_block;
        bl[r].init(x, ktab, n_block, group);
    }
    Math math;
    math.zero();
    constexpr int SPLIT_TILES = (G::KW / I8_KT + G::SPLITS - 1) / G::SPLITS;
    const i32 first = split * SPLIT_TILES;
    const i32 rest = G::KW / I8_KT - first;
    const i32 tiles = rest < SPLIT_TILES ? (rest > 0 ? rest : 0) : SPLIT_TILES;
#pragma unroll
    for (int r = 0; r < 2; ++r)
        if (r < tiles) {
            al[r].fetch((first + r) * I8_KT);
            bl[r].fetch((first + r) * I8_KT);
        }
    if (tiles > 0) {
        al[0].store(As[0]);
        bl[0].store(Bs[0]);
    }
    __syncthreads();
    for (int t0 = 0; t0 < tiles; t0 += 2) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int t = t0 + r;
            if (t >= tiles) break;
            if (t + 2 < tiles) {   // register set r was stored last step: it takes tile t + 2
                al[r].fetch((first + t + 2) * I8_KT);
                bl[r].fetch((first + t + 2) * I8_KT);
            }
            math.compute(As[r], Bs[r]);
            if (t + 1 < tiles) {
                al[r ^ 1].store(As[r ^ 1]);
                bl[r ^ 1].store(Bs[r ^ 1]);
            }
            __syncthreads();
        }
    }
    if constexpr (G::SPLITS > 1) {
        const i64 tile = (i64(group) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
        if (!i8_split_sum<G, Math::ACC>(reinterpret_cast<i32*>(math.acc), ws, counters, tile, split)) return;
    }
    math.template finish<E>(out, e, group, m_block, n_block);
}
