/* verifier_inproc.c: the verifier interface over an LLM context in this process
 * (verifier.h). Invariant between requests: the KV cache holds committed[0 .. n-1), one
 * token behind the committed context, so every request is one forward over the pending
 * token and the catch-up with logits on the last entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/tokenizer.h"
#include "uhlm/verifier.h"
#include "uhlm/verify.h"

typedef struct inproc {
    uhlm_verifier base;
    const uhlm_model *m;
    uhlm_ctx *ctx;
    int n_vocab, n_ctx;
    int *committed; /* n_ctx */
    int n_committed;
    int is_open;
    uhlm_sampling s;
    float *logits, *y, *x;   /* n_vocab each */
    uhlm_batch_entry *batch; /* n_ctx */
} inproc;

static inproc *self_of(uhlm_verifier *v) { return (inproc *)v->impl; }

static int ip_info(uhlm_verifier *v, uhlm_verifier_info *out, uhlm_error *err) {
    (void)err;
    inproc *s = self_of(v);
    memset(out, 0, sizeof *out);
    out->n_vocab = s->n_vocab;
    out->n_ctx = s->n_ctx;
    out->fingerprint = uhlm_model_tokenizer(s->m) ? uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(s->m)) : 0;
    const char *base = strrchr(uhlm_model_path(s->m), '/');
    snprintf(out->model, sizeof out->model, "%.255s", base ? base + 1 : uhlm_model_path(s->m));
    return 0;
}

static int check_tokens(const inproc *s, const int *t, int n, const char *what, uhlm_error *err) {
    if (n < 0 || (n > 0 && !t)) return uhlm_set_error(err, "verifier: bad %s list", what);
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= s->n_vocab)
            return uhlm_set_error(err, "verifier: %s token %d is %d, outside [0, %d)", what, i,
                                  t[i], s->n_vocab);
    return 0;
}

/* Feeds committed[kv .. n_committed) followed by extra[0..n_extra) in one forward with
 * logits on the last entry, then commits extra. On failure nothing is committed (uhlm_decode
 * changes nothing on error). */
static int advance(inproc *s, const int *extra, int n_extra, uhlm_error *err) {
    int kv = uhlm_seq_len(s->ctx, 0);
    int n = 0;
    for (int p = kv; p < s->n_committed; p++, n++)
        s->batch[n] = (uhlm_batch_entry){0, p, s->committed[p], 0};
    for (int i = 0; i < n_extra; i++, n++)
        s->batch[n] = (uhlm_batch_entry){0, s->n_committed + i, extra[i], 0};
    if (n == 0) return uhlm_set_error(err, "verifier: nothing to evaluate (internal)");
    s->batch[n - 1].logits = 1;
    if (uhlm_decode(s->ctx, s->batch, n, s->logits, NULL, err) != 0) return -1;
    if (n_extra > 0) memcpy(s->committed + s->n_committed, extra, sizeof(int) * (size_t)n_extra);
    s->n_committed += n_extra;
    return n;
}

static int ip_open(uhlm_verifier *v, const int *prompt, int n, const uhlm_sampling *smp,
                   uint64_t seed, uhlm_opened *out, uhlm_error *err) {
    (void)seed; /* draws are keyed by each request's draw_seed */
    inproc *s = self_of(v);
    s->is_open = 0;
    if (uhlm_sampling_check(smp, err) != 0) return -1;
    if (n < 1) return uhlm_set_error(err, "verifier: empty prompt");
    if (n > s->n_ctx)
        return uhlm_set_error(err, "verifier: prompt of %d tokens exceeds the context of %d", n,
                              s->n_ctx);
    if (check_tokens(s, prompt, n, "prompt", err) != 0) return -1;
    double t0 = uhlm_now();
    /* reuse the cached prefix, but keep the newest prompt token pending (invariant) */
    int kv = uhlm_seq_len(s->ctx, 0), lcp = 0;
    const int *cached = uhlm_seq_tokens(s->ctx, 0);
    while (lcp < kv && lcp < n - 1 && cached[lcp] == prompt[lcp]) lcp++;
    if (uhlm_seq_truncate(s->ctx, 0, lcp, err) != 0) return -1;
    memset(out, 0, sizeof *out);
    int todo = n - 1 - lcp;
    if (todo > 0) {
        for (int i = 0; i < todo; i++)
            s->batch[i] = (uhlm_batch_entry){0, lcp + i, prompt[lcp + i], 0};
        if (uhlm_decode(s->ctx, s->batch, todo, NULL, NULL, err) != 0) return -1;
        out->forward_calls = 1;
        out->batch_tokens = todo;
    }
    memcpy(s->committed, prompt, sizeof(int) * (size_t)n);
    s->n_committed = n;
    s->s = *smp;
    s->is_open = 1;
    out->n_past = n;
    out->llm_s = uhlm_now() - t0;
    return 0;
}

static int ip_verify(uhlm_verifier *v, const uhlm_verify_req *r, uhlm_verdict *out,
                     uhlm_error *err) {
    inproc *s = self_of(v);
    if (!s->is_open) return uhlm_set_error(err, "verifier: verify without an open session");
    double t0 = uhlm_now();
    if (check_tokens(s, r->catchup, r->n_catchup, "catch-up", err) != 0) return -1;
    if (r->draft < 0 || r->draft >= s->n_vocab)
        return uhlm_set_error(err, "verifier: draft %d outside [0, %d)", r->draft, s->n_vocab);
    int pos = s->n_committed + r->n_catchup; /* the position being decided */
    if (pos >= s->n_ctx)
        return uhlm_set_error(err, "verifier: position %d is beyond the context of %d", pos,
                              s->n_ctx);
    int greedy = s->s.temp == 0.0f;
    if (!greedy &&
        uhlm_verify_decode_x(&r->enc, r->x, r->x_len, s->n_vocab, r->draft, s->x, err) != 0)
        return -1;
    int fed = advance(s, r->catchup, r->n_catchup, err);
    if (fed < 0) return -1;
    uhlm_verify_result vr;
    if (uhlm_verify_logits(&s->s, s->logits, greedy ? NULL : s->x, s->n_vocab, r->draft,
                           r->draw_seed, pos, s->y, &vr, err) != 0)
        return -1;
    s->committed[s->n_committed++] = vr.token;
    out->token = vr.token;
    out->accepted = vr.accepted;
    out->y_d = vr.y_d;
    out->x_d = vr.x_d;
    out->beta = vr.beta;
    out->y_ge_x = vr.y_ge_x;
    out->forward_calls = 1;
    out->batch_tokens = fed;
    out->n_past = s->n_committed;
    out->llm_s = uhlm_now() - t0;
    return 0;
}

static int ip_generate(uhlm_verifier *v, const uhlm_generate_req *r, int *tokens,
                       uhlm_generated *out, uhlm_error *err) {
    inproc *s = self_of(v);
    if (!s->is_open) return uhlm_set_error(err, "verifier: generate without an open session");
    if (r->n_gen < 1) return uhlm_set_error(err, "verifier: n_gen %d", r->n_gen);
    if (check_tokens(s, r->catchup, r->n_catchup, "catch-up", err) != 0) return -1;
    if (s->n_committed + r->n_catchup >= s->n_ctx)
        return uhlm_set_error(err, "verifier: position %d is beyond the context of %d",
                              s->n_committed + r->n_catchup, s->n_ctx);
    double t0 = uhlm_now();
    memset(out, 0, sizeof *out);
    int fed = advance(s, r->catchup, r->n_catchup, err);
    if (fed < 0) return -1;
    out->forward_calls = 1;
    out->batch_tokens = fed;
    for (;;) {
        int pos = s->n_committed;
        int tok = uhlm_generate_token(&s->s, s->logits, s->n_vocab, r->draw_seed, pos, s->y, err);
        if (tok < 0) return -1;
        s->committed[s->n_committed++] = tok;
        tokens[out->n++] = tok;
        if (out->n >= r->n_gen || (r->stop_eos && uhlm_tokenizer_is_eog(uhlm_model_tokenizer(s->m), tok)) ||
            s->n_committed >= s->n_ctx)
            break;
        /* the token just committed is the only pending one: feed it for the next logits */
        if (advance(s, NULL, 0, err) < 0) return -1;
        out->forward_calls++;
        out->batch_tokens++;
    }
    out->n_past = s->n_committed;
    out->llm_s = uhlm_now() - t0;
    return 0;
}

static void ip_close(uhlm_verifier *v) { self_of(v)->is_open = 0; }

static void ip_destroy(uhlm_verifier *v) {
    inproc *s = self_of(v);
    uhlm_ctx_free(s->ctx);
    free(s->committed);
    free(s->logits);
    free(s->y);
    free(s->x);
    free(s->batch);
    free(s);
}

static const uhlm_verifier_ops inproc_ops = {ip_info,     ip_open,  ip_verify,
                                             ip_generate, ip_close, ip_destroy};

uhlm_verifier *uhlm_verifier_inproc_new(const uhlm_model *llm, const uhlm_ctx_params *cp,
                                        uhlm_error *err) {
    inproc *s = calloc(1, sizeof *s);
    if (!s) {
        uhlm_set_error(err, "verifier: out of memory");
        return NULL;
    }
    s->base.ops = &inproc_ops;
    s->base.impl = s;
    s->m = llm;
    s->ctx = uhlm_ctx_new(llm, cp, err);
    if (!s->ctx) {
        free(s);
        return NULL;
    }
    s->n_vocab = uhlm_model_config(llm)->vocab_size;
    s->n_ctx = uhlm_ctx_n_ctx(s->ctx);
    size_t V = (size_t)s->n_vocab, C = (size_t)s->n_ctx;
    s->committed = malloc(sizeof(int) * C);
    s->batch = malloc(sizeof(uhlm_batch_entry) * C);
    s->logits = malloc(sizeof(float) * V);
    s->y = malloc(sizeof(float) * V);
    s->x = malloc(sizeof(float) * V);
    if (!s->committed || !s->batch || !s->logits || !s->y || !s->x) {
        ip_destroy(&s->base);
        uhlm_set_error(err, "verifier: out of memory (vocabulary %zu, context %zu)", V, C);
        return NULL;
    }
    return &s->base;
}

uhlm_ctx *uhlm_verifier_inproc_ctx(uhlm_verifier *v) { return self_of(v)->ctx; }

const int *uhlm_verifier_inproc_committed(uhlm_verifier *v, int *n) {
    inproc *s = self_of(v);
    *n = s->n_committed;
    return s->committed;
}
