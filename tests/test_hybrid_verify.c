/* test_hybrid_verify.c: speculative verification reproduces y exactly (chi-square over
 * 200k trials), also through the topk payload when the draft comes from x̃; the greedy rule;
 * the degenerate residual; the RNG streams; the skip policies. */
#include "check.h"
#include "uhlm/payload.h"
#include "uhlm/policy.h"
#include "uhlm/sampler.h"
#include "uhlm/verify.h"

#define V 40
#define TRIALS 200000

/* Upper alpha-quantile of chi-square with df degrees of freedom (Wilson-Hilferty; accurate
 * to a few percent for df >= 3, ample for a pass/fail threshold). z = 4.265 is alpha = 1e-5,
 * so a correct implementation fails a given fixed-seed run with probability 1e-5. */
static double chi2_threshold(int df) {
    const double z = 4.265;
    double a = 2.0 / (9.0 * df);
    double c = 1.0 - a + z * sqrt(a);
    return df * c * c * c;
}

/* Pearson chi-square of counts against probabilities p (n trials); bins whose expected count
 * is below 5 are pooled into one. Returns the statistic, *df the degrees of freedom. */
static double chi2_gof(const long *counts, const float *p, int k, long n, int *df) {
    double stat = 0.0, pool_e = 0.0, pool_o = 0.0;
    int bins = 0;
    for (int i = 0; i < k; i++) {
        double e = (double)p[i] * n;
        if (e < 5.0) {
            pool_e += e;
            pool_o += counts[i];
            continue;
        }
        stat += (counts[i] - e) * (counts[i] - e) / e;
        bins++;
    }
    if (pool_e >= 5.0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        bins++;
    } else if (pool_o > 0) {
        stat += 1e9; /* observed where almost nothing was expected */
    }
    *df = bins - 1;
    return stat;
}

static void softmax(const double *z, int n, double temp, float *p) {
    double mx = z[0], s = 0.0;
    for (int i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < n; i++) s += exp((z[i] - mx) / temp);
    for (int i = 0; i < n; i++) p[i] = (float)(exp((z[i] - mx) / temp) / s);
}

static double normal(uhlm_rng *r) {
    double u1 = 1.0 - uhlm_rng_uniform(r), u2 = uhlm_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* x and y: related but different, with zeros in each that the other lacks */
static void make_pair(float *x, float *y, uint64_t seed) {
    uhlm_rng r;
    uhlm_rng_seed(&r, seed);
    double zx[V], zy[V];
    for (int i = 0; i < V; i++) {
        zx[i] = 2.0 * normal(&r);
        zy[i] = zx[i] + 1.2 * normal(&r);
    }
    softmax(zx, V, 1.0, x);
    softmax(zy, V, 0.8, y);
    x[3] = 0.0f; /* only y can produce token 3: it must come from the residual */
    y[5] = 0.0f; /* a draft of 5 must always be rejected */
    double sx = 0, sy = 0;
    for (int i = 0; i < V; i++) {
        sx += x[i];
        sy += y[i];
    }
    for (int i = 0; i < V; i++) {
        x[i] = (float)(x[i] / sx);
        y[i] = (float)(y[i] / sy);
    }
}

static double tv(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += fabs((double)a[i] - b[i]);
    return 0.5 * s;
}

/* Draw d from `draw`, verify it against `test_x` and y. */
static void run_trials(const float *draw, const float *test_x, const float *y, long *counts,
                       long *accepted, long *fallbacks, uint64_t seed) {
    uhlm_rng rd, rv;
    uhlm_rng_seed(&rd, seed);
    uhlm_rng_seed(&rv, seed ^ 0xabcdefULL);
    memset(counts, 0, sizeof(long) * V);
    *accepted = *fallbacks = 0;
    for (long t = 0; t < TRIALS; t++) {
        int d = uhlm_sample_weights(draw, V, &rd);
        uhlm_verdict res;
        uhlm_error err;
        if (uhlm_verify(test_x, y, V, d, &rv, &res, &err) != 0) {
            counts[0] = -1;
            return;
        }
        counts[res.token]++;
        *accepted += res.accepted;
        *fallbacks += res.residual_fallback;
        if (res.accepted != (res.token == d)) counts[0] = -1000000;
    }
}

static void test_exact(void) {
    float x[V], y[V];
    make_pair(x, y, 7);
    long counts[V], acc, fb;
    run_trials(x, x, y, counts, &acc, &fb, 11);
    int df;
    double stat = chi2_gof(counts, y, V, TRIALS, &df), thr = chi2_threshold(df);
    printf("verify f32: chi2 %.2f (df %d, threshold %.2f), TV(x,y) %.4f, accept rate %.4f\n", stat,
           df, thr, tv(x, y, V), (double)acc / TRIALS);
    CHECKF(stat < thr, "chi2 %.2f >= %.2f", stat, thr);
    CHECK(counts[5] == 0);
    CHECK(counts[3] > 0);
    /* acceptance probability is 1 - TV(x, y): binomial 5-sigma band */
    double pa = 1.0 - tv(x, y, V), sd = sqrt(pa * (1 - pa) / TRIALS);
    CHECKF(fabs((double)acc / TRIALS - pa) < 5 * sd, "accept %.5f vs %.5f", (double)acc / TRIALS,
           pa);
    CHECK(fb == 0);

    /* negative control: the drafts alone (no verification) follow x, not y */
    uhlm_rng r;
    uhlm_rng_seed(&r, 5);
    long dc[V] = {0};
    for (long t = 0; t < TRIALS; t++) dc[uhlm_sample_weights(x, V, &r)]++;
    double s2 = chi2_gof(dc, y, V, TRIALS, &df);
    printf("drafts vs y (must fail): chi2 %.1f (threshold %.2f)\n", s2, chi2_threshold(df));
    CHECK(s2 > chi2_threshold(df));
}

static void test_exact_topk(void) {
    float x[V], y[V], xt[V];
    make_pair(x, y, 21);
    uhlm_payload_spec sp;
    uhlm_error err;
    CHECK(uhlm_payload_parse("topk:6", &sp, &err) == 0);
    uint8_t buf[256];
    long nb = uhlm_payload_encode(&sp, x, V, buf, sizeof buf, &err);
    CHECK(nb == (long)uhlm_payload_bytes(&sp, V));
    CHECK(uhlm_payload_decode(&sp, buf, (size_t)nb, V, xt, &err) == 0);
    long counts[V], acc, fb;
    run_trials(xt, xt, y, counts, &acc, &fb, 12);
    int df;
    double stat = chi2_gof(counts, y, V, TRIALS, &df), thr = chi2_threshold(df);
    printf("verify topk:6 (draft from x~, verified with x~): chi2 %.2f (df %d, threshold %.2f), "
           "TV(x~,y) %.4f\n",
           stat, df, thr, tv(xt, y, V));
    CHECKF(stat < thr, "chi2 %.2f >= %.2f", stat, thr);
    /* breaking the exactness rule (draft from x~, verification against the true x) is
     * visibly wrong: the test has the power to see it */
    run_trials(xt, x, y, counts, &acc, &fb, 13);
    double bad = chi2_gof(counts, y, V, TRIALS, &df);
    printf("draft from x~ but verified with x (must fail): chi2 %.1f (threshold %.2f)\n", bad,
           chi2_threshold(df));
    CHECK(bad > chi2_threshold(df));
}

static void test_greedy_and_edges(void) {
    uhlm_verdict r;
    uhlm_error err;
    CHECK(uhlm_verify_greedy(10, 4, 4, &r, &err) == 0 && r.accepted && r.token == 4 &&
          r.beta == 0.0 && r.y_ge_x);
    CHECK(uhlm_verify_greedy(10, 4, 7, &r, &err) == 0 && !r.accepted && r.token == 7 &&
          r.beta == 1.0 && !r.y_ge_x);
    CHECK(uhlm_verify_greedy(10, 10, 7, &r, &err) != 0);

    float x[3] = {0.5f, 0.5f, 0.0f}, y[3] = {0.4f, 0.5f, 0.0f};
    uhlm_rng rng;
    uhlm_rng_seed(&rng, 1);
    /* y sums to 0.9: rejecting d = 0 (prob 0.2) meets an all-zero residual, drawn from y */
    int fb = 0, bad = 0;
    for (int t = 0; t < 2000; t++) {
        CHECK(uhlm_verify(x, y, 3, 0, &rng, &r, &err) == 0);
        fb += r.residual_fallback;
        bad += r.token == 2 || r.accepted != (r.token == 0);
        if (!r.residual_fallback) bad += !r.accepted;
    }
    CHECK(fb > 250 && fb < 550);
    CHECK(bad == 0);
    CHECK(fabs(r.x_d - 0.5) < 1e-7 && fabs(r.y_d - 0.4) < 1e-7 && fabs(r.beta - 0.2) < 1e-6);
    /* a draft x gives zero probability cannot have been drawn from x */
    CHECK(uhlm_verify(x, y, 3, 2, &rng, &r, &err) != 0);
    CHECK(uhlm_verify(x, y, 3, 3, &rng, &r, &err) != 0);
    /* identical distributions: always accepted */
    int all = 1;
    for (int t = 0; t < 1000; t++) {
        uhlm_verify(x, x, 3, t & 1, &rng, &r, &err);
        all &= r.accepted && r.beta == 0.0 && r.y_ge_x;
    }
    CHECK(all);
    /* sample_weights never picks a zero weight, and refuses an empty distribution */
    float w[4] = {0.0f, 2.0f, 0.0f, 1.0f}, z[2] = {0.0f, 0.0f};
    int zero = 0;
    for (int t = 0; t < 1000; t++) zero += (uhlm_sample_weights(w, 4, &rng) % 2) == 0;
    CHECK(zero == 0);
    CHECK(uhlm_sample_weights(z, 2, &rng) == -1);
}

static void test_streams(void) {
    uint64_t a = uhlm_hybrid_stream_seed(42, UHLM_STREAM_DRAFT);
    uint64_t b = uhlm_hybrid_stream_seed(42, UHLM_STREAM_VERIFY);
    uint64_t c = uhlm_hybrid_stream_seed(43, UHLM_STREAM_DRAFT);
    CHECK(a != b && a != c && b != c);
    CHECK(a == uhlm_hybrid_stream_seed(42, UHLM_STREAM_DRAFT));
    CHECK(uhlm_hybrid_pos_seed(a, 0) != uhlm_hybrid_pos_seed(a, 1));
    uhlm_rng r1, r2;
    uhlm_hybrid_rng(&r1, a, 17);
    uhlm_hybrid_rng(&r2, a, 17);
    CHECK(uhlm_rng_u64(&r1) == uhlm_rng_u64(&r2));
    /* first draws across positions look uniform (mean of 100k within 5 sigma) */
    double s = 0;
    for (int p = 0; p < 100000; p++) {
        uhlm_hybrid_rng(&r1, a, (uint64_t)p);
        s += uhlm_rng_uniform(&r1);
    }
    CHECKF(fabs(s / 100000 - 0.5) < 5 * sqrt(1.0 / 12 / 100000), "mean %g", s / 100000);
}

static void test_policy(void) {
    uhlm_mode m;
    CHECK(uhlm_mode_parse("uhlm", &m) == 0 && m == UHLM_MODE_UHLM);
    CHECK(uhlm_mode_parse("llm", &m) == 0 && m == UHLM_MODE_LLM);
    CHECK(uhlm_mode_parse("bogus", &m) == -1);
    CHECK(!strcmp(uhlm_mode_name(UHLM_MODE_RAND), "rand"));
    uhlm_rng r;
    uhlm_rng_seed(&r, 3);
    uhlm_policy slm = {UHLM_MODE_SLM, 0, 0}, hlm = {UHLM_MODE_HLM, 0, 0};
    uhlm_policy u = {UHLM_MODE_UHLM, 0.3, 0}, uneg = {UHLM_MODE_UHLM, -0.01, 0},
                uone = {UHLM_MODE_UHLM, 1.0, 0}, rnd = {UHLM_MODE_RAND, 0, 0.3};
    CHECK(uhlm_policy_skip(&slm, NAN, NULL) == 1);
    CHECK(uhlm_policy_skip(&hlm, 0.0, NULL) == 0);
    CHECK(uhlm_policy_skip(&u, 0.3, NULL) == 1 && uhlm_policy_skip(&u, 0.35, NULL) == 0);
    CHECK(uhlm_policy_skip(&uneg, 0.0, NULL) == 0);
    CHECK(uhlm_policy_skip(&uone, 1.0, NULL) == 1);
    CHECK(uhlm_policy_needs_u(&u) && !uhlm_policy_needs_u(&hlm) && !uhlm_policy_needs_u(&rnd));
    int k = 0;
    for (int i = 0; i < 100000; i++) k += uhlm_policy_skip(&rnd, NAN, &r);
    CHECKF(fabs(k / 100000.0 - 0.3) < 5 * sqrt(0.21 / 100000), "rand skip %g", k / 100000.0);
    uhlm_error err;
    uhlm_policy badp = {UHLM_MODE_RAND, 0, 1.5}, badu = {UHLM_MODE_UHLM, NAN, 0};
    CHECK(uhlm_policy_check(&badp, &err) != 0);
    CHECK(uhlm_policy_check(&badu, &err) != 0);
    CHECK(uhlm_policy_check(&rnd, &err) == 0);
}

int main(void) {
    test_exact();
    test_exact_topk();
    test_greedy_and_edges();
    test_streams();
    test_policy();
    return check_report();
}
