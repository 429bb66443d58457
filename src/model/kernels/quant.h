/* quant.h: weight types, block formats, conversions and the matrix kernels.
 *
 * Types follow ggml's numbering so GGUF tensors map one to one. Q8_0 and Q4_0 blocks are
 * bit-identical to llama.cpp's, and so are the legacy blocks Q4_1, Q5_0 and Q5_1 (ggml-common.h
 * layouts; reference quantization and dequantization bit for bit; code in kernels/qlegacy*.c)
 * and the K-quants Q2_K..Q6_K (256-element super-blocks; their structs and kernels live in
 * src/model/kernels/kquant*.c): uhlm_quantize_row gives llama.cpp's reference (no importance
 * matrix) bytes and uhlm_dequantize_row gguf-py's floats. UHLM_TYPE_Q8_G is llama2.c's v2 export: int8 values with one
 * fp32 scale per `group` consecutive elements of the whole tensor (groups may straddle rows).
 *
 * Kernels: uhlm_matmul computes Y[n][W.rows] = X[n][W.cols] * W^T. For Q8_0 and Q4_0 the
 * activations are first quantized to Q8_0 blocks (as llama.cpp does) and the dot products are
 * integer; so for Q5_0. Q4_1 and Q5_1 take Q8_1 activations (Q8_0 values plus the block sum s,
 * which carries the weights' min term), as llama.cpp's ggml_vec_dot_q4_1_q8_1 does; the
 * K-quants take Q8_K blocks, and then all SIMD levels give identical bits. Each output element is computed by one thread with a fixed summation order, so
 * results do not depend on the thread count. They may differ (within float rounding) between
 * SIMD levels. Weights are streamed once per call, whatever n is: the batched forward relies
 * on this to read the weights once per batch. */
#ifndef UHLM_QUANT_H
#define UHLM_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include "uhlm/common.h"
#include "uhlm/types.h"
#include "model/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif


#define UHLM_QK 32 /* elements per Q8_0 / Q4_0 block */

typedef struct {
    uint16_t d; /* fp16 scale */
    int8_t qs[UHLM_QK];
} uhlm_block_q8_0; /* 34 bytes */

typedef struct {
    uint16_t d;              /* fp16 scale */
    uint8_t qs[UHLM_QK / 2]; /* element j in low nibble of qs[j], element j+16 in high nibble; value = nibble - 8 */
} uhlm_block_q4_0; /* 18 bytes */

/* The legacy blocks (32 elements each). Nibble layout as Q4_0: element j in the low nibble of
 * qs[j], element j + 16 in the high one; Q5 types keep element j's fifth bit in bit j of the
 * little-endian uint32 qh. Values: Q4_1 d * q + m, Q5_0 d * (q - 16), Q5_1 d * q + m. */
typedef struct {
    uint16_t d, m; /* fp16 scale and minimum */
    uint8_t qs[UHLM_QK / 2];
} uhlm_block_q4_1; /* 20 bytes */

typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[UHLM_QK / 2];
} uhlm_block_q5_0; /* 22 bytes */

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[UHLM_QK / 2];
} uhlm_block_q5_1; /* 24 bytes */

/* Activation-only (ggml type 9, never a weight here): Q8_0 values and scale plus
 * s = fp16(d * sum(qs)) with the unrounded d, as llama.cpp's quantize_row_q8_1_ref. */
typedef struct {
    uint16_t d, s;
    int8_t qs[UHLM_QK];
} uhlm_block_q8_1; /* 36 bytes */

int uhlm_type_is_gguf(int ggml_type);                 /* 1 for the GGUF tensor types we load */
int64_t uhlm_type_block(uhlm_type t);                 /* elements per block: 1 (F32, F16), 32, K-quants 256 */
/* Bytes for n elements (n a multiple of the block size). Q8_G: the int8 values only. */
size_t uhlm_type_bytes(uhlm_type t, int64_t n);
/* The type a matrix with rows of `cols` elements is written in when `want` is asked for: want
 * itself when cols is a multiple of its block; otherwise llama.cpp's fallback (Q2_K, Q3_K ->
 * Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0), and F32 when even that block does not fit
 * (llama.cpp: F16). */
uhlm_type uhlm_type_fallback(uhlm_type want, int64_t cols);

float uhlm_f16_to_f32(uint16_t h);
uint16_t uhlm_f32_to_f16(float f); /* round to nearest even, like F16C */

/* Rows of n elements (n a multiple of the type's block size); llama.cpp reference rounding.
 * t is one of F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q8_1, Q2_K..Q6_K. */
void uhlm_quantize_row(uhlm_type t, const float *x, void *dst, int64_t n);
void uhlm_dequantize_row(uhlm_type t, const void *src, float *y, int64_t n);

/* A 2-D weight: rows = output dim (GGUF ne1), cols = input dim (GGUF ne0), row-major. */
typedef struct uhlm_tensor {
    uhlm_type type;
    int64_t rows, cols;
    const void *data;    /* in the mapped file */
    const float *scales; /* Q8_G only: one per `group` elements of the whole tensor */
    int group;           /* Q8_G only */
} uhlm_tensor;

/* Row r of W as floats (used for embedding lookup). */
void uhlm_tensor_row(const uhlm_tensor *W, int64_t r, float *out);
size_t uhlm_tensor_nbytes(const uhlm_tensor *W); /* weight bytes a full pass reads */


/* Scratch bytes uhlm_matmul needs for n rows of X against W. */
size_t uhlm_matmul_scratch(const uhlm_tensor *W, int n);
/* Y[i*W->rows + r] = dot(X[i*W->cols ...], row r of W), for i < n. simd must be resolved
 * (not AUTO) and supported. scratch has at least uhlm_matmul_scratch(W, n) bytes, 64-byte
 * aligned. pool may be NULL. */
void uhlm_matmul(uhlm_simd simd, uhlm_pool *pool, const uhlm_tensor *W, const float *X, int n,
                 float *Y, void *scratch);
/* uhlm_matmul of `count` matrices with the same input X into Y[0 .. count): one parallel
 * loop over all their tiles, so the pool synchronises once (the query, key and value
 * projections; the two FFN input projections), and quantized types quantize X once. Each
 * Y[m] gets exactly what uhlm_matmul(W[m]) would give. Matrices of different types or input
 * sizes, or more than four, are run one after another. scratch as for any one of them. */
void uhlm_matmul_multi(uhlm_simd simd, uhlm_pool *pool, const uhlm_tensor *const *W,
                       float *const *Y, int count, const float *X, int n, void *scratch);

#ifdef __cplusplus
}
#endif
#endif
