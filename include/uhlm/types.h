/* types.h: the weight types and the kernel (SIMD) levels, as the public API names them.
 *
 * Types follow ggml's numbering so GGUF tensors map one to one; the block formats and the
 * kernels that read them are internal (src/model/kernels/quant.h). */
#ifndef UHLM_TYPES_H
#define UHLM_TYPES_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum uhlm_type {
    UHLM_TYPE_F32 = 0,
    UHLM_TYPE_F16 = 1,
    UHLM_TYPE_Q4_0 = 2,
    UHLM_TYPE_Q4_1 = 3,
    UHLM_TYPE_Q5_0 = 6,
    UHLM_TYPE_Q5_1 = 7,
    UHLM_TYPE_Q8_0 = 8,
    UHLM_TYPE_Q8_1 = 9, /* activations only: no weight kernel, never written to GGUF */
    /* K-quants: 256-element super-blocks, byte-identical to llama.cpp's (Q8_K = 15 is the
     * activation type of their dot products, internal only) */
    UHLM_TYPE_Q2_K = 10,
    UHLM_TYPE_Q3_K = 11,
    UHLM_TYPE_Q4_K = 12,
    UHLM_TYPE_Q5_K = 13,
    UHLM_TYPE_Q6_K = 14,
    UHLM_TYPE_Q8_G = 1000 /* llama2.c v2 only; never written to GGUF */
} uhlm_type;

UHLM_API const char *uhlm_type_name(uhlm_type t); /* "f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q8_1", "q8_g", "q2_k".."q6_k" */
UHLM_API int uhlm_type_from_name(const char *name, uhlm_type *out); /* accepts the names above (case-insensitive), 0 ok */

typedef enum uhlm_simd {
    UHLM_SIMD_AUTO = 0,
    UHLM_SIMD_SCALAR = 1,
    UHLM_SIMD_AVX2 = 2,
    UHLM_SIMD_AVX512 = 3
} uhlm_simd;

UHLM_API const char *uhlm_simd_name(uhlm_simd s);
UHLM_API int uhlm_simd_from_name(const char *name, uhlm_simd *out); /* "auto","scalar","avx2","avx512" */
/* The best level the CPU supports when want is AUTO (the env var UHLM_SIMD, if set, overrides
 * AUTO); otherwise `want` itself if the CPU supports it, else -1 via the return of
 * uhlm_simd_supported. */
UHLM_API uhlm_simd uhlm_simd_resolve(uhlm_simd want);
UHLM_API int uhlm_simd_supported(uhlm_simd s);

#ifdef __cplusplus
}
#endif
#endif
