/* check_exact: hlm with a given SLM reproduces the LLM's next-token distribution (DESIGN §2.1).
 *
 *   check_exact SLM.gguf LLM.gguf [N]
 *
 * The drafter check of tests/test_hybrid_exact.c, for any pair that shares a vocabulary and a
 * chat template (that test is pinned to the TinyStories pair): N one-token generations after
 * a fixed chat prompt, in hlm mode (f32 payload) and in slm mode, compared with the LLM's exact
 * sampling distribution y by a chi-square goodness-of-fit test at alpha = 1e-5 (bins expected
 * below 5 pooled). hlm must pass; slm, the negative control, must fail. Exit status 0 when both
 * hold. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/chat.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"

#define PROMPT "Give three tips for staying healthy."

static double chi2_threshold(int df) { /* Wilson-Hilferty, alpha = 1e-5 (z = 4.265) */
    const double z = 4.265, a = 2.0 / (9.0 * df), c = 1.0 - a + z * sqrt(a);
    return df * c * c * c;
}

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

static int sample(uhlm_ctx *sc, uhlm_verifier *ver, uhlm_mode mode, const int *prompt, int np,
                  long n, uint64_t seed0, long *counts, int V, long *rejected) {
    uhlm_device_params p = uhlm_device_default_params();
    uhlm_error err = {{0}};
    p.policy.mode = mode;
    p.sampling = (uhlm_sampling){1.0f, 0, 1.0f};
    p.n_gen = 1;
    if (uhlm_payload_parse("f32", &p.payload, &err) != 0) return -1;
    uhlm_device *d = uhlm_device_new(sc, 0, ver, NULL, &p, &err);
    if (!d) return fprintf(stderr, "check_exact: %s\n", err.msg), -1;
    memset(counts, 0, sizeof(long) * (size_t)V);
    *rejected = 0;
    for (long i = 0; i < n; i++) {
        int tok;
        if (uhlm_device_start(d, prompt, np, seed0 + (uint64_t)i, &err) != 0 ||
            uhlm_device_step(d, &tok, &err) != 1) {
            fprintf(stderr, "check_exact: %s\n", err.msg);
            uhlm_device_free(d);
            return -1;
        }
        counts[tok]++;
        *rejected += uhlm_device_get_stats(d)->rejected;
    }
    uhlm_device_free(d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: check_exact SLM.gguf LLM.gguf [N (default 4000)]\n");
        return 2;
    }
    long n = argc == 4 ? strtol(argv[3], NULL, 10) : 4000;
    if (n < 100 || n > 10000000) {
        fprintf(stderr, "check_exact: N must be in [100, 1e7], got '%s'\n", argv[3]);
        return 2;
    }
    uhlm_error err = {{0}};
    uhlm_model *slm = uhlm_model_load(argv[1], NULL, &err), *llm = NULL;
    if (slm) llm = uhlm_model_load(argv[2], NULL, &err);
    if (!slm || !llm) {
        fprintf(stderr, "check_exact: %s\n", err.msg);
        uhlm_model_free(slm);
        return 1;
    }
    int rc = 1, V = uhlm_model_config(llm)->vocab_size, prompt[256];
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = 256;
    uhlm_ctx *sc = uhlm_ctx_new(slm, &cp, &err), *ref = sc ? uhlm_ctx_new(llm, &cp, &err) : NULL;
    uhlm_verifier *ver = ref ? uhlm_verifier_inproc_new(llm, &cp, &err) : NULL;
    float *y = malloc(sizeof(float) * (size_t)V), *lg = malloc(sizeof(float) * (size_t)V);
    long *cnt = calloc((size_t)V, sizeof(long));
    if (!ver || !y || !lg || !cnt) {
        fprintf(stderr, "check_exact: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto done;
    }
    int np = uhlm_chat_tokenize(slm, NULL, PROMPT, prompt, 256, &err);
    if (np <= 0 || np > 256) {
        fprintf(stderr, "check_exact: chat prompt: %s\n", err.msg);
        goto done;
    }
    uhlm_batch_entry be[256];
    for (int i = 0; i < np; i++) be[i] = (uhlm_batch_entry){0, i, prompt[i], i == np - 1};
    uhlm_sampling smp = {1.0f, 0, 1.0f};
    if (uhlm_decode(ref, be, np, lg, NULL, &err) != 0) {
        fprintf(stderr, "check_exact: %s\n", err.msg);
        goto done;
    }
    uhlm_sampling_probs(&smp, lg, V, y);
    printf("chat prompt \"%s\": %d tokens; %ld one-token samples per mode\n", PROMPT, np, n);
    const uhlm_mode modes[2] = {UHLM_MODE_HLM, UHLM_MODE_SLM};
    int ok = 1;
    for (int m = 0; m < 2; m++) {
        long rej;
        double t0 = uhlm_now();
        if (sample(sc, ver, modes[m], prompt, np, n, 1000000 + 1000000 * (uint64_t)m, cnt, V, &rej) != 0)
            goto done;
        int df;
        double s = chi2_gof(cnt, y, V, n, &df), th = chi2_threshold(df);
        int pass = s < th, want = m == 0;
        printf("%-4s vs LLM y: chi2 %.1f, df %d, threshold %.1f: %s (%s); rejections %.3f (%.0f s)\n",
               uhlm_mode_name(modes[m]), s, df, th, pass ? "matches" : "differs",
               pass == want ? "as it must" : "WRONG", (double)rej / n, uhlm_now() - t0);
        ok &= pass == want;
    }
    printf(ok ? "check_exact: PASS\n" : "check_exact: FAIL\n");
    rc = ok ? 0 : 1;
done:
    free(y);
    free(lg);
    free(cnt);
    uhlm_verifier_free(ver);
    uhlm_ctx_free(ref);
    uhlm_ctx_free(sc);
    uhlm_model_free(llm);
    uhlm_model_free(slm);
    return rc;
}
