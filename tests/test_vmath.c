/* test_vmath.c: the SwiGLU kernels of every SIMD level this CPU has, against a double-precision
 * reference: values across the whole float range that matters (|g| from 1e-30 to past the exp
 * overflow point, both signs), NaN propagation, every tail length up to two vectors, buffers
 * allocated to their exact end (an overrun is an ASan error in the sanitizer build), and the
 * per-element contract: a range computed in pieces equals the range computed at once. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/kernels/vmath.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double urand(void) { /* uniform in [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static const uhlm_simd levels[3] = {UHLM_SIMD_SCALAR, UHLM_SIMD_AVX2, UHLM_SIMD_AVX512};

/* g with a log-uniform magnitude in [1e-30, 1e3] and a random sign; u in [-2, 2) */
static void fill(float *g, float *u, int n) {
    for (int i = 0; i < n; i++) {
        const double mag = pow(10.0, -30.0 + 33.0 * urand());
        g[i] = (float)(urand() < 0.5 ? -mag : mag);
        u[i] = (float)(4.0 * urand() - 2.0);
    }
}

static double ref_swiglu(float g, float u) { return (double)g / (1.0 + exp(-(double)g)) * u; }

static void test_accuracy(void) {
    const int n = 4099;
    float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float));
    float *o = malloc(n * sizeof(float));
    CHECK(g && u && o);
    if (!(g && u && o)) goto out;
    fill(g, u, n);
    for (int li = 0; li < 3; li++) {
        if (!uhlm_simd_supported(levels[li])) continue;
        memcpy(o, g, n * sizeof(float));
        uhlm_swiglu_kernel(levels[li])(o, u, n);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            const double r = ref_swiglu(g[i], u[i]);
            /* relative error, or absolute below 1e-30 (there e^-g is subnormal or 0 in float, at every
             * level and in libm, and the value is far below anything the model can tell apart) */
            const double err = fabs(o[i] - r) / fmax(fabs(r), 1e-30);
            if (err > worst) worst = err;
        }
        /* a few ulps: exp within ~1 ulp, then an add, a divide and two multiplies */
        CHECKF(worst < 6e-7, "%s: worst relative error %.3g", uhlm_simd_name(levels[li]), worst);
    }
out:
    free(g);
    free(u);
    free(o);
}

static void test_special(void) {
    const float g[8] = {0.0f, -0.0f, 100.0f, -100.0f, 88.8f, -88.8f, NAN, 1e30f};
    const float u[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int li = 0; li < 3; li++) {
        if (!uhlm_simd_supported(levels[li])) continue;
        float o[8];
        memcpy(o, g, sizeof o);
        uhlm_swiglu_kernel(levels[li])(o, u, 8);
        const char *ln = uhlm_simd_name(levels[li]);
        CHECKF(o[0] == 0.0f && o[1] == 0.0f, "%s: silu(0) = %g, %g", ln, o[0], o[1]);
        CHECKF(o[2] == 100.0f && o[4] == 88.8f && o[7] == 1e30f, "%s: large positive: %g %g %g",
               ln, o[2], o[4], o[7]);
        CHECKF(fabsf(o[3]) < 1e-40f && fabsf(o[5]) < 1e-36f, "%s: large negative: %g %g", ln, o[3],
               o[5]);
        CHECKF(isnan(o[6]), "%s: NaN in, %g out", ln, o[6]);
    }
}

/* every length 1..40 on exact-size buffers, and the same values computed in two pieces */
static void test_tails(void) {
    for (int n = 1; n <= 40; n++) {
        float *g = malloc((size_t)n * sizeof(float)), *u = malloc((size_t)n * sizeof(float));
        float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
        CHECK(g && u && a && b);
        if (g && u && a && b) {
            fill(g, u, n);
            for (int li = 0; li < 3; li++) {
                if (!uhlm_simd_supported(levels[li])) continue;
                uhlm_swiglu_fn f = uhlm_swiglu_kernel(levels[li]);
                memcpy(a, g, (size_t)n * sizeof(float));
                memcpy(b, g, (size_t)n * sizeof(float));
                f(a, u, n);
                const int cut = n / 3;
                f(b, u, cut);
                f(b + cut, u + cut, n - cut);
                CHECKF(memcmp(a, b, (size_t)n * sizeof(float)) == 0,
                       "%s n=%d: pieces differ from one call", uhlm_simd_name(levels[li]), n);
            }
        }
        free(g);
        free(u);
        free(a);
        free(b);
    }
}

int main(void) {
    test_accuracy();
    test_special();
    test_tails();
    return check_report();
}
