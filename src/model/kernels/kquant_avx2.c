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

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define KQ_NAME(f) f##_avx2
#define MADD_ACC(c, s, p) _mm256_add_epi32((c), _mm256_madd_epi16((s), (p)))

#include "model/kernels/kquant_x86.h"

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
