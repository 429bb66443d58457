/* kquant.h: llama.cpp's "K-quant" super-block formats (Q2_K .. Q6_K, and Q8_K for activations)
 * as kquant.c, kquant_avx2.c and kquant_avx512.c share them with quant.c. Not installed.
 *
 * Blocks are byte-identical to ggml-common.h: 256 elements per block, fp16 stored as uint16_t.
 *
 * Dot-product arithmetic, the same at every SIMD level: per output element and weight block b,
 * the exact integer sums
 *   isum = sum over sub-blocks j of scale_j * (sum of q * x8 over sub-block j)
 *   msum = sum over sub-blocks j of min_j * (sum of x8 over sub-block j)   (Q2_K, Q4_K, Q5_K)
 * (for Q3_K / Q6_K the value offset, -4 / -32, is inside q), then in float, in this order:
 *   d = x.d * fp16(w.d);  m = x.d * fp16(w.dmin);  acc = acc + (d * (float)isum - m * (float)msum)
 * with acc starting at 0 and the blocks in order. Integer sums are exact in any order, so each
 * kernel gathers them however suits its registers; the float steps are single roundings (no
 * FMA: the project compiles strict ISO C, which keeps GCC from contracting them). So every
 * level gives the same bits, for any thread count, tile walk or batch position. llama.cpp's
 * AVX2 dot keeps 8-lane float partials per block instead and differs from this (and from its
 * own scalar code) by float rounding only. */
#ifndef UHLM_KQUANT_H
#define UHLM_KQUANT_H

#include <stdint.h>
#include <string.h>

#include "model/kernels/quant_internal.h"

#define UHLM_QK_K 256

typedef struct {
    uint8_t scales[UHLM_QK_K / 16]; /* low nibble scale, high nibble min, per 16 elements */
    uint8_t qs[UHLM_QK_K / 4];      /* 2-bit values */
    uint16_t d, dmin;
} uhlm_block_q2_K; /* 84 bytes */

typedef struct {
    uint8_t hmask[UHLM_QK_K / 8]; /* high bit of each 3-bit value */
    uint8_t qs[UHLM_QK_K / 4];    /* low 2 bits */
    uint8_t scales[12];           /* 16 6-bit scales, offset by 32 */
    uint16_t d;
} uhlm_block_q3_K; /* 110 bytes */

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];       /* 8 6-bit scales and 8 6-bit mins, packed (get_scale_min_k4) */
    uint8_t qs[UHLM_QK_K / 2];
} uhlm_block_q4_K; /* 144 bytes */

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[UHLM_QK_K / 8]; /* fifth bit */
    uint8_t qs[UHLM_QK_K / 2];
} uhlm_block_q5_K; /* 176 bytes */

typedef struct {
    uint8_t ql[UHLM_QK_K / 2];     /* low 4 bits */
    uint8_t qh[UHLM_QK_K / 4];     /* high 2 bits */
    int8_t scales[UHLM_QK_K / 16]; /* per 16 elements */
    uint16_t d;
} uhlm_block_q6_K; /* 210 bytes */

typedef struct {
    float d;
    int8_t qs[UHLM_QK_K];
    int16_t bsums[UHLM_QK_K / 16]; /* sum of qs per 16 elements */
} uhlm_block_q8_K; /* 292 bytes */

_Static_assert(sizeof(uhlm_block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(uhlm_block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(uhlm_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(uhlm_block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(uhlm_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(uhlm_block_q8_K) == 292, "q8_K layout");

/* 1 for Q2_K .. Q6_K (weights); Q8_K is activation-only and not a tensor type here. */
int uhlm_kq_is_k(uhlm_type t);
/* Bytes of one block of a K type, 0 otherwise. */
size_t uhlm_kq_block_bytes(uhlm_type t);

/* llama.cpp's quantize_row_qN_K_ref (no importance matrix) and dequantize_row_qN_K, bit for
 * bit; n a multiple of 256. */
void uhlm_kq_quantize_row(uhlm_type t, const float *x, void *dst, int64_t n);
void uhlm_kq_dequantize_row(uhlm_type t, const void *src, float *y, int64_t n);
/* quantize_row_q8_K_ref: d = max / -127 (max the element of largest magnitude, with its sign),
 * q = nearest(x / d), bsums. nb blocks. */
void uhlm_kq_quantize_q8_K(const float *x, uhlm_block_q8_K *y, int64_t nb);

/* Q4_K / Q5_K 6-bit scale and min of sub-block j (0..7), ggml's get_scale_min_k4. */
static inline void uhlm_kq_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Q3_K's 16 6-bit scales (plus 32) as 16 bytes in four words: ggml's kmask unpacking. Word
 * loads, not a 12-byte copy: a copy into an array went through the stack in the SIMD
 * kernels, a store-forwarding stall in their inner loop. */
static inline void uhlm_kq_q3_scales(const uint8_t *s12, uint32_t out[4]) {
    uint32_t a0, a1, tmp;
    memcpy(&a0, s12, 4);
    memcpy(&a1, s12 + 4, 4);
    memcpy(&tmp, s12 + 8, 4);
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    out[0] = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4);
    out[1] = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4);
    out[2] = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    out[3] = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
}

/* The float step of the header comment, shared by every kernel so they cannot drift. wd and
 * wm are the block's fp16 d and dmin as floats (wm = 0 for Q3_K / Q6_K, with msum = 0). */
static inline float uhlm_kq_step(float acc, float xd, float wd, float wm, int32_t isum,
                                 int32_t msum) {
    const float d = xd * wd;
    const float m = xd * wm;
    return acc + (d * (float)isum - m * (float)msum);
}

/* Kernel-table fillers, layered after the Q8_0 ones (see uhlm_kernels in quant_internal.h). */
void uhlm_kernels_kquant_scalar(uhlm_kernels *k);
void uhlm_kernels_kquant_avx2(uhlm_kernels *k);
void uhlm_kernels_kquant_avx512(uhlm_kernels *k, int has_vnni);

#endif
