/* vmath_avx512.c: AVX-512 elementwise kernels (contract in vmath.h). */
#include "model/kernels/vmath.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include "model/kernels/vmath_x86.h"

#define TGT __attribute__((target("avx512f,avx512dq,fma")))
#define INL static inline __attribute__((always_inline, target("avx512f,avx512dq,fma")))

/* silu(g) * u with e = exp(-|g|), which stays in the exp's x <= 0 range:
 * g / (1 + e) for g >= 0, g e / (1 + e) below (the same value, without overflow). */
INL __m512 swiglu16(__m512 g, __m512 u) {
    const __m512 e = uhlm_exp16_neg(_mm512_sub_ps(_mm512_setzero_ps(),
                                                  _mm512_abs_ps(g)));
    const __mmask16 neg = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 num = _mm512_mask_mul_ps(g, neg, g, e);
    return _mm512_mul_ps(_mm512_div_ps(num, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

TGT static void swiglu_avx512(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(g + i, swiglu16(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(
            g + i, m, swiglu16(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, u + i)));
    }
}

uhlm_swiglu_fn uhlm_swiglu_kernel_avx512(void) { return swiglu_avx512; }

#else

uhlm_swiglu_fn uhlm_swiglu_kernel_avx512(void) { return NULL; }

#endif
