/* attention.c: the portable attention kernel and the choice of kernel per SIMD level (see
 * attention.h for the contract). */
#include "model/kernels/attention.h"

#include <math.h>

/* q.k with eight independent partial sums in a fixed order: a single running sum is one long chain
 * of dependent adds that the compiler may not reorder, and attention over a long context spent most
 * of a forward waiting on it. */
static inline float dot_qk(const float *a, const float *b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int d = 0;
    for (; d + 8 <= n; d += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[d + k] * b[d + k];
    for (; d < n; d++) acc[d & 7] += a[d] * b[d];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void attn_scalar(const uhlm_attn_args *a) {
    const int hd = a->hd, n = a->n_pos;
    float *att = a->att;
    float mx = -INFINITY;
    for (int t = 0; t < n; t++) {
        float sc = dot_qk(a->q, a->k + (size_t)t * a->stride, hd) * a->scale;
        att[t] = sc;
        if (sc > mx) mx = sc;
    }
    float sum = 0.0f;
    for (int t = 0; t < n; t++) {
        att[t] = expf(att[t] - mx);
        sum += att[t];
    }
    const float inv = 1.0f / sum;
    /* restrict: without the promise that out never overlaps the cache the compiler stored o[d]
     * after every multiply-add instead of vectorizing the loop */
    float *restrict o = a->out;
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int t = 0; t < n; t++) {
        const float *restrict vt = a->v + (size_t)t * a->stride;
        const float p = att[t] * inv;
        for (int d = 0; d < hd; d++) o[d] += p * vt[d];
    }
}

uhlm_attn_fn uhlm_attn_kernel(uhlm_simd simd) {
    uhlm_attn_fn f = NULL;
    if (simd == UHLM_SIMD_AVX512)
        f = uhlm_attn_kernel_avx512();
    else if (simd == UHLM_SIMD_AVX2)
        f = uhlm_attn_kernel_avx2();
    return f ? f : attn_scalar;
}
