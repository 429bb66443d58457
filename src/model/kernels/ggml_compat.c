/* ggml_compat.c: ggml's CPU arithmetic in portable C (see ggml_compat.h for why and for the
 * reference build). Vector registers are arrays, indexed as ggml's lanes; every FMA that
 * ggml's kernels issue (intrinsics, or GCC contracting a*b+c under -ffp-contract=fast in
 * ggml's GNU-mode build) is an fmaf here, every other operation is one plain float operation. */
#include "model/kernels/ggml_compat.h"

#include <math.h>
#include <string.h>

/* _mm512_reduce_add_ps as GCC 12 expands it: halves of 8, then 4, then pairs */
static float reduce16(const float *a) {
    float t[8], u[4];
    for (int i = 0; i < 8; i++) t[i] = a[i + 8] + a[i];
    for (int i = 0; i < 4; i++) u[i] = t[i + 4] + t[i];
    return (u[0] + u[2]) + (u[1] + u[3]);
}

/* hsum_float_8 (ggml) and tinyBLAS's hsum(__m256): the same additions */
static float hsum8(const float *a) {
    float r[4];
    for (int i = 0; i < 4; i++) r[i] = a[4 + i] + a[i];
    return (r[0] + r[2]) + (r[1] + r[3]);
}

/* --------------------------------------------------------------- activations */

/* One block as the AVX2 quantizers do it: max |x|, d = max / 127, values x * (127 / max)
 * rounded half to even (_mm256_round_ps), then saturated to int8 by the packs. Returns the
 * integer sum of the quants (q8_1's s). */
static int quant_block(const float *x, uint16_t *d_out, int8_t *qs, float *d_unrounded) {
    float amax = 0.0f;
    for (int j = 0; j < UHLM_QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.f;
    *d_out = uhlm_f32_to_f16(d);
    *d_unrounded = d;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < UHLM_QK; j++) {
        float v = rintf(x[j] * id);
        int q = v > 127.f ? 127 : v < -128.f ? -128 : (int)v;
        qs[j] = (int8_t)q;
        sum += q;
    }
    return sum;
}

void ggc_quantize_q8_0(const float *x, uhlm_block_q8_0 *y, int64_t k) {
    float d;
    for (int64_t b = 0; b < k / UHLM_QK; b++) quant_block(x + b * UHLM_QK, &y[b].d, y[b].qs, &d);
}

void ggc_quantize_q8_1(const float *x, uhlm_block_q8_1 *y, int64_t k) {
    for (int64_t b = 0; b < k / UHLM_QK; b++) {
        float d;
        int sum = quant_block(x + b * UHLM_QK, &y[b].d, y[b].qs, &d);
        y[b].s = uhlm_f32_to_f16(d * (float)sum);
    }
}

void ggc_to_f16(const float *x, uint16_t *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = uhlm_f32_to_f16(x[i]);
}

/* --------------------------------------------------------------- dot products */

float ggc_dot_q8_0(int n, const uhlm_block_q8_0 *w, const uhlm_block_q8_0 *a) {
    float acc[8] = {0};
    for (int b = 0; b < n / UHLM_QK; b++) {
        const float d = uhlm_f16_to_f32(w[b].d) * uhlm_f16_to_f32(a[b].d);
        for (int l = 0; l < 8; l++) {
            int s = 0; /* one int32 lane of vpdpbusd: four products, exact */
            for (int j = 4 * l; j < 4 * l + 4; j++) s += (int)w[b].qs[j] * (int)a[b].qs[j];
            acc[l] = fmaf(d, (float)s, acc[l]);
        }
    }
    return hsum8(acc);
}

float ggc_dot_q4_1(int n, const uhlm_block_q4_1 *w, const uhlm_block_q8_1 *a) {
    float acc[8] = {0}, summs = 0.0f;
    for (int b = 0; b < n / UHLM_QK; b++) {
        const float d0 = uhlm_f16_to_f32(w[b].d), d1 = uhlm_f16_to_f32(a[b].d);
        summs = fmaf(uhlm_f16_to_f32(w[b].m), uhlm_f16_to_f32(a[b].s), summs);
        const float d0d1 = d0 * d1;
        for (int l = 0; l < 8; l++) {
            int s = 0; /* bytes_from_nibbles_32: bytes 0-15 low nibbles, 16-31 high nibbles */
            for (int j = 4 * l; j < 4 * l + 4; j++) {
                int q = j < 16 ? (w[b].qs[j] & 15) : (w[b].qs[j - 16] >> 4);
                s += q * (int)a[b].qs[j];
            }
            acc[l] = fmaf(d0d1, (float)s, acc[l]);
        }
    }
    return hsum8(acc) + summs;
}

/* ggml_vec_dot_f32 / _f16's AVX-512 body: sum[j] lane l takes the elements 64 s + 16 j + l;
 * GGML_F32x16_REDUCE adds sum[2] into sum[0], sum[3] into sum[1], sum[1] into sum[0], then
 * _mm512_reduce_add_ps. Callers have n % 64 == 0 (no scalar leftovers). */
static float dot4x16_reduce(float sum[4][16]) {
    for (int l = 0; l < 16; l++) {
        sum[0][l] = sum[0][l] + sum[2][l];
        sum[1][l] = sum[1][l] + sum[3][l];
    }
    for (int l = 0; l < 16; l++) sum[0][l] = sum[0][l] + sum[1][l];
    return reduce16(sum[0]);
}

float ggc_dot_f32(int n, const float *x, const float *y) {
    float sum[4][16] = {{0}};
    const int np = n & ~63;
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++)
                sum[j][l] = fmaf(x[i + 16 * j + l], y[i + 16 * j + l], sum[j][l]);
    float s = dot4x16_reduce(sum);
    for (int i = np; i < n; i++) s = fmaf(x[i], y[i], s);
    return s;
}

float ggc_dot_f16(int n, const uint16_t *x, const uint16_t *y) {
    float sum[4][16] = {{0}};
    const int np = n & ~63;
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++)
                sum[j][l] = fmaf(uhlm_f16_to_f32(x[i + 16 * j + l]),
                                 uhlm_f16_to_f32(y[i + 16 * j + l]), sum[j][l]);
    double s = dot4x16_reduce(sum);
    for (int i = np; i < n; i++) s += (double)(uhlm_f16_to_f32(x[i]) * uhlm_f16_to_f32(y[i]));
    return (float)s;
}

float ggc_dot_f32_tiny(int n, const float *x, const float *y) {
    float acc[16] = {0};
    for (int i = 0; i < n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    return reduce16(acc);
}

float ggc_dot_f16_tiny(int n, const uint16_t *x, const uint16_t *y) {
    float acc[16] = {0};
    for (int i = 0; i < n; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] = fmaf(uhlm_f16_to_f32(x[i + l]), uhlm_f16_to_f32(y[i + l]), acc[l]);
    return reduce16(acc);
}

#if defined(__x86_64__)
static float f32_avx2(int n, const float *x, const float *y) {
    return n % 64 ? ggc_dot_f32(n, x, y) : ggc_dot_f32_avx2(n, x, y);
}
static float f16_avx2(int n, const uint16_t *x, const uint16_t *y) {
    return n % 64 ? ggc_dot_f16(n, x, y) : ggc_dot_f16_avx2(n, x, y);
}
static const ggc_dot_fns DOTS_AVX2 = {ggc_dot_q8_0_avx2, ggc_dot_q4_1_avx2, f32_avx2,
                                      ggc_dot_f32_tiny_avx2, f16_avx2, ggc_dot_f16_tiny_avx2};
#endif
static const ggc_dot_fns DOTS = {ggc_dot_q8_0, ggc_dot_q4_1, ggc_dot_f32,
                                 ggc_dot_f32_tiny, ggc_dot_f16, ggc_dot_f16_tiny};

const ggc_dot_fns *ggc_dots(int avx2) {
#if defined(__x86_64__)
    if (avx2) return &DOTS_AVX2;
#endif
    (void)avx2;
    return &DOTS;
}

/* --------------------------------------------------------------- elementwise */

void ggc_rms_norm_mul(const float *x, const float *w, float *y, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void ggc_rope_cache(float *cache, int n_dims, int pos, float freq_base, float freq_scale) {
    const float theta_scale = powf(freq_base, -2.0f / (float)n_dims);
    float theta = (float)pos;
    for (int i0 = 0; i0 < n_dims; i0 += 2) {
        const float t = freq_scale * theta; /* rope_yarn without extrapolation mixing */
        cache[i0] = cosf(t);
        cache[i0 + 1] = sinf(t);
        theta *= theta_scale;
    }
}

/* x0 cos - x1 sin and x0 sin + x1 cos as GCC contracts them in ggml's build */
static void rotate(float *a, float *b, float c, float s) {
    const float x0 = *a, x1 = *b;
    *a = fmaf(x0, c, -(x1 * s));
    *b = fmaf(x0, s, x1 * c);
}

void ggc_rope_norm(float *v, const float *cache, int n_dims) {
    for (int i0 = 0; i0 < n_dims; i0 += 2) rotate(&v[i0], &v[i0 + 1], cache[i0], cache[i0 + 1]);
}

void ggc_rope_neox(float *v, const float *cache, int n_dims) {
    const int half = n_dims / 2;
    for (int i0 = 0; i0 < n_dims; i0 += 2)
        rotate(&v[i0 / 2], &v[i0 / 2 + half], cache[i0], cache[i0 + 1]);
}

float ggc_expf(float x) {
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                              fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                         u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    return ldexpf(j, (int)n); /* _mm512_scalef_ps: j * 2^n, n integral */
}

void ggc_soft_max(float *p, const float *kq, int n_valid, float scale) {
    float max = -INFINITY;
    for (int i = 0; i < n_valid; i++) {
        p[i] = kq[i] * scale;
        if (p[i] > max) max = p[i];
    }
    double sum = 0.0;
    for (int c = 0; c < n_valid; c += 16) {
        float v[16];
        for (int l = 0; l < 16; l++) v[l] = c + l < n_valid ? ggc_expf(p[c + l] - max) : 0.0f;
        for (int l = 0; l < 16 && c + l < n_valid; l++) p[c + l] = v[l];
        sum += (double)reduce16(v);
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n_valid; i++) p[i] *= inv;
}

void ggc_swiglu(float *y, const float *x, const float *g, int64_t n) {
    int64_t i = 0;
    for (; i + 15 < n; i += 16)
        for (int l = 0; l < 16; l++) {
            const float xv = x[i + l];
            y[i + l] = xv / (1.0f + ggc_expf(0.0f - xv)) * g[i + l];
        }
    for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i])) * g[i];
}
