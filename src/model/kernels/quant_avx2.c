/* quant_avx2.c: AVX2 + FMA + F16C matmul kernels and activation quantization (see
 * quant_internal.h for the tiling contract).
 *
 * Functions carry target attributes instead of the file getting -mavx2, so the library is
 * built with the common flags, runs on any x86-64 and only calls these after
 * uhlm_simd_supported says the CPU has them. Off x86-64 the file provides no kernels.
 *
 * Per output element the summation order is fixed by (cols, type) alone: one 8-lane
 * accumulator walked in column order, reduced by hsum8, plus a scalar tail for F32/F16. The
 * tile shape (how many weight and activation rows share a pass) never changes it, which is
 * what makes results independent of thread count and batch composition. */
#include "model/kernels/quant_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline, target("avx2,fma,f16c")))

INL float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Every kernel below is a micro-kernel over R weight rows (R = 1 or 4, a constant after
 * inlining) plus a driver that picks the row-wise walk for small n (UHLM_MM_ROWWISE_N) and the
 * four-row walk otherwise. A micro-kernel gives each (weight row, activation row) pair its
 * own accumulator, so both walks produce the same bits. */

/* ---------------------------------------------------------------- F32 / F16 */

/* R weight rows x rx (<= 2) activation rows. Each element owns two accumulators (even and
 * odd 8-column steps), so even one row against one activation has two FMA chains in flight;
 * one chain would cap F16 at 16 bytes per FMA latency, below DRAM speed. Per element: 16-column
 * steps in order, then at most one 8-column step into the first accumulator, hsum8 of their
 * sum, then the scalar tail. In the four-row walk only rx = 1 fits the 16 registers, which
 * costs little: the loads, not the FMAs, bound that loop. */
#define FLOAT_TILE(NAME, WT, LOADW, LOADW1)                                                      \
    INL void NAME(const WT *const *w, const int R, const float *x, int64_t cols, const int rx,   \
                  float *out, int64_t pf) {                                                      \
        __m256 acc[2][UHLM_MM_TILE][2];                                                          \
        _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++)                                     \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[i][r][0] = acc[i][r][1] =    \
                _mm256_setzero_ps();                                                             \
        int64_t k = 0;                                                                           \
        for (; k + 16 <= cols; k += 16) {                                                        \
            if (pf && ((k * (int64_t)sizeof(WT)) & 63) == 0)                                     \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                              \
                    _mm_prefetch((const char *)(w[r] + k) + pf, _MM_HINT_T0);                    \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                \
                __m256 wv[UHLM_MM_TILE];                                                         \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) wv[r] =                      \
                    LOADW(w[r] + k + 8 * h);                                                     \
                _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++) {                           \
                    const __m256 xv = _mm256_loadu_ps(x + (size_t)i * cols + k + 8 * h);         \
                    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[i][r][h] =           \
                        _mm256_fmadd_ps(wv[r], xv, acc[i][r][h]);                                \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        if (k + 8 <= cols) {                                                                     \
            _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++) {                               \
                const __m256 xv = _mm256_loadu_ps(x + (size_t)i * cols + k);                     \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[i][r][0] =               \
                    _mm256_fmadd_ps(LOADW(w[r] + k), xv, acc[i][r][0]);                          \
            }                                                                                    \
            k += 8;                                                                              \
        }                                                                                        \
        _Pragma("GCC unroll 2") for (int i = 0; i < rx; i++) {                                   \
            const float *xi = x + (size_t)i * cols;                                              \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                \
                float s = hsum8(_mm256_add_ps(acc[i][r][0], acc[i][r][1]));                      \
                for (int64_t kk = k; kk < cols; kk++) s += LOADW1(w[r][kk]) * xi[kk];           \
                out[i * R + r] = s;                                                              \
            }                                                                                    \
        }                                                                                        \
    }

#define LOAD_F32(p) _mm256_loadu_ps(p)
#define LOAD1_F32(v) (v)
#define LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define LOAD1_F16(v) _cvtsh_ss(v)

FLOAT_TILE(tile_f32, float, LOAD_F32, LOAD1_F32)
FLOAT_TILE(tile_f16, uint16_t, LOAD_F16, LOAD1_F16)

/* All n activation rows against R weight rows starting at row0; pairs of activation rows
 * share weight loads when R = 1 (registers allow it), single rows when R = 4. */
#define FLOAT_ROWS(TILE, w, R, row0, nr, pf)                                                     \
    do {                                                                                         \
        float o[2 * UHLM_MM_TILE];                                                               \
        int i = 0;                                                                               \
        if ((R) == 1)                                                                            \
            for (; i + 2 <= a->n; i += 2) {                                                      \
                TILE(w, R, a->X + (size_t)i * cols, cols, 2, o, 0);                              \
                uhlm_mm_store_rows(a, row0, i, nr, o);                                               \
                uhlm_mm_store_rows(a, row0, i + 1, nr, o + 1);                                       \
            }                                                                                    \
        for (; i < a->n; i++) {                                                                  \
            TILE(w, R, a->X + (size_t)i * cols, cols, 1, o, i == 0 ? (pf) : 0);                  \
            uhlm_mm_store_rows(a, row0, i, nr, o);                                                   \
        }                                                                                        \
    } while (0)

UHLM_FLOAT_KERNEL(mm_f32_tiles_avx2, tile_f32, float)
UHLM_FLOAT_KERNEL(mm_f16_tiles_avx2, tile_f16, uint16_t)

/* One-token (GEMV) walk of F32 / F16, below UHLM_MM_ROWWISE_N activation rows: weight rows in
 * memory order (as the tile walk's row-by-row mode), each row's accumulators exactly as tile_*
 * computes them with R = 1 and rx = 1, and the hsum8 of eight rows at once by a transpose-add
 * tree doing hsum8's very additions (s = lo + hi; [s0 + s2, s1 + s3]; their sum; float
 * addition is commutative, so the operand order inside one addition does not matter), then
 * each row's scalar tail in order. On short rows the per-output reduction was a large part of
 * the work; the bits equal the tile walk's, so n = 1 and batched calls agree. */
INL __m256 hsum8x8(const __m256 *v) {
    __m256 u[4], b[2];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) u[j] = _mm256_add_ps(
        _mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x20),
        _mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x31));
    _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) b[k] = _mm256_add_ps(
        _mm256_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
        _mm256_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 c = _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* acc0 + acc1 of tile_* with R = 1 and rx = 1, before hsum8; *k gets where the tail starts */
#define ROW_SUM(NAME, WT, LOADW)                                                                 \
    INL __m256 NAME(const WT *w, const float *x, int64_t cols, int64_t *kt) {                    \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                               \
        int64_t k = 0;                                                                           \
        for (; k + 16 <= cols; k += 16) {                                                        \
            a0 = _mm256_fmadd_ps(LOADW(w + k), _mm256_loadu_ps(x + k), a0);                      \
            a1 = _mm256_fmadd_ps(LOADW(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);              \
        }                                                                                        \
        if (k + 8 <= cols) {                                                                     \
            a0 = _mm256_fmadd_ps(LOADW(w + k), _mm256_loadu_ps(x + k), a0);                      \
            k += 8;                                                                              \
        }                                                                                        \
        *kt = k;                                                                                 \
        return _mm256_add_ps(a0, a1);                                                            \
    }

ROW_SUM(row_sum_f32, float, LOAD_F32)
ROW_SUM(row_sum_f16, uint16_t, LOAD_F16)

#define GEMV_FLOAT(NAME, WT, ROWSUM, LOADW1, TILES)                                              \
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
            for (int i = 0; i < a->n; i++) {                                                     \
                const float *x = a->X + (size_t)i * (size_t)cols;                                \
                __m256 v[8];                                                                     \
                int64_t kt = cols;                                                               \
                for (int r = 0; r < 8; r++) /* past the last row, lanes repeat it; not stored */ \
                    v[r] = ROWSUM(W + (size_t)(r < nr ? r0 + r : re - 1) * (size_t)cols, x,      \
                                  cols, &kt);                                                    \
                float o[8] __attribute__((aligned(32)));                                         \
                _mm256_store_ps(o, hsum8x8(v));                                                  \
                float *y = a->Y + (size_t)i * (size_t)rows + r0;                                 \
                for (int r = 0; r < nr; r++) {                                                   \
                    const WT *w = W + (size_t)(r0 + r) * (size_t)cols;                           \
                    float s = o[r];                                                              \
                    for (int64_t kk = kt; kk < cols; kk++) s += LOADW1(w[kk]) * x[kk];           \
                    y[r] = s;                                                                    \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }

GEMV_FLOAT(mm_f32_avx2, float, row_sum_f32, LOAD1_F32, mm_f32_tiles_avx2)
GEMV_FLOAT(mm_f16_avx2, uint16_t, row_sum_f16, LOAD1_F16, mm_f16_tiles_avx2)

/* ---------------------------------------------------------------- Q8_0 / Q4_0 */

/* Weight scales are converted from fp16 ahead of the dot loop, SCALE_CHUNK blocks at a time,
 * into ws[R * b + r]: with four rows the inner loop then needs one multiply by the activation
 * scale for all of them and a broadcast per row, instead of a load, an F16C conversion, a
 * multiply and a broadcast per row. d_w * d_x is the same product either way. */
#define SCALE_CHUNK 256

INL void convert_scales(const void *const *w, size_t bsize, const int R, int64_t b0, int64_t cnt,
                        float *ws) {
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
        for (int r = 0; r < 4; r++) memcpy(&h[r], (const uint8_t *)w[r] + (size_t)(b0 + b) * bsize, 2);
        const __m128i hv = _mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0);
        _mm_store_ps(ws + 4 * b, _mm_cvtph_ps(hv));
    }
}

/* d[r] = ws[R * b + r] * dx for the R rows */
INL void block_scales(const float *ws, const int R, float dx, float *d) {
    if (R == 1)
        d[0] = ws[0] * dx;
    else
        _mm_store_ps(d, _mm_mul_ps(_mm_load_ps(ws), _mm_set1_ps(dx)));
}

/* Per block and row, the integer lanes hold exact sums over 4 consecutive elements (the
 * maddubs + madd pairing); the AVX-512 VNNI kernels produce the same lanes, so both levels
 * agree bit for bit. Then acc += (d_w * d_x) * lanes, as llama.cpp's AVX2 dot does. */
/* One block's 8 int32 lanes, each the exact dot of 4 consecutive weights and activations
 * x; shared by the tile walk and the one-token rows, which therefore agree bit for bit. */
INL __m256i q8_0_lanes(const uhlm_block_q8_0 *w, __m256i x) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)w->qs);
    /* maddubs wants one unsigned operand: |q| times x with q's sign */
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)),
                             _mm256_set1_epi16(1));
}

/* Nibbles n in [0, 15] go straight into maddubs as the unsigned operand; the -8 offset comes
 * off as c = maddubs(8, x), computed once per activation block by the caller and exact in
 * int16. The 16 bytes are broadcast to both halves, the upper half shifted by 4, then masked:
 * one load-port broadcast and two ALU ops instead of shift, insert and mask. */
INL __m256i q4_0_lanes(const uhlm_block_q4_0 *w, __m256i x, __m256i c) {
    const __m256i u = _mm256_and_si256(
        _mm256_srlv_epi64(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->qs)),
                          _mm256_setr_epi64x(0, 0, 4, 4)),
        _mm256_set1_epi8(0x0f));
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(u, x), c),
                             _mm256_set1_epi16(1));
}

INL void q8_0_blocks(const void *const *wv, const int R, const int8_t *xq, const float *xd,
                     const float *ws, int64_t b0, int64_t b1, __m256 *acc, int64_t pf) {
    const uhlm_block_q8_0 *const *w = (const uhlm_block_q8_0 *const *)wv;
    /* a local copy lets the accumulators live in registers for the whole loop */
    __m256 l[UHLM_MM_TILE];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) l[r] = acc[r];
    for (int64_t b = b0; b < b1; b++) {
        const __m256i x = _mm256_load_si256((const __m256i *)(xq + b * UHLM_QK));
        float d[4] __attribute__((aligned(16)));
        block_scales(ws + R * (b - b0), R, xd[b], d);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            if (pf) _mm_prefetch((const char *)&w[r][b] + pf, _MM_HINT_T0);
            const __m256i p = q8_0_lanes(&w[r][b], x);
            l[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + r), _mm256_cvtepi32_ps(p), l[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = l[r];
}

INL void q4_0_blocks(const void *const *wv, const int R, const int8_t *xq, const float *xd,
                     const float *ws, int64_t b0, int64_t b1, __m256 *acc, int64_t pf) {
    const uhlm_block_q4_0 *const *w = (const uhlm_block_q4_0 *const *)wv;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 l[UHLM_MM_TILE];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) l[r] = acc[r];
    for (int64_t b = b0; b < b1; b++) {
        const __m256i x = _mm256_load_si256((const __m256i *)(xq + b * UHLM_QK));
        const __m256i c = _mm256_maddubs_epi16(eight, x);
        float d[4] __attribute__((aligned(16)));
        block_scales(ws + R * (b - b0), R, xd[b], d);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            if (pf && !(b & 1)) _mm_prefetch((const char *)&w[r][b] + pf, _MM_HINT_T0);
            const __m256i p = q4_0_lanes(&w[r][b], x, c);
            l[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + r), _mm256_cvtepi32_ps(p), l[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = l[r];
}

/* One weight row against one activation row, for the one-token walk (fewer than
 * UHLM_MM_ROWWISE_N activation rows): the operations of q8_0_blocks / q4_0_blocks with R = 1,
 * in the same order, so the same bits, but with each weight scale converted in the loop and
 * the scale product kept in a register. With the pre-pass of convert_scales and the product's
 * trip through the stack a block took about 15 uops, 5-6 cycles, where the one FMA chain a row
 * allows needs 4: 110M Q8_0 ran at 21 GB/s, Q4_0 at 11 (`uhlm bench gemv --simd avx2`). */
INL float q8_0_row(const uhlm_block_q8_0 *w, const int8_t *xq, const float *xd, int64_t nb) {
    __m256 l = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i p =
            q8_0_lanes(&w[b], _mm256_load_si256((const __m256i *)(xq + b * UHLM_QK)));
        const float d = _cvtsh_ss(w[b].d) * xd[b];
        l = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), l);
    }
    return hsum8(l);
}

INL float q4_0_row(const uhlm_block_q4_0 *w, const int8_t *xq, const float *xd, int64_t nb) {
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 l = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i x = _mm256_load_si256((const __m256i *)(xq + b * UHLM_QK));
        const __m256i p = q4_0_lanes(&w[b], x, _mm256_maddubs_epi16(eight, x));
        const float d = _cvtsh_ss(w[b].d) * xd[b];
        l = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), l);
    }
    return hsum8(l);
}

/* All n activation rows against R weight rows starting at row0. Weight scales are converted
 * once when the row fits one chunk (the usual case), else once per chunk and activation row. */
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
            uhlm_mm_store_rows(a, row0, i, nr, o);                                                   \
        }                                                                                        \
    } while (0)

#define QUANT_KERNEL(NAME, BLOCKS, ROW, BT)                                                      \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
        const int64_t cols = a->W->cols, nb = cols / UHLM_QK;                                    \
        const size_t row_bytes = (size_t)nb * sizeof(BT);                                        \
        const int64_t pf = uhlm_mm_prefetch_distance((int64_t)row_bytes);                        \
        float ws[UHLM_MM_TILE * SCALE_CHUNK] __attribute__((aligned(32)));                       \
        for (int64_t t = t0; t < t1; t++) {                                                      \
            const void *w[UHLM_MM_TILE];                                                         \
            const int nr = uhlm_mm_tile_rows(a, t, row_bytes, w);                                    \
            if (a->n < UHLM_MM_ROWWISE_N) {                                                      \
                for (int r = 0; r < nr; r++)                                                     \
                    for (int i = 0; i < a->n; i++) {                                             \
                        const float o = ROW((const BT *)w[r], a->xq + (size_t)i * cols,          \
                                            a->xd + (size_t)i * nb, nb);                         \
                        uhlm_mm_store_rows(a, t * UHLM_MM_TILE + r, i, 1, &o);                   \
                    }                                                                            \
            } else {                                                                             \
                QUANT_ROWS(BLOCKS, BT, w, UHLM_MM_TILE, t * UHLM_MM_TILE, nr, pf);               \
            }                                                                                    \
        }                                                                                        \
    }

QUANT_KERNEL(mm_q8_0_avx2, q8_0_blocks, q8_0_row, uhlm_block_q8_0)
QUANT_KERNEL(mm_q4_0_avx2, q4_0_blocks, q4_0_row, uhlm_block_q4_0)

/* ---------------------------------------------------------------- Q8_G */

/* cols % group == 0 and group % 8 == 0: every row starts on a group boundary, so groups are
 * whole 8-element steps. Per group an 8-lane float sum, then acc += scale * sum. */
INL void q8_g_dot(const int8_t *const *w, const float *const *s, const int R, const float *x,
                  int64_t G, int64_t gpr, float *out, int64_t pf) {
    __m256 acc[UHLM_MM_TILE];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < gpr; g++) {
        __m256 ga[UHLM_MM_TILE];
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ga[r] = _mm256_setzero_ps();
        for (int64_t k = g * G; k < (g + 1) * G; k += 8) {
            if (pf && (k & 63) == 0)
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
                    _mm_prefetch((const char *)(w[r] + k) + pf, _MM_HINT_T0);
            const __m256 xv = _mm256_loadu_ps(x + k);
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
                const __m256 wv = _mm256_cvtepi32_ps(
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w[r] + k))));
                ga[r] = _mm256_fmadd_ps(wv, xv, ga[r]);
            }
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r] =
            _mm256_fmadd_ps(_mm256_set1_ps(s[r][g]), ga[r], acc[r]);
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] = hsum8(acc[r]);
}

TGT static void mm_q8_g_avx2(const uhlm_mm_args *a, int64_t t0, int64_t t1) {
    const int64_t cols = a->W->cols, G = a->W->group, gpr = cols / G;
    const int64_t pf = uhlm_mm_prefetch_distance(cols);
    for (int64_t t = t0; t < t1; t++) {
        const void *wp[UHLM_MM_TILE];
        const int nr = uhlm_mm_tile_rows(a, t, (size_t)cols, wp);
        const int8_t *w[UHLM_MM_TILE];
        const float *s[UHLM_MM_TILE];
        for (int r = 0; r < UHLM_MM_TILE; r++) {
            w[r] = wp[r];
            /* rows start on group boundaries: row k's scales begin at k * gpr */
            s[r] = a->W->scales + (w[r] - (const int8_t *)a->W->data) / cols * gpr;
        }
        float o[UHLM_MM_TILE];
        if (a->n < UHLM_MM_ROWWISE_N) {
            for (int r = 0; r < nr; r++)
                for (int i = 0; i < a->n; i++) {
                    q8_g_dot(w + r, s + r, 1, a->X + (size_t)i * cols, G, gpr, o, 0);
                    uhlm_mm_store_rows(a, t * UHLM_MM_TILE + r, i, 1, o);
                }
        } else {
            for (int i = 0; i < a->n; i++) {
                q8_g_dot(w, s, UHLM_MM_TILE, a->X + (size_t)i * cols, G, gpr, o, i == 0 ? pf : 0);
                uhlm_mm_store_rows(a, t * UHLM_MM_TILE, i, nr, o);
            }
        }
    }
}

/* ---------------------------------------------------------------- activations */

/* Bit-identical to uhlm_quantize_block_q8_0: the same amax (max is exact in any order), the
 * same scalar d and 1/d, the same clamp, and roundf done exactly as truncate-then-adjust
 * (round-half-away-from-zero, which _mm256_round_ps has no mode for). */
TGT static void quantize_x_avx2(const float *x, int8_t *q, float *d, int64_t nb) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * UHLM_QK;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            /* NaN in the first operand yields the second: NaNs are ignored, as in the
             * scalar `a > amax ? a : amax` */
            m = _mm256_max_ps(_mm256_andnot_ps(signbit, v[k]), m);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float dd = amax / 127.0f;
        const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
        d[b] = _cvtsh_ss(_cvtss_sh(dd, _MM_FROUND_TO_NEAREST_INT));
        const __m256 idv = _mm256_set1_ps(id);
        __m256i iv[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_mul_ps(v[k], idv);
            t = _mm256_min_ps(_mm256_max_ps(t, lo), hi); /* max(NaN, lo) = lo, like fmaxf */
            const __m256 tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_andnot_ps(signbit, _mm256_sub_ps(t, tr));
            const __m256 step = _mm256_or_ps(one, _mm256_and_ps(t, signbit));
            const __m256 adj = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), step);
            iv[k] = _mm256_cvttps_epi32(_mm256_add_ps(tr, adj));
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]),
                                       _mm256_packs_epi32(iv[2], iv[3]));
        p = _mm256_permutevar8x32_epi32(p, perm);
        _mm256_storeu_si256((__m256i *)(q + b * UHLM_QK), p);
    }
}

void uhlm_kernels_avx2(uhlm_kernels *k) {
    k->f32 = mm_f32_avx2;
    k->f16 = mm_f16_avx2;
    k->q8_0 = mm_q8_0_avx2;
    k->q4_0 = mm_q4_0_avx2;
    k->q8_g_aligned = mm_q8_g_avx2;
    k->quantize_x = quantize_x_avx2;
    uhlm_kernels_legacy_avx2(k);
}

#else

void uhlm_kernels_avx2(uhlm_kernels *k) { (void)k; }

#endif
