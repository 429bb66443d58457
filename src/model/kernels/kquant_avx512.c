/* kquant_avx512.c: the K-quant kernels of kquant_x86.h compiled for AVX-512 with VNNI: the
 * same 256-bit algorithm (bit-identical results, see kquant.h), with vpdpwssd fusing each
 * scale multiply-add and the 32 vector registers of AVX-512VL.
 *
 * Only with VNNI: without it, this level keeps the AVX2 kernels. Wider (512-bit) versions did
 * not pay on the machine we measure (Zen 4 splits them in two 256-bit halves) and are not
 * here. */
#include "model/kernels/kquant.h"

#if defined(__x86_64__)

#define KQ_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"
#define TGT __attribute__((target(KQ_TARGET)))
#define INL static inline __attribute__((always_inline, target(KQ_TARGET)))
#define KQ_NAME(f) f##_avx512vnni
#define MADD_ACC(c, s, p) _mm256_dpwssd_epi32((c), (s), (p))

#include "model/kernels/kquant_x86.h"

void uhlm_kernels_kquant_avx512(uhlm_kernels *k, int has_vnni) {
    if (!has_vnni) return;
    k->q2_k = mm_q2_K_avx512vnni;
    k->q3_k = mm_q3_K_avx512vnni;
    k->q4_k = mm_q4_K_avx512vnni;
    k->q5_k = mm_q5_K_avx512vnni;
    k->q6_k = mm_q6_K_avx512vnni;
}

#else

void uhlm_kernels_kquant_avx512(uhlm_kernels *k, int has_vnni) {
    (void)k;
    (void)has_vnni;
}

#endif
