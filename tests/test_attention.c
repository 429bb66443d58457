/* test_attention.c: the attention kernels of every SIMD level this CPU has, against a
 * double-precision reference, over head sizes that are and are not multiples of the vector
 * width, contexts shorter and longer than a block, strided and packed rows, near one-hot
 * softmaxes that push exp into underflow, and rows allocated to their exact end (so a read
 * past a head's last value is an ASan error in the sanitizer build). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/kernels/attention.h"

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static const uhlm_simd levels[3] = {UHLM_SIMD_SCALAR, UHLM_SIMD_AVX2, UHLM_SIMD_AVX512};

static void reference(const uhlm_attn_args *a, double *out) {
    double *s = malloc((size_t)a->n_pos * sizeof(double));
    if (!s) return;
    double mx = -INFINITY, sum = 0;
    for (int t = 0; t < a->n_pos; t++) {
        double d = 0;
        for (int j = 0; j < a->hd; j++) d += (double)a->q[j] * a->k[(size_t)t * a->stride + j];
        s[t] = d * a->scale;
        if (s[t] > mx) mx = s[t];
    }
    for (int t = 0; t < a->n_pos; t++) sum += (s[t] = exp(s[t] - mx));
    for (int j = 0; j < a->hd; j++) out[j] = 0;
    for (int t = 0; t < a->n_pos; t++)
        for (int j = 0; j < a->hd; j++) out[j] += s[t] / sum * a->v[(size_t)t * a->stride + j];
    free(s);
}

/* One case at every level: |out - ref| within tol of the values' scale, identical bits on a
 * second call with dirty scratch. `sharp` scales q so the scores span hundreds of units. */
static void run_case(int hd, int n_pos, size_t stride, float sharp) {
    const size_t len = (size_t)(n_pos - 1) * stride + (size_t)hd; /* exact end of the rows */
    float *q = malloc((size_t)hd * sizeof(float)), *k = malloc(len * sizeof(float)),
          *v = malloc(len * sizeof(float)), *att = malloc((size_t)n_pos * sizeof(float)),
          *out = malloc((size_t)hd * sizeof(float)), *out2 = malloc((size_t)hd * sizeof(float));
    double *ref = malloc((size_t)hd * sizeof(double));
    if (!q || !k || !v || !att || !out || !out2 || !ref) {
        CHECK(!"out of memory");
        goto out;
    }
    for (int j = 0; j < hd; j++) q[j] = frand() * sharp;
    for (size_t i = 0; i < len; i++) {
        k[i] = frand();
        v[i] = frand();
    }
    uhlm_attn_args a = {q, k, v, stride, n_pos, hd, 1.0f / sqrtf((float)hd), att, out};
    reference(&a, ref);
    for (int li = 0; li < 3; li++) {
        if (!uhlm_simd_supported(levels[li])) continue;
        uhlm_attn_fn fn = uhlm_attn_kernel(levels[li]);
        for (int t = 0; t < n_pos; t++) att[t] = NAN;
        a.out = out;
        fn(&a);
        double err = 0;
        int finite = 1;
        for (int j = 0; j < hd; j++) {
            finite &= isfinite(out[j]);
            double e = fabs(out[j] - ref[j]);
            if (e > err) err = e;
        }
        /* float rounding over n_pos terms of magnitude <= 1, plus exp's 2 ulp */
        const double tol = 4e-6 * (1.0 + sqrt((double)n_pos)) + 1e-6 * sharp;
        CHECKF(finite && err <= tol, "%s hd %d n_pos %d stride %zu sharp %g: error %.3g > %.3g",
               uhlm_simd_name(levels[li]), hd, n_pos, stride, sharp, err, tol);
        for (int t = 0; t < n_pos; t++) att[t] = (float)t * 1e30f;
        a.out = out2;
        fn(&a);
        CHECKF(memcmp(out, out2, (size_t)hd * sizeof(float)) == 0,
               "%s hd %d n_pos %d: a second call differs", uhlm_simd_name(levels[li]), hd, n_pos);
    }
out:
    free(q);
    free(k);
    free(v);
    free(att);
    free(out);
    free(out2);
    free(ref);
}

int main(void) {
    const int hds[] = {1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 64, 100, 128, 129, 160};
    const int ns[] = {1, 2, 7, 15, 16, 17, 31, 32, 33, 100, 257};
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            const int hd = hds[h];
            run_case(hd, ns[i], (size_t)hd, 1.0f);         /* packed: head-major cache */
            run_case(hd, ns[i], (size_t)hd * 3 + 5, 1.0f); /* strided */
        }
    /* near one-hot: most weights underflow in exp */
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
        run_case(hds[h], 100, (size_t)hds[h], 40.0f);
    run_case(64, 1000, 64, 3.0f);
    return check_report();
}
