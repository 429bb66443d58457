/* qlegacy_simd.h: the body of the SIMD kernels of Q4_1, Q5_0 and Q5_1, compiled twice, by
 * qlegacy_avx2.c (AVX2: maddubs + madd) and qlegacy_avx512.c (AVX-512 VL + VNNI: vpdpbusd).
 * The including file defines TGT and INL (target attributes), RXMAX (activation rows per weight
 * pass), dot_u(u, x) (8 int32 lanes, each the exact dot of 4 consecutive unsigned bytes u and
 * signed bytes x) and bits5(qh) (32 bytes: 0x10 where bit j of the uint32 qh is set).
 *
 * Arithmetic per output element (so both levels give identical bits, and any n, tile or
 * thread count too): per block b, the 8 integer lanes p_b = dot(q - off, x) (exact), then
 * acc[b % 4] = fma(d_w * d_x, float(p_b), acc[b % 4]); the result is
 * hsum8((acc0 + acc1) + (acc2 + acc3)) plus, for Q4_1 / Q5_1, the min term
 * (M0 + M1) + (M2 + M3) with M[b % 4] += m_w * s_x. Four block-parity accumulators keep
 * four FMA chains in flight for one activation row (decode), so the loop is bound by loading
 * and unpacking weights, not by FMA latency. Weight rows are walked one at a time (a single
 * sequential stream for the prefetcher); each unpacked block is used for up to RXMAX
 * activation rows before the next is loaded. */

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

INL float half(uint16_t h) { return _cvtsh_ss(h); }

/* One block against RX activation rows; k = b % 4 is a constant after unrolling. */
#define LEGACY_STEP(UNPACK, OFF, b, k)                                                           \
    do {                                                                                         \
        const __m256i u = UNPACK(&w[b]);                                                         \
        const float dw = half(w[b].d);                                                           \
        _Pragma("GCC unroll 4") for (int i = 0; i < RX; i++) {                                   \
            const __m256i x = _mm256_load_si256((const __m256i *)(xq[i] + (b) * UHLM_QK));       \
            __m256i p = dot_u(u, x);                                                             \
            if (OFF) p = _mm256_sub_epi32(p, dot_u(_mm256_set1_epi8(OFF), x));                   \
            acc[i][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[i][b]), _mm256_cvtepi32_ps(p),    \
                                        acc[i][k]);                                              \
        }                                                                                        \
    } while (0)

/* NAME##_rows: weight row w against activation rows [i0, i0 + RX), out[RX] without the min
 * term. NAME##_min: the min term of one activation row. NAME: the tile kernel. */
#define LEGACY_SIMD(NAME, BT, UNPACK, OFF, HASMIN)                                               \
    INL void NAME##_rows(const BT *w, int64_t nb, const uhlm_mm_args *a, int i0, const int RX,   \
                         float *out) {                                                           \
        const int8_t *xq[RXMAX];                                                                 \
        const float *xd[RXMAX];                                                                  \
        __m256 acc[RXMAX][4];                                                                    \
        _Pragma("GCC unroll 4") for (int i = 0; i < RX; i++) {                                   \
            xq[i] = a->xq + (size_t)(i0 + i) * (size_t)a->W->cols;                               \
            xd[i] = a->xd + (size_t)(i0 + i) * (size_t)nb;                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[i][k] = _mm256_setzero_ps(); \
        }                                                                                        \
        int64_t b = 0;                                                                           \
        for (; b + 4 <= nb; b += 4) {                                                            \
            LEGACY_STEP(UNPACK, OFF, b, 0);                                                      \
            LEGACY_STEP(UNPACK, OFF, b + 1, 1);                                                  \
            LEGACY_STEP(UNPACK, OFF, b + 2, 2);                                                  \
            LEGACY_STEP(UNPACK, OFF, b + 3, 3);                                                  \
        }                                                                                        \
        if (b < nb) LEGACY_STEP(UNPACK, OFF, b, 0);                                              \
        if (b + 1 < nb) LEGACY_STEP(UNPACK, OFF, b + 1, 1);                                      \
        if (b + 2 < nb) LEGACY_STEP(UNPACK, OFF, b + 2, 2);                                      \
        _Pragma("GCC unroll 4") for (int i = 0; i < RX; i++) out[i] = hsum8(                     \
            _mm256_add_ps(_mm256_add_ps(acc[i][0], acc[i][1]), _mm256_add_ps(acc[i][2], acc[i][3]))); \
    }                                                                                            \
                                                                                                 \
    INL float NAME##_min(const BT *w, const float *xm, int64_t nb) {                             \
        float m0 = 0.0f, m1 = 0.0f, m2 = 0.0f, m3 = 0.0f;                                        \
        int64_t b = 0;                                                                           \
        for (; b + 4 <= nb; b += 4) {                                                            \
            m0 += half(w[b].MFIELD) * xm[b];                                                     \
            m1 += half(w[b + 1].MFIELD) * xm[b + 1];                                             \
            m2 += half(w[b + 2].MFIELD) * xm[b + 2];                                             \
            m3 += half(w[b + 3].MFIELD) * xm[b + 3];                                             \
        }                                                                                        \
        if (b < nb) m0 += half(w[b].MFIELD) * xm[b];                                             \
        if (b + 1 < nb) m1 += half(w[b + 1].MFIELD) * xm[b + 1];                                 \
        if (b + 2 < nb) m2 += half(w[b + 2].MFIELD) * xm[b + 2];                                 \
        return (m0 + m1) + (m2 + m3);                                                            \
    }                                                                                            \
                                                                                                 \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
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
            if (HASMIN)                                                                          \
                for (i = 0; i < a->n; i++)                                                       \
                    a->Y[(size_t)i * rows + r] += NAME##_min(w, a->xsum + (size_t)i * nb, nb);   \
        }                                                                                        \
    }

/* Q5_0 has no minimum; its _min is never called, so it reads d in place of the field. */
#define MFIELD m
LEGACY_SIMD(mm_q4_1, uhlm_block_q4_1, unpack_q4_1, 0, 1)
LEGACY_SIMD(mm_q5_1, uhlm_block_q5_1, unpack_q5_1, 0, 1)
#undef MFIELD
#define MFIELD d
LEGACY_SIMD(mm_q5_0, uhlm_block_q5_0, unpack_q5_0, 16, 0)
#undef MFIELD
