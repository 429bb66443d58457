/* qlegacy.c: ggml's legacy block types Q4_1, Q5_0, Q5_1 (and the activation type Q8_1):
 * reference quantization and dequantization, bit for bit with llama.cpp's quantize_row_*_ref
 * and dequantize_row_* (ggml-quants.c), and the scalar matrix kernels. The SIMD kernels are in
 * qlegacy_avx2.c and qlegacy_avx512.c (shared body: qlegacy_simd.h).
 *
 * Dot products follow llama.cpp's pairing: Q5_0 weights against Q8_0 activations; Q4_1 and
 * Q5_1 against Q8_1, whose block sum s = d_x * sum(q_x) turns the weights' minimum into one
 * multiply per block: sum_j (d_w q_j + m_w) d_x x_j = d_w d_x sum_j q_j x_j + m_w s. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "model/kernels/quant_internal.h"

/* ---------------------------------------------------------------- blocks */

/* The float-to-integer casts of the references, with the operand clamped first so that NaN
 * or infinite input cannot reach an undefined conversion. For finite input the clamp is the
 * references' own MIN (Q4_1 at 15, Q5_0 at 31) or a no-op: the operands lie in [0.5, 15.5],
 * [0.5, 32.5] and [0.5, 31.5] up to rounding, and truncation is what C's cast does. */
static inline int trunc_clamp(float v, float hi) { return (int)fminf(fmaxf(v, 0.0f), hi); }

/* The part Q4_1 and Q5_1 share: min and max from FLT_MAX / -FLT_MAX as the references start,
 * d = (max - min) / levels stored as fp16 with the fp16 min; returns 1 / d (0 when d is 0). */
static float min_scale(const float *x, float levels, uint16_t *dh, uint16_t *mh, float *min_out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < UHLM_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / levels;
    *dh = uhlm_f32_to_f16(d);
    *mh = uhlm_f32_to_f16(min);
    *min_out = min;
    return d != 0.0f ? 1.0f / d : 0.0f;
}

/* quantize_row_q4_1_ref: d = (max - min) / 15, q = min(15, (int8_t)((x - min) / d + 0.5)). */
static void quantize_block_q4_1(const float *x, uhlm_block_q4_1 *y) {
    float min;
    const float id = min_scale(x, 15.0f, &y->d, &y->m, &min);
    for (int j = 0; j < UHLM_QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + UHLM_QK / 2] - min) * id;
        const int a = trunc_clamp(x0 + 0.5f, 15.0f), b = trunc_clamp(x1 + 0.5f, 15.0f);
        y->qs[j] = (uint8_t)(a | (b << 4));
    }
}

static inline void put_qh(uint8_t *qh, uint32_t v) {
    qh[0] = (uint8_t)v;
    qh[1] = (uint8_t)(v >> 8);
    qh[2] = (uint8_t)(v >> 16);
    qh[3] = (uint8_t)(v >> 24);
}

static inline uint32_t get_qh(const uint8_t *qh) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* quantize_row_q5_0_ref: the element of largest magnitude, with its sign, maps to -16;
 * q = min(31, (int8_t)(x / d + 16.5)). */
static void quantize_block_q5_0(const float *x, uhlm_block_q5_0 *y) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < UHLM_QK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = uhlm_f32_to_f16(d);
    uint32_t qh = 0;
    for (int j = 0; j < UHLM_QK / 2; j++) {
        const int a = trunc_clamp(x[j] * id + 16.5f, 31.0f);
        const int b = trunc_clamp(x[j + UHLM_QK / 2] * id + 16.5f, 31.0f);
        y->qs[j] = (uint8_t)((a & 0x0f) | ((b & 0x0f) << 4));
        qh |= (uint32_t)(a >> 4) << j;
        qh |= (uint32_t)(b >> 4) << (j + UHLM_QK / 2);
    }
    put_qh(y->qh, qh);
}

/* quantize_row_q5_1_ref: d = (max - min) / 31, q = (uint8_t)((x - min) / d + 0.5), no clamp
 * at 31 (the operand cannot reach 32 for finite input); the low five bits are stored. */
static void quantize_block_q5_1(const float *x, uhlm_block_q5_1 *y) {
    float min;
    const float id = min_scale(x, 31.0f, &y->d, &y->m, &min);
    uint32_t qh = 0;
    for (int j = 0; j < UHLM_QK / 2; j++) {
        const int a = trunc_clamp((x[j] - min) * id + 0.5f, 255.0f);
        const int b = trunc_clamp((x[j + UHLM_QK / 2] - min) * id + 0.5f, 255.0f);
        y->qs[j] = (uint8_t)((a & 0x0f) | ((b & 0x0f) << 4));
        qh |= (uint32_t)((a >> 4) & 1) << j;
        qh |= (uint32_t)((b >> 4) & 1) << (j + UHLM_QK / 2);
    }
    put_qh(y->qh, qh);
}

float uhlm_q8_1_sum(const float *x, int32_t qsum) {
    float amax = 0.0f;
    for (int j = 0; j < UHLM_QK; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    return uhlm_f16_to_f32(uhlm_f32_to_f16((float)qsum * (amax / 127.0f)));
}

/* quantize_row_q8_1_ref: Q8_0's values and scale, plus s. */
static void quantize_block_q8_1(const float *x, uhlm_block_q8_1 *y) {
    uhlm_quantize_block_q8_0(x, y->qs, &y->d, NULL);
    int32_t sum = 0;
    for (int j = 0; j < UHLM_QK; j++) sum += y->qs[j];
    y->s = uhlm_f32_to_f16(uhlm_q8_1_sum(x, sum));
}

int uhlm_type_uses_q8_1(uhlm_type t) { return t == UHLM_TYPE_Q4_1 || t == UHLM_TYPE_Q5_1; }

void uhlm_quantize_row_legacy(uhlm_type t, const float *x, void *dst, int64_t n) {
    for (int64_t b = 0; b < n / UHLM_QK; b++) {
        const float *xb = x + b * UHLM_QK;
        switch (t) {
        case UHLM_TYPE_Q4_1: quantize_block_q4_1(xb, (uhlm_block_q4_1 *)dst + b); break;
        case UHLM_TYPE_Q5_0: quantize_block_q5_0(xb, (uhlm_block_q5_0 *)dst + b); break;
        case UHLM_TYPE_Q5_1: quantize_block_q5_1(xb, (uhlm_block_q5_1 *)dst + b); break;
        case UHLM_TYPE_Q8_1: quantize_block_q8_1(xb, (uhlm_block_q8_1 *)dst + b); break;
        default: return;
        }
    }
}

/* dequantize_row_*: q * d + m (two roundings: the build does not contract to fma), and
 * (q - 16) * d for Q5_0. */
void uhlm_dequantize_row_legacy(uhlm_type t, const void *src, float *y, int64_t n) {
    const int h = UHLM_QK / 2;
    for (int64_t b = 0; b < n / UHLM_QK; b++) {
        float *yb = y + b * UHLM_QK;
        switch (t) {
        case UHLM_TYPE_Q4_1: {
            const uhlm_block_q4_1 *x = (const uhlm_block_q4_1 *)src + b;
            const float d = uhlm_f16_to_f32(x->d), m = uhlm_f16_to_f32(x->m);
            for (int j = 0; j < h; j++) {
                yb[j] = (float)(x->qs[j] & 0x0f) * d + m;
                yb[j + h] = (float)(x->qs[j] >> 4) * d + m;
            }
            break;
        }
        case UHLM_TYPE_Q5_0: {
            const uhlm_block_q5_0 *x = (const uhlm_block_q5_0 *)src + b;
            const float d = uhlm_f16_to_f32(x->d);
            const uint32_t qh = get_qh(x->qh);
            for (int j = 0; j < h; j++) {
                yb[j] = (float)((int)((x->qs[j] & 0x0f) | ((qh >> j) & 1) << 4) - 16) * d;
                yb[j + h] = (float)((int)((x->qs[j] >> 4) | ((qh >> (j + h)) & 1) << 4) - 16) * d;
            }
            break;
        }
        case UHLM_TYPE_Q5_1: {
            const uhlm_block_q5_1 *x = (const uhlm_block_q5_1 *)src + b;
            const float d = uhlm_f16_to_f32(x->d), m = uhlm_f16_to_f32(x->m);
            const uint32_t qh = get_qh(x->qh);
            for (int j = 0; j < h; j++) {
                yb[j] = (float)((x->qs[j] & 0x0f) | ((qh >> j) & 1) << 4) * d + m;
                yb[j + h] = (float)((x->qs[j] >> 4) | ((qh >> (j + h)) & 1) << 4) * d + m;
            }
            break;
        }
        case UHLM_TYPE_Q8_1: {
            const uhlm_block_q8_1 *x = (const uhlm_block_q8_1 *)src + b;
            const float d = uhlm_f16_to_f32(x->d);
            for (int j = 0; j < UHLM_QK; j++) yb[j] = (float)x->qs[j] * d;
            break;
        }
        default: return;
        }
    }
}

/* ---------------------------------------------------------------- scalar kernels */

/* Exact dots of one block's unsigned 4- or 5-bit values with 32 activations: one pass with no
 * unpacked copy, so compilers can vectorize it where the ISA has variable shifts. */
static inline int32_t dot_q4(const uint8_t *qs, const int8_t *x) {
    int32_t s = 0;
    for (int j = 0; j < UHLM_QK / 2; j++)
        s += (int32_t)(qs[j] & 0x0f) * x[j] + (int32_t)(qs[j] >> 4) * x[j + UHLM_QK / 2];
    return s;
}

static inline int32_t dot_q5(const uint8_t *qs, const uint8_t *qhb, const int8_t *x) {
    const uint32_t qh = get_qh(qhb);
    int32_t s = 0;
    for (int j = 0; j < UHLM_QK / 2; j++) {
        const int32_t v0 = (int32_t)((qs[j] & 0x0f) | ((qh >> j) & 1) << 4);
        const int32_t v1 = (int32_t)((qs[j] >> 4) | ((qh >> (j + UHLM_QK / 2)) & 1) << 4);
        s += v0 * x[j] + v1 * x[j + UHLM_QK / 2];
    }
    return s;
}

/* Per block the exact integer dot, then llama.cpp's scalar arithmetic:
 * acc += (d_w * d_x) * sumi (+ m_w * s_x for the types with a minimum), in block order. */
#define LEGACY_SCALAR(NAME, BT, DOT, OFF, HASMIN)                                                \
    static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                            \
        const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK;                 \
        const BT *W = a->W->data;                                                                \
        const int64_t re = t1 * UHLM_MM_TILE < rows ? t1 * UHLM_MM_TILE : rows;                  \
        for (int64_t r = t0 * UHLM_MM_TILE; r < re; r++) {                                       \
            const BT *w = W + r * nb;                                                            \
            for (int i = 0; i < a->n; i++) {                                                     \
                const int8_t *xq = a->xq + (size_t)i * cols;                                     \
                const float *xd = a->xd + (size_t)i * nb;                                        \
                const int32_t *xs = a->xs + (size_t)i * nb;                                      \
                const float *xm = HASMIN ? a->xsum + (size_t)i * nb : NULL;                      \
                (void)xm;                                                                        \
                float acc = 0.0f;                                                                \
                for (int64_t b = 0; b < nb; b++) {                                               \
                    const int8_t *x = xq + b * UHLM_QK;                                          \
                    const int32_t s = DOT - (OFF) * xs[b];                                       \
                    const float dd = uhlm_f16_to_f32(w[b].d) * xd[b];                            \
                    acc += HASMIN ? dd * (float)s + MIN_TERM : dd * (float)s;                       \
                }                                                                                \
                a->Y[(size_t)i * rows + r] = acc;                                                \
            }                                                                                    \
        }                                                                                        \
    }

/* only expanded where HASMIN is 1, so w[b].m and xm exist */
#define MIN_TERM uhlm_f16_to_f32(w[b].m) * xm[b]
LEGACY_SCALAR(mm_q4_1_scalar, uhlm_block_q4_1, dot_q4(w[b].qs, x), 0, 1)
LEGACY_SCALAR(mm_q5_1_scalar, uhlm_block_q5_1, dot_q5(w[b].qs, w[b].qh, x), 0, 1)
#undef MIN_TERM
#define MIN_TERM 0.0f
LEGACY_SCALAR(mm_q5_0_scalar, uhlm_block_q5_0, dot_q5(w[b].qs, w[b].qh, x), 16, 0)
#undef MIN_TERM

void uhlm_kernels_legacy_scalar(uhlm_kernels *k) {
    k->q4_1 = mm_q4_1_scalar;
    k->q5_0 = mm_q5_0_scalar;
    k->q5_1 = mm_q5_1_scalar;
}
