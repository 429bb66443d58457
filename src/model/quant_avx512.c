/* quant_avx512.c: AVX-512 matmul kernels (see quant_internal.h for the tiling contract).
 *
 * F32 / F16: 16-lane FMA with masked tails, two accumulators per output element, four weight
 * rows by two activation rows per pass in the batched walk (16 accumulators of the 32 zmm
 * registers), so batched calls reuse each loaded weight vector twice. Q8_0 / Q4_0: 256-bit VNNI (vpdpbusd) when the CPU has it; the
 * integer lanes are the same exact 4-element sums as the AVX2 kernels make, so the two levels
 * give identical results for quantized types. Without VNNI the AVX2 quantized kernels are
 * kept. Q8_G and the activation quantizer come from the AVX2 file.
 *
 * Target attributes on the functions, not file flags, keep the binary runnable on any
 * x86-64; quant.c calls these only when uhlm_simd_supported(UHLM_SIMD_AVX512). */
#include "model/quant_internal.h"

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

static inline int tile_rows(const uhlm_mm_args *a, int64_t t, size_t row_bytes,
                            const void *w[UHLM_MM_TILE]) {
    const int64_t rows = a->W->rows, r0 = t * UHLM_MM_TILE;
    for (int r = 0; r < UHLM_MM_TILE; r++) {
        int64_t rr = r0 + r < rows ? r0 + r : rows - 1;
        w[r] = (const uint8_t *)a->W->data + (size_t)rr * row_bytes;
    }
    return rows - r0 < UHLM_MM_TILE ? (int)(rows - r0) : UHLM_MM_TILE;
}

static inline void store_rows(const uhlm_mm_args *a, int64_t row0, int i, int nr, const float *o) {
    float *y = a->Y + (size_t)i * (size_t)a->W->rows + (size_t)row0;
    for (int r = 0; r < nr; r++) y[r] = o[r];
}

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
            store_rows(a, row0, i, nr, o);                                                       \
            store_rows(a, row0, i + 1, nr, o + (R));                                             \
        }                                                                                        \
        if (i < a->n) {                                                                          \
            TILE(w, R, a->X + (size_t)i * cols, cols, 1, o, i == 0 ? (pf) : 0);                  \
            store_rows(a, row0, i, nr, o);                                                       \
        }                                                                                        \
    } while (0)

#define FLOAT_KERNEL(NAME, TILE, WT)                                                             \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
        const int64_t cols = a->W->cols;                                                         \
        const size_t row_bytes = (size_t)cols * sizeof(WT);                                      \
        const int64_t pf = uhlm_mm_prefetch_distance((int64_t)row_bytes);                        \
        for (int64_t t = t0; t < t1; t++) {                                                      \
            const void *wp[UHLM_MM_TILE];                                                        \
            const int nr = tile_rows(a, t, row_bytes, wp);                                       \
            const WT *w[UHLM_MM_TILE];                                                           \
            for (int r = 0; r < UHLM_MM_TILE; r++) w[r] = wp[r];                                 \
            if (a->n < UHLM_MM_ROWWISE_N) {                                                      \
                for (int r = 0; r < nr; r++)                                                     \
                    FLOAT_ROWS(TILE, (w + r), 1, t * UHLM_MM_TILE + r, 1, 0);                    \
            } else {                                                                             \
                FLOAT_ROWS(TILE, w, UHLM_MM_TILE, t * UHLM_MM_TILE, nr, pf);                     \
            }                                                                                    \
        }                                                                                        \
    }

FLOAT_KERNEL(mm_f32_avx512, tile_f32, float)
FLOAT_KERNEL(mm_f16_avx512, tile_f16, uint16_t)

/* ---------------------------------------------------------------- Q8_0 / Q4_0 with VNNI */

INL_VNNI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Weight scales converted ahead of the dot loop, as in quant_avx2.c. */
#define SCALE_CHUNK 256

INL_VNNI void convert_scales(const void *const *w, size_t bsize, const int R, int64_t b0,
                             int64_t cnt, float *ws) {
    if (R == 1) {
        const uint8_t *p = (const uint8_t *)w[0] + (size_t)b0 * bsize;
        for (int64_t b = 0; b < cnt; b++) {
            uint16_t h;
            memcpy(&h, p + (size_t)b * bsize, 2);
            ws[b] = _cvtsh_ss(h);
        }
        return;
    }
    for (int64_t b = 0; b < cnt; b++) {
        uint16_t h[4];
        for (int r = 0; r < 4; r++)
            memcpy(&h[r], (const uint8_t *)w[r] + (size_t)(b0 + b) * bsize, 2);
        const __m128i hv =
            _mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0);
        _mm_store_ps(ws + 4 * b, _mm_cvtph_ps(hv));
    }
}

INL_VNNI void block_scales(const float *ws, const int R, float dx, float *d) {
    if (R == 1)
        d[0] = ws[0] * dx;
    else
        _mm_store_ps(d, _mm_mul_ps(_mm_load_ps(ws), _mm_set1_ps(dx)));
}

/* vpdpbusd multiplies unsigned by signed bytes. Q8_0 weights are signed, so they go in as
 * q + 128 (q ^ 0x80) and 128 * sum(x) comes off through the accumulator's start value, which
 * is computed once per activation block. Same exact lanes as the AVX2 kernel. */
INL_VNNI void q8_0_blocks(const void *const *wv, const int R, const int8_t *xq, const float *xd,
                          const float *ws, int64_t b0, int64_t b1, __m256 *acc, int64_t pf) {
    const uhlm_block_q8_0 *const *w = (const uhlm_block_q8_0 *const *)wv;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256 l[UHLM_MM_TILE];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) l[r] = acc[r];
    for (int64_t b = b0; b < b1; b++) {
        const __m256i x = _mm256_load_si256((const __m256i *)(xq + b * UHLM_QK));
        const __m256i c = _mm256_sub_epi32(
            _mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, x));
        float d[4] __attribute__((aligned(16)));
        block_scales(ws + R * (b - b0), R, xd[b], d);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            if (pf) _mm_prefetch((const char *)&w[r][b] + pf, _MM_HINT_T0);
            const __m256i q = _mm256_loadu_si256((const __m256i *)w[r][b].qs);
            const __m256i p = _mm256_dpbusd_epi32(c, _mm256_xor_si256(q, bias), x);
            l[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + r), _mm256_cvtepi32_ps(p), l[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = l[r];
}

/* Nibbles are already unsigned; the -8 offset is -8 * sum(x), again folded into the start. */
INL_VNNI void q4_0_blocks(const void *const *wv, const int R, const int8_t *xq, const float *xd,
                          const float *ws, int64_t b0, int64_t b1, __m256 *acc, int64_t pf) {
    const uhlm_block_q4_0 *const *w = (const uhlm_block_q4_0 *const *)wv;
    const __m256i m4 = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    /* unpack: the 16 bytes broadcast to both halves, the upper half shifted by 4, then masked */
    const __m256i hi4 = _mm256_setr_epi64x(0, 0, 4, 4);
    __m256 l[UHLM_MM_TILE];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) l[r] = acc[r];
    for (int64_t b = b0; b < b1; b++) {
        const __m256i x = _mm256_load_si256((const __m256i *)(xq + b * UHLM_QK));
        const __m256i c = _mm256_sub_epi32(
            _mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), eight, x));
        float d[4] __attribute__((aligned(16)));
        block_scales(ws + R * (b - b0), R, xd[b], d);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            if (pf && !(b & 1)) _mm_prefetch((const char *)&w[r][b] + pf, _MM_HINT_T0);
            const __m256i u = _mm256_and_si256(
                _mm256_srlv_epi64(_mm256_broadcastsi128_si256(
                                      _mm_loadu_si128((const __m128i *)w[r][b].qs)),
                                  hi4),
                m4);
            const __m256i p = _mm256_dpbusd_epi32(c, u, x);
            l[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + r), _mm256_cvtepi32_ps(p), l[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = l[r];
}

#define QUANT_ROWS(BLOCKS, BT, w, R, row0, nr, pf)                                               \
    do {                                                                                         \
        for (int i = 0; i < a->n; i++) {                                                         \
            const int8_t *xq = a->xq + (size_t)i * cols;                                         \
            const float *xd = a->xd + (size_t)i * nb;                                            \
            __m256 acc[UHLM_MM_TILE];                                                            \
            for (int r = 0; r < (R); r++) acc[r] = _mm256_setzero_ps();                          \
            for (int64_t b0 = 0; b0 < nb; b0 += SCALE_CHUNK) {                                   \
                const int64_t b1 = nb - b0 < SCALE_CHUNK ? nb : b0 + SCALE_CHUNK;                \
                if (i == 0 || nb > SCALE_CHUNK)                                                  \
                    convert_scales(w, sizeof(BT), R, b0, b1 - b0, ws);                           \
                if (i == 0 && (pf))                                                              \
                    BLOCKS(w, R, xq, xd, ws, b0, b1, acc, pf);                                   \
                else                                                                             \
                    BLOCKS(w, R, xq, xd, ws, b0, b1, acc, 0);                                    \
            }                                                                                    \
            float o[UHLM_MM_TILE];                                                               \
            for (int r = 0; r < (R); r++) o[r] = hsum8(acc[r]);                                  \
            store_rows(a, row0, i, nr, o);                                                       \
        }                                                                                        \
    } while (0)

#define QUANT_KERNEL(NAME, BLOCKS, BT)                                                           \
    TGT_VNNI static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                   \
        const int64_t cols = a->W->cols, nb = cols / UHLM_QK;                                    \
        const size_t row_bytes = (size_t)nb * sizeof(BT);                                        \
        const int64_t pf = uhlm_mm_prefetch_distance((int64_t)row_bytes);                        \
        float ws[UHLM_MM_TILE * SCALE_CHUNK] __attribute__((aligned(32)));                       \
        for (int64_t t = t0; t < t1; t++) {                                                      \
            const void *w[UHLM_MM_TILE];                                                         \
            const int nr = tile_rows(a, t, row_bytes, w);                                        \
            if (a->n < UHLM_MM_ROWWISE_N) {                                                      \
                for (int r = 0; r < nr; r++)                                                     \
                    QUANT_ROWS(BLOCKS, BT, (w + r), 1, t * UHLM_MM_TILE + r, 1, 0);              \
            } else {                                                                             \
                QUANT_ROWS(BLOCKS, BT, w, UHLM_MM_TILE, t * UHLM_MM_TILE, nr, pf);               \
            }                                                                                    \
        }                                                                                        \
    }

QUANT_KERNEL(mm_q8_0_vnni, q8_0_blocks, uhlm_block_q8_0)
QUANT_KERNEL(mm_q4_0_vnni, q4_0_blocks, uhlm_block_q4_0)

void uhlm_kernels_avx512(uhlm_kernels *k, int has_vnni) {
    k->f32 = mm_f32_avx512;
    k->f16 = mm_f16_avx512;
    if (has_vnni) {
        k->q8_0 = mm_q8_0_vnni;
        k->q4_0 = mm_q4_0_vnni;
    }
}

#else

void uhlm_kernels_avx512(uhlm_kernels *k, int has_vnni) {
    (void)k;
    (void)has_vnni;
}

#endif
