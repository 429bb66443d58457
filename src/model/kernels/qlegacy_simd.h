/* qlegacy_simd.h: the body of the SIMD kernels of Q4_1, Q5_0 and Q5_1, compiled twice, by
 * qlegacy_avx2.c (AVX2: maddubs + madd) and qlegacy_avx512.c (AVX-512 VL + VNNI: vpdpbusd).
 * The including file defines TGT and INL (target attributes), RXMAX (activation rows per weight
 * pass), dot_u(u, x) (8 int32 lanes, each the exact dot of 4 consecutive unsigned bytes u and
 * signed bytes x), bits5(qh) (32 bytes: 0x10 where bit j of the uint32 qh is set) and
 * PACKED_RUN(NAME, a, t0, t1) (nonzero when it ran the tiles another way, else 0).
 *
 * Arithmetic per output element, which every walk of every SIMD level follows, so results do
 * not depend on the level, n, tiles or threads: per block b the exact integer dot s_b of the
 * weights' values (minus 16 for Q5_0) and the activations; four chains c = b % 4 of
 * A_c = fma(float(s_b), d_w * d_x, A_c) and, for Q4_1 / Q5_1, M_c = M_c + m_w * s_x (llama.cpp's
 * min term with the Q8_1 sum s_x); the result is ((A0 + A2) + (A1 + A3)) + ((M0 + M2) +
 * (M1 + M3)). The four chains keep four blocks in flight for one activation row (decode), and
 * the row-wise walk holds them as the lanes of one xmm register per activation row: four
 * blocks' 8-lane dots reduce to [s0..s3] with two horizontal adds, then one fma covers them.
 * Weight rows are walked one at a time (a single sequential stream for the prefetcher); each
 * unpacked block is used for up to RXMAX activation rows. The scalar kernel (qlegacy.c) keeps
 * one chain in llama.cpp's order and differs by float rounding. */

#include <string.h>

INL float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes of nibble pairs -> 32 values in element order: broadcast to both halves, the upper
 * half shifted right by 4, masked. */
INL __m256i unpack4(const uint8_t *qs) {
    const __m256i hi4 = _mm256_setr_epi64x(0, 0, 4, 4);
    return _mm256_and_si256(
        _mm256_srlv_epi64(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs)), hi4),
        _mm256_set1_epi8(0x0f));
}

INL __m256i unpack_q4_1(const uhlm_block_q4_1 *b) { return unpack4(b->qs); }
INL __m256i unpack_q5_0(const uhlm_block_q5_0 *b) {
    return _mm256_or_si256(unpack4(b->qs), bits5(b->qh));
}
INL __m256i unpack_q5_1(const uhlm_block_q5_1 *b) {
    return _mm256_or_si256(unpack4(b->qs), bits5(b->qh));
}

/* The four blocks' exact dots: lanes of p0..p3 summed to [s0, s1, s2, s3]. */
INL __m128i reduce4(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* (v0 + v2) + (v1 + v3) */
INL float hsum4(__m128 v) {
    const __m128 t = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/* Four floats from p, zero past the first nv (the tail group). */
INL __m128 load4(const float *p, int nv) {
    if (nv == 4) return _mm_loadu_ps(p);
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < nv; k++) t[k] = p[k];
    return _mm_loadu_ps(t);
}

/* Four int32 from p, zero past the first nv. */
INL __m128i load4i(const int32_t *p, int nv) {
    if (nv == 4) return _mm_loadu_si128((const __m128i *)p);
    int32_t t[4] = {0, 0, 0, 0};
    for (int k = 0; k < nv; k++) t[k] = p[k];
    return _mm_loadu_si128((const __m128i *)t);
}

/* NAME##_group: blocks [b, b + nv) (nv <= 4) of weight row w against RX activation rows: lane
 * k of A[i] and M[i] is block chain k. Missing blocks add fma(0, 0, .) and 0 * 0, which
 * leave the sums unchanged (they start at +0 and so are never -0). Q5_0's offset is taken off
 * the block's exact dot as OFF times the block's activation sum (xs, from the quantizer): the
 * same integer as a second dot with a vector of OFF, one subtraction per four blocks instead
 * of a maddubs, a madd and a subtraction per block. NAME##_rows: the whole row; NAME: the tile
 * kernel. */
#define LEGACY_SIMD(NAME, BT, UNPACK, OFF, HASMIN)                                       \
    INL void NAME##_group(const BT *w, int64_t b, const int nv, const int RX,                    \
                          const int8_t *const *xq, const float *const *xd,                       \
                          const float *const *xm, const int32_t *const *xs, __m128 *A,           \
                          __m128 *M) {                                                           \
        __m256i u[4];                                                                            \
        uint16_t dh[4] = {0, 0, 0, 0}, mh[4] = {0, 0, 0, 0};                                     \
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                    \
            u[k] = _mm256_setzero_si256();                                                       \
            if (k < nv) {                                                                        \
                u[k] = UNPACK(&w[b + k]);                                                        \
                dh[k] = w[b + k].d;                                                              \
                mh[k] = w[b + k].MFIELD;                                                         \
            }                                                                                    \
        }                                                                                        \
        const __m128 dw = _mm_cvtph_ps(_mm_setr_epi16((short)dh[0], (short)dh[1], (short)dh[2],  \
                                                      (short)dh[3], 0, 0, 0, 0));                \
        const __m128 mw = _mm_cvtph_ps(_mm_setr_epi16((short)mh[0], (short)mh[1], (short)mh[2],  \
                                                      (short)mh[3], 0, 0, 0, 0));                \
        _Pragma("GCC unroll 4") for (int i = 0; i < RX; i++) {                                   \
            __m256i p[4];                                                                        \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                \
                p[k] = _mm256_setzero_si256();                                                   \
                if (k < nv) {                                                                    \
                    const __m256i x =                                                            \
                        _mm256_load_si256((const __m256i *)(xq[i] + (b + k) * UHLM_QK));         \
                    p[k] = dot_u(u[k], x);                                                       \
                }                                                                                \
            }                                                                                    \
            __m128i s = reduce4(p[0], p[1], p[2], p[3]);                                         \
            if (OFF)                                                                             \
                s = _mm_sub_epi32(s, _mm_mullo_epi32(load4i(xs[i] + b, nv), _mm_set1_epi32(OFF))); \
            A[i] = _mm_fmadd_ps(_mm_cvtepi32_ps(s), _mm_mul_ps(dw, load4(xd[i] + b, nv)), A[i]); \
            if (HASMIN) M[i] = _mm_add_ps(M[i], _mm_mul_ps(mw, load4(xm[i] + b, nv)));           \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    INL void NAME##_rows(const BT *w, int64_t nb, const uhlm_mm_args *a, int i0, const int RX,   \
                         float *out) {                                                           \
        const int8_t *xq[RXMAX];                                                                 \
        const float *xd[RXMAX], *xm[RXMAX];                                                      \
        const int32_t *xs[RXMAX];                                                                \
        __m128 A[RXMAX], M[RXMAX];                                                               \
        _Pragma("GCC unroll 4") for (int i = 0; i < RX; i++) {                                   \
            xq[i] = a->xq + (size_t)(i0 + i) * (size_t)a->W->cols;                               \
            xd[i] = a->xd + (size_t)(i0 + i) * (size_t)nb;                                       \
            xs[i] = a->xs + (size_t)(i0 + i) * (size_t)nb;                                       \
            xm[i] = HASMIN ? a->xsum + (size_t)(i0 + i) * (size_t)nb : NULL;                     \
            A[i] = M[i] = _mm_setzero_ps();                                                      \
        }                                                                                        \
        int64_t b = 0;                                                                           \
        for (; b + 4 <= nb; b += 4) NAME##_group(w, b, 4, RX, xq, xd, xm, xs, A, M);                 \
        /* a constant nv per case: no loops or branches left in the tail */                     \
        switch (nb - b) {                                                                        \
        case 1: NAME##_group(w, b, 1, RX, xq, xd, xm, xs, A, M); break;                              \
        case 2: NAME##_group(w, b, 2, RX, xq, xd, xm, xs, A, M); break;                              \
        case 3: NAME##_group(w, b, 3, RX, xq, xd, xm, xs, A, M); break;                              \
        default: break;                                                                          \
        }                                                                                        \
        _Pragma("GCC unroll 4") for (int i = 0; i < RX; i++) out[i] =                            \
            HASMIN ? hsum4(A[i]) + hsum4(M[i]) : hsum4(A[i]);                                    \
    }                                                                                            \
                                                                                                 \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
        if (PACKED_RUN(NAME, a, t0, t1)) return;                                                 \
        const int64_t rows = a->W->rows, nb = a->W->cols / UHLM_QK;                              \
        const BT *W = a->W->data;                                                                \
        const int64_t re = t1 * UHLM_MM_TILE < rows ? t1 * UHLM_MM_TILE : rows;                  \
        for (int64_t r = t0 * UHLM_MM_TILE; r < re; r++) {                                       \
            const BT *w = W + r * nb;                                                            \
            float o[RXMAX];                                                                      \
            int i = 0;                                                                           \
            for (; i + RXMAX <= a->n; i += RXMAX) {                                              \
                NAME##_rows(w, nb, a, i, RXMAX, o);                                              \
                for (int k = 0; k < RXMAX; k++) a->Y[(size_t)(i + k) * rows + r] = o[k];         \
            }                                                                                    \
            if (RXMAX > 2)                                                                       \
                for (; i + 2 <= a->n; i += 2) {                                                  \
                    NAME##_rows(w, nb, a, i, 2, o);                                              \
                    for (int k = 0; k < 2; k++) a->Y[(size_t)(i + k) * rows + r] = o[k];         \
                }                                                                                \
            for (; i < a->n; i++) {                                                              \
                NAME##_rows(w, nb, a, i, 1, o);                                                  \
                a->Y[(size_t)i * rows + r] = o[0];                                               \
            }                                                                                    \
        }                                                                                        \
    }

/* Q5_0 has no minimum; it reads d in place of the field, and HASMIN = 0 drops the product. */
#define MFIELD m
LEGACY_SIMD(mm_q4_1, uhlm_block_q4_1, unpack_q4_1, 0, 1)
LEGACY_SIMD(mm_q5_1, uhlm_block_q5_1, unpack_q5_1, 0, 1)
#undef MFIELD
#define MFIELD d
LEGACY_SIMD(mm_q5_0, uhlm_block_q5_0, unpack_q5_0, 16, 0)
#undef MFIELD
