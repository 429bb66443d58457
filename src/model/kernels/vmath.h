/* vmath.h: elementwise vector math of the forward pass (SwiGLU's SiLU), one kernel per SIMD
 * level, chosen like the matmul and attention kernels. Internal to src/model.
 *
 * Contract: uhlm_swiglu_fn(g, u, n) sets g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i]
 * for i < n, each element on its own (no value depends on n, on where a range starts, or on
 * the thread that computes it). The scalar level is the plain C expression with libm's expf;
 * the SIMD levels use a polynomial exp within about 1 ulp of it (see vmath_x86.h), so they
 * differ from the scalar level by float rounding only. */
#ifndef UHLM_MODEL_VMATH_H
#define UHLM_MODEL_VMATH_H

#include <stdint.h>

#include "model/kernels/quant.h"

typedef void (*uhlm_swiglu_fn)(float *g, const float *u, int64_t n);

/* The kernel for a resolved, supported SIMD level. */
uhlm_swiglu_fn uhlm_swiglu_kernel(uhlm_simd simd);

/* The SIMD kernels (vmath_avx2.c, vmath_avx512.c); NULL off x86-64. */
uhlm_swiglu_fn uhlm_swiglu_kernel_avx2(void);
uhlm_swiglu_fn uhlm_swiglu_kernel_avx512(void);

#endif
