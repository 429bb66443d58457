/* attention.h: the attention kernel of one (query, head) pair over a sequence's KV cache. Internal
 * to src/model/kernels; model.c calls it once per (batch entry, head).
 *
 * Contract: out[0 .. hd) = sum_t p_t * v_t with p = softmax(scale * (q . k_t)) over t < n_pos,
 * where k_t = k + t * stride and v_t = v + t * stride (the head's slice of cache row t). att is
 * scratch of at least n_pos floats. Every level computes this in a fixed order per (query, head),
 * so the result does not depend on the batch it came in or on the thread count; levels differ from
 * one another by float rounding only (the SIMD levels use their own exp, about 1 ulp from exact).
 * Kernels never read outside the hd floats of each row. */
#ifndef UHLM_MODEL_ATTENTION_H
#define UHLM_MODEL_ATTENTION_H

#include <stddef.h>

#include "model/kernels/quant.h"

typedef struct uhlm_attn_args {
    const float *q;
    const float *k, *v;
    size_t stride; /* floats between consecutive positions of k and of v */
    int n_pos;     /* >= 1 */
    int hd;        /* >= 1 */
    float scale;
    float *att; /* scratch, n_pos floats */
    float *out; /* hd floats; must not overlap q, k, v or att */
} uhlm_attn_args;

typedef void (*uhlm_attn_fn)(const uhlm_attn_args *a);

/* The kernel for a resolved, supported SIMD level. */
uhlm_attn_fn uhlm_attn_kernel(uhlm_simd simd);

/* The SIMD kernels (attention_avx2.c, attention_avx512.c); NULL off x86-64. */
uhlm_attn_fn uhlm_attn_kernel_avx2(void);
uhlm_attn_fn uhlm_attn_kernel_avx512(void);

#endif
