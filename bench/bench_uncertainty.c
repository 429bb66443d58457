/* bench_uncertainty.c: the cost of the uncertainty signal next to one SLM forward.
 *
 * For each method (perturb, the exact-per-sample perturb reference, the naive M-softmax
 * perturb of DESIGN §2.2, entropy, maxprob, margin) it times one call on the SLM's real logits
 * and on synthetic logits of a 32000-token vocabulary (Llama's), and prints one JSON line per
 * (vocabulary, method): ns per call, the SLM one-token forward in ns, and their ratio (for
 * the SLM's own logits; null for the synthetic vocabulary, which no SLM here produces). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"
#include "hybrid/uncertainty_internal.h"
#include "uhlm/uncertainty.h"

#define BIG_VOCAB 32000

/* The naive method: M full softmaxes and inverse-CDF samples, for comparison only. */
static double naive_perturb(const float *z, int n, int d, int M, double theta_max, uhlm_rng *r,
                            double *w) {
    double mx = z[0];
    for (int i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    int dis = 0;
    for (int m = 0; m < M; m++) {
        double th = theta_max * (1.0 - uhlm_rng_uniform(r)), s = 0.0;
        for (int i = 0; i < n; i++) s += w[i] = exp((z[i] - mx) / th);
        double t = uhlm_rng_uniform(r) * s, c = 0.0;
        int pick = n - 1;
        for (int i = 0; i < n; i++) {
            c += w[i];
            if (t < c) {
                pick = i;
                break;
            }
        }
        dis += pick != d;
    }
    return (double)dis / M;
}

typedef struct {
    const char *name;
    uhlm_unc_method method; /* perturb for the two references */
    int variant;            /* 0 library call, 1 exact reference, 2 naive */
} method_case;

static const method_case cases[] = {
    {"perturb", UHLM_UNC_PERTURB, 0},       {"perturb_exact", UHLM_UNC_PERTURB, 1},
    {"perturb_naive", UHLM_UNC_PERTURB, 2}, {"entropy", UHLM_UNC_ENTROPY, 0},
    {"maxprob", UHLM_UNC_MAXPROB, 0},       {"margin", UHLM_UNC_MARGIN, 0}};

/* Best of 3 rounds of `reps` calls, in ns per call. */
static int time_method(const method_case *mc, const float *z, int n, int M, long reps, double *ns,
                       uhlm_error *err) {
    uhlm_unc_params p = uhlm_unc_default_params();
    p.method = mc->method;
    p.samples = M;
    uhlm_unc *u = uhlm_unc_new(n, &p, err);
    double *w = malloc(sizeof(double) * (size_t)n);
    if (!u || !w) {
        uhlm_unc_free(u);
        free(w);
        if (!u) return -1;
        return uhlm_set_error(err, "out of memory");
    }
    int d = 0;
    for (int i = 1; i < n; i++)
        if (z[i] > z[d]) d = i;
    uhlm_rng rng;
    uhlm_rng_seed(&rng, 1);
    double best = INFINITY, sink = 0.0, v = 0.0;
    /* the naive method costs M·V exps: fewer repetitions keep the run short */
    long r = mc->variant == 0 ? reps : reps / 20 + 1;
    for (int round = 0; round < 3; round++) {
        double t0 = uhlm_now();
        for (long i = 0; i < r; i++) {
            if (mc->variant == 0)
                uhlm_unc_compute(u, z, d, &rng, &v, err);
            else if (mc->variant == 1)
                uhlm_unc_perturb_exact(u, z, d, &rng, &v, err);
            else
                v = naive_perturb(z, n, d, M, p.theta_max, &rng, w);
            sink += v;
        }
        double t = (uhlm_now() - t0) / (double)r * 1e9;
        if (t < best) best = t;
    }
    if (sink < 0) fprintf(stderr, "impossible\n"); /* keeps the loop from being optimised out */
    uhlm_unc_free(u);
    free(w);
    *ns = best;
    return 0;
}

int bench_uncertainty(const bench_uncertainty_params *p) {
    const char *cmd = "bench uncertainty";
    const long M = p->samples, reps = p->reps;
    uhlm_error err = {{0}};
    /* the forward does not need a vocabulary: a llama2.c file loads without one */
    uhlm_model *m = uhlm_model_load(p->model, p->tokenizer, &err);
    if (!m) {
        fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
        return 1;
    }
    bench_report rep;
    bench_report_init(&rep, "uncertainty", p->format);
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)p->threads;
    cp.simd = p->simd;
    uhlm_ctx *ctx = uhlm_ctx_new(m, &cp, &err);
    int V = uhlm_model_config(m)->vocab_size, rc = 1;
    float *logits = malloc(sizeof(float) * (size_t)V);
    float *big = malloc(sizeof(float) * BIG_VOCAB);
    if (!ctx || !logits || !big) {
        fprintf(stderr, "uhlm %s: %s\n", cmd, ctx ? "out of memory" : err.msg);
        goto done;
    }
    /* a short context (BOS + 7 tokens), then the one-token forward being compared against */
    enum { CTX = 8 };
    uhlm_batch_entry e[CTX];
    for (int i = 0; i < CTX; i++) e[i] = (uhlm_batch_entry){0, i, i == 0 ? 1 : (i * 37) % V, 0};
    if (uhlm_decode(ctx, e, CTX - 1, NULL, NULL, &err) != 0) {
        fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
        goto done;
    }
    double fwd = INFINITY;
    long fr = reps / 4 + 1;
    for (int round = 0; round < 3; round++) {
        double t0 = uhlm_now();
        for (long i = 0; i < fr; i++) {
            e[CTX - 1].logits = 1;
            if (uhlm_seq_truncate(ctx, 0, CTX - 1, &err) != 0 ||
                uhlm_decode(ctx, &e[CTX - 1], 1, logits, NULL, &err) != 0) {
                fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
                goto done;
            }
        }
        double t = (uhlm_now() - t0) / (double)fr * 1e9;
        if (t < fwd) fwd = t;
    }
    uhlm_rng r;
    uhlm_rng_seed(&r, 7);
    for (int i = 0; i < BIG_VOCAB; i++) { /* normal(0, 3) logits, a typical LM spread */
        double u1 = 1.0 - uhlm_rng_uniform(&r), u2 = uhlm_rng_uniform(&r);
        big[i] = (float)(3.0 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    for (int vi = 0; vi < 2; vi++) {
        const float *z = vi == 0 ? logits : big;
        int n = vi == 0 ? V : BIG_VOCAB;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            double ns = 0.0;
            if (time_method(&cases[c], z, n, (int)M, reps, &ns, &err) != 0) {
                fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
                goto done;
            }
            cJSON *o = cJSON_CreateObject();
            if (o) {
                cJSON_AddStringToObject(o, "method", cases[c].name);
                cJSON_AddNumberToObject(o, "vocab", n);
                cJSON_AddStringToObject(o, "logits", vi == 0 ? "slm" : "synthetic");
                cJSON_AddNumberToObject(o, "M", (double)M);
                cJSON_AddNumberToObject(o, "ns_per_call", ns);
                cJSON_AddNumberToObject(o, "slm_forward_ns", fwd);
                /* the ratio is only meaningful against the forward that produced the logits */
                if (vi == 0) cJSON_AddNumberToObject(o, "ratio", ns / fwd);
                else cJSON_AddNullToObject(o, "ratio");
            }
            bench_report_add(&rep, o);
        }
    }
    rc = 0;
done:
    if (bench_report_end(&rep) != 0) rc = 1;
    free(logits);
    free(big);
    uhlm_ctx_free(ctx);
    uhlm_model_free(m);
    return rc;
}
