/* verifier_inproc.c: the verifier interface over an LLM in this process (verifier.h): the
 * verification engine (engine.h) with one session, each call one flush. The engine keeps
 * the one-token-behind invariant and the prefix reuse, so this file only adapts calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hybrid/engine_internal.h"
#include "hybrid/verifier_internal.h"
#include "uhlm/engine.h"
#include "uhlm/tokenizer.h"
#include "uhlm/verifier.h"

typedef struct inproc {
    uhlm_verifier base;
    const uhlm_model *m;
    uhlm_engine *e;
    int sid; /* the open session, -1 when none */
} inproc;

static inproc *self_of(uhlm_verifier *v) { return (inproc *)v->impl; }

static int ip_info(uhlm_verifier *v, uhlm_verifier_info *out, uhlm_error *err) {
    (void)err;
    inproc *s = self_of(v);
    memset(out, 0, sizeof *out);
    out->n_vocab = uhlm_engine_n_vocab(s->e);
    out->n_ctx = uhlm_engine_n_ctx(s->e);
    out->fingerprint = uhlm_model_tokenizer(s->m) ? uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(s->m)) : 0;
    const char *base = strrchr(uhlm_model_path(s->m), '/');
    snprintf(out->model, sizeof out->model, "%.255s", base ? base + 1 : uhlm_model_path(s->m));
    return 0;
}

/* Flushes the session's request until its result is there; 0, or -1 with err. */
static int run(inproc *s, uhlm_engine_result *res, uhlm_error *err) {
    while (!uhlm_engine_take(s->e, s->sid, res))
        if (uhlm_engine_flush(s->e, &s->sid, NULL, 1, err) < 0) {
            /* the request was rolled back (a failed prefill closed the session) */
            int n;
            uhlm_engine_take(s->e, s->sid, res);
            if (!uhlm_engine_committed(s->e, s->sid, &n)) s->sid = -1;
            return -1;
        }
    if (res->kind == UHLM_ENGINE_FAILED) return uhlm_set_error(err, "verifier: %s", res->error);
    return 0;
}

static void ip_close(uhlm_verifier *v) {
    inproc *s = self_of(v);
    uhlm_engine_close(s->e, s->sid);
    s->sid = -1;
}

static int ip_open(uhlm_verifier *v, const int *prompt, int n, const uhlm_sampling *smp,
                   uint64_t seed, uhlm_opened *out, uhlm_error *err) {
    (void)seed; /* draws are keyed by each request's draw_seed */
    inproc *s = self_of(v);
    ip_close(v); /* the engine reuses the closed session's cached prefix */
    uhlm_engine_open_req o = {prompt, n, *smp, 0};
    int sid = uhlm_engine_open(s->e, &o, err);
    if (sid < 0) return -1;
    s->sid = sid;
    uhlm_engine_result res;
    if (run(s, &res, err) != 0) {
        ip_close(v);
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->n_past = res.n_past;
    out->llm_s = (double)res.cost.llm_ns * 1e-9;
    out->forward_calls = (int)res.cost.forward_calls;
    out->batch_tokens = (int)res.cost.seq_tokens;
    return 0;
}

static int ip_verify(uhlm_verifier *v, const uhlm_verify_req *r, uhlm_verdict *out,
                     uhlm_error *err) {
    inproc *s = self_of(v);
    if (s->sid < 0) return uhlm_set_error(err, "verifier: verify without an open session");
    if (uhlm_engine_submit_verify(s->e, s->sid, r, 0, err) < 0) return -1;
    uhlm_engine_result res;
    if (run(s, &res, err) != 0) return -1;
    *out = res.verdict;
    return 0;
}

static int ip_generate(uhlm_verifier *v, const uhlm_generate_req *r, int *tokens,
                       uhlm_generated *out, uhlm_error *err) {
    inproc *s = self_of(v);
    if (s->sid < 0) return uhlm_set_error(err, "verifier: generate without an open session");
    if (uhlm_engine_submit_generate(s->e, s->sid, r, 0, err) < 0) return -1;
    uhlm_engine_result res;
    if (run(s, &res, err) != 0) return -1;
    memcpy(tokens, res.tokens, sizeof(int) * (size_t)res.n_tokens);
    memset(out, 0, sizeof *out);
    out->n = res.n_tokens;
    out->llm_s = (double)res.cost.llm_ns * 1e-9;
    out->forward_calls = (int)res.cost.forward_calls;
    out->batch_tokens = (int)res.cost.seq_tokens;
    out->n_past = res.n_past;
    return 0;
}

static void ip_destroy(uhlm_verifier *v) {
    inproc *s = self_of(v);
    uhlm_engine_free(s->e);
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
    s->sid = -1;
    s->e = uhlm_engine_new(llm, cp, err);
    if (!s->e) {
        free(s);
        return NULL;
    }
    return &s->base;
}

uhlm_ctx *uhlm_verifier_inproc_ctx(uhlm_verifier *v) { return uhlm_engine_ctx(self_of(v)->e); }

const int *uhlm_verifier_inproc_committed(uhlm_verifier *v, int *n) {
    inproc *s = self_of(v);
    return uhlm_engine_committed(s->e, s->sid, n);
}
