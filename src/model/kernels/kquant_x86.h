/* kquant_x86.h: the x86 K-quant kernels, included by kquant_avx2.c and kquant_avx512.c, each
 * compiling them for its instruction set. The includer defines:
 *   TGT, INL        function attributes (target set; INL also always_inline)
 *   KQ_NAME(f)      the name of kernel f in that file
 *   MADD_ACC(c, s, p)  c + madd(s, p) in int32 lanes: vpmaddwd + vpaddd, or one vpdpwssd
 * Not a public header; see kquant_avx2.c for what the kernels compute. */
#ifndef UHLM_KQUANT_X86_H
#define UHLM_KQUANT_X86_H

#include <immintrin.h>
#include <string.h>

#include "model/kernels/kquant.h"

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

/* Each dot_* takes one weight block and the blocks of NX activation rows (NX = 1, 2 or 4, a
 * constant after inlining): the weight-side unpacking is done once for all of them. */
#define XROWS for (int a = 0; a < NX; a++)

/* Q4_K, and Q5_K when qh is given (NULL is a constant after inlining): the fifth bit of
 * value 32j + t in 64-element chunk j is bit 2j (low nibbles) or 2j+1 (high) of qh[t]. */
INL void dot_q45(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                 const uhlm_block_q8_K *const *x, const int NX, __m256i *isum, __m256i *msum) {
    const __m128i sm = q45_scales_mins(scales);
    _Pragma("GCC unroll 4") XROWS msum[a] = q45_msum(sm, x[a]);
    const __m128i s8 = _mm_cvtepu8_epi16(sm);
    const __m256i sc16 = _mm256_set_m128i(s8, s8);
    const __m256i m4 = _mm256_set1_epi8(0x0f), b16 = _mm256_set1_epi8(16);
    const __m256i hb = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i acc[4];
    _Pragma("GCC unroll 4") XROWS acc[a] = _mm256_setzero_si256();
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i lo = _mm256_and_si256(qb, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hb, 2 * j), 4), b16));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hb, 2 * j + 1), 4), b16));
        }
        const __m256i sl = bcast_scale(sc16, 2 * j), sh = bcast_scale(sc16, 2 * j + 1);
        _Pragma("GCC unroll 4") XROWS {
            const __m256i xl = _mm256_loadu_si256((const __m256i *)(x[a]->qs + 64 * j));
            const __m256i xh = _mm256_loadu_si256((const __m256i *)(x[a]->qs + 64 * j + 32));
            const __m256i pl16 = _mm256_maddubs_epi16(lo, xl), ph16 = _mm256_maddubs_epi16(hi, xh);
            acc[a] = MADD_ACC(MADD_ACC(acc[a], sl, pl16), sh, ph16);
        }
    }
    _Pragma("GCC unroll 4") XROWS isum[a] = acc[a];
}

INL void dot_q4_K(const uhlm_block_q4_K *w, const uhlm_block_q8_K *const *x, const int NX,
                  __m256i *isum, __m256i *msum) {
    dot_q45(w->scales, w->qs, NULL, x, NX, isum, msum);
}

INL void dot_q5_K(const uhlm_block_q5_K *w, const uhlm_block_q8_K *const *x, const int NX,
                  __m256i *isum, __m256i *msum) {
    dot_q45(w->scales, w->qs, w->qh, x, NX, isum, msum);
}

/* lanes summing to: sum_k scale_k * bsum_k for 16 int8 scales */
INL __m256i scale_bsums(__m128i s16, const uhlm_block_q8_K *x) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
    return _mm256_madd_epi16(_mm256_cvtepi8_epi16(s16), bs);
}

INL void dot_q6_K(const uhlm_block_q6_K *w, const uhlm_block_q8_K *const *x, const int NX,
                  __m256i *isum, __m256i *msum) {
    const __m128i s16 = _mm_loadu_si128((const __m128i *)w->scales);
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15);
    __m256i acc[4];
    _Pragma("GCC unroll 4") XROWS acc[a] = _mm256_setzero_si256();
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
            const __m256i sc = pair_scales(s16, 4 * h + q);
            _Pragma("GCC unroll 4") XROWS {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x[a]->qs + 128 * h + 32 * q));
                acc[a] = MADD_ACC(acc[a], sc, _mm256_maddubs_epi16(u[q], xv));
            }
        }
    }
    _Pragma("GCC unroll 4") XROWS {
        isum[a] = _mm256_sub_epi32(acc[a], _mm256_slli_epi32(scale_bsums(s16, x[a]), 5));
        msum[a] = _mm256_setzero_si256();
    }
}

INL void dot_q2_K(const uhlm_block_q2_K *w, const uhlm_block_q8_K *const *x, const int NX,
                  __m256i *isum, __m256i *msum) {
    const __m128i sm = _mm_loadu_si128((const __m128i *)w->scales);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i s16 = _mm_and_si128(sm, m4), mn16 = _mm_and_si128(_mm_srli_epi16(sm, 4), m4);
    _Pragma("GCC unroll 4") XROWS msum[a] = scale_bsums(mn16, x[a]);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i acc[4];
    _Pragma("GCC unroll 4") XROWS acc[a] = _mm256_setzero_si256();
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
        _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
            const __m256i u = _mm256_and_si256(_mm256_srli_epi16(qb, 2 * s), m3);
            const __m256i sc = pair_scales(s16, 4 * h + s);
            _Pragma("GCC unroll 4") XROWS {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x[a]->qs + 128 * h + 32 * s));
                acc[a] = MADD_ACC(acc[a], sc, _mm256_maddubs_epi16(u, xv));
            }
        }
    }
    _Pragma("GCC unroll 4") XROWS isum[a] = acc[a];
}

INL void dot_q3_K(const uhlm_block_q3_K *w, const uhlm_block_q8_K *const *x, const int NX,
                  __m256i *isum, __m256i *msum) {
    uint32_t r[4];
    uhlm_kq_q3_scales(w->scales, r);
    const __m128i s16 = _mm_sub_epi8(_mm_setr_epi32((int)r[0], (int)r[1], (int)r[2], (int)r[3]),
                                     _mm_set1_epi8(32));
    const __m256i m3 = _mm256_set1_epi8(3), b4 = _mm256_set1_epi8(4);
    const __m256i hb = _mm256_loadu_si256((const __m256i *)w->hmask);
    __m256i acc[4];
    _Pragma("GCC unroll 4") XROWS acc[a] = _mm256_setzero_si256();
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * h));
        _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
            /* u = low 2 bits + 4 * high bit, in 0..7; the -4 comes off with the bsums */
            const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hb, 4 * h + s), 2), b4);
            const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 2 * s), m3), hi);
            const __m256i sc = pair_scales(s16, 4 * h + s);
            _Pragma("GCC unroll 4") XROWS {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x[a]->qs + 128 * h + 32 * s));
                acc[a] = MADD_ACC(acc[a], sc, _mm256_maddubs_epi16(u, xv));
            }
        }
    }
    _Pragma("GCC unroll 4") XROWS {
        isum[a] = _mm256_sub_epi32(acc[a], _mm256_slli_epi32(scale_bsums(s16, x[a]), 2));
        msum[a] = _mm256_setzero_si256();
    }
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

/* Two consecutive blocks b, b + 1 of one row: their reductions and float steps share vector
 * instructions ([isum0, msum0, isum1, msum1] in one register), then acc + t0 + t1 in order:
 * the same IEEE operations per block as uhlm_kq_step. In decode the per-block reduction was a
 * third of the loop; this halves it. */
INL __m128i fold_i32x8(__m256i v) {
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

INL float kq_step2_min(float acc, const __m256i *iv, const __m256i *mv, const void *dp0,
                       const void *dp1, float x0, float x1) {
    const __m128i r = _mm_hadd_epi32(_mm_hadd_epi32(fold_i32x8(iv[0]), fold_i32x8(mv[0])),
                                     _mm_hadd_epi32(fold_i32x8(iv[1]), fold_i32x8(mv[1])));
    int32_t d0, d1;
    memcpy(&d0, dp0, 4);
    memcpy(&d1, dp1, 4);
    const __m128 w = _mm_cvtph_ps(_mm_setr_epi32(d0, d1, 0, 0)); /* wd0 wm0 wd1 wm1 */
    const __m128 dm = _mm_mul_ps(_mm_setr_ps(x0, x0, x1, x1), w);
    const __m128 p = _mm_mul_ps(dm, _mm_cvtepi32_ps(r));
    const __m128 t = _mm_hsub_ps(p, p); /* d0*i0 - m0*s0, d1*i1 - m1*s1 */
    acc = acc + _mm_cvtss_f32(t);
    return acc + _mm_cvtss_f32(_mm_movehdup_ps(t));
}

INL float kq_step2_nomin(float acc, const __m256i *iv, uint16_t h0, uint16_t h1, float x0,
                         float x1) {
    __m128i r = _mm_hadd_epi32(fold_i32x8(iv[0]), fold_i32x8(iv[1]));
    r = _mm_hadd_epi32(r, r); /* i0 i1 i0 i1 */
    const __m128 wd = _mm_cvtph_ps(_mm_setr_epi16((short)h0, (short)h1, 0, 0, 0, 0, 0, 0));
    const __m128 xd = _mm_setr_ps(x0, x1, 0.0f, 0.0f);
    const __m128 d = _mm_mul_ps(xd, wd), m = _mm_mul_ps(xd, _mm_setzero_ps());
    const __m128 t = _mm_sub_ps(_mm_mul_ps(d, _mm_cvtepi32_ps(r)), _mm_mul_ps(m, _mm_setzero_ps()));
    acc = acc + _mm_cvtss_f32(t);
    return acc + _mm_cvtss_f32(_mm_movehdup_ps(t));
}

#define STEP2_MIN(acc, iv, mv, w, x) kq_step2_min(acc, iv, mv, &(w)[0].d, &(w)[1].d, (x)[0].d, (x)[1].d)
#define STEP2_NOMIN(acc, iv, mv, w, x) ((void)(mv), kq_step2_nomin(acc, iv, (w)[0].d, (w)[1].d, (x)[0].d, (x)[1].d))

#define STEP_MIN(acc, iv, mv, w, x) kq_step_min(acc, iv, mv, &(w)->d, (x)->d)
#define STEP_NOMIN(acc, iv, mv, w, x) ((void)(mv), kq_step_nomin(acc, iv, (w)->d, (x)->d))

/* One weight row against NX activation rows (x[a] points at row a's blocks), blocks in order;
 * out[a] gets what NX = 1 would give it. With one activation row (decode) blocks go in pairs
 * that share their reduction (STEP2); plain two-block unrolling with separate reductions gained
 * nothing, and walking four weight rows at once (sharing the reductions across rows) was 20%
 * slower: its sixteen live vectors spilled. */
#define KQ_ROW(NAME, BT, DOT, STEP, STEP2)                                                       \
    INL void NAME(const BT *w, const uhlm_block_q8_K *const *x, const int NX, int64_t nb,       \
                  float *out) {                                                                  \
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                 \
        int64_t b = 0;                                                                           \
        if (NX == 1)                                                                             \
            for (; b + 2 <= nb; b += 2) {                                                        \
                const uhlm_block_q8_K *x0 = x[0] + b, *x1 = x0 + 1;                              \
                __m256i iv[2], mv[2];                                                            \
                DOT(&w[b], &x0, 1, &iv[0], &mv[0]);                                              \
                DOT(&w[b + 1], &x1, 1, &iv[1], &mv[1]);                                          \
                acc[0] = STEP2(acc[0], iv, mv, &w[b], x0);                                       \
            }                                                                                    \
        for (; b < nb; b++) {                                                       \
            const uhlm_block_q8_K *xb[4];                                                        \
            __m256i iv[4], mv[4];                                                                \
            _Pragma("GCC unroll 4") XROWS xb[a] = x[a] + b;                                      \
            DOT(&w[b], xb, NX, iv, mv);                                                          \
            _Pragma("GCC unroll 4") XROWS acc[a] = STEP(acc[a], iv[a], mv[a], &w[b], xb[a]);     \
        }                                                                                        \
        _Pragma("GCC unroll 4") XROWS out[a] = acc[a];                                           \
    }

/* Weight row r against all n activation rows, four, then two, then one at a time. */
#define KQ_ALL_X(ROWFN, r)                                                                       \
    do {                                                                                         \
        const uhlm_block_q8_K *xr[4];                                                            \
        float o[4];                                                                              \
        int i = 0;                                                                               \
        for (; i + 4 <= a->n; i += 4) {                                                          \
            for (int k = 0; k < 4; k++) xr[k] = X + (size_t)(i + k) * (size_t)nb;                \
            ROWFN(W + (r) * nb, xr, 4, nb, o);                                                   \
            for (int k = 0; k < 4; k++) a->Y[(size_t)(i + k) * (size_t)rows + (size_t)(r)] = o[k]; \
        }                                                                                        \
        for (; i + 2 <= a->n; i += 2) {                                                          \
            for (int k = 0; k < 2; k++) xr[k] = X + (size_t)(i + k) * (size_t)nb;                \
            ROWFN(W + (r) * nb, xr, 2, nb, o);                                                   \
            for (int k = 0; k < 2; k++) a->Y[(size_t)(i + k) * (size_t)rows + (size_t)(r)] = o[k]; \
        }                                                                                        \
        for (; i < a->n; i++) {                                                                  \
            xr[0] = X + (size_t)i * (size_t)nb;                                                  \
            ROWFN(W + (r) * nb, xr, 1, nb, o);                                                   \
            a->Y[(size_t)i * (size_t)rows + (size_t)(r)] = o[0];                                 \
        }                                                                                        \
    } while (0)

/* Weight rows one after another (one sequential weight stream); a row's blocks stay in L1
 * while the activations stream past them, four rows at a time. Every output element is the
 * same sequence of operations whatever its neighbours, so tiles, threads and batch positions
 * do not change it. */
#define KQ_KERNEL(NAME, ROWFN, BT)                                                               \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
        const int64_t rows = a->W->rows, nb = a->W->cols / UHLM_QK_K;                            \
        const BT *W = a->W->data;                                                                \
        const uhlm_block_q8_K *X = a->xk;                                                        \
        int64_t r1 = t1 * UHLM_MM_TILE;                                                          \
        if (r1 > rows) r1 = rows;                                                                \
        for (int64_t r = t0 * UHLM_MM_TILE; r < r1; r++) KQ_ALL_X(ROWFN, r);                     \
    }

KQ_ROW(row_q2_K, uhlm_block_q2_K, dot_q2_K, STEP_MIN, STEP2_MIN)
KQ_ROW(row_q3_K, uhlm_block_q3_K, dot_q3_K, STEP_NOMIN, STEP2_NOMIN)
KQ_ROW(row_q4_K, uhlm_block_q4_K, dot_q4_K, STEP_MIN, STEP2_MIN)
KQ_ROW(row_q5_K, uhlm_block_q5_K, dot_q5_K, STEP_MIN, STEP2_MIN)
KQ_ROW(row_q6_K, uhlm_block_q6_K, dot_q6_K, STEP_NOMIN, STEP2_NOMIN)

KQ_KERNEL(KQ_NAME(mm_q2_K), row_q2_K, uhlm_block_q2_K)
KQ_KERNEL(KQ_NAME(mm_q3_K), row_q3_K, uhlm_block_q3_K)
KQ_KERNEL(KQ_NAME(mm_q4_K), row_q4_K, uhlm_block_q4_K)
KQ_KERNEL(KQ_NAME(mm_q5_K), row_q5_K, uhlm_block_q5_K)
KQ_KERNEL(KQ_NAME(mm_q6_K), row_q6_K, uhlm_block_q6_K)


#endif
