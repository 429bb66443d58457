/* test_sampler.c: PRNG reproducibility, the sampling distribution (temperature, top-k,
 * top-p) and that uhlm_sample draws from it. */
#include "check.h"
#include "uhlm/sampler.h"

static void test_rng(void) {
    uhlm_rng a, b;
    uhlm_rng_seed(&a, 123);
    uhlm_rng_seed(&b, 123);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= uhlm_rng_u64(&a) == uhlm_rng_u64(&b);
    CHECK(same);
    uhlm_rng_seed(&b, 124);
    CHECK(uhlm_rng_u64(&a) != uhlm_rng_u64(&b));
    double s = 0;
    int inrange = 1;
    for (int i = 0; i < 100000; i++) {
        double u = uhlm_rng_uniform(&a);
        inrange &= u >= 0.0 && u < 1.0;
        s += u;
    }
    CHECK(inrange);
    CHECKF(fabs(s / 100000 - 0.5) < 0.005, "mean %g", s / 100000);
}

static void test_probs(void) {
    float logits[6] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    float p[6];
    uhlm_sampling g = {0.0f, 0, 1.0f};
    CHECK(uhlm_sampling_probs(&g, logits, 6, p) == 1);
    CHECK(p[1] == 1.0f && p[3] == 0.0f && p[0] == 0.0f); /* ties: lowest index */
    uhlm_sampling t1 = {1.0f, 0, 1.0f};
    uhlm_sampling_probs(&t1, logits, 6, p);
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp(logits[i]);
    double md = 0, sum = 0;
    for (int i = 0; i < 6; i++) {
        md = fmax(md, fabs(p[i] - exp(logits[i]) / z));
        sum += p[i];
    }
    CHECK(md < 1e-6 && fabs(sum - 1) < 1e-6);
    uhlm_sampling t2 = {2.0f, 0, 1.0f};
    uhlm_sampling_probs(&t2, logits, 6, p);
    z = 0;
    for (int i = 0; i < 6; i++) z += exp(logits[i] / 2);
    CHECK(fabs(p[2] - exp(1.0) / z) < 1e-6);
    /* top-k 3: indices 1, 3 (tie, both kept) and 2 */
    uhlm_sampling k3 = {1.0f, 3, 1.0f};
    uhlm_sampling_probs(&k3, logits, 6, p);
    z = 2 * exp(3.0) + exp(2.0);
    CHECK(fabs(p[1] - exp(3.0) / z) < 1e-6 && fabs(p[2] - exp(2.0) / z) < 1e-6 && p[0] == 0 &&
          p[5] == 0);
    /* top-p: smallest prefix reaching the mass */
    float l2[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    uhlm_sampling tp = {1.0f, 0, 0.75f};
    uhlm_sampling_probs(&tp, l2, 4, p);
    CHECK(fabs(p[0] - 0.625) < 1e-6 && fabs(p[1] - 0.375) < 1e-6 && p[2] == 0 && p[3] == 0);
    tp.top_p = 0.5f;
    uhlm_sampling_probs(&tp, l2, 4, p);
    CHECK(p[0] == 1.0f);
    uhlm_error err = {{0}};
    uhlm_sampling bad = {-1.0f, 0, 1.0f};
    CHECK(uhlm_sampling_check(&bad, &err) != 0 && strstr(err.msg, "temperature"));
    bad = (uhlm_sampling){1.0f, -2, 1.0f};
    CHECK(uhlm_sampling_check(&bad, &err) != 0);
    bad = (uhlm_sampling){1.0f, 0, 0.0f};
    CHECK(uhlm_sampling_check(&bad, &err) != 0);
    bad = (uhlm_sampling){NAN, 0, 1.0f};
    CHECK(uhlm_sampling_check(&bad, &err) != 0);
    CHECK(uhlm_sampling_check(&t1, &err) == 0);
}

static void test_sample_distribution(void) {
    float p[5] = {0.1f, 0.0f, 0.4f, 0.3f, 0.2f};
    int cnt[5] = {0};
    uhlm_rng r;
    uhlm_rng_seed(&r, 7);
    int n = 200000;
    for (int i = 0; i < n; i++) cnt[uhlm_sample(p, 5, &r)]++;
    CHECK(cnt[1] == 0);
    double chi = 0;
    for (int i = 0; i < 5; i++)
        if (p[i] > 0) chi += pow(cnt[i] - n * p[i], 2) / (n * p[i]);
    /* 4 degrees of freedom: p = 0.001 critical value 18.47 */
    CHECKF(chi < 18.47, "chi2 %g", chi);
}

int main(void) {
    test_rng();
    test_probs();
    test_sample_distribution();
    return check_report();
}
