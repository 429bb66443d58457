/* qlegacy_avx512.c: AVX-512 VNNI kernels of Q4_1, Q5_0 and Q5_1 (body in qlegacy_simd.h).
 *
 * The same 256-bit walk as the AVX2 kernels with vpdpbusd in place of maddubs + madd (the
 * weights' values are the unsigned operand as they are, no sign trick) and a mask move in
 * place of the five-instruction fifth-bit expansion. Every integer lane and every float
 * operation is the AVX2 kernel's, so the two levels agree bit for bit. The 32 registers hold
 * four activation rows' accumulators per weight pass. Without VNNI the AVX2 kernels stay.
 *
 * Target attributes as in quant_avx512.c; quant.c calls this only when
 * uhlm_simd_supported(UHLM_SIMD_AVX512). */
#include "model/kernels/quant_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define INL                                                                                    \
    static inline __attribute__((                                                              \
        always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

#define RXMAX 4

INL __m256i dot_u(__m256i u, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x);
}

INL __m256i bits5(const uint8_t *qh) {
    uint32_t v;
    memcpy(&v, qh, 4);
    return _mm256_maskz_mov_epi8((__mmask32)v, _mm256_set1_epi8(0x10));
}

#include "model/kernels/qlegacy_simd.h"

void uhlm_kernels_legacy_avx512(uhlm_kernels *k, int has_vnni) {
    if (!has_vnni) return;
    k->q4_1 = mm_q4_1;
    k->q5_0 = mm_q5_0;
    k->q5_1 = mm_q5_1;
}

#else

void uhlm_kernels_legacy_avx512(uhlm_kernels *k, int has_vnni) {
    (void)k;
    (void)has_vnni;
}

#endif
