/* qlegacy_avx512.c: AVX-512 VNNI kernels of Q4_1, Q5_0 and Q5_1 (body in qlegacy_simd.h).
 *
 * Two walks with the per-element arithmetic of qlegacy_simd.h, so they and the AVX2 kernels
 * agree bit for bit: the AVX2 row-wise walk with vpdpbusd in place of maddubs + madd (the
 * weights' values are the unsigned operand as they are, no sign trick), a mask move in place
 * of the five-instruction fifth-bit expansion and four activation rows per weight pass (32
 * registers); and a packed walk, 16 weight rows in the lanes, for batches and short rows.
 * Without VNNI the AVX2 kernels stay.
 *
 * Target attributes as in quant_avx512.c; quant.c calls this only when
 * uhlm_simd_supported(UHLM_SIMD_AVX512). */
#include "model/kernels/quant_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "model/kernels/avx512_transpose.h"

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

/* From UHLM_MM_ROWWISE_N activation rows on, and for short rows at any n, the tiles run packed
 * (below): with few blocks per row the row-wise walk pays its per-row work too often. */
/* at n = 1 packed measured 15 vs 12 GMAC/s (row-wise) at 288 columns, 16 vs 29 at 768 */
#define PK_SHORT_COLS 512
#define PACKED_RUN(NAME, a, t0, t1)                                                            \
    (((a)->n >= UHLM_MM_ROWWISE_N || (a)->W->cols <= PK_SHORT_COLS)                            \
         ? (NAME##_packed(a, t0, t1), 1)                                                       \
         : 0)

TGT static void mm_q4_1_packed(const uhlm_mm_args *a, int64_t t0, int64_t t1);
TGT static void mm_q5_0_packed(const uhlm_mm_args *a, int64_t t0, int64_t t1);
TGT static void mm_q5_1_packed(const uhlm_mm_args *a, int64_t t0, int64_t t1);

#include "model/kernels/qlegacy_simd.h"

/* ---------------------------------------------------------------- packed (batched) walk */

/* As quant_avx512.c's Q8_0 / Q4_0 VNNI kernels: 16 weight rows go in the 16 lanes; a chunk of
 * their blocks is unpacked and transposed once (lane = row, the unsigned vpdpbusd operand)
 * and every activation row then broadcasts 4 bytes at a time against it, so each lane ends
 * with its row's exact block dot s_b and the float work is one instruction per 16 outputs.
 * The per-element arithmetic is the row-wise walk's (qlegacy_simd.h): chains A_c, M_c with
 * c = b % 4, here four zmm registers each per activation row, kept between chunks in a stack
 * array for PK_ACT activation rows at a time. */
#define PK_ROWS 16
#define PK_CHUNK 32 /* blocks per packed chunk: 32 * (8 + 2) * 64 bytes = 20 KB, stays in L1 */
#define PK_ACT 32   /* activation rows whose chains wait in memory: 32 * 8 * 64 = 16 KB */


/* Blocks [b0, b1) of 16 rows: pw[8 * (b - b0) + g] lane k = values 4g..4g+3 of row k's block b;
 * pd / pm [16 * (b - b0) + k] = row k's scale / minimum. */
#define LEGACY_PACK(NAME, BT, UNPACK)                                                            \
    INL void NAME##_pack(const BT *const *w, int64_t b0, int64_t b1, __m512i *pw, float *pd,     \
                         float *pm) {                                                            \
        for (int64_t b = b0; b < b1; b++) {                                                      \
            __m512i z[8], o[8];                                                                  \
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) z[j] = _mm512_inserti64x4(       \
                _mm512_castsi256_si512(UNPACK(&w[j][b])), UNPACK(&w[j + 8][b]), 1);              \
            transpose_16x8(z, o);                                                                \
            _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++)                                  \
                _mm512_store_si512(pw + 8 * (b - b0) + g, o[g]);                                 \
            uint16_t hd[PK_ROWS], hm[PK_ROWS];                                                   \
            for (int k = 0; k < PK_ROWS; k++) {                                                  \
                hd[k] = w[k][b].d;                                                               \
                hm[k] = w[k][b].MFIELD;                                                          \
            }                                                                                    \
            _mm512_store_ps(pd + PK_ROWS * (b - b0),                                             \
                            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hd)));           \
            _mm512_store_ps(pm + PK_ROWS * (b - b0),                                             \
                            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hm)));           \
        }                                                                                        \
    }

/* RX (1 or 2) activation rows against a packed chunk, sharing each weight load; c[i][0..3] =
 * A chains, c[i][4..7] = M chains. b0, the chunk's first block, is a multiple of 4, so chain
 * b % 4 is (b - b0) % 4. */
#define LEGACY_PACKED_DOTS(NAME, OFF, HASMIN)                                                    \
    INL void NAME##_dots(const __m512i *pw, const float *pd, const float *pm, int64_t cnt,       \
                         const int RX, const int8_t *const *xq, const float *const *xd,          \
                         const int32_t *const *xs, const float *const *xm, __m512 (*c)[8]) {     \
        __m512 l[2][8];                                                                          \
        _Pragma("GCC unroll 2") for (int i = 0; i < RX; i++)                                     \
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) l[i][k] = c[i][k];               \
        for (int64_t b = 0; b < cnt; b += 4) {                                                   \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                \
                if (b + k >= cnt) break;                                                         \
                const int64_t bb = b + k;                                                        \
                __m512i s0[2], s1[2];                                                            \
                _Pragma("GCC unroll 2") for (int i = 0; i < RX; i++) {                           \
                    s0[i] = _mm512_set1_epi32(-(OFF) * xs[i][bb]);                               \
                    s1[i] = _mm512_setzero_si512();                                              \
                }                                                                                \
                _Pragma("GCC unroll 4") for (int g = 0; g < 8; g += 2) {                         \
                    const __m512i w0 = _mm512_load_si512(pw + 8 * bb + g);                       \
                    const __m512i w1 = _mm512_load_si512(pw + 8 * bb + g + 1);                   \
                    _Pragma("GCC unroll 2") for (int i = 0; i < RX; i++) {                       \
                        int32_t x0, x1;                                                          \
                        memcpy(&x0, xq[i] + bb * UHLM_QK + 4 * g, 4);                            \
                        memcpy(&x1, xq[i] + bb * UHLM_QK + 4 * g + 4, 4);                        \
                        s0[i] = _mm512_dpbusd_epi32(s0[i], w0, _mm512_set1_epi32(x0));           \
                        s1[i] = _mm512_dpbusd_epi32(s1[i], w1, _mm512_set1_epi32(x1));           \
                    }                                                                            \
                }                                                                                \
                const __m512 d = _mm512_load_ps(pd + PK_ROWS * bb);                              \
                _Pragma("GCC unroll 2") for (int i = 0; i < RX; i++) {                           \
                    l[i][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0[i], s1[i])), \
                                              _mm512_mul_ps(d, _mm512_set1_ps(xd[i][bb])),       \
                                              l[i][k]);                                          \
                    if (HASMIN)                                                                  \
                        l[i][4 + k] =                                                            \
                            _mm512_add_ps(l[i][4 + k], _mm512_mul_ps(_mm512_load_ps(pm + PK_ROWS * bb), \
                                                                     _mm512_set1_ps(xm[i][bb])));  \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 2") for (int i = 0; i < RX; i++)                                     \
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) c[i][k] = l[i][k];               \
    }

#define LEGACY_PACKED_KERNEL(NAME, BT, HASMIN)                                                   \
    TGT static void NAME##_packed(const uhlm_mm_args *a, int64_t t0, int64_t t1) {               \
        const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK;                 \
        const BT *W = a->W->data;                                                                \
        const int64_t rb = t0 * UHLM_MM_TILE;                                                    \
        const int64_t re = t1 * UHLM_MM_TILE < rows ? t1 * UHLM_MM_TILE : rows;                  \
        __m512i pw[8 * PK_CHUNK];                                                                \
        float pd[PK_ROWS * PK_CHUNK] __attribute__((aligned(64)));                               \
        float pm[PK_ROWS * PK_CHUNK] __attribute__((aligned(64)));                               \
        __m512 ch[PK_ACT][8];                                                                    \
        for (int64_t r0 = rb; r0 < re; r0 += PK_ROWS) {                                          \
            const int nr = re - r0 < PK_ROWS ? (int)(re - r0) : PK_ROWS;                         \
            const __mmask16 m = (__mmask16)((1u << nr) - 1);                                     \
            const BT *w[PK_ROWS];                                                                \
            for (int k = 0; k < PK_ROWS; k++) w[k] = W + (k < nr ? r0 + k : re - 1) * nb;        \
            for (int i0 = 0; i0 < a->n; i0 += PK_ACT) {                                          \
                const int na = a->n - i0 < PK_ACT ? a->n - i0 : PK_ACT;                          \
                for (int i = 0; i < na; i++)                                                     \
                    for (int k = 0; k < 8; k++) ch[i][k] = _mm512_setzero_ps();                  \
                for (int64_t b0 = 0; b0 < nb; b0 += PK_CHUNK) {                                  \
                    const int64_t b1 = nb - b0 < PK_CHUNK ? nb : b0 + PK_CHUNK;                  \
                    NAME##_pack(w, b0, b1, pw, pd, pm);                                          \
                    for (int i = 0; i < na;) {                                                   \
                        const int rx = na - i >= 2 ? 2 : 1;                                      \
                        const int8_t *xq[2];                                                     \
                        const float *xd[2], *xm[2] = {NULL, NULL};                               \
                        const int32_t *xs[2];                                                    \
                        for (int k = 0; k < rx; k++) {                                           \
                            const size_t ii = (size_t)(i0 + i + k);                              \
                            xq[k] = a->xq + ii * cols + b0 * UHLM_QK;                            \
                            xd[k] = a->xd + ii * nb + b0;                                        \
                            xs[k] = a->xs + ii * nb + b0;                                        \
                            if (HASMIN) xm[k] = a->xsum + ii * nb + b0;                          \
                        }                                                                        \
                        if (rx == 2)                                                             \
                            NAME##_dots(pw, pd, pm, b1 - b0, 2, xq, xd, xs, xm, ch + i);         \
                        else                                                                     \
                            NAME##_dots(pw, pd, pm, b1 - b0, 1, xq, xd, xs, xm, ch + i);         \
                        i += rx;                                                                 \
                    }                                                                            \
                }                                                                                \
                for (int i = 0; i < na; i++) {                                                   \
                    const __m512 *c = ch[i];                                                     \
                    __m512 y = _mm512_add_ps(_mm512_add_ps(c[0], c[2]), _mm512_add_ps(c[1], c[3])); \
                    if (HASMIN)                                                                  \
                        y = _mm512_add_ps(                                                       \
                            y, _mm512_add_ps(_mm512_add_ps(c[4], c[6]), _mm512_add_ps(c[5], c[7]))); \
                    _mm512_mask_storeu_ps(a->Y + (size_t)(i0 + i) * rows + r0, m, y);            \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }

#define MFIELD m
LEGACY_PACK(mm_q4_1, uhlm_block_q4_1, unpack_q4_1)
LEGACY_PACK(mm_q5_1, uhlm_block_q5_1, unpack_q5_1)
LEGACY_PACKED_DOTS(mm_q4_1, 0, 1)
LEGACY_PACKED_DOTS(mm_q5_1, 0, 1)
LEGACY_PACKED_KERNEL(mm_q4_1, uhlm_block_q4_1, 1)
LEGACY_PACKED_KERNEL(mm_q5_1, uhlm_block_q5_1, 1)
#undef MFIELD
#define MFIELD d
LEGACY_PACK(mm_q5_0, uhlm_block_q5_0, unpack_q5_0)
LEGACY_PACKED_DOTS(mm_q5_0, 16, 0)
LEGACY_PACKED_KERNEL(mm_q5_0, uhlm_block_q5_0, 0)
#undef MFIELD

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
