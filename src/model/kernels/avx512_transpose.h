/* avx512_transpose.h: the 16 x 8 dword transpose that the packed AVX-512 VNNI kernels
 * (quant_avx512.c for Q8_0/Q4_0, qlegacy_avx512.c for Q4_1/Q5_0/Q5_1) use to put 16 weight
 * rows in vector lanes. x86-64 only; include after <immintrin.h>. Its target is AVX-512F
 * alone, a subset of every caller's, so it inlines into each of them. */
#ifndef UHLM_AVX512_TRANSPOSE_H
#define UHLM_AVX512_TRANSPOSE_H

/* z[j] = [row j | row j + 8], 8 dwords each -> o[g] lane k = dword g of row k. */
static inline __attribute__((always_inline, target("avx512f"))) void
transpose_16x8(const __m512i *z, __m512i *o) {
    __m512i t[8], u[8];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        t[2 * j] = _mm512_unpacklo_epi32(z[2 * j], z[2 * j + 1]);
        t[2 * j + 1] = _mm512_unpackhi_epi32(z[2 * j], z[2 * j + 1]);
    }
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    /* u[g] holds dwords g and g + 4 of rows 0-3 and 8-11 (128-bit lanes 0-3), u[g + 4] the
     * same of rows 4-7 and 12-15 */
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++) {
        o[g] = _mm512_permutex2var_epi64(u[g], lo, u[g + 4]);
        o[g + 4] = _mm512_permutex2var_epi64(u[g], hi, u[g + 4]);
    }
}

#endif
