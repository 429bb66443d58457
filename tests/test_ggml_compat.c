/* test_ggml_compat.c: the kernels of the ggml numerics mode (src/model/kernels/ggml_compat*.c).
 *
 * Their reference is llama.cpp itself, checked end to end by test_llamacpp_agreement (logits
 * bit for bit against hashes of llama.cpp's). Here: the AVX2 dot products return exactly the
 * portable ones on random blocks and vectors (every length the fallbacks distinguish); the
 * quantizer rounds half to even and saturates as ggml's AVX2 one does; ggml_v_expf's special
 * cases (the masked -inf gives 0, overflow gives inf) and its accuracy; softmax weights sum to
 * 1; RMSNorm and RoPE on hand-checkable inputs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "model/kernels/ggml_compat.h"
#include "uhlm/types.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float unif(float a) { return a * ((float)next() / 4294967296.0f * 2.0f - 1.0f); }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void test_dots(void) {
    enum { N = 1536, NB = N / 32 };
    static uhlm_block_q8_0 w8[NB], a8[NB];
    static uhlm_block_q4_1 w4[NB];
    static uhlm_block_q8_1 a81[NB];
    static float x[N], y[N];
    static uint16_t xh[N], yh[N];
    const ggc_dot_fns *p = ggc_dots(0), *v = ggc_dots(uhlm_simd_supported(UHLM_SIMD_AVX2));
    int mism = 0, trials = 0;
    for (int t = 0; t < 20; t++) {
        for (int i = 0; i < N; i++) {
            x[i] = unif(t % 2 ? 1.0f : 40.0f);
            y[i] = unif(3.0f);
        }
        ggc_quantize_q8_0(x, w8, N);
        ggc_quantize_q8_0(y, a8, N);
        ggc_quantize_q8_1(y, a81, N);
        for (int b = 0; b < NB; b++) {
            w4[b].d = uhlm_f32_to_f16(unif(0.1f));
            w4[b].m = uhlm_f32_to_f16(unif(1.0f));
            for (int j = 0; j < 16; j++) w4[b].qs[j] = (uint8_t)next();
        }
        ggc_to_f16(x, xh, N);
        ggc_to_f16(y, yh, N);
        const int lens[] = {32, 64, 96, 576, 1536};
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            int n = lens[k];
            trials++;
            mism += !same_bits(p->q8_0(n, w8, a8), v->q8_0(n, w8, a8));
            mism += !same_bits(p->q4_1(n, w4, a81), v->q4_1(n, w4, a81));
            mism += !same_bits(p->f32(n, x, y), v->f32(n, x, y));
            mism += !same_bits(p->f16(n, xh, yh), v->f16(n, xh, yh));
            mism += !same_bits(p->f32_tiny(n, x, y), v->f32_tiny(n, x, y));
            mism += !same_bits(p->f16_tiny(n, xh, yh), v->f16_tiny(n, xh, yh));
        }
    }
    CHECKF(mism == 0, "%d of %d AVX2 dot products differ from the portable ones", mism,
           trials * 6);
    /* the dot products are dot products: q8_0 against the dequantized sum */
    double ref = 0;
    for (int b = 0; b < NB; b++)
        for (int j = 0; j < 32; j++)
            ref += (double)uhlm_f16_to_f32(w8[b].d) * w8[b].qs[j] * uhlm_f16_to_f32(a8[b].d) *
                   a8[b].qs[j];
    float got = p->q8_0(N, w8, a8);
    CHECKF(fabs(got - ref) <= 1e-4 * (1 + fabs(ref)), "q8_0 dot %g, dequantized sum %g", got, ref);
}

static void test_quantizer(void) {
    float x[32] = {0};
    x[0] = 127.0f; /* id = 1: values are rounded as they are */
    x[1] = 2.5f;   /* ties to even: 2 */
    x[2] = 3.5f;   /* 4 */
    x[3] = -2.5f;  /* -2 */
    x[4] = 0.49f;
    uhlm_block_q8_1 q;
    ggc_quantize_q8_1(x, &q, 32);
    CHECK(q.qs[0] == 127 && q.qs[1] == 2 && q.qs[2] == 4 && q.qs[3] == -2 && q.qs[4] == 0);
    CHECK(uhlm_f16_to_f32(q.d) == 1.0f);
    CHECK(uhlm_f16_to_f32(q.s) == 131.0f); /* d * (127 + 2 + 4 - 2) */
    float z[32] = {0};
    uhlm_block_q8_0 q0;
    ggc_quantize_q8_0(z, &q0, 32);
    int zero = q0.d == 0;
    for (int j = 0; j < 32; j++) zero &= q0.qs[j] == 0;
    CHECK(zero);
}

static void test_elementwise(void) {
    CHECK(ggc_expf(-INFINITY) == 0.0f);
    CHECK(ggc_expf(-200.0f) == 0.0f);
    CHECK(isinf(ggc_expf(200.0f)));
    CHECK(ggc_expf(0.0f) == 1.0f);
    double worst = 0;
    for (float t = -80.0f; t < 80.0f; t += 0.37f) {
        double r = fabs(ggc_expf(t) / exp((double)t) - 1.0);
        if (r > worst) worst = r;
    }
    CHECKF(worst < 4e-7, "ggml_v_expf's relative error %g", worst);
    float kq[40], p[40];
    for (int i = 0; i < 40; i++) kq[i] = unif(20.0f);
    ggc_soft_max(p, kq, 37, 0.125f);
    double s = 0;
    for (int i = 0; i < 37; i++) s += p[i];
    CHECKF(fabs(s - 1.0) < 1e-5, "softmax weights sum to %g", s);
    float xn[4] = {1, -1, 1, -1}, wn[4] = {1, 2, 3, 4}, yn[4];
    ggc_rms_norm_mul(xn, wn, yn, 4, 0.0f);
    CHECK(yn[0] == 1.0f && yn[1] == -2.0f && yn[2] == 3.0f && yn[3] == -4.0f);
    float cache[4], v[4] = {1, 0, 1, 0};
    ggc_rope_cache(cache, 4, 0, 10000.0f, 1.0f);
    CHECK(cache[0] == 1.0f && cache[1] == 0.0f);
    ggc_rope_norm(v, cache, 4);
    CHECK(v[0] == 1.0f && v[1] == 0.0f && v[2] == 1.0f && v[3] == 0.0f);
    float g[20], u[20], o[20];
    for (int i = 0; i < 20; i++) {
        g[i] = unif(6.0f);
        u[i] = unif(2.0f);
    }
    ggc_swiglu(o, g, u, 20);
    double e = 0;
    for (int i = 0; i < 20; i++) {
        double want = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (fabs(o[i] - want) > e) e = fabs(o[i] - want);
    }
    CHECKF(e < 1e-5, "swiglu off by %g", e);
}

int main(void) {
    test_dots();
    test_quantizer();
    test_elementwise();
    return check_report();
}
