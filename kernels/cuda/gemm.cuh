// GEMM mainloops shared by MatrixMultiply and Convolution (implicit GEMM).
//
// C[m][n] = sum_k A(m, k) * B(k, n). Convolution: m = output channel (within a group), n = output
// pixel over the whole batch, k = (input channel, ky, kx); B is gathered from the input through a
// per-layer table of k offsets, or tap-major with weights permuted at load time (loaders in
// gemm_loaders.cuh). Tiles go global → registers → shared memory (two shared buffers, two
// register sets, one barrier per k-tile), so the loads of the next two tiles overlap the current
// tile's math. fp16 uses tensor cores (mma.m16n8k16 fed by ldmatrix, fp32 accumulation); fp32 with
// the `tf32` build option uses them too (mma.m16n8k8, inputs rounded to tf32); otherwise fp32/fp64
// use a register-blocked FMA kernel with exact arithmetic. Results pass through a generated epilogue functor
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

// Where thread threadIdx.x of this output tile keeps split z's PER partial sums: every thread's
// values are contiguous (float4 stores and loads, all of them in flight at once), tile by tile:
// workspace = [tile][split][thread][PER] floats.
template <int PER>
EDGERT_FN float4* split_slot(const GemmParams& p, u32 z, int threads) {
    const i64 tile = i64(blockIdx.y) * gridDim.x + blockIdx.x;
    return reinterpret_cast<float4*>(p.ws + ((tile * gridDim.z + z) * threads + threadIdx.x) * PER);
}

// Split-K, for a thread's PER accumulators (PER a multiple of 4, in acc[0..PER)): every block leaves its
// partial sums in the workspace; false for all but the last block of the tile, which gets back the
// sum over every split, added in split order (deterministic). AHEAD splits' partials are in flight at
// once (the main loop's registers are free by now), so the sum waits for that many fewer L2 round trips.
template <int PER, int AHEAD, class Acc>
EDGERT_FN bool split_k_sum(const GemmParams& p, int threads, Acc* acc) {
    constexpr int CHUNKS = PER / 4;
    static_assert(PER % 4 == 0, "float4 chunks");
    float4* mine = split_slot<PER>(p, blockIdx.z, threads);
#pragma unroll
    for (int q = 0; q < CHUNKS; ++q) {
        float4 v;
        v.x = float(acc[4 * q]); v.y = float(acc[4 * q + 1]); v.z = float(acc[4 * q + 2]); v.w = float(acc[4 * q + 3]);
        mine[q] = v;
    }
    if (!split_arrive(p)) return false;
#pragma unroll
    for (int i = 0; i < PER; ++i) acc[i] = Acc(0);
    for (u32 z0 = 0; z0 < gridDim.z; z0 += AHEAD) {
        float4 v[AHEAD][CHUNKS];
#pragma unroll
        for (int u = 0; u < AHEAD; ++u)
            if (z0 + u < gridDim.z) {
                const float4* part = split_slot<PER>(p, z0 + u, threads);
#pragma unroll
                for (int q = 0; q < CHUNKS; ++q) v[u][q] = __ldcg(part + q);
            }
#pragma unroll
        for (int u = 0; u < AHEAD; ++u) {
            if (z0 + u >= gridDim.z) break;
#pragma unroll
            for (int q = 0; q < CHUNKS; ++q) {
                acc[4 * q] += Acc(v[u][q].x);
                acc[4 * q + 1] += Acc(v[u][q].y);
                acc[4 * q + 2] += Acc(v[u][q].z);
                acc[4 * q + 3] += Acc(v[u][q].w);
            }
        }
    }
    return true;
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

// Both register sets of both loaders at the block's tile (every kernel keeps two, see k_loop).
template <class T, class AL, class BL>
EDGERT_FN void init_loaders(AL (&al)[2], BL (&bl)[2], const GemmParams& p, const BlockSetup& s, i32 m_block,
                            i32 n_block) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        al[r].init(p, static_cast<const T*>(p.a) + s.a_off, m_block);
        bl[r].init(p, static_cast<const T*>(p.b) + s.b_off, n_block);
    }
}

// -- the K loop shared by every GEMM kernel ------------------------------------------------------
// Two shared stages and two register sets per loader: while tile t computes from stage t % 2, the
// loads of tiles t+1 (register set (t+1) % 2, stored at the end of this step) and t+2 (set t % 2,
// issued at the start of this step) are in flight, so a tile's global latency hides behind two
// tiles of math. ``compute(as, bs)`` runs one tile from shared memory.
template <int BK, class AL, class BL, class T, class Compute>
EDGERT_FN void k_loop(AL (&al)[2], BL (&bl)[2], T* as0, T* as1, T* bs0, T* bs1, const BlockSetup& s,
                      Compute compute) {
    T* const as[2] = {as0, as1};
    T* const bs[2] = {bs0, bs1};
    const int tiles = s.kend > s.kbeg ? (s.kend - s.kbeg + BK - 1) / BK : 0;
#pragma unroll
    for (int r = 0; r < 2; ++r)
        if (r < tiles) {
            al[r].fetch(s.kbeg + r * BK, s.kend);
            bl[r].fetch(s.kbeg + r * BK, s.kend);
        }
    if (tiles > 0) {
        al[0].store(as[0]);
        bl[0].store(bs[0]);
    }
    __syncthreads();
    for (int t0 = 0; t0 < tiles; t0 += 2) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int t = t0 + r;
            if (t >= tiles) break;
            if (t + 2 < tiles) {        // register set r was stored last step: it takes tile t + 2
                al[r].fetch(s.kbeg + (t + 2) * BK, s.kend);
                bl[r].fetch(s.kbeg + (t + 2) * BK, s.kend);
            }
            compute(as[r], bs[r]);
            if (t + 1 < tiles) {
                al[r ^ 1].store(as[r ^ 1]);
                bl[r ^ 1].store(bs[r ^ 1]);
            }
            __syncthreads();
        }
    }
}

// -- tensor-core kernels: fp16 (mma.m16n8k16) and, opt-in, fp32 through tf32 (mma.m16n8k8) ---------
// One k-step of a warp's 32 x (8*NJ) tile: A fragments through ldmatrix from shared [m][k]; B from
// shared [k][n] (ldmatrix.trans for halves, plain loads for floats, conflict-free with LDB % 32 == 8).
template <class T> struct MmaOps;
template <> struct MmaOps<half_t> {
    static constexpr int KSTEP = 16;
    static constexpr int APAD = 8;     // 16-byte row padding: ldmatrix rows hit distinct banks
    template <int LDA, int LDB, int NJ>
    static EDGERT_FN void step(float acc[2][NJ][4], const half_t* as, const half_t* bs, int wm, int wn, int lane,
                               int kk) {
        u32 af[2][4], bf[NJ][2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
            ldmatrix_x4<false>(af[i], as + (wm * 32 + i * 16 + lane % 16) * LDA + kk + (lane / 16) * 8);
#pragma unroll
        for (int j = 0; j < NJ / 2; ++j) {
            u32 r[4];
            ldmatrix_x4<true>(r, bs + (kk + lane % 16) * LDB + wn * 8 * NJ + j * 16 + (lane / 16) * 8);
            bf[2 * j][0] = r[0]; bf[2 * j][1] = r[1];
            bf[2 * j + 1][0] = r[2]; bf[2 * j + 1][1] = r[3];
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < NJ; ++j) mma_16816(acc[i][j], af[i], bf[j]);
    }
};
template <> struct MmaOps<float> {
    static constexpr int KSTEP = 8;
    static constexpr int APAD = 4;
    template <int LDA, int LDB, int NJ>
    static EDGERT_FN void step(float acc[2][NJ][4], const float* as, const float* bs, int wm, int wn, int lane,
                               int kk) {
        u32 af[2][4], bf[NJ][2];
        const int g = lane / 4, t = lane % 4;
#pragma unroll
        for (int i = 0; i < 2; ++i) {   // 8x4 blocks of 32-bit values: ldmatrix sees them as 8x8 halves
            ldmatrix_x4<false>(af[i], reinterpret_cast<const half_t*>(
                as + (wm * 32 + i * 16 + lane % 16) * LDA + kk + (lane / 16) * 4));
#pragma unroll
            for (int r = 0; r < 4; ++r) af[i][r] = to_tf32(__uint_as_float(af[i][r]));
        }
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
            bf[j][0] = to_tf32(bs[(kk + t) * LDB + wn * 8 * NJ + j * 8 + g]);
            bf[j][1] = to_tf32(bs[(kk + t + 4) * LDB + wn * 8 * NJ + j * 8 + g]);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < NJ; ++j) mma_1688_tf32(acc[i][j], af[i], bf[j]);
    }
};

// Warp tile 32 x (8*NJ) (2 x m16, NJ x n8: NJ = 4, or 2 for twice the warps on a tile); block tile
// (32*WM) x (8*NJ*WN) x BK; K loop as k_loop.
template <class T, int WM, int WN, int NJ, int BK, int AVEC, bool A_MFAST, class BLoad, bool CONV, bool SPLIT,
          class E, bool PAIR>
EDGERT_FN void gemm_mma(const GemmParams& p) {
    typedef MmaOps<T> Ops;
    constexpr int BM = 32 * WM, BN = 8 * NJ * WN, THREADS = WM * WN * 32, PER = 8 * NJ;
    constexpr int LDA = BK + Ops::APAD, LDB = BN + 8;
    __shared__ __align__(16) T As[2][BM * LDA];
    __shared__ __align__(16) T Bs[2][BK * LDB];
    const BlockSetup s = block_setup<CONV, SPLIT>(p);
    const i32 m_block = blockIdx.y * BM, n_block = blockIdx.x * BN;
    ALoader<T, BM, BK, THREADS, AVEC, A_MFAST, true, LDA> al[2];
    BLoad bl[2];
    init_loaders<T>(al, bl, p, s, m_block, n_block);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp % WM, wn = warp / WM;
    float acc[2][NJ][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    k_loop<BK>(al, bl, As[0], As[1], Bs[0], Bs[1], s, [&](const T* as, const T* bs) {
#pragma unroll
        for (int kk = 0; kk < BK; kk += Ops::KSTEP) Ops::template step<LDA, LDB, NJ>(acc, as, bs, wm, wn, lane, kk);
    });
    const int g = lane / 4, tq = lane % 4;
    i64 col[NJ][2], row[2][2];
    i32 ns[NJ][2], ms[2][2];
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            ns[j][e] = n_block + wn * 8 * NJ + j * 8 + 2 * tq + e;
            col[j][e] = column_offset<CONV>(p, s.o_off, ns[j][e]);
        }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            ms[i][h] = m_block + wm * 32 + i * 16 + g + 8 * h;
            row[i][h] = row_offset<CONV>(p, s.m_off + ms[i][h]);
        }
    if (SPLIT && !split_k_sum<PER, 4>(p, THREADS, &acc[0][0][0])) return;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const i32 m = ms[i][h];
                if (m >= p.M) continue;
                store_two<T, E, PAIR>(p, row[i][h] + col[j][0], row[i][h] + col[j][1], s.m_off + m, ns[j][0],
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
    ALoader<T, BM, BK, THREADS, AVEC, A_MFAST, false, LDA> al[2];
    BLoad bl[2];
    init_loaders<T>(al, bl, p, s, m_block, n_block);

    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    Acc acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = Acc(0);

    k_loop<BK>(al, bl, As[0], As[1], Bs[0], Bs[1], s, [&](const T* as, const T* bs) {
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
    });
    i64 col[TN], row[TM];
#pragma unroll
    for (int j = 0; j < TN; ++j) col[j] = column_offset<CONV>(p, s.o_off, n_block + tx * TN + j);
#pragma unroll
    for (int i = 0; i < TM; ++i) row[i] = row_offset<CONV>(p, s.m_off + m_block + ty * TM + i);
    if (SPLIT && !split_k_sum<TM * TN, (TM * TN >= 32 ? 2 : 4)>(p, THREADS, &acc[0][0])) return;
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
