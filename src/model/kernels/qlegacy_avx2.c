/* qlegacy_avx2.c: AVX2 + FMA + F16C kernels of Q4_1, Q5_0 and Q5_1 (body in qlegacy_simd.h).
 *
 * Target attributes on the functions, as in quant_avx2.c, keep the library runnable on any
 * x86-64; quant.c calls these only after uhlm_simd_supported(UHLM_SIMD_AVX2). Off x86-64 the
 * file provides no kernels. */
#include "model/kernels/quant_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* Two activation rows per weight pass: 2 x 4 accumulators plus the unpacked weights and
 * constants fill the 16 ymm registers. */
#define RXMAX 2

/* Values are at most 31, so maddubs' int16 pair sums (<= 2 * 31 * 128) cannot saturate. */
INL __m256i dot_u(__m256i u, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

/* llama.cpp's bytes_from_bits_32: byte j of 64-bit lane l holds qh byte l with every bit but
 * bit j forced on, so it is all ones exactly when bit 8l + j is set. */
INL __m256i bits5(const uint8_t *qh) {
    uint32_t v;
    memcpy(&v, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bytes = _mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)v), shuf),
                                          _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)),
                            _mm256_set1_epi8(0x10));
}

#define PACKED_RUN(NAME, a, t0, t1) 0

#include "model/kernels/qlegacy_simd.h"

void uhlm_kernels_legacy_avx2(uhlm_kernels *k) {
    k->q4_1 = mm_q4_1;
    k->q5_0 = mm_q5_0;
    k->q5_1 = mm_q5_1;
}

#else

void uhlm_kernels_legacy_avx2(uhlm_kernels *k) { (void)k; }

#endif
