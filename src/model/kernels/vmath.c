/* vmath.c: the portable elementwise kernels and the choice of kernel per SIMD level (see
 * vmath.h for the contract). */
#include "model/kernels/vmath.h"

#include <math.h>

static void swiglu_scalar(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

uhlm_swiglu_fn uhlm_swiglu_kernel(uhlm_simd simd) {
    uhlm_swiglu_fn f = NULL;
    if (simd == UHLM_SIMD_AVX512)
        f = uhlm_swiglu_kernel_avx512();
    else if (simd == UHLM_SIMD_AVX2)
        f = uhlm_swiglu_kernel_avx2();
    return f ? f : swiglu_scalar;
}
