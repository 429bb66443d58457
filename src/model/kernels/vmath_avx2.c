/* vmath_avx2.c: AVX2 elementwise kernels (contract in vmath.h). */
#include "model/kernels/vmath.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include "model/kernels/vmath_x86.h"

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline, target("avx2,fma")))

/* as swiglu16 in vmath_avx512.c */
INL __m256 swiglu8(__m256 g, __m256 u) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 e = uhlm_exp8_neg(_mm256_or_ps(g, sign)); /* -|g| */
    const __m256 neg = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 num = _mm256_blendv_ps(g, _mm256_mul_ps(g, e), neg);
    return _mm256_mul_ps(_mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

TGT static void swiglu_avx2(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        /* the tail through a full vector, so every element gets the same arithmetic */
        float gt[8] = {0}, ut[8] = {0};
        for (int64_t k = i; k < n; k++) {
            gt[k - i] = g[k];
            ut[k - i] = u[k];
        }
        _mm256_storeu_ps(gt, swiglu8(_mm256_loadu_ps(gt), _mm256_loadu_ps(ut)));
        for (int64_t k = i; k < n; k++) g[k] = gt[k - i];
    }
}

uhlm_swiglu_fn uhlm_swiglu_kernel_avx2(void) { return swiglu_avx2; }

#else

uhlm_swiglu_fn uhlm_swiglu_kernel_avx2(void) { return NULL; }

#endif
