/* test_hybrid_uncertainty.c: the fast perturbation signal decides every sample exactly as
 * the exact per-sample probability does (same RNG draws), matches the naive M-softmax
 * method in distribution, has the right limits; entropy/maxprob/margin values. */
#include "check.h"
#include "uhlm/sampler.h"
#include "hybrid/uncertainty_internal.h"
#include "uhlm/uncertainty.h"

static double normal(uhlm_rng *r) {
    double u1 = 1.0 - uhlm_rng_uniform(r), u2 = uhlm_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void gen_logits(float *z, int n, double sigma, uint64_t seed) {
    uhlm_rng r;
    uhlm_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) z[i] = (float)(sigma * normal(&r));
}

/* The naive method of DESIGN §2.2: M full softmaxes and M inverse-CDF samples. */
static double naive_u(const float *z, int n, int d, int M, double theta_max, uhlm_rng *r,
                      double *scratch) {
    double mx = z[0];
    for (int i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    int dis = 0;
    for (int m = 0; m < M; m++) {
        double th = theta_max * (1.0 - uhlm_rng_uniform(r)), s = 0.0;
        for (int i = 0; i < n; i++) s += scratch[i] = exp((z[i] - mx) / th);
        double t = uhlm_rng_uniform(r) * s, c = 0.0;
        int pick = n - 1;
        for (int i = 0; i < n; i++) {
            c += scratch[i];
            if (t < c) {
                pick = i;
                break;
            }
        }
        dis += pick != d;
    }
    return (double)dis / M;
}

static int argmax(const float *z, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (z[i] > z[b]) b = i;
    return b;
}

/* fast == exact for the same RNG state, over logit shapes that stress the bounds */
static void test_fast_equals_exact(void) {
    enum { NV = 32000 };
    static float z[NV];
    uhlm_unc_params p = uhlm_unc_default_params();
    uhlm_error err;
    const int vocabs[] = {5, 40, 512, NV};
    const double sigmas[] = {0.3, 1.5, 4.0, 12.0};
    long mismatches = 0, calls = 0;
    double max_frac = 0.0;
    for (size_t vi = 0; vi < 4; vi++) {
        int n = vocabs[vi];
        uhlm_unc *u = uhlm_unc_new(n, &p, &err);
        CHECK(u != NULL);
        if (!u) return;
        for (size_t si = 0; si < 4; si++) {
            gen_logits(z, n, sigmas[si], 100 + vi * 10 + si);
            if (si == 2 && n > 8) { /* ties at the top and beyond the exact set */
                for (int i = 0; i < 40 && i < n; i++) z[(i * 7) % n] = 9.0f;
            }
            if (si == 3 && n > 8) z[1] = -INFINITY; /* a masked token */
            int am = argmax(z, n);
            int trials = n == NV ? 60 : 400;
            uint64_t fb0 = uhlm_unc_fallbacks(u);
            for (int t = 0; t < trials; t++) {
                /* drafts: the argmax, the runner-up region, anything */
                int d = t % 3 == 0 ? am : (int)((t * 2654435761u) % (unsigned)n);
                if (z[d] == -INFINITY) d = am;
                uhlm_rng a, b;
                uhlm_rng_seed(&a, (uint64_t)t * 31 + vi);
                b = a;
                double uf, ue;
                CHECK(uhlm_unc_compute(u, z, d, &a, &uf, &err) == 0);
                CHECK(uhlm_unc_perturb_exact(u, z, d, &b, &ue, &err) == 0);
                mismatches += uf != ue;
                CHECK(memcmp(&a, &b, sizeof a) == 0); /* same number of draws */
                calls++;
            }
            double frac = (double)(uhlm_unc_fallbacks(u) - fb0) / (trials * p.samples);
            if (frac > max_frac) max_frac = frac;
        }
        uhlm_unc_free(u);
    }
    printf("perturb fast vs exact: %ld mismatches in %ld calls; worst fallback share %.4f\n",
           mismatches, calls, max_frac);
    CHECK(mismatches == 0);
    CHECKF(max_frac < 0.05, "fallbacks %.4f", max_frac); /* the fast path does the work */
}

/* fast vs the naive M-softmax method: the mean u agrees within sampling error */
static void test_matches_naive(void) {
    enum { N = 512, T = 3000 };
    static float z[N];
    static double scratch[N];
    uhlm_unc_params p = uhlm_unc_default_params();
    uhlm_error err;
    uhlm_unc *u = uhlm_unc_new(N, &p, &err);
    CHECK(u != NULL);
    if (!u) return;
    const double sigmas[] = {0.7, 2.0, 5.0};
    for (int s = 0; s < 3; s++) {
        gen_logits(z, N, sigmas[s], 900 + s);
        int am = argmax(z, N);
        /* draft: the argmax and, separately, a mid-probability token */
        int second = am == 0 ? 1 : 0;
        for (int i = 0; i < N; i++)
            if (i != am && z[i] > z[second]) second = i;
        const int drafts[2] = {am, second};
        for (int di = 0; di < 2; di++) {
            uhlm_rng ra, rb;
            uhlm_rng_seed(&ra, 1000 + s * 2 + di);
            uhlm_rng_seed(&rb, 5000 + s * 2 + di);
            double sf = 0, sf2 = 0, sn = 0, sn2 = 0;
            for (int t = 0; t < T; t++) {
                double a, b = naive_u(z, N, drafts[di], p.samples, p.theta_max, &rb, scratch);
                uhlm_unc_compute(u, z, drafts[di], &ra, &a, &err);
                sf += a;
                sf2 += a * a;
                sn += b;
                sn2 += b * b;
            }
            double mf = sf / T, mn = sn / T;
            double var = (sf2 / T - mf * mf + sn2 / T - mn * mn) / T;
            double tol = 5.0 * sqrt(var) + 1e-9;
            printf("sigma %.1f draft %s: mean u fast %.4f naive %.4f (tolerance %.4f)\n", sigmas[s],
                   di ? "runner-up" : "argmax", mf, mn, tol);
            CHECKF(fabs(mf - mn) <= tol, "fast %.4f naive %.4f", mf, mn);
        }
    }
    uhlm_unc_free(u);
}

static void test_limits(void) {
    enum { N = 100 };
    float z[N];
    uhlm_unc_params p = uhlm_unc_default_params();
    uhlm_error err;
    uhlm_unc *u = uhlm_unc_new(N, &p, &err);
    CHECK(u != NULL);
    if (!u) return;
    uhlm_rng r;
    uhlm_rng_seed(&r, 9);
    double v;
    /* one-hot logits: every perturbed sample is the argmax */
    for (int i = 0; i < N; i++) z[i] = -1e4f;
    z[17] = 0.0f;
    int ok0 = 1, ok1 = 1;
    for (int t = 0; t < 200; t++) {
        uhlm_unc_compute(u, z, 17, &r, &v, &err);
        ok0 &= v == 0.0;
        uhlm_unc_compute(u, z, 3, &r, &v, &err);
        ok1 &= v == 1.0;
    }
    CHECK(ok0);
    CHECK(ok1);
    for (int i = 0; i < N; i++) z[i] = -INFINITY;
    z[4] = 1.0f;
    CHECK(uhlm_unc_compute(u, z, 4, &r, &v, &err) == 0 && v == 0.0);
    /* flat logits: each sample agrees with probability 1/V whatever θ */
    for (int i = 0; i < N; i++) z[i] = 0.5f;
    double s = 0;
    for (int t = 0; t < 2000; t++) {
        uhlm_unc_compute(u, z, 0, &r, &v, &err);
        s += v;
    }
    CHECKF(fabs(s / 2000 - (1.0 - 1.0 / N)) < 0.002, "flat mean %g", s / 2000);
    /* bad input */
    z[5] = NAN;
    CHECK(uhlm_unc_compute(u, z, 0, &r, &v, &err) != 0);
    z[5] = 0.5f;
    CHECK(uhlm_unc_compute(u, z, N, &r, &v, &err) != 0);
    CHECK(uhlm_unc_compute(u, z, 0, NULL, &v, &err) != 0);
    uhlm_unc_free(u);

    uhlm_unc_params bad = p;
    bad.samples = 0;
    CHECK(uhlm_unc_new(N, &bad, &err) == NULL);
    bad = p;
    bad.theta_max = 0.0;
    CHECK(uhlm_unc_new(N, &bad, &err) == NULL);
    uhlm_unc_method m;
    CHECK(uhlm_unc_method_parse("margin", &m) == 0 && m == UHLM_UNC_MARGIN);
    CHECK(uhlm_unc_method_parse("perturb", &m) == 0 && m == UHLM_UNC_PERTURB);
    CHECK(uhlm_unc_method_parse("variance", &m) != 0);
    CHECK(!strcmp(uhlm_unc_method_name(UHLM_UNC_ENTROPY), "entropy"));
}

static void test_alternatives(void) {
    enum { N = 6 };
    float z[N] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    double p[N], s = 0;
    for (int i = 0; i < N; i++) s += exp(z[i]);
    for (int i = 0; i < N; i++) p[i] = exp(z[i]) / s;
    double h = 0;
    for (int i = 0; i < N; i++) h -= p[i] * log(p[i]);
    uhlm_unc_params prm = uhlm_unc_default_params();
    uhlm_error err;
    double v;
    const uhlm_unc_method ms[3] = {UHLM_UNC_ENTROPY, UHLM_UNC_MAXPROB, UHLM_UNC_MARGIN};
    const double want[3] = {h / log((double)N), 1.0 - p[1], 1.0 /* tie at the top */};
    for (int k = 0; k < 3; k++) {
        prm.method = ms[k];
        uhlm_unc *u = uhlm_unc_new(N, &prm, &err);
        CHECK(u && uhlm_unc_compute(u, z, 0, NULL, &v, &err) == 0);
        CHECKF(fabs(v - want[k]) < 1e-6, "%s: %g vs %g", uhlm_unc_method_name(ms[k]), v, want[k]);
        float z2[N] = {5.0f, 3.0f, 2.0f, 0.0f, -1.0f, 0.5f};
        double s2 = 0;
        for (int i = 0; i < N; i++) s2 += exp(z2[i]);
        uhlm_unc_compute(u, z2, 0, NULL, &v, &err);
        if (ms[k] == UHLM_UNC_MARGIN)
            CHECKF(fabs(v - (1.0 - (exp(5.0) - exp(3.0)) / s2)) < 1e-6, "margin %g", v);
        /* limits: flat -> 1 for all three; one-hot -> 0 */
        float flat[N] = {0};
        uhlm_unc_compute(u, flat, 0, NULL, &v, &err);
        CHECKF(fabs(v - (ms[k] == UHLM_UNC_MAXPROB ? 1.0 - 1.0 / N : 1.0)) < 1e-9, "flat %g", v);
        float oh[N] = {-1e4f, -1e4f, 0.0f, -1e4f, -1e4f, -1e4f};
        uhlm_unc_compute(u, oh, 0, NULL, &v, &err);
        CHECKF(v < 1e-9, "one-hot %g", v);
        uhlm_unc_free(u);
    }
}

int main(void) {
    test_fast_equals_exact();
    test_matches_naive();
    test_limits();
    test_alternatives();
    return check_report();
}
