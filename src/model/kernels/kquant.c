/* kquant.c: the K-quant formats (see kquant.h): llama.cpp's reference quantizers and
 * dequantizers, Q8_K activation quantization and the scalar matmul kernels.
 *
 * The quantizers are ports of ggml-quants.c's quantize_row_qN_K_ref (what ggml_quantize_chunk
 * runs without an importance matrix), with every float expression kept in ggml's order: the
 * search they run compares float errors, so a changed rounding anywhere picks a different
 * scale. They are checked bit for bit against ggml's output (tests/test_quant_kquant.c). */
#include "model/kernels/kquant.h"

#include <math.h>
#include <string.h>

#define GROUP_MAX_EPS 1e-15f

static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int imin(int a, int b) { return a < b ? a : b; }

int uhlm_kq_is_k(uhlm_type t) {
    return t == UHLM_TYPE_Q2_K || t == UHLM_TYPE_Q3_K || t == UHLM_TYPE_Q4_K ||
           t == UHLM_TYPE_Q5_K || t == UHLM_TYPE_Q6_K;
}

size_t uhlm_kq_block_bytes(uhlm_type t) {
    switch ((int)t) {
    case UHLM_TYPE_Q2_K: return sizeof(uhlm_block_q2_K);
    case UHLM_TYPE_Q3_K: return sizeof(uhlm_block_q3_K);
    case UHLM_TYPE_Q4_K: return sizeof(uhlm_block_q4_K);
    case UHLM_TYPE_Q5_K: return sizeof(uhlm_block_q5_K);
    case UHLM_TYPE_Q6_K: return sizeof(uhlm_block_q6_K);
    default: return 0;
    }
}

/* ---------------------------------------------------------------- ggml's helpers */

/* Round to nearest (ties to even) through the float mantissa, as ggml does; exact for
 * |f| <= 2^22. Larger or non-finite input gives ggml's (meaningless but defined) value. */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
        }
        return 1 / iscale;
    }
    /* rmse_type 1 only (weights x^2): the one the K-quant references use */
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = imax(-nmax, imin(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    /* do_rmse = true, the Q3_K reference's choice */
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* ---------------------------------------------------------------- Q2_K */

static void quantize_q2_K(const float *x, uhlm_block_q2_K *y, int64_t nb) {
    uint8_t L[UHLM_QK_K], Laux[16];
    float weights[16], mins[UHLM_QK_K / 16], scales[UHLM_QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < UHLM_QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < UHLM_QK_K / 16; ++j)
                y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = uhlm_f32_to_f16(max_scale / q4scale);
        } else {
            for (int j = 0; j < UHLM_QK_K / 16; ++j) y[i].scales[j] = 0;
            y[i].d = uhlm_f32_to_f16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < UHLM_QK_K / 16; ++j) {
                int l = nearest_int(iscale * mins[j]);
                y[i].scales[j] = (uint8_t)(y[i].scales[j] | (l << 4));
            }
            y[i].dmin = uhlm_f32_to_f16(max_min / q4scale);
        } else {
            y[i].dmin = uhlm_f32_to_f16(0.f);
        }
        for (int j = 0; j < UHLM_QK_K / 16; ++j) {
            const float d = uhlm_f16_to_f32(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = uhlm_f16_to_f32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
            }
        }
        for (int j = 0; j < UHLM_QK_K; j += 128)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                               (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        x += UHLM_QK_K;
    }
}

static void dequantize_q2_K(const uhlm_block_q2_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = uhlm_f16_to_f32(x[i].d);
        const float min = uhlm_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < UHLM_QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                uint8_t sc = x[i].scales[is++];
                float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
                sc = x[i].scales[is++];
                dl = d * (sc & 0xF);
                ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

/* ---------------------------------------------------------------- Q3_K */

static void quantize_q3_K(const float *x, uhlm_block_q3_K *y, int64_t nb) {
    int8_t L[UHLM_QK_K];
    float scales[UHLM_QK_K / 16];
    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < UHLM_QK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < UHLM_QK_K / 16; ++j) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                l = (int8_t)(imax(-32, imin(31, l)) + 32);
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] = (uint8_t)(y[i].scales[j - 8] | ((l & 0xF) << 4));
                l = (int8_t)(l >> 4);
                y[i].scales[j % 4 + 8] = (uint8_t)(y[i].scales[j % 4 + 8] | (l << (2 * (j / 4))));
            }
            y[i].d = uhlm_f32_to_f16(1 / iscale);
        } else {
            y[i].d = uhlm_f32_to_f16(0.f);
        }
        for (int j = 0; j < UHLM_QK_K / 16; ++j) {
            int8_t sc = (int8_t)(j < 8 ? y[i].scales[j] & 0xF : y[i].scales[j - 8] >> 4);
            sc = (int8_t)((sc | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
            float d = uhlm_f16_to_f32(y[i].d) * sc;
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
            }
        }
        memset(y[i].hmask, 0, UHLM_QK_K / 8);
        /* high bit of values 0-31 in bit 0 of hmask[0..31], the next 32 in bit 1, ... */
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < UHLM_QK_K; ++j) {
            if (L[j] > 3) {
                y[i].hmask[m] |= hm;
                L[j] = (int8_t)(L[j] - 4);
            }
            if (++m == UHLM_QK_K / 8) {
                m = 0;
                hm = (uint8_t)(hm << 1);
            }
        }
        for (int j = 0; j < UHLM_QK_K; j += 128)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                               (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        x += UHLM_QK_K;
    }
}

/* The 16 signed 6-bit scales of a Q3_K block (ggml's kmask unpacking, minus the offset). */
static void q3_K_scales(const uint8_t *s12, int8_t out[16]) {
    uint32_t aux[4];
    uhlm_kq_q3_scales(s12, aux);
    uint8_t b[16];
    memcpy(b, aux, 16);
    for (int j = 0; j < 16; j++) out[j] = (int8_t)(b[j] - 32);
}

static void dequantize_q3_K(const uhlm_block_q3_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = uhlm_f16_to_f32(x[i].d);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t m = 1;
        int8_t scales[16];
        q3_K_scales(x[i].scales, scales);
        int is = 0;
        for (int n = 0; n < UHLM_QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                float dl = d_all * scales[is++];
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
                dl = d_all * scales[is++];
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

/* ---------------------------------------------------------------- Q4_K / Q5_K */

/* The sub-block search, scale packing and value rounding the two share; nmax 15 or 31. */
static void qkx_block(const float *x, int nmax, float rmin, int nstep, uint8_t L[UHLM_QK_K],
                      uint8_t scales12[12], uint16_t *dh, uint16_t *dminh) {
    uint8_t Laux[32];
    float weights[32], mins[UHLM_QK_K / 32], scales[UHLM_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < UHLM_QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < UHLM_QK_K / 32; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            scales12[j] = ls;
            scales12[j + 4] = lm;
        } else {
            scales12[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales12[j - 4] = (uint8_t)(scales12[j - 4] | ((ls >> 4) << 6));
            scales12[j - 0] = (uint8_t)(scales12[j - 0] | ((lm >> 4) << 6));
        }
    }
    *dh = uhlm_f32_to_f16(max_scale / 63.f);
    *dminh = uhlm_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < UHLM_QK_K / 32; ++j) {
        uint8_t sc, m;
        uhlm_kq_scale_min(j, scales12, &sc, &m);
        const float d = uhlm_f16_to_f32(*dh) * sc;
        if (!d) continue;
        const float dm = uhlm_f16_to_f32(*dminh) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

static void quantize_q4_K(const float *x, uhlm_block_q4_K *y, int64_t nb) {
    uint8_t L[UHLM_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        qkx_block(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < UHLM_QK_K; j += 64) {
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
        x += UHLM_QK_K;
    }
}

static void dequantize_q4_K(const uhlm_block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q = x[i].qs;
        const float d = uhlm_f16_to_f32(x[i].d), min = uhlm_f16_to_f32(x[i].dmin);
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < UHLM_QK_K; j += 64) {
            uhlm_kq_scale_min(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            uhlm_kq_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

static void quantize_q5_K(const float *x, uhlm_block_q5_K *y, int64_t nb) {
    uint8_t L[UHLM_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        qkx_block(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, UHLM_QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < UHLM_QK_K; n += 64) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                int l2 = L[n + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
            ql += 32;
        }
        x += UHLM_QK_K;
    }
}

static void dequantize_q5_K(const uhlm_block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        const float d = uhlm_f16_to_f32(x[i].d), min = uhlm_f16_to_f32(x[i].dmin);
        int is = 0;
        uint8_t sc, m, u1 = 1, u2 = 2;
        for (int j = 0; j < UHLM_QK_K; j += 64) {
            uhlm_kq_scale_min(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            uhlm_kq_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* ---------------------------------------------------------------- Q6_K */

static void quantize_q6_K(const float *x, uhlm_block_q6_K *y, int64_t nb) {
    int8_t L[UHLM_QK_K];
    float scales[UHLM_QK_K / 16];
    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < UHLM_QK_K / 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(uhlm_block_q6_K));
            y[i].d = uhlm_f32_to_f16(0.f);
            x += UHLM_QK_K;
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = uhlm_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < UHLM_QK_K / 16; ++ib)
            y[i].scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < UHLM_QK_K / 16; ++j) {
            float d = uhlm_f16_to_f32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < UHLM_QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
        x += UHLM_QK_K;
    }
}

static void dequantize_q6_K(const uhlm_block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = uhlm_f16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < UHLM_QK_K; n += 128) {
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* ---------------------------------------------------------------- Q8_K */

void uhlm_kq_quantize_q8_K(const float *x, uhlm_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float max = 0, amax = 0;
        for (int j = 0; j < UHLM_QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            /* ggml leaves bsums unset here; they are zero like the values */
            memset(&y[i], 0, sizeof y[i]);
            x += UHLM_QK_K;
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < UHLM_QK_K; ++j) {
            int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)imin(127, v);
        }
        for (int j = 0; j < UHLM_QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
        x += UHLM_QK_K;
    }
}

/* ---------------------------------------------------------------- rows */

void uhlm_kq_quantize_row(uhlm_type t, const float *x, void *dst, int64_t n) {
    const int64_t nb = n / UHLM_QK_K;
    switch ((int)t) {
    case UHLM_TYPE_Q2_K: quantize_q2_K(x, dst, nb); break;
    case UHLM_TYPE_Q3_K: quantize_q3_K(x, dst, nb); break;
    case UHLM_TYPE_Q4_K: quantize_q4_K(x, dst, nb); break;
    case UHLM_TYPE_Q5_K: quantize_q5_K(x, dst, nb); break;
    case UHLM_TYPE_Q6_K: quantize_q6_K(x, dst, nb); break;
    default: break;
    }
}

void uhlm_kq_dequantize_row(uhlm_type t, const void *src, float *y, int64_t n) {
    const int64_t nb = n / UHLM_QK_K;
    switch ((int)t) {
    case UHLM_TYPE_Q2_K: dequantize_q2_K(src, y, nb); break;
    case UHLM_TYPE_Q3_K: dequantize_q3_K(src, y, nb); break;
    case UHLM_TYPE_Q4_K: dequantize_q4_K(src, y, nb); break;
    case UHLM_TYPE_Q5_K: dequantize_q5_K(src, y, nb); break;
    case UHLM_TYPE_Q6_K: dequantize_q6_K(src, y, nb); break;
    default: break;
    }
}

/* ---------------------------------------------------------------- scalar kernels */

/* A weight block as integers: values q[256] (offsets applied for Q3_K / Q6_K, mins not), a
 * scale and a min per 16 elements (Q4_K / Q5_K repeat each 32-element one), d and dmin. */
typedef struct {
    int8_t q[UHLM_QK_K];
    int32_t sc[16], mn[16];
    float d, dmin;
} kq_int;

static void int_q2_K(const void *blk, kq_int *o) {
    const uhlm_block_q2_K *b = blk;
    for (int e = 0; e < UHLM_QK_K; e++) {
        const int half = e / 128, j = (e % 128) / 32, t = e % 32;
        o->q[e] = (int8_t)((b->qs[32 * half + t] >> (2 * j)) & 3);
    }
    for (int k = 0; k < 16; k++) {
        o->sc[k] = b->scales[k] & 0xF;
        o->mn[k] = b->scales[k] >> 4;
    }
    o->d = uhlm_f16_to_f32(b->d);
    o->dmin = uhlm_f16_to_f32(b->dmin);
}

static void int_q3_K(const void *blk, kq_int *o) {
    const uhlm_block_q3_K *b = blk;
    for (int e = 0; e < UHLM_QK_K; e++) {
        const int half = e / 128, j = (e % 128) / 32, t = e % 32;
        const int lo = (b->qs[32 * half + t] >> (2 * j)) & 3;
        const int hi = (b->hmask[t] >> (4 * half + j)) & 1;
        o->q[e] = (int8_t)(lo - (hi ? 0 : 4));
    }
    int8_t s[16];
    q3_K_scales(b->scales, s);
    for (int k = 0; k < 16; k++) {
        o->sc[k] = s[k];
        o->mn[k] = 0;
    }
    o->d = uhlm_f16_to_f32(b->d);
    o->dmin = 0.0f;
}

static void int_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, uint16_t d,
                      uint16_t dmin, kq_int *o) {
    for (int e = 0; e < UHLM_QK_K; e++) {
        const int j = e / 64, hi = (e % 64) / 32, t = e % 32;
        int v = hi ? qs[32 * j + t] >> 4 : qs[32 * j + t] & 0xF;
        if (qh && ((qh[t] >> (2 * j + hi)) & 1)) v += 16;
        o->q[e] = (int8_t)v;
    }
    for (int k = 0; k < 16; k++) {
        uint8_t sc, m;
        uhlm_kq_scale_min(k / 2, scales, &sc, &m);
        o->sc[k] = sc;
        o->mn[k] = m;
    }
    o->d = uhlm_f16_to_f32(d);
    o->dmin = uhlm_f16_to_f32(dmin);
}

static void int_q4_K(const void *blk, kq_int *o) {
    const uhlm_block_q4_K *b = blk;
    int_q45_K(b->scales, b->qs, NULL, b->d, b->dmin, o);
}

static void int_q5_K(const void *blk, kq_int *o) {
    const uhlm_block_q5_K *b = blk;
    int_q45_K(b->scales, b->qs, b->qh, b->d, b->dmin, o);
}

static void int_q6_K(const void *blk, kq_int *o) {
    const uhlm_block_q6_K *b = blk;
    for (int e = 0; e < UHLM_QK_K; e++) {
        const int half = e / 128, quarter = (e % 128) / 32, l = e % 32;
        const uint8_t lo = b->ql[64 * half + 32 * (quarter & 1) + l];
        const int low4 = quarter < 2 ? lo & 0xF : lo >> 4;
        const int high2 = (b->qh[32 * half + l] >> (2 * quarter)) & 3;
        o->q[e] = (int8_t)((low4 | (high2 << 4)) - 32);
    }
    for (int k = 0; k < 16; k++) {
        o->sc[k] = b->scales[k];
        o->mn[k] = 0;
    }
    o->d = uhlm_f16_to_f32(b->d);
    o->dmin = 0.0f;
}

typedef void (*kq_int_fn)(const void *blk, kq_int *o);

/* Activation rows are taken KQ_CHUNK at a time so each weight block is decoded once per
 * chunk; per output element the block order, hence the result, is the same. */
#define KQ_CHUNK 16

static void mm_kq_scalar(const uhlm_mm_args *a, int64_t t0, int64_t t1, kq_int_fn dec,
                         size_t bsize) {
    const int64_t rows = a->W->rows, cols = a->W->cols, nb = cols / UHLM_QK_K;
    const uhlm_block_q8_K *X = a->xk;
    int64_t r1 = t1 * UHLM_MM_TILE;
    if (r1 > rows) r1 = rows;
    kq_int w;
    for (int64_t r = t0 * UHLM_MM_TILE; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)a->W->data + (size_t)r * (size_t)nb * bsize;
        for (int i0 = 0; i0 < a->n; i0 += KQ_CHUNK) {
            const int ni = a->n - i0 < KQ_CHUNK ? a->n - i0 : KQ_CHUNK;
            float acc[KQ_CHUNK] = {0};
            for (int64_t b = 0; b < nb; b++) {
                dec(row + (size_t)b * bsize, &w);
                for (int i = 0; i < ni; i++) {
                    const uhlm_block_q8_K *x = &X[(size_t)(i0 + i) * (size_t)nb + (size_t)b];
                    int32_t isum = 0, msum = 0;
                    for (int k = 0; k < 16; k++) {
                        int32_t s = 0;
                        for (int e = 16 * k; e < 16 * k + 16; e++) s += w.q[e] * x->qs[e];
                        isum += w.sc[k] * s;
                        msum += w.mn[k] * x->bsums[k];
                    }
                    acc[i] = uhlm_kq_step(acc[i], x->d, w.d, w.dmin, isum, msum);
                }
            }
            for (int i = 0; i < ni; i++) a->Y[(size_t)(i0 + i) * (size_t)rows + (size_t)r] = acc[i];
        }
    }
}

#define KQ_SCALAR(NAME, DEC, BT)                                                                 \
    static void NAME(const uhlm_mm_args *a, int64_t t0, int64_t t1) {                            \
        mm_kq_scalar(a, t0, t1, DEC, sizeof(BT));                                                \
    }

KQ_SCALAR(mm_q2_K_scalar, int_q2_K, uhlm_block_q2_K)
KQ_SCALAR(mm_q3_K_scalar, int_q3_K, uhlm_block_q3_K)
KQ_SCALAR(mm_q4_K_scalar, int_q4_K, uhlm_block_q4_K)
KQ_SCALAR(mm_q5_K_scalar, int_q5_K, uhlm_block_q5_K)
KQ_SCALAR(mm_q6_K_scalar, int_q6_K, uhlm_block_q6_K)

void uhlm_kernels_kquant_scalar(uhlm_kernels *k) {
    k->q2_k = mm_q2_K_scalar;
    k->q3_k = mm_q3_K_scalar;
    k->q4_k = mm_q4_K_scalar;
    k->q5_k = mm_q5_K_scalar;
    k->q6_k = mm_q6_K_scalar;
}
