/* server_engine.c: the verification engine (uhlm/engine.h) behind your own event loop.
 *
 * usage: server_engine MODEL_DIR   (holding stories-slm-0.28M.bin, stories-llm-2.76M.bin
 *                                   and tok512.bin)
 *
 * Two devices draft with the SLM; this program plays both the devices and a server that
 * owns the LLM through an engine with two sessions. Each turn of the loop, every device
 * that has no request in flight drafts a token: a confident draft is kept without asking
 * (it is sent later as catch-up), the others are submitted to the engine with the catch-up
 * and the encoded x̃. Then ONE flush verifies every submitted draft in one batched forward,
 * and each device takes its verdict. Finally each device's run is repeated alone, with its
 * own engine, and must give exactly the same tokens: batching does not change verdicts.
 * Exit 0 on success. Only public headers are used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/engine.h"
#include "uhlm/model.h"
#include "uhlm/payload.h"
#include "uhlm/sampler.h"
#include "uhlm/tokenizer.h"
#include "uhlm/verify.h"

#define N_DEV 2
#define N_GEN 40
#define MAX_TOK 128

typedef struct device {
    int seq;              /* the SLM context's sequence for this device */
    int tok[MAX_TOK], n;  /* the device's sequence: prompt, then final tokens */
    int sent;             /* tokens the engine has committed */
    int draft, in_flight; /* the submitted draft */
    uint64_t seed;
    int verified, accepted, skipped, batched;
} device;

typedef struct world {
    uhlm_model *slm, *llm;
    uhlm_tokenizer *tok;
    int V;
    float *logits, *x;
    uint8_t *enc;
    size_t enc_len;
} world;

static const char *prompts[N_DEV] = {"Once upon a time, there was a little girl",
                                     "Tom and his dog went to the park"};
static const uhlm_sampling sampling = {1.0f, 0, 1.0f};
static const uhlm_payload_spec payload = {UHLM_PAYLOAD_F32, 0, 0};

/* The device's next step: x from the SLM's logits (the SLM has seen tokens [0, n)), the
 * draft drawn from it, and whether it needs the LLM (here: unless x̃[d] > 0.5). */
static int draft_token(world *w, uhlm_ctx *slm, device *d, int *confident, uhlm_error *err) {
    uhlm_batch_entry b = {d->seq, d->n - 1, d->tok[d->n - 1], 1};
    if (uhlm_decode(slm, &b, 1, w->logits, NULL, err) != 0) return -1;
    uhlm_sampling_probs(&sampling, w->logits, w->V, w->x);
    if (uhlm_payload_encode(&payload, w->x, w->V, w->enc, w->enc_len, err) < 0) return -1;
    uhlm_rng rng;
    uhlm_hybrid_rng(&rng, uhlm_hybrid_stream_seed(d->seed, UHLM_STREAM_DRAFT), (uint64_t)d->n);
    int t = uhlm_sample_weights(w->x, w->V, &rng);
    *confident = w->x[t] > 0.5f;
    return t;
}

/* Runs devices ds[0..nd) to N_GEN new tokens each against one engine with nd sessions. */
static int run(world *w, device *ds, int nd, uhlm_error *err) {
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    cp.n_seq = nd;
    cp.n_ctx = MAX_TOK;
    uhlm_engine *eng = uhlm_engine_new(w->llm, &cp, err);
    uhlm_ctx *slm = eng ? uhlm_ctx_new(w->slm, &cp, err) : NULL;
    int sid[N_DEV], target[N_DEV], rc = -1;
    uhlm_engine_result res;
    if (!slm) goto out;
    if (uhlm_engine_n_vocab(eng) != w->V) {
        snprintf(err->msg, sizeof err->msg, "the LLM has %d tokens, tok512.bin %d",
                 uhlm_engine_n_vocab(eng), w->V);
        goto out;
    }
    for (int i = 0; i < nd; i++) {
        device *d = &ds[i];
        uhlm_engine_open_req o = {d->tok, d->n, sampling, 0};
        d->seq = i;
        d->sent = d->n;
        target[i] = d->n + N_GEN;
        /* the SLM's cache, like the engine's, stays one token behind the sequence */
        for (int p = 0; p < d->n - 1; p++) {
            uhlm_batch_entry b = {i, p, d->tok[p], 0};
            if (uhlm_decode(slm, &b, 1, NULL, NULL, err) != 0) goto out;
        }
        if ((sid[i] = uhlm_engine_open(eng, &o, err)) < 0) goto out;
    }
    /* the prefills of both sessions share flushes; then each session takes requests */
    while (uhlm_engine_n_pending(eng) > 0)
        if (uhlm_engine_flush(eng, NULL, NULL, 0, err) < 0) goto out;
    for (int i = 0; i < nd; i++) uhlm_engine_take(eng, sid[i], &res);
    for (;;) {
        /* the devices' turn: draft, keep confident drafts, submit the others */
        for (int i = 0; i < nd; i++) {
            device *d = &ds[i];
            while (!d->in_flight && d->n < target[i]) {
                int confident, t = draft_token(w, slm, d, &confident, err);
                if (t < 0) goto out;
                if (confident && d->n - d->sent < 3 && d->n + 1 < target[i]) {
                    d->tok[d->n++] = t; /* kept unverified: goes up later as catch-up */
                    d->skipped++;
                    continue;
                }
                uhlm_verify_req r = {d->tok + d->sent, d->n - d->sent, t, payload, w->enc,
                                     w->enc_len,
                                     uhlm_hybrid_stream_seed(d->seed, UHLM_STREAM_VERIFY)};
                if (uhlm_engine_submit_verify(eng, sid[i], &r, (uint32_t)d->n, err) < 0) goto out;
                d->draft = t;
                d->in_flight = 1;
            }
        }
        if (uhlm_engine_n_pending(eng) == 0) break;
        /* the server's turn: ONE forward for every pending request */
        if (uhlm_engine_flush(eng, NULL, NULL, 0, err) < 0) goto out;
        for (int i = 0; i < nd; i++) {
            device *d = &ds[i];
            if (!uhlm_engine_take(eng, sid[i], &res)) continue;
            const uhlm_verdict *v = &res.verdict;
            if (res.kind != UHLM_ENGINE_VERDICT || v->accepted != (v->token == d->draft) ||
                v->n_past != d->n + 1 || res.request_id != (uint32_t)d->n) {
                snprintf(err->msg, sizeof err->msg, "device %d: bad result (kind %d, n_past %d)",
                         i, res.kind, v->n_past);
                goto out;
            }
            d->tok[d->n++] = v->token;
            d->sent = d->n;
            d->in_flight = 0;
            d->verified++;
            d->accepted += v->accepted;
            d->batched += (int)v->cost.batch_size > 1;
        }
    }
    rc = 0;
out:
    uhlm_ctx_free(slm);
    uhlm_engine_free(eng);
    return rc;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int setup(world *w, const char *dir, uhlm_error *err) {
    char *slm = path_in(dir, "stories-slm-0.28M.bin"), *llm = path_in(dir, "stories-llm-2.76M.bin");
    char *tok = path_in(dir, "tok512.bin");
    int rc = -1;
    if (!slm || !llm || !tok) goto out;
    if (!(w->slm = uhlm_model_load(slm, tok, err)) || !(w->llm = uhlm_model_load(llm, tok, err)))
        goto out;
    w->V = 512; /* tok512.bin's vocabulary, shared by both models (run() checks the LLM's) */
    if (!(w->tok = uhlm_tokenizer_load_bin(tok, w->V, err))) goto out;
    w->enc_len = uhlm_payload_bytes(&payload, w->V);
    w->logits = malloc(sizeof(float) * (size_t)w->V);
    w->x = malloc(sizeof(float) * (size_t)w->V);
    w->enc = malloc(w->enc_len);
    rc = w->logits && w->x && w->enc ? 0 : -1;
out:
    free(slm);
    free(llm);
    free(tok);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    world w;
    memset(&w, 0, sizeof w);
    uhlm_error err = {{0}};
    device both[N_DEV], alone[N_DEV];
    int rc = 1;
    if (setup(&w, argv[1], &err) != 0) {
        fprintf(stderr, "server_engine: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }
    memset(both, 0, sizeof both);
    for (int i = 0; i < N_DEV; i++) {
        both[i].n = uhlm_tokenize(w.tok, prompts[i], strlen(prompts[i]), 1, 0, both[i].tok,
                                  MAX_TOK - N_GEN, &err);
        both[i].seed = 42 + (uint64_t)i;
        if (both[i].n < 1) goto fail;
    }
    memcpy(alone, both, sizeof both);
    if (run(&w, both, N_DEV, &err) != 0) goto fail;
    for (int i = 0; i < N_DEV; i++) {
        if (run(&w, &alone[i], 1, &err) != 0) goto fail;
        if (alone[i].n != both[i].n || memcmp(alone[i].tok, both[i].tok, sizeof(int) * (size_t)both[i].n)) {
            fprintf(stderr, "server_engine: device %d: batched and alone runs differ\n", i);
            goto out;
        }
        char *text = uhlm_detokenize(w.tok, both[i].tok, both[i].n);
        printf("device %d: %d verified (%d accepted, %d in shared flushes), %d kept as catch-up: "
               "%s\n",
               i, both[i].verified, both[i].accepted, both[i].batched, both[i].skipped,
               text ? text : "?");
        free(text);
        if (both[i].verified < 1 || both[i].batched < 1) goto out;
    }
    printf("server_engine: OK, %d sessions in one engine gave the tokens of each alone\n", N_DEV);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "server_engine: %s\n", err.msg);
out:
    uhlm_tokenizer_free(w.tok);
    uhlm_model_free(w.slm);
    uhlm_model_free(w.llm);
    free(w.logits);
    free(w.x);
    free(w.enc);
    return rc;
}
