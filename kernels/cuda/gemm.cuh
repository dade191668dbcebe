// GEMM mainloops shared by MatrixMultiply and Convolution (implicit GEMM).
//
// C[m][n] = sum_k A(m, k) * B(k, n). Convolution: m = output channel (within a group), n = output
// pixel over the whole batch, k = (input channel, ky, kx); B is gathered from the input through a
// per-layer table of k offsets, or tap-major with weights permuted at load time (loaders in
// gemm_loaders.cuh). Tiles go global → registers →
// shared memory (two buffers, one barrier per k-tile), so the next tile's loads overlap the
// current tile's math. fp16 uses tensor cores (mma.m16n8k16 fed by ldmatrix, fp32 accumulation);
// fp32/fp64 use a register-blocked FMA kernel. Results pass through a generated epilogue functor
// (bias, activations, residual adds...); with split-K the blocks of one tile leave fp32 partial sums
// in a workspace and the last of them sums them and runs the epilogue.
#pragma once

// -- output addressing ----------------------------------------------------------------------------
// out(m, n) lives at row_offset(m) + column_offset(n); each thread computes its few rows and columns once.
template <bool CONV>
EDGERT_FN i64 column_offset(const GemmParams& p, i64 o_off, i32 n) {
    if (CONV) return i64(n / p.OHW) * p.out_img + n % p.OHW;
    return o_off + i64(n) * p.o_sn;
}
template <bool CONV>
EDGERT_FN i64 row_offset(const GemmParams& p, i32 m_global) {
    return CONV ? i64(m_global) * p.OHW : i64(m_global) * p.o_sm;
}

template <class T, class E, class Acc>
EDGERT_FN void store_result(const GemmParams& p, i64 flat, i32 m_global, i32 n, Acc v) {
    static_cast<T*>(p.out)[flat] = from_compute<T>(E::apply(v, flat, m_global, n, p.epi));
}

// Two outputs of adjacent columns. PAIR (decided at build time) says they are adjacent in memory and
// the pair is aligned, so they go out as one store of twice the width.
template <class T> struct __align__(2 * sizeof(T)) Pair { T a, b; };
template <class T, class E, bool PAIR, class Acc>
EDGERT_FN void store_two(const GemmParams& p, i64 flat0, i64 flat1, i32 m_global, i32 n, Acc v0, Acc v1) {
    const bool second = n + 1 < p.N;
    if (PAIR && second) {
        Pair<T> pair;
        pair.a = from_compute<T>(E::apply(v0, flat0, m_global, n, p.epi));
        pair.b = from_compute<T>(E::apply(v1, flat1, m_global, n + 1, p.epi));
        *reinterpret_cast<Pair<T>*>(static_cast<T*>(p.out) + flat0) = pair;
        return;
    }
    if (n < p.N) store_result<T, E>(p, flat0, m_global, n, v0);
    if (second) store_result<T, E>(p, flat1, m_global, n + 1, v1);
}

// Split-K: every split block leaves its partial tile in the workspace; the last block to finish a
// tile (a counter per tile, reset by that block) sums the partials in split order and runs the
// epilogue, so the result is deterministic and no second kernel is needed.
EDGERT_FN bool split_arrive(const GemmParams& p) {
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const u32 previous = atomicAdd(&p.counters[blockIdx.y * gridDim.x + blockIdx.x], 1u);
        last = previous == gridDim.z - 1;
    }
    __syncthreads();
    if (last) __threadfence();
    return last;
}
EDGERT_FN void split_done(const GemmParams& p) {
    if (threadIdx.x == 0) p.counters[blockIdx.y * gridDim.x + blockIdx.x] = 0u;
}

// Block position: which group / batch / split blockIdx.z stands for.
struct BlockSetup { i64 a_off, b_off, o_off; i32 m_off, kbeg, kend; };

template <bool CONV, bool SPLIT>
EDGERT_FN BlockSetup block_setup(const GemmParams& p) {
    BlockSetup s;
    s.a_off = s.b_off = s.o_off = 0;
    s.m_off = 0;
    s.kbeg = 0;
    s.kend = p.K;
    if (SPLIT) {
        s.kbeg = blockIdx.z * p.k_per_split;
        s.kend = s.kbeg + p.k_per_split < p.K ? s.kbeg + p.k_per_split : p.K;
    } else if (CONV) {  // z = group
        s.a_off = i64(blockIdx.z) * p.M * p.K;
        s.b_off = i64(blockIdx.z) * p.C * p.H * p.W;
        s.m_off = blockIdx.z * p.M;
    } else {
        batch_offsets(p, blockIdx.z, s.a_off, s.b_off, s.o_off);
    }
    return s;
}

// -- tensor-core kernel (fp16 in, fp32 accumulate) ------------------------------------------------
// Warp tile 32x32 (2 x m16, 4 x n8); block tile (32*WM) x (32*WN); BK = 32 (two k16 steps).
template <int WM, int WN, int AVEC, bool A_MFAST, class BLoad, bool CONV, bool SPLIT, class E, bool PAIR>
EDGERT_FN void gemm_mma(const GemmParams& p) {
    constexpr int BM = 32 * WM, BN = 32 * WN, BK = 32, THREADS = WM * WN * 32;
    constexpr int LDA = BK + 8, LDB = BN + 8;
    __shared__ __align__(16) half_t As[2][BM * LDA];
    __shared__ __align__(16) half_t Bs[2][BK * LDB];
    const BlockSetup s = block_setup<CONV, SPLIT>(p);
    const i32 m_block = blockIdx.y * BM, n_block = blockIdx.x * BN;
    ALoader<half_t, BM, BK, THREADS, AVEC, A_MFAST, true, LDA> al;
    al.a = static_cast<const half_t*>(p.a) + s.a_off;
    al.m0 = m_block; al.M = p.M; al.sm = p.a_sm; al.sk = p.a_sk;
    BLoad bl;
    bl.init(p, static_cast<const half_t*>(p.b) + s.b_off, n_block);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp % WM, wn = warp / WM;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    const int tiles = s.kend > s.kbeg ? (s.kend - s.kbeg + BK - 1) / BK : 0;
    if (tiles > 0) {
        al.fetch(s.kbeg, s.kend);
        bl.fetch(s.kbeg, s.kend);
        al.store(As[0]);
        bl.store(Bs[0]);
    }
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        if (t + 1 < tiles) {
            al.fetch(s.kbeg + (t + 1) * BK, s.kend);
            bl.fetch(s.kbeg + (t + 1) * BK, s.kend);
        }
        const half_t* as = As[cur];
        const half_t* bs = Bs[cur];
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            u32 af[2][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 2; ++i)
                ldmatrix_x4<false>(af[i], as + (wm * 32 + i * 16 + lane % 16) * LDA + kk + (lane / 16) * 8);
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                u32 r[4];
                ldmatrix_x4<true>(r, bs + (kk + lane % 16) * LDB + wn * 32 + j * 16 + (lane / 16) * 8);
                bf[2 * j][0] = r[0]; bf[2 * j][1] = r[1];
                bf[2 * j + 1][0] = r[2]; bf[2 * j + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma_16816(acc[i][j], af[i], bf[j]);
        }
        if (t + 1 < tiles) {
            al.store(As[cur ^ 1]);
            bl.store(Bs[cur ^ 1]);
        }
        __syncthreads();
    }
    const int g = lane / 4, tq = lane % 4;
    i64 col[4][2], row[2][2];
    i32 ns[4][2], ms[2][2];
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            ns[j][e] = n_block + wn * 32 + j * 8 + 2 * tq + e;
            col[j][e] = column_offset<CONV>(p, s.o_off, ns[j][e]);
        }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            ms[i][h] = m_block + wm * 32 + i * 16 + g + 8 * h;
            row[i][h] = row_offset<CONV>(p, s.m_off + ms[i][h]);
        }
    if (SPLIT) {
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const i32 m = ms[i][e >> 1], n = ns[j][e & 1];
                    if (m < p.M && n < p.N) p.ws[(i64(blockIdx.z) * p.M + m) * p.N + n] = acc[i][j][e];
                }
        if (!split_arrive(p)) return;
        // The last block: sum every split's partial tile in split order, all of its elements per pass.
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
        for (u32 z = 0; z < gridDim.z; ++z) {
            const float* part = p.ws + i64(z) * p.M * p.N;
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const i32 m = ms[i][e >> 1], n = ns[j][e & 1];
                        if (m < p.M && n < p.N) acc[i][j][e] += __ldcg(part + i64(m) * p.N + n);
                    }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const i32 m = ms[i][h];
                if (m >= p.M) continue;
                store_two<half_t, E, PAIR>(p, row[i][h] + col[j][0], row[i][h] + col[j][1], s.m_off + m, ns[j][0],
                                           acc[i][j][2 * h], acc[i][j][2 * h + 1]);
            }
    if (SPLIT) split_done(p);
}

// -- FMA kernel (fp32 / fp64) ---------------------------------------------------------------------
// Block tile BM x BN, each thread TM x TN; BK = 16; shared A is [k][m], B is [k][n].
template <class T, int BM, int BN, int TM, int TN, int AVEC, bool A_MFAST, class BLoad, bool CONV, bool SPLIT,
          class E, bool PAIR>
EDGERT_FN void gemm_fma(const GemmParams& p) {
    constexpr int BK = 16, THREADS = (BM / TM) * (BN / TN);
    constexpr int LDA = BM + 4, LDB = BN + 4;
    typedef typename compute_of<T>::type Acc;
    __shared__ __align__(16) T As[2][BK * LDA];
    __shared__ __align__(16) T Bs[2][BK * LDB];
    const BlockSetup s = block_setup<CONV, SPLIT>(p);
    const i32 m_block = blockIdx.y * BM, n_block = blockIdx.x * BN;
    ALoader<T, BM, BK, THREADS, AVEC, A_MFAST, false, LDA> al;
    al.a = static_cast<const T*>(p.a) + s.a_off;
    al.m0 = m_block; al.M = p.M; al.sm = p.a_sm; al.sk = p.a_sk;
    BLoad bl;
    bl.init(p, static_cast<const T*>(p.b) + s.b_off, n_block);

    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    Acc acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = Acc(0);

    const int tiles = s.kend > s.kbeg ? (s.kend - s.kbeg + BK - 1) / BK : 0;
    if (tiles > 0) {
        al.fetch(s.kbeg, s.kend);
        bl.fetch(s.kbeg, s.kend);
        al.store(As[0]);
        bl.store(Bs[0]);
    }
    __syncthreads();
    for (int t = 0; t < tiles; ++t) {
        const int cur = t & 1;
        if (t + 1 < tiles) {
            al.fetch(s.kbeg + (t + 1) * BK, s.kend);
            bl.fetch(s.kbeg + (t + 1) * BK, s.kend);
        }
        const T* as = As[cur];
        const T* bs = Bs[cur];
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            Acc av[TM], bv[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) av[i] = to_compute(as[k * LDA + ty * TM + i]);
#pragma unroll
            for (int j = 0; j < TN; ++j) bv[j] = to_compute(bs[k * LDB + tx * TN + j]);
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
        }
        if (t + 1 < tiles) {
            al.store(As[cur ^ 1]);
            bl.store(Bs[cur ^ 1]);
        }
        __syncthreads();
    }
    i64 col[TN], row[TM];
#pragma unroll
    for (int j = 0; j < TN; ++j) col[j] = column_offset<CONV>(p, s.o_off, n_block + tx * TN + j);
#pragma unroll
    for (int i = 0; i < TM; ++i) row[i] = row_offset<CONV>(p, s.m_off + m_block + ty * TM + i);
    if (SPLIT) {
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                const i32 m = m_block + ty * TM + i, n = n_block + tx * TN + j;
                if (m < p.M && n < p.N) p.ws[(i64(blockIdx.z) * p.M + m) * p.N + n] = float(acc[i][j]);
            }
        if (!split_arrive(p)) return;
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = Acc(0);
        for (u32 z = 0; z < gridDim.z; ++z) {
            const float* part = p.ws + i64(z) * p.M * p.N;
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) {
                    const i32 m = m_block + ty * TM + i, n = n_block + tx * TN + j;
                    if (m < p.M && n < p.N) acc[i][j] += Acc(__ldcg(part + i64(m) * p.N + n));
                }
        }
    }
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; j += 2) {
            const i32 m = m_block + ty * TM + i, n = n_block + tx * TN + j;
            if (m >= p.M) continue;
            store_two<T, E, PAIR>(p, row[i] + col[j], row[i] + col[j + 1], s.m_off + m, n, acc[i][j], acc[i][j + 1]);
        }
    if (SPLIT) split_done(p);
}
