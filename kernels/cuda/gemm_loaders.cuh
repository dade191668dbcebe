// GEMM operands: the parameter block shared by every matrix kernel, and the loaders that bring a
// tile of A (weights / left matrix) and B (right matrix, or the convolution input gathered as an
// implicit im2col) from global memory through registers into shared memory.
#pragma once

struct alignas(16) vec16 { u32 w[4]; };
EDGERT_FN vec16 vec16_zero() { vec16 v; v.w[0] = v.w[1] = v.w[2] = v.w[3] = 0u; return v; }

struct EpiArgs { const void* p[8]; };
struct EpiNone { template <class A> static EDGERT_FN A apply(A v, i64, i32, i32, const EpiArgs&) { return v; } };

struct GemmParams {
    const void* a;
    const void* b;
    void* out;
    float* ws;                 // split-K partial sums: [splits][M][N]
    u32* counters;             // split-K: blocks arrived per output tile (zero between runs)
    const i32* ktab;           // conv: per k {offset, dy, dx, 0}
    i32 M, N, K;
    i32 k_per_split;           // multiple of BK
    i64 a_sm, a_sk;            // A(m, k) = a[m * a_sm + k * a_sk]
    i64 b_sk, b_sn;            // B(k, n) = b[k * b_sk + n * b_sn] (matmul)
    i64 o_sm, o_sn;            // out(m, n) = out[m * o_sm + n * o_sn] (matmul)
    // batched matmul: blockIdx.z decomposes over up to 4 batch dims (sizes bd, innermost last)
    i32 nbatch;
    i32 bd[4];
    i64 a_bs[4], b_bs[4], o_bs[4];
    // convolution (2-D; 1-D convolutions come as H = 1)
    i32 C, H, W, OHW, OW, SH, SW, PH, PW;
    i32 KW, DH, DW;            // tap-major loader: kernel width and dilations
    i64 in_img, out_img;       // elements per image of input / output (all groups)
    EpiArgs epi;
};

// Offsets of batch z (matmul) for A, B and the output.
EDGERT_FN void batch_offsets(const GemmParams& p, i64 z, i64& a_off, i64& b_off, i64& o_off) {
    a_off = b_off = o_off = 0;
    for (int d = p.nbatch - 1; d >= 0; --d) {
        i64 i = z % p.bd[d];
        z /= p.bd[d];
        a_off += i * p.a_bs[d];
        b_off += i * p.b_bs[d];
        o_off += i * p.o_bs[d];
    }
}

// -- A loader: A(m, k) strided; VEC > 1 needs a_sk == 1, K % VEC == 0 and 16-byte aligned rows ----
// SMEM_MK: shared layout [m][k] (tensor cores) or [k][m] (FMA kernel).
template <class T, int BM, int BK, int THREADS, int VEC, bool M_FAST, bool SMEM_MK, int LD>
struct ALoader {
    static constexpr int CHUNKS = BM * BK / VEC;
    static constexpr int PER = (CHUNKS + THREADS - 1) / THREADS;
    static_assert(VEC == 1 || VEC * sizeof(T) == 16, "vector loads are 16 bytes");
    vec16 vreg[VEC > 1 ? PER : 1];
    T sreg[VEC > 1 ? 1 : PER];
    const T* a;
    i32 m0, M;
    i64 sm, sk;

    EDGERT_FN void position(int q, int& m, int& k) const {
        if (VEC == 1 && M_FAST) { m = q % BM; k = q / BM; }
        else { m = q / (BK / VEC); k = (q % (BK / VEC)) * VEC; }
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int q = threadIdx.x + i * THREADS, m, k;
            position(q, m, k);
            i32 gm = m0 + m, gk = k0 + k;
            bool ok = q < CHUNKS && gm < M && gk < kend;
            if (VEC > 1) {
                if (ok) vreg[i] = *reinterpret_cast<const vec16*>(a + gm * sm + gk);
                else vreg[i] = vec16_zero();
            } else {
                sreg[i] = ok ? a[gm * sm + gk * sk] : zero_of<T>();
            }
        }
    }
    EDGERT_FN void store(T* smem) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int q = threadIdx.x + i * THREADS, m, k;
            if (q >= CHUNKS) break;
            position(q, m, k);
            if (VEC == 1) {
                if (SMEM_MK) smem[m * LD + k] = sreg[i];
                else smem[k * LD + m] = sreg[i];
            } else if (SMEM_MK) {
                *reinterpret_cast<vec16*>(smem + m * LD + k) = vreg[i];
            } else {
                const T* e = reinterpret_cast<const T*>(&vreg[i]);
                for (int j = 0; j < VEC; ++j) smem[(k + j) * LD + m] = e[j];
            }
        }
    }
};

// -- B loaders: all write shared [k][n] ----------------------------------------------------------
// Matmul: B(k, n) strided; VEC > 1 needs b_sn == 1, N % VEC == 0 and aligned rows.
template <class T, int BK, int BN, int THREADS, int VEC, int LD>
struct BStrided {
    static constexpr int CHUNKS = BK * BN / VEC;
    static constexpr int PER = (CHUNKS + THREADS - 1) / THREADS;
    vec16 vreg[VEC > 1 ? PER : 1];
    T sreg[VEC > 1 ? 1 : PER];
    const T* b;
    i32 n0, N;
    i64 sk, sn;

    EDGERT_FN void init(const GemmParams& p, const T* base, i32 n_block) {
        b = base; n0 = n_block; N = p.N; sk = p.b_sk; sn = p.b_sn;
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int q = threadIdx.x + i * THREADS;
            int k = q / (BN / VEC), n = (q % (BN / VEC)) * VEC;
            i32 gk = k0 + k, gn = n0 + n;
            bool ok = q < CHUNKS && gk < kend && gn < N;
            if (VEC > 1) {
                if (ok) vreg[i] = *reinterpret_cast<const vec16*>(b + gk * sk + gn);
                else vreg[i] = vec16_zero();
            } else {
                sreg[i] = ok ? b[gk * sk + gn * sn] : zero_of<T>();
            }
        }
    }
    EDGERT_FN void store(T* smem) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int q = threadIdx.x + i * THREADS;
            if (q >= CHUNKS) break;
            int k = q / (BN / VEC), n = (q % (BN / VEC)) * VEC;
            if (VEC > 1) *reinterpret_cast<vec16*>(smem + k * LD + n) = vreg[i];
            else smem[k * LD + n] = sreg[i];
        }
    }
};

// Convolution, 1x1 kernel, stride 1, no padding: B(k, n) = x[img(n)][channel k][pixel(n)], read
// VEC pixels at a time (OHW % VEC == 0, so a vector never straddles two images).
template <class T, int BK, int BN, int THREADS, int VEC, int LD>
struct BPointwiseConv {
    static constexpr int COLS = BN / VEC;
    static constexpr int STEP = THREADS / COLS;
    static constexpr int PER = BK / STEP;
    static_assert(PER * STEP == BK && VEC * sizeof(T) == 16, "tile shape");
    vec16 reg[PER];
    const T* base;
    i64 plane;
    int k_first, n_local;
    bool valid;

    EDGERT_FN void init(const GemmParams& p, const T* x, i32 n_block) {
        n_local = (threadIdx.x % COLS) * VEC;
        k_first = threadIdx.x / COLS;
        i32 n = n_block + n_local;
        valid = n < p.N;
        i32 img = valid ? n / p.OHW : 0, pix = valid ? n % p.OHW : 0;
        base = x + img * p.in_img + pix;
        plane = p.OHW;
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            i32 k = k0 + k_first + i * STEP;
            if (valid && k < kend) reg[i] = *reinterpret_cast<const vec16*>(base + k * plane);
            else reg[i] = vec16_zero();
        }
    }
    EDGERT_FN void store(T* smem) {
#pragma unroll
        for (int i = 0; i < PER; ++i)
            *reinterpret_cast<vec16*>(smem + (k_first + i * STEP) * LD + n_local) = reg[i];
    }
};

// Convolution, general: one output pixel (column) per thread, gathered through the k table.
template <class T, int BK, int BN, int THREADS, int LD>
struct BIm2col {
    static constexpr int STEP = THREADS / BN;
    static constexpr int PER = BK / STEP;
    static_assert(PER * STEP == BK, "tile shape");
    T reg[PER];
    const T* base;
    const i32* tab;
    i32 iy0, ix0, H, W;
    int k_first, n_local;
    bool valid;

    EDGERT_FN void init(const GemmParams& p, const T* x, i32 n_block) {
        n_local = threadIdx.x % BN;
        k_first = threadIdx.x / BN;
        i32 n = n_block + n_local;
        valid = n < p.N;
        i32 img = valid ? n / p.OHW : 0, pix = valid ? n % p.OHW : 0;
        i32 oy = pix / p.OW, ox = pix % p.OW;
        iy0 = oy * p.SH - p.PH;
        ix0 = ox * p.SW - p.PW;
        H = p.H; W = p.W;
        base = x + img * p.in_img + i64(iy0) * W + ix0;
        tab = p.ktab;
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            i32 k = k0 + k_first + i * STEP;
            T v = zero_of<T>();
            if (valid && k < kend) {
                const i32* e = tab + 4 * k;
                i32 off = __ldg(e), iy = iy0 + __ldg(e + 1), ix = ix0 + __ldg(e + 2);
                if (u32(iy) < u32(H) && u32(ix) < u32(W)) v = base[off];
            }
            reg[i] = v;
        }
    }
    EDGERT_FN void store(T* smem) {
#pragma unroll
        for (int i = 0; i < PER; ++i) smem[(k_first + i * STEP) * LD + n_local] = reg[i];
    }
};

// Convolution with K ordered (tap, channel) and channels per group a multiple of BK (the weights
// are permuted to match at load time): a k-tile is BK channels of one tap, so a thread checks its
// pixel's bounds once per tile and walks the channels with a pointer, no table.
template <class T, int BK, int BN, int THREADS, int LD>
struct BTapMajor {
    static constexpr int STEP = THREADS / BN;
    static constexpr int PER = BK / STEP;
    static_assert(PER * STEP == BK, "tile shape");
    T reg[PER];
    const T* base;
    i64 plane;
    i32 iy0, ix0, H, W, C, KW, DH, DW;
    int k_first, n_local;
    bool valid;

    EDGERT_FN void init(const GemmParams& p, const T* x, i32 n_block) {
        n_local = threadIdx.x % BN;
        k_first = threadIdx.x / BN;
        i32 n = n_block + n_local;
        valid = n < p.N;
        i32 img = valid ? n / p.OHW : 0, pix = valid ? n % p.OHW : 0;
        i32 oy = pix / p.OW, ox = pix % p.OW;
        iy0 = oy * p.SH - p.PH;
        ix0 = ox * p.SW - p.PW;
        H = p.H; W = p.W; C = p.C; KW = p.KW; DH = p.DH; DW = p.DW;
        plane = i64(H) * W;
        base = x + img * p.in_img + i64(iy0) * W + ix0;
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) {
        const i32 tap = k0 / C, c0 = k0 - tap * C, ky = tap / KW, kx = tap - ky * KW;
        const i32 dy = ky * DH, dx = kx * DW;
        const bool ok = valid && k0 < kend && u32(iy0 + dy) < u32(H) && u32(ix0 + dx) < u32(W);
        const T* src = base + (c0 + k_first) * plane + dy * W + dx;
#pragma unroll
        for (int i = 0; i < PER; ++i) reg[i] = ok ? src[i * STEP * plane] : zero_of<T>();
    }
    EDGERT_FN void store(T* smem) {
#pragma unroll
        for (int i = 0; i < PER; ++i) smem[(k_first + i * STEP) * LD + n_local] = reg[i];
    }
};

