/* bench_batch.c: `uhlm bench batch`, the engine's own gain from batching one token of each of
 * S sequences into one forward, against the same S tokens run one forward each.
 *
 * This is what a verification server can win by cross-device batching before any request
 * handling: both sides run the same sequences at the same contexts (spread evenly over
 * [--ctx-min, --ctx-max], as sessions of different ages are), so attention costs the same and
 * only the sharing of weight reads differs. Each timed call appends one token per sequence
 * and the sequences are truncated back, so contexts stay fixed. Batched and one-at-a-time
 * rounds alternate and each keeps its best, so a noisy host skews both alike. One JSON object
 * per sequence count on stdout. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "uhlm/common.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

/* Sets sequences 0 .. S-1 to contexts spread over [lo, hi] with random tokens. */
static int prefill(uhlm_ctx *c, int S, int lo, int hi, int V, uhlm_rng *rng, uhlm_batch_entry *b,
                   int *len, uhlm_error *err) {
    for (int s = 0; s < S; s++) {
        len[s] = S == 1 ? (lo + hi) / 2 : lo + (int)((long)(hi - lo) * s / (S - 1));
        if (uhlm_seq_truncate(c, s, 0, err) != 0) return -1;
        for (int i = 0; i < len[s]; i++)
            b[i] = (uhlm_batch_entry){s, i, (int)(uhlm_rng_u64(rng) % (uint64_t)V), 0};
        if (uhlm_decode(c, b, len[s], NULL, NULL, err) != 0) return -1;
    }
    return 0;
}

/* Mean seconds per step over `iters` steps; a step is one token on each of S sequences, in one
 * forward (batched) or S forwards. */
static double time_steps(uhlm_ctx *c, int S, const int *len, int batched, int iters, int V,
                         uhlm_rng *rng, uhlm_batch_entry *b, float *logits, uhlm_error *err) {
    double t0 = uhlm_now();
    for (int it = 0; it < iters; it++) {
        for (int s = 0; s < S; s++)
            b[s] = (uhlm_batch_entry){s, len[s], (int)(uhlm_rng_u64(rng) % (uint64_t)V), 1};
        if (batched) {
            if (uhlm_decode(c, b, S, logits, NULL, err) != 0) return -1;
        } else {
            for (int s = 0; s < S; s++)
                if (uhlm_decode(c, b + s, 1, logits, NULL, err) != 0) return -1;
        }
        for (int s = 0; s < S; s++)
            if (uhlm_seq_truncate(c, s, len[s], err) != 0) return -1;
    }
    return (uhlm_now() - t0) / iters;
}

int bench_batch(const bench_batch_params *p) {
    const char *cmd = "bench batch";
    long threads = p->threads, ctx_min = p->ctx_min, ctx_max = p->ctx_max, rounds = p->rounds;
    const int *counts = p->seqs, nc = p->n_seqs;
    int max_s = 1;
    for (int i = 0; i < nc; i++) max_s = counts[i] > max_s ? counts[i] : max_s;
    uhlm_error err = {{0}};
    /* the forward needs no vocabulary: a llama2.c file loads without one */
    uhlm_model *m = uhlm_model_load(p->model, p->tokenizer, &err);
    if (!m) {
        fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
        return 1;
    }
    const int n_ctx = uhlm_model_config(m)->seq_len, V = uhlm_model_config(m)->vocab_size;
    if (ctx_max < 0) ctx_max = bench_default_ctx_max(n_ctx);
    if (ctx_min > ctx_max || ctx_max + 1 > n_ctx) {
        fprintf(stderr,
                "uhlm %s: need ctx-min <= ctx-max < the model's context %d (got %ld, %ld)\n", cmd,
                n_ctx, ctx_min, ctx_max);
        uhlm_model_free(m);
        return 2;
    }
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_seq = max_s;
    cp.n_threads = (int)threads;
    cp.simd = p->simd;
    uhlm_ctx *c = uhlm_ctx_new(m, &cp, &err);
    int blen = (int)ctx_max > max_s ? (int)ctx_max : max_s;
    uhlm_batch_entry *b = malloc(sizeof *b * (size_t)blen);
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)max_s);
    int *len = malloc(sizeof(int) * (size_t)max_s);
    int rc = 0;
    bench_report rep;
    bench_report_init(&rep, "batch", p->format);
    if (!c || !b || !logits || !len) {
        fprintf(stderr, "uhlm %s: %s\n", cmd, c ? "out of memory" : err.msg);
        rc = 1;
        goto out;
    }
    uhlm_rng rng;
    uhlm_rng_seed(&rng, 7);
    for (int ci = 0; ci < nc && rc == 0; ci++) {
        const int S = counts[ci];
        fprintf(stderr, "uhlm %s: %d sequence%s...\n", cmd, S, S == 1 ? "" : "s");
        if (prefill(c, S, (int)ctx_min, (int)ctx_max, V, &rng, b, len, &err) != 0) {
            fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
            rc = 1;
            break;
        }
        /* enough steps for about 0.1 s per round on the slower side */
        double probe = time_steps(c, S, len, 0, 1, V, &rng, b, logits, &err);
        if (probe < 0) {
            fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
            rc = 1;
            break;
        }
        int iters = probe > 0.1 ? 1 : (int)(0.1 / (probe + 1e-9)) + 1;
        double best[2] = {1e30, 1e30};
        for (int r = 0; r < rounds && rc == 0; r++)
            for (int batched = 1; batched >= 0; batched--) {
                double t = time_steps(c, S, len, batched, iters, V, &rng, b, logits, &err);
                if (t < 0) {
                    fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
                    rc = 1;
                    break;
                }
                if (t < best[batched]) best[batched] = t;
            }
        if (rc) break;
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "bench", "batch");
            cJSON_AddStringToObject(o, "model", uhlm_model_path(m));
            cJSON_AddNumberToObject(o, "threads",
                                    threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN));
            cJSON_AddStringToObject(o, "simd", uhlm_simd_name(uhlm_ctx_simd(c)));
            cJSON_AddNumberToObject(o, "seqs", S);
            cJSON_AddNumberToObject(o, "ctx_min", len[0]);
            cJSON_AddNumberToObject(o, "ctx_max", len[S - 1]);
            cJSON_AddNumberToObject(o, "batched_ms_per_step", best[1] * 1e3);
            cJSON_AddNumberToObject(o, "one_at_a_time_ms_per_step", best[0] * 1e3);
            cJSON_AddNumberToObject(o, "batched_tokens_per_s", S / best[1]);
            cJSON_AddNumberToObject(o, "one_at_a_time_tokens_per_s", S / best[0]);
            cJSON_AddNumberToObject(o, "speedup", best[0] / best[1]);
        }
        bench_report_add(&rep, o);
    }
    if (bench_report_end(&rep) != 0) rc = 1;
out:
    free(b);
    free(logits);
    free(len);
    uhlm_ctx_free(c);
    uhlm_model_free(m);
    return rc;
}
