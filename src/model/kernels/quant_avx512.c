/* quant_avx512.c: AVX-512 matmul kernels (see quant_internal.h for the tiling contract).
 *
 * F32 / F16: 16-lane FMA with masked tails, two accumulators per output element, four weight
 * rows by two activation rows per pass in the batched walk (16 accumulators of the 32 zmm
 * registers), so batched calls reuse each loaded weight vector twice. Q8_0 / Q4_0 with VNNI:
 * 512-bit vpdpbusd with 16 weight rows in the lanes (see below); each lane's block dot is the
 * same exact integer the AVX2 kernels reduce to, followed by the same fma, so the two levels
 * give identical results for quantized types. Without VNNI the AVX2 quantized kernels are
 * kept. Q8_G and the activation quantizer come from the AVX2 file.
 *
 * Target attributes on the functions, not file flags, keep the binary runnable on any
 * x86-64; quant.c calls these only when uhlm_simd_supported(UHLM_SIMD_AVX512). */
#include "model/kernels/quant_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define INL                                                                                    \
    static inline __attribute__((always_inline,                                                \
                                 target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define TGT_VNNI                                                                               \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define INL_VNNI                                                                               \
    static inline __attribute__((                                                              \
        always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

#define RXMAX 2

/* As in quant_avx2.c: micro-kernels over R = 1 or 4 weight rows, row-wise walk for small n. */

/* ---------------------------------------------------------------- F32 / F16 */

/* R weight rows x rx (<= 2) activation rows, two accumulators per element (even and odd
 * 16-column steps) so a single row keeps two FMA chains in flight. Per element: 32-column
 * steps in order, then at most one 16-column step into the first accumulator, then the masked
 * tail into the second, then _mm512_reduce_add_ps of their sum. */
#define FLOAT_TILE(NAME, WT, LOADW, LOADW_TAIL)                                                  \
    INL void NAME(const WT *const *w, const int R, const float *x, int64_t cols, const int rx,   \
                  float *out, int64_t pf) {                                                      \
        __m512 acc[RXMAX][UHLM_MM_TILE][2];                                                      \
        _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++)                                     \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[i][r][0] = acc[i][r][1] =    \
                _mm512_setzero_ps();                                                             \
        int64_t k = 0;                                                                           \
        for (; k + 32 <= cols; k += 32) {                                                        \
            if (pf && ((k * (int64_t)sizeof(WT)) & 63) == 0)                                     \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                              \
                    _mm_prefetch((const char *)(w[r] + k) + pf, _MM_HINT_T0);                    \
            if (pf && sizeof(WT) == 4)                                                           \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                              \
                    _mm_prefetch((const char *)(w[r] + k + 16) + pf, _MM_HINT_T0);               \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                \
                __m512 wv[UHLM_MM_TILE];                                                         \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) wv[r] =                      \
                    LOADW(w[r] + k + 16 * h);                                                    \
                _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++) {                           \
                    const __m512 xv = _mm512_loadu_ps(x + (size_t)i * cols + k + 16 * h);        \
                    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[i][r][h] =           \
                        _mm512_fmadd_ps(wv[r], xv, acc[i][r][h]);                                \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        if (k + 16 <= cols) {                                                                    \
            _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++) {                               \
                const __m512 xv = _mm512_loadu_ps(x + (size_t)i * cols + k);                     \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[i][r][0] =               \
                    _mm512_fmadd_ps(LOADW(w[r] + k), xv, acc[i][r][0]);                          \
            }                                                                                    \
            k += 16;                                                                             \
        }                                                                                        \
        if (k < cols) {                                                                          \
            const __mmask16 m = (__mmask16)((1u << (cols - k)) - 1);                             \
            _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++) {                               \
                const __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)i * cols + k);            \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[i][r][1] =               \
                    _mm512_fmadd_ps(LOADW_TAIL(m, w[r] + k), xv, acc[i][r][1]);                  \
            }                                                                                    \
        }                                                                                        \
        _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++)                                     \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[i * R + r] =                 \
                _mm512_reduce_add_ps(_mm512_add_ps(acc[i][r][0], acc[i][r][1]));                 \
    }

#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOADT_F32(m, p) _mm512_maskz_loadu_ps(m, p)
#define LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define LOADT_F16(m, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p))

FLOAT_TILE(tile_f32, float, LOAD_F32, LOADT_F32)
FLOAT_TILE(tile_f16, uint16_t, LOAD_F16, LOADT_F16)

/* All n activation rows against R weight rows starting at row0, two activation rows at a
 * time (2 x 4 x 2 accumulators fit the 32 registers); rx is a compile-time constant in each
 * call so the accumulators stay in registers. */
#define FLOAT_ROWS(TILE, w, R, row0, nr, pf)                                                     \
    do {                                                                                         \
        float o[2 * UHLM_MM_TILE];                                                               \
        int i = 0;                                                                               \
        for (; i + 2 <= a->n; i += 2) {                                                          \
            TILE(w, R, a->X + (size_t)i * cols, cols, 2, o, i == 0 ? (pf) : 0);                  \
            uhlm_mm_store_rows(a, row0, i, nr, o);                                                   \
            uhlm_mm_store_rows(a, row0, i + 1, nr, o + (R));                                         \
        }                                                                                        \
        if (i < a->n) {                                                                          \
            TILE(w, R, a->X + (size_t)i * cols, cols, 1, o, i == 0 ? (pf) : 0);                  \
            uhlm_mm_store_rows(a, row0, i, nr, o);                                                   \
        }                                                                                        \
    } while (0)

UHLM_FLOAT_KERNEL(mm_f32_avx512, tile_f32, float)
UHLM_FLOAT_KERNEL(mm_f16_avx512, tile_f16, uint16_t)

/* ---------------------------------------------------------------- Q8_0 / Q4_0 with VNNI */

/* 16 weight rows go in the 16 lanes in the 16 lanes: a chunk of blocks of those rows is
 * transposed once into lane = row order (the unsigned vpdpbusd operand), and every
 * activation row then broadcasts 4 bytes at a time against it. Each lane ends with the
 * block's exact dot directly, so the float work (convert, scale, fma) is one instruction per
 * 16 outputs and block instead of one per output, and the transpose is paid once for all n
 * activation rows. Even at n = 1 this measured 1.3-1.6x faster than 8-lane partial dots per
 * row reduced per block (the AVX2 kernels' way), so it is the only VNNI path. */
#define PK_ROWS 16
/* Blocks per packed chunk: 32 * (8 * 64 + 64) bytes = 18 KB, which stays in L1. */
#define PK_CHUNK 32

/* z[j] = [row j | row j + 8], 8 dwords each -> o[g] lane k = dword g of row k. */
INL_VNNI void transpose_16x8(const __m512i *z, __m512i *o) {
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

/* Packs blocks [b0, b1) of 16 rows: pw[8 * (b - b0) + g] lane k = unsigned bytes 4g..4g+3
 * of row k's block b, pws[16 * (b - b0) + k] = row k's scale. */
INL_VNNI void pack_q8_0(const uhlm_block_q8_0 *const *w, int64_t b0, int64_t b1, __m512i *pw,
                        float *pws) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int64_t b = b0; b < b1; b++) {
        __m512i z[8], o[8];
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) z[j] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[j][b].qs)),
            _mm256_loadu_si256((const __m256i *)w[j + 8][b].qs), 1);
        transpose_16x8(z, o);
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) _mm512_store_si512(
            pw + 8 * (b - b0) + g, _mm512_xor_si512(o[g], bias));
        uint16_t h[PK_ROWS];
        for (int k = 0; k < PK_ROWS; k++) h[k] = w[k][b].d;
        _mm512_store_ps(pws + PK_ROWS * (b - b0),
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h)));
    }
}

INL_VNNI void pack_q4_0(const uhlm_block_q4_0 *const *w, int64_t b0, int64_t b1, __m512i *pw,
                        float *pws) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i hi4 = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    for (int64_t b = b0; b < b1; b++) {
        __m512i z[8], o[8];
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
            /* [qs_j | qs_j | qs_j+8 | qs_j+8], upper copies shifted: row j's elements 0-15
             * then 16-31 in the low half, row j + 8's in the high half */
            const __m256i y = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w[j][b].qs)),
                _mm_loadu_si128((const __m128i *)w[j + 8][b].qs), 1);
            const __m512i d = _mm512_castsi256_si512(y);
            z[j] = _mm512_and_si512(
                _mm512_srlv_epi64(_mm512_shuffle_i64x2(d, d, _MM_SHUFFLE(1, 1, 0, 0)), hi4),
                m4);
        }
        transpose_16x8(z, o);
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++)
            _mm512_store_si512(pw + 8 * (b - b0) + g, o[g]);
        uint16_t h[PK_ROWS];
        for (int k = 0; k < PK_ROWS; k++) h[k] = w[k][b].d;
        _mm512_store_ps(pws + PK_ROWS * (b - b0),
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h)));
    }
}

/* rx (<= 4) activation rows against a packed chunk of cnt blocks. Per row and block the dot
 * starts from off * sum(x) (the unsigned operand's offset) and runs in two chains (even and
 * odd dwords) so four rows keep eight vpdpbusd chains in flight; integer sums are exact, so
 * the chains change nothing. */
INL_VNNI void packed_dots(const __m512i *pw, const float *pws, int64_t cnt,
                          const int8_t *const *xq, const float *const *xd,
                          const int32_t *const *xs, int32_t off, const int rx, __m512 *acc) {
    for (int64_t b = 0; b < cnt; b++) {
        __m512i wv[8];
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) wv[g] = _mm512_load_si512(pw + 8 * b + g);
        const __m512 d = _mm512_load_ps(pws + PK_ROWS * b);
        _Pragma("GCC unroll 4") for (int i = 0; i < rx; i++) {
            const int8_t *x = xq[i] + b * UHLM_QK;
            __m512i s0 = _mm512_set1_epi32(off * xs[i][b]), s1 = _mm512_setzero_si512();
            _Pragma("GCC unroll 4") for (int g = 0; g < 8; g += 2) {
                int32_t x0, x1;
                memcpy(&x0, x + 4 * g, 4);
                memcpy(&x1, x + 4 * g + 4, 4);
                s0 = _mm512_dpbusd_epi32(s0, wv[g], _mm512_set1_epi32(x0));
                s1 = _mm512_dpbusd_epi32(s1, wv[g + 1], _mm512_set1_epi32(x1));
            }
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)),
                                     _mm512_mul_ps(d, _mm512_set1_ps(xd[i][b])), acc[i]);
        }
    }
}

/* Rows [t0 * TILE, t1 * TILE) in groups of 16 (the last group's missing lanes repeat its last
 * row and are not stored). Across chunks the running sums wait in Y itself: each element is
 * this call's alone, and a float store and reload is exact. */
#define PACKED_GROUP(RX)                                                                         \
    do {                                                                                         \
        const int8_t *xq[4];                                                                     \
        const float *xd[4];                                                                      \
        const int32_t *xs[4];                                                                    \
        __m512 acc[4];                                                                           \
        for (int k = 0; k < (RX); k++) {                                                         \
            xq[k] = a->xq + (size_t)(i + k) * cols + b0 * UHLM_QK;                               \
            xd[k] = a->xd + (size_t)(i + k) * nb + b0;                                           \
            xs[k] = a->xs + (size_t)(i + k) * nb + b0;                                           \
            acc[k] = b0 == 0 ? _mm512_setzero_ps()                                               \
                             : _mm512_maskz_loadu_ps(m, a->Y + (size_t)(i + k) * rows + r0);     \
        }                                                                                        \
        packed_dots(pw, pws, b1 - b0, xq, xd, xs, off, (RX), acc);                               \
        for (int k = 0; k < (RX); k++)                                                           \
            _mm512_mask_storeu_ps(a->Y + (size_t)(i + k) * rows + r0, m, acc[k]);                \
    } while (0)

#define PACKED_KERNEL(NAME, PACK, BT, OFF)                                                       \
    TGT_VNNI static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                   \
        const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK;                 \
        const BT *W = a->W->data;                                                                \
        const int32_t off = (OFF);                                                               \
        const int64_t rb = t0 * UHLM_MM_TILE;                                                    \
        const int64_t re = t1 * UHLM_MM_TILE < rows ? t1 * UHLM_MM_TILE : rows;                  \
        __m512i pw[8 * PK_CHUNK];                                                                \
        float pws[PK_ROWS * PK_CHUNK] __attribute__((aligned(64)));                              \
        for (int64_t r0 = rb; r0 < re; r0 += PK_ROWS) {                                          \
            const int nr = re - r0 < PK_ROWS ? (int)(re - r0) : PK_ROWS;                         \
            const __mmask16 m = (__mmask16)((1u << nr) - 1);                                     \
            const BT *w[PK_ROWS];                                                                \
            for (int k = 0; k < PK_ROWS; k++) w[k] = W + (k < nr ? r0 + k : re - 1) * nb;        \
            for (int64_t b0 = 0; b0 < nb; b0 += PK_CHUNK) {                                      \
                const int64_t b1 = nb - b0 < PK_CHUNK ? nb : b0 + PK_CHUNK;                      \
                PACK(w, b0, b1, pw, pws);                                                        \
                int i = 0;                                                                       \
                for (; i + 4 <= a->n; i += 4) PACKED_GROUP(4);                                   \
                for (; i < a->n; i++) PACKED_GROUP(1);                                           \
            }                                                                                    \
        }                                                                                        \
    }

PACKED_KERNEL(mm_q8_0_vnni, pack_q8_0, uhlm_block_q8_0, -128)
PACKED_KERNEL(mm_q4_0_vnni, pack_q4_0, uhlm_block_q4_0, -8)

void uhlm_kernels_avx512(uhlm_kernels *k, int has_vnni) {
    k->f32 = mm_f32_avx512;
    k->f16 = mm_f16_avx512;
    if (has_vnni) {
        k->q8_0 = mm_q8_0_vnni;
        k->q4_0 = mm_q4_0_vnni;
    }
    uhlm_kernels_legacy_avx512(k, has_vnni);
}

#else

void uhlm_kernels_avx512(uhlm_kernels *k, int has_vnni) {
    (void)k;
    (void)has_vnni;
}

#endif
