/* ggml_compat_avx2.c: the dot products of ggml_compat.c with AVX2 + FMA + F16C, for speed
 * only: the same lanes, the same integer sums, the same FMAs and reduction trees as the
 * portable versions, so they return identical bits (tests/test_ggml_compat.c checks it). An
 * FMA is exactly rounded whoever computes it, so nothing here depends on the CPU beyond its
 * having the instructions. Target attributes instead of -mavx2, as in quant_avx2.c; off
 * x86-64 the portable versions are the only ones. */
#include "model/kernels/ggml_compat.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* hsum_float_8; also _mm512_reduce_add_ps of (lo, hi) is hsum8(hi + lo) */
INL float hsum8(__m256 x) {
    __m128 res = _mm256_extractf128_ps(x, 1);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    return _mm_cvtss_f32(res);
}

INL float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* four products of bytes per int32 lane: maddubs pairs, madd pairs of pairs; no int16
 * saturation for |u| <= 128, |s| <= 127 */
INL __m256 sum4_u8s8(__m256i u, __m256i s) {
    const __m256i dot = _mm256_maddubs_epi16(u, s);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot));
}

TGT float ggc_dot_q8_0_avx2(int n, const uhlm_block_q8_0 *w, const uhlm_block_q8_0 *a) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / UHLM_QK; b++) {
        const __m256 d = _mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)a[b].qs);
        const __m256 q = sum4_u8s8(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    return hsum8(acc);
}

TGT float ggc_dot_q4_1_avx2(int n, const uhlm_block_q4_1 *w, const uhlm_block_q8_1 *a) {
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    const __m256i low = _mm256_set1_epi8(0xF);
    for (int b = 0; b < n / UHLM_QK; b++) {
        summs = fmaf(h2f(w[b].m), h2f(a[b].s), summs);
        const __m256 d0d1 = _mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d));
        const __m128i tmp = _mm_loadu_si128((const __m128i *)w[b].qs);
        const __m256i qx = _mm256_and_si256(
            low, _mm256_inserti128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1));
        const __m256i qy = _mm256_loadu_si256((const __m256i *)a[b].qs);
        acc = _mm256_fmadd_ps(d0d1, sum4_u8s8(qx, qy), acc);
    }
    return hsum8(acc) + summs;
}

INL __m256 ld32(const float *p) { return _mm256_loadu_ps(p); }
INL __m256 ld16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* ggml_vec_dot_f32 / _f16: sum[j] = (lo, hi) over 8 lanes each; n % 64 == 0 here */
#define DOT4X16(LOAD)                                                                       \
    __m256 s[4][2];                                                                         \
    for (int j = 0; j < 4; j++) s[j][0] = s[j][1] = _mm256_setzero_ps();                    \
    for (int i = 0; i < n; i += 64)                                                         \
        for (int j = 0; j < 4; j++)                                                         \
            for (int h = 0; h < 2; h++)                                                     \
                s[j][h] = _mm256_fmadd_ps(LOAD(x + i + 16 * j + 8 * h),                     \
                                          LOAD(y + i + 16 * j + 8 * h), s[j][h]);           \
    for (int h = 0; h < 2; h++) {                                                           \
        s[0][h] = _mm256_add_ps(s[0][h], s[2][h]);                                          \
        s[1][h] = _mm256_add_ps(s[1][h], s[3][h]);                                          \
    }                                                                                       \
    for (int h = 0; h < 2; h++) s[0][h] = _mm256_add_ps(s[0][h], s[1][h]);                  \
    return hsum8(_mm256_add_ps(s[0][1], s[0][0]));

#define DOT1X16(LOAD)                                                                       \
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();                              \
    for (int i = 0; i < n; i += 16) {                                                       \
        lo = _mm256_fmadd_ps(LOAD(x + i), LOAD(y + i), lo);                                 \
        hi = _mm256_fmadd_ps(LOAD(x + i + 8), LOAD(y + i + 8), hi);                         \
    }                                                                                       \
    return hsum8(_mm256_add_ps(hi, lo));

TGT float ggc_dot_f32_avx2(int n, const float *x, const float *y) { DOT4X16(ld32) }
TGT float ggc_dot_f16_avx2(int n, const uint16_t *x, const uint16_t *y) { DOT4X16(ld16) }
TGT float ggc_dot_f32_tiny_avx2(int n, const float *x, const float *y) { DOT1X16(ld32) }
TGT float ggc_dot_f16_tiny_avx2(int n, const uint16_t *x, const uint16_t *y) { DOT1X16(ld16) }

#endif
