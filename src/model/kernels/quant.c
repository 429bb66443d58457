/* quant.c: weight types, fp16 and block (de)quantization, SIMD level selection and the matmul
 * driver with the scalar reference kernels (see quant.h). The AVX2 and AVX-512 kernels live in
 * quant_avx2.c and quant_avx512.c and are chosen at run time, so one binary runs on any
 * x86-64. */
#include "model/kernels/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/kernels/kquant.h"
#include "model/kernels/quant_internal.h"

/* ---------------------------------------------------------------- types */

const char *uhlm_type_name(uhlm_type t) {
    switch (t) {
    case UHLM_TYPE_F32: return "f32";
    case UHLM_TYPE_F16: return "f16";
    case UHLM_TYPE_Q8_0: return "q8_0";
    case UHLM_TYPE_Q4_0: return "q4_0";
    case UHLM_TYPE_Q4_1: return "q4_1";
    case UHLM_TYPE_Q5_0: return "q5_0";
    case UHLM_TYPE_Q5_1: return "q5_1";
    case UHLM_TYPE_Q8_1: return "q8_1";
    case UHLM_TYPE_Q8_G: return "q8_g";
    case UHLM_TYPE_Q2_K: return "q2_k";
    case UHLM_TYPE_Q3_K: return "q3_k";
    case UHLM_TYPE_Q4_K: return "q4_k";
    case UHLM_TYPE_Q5_K: return "q5_k";
    case UHLM_TYPE_Q6_K: return "q6_k";
    }
    return "unknown";
}

int uhlm_type_from_name(const char *name, uhlm_type *out) {
    static const uhlm_type all[] = {UHLM_TYPE_F32, UHLM_TYPE_F16, UHLM_TYPE_Q8_0, UHLM_TYPE_Q4_0,
                                    UHLM_TYPE_Q8_G, UHLM_TYPE_Q4_1, UHLM_TYPE_Q5_0,
                                    UHLM_TYPE_Q5_1, UHLM_TYPE_Q8_1, UHLM_TYPE_Q2_K,
                                    UHLM_TYPE_Q3_K, UHLM_TYPE_Q4_K, UHLM_TYPE_Q5_K,
                                    UHLM_TYPE_Q6_K};
    if (!name) return -1;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcasecmp(name, uhlm_type_name(all[i])) == 0) {
            if (out) *out = all[i];
            return 0;
        }
    return -1;
}

int uhlm_type_is_gguf(int ggml_type) {
    return ggml_type == UHLM_TYPE_F32 || ggml_type == UHLM_TYPE_F16 ||
           ggml_type == UHLM_TYPE_Q4_0 || ggml_type == UHLM_TYPE_Q8_0 ||
           ggml_type == UHLM_TYPE_Q4_1 || ggml_type == UHLM_TYPE_Q5_0 ||
           ggml_type == UHLM_TYPE_Q5_1 || (ggml_type >= 0 && uhlm_kq_is_k((uhlm_type)ggml_type));
}

int64_t uhlm_type_block(uhlm_type t) {
    if (uhlm_kq_is_k(t)) return UHLM_QK_K;
    if (t == UHLM_TYPE_Q4_1 || t == UHLM_TYPE_Q5_0 || t == UHLM_TYPE_Q5_1 || t == UHLM_TYPE_Q8_1)
        return UHLM_QK;
    return (t == UHLM_TYPE_Q8_0 || t == UHLM_TYPE_Q4_0) ? UHLM_QK : 1;
}

size_t uhlm_type_bytes(uhlm_type t, int64_t n) {
    if (n <= 0) return 0;
    size_t un = (size_t)n;
    switch (t) {
    case UHLM_TYPE_F32: return un * 4;
    case UHLM_TYPE_F16: return un * 2;
    case UHLM_TYPE_Q8_0: return un / UHLM_QK * sizeof(uhlm_block_q8_0);
    case UHLM_TYPE_Q4_0: return un / UHLM_QK * sizeof(uhlm_block_q4_0);
    case UHLM_TYPE_Q4_1: return un / UHLM_QK * sizeof(uhlm_block_q4_1);
    case UHLM_TYPE_Q5_0: return un / UHLM_QK * sizeof(uhlm_block_q5_0);
    case UHLM_TYPE_Q5_1: return un / UHLM_QK * sizeof(uhlm_block_q5_1);
    case UHLM_TYPE_Q8_1: return un / UHLM_QK * sizeof(uhlm_block_q8_1);
    case UHLM_TYPE_Q8_G: return un;
    case UHLM_TYPE_Q2_K:
    case UHLM_TYPE_Q3_K:
    case UHLM_TYPE_Q4_K:
    case UHLM_TYPE_Q5_K:
    case UHLM_TYPE_Q6_K: return un / UHLM_QK_K * uhlm_kq_block_bytes(t);
    }
    return 0;
}

uhlm_type uhlm_type_fallback(uhlm_type want, int64_t cols) {
    if (cols % uhlm_type_block(want) == 0) return want;
    uhlm_type t = want;
    switch (want) {
    case UHLM_TYPE_Q2_K:
    case UHLM_TYPE_Q3_K: t = UHLM_TYPE_Q4_0; break;
    case UHLM_TYPE_Q4_K: t = UHLM_TYPE_Q5_0; break;
    case UHLM_TYPE_Q5_K: t = UHLM_TYPE_Q5_1; break;
    case UHLM_TYPE_Q6_K: t = UHLM_TYPE_Q8_0; break;
    default: break;
    }
    return cols % uhlm_type_block(t) == 0 ? t : UHLM_TYPE_F32;
}

/* ---------------------------------------------------------------- fp16 */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Integer-only, so the result does not depend on the FP environment or on FMA contraction.
 * NaNs come back quiet with their payload, as F16C's vcvtph2ps does. */
float uhlm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return f32_from_bits(sign | 0x7f800000 | (m << 13) | (m ? 0x400000 : 0));
    if (e == 0) {
        if (m == 0) return f32_from_bits(sign);
        /* subnormal: renormalise */
        int ex = 1;
        while (!(m & 0x400)) {
            m <<= 1;
            ex--;
        }
        m &= 0x3ff;
        return f32_from_bits(sign | ((uint32_t)(ex + 112) << 23) | (m << 13));
    }
    return f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
}

/* Round to nearest even, overflow to inf, NaN stays NaN (quiet, payload truncated): the same
 * results as F16C's vcvtps2ph with rounding mode 0. */
uint16_t uhlm_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) {
        if (ax == 0x7f800000) return sign | 0x7c00;
        return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    }
    if (ax >= 0x477ff000) return sign | 0x7c00; /* >= 65520 rounds to inf */
    if (ax >= 0x38800000) {                     /* normal half */
        uint32_t r = ax + 0xfff + ((ax >> 13) & 1);
        return (uint16_t)(sign | ((r - 0x38000000) >> 13));
    }
    if (ax < 0x33000000) return sign; /* below half the smallest subnormal */
    /* subnormal half: value = k * 2^-24 with k = mant >> shift, rounded to even. A carry
     * into bit 10 gives the smallest normal, which is the right encoding. */
    uint32_t e = ax >> 23, mant = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t k = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (k & 1))) k++;
    return (uint16_t)(sign | k);
}

/* ---------------------------------------------------------------- blocks */

/* llama.cpp's reference: the scale from the unrounded d, values through roundf. The clamp is
 * a no-op for finite input (|x * id| <= 127 up to one ulp) and keeps NaN or inf input from
 * reaching a float-to-int conversion, which would be undefined. SIMD versions copy this
 * clamp-then-round sequence exactly. */
void uhlm_quantize_block_q8_0(const float *x, int8_t *q, uint16_t *dh, float *df) {
    float amax = 0.0f;
    for (int j = 0; j < UHLM_QK; j++) {
        float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = uhlm_f32_to_f16(d);
    if (dh) *dh = h;
    if (df) *df = uhlm_f16_to_f32(h);
    for (int j = 0; j < UHLM_QK; j++) {
        float v = x[j] * id;
        v = fmaxf(v, -127.0f);
        v = fminf(v, 127.0f);
        q[j] = (int8_t)roundf(v);
    }
}

static void quantize_block_q4_0(const float *x, uhlm_block_q4_0 *y) {
    /* the element of largest magnitude, with its sign, maps to -8 */
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < UHLM_QK; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) {
            amax = fabsf(v);
            max = v;
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = uhlm_f32_to_f16(d);
    for (int j = 0; j < UHLM_QK / 2; j++) {
        /* x*id + 8.5 lies in [0.5, 16.5] for finite input; clamp so NaN cannot reach the
         * conversion (llama.cpp's (int8_t) cast is undefined there too) */
        float v0 = fminf(fmaxf(x[j] * id + 8.5f, 0.0f), 15.0f);
        float v1 = fminf(fmaxf(x[j + UHLM_QK / 2] * id + 8.5f, 0.0f), 15.0f);
        uint8_t a = (uint8_t)(int)v0, b = (uint8_t)(int)v1;
        y->qs[j] = (uint8_t)(a | (b << 4));
    }
}

void uhlm_quantize_row(uhlm_type t, const float *x, void *dst, int64_t n) {
    switch (t) {
    case UHLM_TYPE_F32: memcpy(dst, x, (size_t)n * sizeof(float)); break;
    case UHLM_TYPE_F16: {
        uint16_t *y = dst;
        for (int64_t i = 0; i < n; i++) y[i] = uhlm_f32_to_f16(x[i]);
        break;
    }
    case UHLM_TYPE_Q8_0: {
        uhlm_block_q8_0 *y = dst;
        for (int64_t b = 0; b < n / UHLM_QK; b++)
            uhlm_quantize_block_q8_0(x + b * UHLM_QK, y[b].qs, &y[b].d, NULL);
        break;
    }
    case UHLM_TYPE_Q4_0: {
        uhlm_block_q4_0 *y = dst;
        for (int64_t b = 0; b < n / UHLM_QK; b++) quantize_block_q4_0(x + b * UHLM_QK, &y[b]);
        break;
    }
    case UHLM_TYPE_Q4_1:
    case UHLM_TYPE_Q5_0:
    case UHLM_TYPE_Q5_1:
    case UHLM_TYPE_Q8_1: uhlm_quantize_row_legacy(t, x, dst, n); break;
    case UHLM_TYPE_Q8_G: break; /* needs a tensor-wide group layout: not a row format */
    case UHLM_TYPE_Q2_K:
    case UHLM_TYPE_Q3_K:
    case UHLM_TYPE_Q4_K:
    case UHLM_TYPE_Q5_K:
    case UHLM_TYPE_Q6_K: uhlm_kq_quantize_row(t, x, dst, n); break;
    }
}

void uhlm_dequantize_row(uhlm_type t, const void *src, float *y, int64_t n) {
    switch (t) {
    case UHLM_TYPE_F32: memcpy(y, src, (size_t)n * sizeof(float)); break;
    case UHLM_TYPE_F16: {
        const uint16_t *x = src;
        for (int64_t i = 0; i < n; i++) y[i] = uhlm_f16_to_f32(x[i]);
        break;
    }
    case UHLM_TYPE_Q8_0: {
        const uhlm_block_q8_0 *x = src;
        for (int64_t b = 0; b < n / UHLM_QK; b++) {
            const float d = uhlm_f16_to_f32(x[b].d);
            for (int j = 0; j < UHLM_QK; j++) y[b * UHLM_QK + j] = (float)x[b].qs[j] * d;
        }
        break;
    }
    case UHLM_TYPE_Q4_0: {
        const uhlm_block_q4_0 *x = src;
        for (int64_t b = 0; b < n / UHLM_QK; b++) {
            const float d = uhlm_f16_to_f32(x[b].d);
            for (int j = 0; j < UHLM_QK / 2; j++) {
                y[b * UHLM_QK + j] = (float)((x[b].qs[j] & 0x0f) - 8) * d;
                y[b * UHLM_QK + j + UHLM_QK / 2] = (float)((x[b].qs[j] >> 4) - 8) * d;
            }
        }
        break;
    }
    case UHLM_TYPE_Q4_1:
    case UHLM_TYPE_Q5_0:
    case UHLM_TYPE_Q5_1:
    case UHLM_TYPE_Q8_1: uhlm_dequantize_row_legacy(t, src, y, n); break;
    case UHLM_TYPE_Q8_G: break;
    case UHLM_TYPE_Q2_K:
    case UHLM_TYPE_Q3_K:
    case UHLM_TYPE_Q4_K:
    case UHLM_TYPE_Q5_K:
    case UHLM_TYPE_Q6_K: uhlm_kq_dequantize_row(t, src, y, n); break;
    }
}

/* ---------------------------------------------------------------- tensors */

void uhlm_tensor_row(const uhlm_tensor *W, int64_t r, float *out) {
    const int64_t cols = W->cols;
    if (W->type == UHLM_TYPE_Q8_G) {
        const int8_t *q = (const int8_t *)W->data + r * cols;
        const int64_t base = r * cols, g = W->group;
        for (int64_t j = 0; j < cols; j++) out[j] = (float)q[j] * W->scales[(base + j) / g];
        return;
    }
    const uint8_t *row = (const uint8_t *)W->data + (size_t)r * uhlm_type_bytes(W->type, cols);
    uhlm_dequantize_row(W->type, row, out, cols);
}

size_t uhlm_tensor_nbytes(const uhlm_tensor *W) {
    if (W->rows <= 0 || W->cols <= 0) return 0;
    size_t n = (size_t)W->rows * (size_t)W->cols;
    if (W->type == UHLM_TYPE_Q8_G) {
        size_t g = W->group > 0 ? (size_t)W->group : 1;
        return n + (n + g - 1) / g * sizeof(float);
    }
    return (size_t)W->rows * uhlm_type_bytes(W->type, W->cols);
}

/* ---------------------------------------------------------------- SIMD levels */

const char *uhlm_simd_name(uhlm_simd s) {
    switch (s) {
    case UHLM_SIMD_AUTO: return "auto";
    case UHLM_SIMD_SCALAR: return "scalar";
    case UHLM_SIMD_AVX2: return "avx2";
    case UHLM_SIMD_AVX512: return "avx512";
    }
    return "unknown";
}

int uhlm_simd_from_name(const char *name, uhlm_simd *out) {
    static const uhlm_simd all[] = {UHLM_SIMD_AUTO, UHLM_SIMD_SCALAR, UHLM_SIMD_AVX2,
                                    UHLM_SIMD_AVX512};
    if (!name) return -1;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcasecmp(name, uhlm_simd_name(all[i])) == 0) {
            if (out) *out = all[i];
            return 0;
        }
    return -1;
}

/* clang before 15 does not know "f16c" in __builtin_cpu_supports (the fuzz build uses clang);
 * every CPU with AVX2 has F16C, so there the AVX2 test stands for it. */
#if defined(__clang__) && __clang_major__ < 15
#define CPU_HAS_F16C() 1
#else
#define CPU_HAS_F16C() __builtin_cpu_supports("f16c")
#endif

static int cpu_has_vnni(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") ? 1 : 0;
#else
    return 0;
#endif
}

int uhlm_simd_supported(uhlm_simd s) {
    switch (s) {
    case UHLM_SIMD_AUTO:
    case UHLM_SIMD_SCALAR: return 1;
    case UHLM_SIMD_AVX2:
    case UHLM_SIMD_AVX512:
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !CPU_HAS_F16C())
            return 0;
        if (s == UHLM_SIMD_AVX2) return 1;
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
        return 0;
#endif
    }
    return 0;
}

uhlm_simd uhlm_simd_resolve(uhlm_simd want) {
    if (want != UHLM_SIMD_AUTO) return want;
    /* the environment may pin a level; an unsupported pin is returned as is so the caller's
     * uhlm_simd_supported check reports it instead of silently running something else */
    const char *env = getenv("UHLM_SIMD");
    uhlm_simd s;
    if (env && *env && uhlm_simd_from_name(env, &s) == 0 && s != UHLM_SIMD_AUTO) return s;
    if (uhlm_simd_supported(UHLM_SIMD_AVX512)) return UHLM_SIMD_AVX512;
    if (uhlm_simd_supported(UHLM_SIMD_AVX2)) return UHLM_SIMD_AVX2;
    return UHLM_SIMD_SCALAR;
}

/* ---------------------------------------------------------------- scalar kernels */

static inline int64_t tile_end_row(const uhlm_mm_args *a, int64_t t) {
    int64_t e = (t + 1) * UHLM_MM_TILE;
    return e < a->W->rows ? e : a->W->rows;
}

/* Four partial sums: a fixed order that is still several times faster than one chain, which
 * matters where this is the production path (non-x86). */
static float dot_f32(const float *w, const float *x, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += w[k] * x[k];
        s1 += w[k + 1] * x[k + 1];
        s2 += w[k + 2] * x[k + 2];
        s3 += w[k + 3] * x[k + 3];
    }
    float s = (s0 + s1) + (s2 + s3);
    for (; k < n; k++) s += w[k] * x[k];
    return s;
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += uhlm_f16_to_f32(w[k]) * x[k];
        s1 += uhlm_f16_to_f32(w[k + 1]) * x[k + 1];
        s2 += uhlm_f16_to_f32(w[k + 2]) * x[k + 2];
        s3 += uhlm_f16_to_f32(w[k + 3]) * x[k + 3];
    }
    float s = (s0 + s1) + (s2 + s3);
    for (; k < n; k++) s += uhlm_f16_to_f32(w[k]) * x[k];
    return s;
}

static void mm_f32_scalar(const uhlm_mm_args *a, int64_t t0, int64_t t1) {
    const int64_t rows = a->W->rows, cols = a->W->cols;
    const float *W = a->W->data;
    for (int64_t r = t0 * UHLM_MM_TILE; r < tile_end_row(a, t1 - 1); r++)
        for (int i = 0; i < a->n; i++)
            a->Y[(size_t)i * rows + r] = dot_f32(W + r * cols, a->X + (size_t)i * cols, cols);
}

static void mm_f16_scalar(const uhlm_mm_args *a, int64_t t0, int64_t t1) {
    const int64_t rows = a->W->rows, cols = a->W->cols;
    const uint16_t *W = a->W->data;
    for (int64_t r = t0 * UHLM_MM_TILE; r < tile_end_row(a, t1 - 1); r++)
        for (int i = 0; i < a->n; i++)
            a->Y[(size_t)i * rows + r] = dot_f16(W + r * cols, a->X + (size_t)i * cols, cols);
}

/* Per block: an exact integer dot, scaled by d_w * d_x, accumulated in block order; the same
 * arithmetic as llama.cpp's scalar ggml_vec_dot_q8_0_q8_0. */
static void mm_q8_0_scalar(const uhlm_mm_args *a, int64_t t0, int64_t t1) {
    const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK;
    const uhlm_block_q8_0 *W = a->W->data;
    for (int64_t r = t0 * UHLM_MM_TILE; r < tile_end_row(a, t1 - 1); r++) {
        const uhlm_block_q8_0 *w = W + r * nb;
        for (int i = 0; i < a->n; i++) {
            const int8_t *xq = a->xq + (size_t)i * cols;
            const float *xd = a->xd + (size_t)i * nb;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int j = 0; j < UHLM_QK; j++) s += (int32_t)w[b].qs[j] * xq[b * UHLM_QK + j];
                acc += (float)s * (uhlm_f16_to_f32(w[b].d) * xd[b]);
            }
            a->Y[(size_t)i * rows + r] = acc;
        }
    }
}

static void mm_q4_0_scalar(const uhlm_mm_args *a, int64_t t0, int64_t t1) {
    const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK;
    const uhlm_block_q4_0 *W = a->W->data;
    for (int64_t r = t0 * UHLM_MM_TILE; r < tile_end_row(a, t1 - 1); r++) {
        const uhlm_block_q4_0 *w = W + r * nb;
        for (int i = 0; i < a->n; i++) {
            const int8_t *xq = a->xq + (size_t)i * cols;
            const float *xd = a->xd + (size_t)i * nb;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *x = xq + b * UHLM_QK;
                int32_t s = 0;
                for (int j = 0; j < UHLM_QK / 2; j++) {
                    s += ((w[b].qs[j] & 0x0f) - 8) * x[j];
                    s += ((w[b].qs[j] >> 4) - 8) * x[j + UHLM_QK / 2];
                }
                acc += (float)s * (uhlm_f16_to_f32(w[b].d) * xd[b]);
            }
            a->Y[(size_t)i * rows + r] = acc;
        }
    }
}

/* Each maximal run of a row inside one group is summed in float, then scaled: one multiply
 * per group rather than per element, and correct when a row starts or ends mid-group. */
void uhlm_mm_q8_g_scalar(const uhlm_mm_args *a, int64_t t0, int64_t t1) {
    const int64_t rows = a->W->rows, cols = a->W->cols, G = a->W->group;
    const int8_t *Q = a->W->data;
    const float *S = a->W->scales;
    for (int64_t r = t0 * UHLM_MM_TILE; r < tile_end_row(a, t1 - 1); r++) {
        const int64_t base = r * cols;
        for (int i = 0; i < a->n; i++) {
            const float *x = a->X + (size_t)i * cols;
            float acc = 0.0f;
            for (int64_t j = 0; j < cols;) {
                const int64_t g = (base + j) / G;
                int64_t end = (g + 1) * G - base;
                if (end > cols) end = cols;
                float s = 0.0f;
                for (; j < end; j++) s += (float)Q[base + j] * x[j];
                acc += s * S[g];
            }
            a->Y[(size_t)i * rows + r] = acc;
        }
    }
}

static void quantize_x_scalar(const float *x, int8_t *q, float *d, int64_t nb) {
    for (int64_t b = 0; b < nb; b++)
        uhlm_quantize_block_q8_0(x + b * UHLM_QK, q + b * UHLM_QK, NULL, d + b);
}

void uhlm_kernels_scalar(uhlm_kernels *k) {
    k->f32 = mm_f32_scalar;
    k->f16 = mm_f16_scalar;
    k->q8_0 = mm_q8_0_scalar;
    k->q4_0 = mm_q4_0_scalar;
    k->q8_g = uhlm_mm_q8_g_scalar;
    k->q8_g_aligned = uhlm_mm_q8_g_scalar;
    k->quantize_x = quantize_x_scalar;
    uhlm_kernels_legacy_scalar(k);
}

/* ---------------------------------------------------------------- matmul driver */

/* Work below which a parallel range is not worth handing to another thread: a pool wakeup
 * costs on the order of a microsecond, this many multiply-adds several. */
#define GRAIN_MACS 65536
/* Activation blocks quantized per parallel range; a decode step (one row) stays inline. */
#define GRAIN_QX_BLOCKS 512

static int8_t *scratch_q(void *scratch) {
    return (int8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
}

/* Types whose activations are quantized to Q8_0 blocks (plus the Q8_1 sums for some). */
static int quantizes_x(uhlm_type t) {
    return t == UHLM_TYPE_Q8_0 || t == UHLM_TYPE_Q4_0 || t == UHLM_TYPE_Q5_0 ||
           uhlm_type_uses_q8_1(t);
}

size_t uhlm_matmul_scratch(const uhlm_tensor *W, int n) {
    if (uhlm_kq_is_k(W->type)) /* Q8_K blocks; 64: room to align */
        return 64 + (size_t)(n > 0 ? n : 1) * (size_t)(W->cols / UHLM_QK_K) * sizeof(uhlm_block_q8_K);
    if (!quantizes_x(W->type)) return 0;
    if (n <= 0) n = 1;
    size_t v = (size_t)n * (size_t)W->cols; /* int8 values, rows stay 32-byte aligned */
    size_t s = v / UHLM_QK * sizeof(float);  /* fp32 copies of the fp16 scales */
    size_t xs = v / UHLM_QK * sizeof(int32_t); /* block sums */
    size_t xm = uhlm_type_uses_q8_1(W->type) ? v / UHLM_QK * sizeof(float) : 0; /* Q8_1 s */
    return 64 + v + s + xs + xm;               /* 64: room to align an unaligned buffer */
}

/* The tiles of `count` matrices, numbered one matrix after another: matrix m has tiles
 * [first[m], first[m + 1]) of the loop. */
typedef struct {
    uhlm_mm_fn fn;
    const uhlm_mm_args *a;
    int count;
    const int64_t *first;
} mm_job;

static void mm_task(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const mm_job *j = arg;
    int m = 0;
    while (b < e) {
        while (b >= j->first[m + 1]) m++;
        const int64_t end = e < j->first[m + 1] ? e : j->first[m + 1];
        j->fn(&j->a[m], b - j->first[m], end - j->first[m]);
        b = end;
    }
}

typedef struct {
    uhlm_qx_fn fn;
    const float *x;
    int8_t *q;
    float *d;
    int32_t *s;
    float *sum; /* Q8_1 block sums, when the weights need them */
} qx_job;

static void qx_task(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const qx_job *j = arg;
    j->fn(j->x + b * UHLM_QK, j->q + b * UHLM_QK, j->d + b, e - b);
    for (int64_t k = b; k < e; k++) {
        const int8_t *q = j->q + k * UHLM_QK;
        int32_t s = 0;
        for (int t = 0; t < UHLM_QK; t++) s += q[t];
        j->s[k] = s;
        if (j->sum) j->sum[k] = uhlm_q8_1_sum(j->x + k * UHLM_QK, s);
    }
}

typedef struct {
    const float *x;
    uhlm_block_q8_K *y;
} qk_job;

static void qk_task(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const qk_job *j = arg;
    uhlm_kq_quantize_q8_K(j->x + b * UHLM_QK_K, j->y + b, e - b);
}

static uhlm_mm_fn kernel_for(uhlm_simd simd, const uhlm_tensor *W, uhlm_qx_fn *qx) {
    uhlm_kernels k;
    memset(&k, 0, sizeof k);
    uhlm_kernels_scalar(&k);
    if (simd == UHLM_SIMD_AVX2 || simd == UHLM_SIMD_AVX512) uhlm_kernels_avx2(&k);
    if (simd == UHLM_SIMD_AVX512) uhlm_kernels_avx512(&k, cpu_has_vnni());
    uhlm_kernels_kquant_scalar(&k);
    if (simd == UHLM_SIMD_AVX2 || simd == UHLM_SIMD_AVX512) uhlm_kernels_kquant_avx2(&k);
    if (simd == UHLM_SIMD_AVX512) uhlm_kernels_kquant_avx512(&k, cpu_has_vnni());
    *qx = k.quantize_x;
    switch (W->type) {
    case UHLM_TYPE_F32: return k.f32;
    case UHLM_TYPE_F16: return k.f16;
    case UHLM_TYPE_Q8_0: return k.q8_0;
    case UHLM_TYPE_Q4_0: return k.q4_0;
    case UHLM_TYPE_Q4_1: return k.q4_1;
    case UHLM_TYPE_Q5_0: return k.q5_0;
    case UHLM_TYPE_Q5_1: return k.q5_1;
    case UHLM_TYPE_Q8_1: return NULL; /* activations only */
    case UHLM_TYPE_Q8_G:
        return (W->cols % W->group == 0 && W->group % 8 == 0) ? k.q8_g_aligned : k.q8_g;
    case UHLM_TYPE_Q2_K: return k.q2_k;
    case UHLM_TYPE_Q3_K: return k.q3_k;
    case UHLM_TYPE_Q4_K: return k.q4_k;
    case UHLM_TYPE_Q5_K: return k.q5_k;
    case UHLM_TYPE_Q6_K: return k.q6_k;
    }
    return NULL;
}

/* Matrices that one parallel loop can run together: same type and input size, and for Q8_G
 * the same group (their kernel is chosen by it). Rows may differ. */
static int same_kind(const uhlm_tensor *a, const uhlm_tensor *b) {
    return a->type == b->type && a->cols == b->cols && b->rows > 0 &&
           (a->type != UHLM_TYPE_Q8_G || a->group == b->group);
}

#define MAX_MULTI 4

void uhlm_matmul_multi(uhlm_simd simd, uhlm_pool *pool, const uhlm_tensor *const *W,
                       float *const *Y, int count, const float *X, int n, void *scratch) {
    if (count <= 0 || n <= 0 || W[0]->rows <= 0 || W[0]->cols <= 0) return;
    int same = count <= MAX_MULTI;
    for (int m = 1; m < count && same; m++) same = same_kind(W[0], W[m]);
    if (!same) {
        for (int m = 0; m < count; m++)
            uhlm_matmul_multi(simd, pool, &W[m], &Y[m], 1, X, n, scratch);
        return;
    }
    uhlm_qx_fn quantize_x;
    uhlm_mm_fn fn = kernel_for(simd, W[0], &quantize_x);
    if (!fn) return;
    uhlm_mm_args a[MAX_MULTI];
    for (int m = 0; m < count; m++) a[m] = (uhlm_mm_args){.W = W[m], .X = X, .n = n, .Y = Y[m]};
    if (quantizes_x(W[0]->type)) {
        /* quantized once for all the matrices */
        const int64_t nblocks = (int64_t)n * (W[0]->cols / UHLM_QK);
        int8_t *q = scratch_q(scratch);
        float *d = (float *)(q + (size_t)n * (size_t)W[0]->cols);
        int32_t *xs = (int32_t *)(d + nblocks);
        float *xm = uhlm_type_uses_q8_1(W[0]->type) ? (float *)(xs + nblocks) : NULL;
        qx_job qj = {quantize_x, X, q, d, xs, xm};
        uhlm_pool_run(pool, qx_task, &qj, nblocks, GRAIN_QX_BLOCKS);
        for (int m = 0; m < count; m++) {
            a[m].xq = q;
            a[m].xd = d;
            a[m].xs = xs;
            a[m].xsum = xm;
        }
    } else if (uhlm_kq_is_k(W[0]->type)) {
        /* Q8_K, once for all the matrices; a 256-block is 8 Q8_0 blocks of work */
        uhlm_block_q8_K *xk = (uhlm_block_q8_K *)scratch_q(scratch);
        qk_job kj = {X, xk};
        uhlm_pool_run(pool, qk_task, &kj, (int64_t)n * (W[0]->cols / UHLM_QK_K),
                      GRAIN_QX_BLOCKS / 8);
        for (int m = 0; m < count; m++) a[m].xk = xk;
    }
    int64_t first[MAX_MULTI + 1] = {0};
    for (int m = 0; m < count; m++)
        first[m + 1] = first[m] + (W[m]->rows + UHLM_MM_TILE - 1) / UHLM_MM_TILE;
    const int64_t per_tile = (int64_t)UHLM_MM_TILE * W[0]->cols * n;
    const int64_t grain = per_tile >= GRAIN_MACS ? 1 : (GRAIN_MACS + per_tile - 1) / per_tile;
    mm_job job = {fn, a, count, first};
    uhlm_pool_run(pool, mm_task, &job, first[count], grain);
}

void uhlm_matmul(uhlm_simd simd, uhlm_pool *pool, const uhlm_tensor *W, const float *X, int n,
                 float *Y, void *scratch) {
    uhlm_matmul_multi(simd, pool, &W, &Y, 1, X, n, scratch);
}
