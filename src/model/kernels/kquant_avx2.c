/* kquant_avx2.c: AVX2 K-quant matmul kernels. They produce exactly the scalar kernels' bits:
 * per weight block they gather the exact integer sums of kquant.h (maddubs of unsigned
 * weight values with the int8 activations, madd with the sub-block scales, integer lanes
 * reduced to one int32) and then take the same float step (uhlm_kq_step).
 *
 * Value offsets (Q3_K's -4, Q6_K's -32) are not applied per element: the unsigned values go
 * into maddubs and offset * sum(scale_k * bsum_k) is taken off once per block, as llama.cpp
 * does. Functions carry target attributes (see quant_avx2.c). */
#include "model/kernels/kquant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* Scales of 16-element sub-blocks 2v and 2v+1 (int8 in s16) as int16 for the 16 madd lanes of
 * a 32-value vector: lanes 0-7 take 2v, lanes 8-15 take 2v+1. */
INL __m256i pair_scales(__m128i s16, int v) {
    const __m128i sh = _mm_setr_epi8((char)(2 * v), (char)(2 * v), (char)(2 * v), (char)(2 * v),
                                     (char)(2 * v), (char)(2 * v), (char)(2 * v), (char)(2 * v),
                                     (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1),
                                     (char)(2 * v + 1), (char)(2 * v + 1), (char)(2 * v + 1),
                                     (char)(2 * v + 1), (char)(2 * v + 1));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s16, sh));
}

/* ---------------------------------------------------------------- per-block integer sums */

/* Q4_K / Q5_K: the 8 scales and 8 mins of the 12 packed bytes, as 16 uint8 (ggml's utmp). */
INL __m128i q45_scales_mins(const uint8_t *s12) {
    /* three separate words: a 12-byte copy into an array went through the stack, and the
     * store-forwarding stall that cost showed in the decode loop (~12%) */
    uint32_t u0, u1, u2;
    memcpy(&u0, s12, 4);
    memcpy(&u1, s12 + 4, 4);
    memcpy(&u2, s12 + 8, 4);
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    const uint32_t r3 = ((u2 >> 4) & kmask2) | (((u1 >> 6) & kmask3) << 4);
    const uint32_t r2 = u1 & kmask1;
    const uint32_t r1 = (u2 & kmask2) | (((u0 >> 6) & kmask3) << 4);
    const uint32_t r0 = u0 & kmask1;
    return _mm_setr_epi32((int)r0, (int)r1, (int)r2, (int)r3);
}

/* lanes summing to: sum over sub-blocks of min_j * (bsum_{2j} + bsum_{2j+1}) */
INL __m256i q45_msum(__m128i sm, const uhlm_block_q8_K *x) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
    const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    const __m128i mins = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
    return _mm256_zextsi128_si256(_mm_madd_epi16(mins, q8s));
}

/* scale j as int16 in every lane */
INL __m256i bcast_scale(__m256i sc16, int j) {
    const __m256i sh = _mm256_set1_epi16((short)(0x0100 * (2 * j + 1) + 2 * j));
    return _mm256_shuffle_epi8(sc16, sh);
}

INL void dot_q4_K(const uhlm_block_q4_K *w, const uhlm_block_q8_K *x, __m256i *isum, __m256i *msum) {
    const __m128i sm = q45_scales_mins(w->scales);
    *msum = q45_msum(sm, x);
    const __m128i s8 = _mm_cvtepu8_epi16(sm);
    const __m256i sc16 = _mm256_set_m128i(s8, s8);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i acc = _mm256_setzero_si256();
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * j));
        const __m256i lo = _mm256_and_si256(qb, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
        const __m256i xl = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * j));
        const __m256i xh = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * j + 32));
        const __m256i pl = _mm256_madd_epi16(bcast_scale(sc16, 2 * j), _mm256_maddubs_epi16(lo, xl));
        const __m256i ph = _mm256_madd_epi16(bcast_scale(sc16, 2 * j + 1), _mm256_maddubs_epi16(hi, xh));
        acc = _mm256_add_epi32(acc, _mm256_add_epi32(pl, ph));
    }
    *isum = acc;
}

INL void dot_q5_K(const uhlm_block_q5_K *w, const uhlm_block_q8_K *x, __m256i *isum, __m256i *msum) {
    const __m128i sm = q45_scales_mins(w->scales);
    *msum = q45_msum(sm, x);
    const __m128i s8 = _mm_cvtepu8_epi16(sm);
    const __m256i sc16 = _mm256_set_m128i(s8, s8);
    const __m256i m4 = _mm256_set1_epi8(0x0f), b16 = _mm256_set1_epi8(16);
    const __m256i hb = _mm256_loadu_si256((const __m256i *)w->qh);
    __m256i acc = _mm256_setzero_si256();
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * j));
        /* bit 2j (low nibbles) and 2j+1 (high nibbles) of qh, moved to bit 4 */
        const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hb, 2 * j), 4), b16);
        const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hb, 2 * j + 1), 4), b16);
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(qb, m4), h0);
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), h1);
        const __m256i xl = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * j));
        const __m256i xh = _mm256_loadu_si256((const __m256i *)(x->qs + 64 * j + 32));
        const __m256i pl = _mm256_madd_epi16(bcast_scale(sc16, 2 * j), _mm256_maddubs_epi16(lo, xl));
        const __m256i ph = _mm256_madd_epi16(bcast_scale(sc16, 2 * j + 1), _mm256_maddubs_epi16(hi, xh));
        acc = _mm256_add_epi32(acc, _mm256_add_epi32(pl, ph));
    }
    *isum = acc;
}

/* lanes summing to: sum_k scale_k * bsum_k for 16 int8 scales */
INL __m256i scale_bsums(__m128i s16, const uhlm_block_q8_K *x) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
    return _mm256_madd_epi16(_mm256_cvtepi8_epi16(s16), bs);
}

INL void dot_q6_K(const uhlm_block_q6_K *w, const uhlm_block_q8_K *x, __m256i *isum, __m256i *msum) {
    const __m128i s16 = _mm_loadu_si128((const __m128i *)w->scales);
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15);
    __m256i acc = _mm256_setzero_si256();
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
        __m256i u[4];
        u[0] = _mm256_or_si256(_mm256_and_si256(l0, m15), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
        u[1] = _mm256_or_si256(_mm256_and_si256(l1, m15),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
        u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m15),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
        u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m15),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 128 * h + 32 * q));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pair_scales(s16, 4 * h + q),
                                                          _mm256_maddubs_epi16(u[q], xv)));
        }
    }
    *isum = _mm256_sub_epi32(acc, _mm256_slli_epi32(scale_bsums(s16, x), 5));
    *msum = _mm256_setzero_si256();
}

INL void dot_q2_K(const uhlm_block_q2_K *w, const uhlm_block_q8_K *x, __m256i *isum, __m256i *msum) {
    const __m128i sm = _mm_loadu_si128((const __m128i *)w->scales);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i s16 = _mm_and_si128(sm, m4);
    *msum = scale_bsums(_mm_and_si128(_mm_srli_epi16(sm, 4), m4), x);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i acc = _mm256_setzero_si256();
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
        _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
            const __m256i u = _mm256_and_si256(_mm256_srli_epi16(qb, 2 * s), m3);
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 128 * h + 32 * s));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pair_scales(s16, 4 * h + s),
                                                          _mm256_maddubs_epi16(u, xv)));
        }
    }
    *isum = acc;
}

INL void dot_q3_K(const uhlm_block_q3_K *w, const uhlm_block_q8_K *x, __m256i *isum, __m256i *msum) {
    uint32_t a0, a1, tmp;
    memcpy(&a0, w->scales, 4);
    memcpy(&a1, w->scales + 4, 4);
    memcpy(&tmp, w->scales + 8, 4);
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    const uint32_t r2 = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    const uint32_t r3 = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    const uint32_t r0 = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4);
    const uint32_t r1 = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4);
    const __m128i s16 = _mm_sub_epi8(_mm_setr_epi32((int)r0, (int)r1, (int)r2, (int)r3),
                                     _mm_set1_epi8(32));
    const __m256i m3 = _mm256_set1_epi8(3), b4 = _mm256_set1_epi8(4);
    const __m256i hb = _mm256_loadu_si256((const __m256i *)w->hmask);
    __m256i acc = _mm256_setzero_si256();
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
        _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
            /* u = low 2 bits + 4 * high bit, in 0..7; the -4 comes off with the bsums */
            const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hb, 4 * h + s), 2), b4);
            const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 2 * s), m3), hi);
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 128 * h + 32 * s));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pair_scales(s16, 4 * h + s),
                                                          _mm256_maddubs_epi16(u, xv)));
        }
    }
    *isum = _mm256_sub_epi32(acc, _mm256_slli_epi32(scale_bsums(s16, x), 2));
    *msum = _mm256_setzero_si256();
}

/* ---------------------------------------------------------------- tile walks */

/* uhlm_kq_step for one block from its integer lanes, in registers: isum folded to four lanes
 * and paired with msum's four, reduced together to [isum, msum]; [d, m] = xd * [wd, wm] from
 * the adjacent fp16 pair (d, dmin); then the same IEEE steps as the scalar kernel. */
INL float kq_step_min(float acc, __m256i isum, __m256i msum, const void *dpair, float xd) {
    const __m128i i4 = _mm_add_epi32(_mm256_castsi256_si128(isum), _mm256_extracti128_si256(isum, 1));
    const __m128i m4 = _mm_add_epi32(_mm256_castsi256_si128(msum), _mm256_extracti128_si256(msum, 1));
    __m128i r = _mm_hadd_epi32(i4, m4);
    r = _mm_hadd_epi32(r, r); /* [isum, msum, isum, msum] */
    int32_t dp;
    memcpy(&dp, dpair, 4);
    const __m128 dm = _mm_mul_ps(_mm_set1_ps(xd), _mm_cvtph_ps(_mm_cvtsi32_si128(dp)));
    const __m128 p = _mm_mul_ps(dm, _mm_cvtepi32_ps(r)); /* [d * isum, m * msum] */
    return acc + _mm_cvtss_f32(_mm_sub_ss(p, _mm_movehdup_ps(p)));
}

/* The same for the types without mins: m = xd * 0 and msum = 0, as the scalar kernel has them. */
INL float kq_step_nomin(float acc, __m256i isum, uint16_t wd, float xd) {
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(isum), _mm256_extracti128_si256(isum, 1));
    r = _mm_hadd_epi32(r, r);
    r = _mm_hadd_epi32(r, r);
    const float d = xd * _cvtsh_ss(wd), m = xd * 0.0f;
    return acc + (d * (float)_mm_cvtsi128_si32(r) - m * 0.0f);
}

#define STEP_MIN(acc, iv, mv, w, x) kq_step_min(acc, iv, mv, &(w)->d, (x)->d)
#define STEP_NOMIN(acc, iv, mv, w, x) ((void)(mv), kq_step_nomin(acc, iv, (w)->d, (x)->d))

/* One weight row against one activation row, blocks in order. (Unrolling two blocks per
 * step gained nothing measurable and pushed the accumulator out of its register.) */
#define KQ_ROW(NAME, BT, DOT, STEP)                                                              \
    INL float NAME(const BT *w, const uhlm_block_q8_K *x, int64_t nb) {                          \
        float acc = 0.0f;                                                                        \
        for (int64_t b = 0; b < nb; b++) {                                                       \
            __m256i i0, m0;                                                                      \
            DOT(&w[b], &x[b], &i0, &m0);                                                         \
            acc = STEP(acc, i0, m0, &w[b], &x[b]);                                               \
        }                                                                                        \
        return acc;                                                                              \
    }

/* Row by row below UHLM_MM_ROWWISE_N activation rows (one sequential weight stream); above,
 * each activation row against the tile's rows in turn, so the tile stays in L1 while the
 * activations stream. Every output element is the same KQ_ROW call either way. */
#define KQ_KERNEL(NAME, ROWFN, BT)                                                               \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
        const int64_t rows = a->W->rows, nb = a->W->cols / UHLM_QK_K;                            \
        const BT *W = a->W->data;                                                                \
        const uhlm_block_q8_K *X = a->xk;                                                        \
        int64_t r1 = t1 * UHLM_MM_TILE;                                                          \
        if (r1 > rows) r1 = rows;                                                                \
        if (a->n < UHLM_MM_ROWWISE_N) {                                                          \
            for (int64_t r = t0 * UHLM_MM_TILE; r < r1; r++)                                     \
                for (int i = 0; i < a->n; i++)                                                   \
                    a->Y[(size_t)i * (size_t)rows + (size_t)r] =                                 \
                        ROWFN(W + r * nb, X + (size_t)i * (size_t)nb, nb);                       \
            return;                                                                              \
        }                                                                                        \
        for (int64_t t = t0; t < t1; t++) {                                                      \
            const int64_t rb = t * UHLM_MM_TILE, re = rb + UHLM_MM_TILE < r1 ? rb + UHLM_MM_TILE : r1; \
            for (int i = 0; i < a->n; i++)                                                       \
                for (int64_t r = rb; r < re; r++)                                                \
                    a->Y[(size_t)i * (size_t)rows + (size_t)r] =                                 \
                        ROWFN(W + r * nb, X + (size_t)i * (size_t)nb, nb);                       \
        }                                                                                        \
    }

KQ_ROW(row_q2_K, uhlm_block_q2_K, dot_q2_K, STEP_MIN)
KQ_ROW(row_q3_K, uhlm_block_q3_K, dot_q3_K, STEP_NOMIN)
KQ_ROW(row_q4_K, uhlm_block_q4_K, dot_q4_K, STEP_MIN)
KQ_ROW(row_q5_K, uhlm_block_q5_K, dot_q5_K, STEP_MIN)
KQ_ROW(row_q6_K, uhlm_block_q6_K, dot_q6_K, STEP_NOMIN)

KQ_KERNEL(mm_q2_K_avx2, row_q2_K, uhlm_block_q2_K)
KQ_KERNEL(mm_q3_K_avx2, row_q3_K, uhlm_block_q3_K)
KQ_KERNEL(mm_q4_K_avx2, row_q4_K, uhlm_block_q4_K)
KQ_KERNEL(mm_q5_K_avx2, row_q5_K, uhlm_block_q5_K)
KQ_KERNEL(mm_q6_K_avx2, row_q6_K, uhlm_block_q6_K)

void uhlm_kernels_kquant_avx2(uhlm_kernels *k) {
    k->q2_k = mm_q2_K_avx2;
    k->q3_k = mm_q3_K_avx2;
    k->q4_k = mm_q4_K_avx2;
    k->q5_k = mm_q5_K_avx2;
    k->q6_k = mm_q6_K_avx2;
}

#else

void uhlm_kernels_kquant_avx2(uhlm_kernels *k) { (void)k; }

#endif
