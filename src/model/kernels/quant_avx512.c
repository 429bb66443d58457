/* quant_avx512.c: AVX-512 matmul kernels (see quant_internal.h for the tiling contract).
 *
 * F32 / F16: 16-lane FMA with masked tails, two accumulators per output element, four weight
 * rows by two activation rows per pass in the batched walk (16 accumulators of the 32 zmm
 * registers), so batched calls reuse each loaded weight vector twice. Q8_0 / Q4_0 with VNNI:
 * per row and block the exact integer dot, then one fma per block (quant_internal.h); batched
 * calls put 16 weight rows in the lanes of a 512-bit vpdpbusd, one-token calls (fewer than
 * UHLM_MM_ROWWISE_N activation rows) stream the rows in memory order with 256-bit vpdpbusd
 * and give the same bits. Without VNNI the AVX2 quantized kernels are kept. Q8_G and the
 * activation quantizer come from the AVX2 file.
 *
 * Target attributes on the functions, not file flags, keep the binary runnable on any
 * x86-64; quant.c calls these only when uhlm_simd_supported(UHLM_SIMD_AVX512). */
#include "model/kernels/quant_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "model/kernels/avx512_transpose.h"

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
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                            \
                    wv[r] = LOADW(w[r] + k + 16 * h);                                            \
                    /* in a register: GCC otherwise folds the load into every FMA, loading    \
                     * each weight vector once per activation row (10 loads per 8 FMAs) */    \
                    if (rx > 1) __asm__("" : "+v"(wv[r]));                                       \
                }                                                                                \
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

UHLM_FLOAT_KERNEL(mm_f32_tiles_avx512, tile_f32, float)
UHLM_FLOAT_KERNEL(mm_f16_tiles_avx512, tile_f16, uint16_t)

/* One-token (GEMV) walk of F32 / F16, below UHLM_MM_ROWWISE_N activation rows: the weight rows
 * in memory order (one stream, as the tile walk's row-by-row mode), each row's two 16-lane
 * accumulators exactly as tile_* computes them with R = 1, and then, instead of one
 * _mm512_reduce_add_ps per output, the reductions of eight rows at once by a transpose-add tree
 * that performs the very same additions. On short rows the per-output reduction was a large
 * part of the work (a 192-column row is 12 FMAs and a 9-instruction reduction); the tree costs
 * under half that per row. The bits equal the tile walk's, so n = 1 and batched calls agree.
 *
 * GCC's _mm512_reduce_add_ps(v): t = hi256 + lo256 (t[i] = v[i + 8] + v[i]), u = hi128(t) +
 * lo128(t), then (u[0] + u[2]) + (u[1] + u[3]). reduce8 does each of these steps for eight
 * rows side by side (float addition is commutative, so the operand order within one addition
 * does not matter; which values are added, and in which grouping, is the same). */
INL __m256 reduce8(const __m512 *v) {
    __m256 t[8], u[4], b[2];
    _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) t[r] = _mm256_add_ps(
        _mm512_castps512_ps256(v[r]),
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[r]), 1)));
    /* u[j]: rows 2j (low half) and 2j + 1 (high half), lanes t[i] + t[i + 4] */
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) u[j] = _mm256_add_ps(
        _mm256_permute2f128_ps(t[2 * j], t[2 * j + 1], 0x20),
        _mm256_permute2f128_ps(t[2 * j], t[2 * j + 1], 0x31));
    /* b[k], per half: [u0 + u2, u1 + u3] of rows (4k, 4k + 2) low, (4k + 1, 4k + 3) high */
    _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) b[k] = _mm256_add_ps(
        _mm256_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
        _mm256_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* rows 0, 2, 4, 6 in the low half, 1, 3, 5, 7 in the high one */
    const __m256 c = _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* acc0 + acc1 of tile_* with R = 1, rx = 1 and no prefetch, before its reduction */
#define ROW_SUM(NAME, WT, LOADW, LOADW_TAIL)                                                     \
    INL __m512 NAME(const WT *w, const float *x, int64_t cols) {                                 \
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();                               \
        int64_t k = 0;                                                                           \
        for (; k + 32 <= cols; k += 32) {                                                        \
            a0 = _mm512_fmadd_ps(LOADW(w + k), _mm512_loadu_ps(x + k), a0);                      \
            a1 = _mm512_fmadd_ps(LOADW(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);            \
        }                                                                                        \
        if (k + 16 <= cols) {                                                                    \
            a0 = _mm512_fmadd_ps(LOADW(w + k), _mm512_loadu_ps(x + k), a0);                      \
            k += 16;                                                                             \
        }                                                                                        \
        if (k < cols) {                                                                          \
            const __mmask16 m = (__mmask16)((1u << (cols - k)) - 1);                             \
            a1 = _mm512_fmadd_ps(LOADW_TAIL(m, w + k), _mm512_maskz_loadu_ps(m, x + k), a1);     \
        }                                                                                        \
        return _mm512_add_ps(a0, a1);                                                            \
    }

ROW_SUM(row_sum_f32, float, LOAD_F32, LOADT_F32)
ROW_SUM(row_sum_f16, uint16_t, LOAD_F16, LOADT_F16)

#define GEMV_FLOAT(NAME, WT, ROWSUM, TILES)                                                      \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
        if (a->n >= UHLM_MM_ROWWISE_N) {                                                         \
            TILES(a, t0, t1);                                                                    \
            return;                                                                              \
        }                                                                                        \
        const int64_t rows = a->W->rows, cols = a->W->cols;                                      \
        const int64_t rb = t0 * UHLM_MM_TILE;                                                    \
        const int64_t re = t1 * UHLM_MM_TILE < rows ? t1 * UHLM_MM_TILE : rows;                  \
        const WT *W = a->W->data;                                                                \
        for (int64_t r0 = rb; r0 < re; r0 += 8) {                                                \
            const int nr = re - r0 < 8 ? (int)(re - r0) : 8;                                     \
            __m512 v[UHLM_MM_ROWWISE_N - 1][8];                                                  \
            for (int r = 0; r < 8; r++) {                                                        \
                /* past the last row, lanes repeat it; they are not stored */                    \
                const WT *w = W + (size_t)(r < nr ? r0 + r : re - 1) * (size_t)cols;             \
                for (int i = 0; i < a->n; i++)                                                   \
                    v[i][r] = ROWSUM(w, a->X + (size_t)i * (size_t)cols, cols);                  \
            }                                                                                    \
            const __mmask8 m = (__mmask8)((1u << nr) - 1);                                       \
            for (int i = 0; i < a->n; i++)                                                       \
                _mm256_mask_storeu_ps(a->Y + (size_t)i * (size_t)rows + r0, m, reduce8(v[i]));   \
        }                                                                                        \
    }

GEMV_FLOAT(mm_f32_avx512, float, row_sum_f32, mm_f32_tiles_avx512)
GEMV_FLOAT(mm_f16_avx512, uint16_t, row_sum_f16, mm_f16_tiles_avx512)

/* ---------------------------------------------------------------- Q8_0 / Q4_0 with VNNI */

/* 16 weight rows go in the 16 lanes: a chunk of blocks of those rows is
 * transposed once into lane = row order (the unsigned vpdpbusd operand), and every
 * activation row then broadcasts 4 bytes at a time against it. Each lane ends with the
 * block's exact dot directly, so the float work (convert, scale, fma) is one instruction per
 * 16 outputs and block instead of one per output, and the transpose is paid once for all n
 * activation rows. With UHLM_MM_ROWWISE_N or more activation rows it is the VNNI path; below
 * that the one-token path further down computes the same bits from one sequential stream. */
#define PK_ROWS 16
/* Blocks per packed chunk: 32 * (8 * 64 + 64) bytes = 18 KB, which stays in L1. */
#define PK_CHUNK 32


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

#define PACKED_KERNEL(NAME, PACK, BT, OFF, GEMV)                                                 \
    TGT_VNNI static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                   \
        const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK;                 \
        const BT *W = a->W->data;                                                                \
        const int32_t off = (OFF);                                                               \
        const int64_t rb = t0 * UHLM_MM_TILE;                                                    \
        const int64_t re = t1 * UHLM_MM_TILE < rows ? t1 * UHLM_MM_TILE : rows;                  \
        if (a->n < UHLM_MM_ROWWISE_N) {                                                          \
            GEMV(a, rb, re);                                                                     \
            return;                                                                              \
        }                                                                                        \
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

/* ---------------------------------------------------------------- one-token (GEMV) path */

/* With fewer than UHLM_MM_ROWWISE_N activation rows the packed kernel above is a poor fit:
 * its 16 interleaved row streams defeat the hardware prefetcher (decode, whose weights come
 * from DRAM, spent most of its time waiting on those loads) and the transpose is paid for one
 * activation row only. This path walks weight rows in memory order, one sequential stream,
 * and gives the same bits: per row and block the exact integer dot (a 256-bit vpdpbusd,
 * eight 4-byte partials summed by a transpose-add tree over eight blocks at a time), then,
 * with GV_ROWS rows in the lanes, the packed kernel's very instructions
 * acc = fma(float(s + off * sum(x)), d_w * d_x, acc) in block order.
 *
 * Pass 1 (per weight row, in memory order) leaves sums in s[row][block] and fp16 scales in
 * h[block][row]; pass 2 transposes eight blocks of eight rows at a time and accumulates. */
#define GV_ROWS 8
/* Blocks per pass: 256 blocks (8192 columns) of 8 rows is 8 KB of sums and 4 KB of scales,
 * so a row of most models is one pass and one unbroken stream. */
#define GV_CHUNK 256

/* lane j = sum of v[j]'s eight lanes */
INL_VNNI __m256i hsum_8x8(const __m256i *v) {
    __m256i p[4], q[2];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) p[j] = _mm256_add_epi32(
        _mm256_unpacklo_epi32(v[2 * j], v[2 * j + 1]), _mm256_unpackhi_epi32(v[2 * j], v[2 * j + 1]));
    /* p[j], per 128-bit half: [v2j 0+2, v2j+1 0+2, v2j 1+3, v2j+1 1+3] */
    _Pragma("GCC unroll 2") for (int j = 0; j < 2; j++) q[j] = _mm256_add_epi32(
        _mm256_unpacklo_epi64(p[2 * j], p[2 * j + 1]), _mm256_unpackhi_epi64(p[2 * j], p[2 * j + 1]));
    /* q[j], per half: the half's sum of v4j .. v4j+3 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(q[0], q[1], 0x20),
                            _mm256_permute2x128_si256(q[0], q[1], 0x31));
}

/* in place: v[r] lane j -> v[j] lane r */
INL_VNNI void transpose_8x8(__m256i *v) {
    __m256i t[8], u[8];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        t[2 * j] = _mm256_unpacklo_epi32(v[2 * j], v[2 * j + 1]);
        t[2 * j + 1] = _mm256_unpackhi_epi32(v[2 * j], v[2 * j + 1]);
    }
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    /* u[g] holds column g (low half: rows 0-3, high half: columns g + 4), u[g + 4] rows 4-7 */
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++) {
        v[g] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x20);
        v[g + 4] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x31);
    }
}

/* The integer dot of one weight block with activation block x, as eight 4-byte partials
 * (without the unsigned operand's offset). */
INL_VNNI __m256i gv_dot_q8_0(const uhlm_block_q8_0 *w, const int8_t *x) {
    const __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w->qs),
                                       _mm256_set1_epi8((char)0x80));
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u,
                               _mm256_load_si256((const __m256i *)x));
}

INL_VNNI __m256i gv_dot_q4_0(const uhlm_block_q4_0 *w, const int8_t *x) {
    const __m256i u = _mm256_and_si256(
        _mm256_srlv_epi64(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->qs)),
                          _mm256_setr_epi64x(0, 0, 4, 4)),
        _mm256_set1_epi8(0x0f));
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u,
                               _mm256_load_si256((const __m256i *)x));
}

/* acc + float(s + o) * (d_w * d_x) for 8 rows: the packed kernel's float steps exactly */
INL_VNNI __m256 gv_accumulate(__m256i s, int32_t o, const uint16_t *dw, float dx, __m256 acc) {
    const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128((const __m128i *)dw)),
                                   _mm256_set1_ps(dx));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s, _mm256_set1_epi32(o))), d, acc);
}

#define GEMV_KERNEL(NAME, BT, DOT, OFF)                                                          \
    TGT_VNNI static void NAME(const uhlm_mm_args *a, int64_t rb, int64_t re) {                   \
        const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK;                 \
        const BT *W = a->W->data;                                                                \
        const int nx = a->n;                                                                     \
        int32_t s[UHLM_MM_ROWWISE_N - 1][GV_ROWS][GV_CHUNK + 8] __attribute__((aligned(32)));    \
        uint16_t h[GV_CHUNK][GV_ROWS] __attribute__((aligned(32)));                              \
        for (int64_t r0 = rb; r0 < re; r0 += GV_ROWS) {                                          \
            const int nr = re - r0 < GV_ROWS ? (int)(re - r0) : GV_ROWS;                         \
            __m256 acc[UHLM_MM_ROWWISE_N - 1];                                                   \
            for (int i = 0; i < nx; i++) acc[i] = _mm256_setzero_ps();                           \
            if (nr < GV_ROWS) memset(h, 0, sizeof h);                                            \
            for (int64_t b0 = 0; b0 < nb; b0 += GV_CHUNK) {                                      \
                const int64_t cnt = nb - b0 < GV_CHUNK ? nb - b0 : GV_CHUNK;                     \
                for (int r = 0; r < GV_ROWS; r++) {                                              \
                    if (r >= nr) {                                                               \
                        for (int i = 0; i < nx; i++) memset(s[i][r], 0, sizeof s[i][r]);         \
                        continue;                                                                \
                    }                                                                            \
                    const BT *w = W + (r0 + r) * nb + b0;                                        \
                    /* the scales are copied inside the dot loop, not in a loop of their own:  \
                     * that loop ran ahead through the row and took every cache miss alone */   \
                    for (int i = 0; i < nx; i++) {                                               \
                        const int8_t *x = a->xq + (size_t)i * cols + b0 * UHLM_QK;               \
                        int64_t b = 0;                                                           \
                        for (; b + 8 <= cnt; b += 8) {                                           \
                            __m256i v[8];                                                        \
                            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {                \
                                if (i == 0) h[b + j][r] = w[b + j].d;                            \
                                v[j] = DOT(w + b + j, x + (b + j) * UHLM_QK);                    \
                            }                                                                    \
                            _mm256_store_si256((__m256i *)(s[i][r] + b), hsum_8x8(v));           \
                        }                                                                        \
                    }                                                                            \
                }                                                                                \
                /* The last cnt % 8 blocks of every row, taken together eight at a time: a     \
                 * row of 9 blocks (288 columns, the small models' width) then costs 9/8 of a   \
                 * tree, not 2. */                                                              \
                const int64_t main = cnt / 8 * 8;                                                \
                /* pass 2 reads whole vectors: the lanes past cnt get defined values */          \
                if (main < cnt)                                                                  \
                    for (int i = 0; i < nx; i++)                                                 \
                        for (int r = 0; r < nr; r++) memset(s[i][r] + cnt, 0, 8 * sizeof(int32_t)); \
                int cr = 0;                                                                      \
                int64_t cb = main;                                                               \
                for (int64_t q = 0; q < nr * (cnt - main); q += 8) {                             \
                    int tr[8];                                                                   \
                    int64_t tb[8];                                                               \
                    for (int j = 0; j < 8; j++) {                                                \
                        if (cr < nr) {                                                           \
                            tr[j] = cr;                                                          \
                            tb[j] = cb;                                                          \
                            h[cb][cr] = W[(r0 + cr) * nb + b0 + cb].d;                           \
                            if (++cb == cnt) {                                                   \
                                cb = main;                                                       \
                                cr++;                                                            \
                            }                                                                    \
                        } else {                                                                 \
                            tr[j] = tr[0];                                                       \
                            tb[j] = tb[0];                                                       \
                        }                                                                        \
                    }                                                                            \
                    for (int i = 0; i < nx; i++) {                                               \
                        const int8_t *x = a->xq + (size_t)i * cols + b0 * UHLM_QK;               \
                        __m256i v[8];                                                            \
                        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) v[j] =               \
                            DOT(W + (r0 + tr[j]) * nb + b0 + tb[j], x + tb[j] * UHLM_QK);        \
                        int32_t o[8] __attribute__((aligned(32)));                               \
                        _mm256_store_si256((__m256i *)o, hsum_8x8(v));                           \
                        /* past the end, lanes repeat the first pair: its value, stored again */ \
                        for (int j = 0; j < 8; j++) s[i][tr[j]][tb[j]] = o[j];                   \
                    }                                                                            \
                }                                                                                \
                for (int i = 0; i < nx; i++) {                                                   \
                    const float *xd = a->xd + (size_t)i * nb + b0;                               \
                    const int32_t *xs = a->xs + (size_t)i * nb + b0;                             \
                    __m256 l = acc[i];                                                           \
                    for (int64_t b = 0; b < cnt; b += 8) {                                       \
                        __m256i v[8];                                                            \
                        _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) v[r] =               \
                            _mm256_load_si256((const __m256i *)(s[i][r] + b));                   \
                        transpose_8x8(v);                                                        \
                        if (cnt - b >= 8) {                                                      \
                            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                  \
                                l = gv_accumulate(v[j], (OFF) * xs[b + j], h[b + j], xd[b + j], l); \
                        } else {                                                                 \
                            for (int j = 0; j < cnt - b; j++)                                    \
                                l = gv_accumulate(v[j], (OFF) * xs[b + j], h[b + j], xd[b + j], l); \
                        }                                                                        \
                    }                                                                            \
                    acc[i] = l;                                                                  \
                }                                                                                \
            }                                                                                    \
            const __mmask8 m = (__mmask8)((1u << nr) - 1);                                       \
            for (int i = 0; i < nx; i++)                                                         \
                _mm256_mask_storeu_ps(a->Y + (size_t)i * rows + r0, m, acc[i]);                  \
        }                                                                                        \
    }

GEMV_KERNEL(gemv_q8_0_vnni, uhlm_block_q8_0, gv_dot_q8_0, -128)
GEMV_KERNEL(gemv_q4_0_vnni, uhlm_block_q4_0, gv_dot_q4_0, -8)

PACKED_KERNEL(mm_q8_0_vnni, pack_q8_0, uhlm_block_q8_0, -128, gemv_q8_0_vnni)
PACKED_KERNEL(mm_q4_0_vnni, pack_q4_0, uhlm_block_q4_0, -8, gemv_q4_0_vnni)

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
