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

// -- a ROWS x COLS tile of a strided matrix, fetched into registers -----------------------------
// VEC > 1: 16-byte loads of VEC elements along a row (unit column stride, COLS and the row starts
// multiples of VEC). Chunk q is at (row, col) = position(q): row-major, or column-major (ROW_FAST,
// scalar loads only) so that consecutive threads read consecutive rows. The loaders below own one
// and store it to shared memory in their own layout.
template <class T, int ROWS, int COLS, int THREADS, int VEC, bool ROW_FAST>
struct StridedTile {
    static constexpr int CHUNKS = ROWS * COLS / VEC;
    static constexpr int PER = (CHUNKS + THREADS - 1) / THREADS;
    static_assert(VEC == 1 || VEC * sizeof(T) == 16, "vector loads are 16 bytes");
    vec16 vreg[VEC > 1 ? PER : 1];
    T sreg[VEC > 1 ? 1 : PER];

    EDGERT_FN static void position(int q, int& row, int& col) {
        if (VEC == 1 && ROW_FAST) { row = q % ROWS; col = q / ROWS; }
        else { row = q / (COLS / VEC); col = (q % (COLS / VEC)) * VEC; }
    }
    // rows [r0, rend) and columns [c0, cend) of the matrix at base are inside; the rest reads as zero
    EDGERT_FN void fetch(const T* base, i32 r0, i32 rend, i32 c0, i32 cend, i64 srow, i64 scol) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int q = threadIdx.x + i * THREADS, row, col;
            position(q, row, col);
            i32 gr = r0 + row, gc = c0 + col;
            bool ok = q < CHUNKS && gr < rend && gc < cend;
            if (VEC > 1) {
                if (ok) vreg[i] = *reinterpret_cast<const vec16*>(base + gr * srow + gc);
                else vreg[i] = vec16_zero();
            } else {
                sreg[i] = ok ? base[gr * srow + gc * scol] : zero_of<T>();
            }
        }
    }
    // shared[row * LD + col]: the tile as it lies in the matrix
    template <int LD>
    EDGERT_FN void store_rows(T* smem) const {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int q = threadIdx.x + i * THREADS, row, col;
            if (q >= CHUNKS) break;
            position(q, row, col);
            if (VEC > 1) *reinterpret_cast<vec16*>(smem + row * LD + col) = vreg[i];
            else smem[row * LD + col] = sreg[i];
        }
    }
};

// -- A loader: A(m, k) strided; VEC > 1 needs a_sk == 1, K % VEC == 0 and 16-byte aligned rows ----
// SMEM_MK: shared layout [m][k] (tensor cores) or [k][m] (FMA kernel).
template <class T, int BM, int BK, int THREADS, int VEC, bool M_FAST, bool SMEM_MK, int LD>
struct ALoader {
    using Tile = StridedTile<T, BM, BK, THREADS, VEC, M_FAST>;
    Tile tile;
    const T* a;
    i32 m0, M;
    i64 sm, sk;

    EDGERT_FN void init(const GemmParams& p, const T* base, i32 m_block) {
        a = base; m0 = m_block; M = p.M; sm = p.a_sm; sk = p.a_sk;
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) { tile.fetch(a, m0, M, k0, kend, sm, sk); }
    EDGERT_FN void store(T* smem) {
        if (SMEM_MK) {
            tile.template store_rows<LD>(smem);
            return;
        }
#pragma unroll
        for (int i = 0; i < Tile::PER; ++i) {   // transposed: shared [k][m]
            int q = threadIdx.x + i * THREADS, m, k;
            if (q >= Tile::CHUNKS) break;
            Tile::position(q, m, k);
            if (VEC == 1) {
                smem[k * LD + m] = tile.sreg[i];
            } else {
                const T* e = reinterpret_cast<const T*>(&tile.vreg[i]);
                for (int j = 0; j < VEC; ++j) smem[(k + j) * LD + m] = e[j];
            }
        }
    }
};

// -- B loaders: all write shared [k][n] ----------------------------------------------------------
// Matmul: B(k, n) strided; VEC > 1 needs b_sn == 1, N % VEC == 0 and aligned rows.
template <class T, int BK, int BN, int THREADS, int VEC, int LD>
struct BStrided {
    using Tile = StridedTile<T, BK, BN, THREADS, VEC, false>;
    Tile tile;
    const T* b;
    i32 n0, N;
    i64 sk, sn;

    EDGERT_FN void init(const GemmParams& p, const T* base, i32 n_block) {
        b = base; n0 = n_block; N = p.N; sk = p.b_sk; sn = p.b_sn;
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) { tile.fetch(b, k0, kend, n0, N, sk, sn); }
    EDGERT_FN void store(T* smem) { tile.template store_rows<LD>(smem); }
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

// Convolutions that gather: one output pixel (column n_local of the tile) per thread, rows k_first,
// k_first + STEP, ... of the k-tile; base points at the pixel's window origin (iy0, ix0), which may lie
// in the padding.
template <class T, int BK, int BN, int THREADS, int LD>
struct PixelColumn {
    static constexpr int STEP = THREADS / BN;
    static constexpr int PER = BK / STEP;
    static_assert(PER * STEP == BK, "tile shape");
    T reg[PER];
    const T* base;
    i32 iy0, ix0, H, W;
    int k_first, n_local;
    bool valid;

    EDGERT_FN void init_pixel(const GemmParams& p, const T* x, i32 n_block) {
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
    }
    EDGERT_FN void store(T* smem) {
#pragma unroll
        for (int i = 0; i < PER; ++i) smem[(k_first + i * STEP) * LD + n_local] = reg[i];
    }
};

// Convolution, general: each k through the k table (input offset, dy, dx of channel and tap).
template <class T, int BK, int BN, int THREADS, int LD>
struct BIm2col : PixelColumn<T, BK, BN, THREADS, LD> {
    using Column = PixelColumn<T, BK, BN, THREADS, LD>;
    using Column::PER; using Column::STEP; using Column::reg; using Column::base; using Column::iy0;
    using Column::ix0; using Column::H; using Column::W; using Column::k_first; using Column::valid;
    const i32* tab;

    EDGERT_FN void init(const GemmParams& p, const T* x, i32 n_block) {
        this->init_pixel(p, x, n_block);
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
};

// Convolution with K ordered (tap, channel) and channels per group a multiple of BK (the weights
// are permuted to match at load time): a k-tile is BK channels of one tap, so a thread checks its
// pixel's bounds once per tile and walks the channels with a pointer, no table.
template <class T, int BK, int BN, int THREADS, int LD>
struct BTapMajor : PixelColumn<T, BK, BN, THREADS, LD> {
    using Column = PixelColumn<T, BK, BN, THREADS, LD>;
    using Column::PER; using Column::STEP; using Column::reg; using Column::base; using Column::iy0;
    using Column::ix0; using Column::H; using Column::W; using Column::k_first; using Column::valid;
    i64 plane;
    i32 C, KW, DH, DW;

    EDGERT_FN void init(const GemmParams& p, const T* x, i32 n_block) {
        this->init_pixel(p, x, n_block);
        C = p.C; KW = p.KW; DH = p.DH; DW = p.DW;
        plane = i64(H) * W;
    }
    EDGERT_FN void fetch(i32 k0, i32 kend) {
        const i32 tap = k0 / C, c0 = k0 - tap * C, ky = tap / KW, kx = tap - ky * KW;
        const i32 dy = ky * DH, dx = kx * DW;
        const bool ok = valid && k0 < kend && u32(iy0 + dy) < u32(H) && u32(ix0 + dx) < u32(W);
        const T* src = base + (c0 + k_first) * plane + dy * W + dx;
#pragma unroll
        for (int i = 0; i < PER; ++i) reg[i] = ok ? src[i * STEP * plane] : zero_of<T>();
    }
};

