// B loaders of the int8 GEMM (int8.cuh's i8_gemm): the activation side of a tile, gathered from the input and
// packed into words of four k as it goes to shared memory. Each has init(x, ktab, n_block, group),
// fetch(kw0) (global loads into registers, early, to overlap the math) and store(smem).
#pragma once

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

// Convolution with k ordered (ky, kx, channel), the CIN channels per group padded with zero weights to C, a
// multiple of 32 (the weight words are permuted and padded to match at build time): a k-tile is 32 channels
// of one tap, so a thread checks its pixel's bounds once per tile and reads the channels at a fixed stride,
// no table.
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
            for (int e = 0; e < 4; ++e) {
                const i32 c = i * this->STEP * 4 + e;
                const bool inside = G::CIN == G::C || c0 + kw_first * 4 + c < G::CIN;   // padding channels
                reg[i][e] = ok && inside ? src[i64(c) * G::PLANE] : zero_of<T>();
            }
    }
};

// Convolution 1x1, stride 1, no padding, OHW a multiple of 4: a thread owns four adjacent columns (pixels of
// one image) and reads each channel's four pixels in one load (4 bytes of codes, or 16 of floats), then
// transposes them into four words of four channels: a 16-byte store to shared memory. Channels as I8Tap
// (CIN padded to C).
template <class T> struct I8Quad;
template <> struct I8Quad<i8> {
    typedef u32 type;
    static EDGERT_FN u32 zero() { return 0u; }
    template <class G> static EDGERT_FN u32 bits(u32 v, int j) { return (v >> (8 * j)) & 0xffu; }
};
template <> struct I8Quad<float> {
    typedef float4 type;
    static EDGERT_FN float4 zero() { float4 v; v.x = v.y = v.z = v.w = 0.f; return v; }
    template <class G> static EDGERT_FN u32 bits(const float4& v, int j) {
        return I8Bits<G, float>::of(j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w);
    }
};

template <class G, class T>
struct I8Pixels4 {
    typedef I8Quad<T> Quad;
    typedef typename Quad::type V;
    static constexpr int COLS = G::BN / 4, STEP = G::THREADS / COLS, PER = I8_KT / STEP;
    static_assert(PER * STEP == I8_KT && G::OHW % 4 == 0 && G::PLANE == G::OHW, "tile shape");
    V reg[PER][4];
    const T* base;
    int kw_first, n_local;
    bool valid;

    EDGERT_FN void init(const T* x, const i32*, i32 n_block, i32 group) {
        n_local = (threadIdx.x % COLS) * 4;
        kw_first = threadIdx.x / COLS;
        const i32 n = n_block + n_local;
        valid = n < G::N;   // N and OHW are multiples of 4: the four columns are inside, in one image
        const i32 img = valid ? n / G::OHW : 0, pix = valid ? n % G::OHW : 0;
        base = x + img * G::IN_IMG + i64(group) * G::GROUP_IN + pix + i64(kw_first) * 4 * G::PLANE;
    }
    EDGERT_FN void fetch(i32 kw0) {
        const i32 c0 = kw0 * 4;
        const T* src = base + i64(c0) * G::PLANE;
#pragma unroll
        for (int i = 0; i < PER; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const i32 c = i * STEP * 4 + e;
                const bool inside = G::CIN == G::C || c0 + kw_first * 4 + c < G::CIN;   // padding channels
                reg[i][e] = valid && inside ? *reinterpret_cast<const V*>(src + i64(c) * G::PLANE) : Quad::zero();
            }
    }
    EDGERT_FN void store(u32* smem) const {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            I8Words words;
#pragma unroll
            for (int j = 0; j < 4; ++j) {   // pixel j: the bytes of channels 0..3
                u32 word = 0;
#pragma unroll
                for (int e = 0; e < 4; ++e) word |= Quad::template bits<G>(reg[i][e], j) << (8 * e);
                words.w[j] = word;
            }
            *reinterpret_cast<I8Words*>(smem + (kw_first + i * STEP) * (G::BN + 8) + n_local) = words;
        }
    }
};

// Convolution of int8 codes, stride 1 along rows, OW and W multiples of 4, k ordered as I8Tap: a thread owns
// four adjacent output pixels of one row, whose inputs under a tap are four adjacent bytes of one input row:
// the two aligned words around them (a word lies wholly inside the row or wholly outside: those read as
// zeros, the padding) are loaded per channel and shifted into place, then transposed as I8Pixels4.
template <class G, class T>
struct I8Rows4 {
    static_assert(sizeof(T) == 1, "int8 codes");
    static constexpr int COLS = G::BN / 4, STEP = G::THREADS / COLS, PER = I8_KT / STEP;
    static_assert(PER * STEP == I8_KT && G::OW % 4 == 0 && G::W % 4 == 0 && G::SW == 1, "tile shape");
    u32 lo[PER][4], hi[PER][4];
    const T* base;
    i32 oy, ox, shift;
    int kw_first, n_local;
    bool valid;

    EDGERT_FN void init(const T* x, const i32*, i32 n_block, i32 group) {
        n_local = (threadIdx.x % COLS) * 4;
        kw_first = threadIdx.x / COLS;
        const i32 n = n_block + n_local;
        valid = n < G::N;   // N, OHW and OW are multiples of 4: the four pixels are inside, in one row
        const i32 img = valid ? n / G::OHW : 0, pix = valid ? n % G::OHW : 0;
        oy = pix / G::OW;
        ox = pix % G::OW;
        base = x + img * G::IN_IMG + i64(group) * G::GROUP_IN + i64(kw_first) * 4 * G::PLANE;
    }
    EDGERT_FN void fetch(i32 kw0) {
        const i32 k0 = kw0 * 4, tap = k0 / G::C, c0 = k0 - tap * G::C, ky = tap / G::KX, kx = tap - ky * G::KX;
        const i32 iy = oy * G::SH - G::PH + ky * G::DH, first = ox - G::PW + kx * G::DW;
        const i32 aligned = first & ~3;   // floor to a word, negative columns included
        shift = 8 * (first - aligned);
        const bool row = valid && u32(iy) < u32(G::H);
        const bool ok0 = row && u32(aligned) < u32(G::W), ok1 = row && shift != 0 && u32(aligned + 4) < u32(G::W);
        const T* src = base + i64(c0) * G::PLANE + i64(iy) * G::W + aligned;
#pragma unroll
        for (int i = 0; i < PER; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const i32 c = i * STEP * 4 + e;
                const bool inside = G::CIN == G::C || c0 + kw_first * 4 + c < G::CIN;   // padding channels
                const u32* word = reinterpret_cast<const u32*>(src + i64(c) * G::PLANE);
                lo[i][e] = ok0 && inside ? word[0] : 0u;
                hi[i][e] = ok1 && inside ? word[1] : 0u;
            }
    }
    EDGERT_FN void store(u32* smem) const {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            u32 v[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) v[e] = u32(((u64(hi[i][e]) << 32) | lo[i][e]) >> shift);
            I8Words words;
#pragma unroll
            for (int j = 0; j < 4; ++j) {   // pixel j: the bytes of channels 0..3
                u32 word = 0;
#pragma unroll
                for (int e = 0; e < 4; ++e) word |= ((v[e] >> (8 * j)) & 0xffu) << (8 * e);
                words.w[j] = word;
            }
            *reinterpret_cast<I8Words*>(smem + (kw_first + i * STEP) * (G::BN + 8) + n_local) = words;
        }
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
