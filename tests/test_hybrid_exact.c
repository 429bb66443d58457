/* test_hybrid_exact.c: on the real model pair, hlm reproduces the LLM's sampling
 * distribution (DESIGN §2.1, §3). N one-token generations from a fixed prefix in each mode,
 * compared with a chi-square test whose threshold comes from the degrees of freedom at
 * alpha = 1e-5: against the LLM's exact next-token distribution y (goodness of fit) and
 * against the llm mode's own samples (two-sample homogeneity). hlm passes with f32 and with
 * a lossy topk payload; slm must fail, which shows the test can fail.
 *
 * Each sample restarts the device and the verifier on the same prompt: both reuse their
 * cached prefix, so a sample costs one SLM and one LLM forward of one token. */
#include "check.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"
#include "uhlm/tokenizer.h"

/* Sanitizer builds run about ten times slower and are there to catch memory errors, not to
 * repeat the statistics: they draw fewer samples (the thresholds follow the sample size, and
 * the slm control still fails by a wide margin). */
#if defined(__SANITIZE_ADDRESS__)
#define N_SAMPLES 4000
#else
#define N_SAMPLES 20000
#endif
#define PREFIX "Once upon a time, there was a little girl named Lily. She liked to"

static double chi2_threshold(int df) { /* Wilson-Hilferty, alpha = 1e-5 (z = 4.265) */
    const double z = 4.265;
    double a = 2.0 / (9.0 * df);
    double c = 1.0 - a + z * sqrt(a);
    return df * c * c * c;
}

/* Goodness of fit of counts (n samples) to p; bins expected below 5 are pooled. */
static double chi2_gof(const long *c, const float *p, int k, long n, int *df) {
    double stat = 0.0, pe = 0.0, po = 0.0;
    int bins = 0;
    for (int i = 0; i < k; i++) {
        double e = (double)p[i] * n;
        if (e < 5.0) {
            pe += e;
            po += c[i];
            continue;
        }
        stat += (c[i] - e) * (c[i] - e) / e;
        bins++;
    }
    if (pe >= 5.0) {
        stat += (po - pe) * (po - pe) / pe;
        bins++;
    } else if (po > 10) {
        stat += 1e9;
    }
    *df = bins - 1;
    return stat;
}

/* Two samples of equal size: Σ (a-b)^2/(a+b) over bins, pooling bins with a+b < 10. */
static double chi2_two(const long *a, const long *b, int k, int *df) {
    double stat = 0.0;
    long pa = 0, pb = 0;
    int bins = 0;
    for (int i = 0; i < k; i++) {
        long s = a[i] + b[i];
        if (s < 10) {
            pa += a[i];
            pb += b[i];
            continue;
        }
        stat += (double)(a[i] - b[i]) * (a[i] - b[i]) / s;
        bins++;
    }
    if (pa + pb > 0) {
        stat += (double)(pa - pb) * (pa - pb) / (pa + pb);
        bins++;
    }
    *df = bins - 1;
    return stat;
}

static double tv_counts(const long *c, const float *p, int k, long n) {
    double s = 0.0;
    for (int i = 0; i < k; i++) s += fabs((double)c[i] / n - p[i]);
    return 0.5 * s;
}

typedef struct {
    uhlm_model *slm, *llm;
    uhlm_ctx *slm_ctx;
    uhlm_verifier *ver;
    int prompt[256];
    int np, V;
} env;

/* N one-token generations; counts[V] gets the histogram. */
static int sample_mode(env *e, uhlm_mode mode, const char *payload, const uhlm_sampling *smp,
                       uint64_t seed0, long *counts, uhlm_device_stats *agg) {
    uhlm_device_params p = uhlm_device_default_params();
    uhlm_error err;
    p.policy.mode = mode;
    p.sampling = *smp;
    p.n_gen = 1;
    if (uhlm_payload_parse(payload, &p.payload, &err) != 0) return -1;
    uhlm_device *d = uhlm_device_new(e->slm_ctx, 0, e->ver, NULL, &p, &err);
    if (!d) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    memset(counts, 0, sizeof(long) * (size_t)e->V);
    memset(agg, 0, sizeof *agg);
    for (long i = 0; i < N_SAMPLES; i++) {
        int tok;
        if (uhlm_device_start(d, e->prompt, e->np, seed0 + (uint64_t)i, &err) != 0 ||
            uhlm_device_step(d, &tok, &err) != 1) {
            fprintf(stderr, "%s\n", err.msg);
            uhlm_device_free(d);
            return -1;
        }
        counts[tok]++;
        const uhlm_device_stats *s = uhlm_device_get_stats(d);
        agg->transmitted += s->transmitted;
        agg->rejected += s->rejected;
        agg->llm_forward_calls += s->llm_forward_calls;
    }
    uhlm_device_free(d);
    return 0;
}

int main(void) {
    env e;
    uhlm_error err;
    e.slm = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"),
                            uhlm_test_model_path("tok512.bin"), &err);
    e.llm = uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"),
                            uhlm_test_model_path("tok512.bin"), &err);
    CHECK(e.slm && e.llm);
    if (!e.slm || !e.llm) return check_report();
    e.V = uhlm_model_config(e.slm)->vocab_size;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1; /* tiny models: threads only add synchronisation */
    e.slm_ctx = uhlm_ctx_new(e.slm, &cp, &err);
    e.ver = uhlm_verifier_inproc_new(e.llm, &cp, &err);
    CHECK(e.slm_ctx && e.ver);
    e.np = uhlm_tokenize(uhlm_model_tokenizer(e.slm), PREFIX, strlen(PREFIX), 1, 0, e.prompt, 256, &err);
    CHECK(e.np > 5 && e.np < 256);

    /* the exact target: the LLM's sampling distribution after the prefix, and the SLM's */
    float *y = malloc(sizeof(float) * (size_t)e.V), *x = malloc(sizeof(float) * (size_t)e.V);
    float *lg = malloc(sizeof(float) * (size_t)e.V);
    uhlm_ctx *ref = uhlm_ctx_new(e.llm, &cp, &err), *sref = uhlm_ctx_new(e.slm, &cp, &err);
    uhlm_batch_entry be[256];
    for (int i = 0; i < e.np; i++) be[i] = (uhlm_batch_entry){0, i, e.prompt[i], i == e.np - 1};
    uhlm_sampling smp = {1.0f, 0, 1.0f};
    CHECK(uhlm_decode(ref, be, e.np, lg, NULL, &err) == 0);
    uhlm_sampling_probs(&smp, lg, e.V, y);
    CHECK(uhlm_decode(sref, be, e.np, lg, NULL, &err) == 0);
    uhlm_sampling_probs(&smp, lg, e.V, x);
    double tvxy = 0.0;
    for (int i = 0; i < e.V; i++) tvxy += 0.5 * fabs((double)x[i] - y[i]);
    printf("prefix of %d tokens; TV(SLM, LLM) = %.4f\n", e.np, tvxy);
    CHECKF(tvxy > 0.05, "the pair is too similar for the negative control: %.4f", tvxy);

    long *c_llm = calloc((size_t)e.V, sizeof(long)), *c_m = calloc((size_t)e.V, sizeof(long));
    uhlm_device_stats agg;
    double t0 = uhlm_now();
    CHECK(sample_mode(&e, UHLM_MODE_LLM, "f32", &smp, 1000000, c_llm, &agg) == 0);
    int df;
    double g = chi2_gof(c_llm, y, e.V, N_SAMPLES, &df);
    printf("llm      vs y: chi2 %8.1f df %3d threshold %.1f  TV %.4f  (%.1f s)\n", g, df,
           chi2_threshold(df), tv_counts(c_llm, y, e.V, N_SAMPLES), uhlm_now() - t0);
    CHECK(g < chi2_threshold(df));
    CHECK(agg.transmitted == N_SAMPLES);

    const struct {
        uhlm_mode mode;
        const char *payload;
        int should_match;
    } runs[] = {{UHLM_MODE_HLM, "f32", 1},
                {UHLM_MODE_HLM, "topk:8", 1},
                {UHLM_MODE_HLM, "topk:32:16", 1},
                {UHLM_MODE_SLM, "f32", 0}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        t0 = uhlm_now();
        CHECK(sample_mode(&e, runs[r].mode, runs[r].payload, &smp, 2000000 + 100000 * r, c_m,
                          &agg) == 0);
        int df1, df2;
        double s1 = chi2_gof(c_m, y, e.V, N_SAMPLES, &df1);
        double s2 = chi2_two(c_m, c_llm, e.V, &df2);
        double th1 = chi2_threshold(df1), th2 = chi2_threshold(df2);
        printf("%-4s %-10s vs y: chi2 %10.1f df %3d thr %.1f | vs llm: chi2 %10.1f df %3d thr %.1f"
               " | TV %.4f rejections %.3f (%.1f s)\n",
               uhlm_mode_name(runs[r].mode), runs[r].payload, s1, df1, th1, s2, df2, th2,
               tv_counts(c_m, y, e.V, N_SAMPLES),
               agg.transmitted ? (double)agg.rejected / agg.transmitted : 0.0, uhlm_now() - t0);
        if (runs[r].should_match) {
            CHECKF(s1 < th1, "%s %s vs y", uhlm_mode_name(runs[r].mode), runs[r].payload);
            CHECKF(s2 < th2, "%s %s vs llm", uhlm_mode_name(runs[r].mode), runs[r].payload);
            CHECK(agg.transmitted == N_SAMPLES);
            /* the rejection rate estimates TV(x~, y); with f32, x~ = x */
            CHECK(agg.rejected > 0);
            if (!strcmp(runs[r].payload, "f32")) {
                double rate = (double)agg.rejected / N_SAMPLES;
                double sd = sqrt(tvxy * (1.0 - tvxy) / N_SAMPLES);
                CHECKF(fabs(rate - tvxy) < 5.0 * sd, "rejection rate %.4f vs TV %.4f", rate, tvxy);
            }
        } else {
            CHECKF(s1 > th1, "%s must not match y", uhlm_mode_name(runs[r].mode));
            CHECKF(s2 > th2, "%s must not match llm", uhlm_mode_name(runs[r].mode));
            CHECK(agg.transmitted == 0 && agg.llm_forward_calls == 0);
        }
    }

    /* the session's sampling settings shape both x and y: with temperature 0.8, top-k 40 and
     * top-p 0.9, hlm reproduces the LLM's distribution under those settings */
    uhlm_sampling trunc = {0.8f, 40, 0.9f};
    float *yt = malloc(sizeof(float) * (size_t)e.V);
    CHECK(uhlm_seq_truncate(ref, 0, 0, &err) == 0);
    CHECK(uhlm_decode(ref, be, e.np, lg, NULL, &err) == 0);
    uhlm_sampling_probs(&trunc, lg, e.V, yt);
    int support = 0;
    for (int i = 0; i < e.V; i++) support += yt[i] > 0.0f;
    t0 = uhlm_now();
    CHECK(sample_mode(&e, UHLM_MODE_HLM, "topk:16", &trunc, 3000000, c_m, &agg) == 0);
    int dft;
    double st = chi2_gof(c_m, yt, e.V, N_SAMPLES, &dft);
    printf("hlm  topk:16 T=0.8 top-k 40 top-p 0.9 vs y (support %d): chi2 %.1f df %d thr %.1f "
           "TV %.4f (%.1f s)\n",
           support, st, dft, chi2_threshold(dft), tv_counts(c_m, yt, e.V, N_SAMPLES),
           uhlm_now() - t0);
    CHECK(st < chi2_threshold(dft));
    long outside = 0;
    for (int i = 0; i < e.V; i++) outside += yt[i] == 0.0f ? c_m[i] : 0;
    CHECK(outside == 0); /* nothing outside the LLM's nucleus, though x~ has a uniform tail */
    free(yt);

    /* A drafter with a draft vocabulary (uhlm_model_keep_output_tokens) never proposes the tokens
     * it leaves out; the LLM's most likely token and every third token are left out here, so the
     * LLM's mass on them reaches the output only through rejection and resampling. hlm must
     * still reproduce y, and slm must stay inside the draft vocabulary. */
    int top = 0;
    for (int i = 1; i < e.V; i++)
        if (y[i] > y[top]) top = i;
    int32_t *keep = malloc(sizeof(int32_t) * (size_t)e.V);
    int nk = 0;
    double y_out = 0.0;
    for (int i = 0; i < e.V; i++) {
        if (i == top || i % 3 == 2) {
            y_out += y[i];
            continue;
        }
        keep[nk++] = i;
    }
    uhlm_model *dslm = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"),
                                       uhlm_test_model_path("tok512.bin"), &err);
    CHECK(dslm && uhlm_model_keep_output_tokens(dslm, keep, nk, &err) == 0);
    env d = e;
    d.slm = dslm;
    d.slm_ctx = dslm ? uhlm_ctx_new(dslm, &cp, &err) : NULL;
    CHECK(d.slm_ctx != NULL);
    if (d.slm_ctx) {
        t0 = uhlm_now();
        CHECK(sample_mode(&d, UHLM_MODE_HLM, "f32", &smp, 4000000, c_m, &agg) == 0);
        int dfd;
        double sd1 = chi2_gof(c_m, y, e.V, N_SAMPLES, &dfd);
        printf("hlm  f32 with a draft vocabulary of %d/%d (LLM mass left out %.3f) vs y: chi2 %.1f "
               "df %d thr %.1f TV %.4f rejections %.3f (%.1f s)\n",
               nk, e.V, y_out, sd1, dfd, chi2_threshold(dfd), tv_counts(c_m, y, e.V, N_SAMPLES),
               (double)agg.rejected / N_SAMPLES, uhlm_now() - t0);
        CHECK(sd1 < chi2_threshold(dfd));
        CHECK(c_m[top] > 0); /* reached by resampling alone */
        CHECK(agg.rejected >= (long)(y_out * N_SAMPLES * 0.9));
        CHECK(sample_mode(&d, UHLM_MODE_SLM, "f32", &smp, 5000000, c_m, &agg) == 0);
        long outside = 0;
        for (int i = 0; i < e.V; i++) outside += (i == top || i % 3 == 2) ? c_m[i] : 0;
        CHECKF(outside == 0, "slm drew %ld tokens outside its draft vocabulary", outside);
        uhlm_ctx_free(d.slm_ctx);
    }
    uhlm_model_free(dslm);
    free(keep);
    free(c_llm);
    free(c_m);
    free(x);
    free(y);
    free(lg);
    uhlm_ctx_free(ref);
    uhlm_ctx_free(sref);
    uhlm_verifier_free(e.ver);
    uhlm_ctx_free(e.slm_ctx);
    uhlm_model_free(e.slm);
    uhlm_model_free(e.llm);
    return check_report();
}
