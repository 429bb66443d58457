/* quant_internal.h: what quant.c shares with its SIMD kernel files (quant_avx2.c,
 * quant_avx512.c). Not installed; nothing outside src/model/kernels/quant*.c includes it.
 *
 * A matmul is cut into tiles of UHLM_MM_TILE consecutive weight rows, the unit of parallel
 * work. A kernel computes whole tiles, for all n activation rows, so each weight row is read
 * from memory once per call and then reused from L1. In the four-row walk, when the last tile
 * is short, kernels point the missing rows at the last real row and drop their results. Each
 * output element has its own accumulator walked in a fixed order, whatever the walk, so its
 * value does not depend on where tiles, thread ranges or batch boundaries fall. */
#ifndef UHLM_QUANT_INTERNAL_H
#define UHLM_QUANT_INTERNAL_H

#include <stdint.h>

#include "model/kernels/quant.h"

#define UHLM_MM_TILE 4

/* With fewer activation rows than this, kernels walk a tile one weight row at a time. Memory
 * then sees one sequential stream, which the hardware prefetcher follows at full speed; four
 * interleaved row streams lost up to a third of the bandwidth when rows are a few KB (measured
 * on Zen 4: 16-18 vs 23-26 GB/s). With more activation rows the work per weight byte is high
 * enough that sharing activation loads across four weight rows matters more. The order of the
 * sums per output element is the same either way. */
#ifndef UHLM_MM_ROWWISE_N
#define UHLM_MM_ROWWISE_N 4
#endif

/* Q8_0 / Q4_0 arithmetic of the scalar and AVX-512 VNNI kernels: per output element and
 * block, the exact integer dot s_b of weight and activation values, then one multiply-add
 * acc += (float)s_b * (d_w * d_x) over blocks in order, starting from 0 (fused in the VNNI
 * kernel, separate in the scalar one, so those two differ by that rounding only). Integer
 * sums are exact in any order, so a kernel may compute s_b with rows or columns in vector
 * lanes as suits its data layout; one float operation per block and element (instead of one
 * per 8-lane partial) is what lets the VNNI kernel keep 16 rows' results in one register, and
 * its results do not depend on the batch size or the thread count. The AVX2 kernel keeps
 * 8-lane float partials per block instead (reducing each block to one integer costs shuffles
 * that slowed AVX2 decode by 15-25%), so its results differ by float rounding too. */

/* Q4_1 / Q5_0 / Q5_1 (qlegacy*.c): one arithmetic for the AVX2 and AVX-512 VNNI kernels and
 * all their walks (exact block dots, four fma chains by block % 4, the Q8_1 min term; see
 * qlegacy_simd.h), so those two levels agree bit for bit; the scalar kernel accumulates in
 * llama.cpp's order and differs by float rounding. test_quant_legacy holds every level to
 * 2e-6 of the sum of magnitudes (of the block dots' 4-element partial sums) against an exact
 * double evaluation of llama.cpp's formula. */

/* In the four-row walk, kernels software-prefetch the next tile when a tile is at most this
 * many bytes (short rows: Q4_0 at 4096 columns gained ~40%); large tiles stream well enough
 * and prefetching them a whole tile ahead would only evict L1. */
#define UHLM_MM_PREFETCH_MAX (32 * 1024)

static inline int64_t uhlm_mm_prefetch_distance(int64_t row_bytes) {
    const int64_t tile = row_bytes * UHLM_MM_TILE;
    return tile <= UHLM_MM_PREFETCH_MAX ? tile : 0;
}

typedef struct uhlm_mm_args {
    const uhlm_tensor *W;
    const float *X; /* n rows of W->cols floats */
    int n;
    float *Y; /* Y[i * W->rows + r] */
    /* Q8_0 / Q4_0 only: X quantized to Q8_0 blocks, split into values (n rows of W->cols
     * int8, 32-byte aligned rows) and scales (n rows of W->cols / 32 floats, already rounded
     * through fp16 exactly as the block would store them). */
    const int8_t *xq;
    const float *xd;
    /* Q8_0 / Q4_0 only: the exact integer sum of each xq block (n rows of W->cols / 32),
     * which lets a kernel feed weights to vpdpbusd as its unsigned operand and take the
     * offset off once per block. */
    const int32_t *xs;
    /* Q4_1 / Q5_1 only: each block's Q8_1 sum s = fp16(d * sum(q)) as a float, which
     * multiplies the weights' minimum (n rows of W->cols / 32) */
    const float *xsum;
    /* K-quants only: X quantized to Q8_K blocks (uhlm_block_q8_K, kquant.h), n rows of
     * W->cols / 256 blocks */
    const void *xk;
} uhlm_mm_args;

/* Computes tiles [t0, t1). */
typedef void (*uhlm_mm_fn)(const uhlm_mm_args *a, int64_t t0, int64_t t1);
/* Quantizes nb consecutive 32-float blocks to Q8_0 values q[nb*32] and scales d[nb]. Every
 * implementation produces bit-identical output (llama.cpp's reference rounding). */
typedef void (*uhlm_qx_fn)(const float *x, int8_t *q, float *d, int64_t nb);

typedef struct uhlm_kernels {
    uhlm_mm_fn f32, f16, q8_0, q4_0;
    uhlm_mm_fn q8_g;         /* any cols / group */
    uhlm_mm_fn q8_g_aligned; /* only when cols % group == 0 and group % 8 == 0 */
    uhlm_qx_fn quantize_x;
    uhlm_mm_fn q4_1, q5_0, q5_1; /* legacy blocks (qlegacy*.c) */
    uhlm_mm_fn q2_k, q3_k, q4_k, q5_k, q6_k; /* kquant*.c */
} uhlm_kernels;

/* Each fills the entries it implements and leaves the others alone, so quant.c layers them:
 * scalar, then AVX2, then AVX-512. Off x86-64 the SIMD ones fill nothing. */
void uhlm_kernels_scalar(uhlm_kernels *k);
void uhlm_kernels_avx2(uhlm_kernels *k);
void uhlm_kernels_avx512(uhlm_kernels *k, int has_vnni);

/* The legacy families' kernels (qlegacy.c, qlegacy_avx2.c, qlegacy_avx512.c), layered by the
 * three functions above. */
void uhlm_kernels_legacy_scalar(uhlm_kernels *k);
void uhlm_kernels_legacy_avx2(uhlm_kernels *k);
void uhlm_kernels_legacy_avx512(uhlm_kernels *k, int has_vnni);

/* Reference rows of the legacy types (Q4_1, Q5_0, Q5_1, Q8_1); qlegacy.c. */
void uhlm_quantize_row_legacy(uhlm_type t, const float *x, void *dst, int64_t n);
void uhlm_dequantize_row_legacy(uhlm_type t, const void *src, float *y, int64_t n);
/* 1 when the type's dot products take Q8_1 activations (needs args.xsum). */
int uhlm_type_uses_q8_1(uhlm_type t);
/* The s of a Q8_1 block from its 32 floats and the exact sum of its quantized values: the
 * same d = amax / 127 as the Q8_0 quantizer, before fp16 rounding, as llama.cpp does. */
float uhlm_q8_1_sum(const float *x, int32_t qsum);

/* One Q8_0 block, llama.cpp's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d).
 * Stores the fp16 scale in *dh and its float value in *df (either may be NULL). */
void uhlm_quantize_block_q8_0(const float *x, int8_t *q, uint16_t *dh, float *df);

/* Q8_G reference for tiles [t0, t1): any group, rows may start mid-group. */
void uhlm_mm_q8_g_scalar(const uhlm_mm_args *a, int64_t t0, int64_t t1);

/* ---- helpers of the SIMD tile kernels (quant_avx2.c, quant_avx512.c) ---- */

/* Weight row pointers for tile t: rows past the end repeat the last row, so a kernel always
 * runs a full tile and stores only the real rows. Returns how many rows are real. */
static inline int uhlm_mm_tile_rows(const uhlm_mm_args *a, int64_t t, size_t row_bytes,
                                    const void *w[UHLM_MM_TILE]) {
    const int64_t rows = a->W->rows, r0 = t * UHLM_MM_TILE;
    for (int r = 0; r < UHLM_MM_TILE; r++) {
        int64_t rr = r0 + r < rows ? r0 + r : rows - 1;
        w[r] = (const uint8_t *)a->W->data + (size_t)rr * row_bytes;
    }
    return rows - r0 < UHLM_MM_TILE ? (int)(rows - r0) : UHLM_MM_TILE;
}

/* Y[i][row0 .. row0 + nr) = o[0 .. nr) */
static inline void uhlm_mm_store_rows(const uhlm_mm_args *a, int64_t row0, int i, int nr,
                                      const float *o) {
    float *y = a->Y + (size_t)i * (size_t)a->W->rows + (size_t)row0;
    for (int r = 0; r < nr; r++) y[r] = o[r];
}

/* The tile walk of a float-weight kernel (F32, F16): row by row below UHLM_MM_ROWWISE_N
 * activation rows, whole tiles with prefetch above. Expands in the including file, which
 * defines TGT (its target attribute) and FLOAT_ROWS(TILE, w, R, row0, nr, pf). */
#define UHLM_FLOAT_KERNEL(NAME, TILE, WT)                                                        \
    TGT static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                        \
        const int64_t cols = a->W->cols;                                                         \
        const size_t row_bytes = (size_t)cols * sizeof(WT);                                      \
        const int64_t pf = uhlm_mm_prefetch_distance((int64_t)row_bytes);                        \
        for (int64_t t = t0; t < t1; t++) {                                                      \
            const void *wp[UHLM_MM_TILE];                                                        \
            const int nr = uhlm_mm_tile_rows(a, t, row_bytes, wp);                               \
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

#endif
