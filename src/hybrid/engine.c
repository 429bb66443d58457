/* engine.c: the verification engine (engine.h). Sessions, the one-token-behind invariant,
 * prefix reuse, the batched forward and the decisions live here and nowhere else: the
 * in-process verifier and the server are thin layers over it. */
#include "uhlm/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hybrid/engine_internal.h"
#include "uhlm/tokenizer.h"

enum { REQ_NONE, REQ_OPEN, REQ_VERIFY, REQ_GENERATE };

/* A session's pending request. Catch-up tokens are staged at committed[n_past ..] and only
 * counted as committed once the request's first decision succeeds, so a refused or failed
 * request leaves the session as it was. */
typedef struct request {
    int kind;
    uint32_t request_id;
    int n_catchup;
    int first; /* the staged catch-up has not been decided on yet */
    int kv0;   /* the cache length at submit: a failure truncates back to it */
    int draft, greedy;
    uint64_t draw_seed;
    int n_gen, stop_eos, start, n_out; /* GENERATE */
    uhlm_cost cost;
} request;

typedef struct session {
    int open;
    uint64_t owner; /* tenant of the last session here: whose cache this is */
    uint64_t last_used; /* close order (a counter, not a clock): free caches are reused oldest first */
    uhlm_sampling s;
    int *committed; /* n_ctx; beyond n_past: a pending request's staged catch-up */
    int n_past;
    float *x; /* the pending VERIFY's decoded x̃ */
    request rq;
    int has_result;
    uhlm_engine_result res;
} session;

struct uhlm_engine {
    const uhlm_model *m;
    uhlm_ctx *ctx;
    int V, n_ctx, S;
    session *ss;
    uhlm_batch_entry *batch; /* S * n_ctx: every session's tokens fit one forward */
    float *logits;           /* S * V: one row per decided request */
    float *y;                /* V: scratch for the decisions */
    int *list, *kv, *fed, *row; /* per flushed request */
    uint64_t tick;
};

/* A refusal: the message as everywhere (uhlm_set_error), the value the engine's code. */
#define fail(err, code, ...) (uhlm_set_error((err), __VA_ARGS__), -(code))

/* ------------------------------------------------------------------ lifecycle */

void uhlm_engine_free(uhlm_engine *e) {
    if (!e) return;
    if (e->ss)
        for (int i = 0; i < e->S; i++) {
            free(e->ss[i].committed);
            free(e->ss[i].x);
        }
    free(e->ss);
    free(e->batch);
    free(e->logits);
    free(e->y);
    free(e->list);
    free(e->kv);
    free(e->fed);
    free(e->row);
    uhlm_ctx_free(e->ctx);
    free(e);
}

uhlm_engine *uhlm_engine_new(const uhlm_model *llm, const uhlm_ctx_params *cp, uhlm_error *err) {
    if (!llm || !cp) {
        uhlm_set_error(err, "engine: no model or context parameters");
        return NULL;
    }
    uhlm_engine *e = calloc(1, sizeof *e);
    if (!e) {
        uhlm_set_error(err, "engine: out of memory");
        return NULL;
    }
    e->m = llm;
    e->ctx = uhlm_ctx_new(llm, cp, err);
    if (!e->ctx) {
        free(e);
        return NULL;
    }
    e->V = uhlm_model_config(llm)->vocab_size;
    e->n_ctx = uhlm_ctx_n_ctx(e->ctx);
    e->S = uhlm_ctx_n_seq(e->ctx);
    size_t S = (size_t)e->S, C = (size_t)e->n_ctx, V = (size_t)e->V;
    e->ss = calloc(S, sizeof *e->ss);
    e->batch = malloc(sizeof(uhlm_batch_entry) * S * C);
    e->logits = malloc(sizeof(float) * S * V);
    e->y = malloc(sizeof(float) * V);
    e->list = malloc(sizeof(int) * S);
    e->kv = malloc(sizeof(int) * S);
    e->fed = malloc(sizeof(int) * S);
    e->row = malloc(sizeof(int) * S);
    int ok = e->ss && e->batch && e->logits && e->y && e->list && e->kv && e->fed && e->row;
    for (size_t i = 0; ok && i < S; i++) {
        e->ss[i].committed = malloc(sizeof(int) * C);
        e->ss[i].x = malloc(sizeof(float) * V);
        ok = e->ss[i].committed && e->ss[i].x;
    }
    if (!ok) {
        uhlm_engine_free(e);
        uhlm_set_error(err, "engine: out of memory (%zu sessions, context %zu, vocabulary %zu)",
                       S, C, V);
        return NULL;
    }
    return e;
}

int uhlm_engine_n_vocab(const uhlm_engine *e) { return e->V; }
int uhlm_engine_n_ctx(const uhlm_engine *e) { return e->n_ctx; }
int uhlm_engine_max_sessions(const uhlm_engine *e) { return e->S; }
uhlm_ctx *uhlm_engine_ctx(uhlm_engine *e) { return e->ctx; }

int uhlm_engine_n_open(const uhlm_engine *e) {
    int n = 0;
    for (int i = 0; i < e->S; i++) n += e->ss[i].open;
    return n;
}

static session *session_of(const uhlm_engine *e, int sid) {
    if (sid < 0 || sid >= e->S || !e->ss[sid].open) return NULL;
    return &e->ss[sid];
}

const int *uhlm_engine_committed(const uhlm_engine *e, int sid, int *n_past) {
    const session *ss = session_of(e, sid);
    *n_past = ss ? ss->n_past : 0;
    return ss ? ss->committed : NULL;
}

/* ------------------------------------------------------------------ prefix reuse */

int uhlm_seq_common_prefix(const uhlm_ctx *ctx, int seq, const int *tokens, int n) {
    int kv = uhlm_seq_len(ctx, seq), l = 0;
    const int *ct = uhlm_seq_tokens(ctx, seq);
    while (ct && l < kv && l < n - 1 && ct[l] == tokens[l]) l++;
    return l;
}

int uhlm_seq_reuse_prefix(uhlm_ctx *ctx, int seq, const int *tokens, int n, uhlm_error *err) {
    int l = uhlm_seq_common_prefix(ctx, seq, tokens, n);
    return uhlm_seq_truncate(ctx, seq, l, err) != 0 ? -1 : l;
}

/* ------------------------------------------------------------------ sessions */

static int check_tokens(const uhlm_engine *e, const int *t, int n, const char *what,
                        uhlm_error *err) {
    if (n < 0 || (n > 0 && !t)) return fail(err, UHLM_ENGINE_E_INVALID, "engine: bad %s list", what);
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= e->V)
            return fail(err, UHLM_ENGINE_E_BAD_TOKEN, "engine: %s token %d is %d, outside [0, %d)",
                        what, i, t[i], e->V);
    return 0;
}

/* Tokens at the head of prompt[0..n) that session i's cache holds, counted only when it is
 * the same tenant's cache. The last prompt token is left out: it is the pending token, fed
 * with the first request (the invariant). */
static int cached_prefix(const uhlm_engine *e, int i, uint64_t tenant, const int *prompt, int n) {
    return e->ss[i].owner == tenant ? uhlm_seq_common_prefix(e->ctx, i, prompt, n) : 0;
}

/* A free session for the prompt: the same tenant's cache with the longest common prefix,
 * else the one closed longest ago (so others' caches are kept as long as possible). -1 when
 * all are open. */
static int pick_session(const uhlm_engine *e, uint64_t tenant, const int *prompt, int n,
                        int *lcp) {
    int best = -1, best_l = -1;
    for (int i = 0; i < e->S; i++) {
        if (e->ss[i].open) continue;
        int l = cached_prefix(e, i, tenant, prompt, n);
        if (l > best_l || (l == best_l && e->ss[i].last_used < e->ss[best].last_used)) {
            best = i;
            best_l = l;
        }
    }
    *lcp = best_l;
    return best;
}

static void set_result(session *ss, int kind) {
    request *rq = &ss->rq;
    uhlm_engine_result *r = &ss->res;
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->request_id = rq->request_id;
    r->cost = rq->cost;
    r->n_past = ss->n_past;
    if (kind == UHLM_ENGINE_OPENED) r->reused = rq->kv0;
    rq->kind = REQ_NONE;
    ss->has_result = 1;
}

int uhlm_engine_open(uhlm_engine *e, const uhlm_engine_open_req *o, uhlm_error *err) {
    uhlm_sampling smp = o->sampling;
    if (smp.top_k > e->V) smp.top_k = e->V; /* top-k >= V is "off" either way */
    if (uhlm_sampling_check(&smp, err) != 0) return -UHLM_ENGINE_E_INVALID;
    int n = o->n;
    if (n < 1 || !o->prompt) return fail(err, UHLM_ENGINE_E_INVALID, "engine: empty prompt");
    if (n > e->n_ctx)
        return fail(err, UHLM_ENGINE_E_CTX_FULL, "engine: prompt of %d tokens, the context holds %d",
                    n, e->n_ctx);
    int rc = check_tokens(e, o->prompt, n, "prompt", err);
    if (rc != 0) return rc;
    int lcp = 0, sid = pick_session(e, o->tenant, o->prompt, n, &lcp);
    if (sid < 0)
        return fail(err, UHLM_ENGINE_E_BUSY, "engine: all %d sessions are in use", e->S);
    if (uhlm_seq_truncate(e->ctx, sid, lcp, err) != 0) return -UHLM_ENGINE_E_INTERNAL;
    session *ss = &e->ss[sid];
    memcpy(ss->committed, o->prompt, sizeof(int) * (size_t)n);
    ss->open = 1;
    ss->owner = o->tenant;
    ss->s = smp;
    ss->n_past = n;
    ss->has_result = 0;
    memset(&ss->rq, 0, sizeof ss->rq);
    ss->rq.kind = REQ_OPEN;
    ss->rq.kv0 = lcp;
    if (lcp >= n - 1) set_result(ss, UHLM_ENGINE_OPENED); /* nothing to prefill */
    return sid;
}

void uhlm_engine_close(uhlm_engine *e, int sid) {
    session *ss = session_of(e, sid);
    if (!ss) return;
    /* a staged catch-up was never committed, so there is nothing to undo; the cache records
     * the tokens it holds, so a later prefix match stays exact */
    ss->open = 0;
    ss->has_result = 0;
    ss->rq.kind = REQ_NONE;
    ss->last_used = ++e->tick;
}

/* Checks common to VERIFY and GENERATE; the session, or NULL with *rc set. */
static session *check_request(uhlm_engine *e, int sid, const int *catchup, int n_catchup,
                              int *rc, uhlm_error *err) {
    session *ss = session_of(e, sid);
    if (!ss) {
        *rc = fail(err, UHLM_ENGINE_E_NO_SESSION, "engine: session %d is not open", sid);
        return NULL;
    }
    if (ss->rq.kind != REQ_NONE || ss->has_result) {
        *rc = fail(err, UHLM_ENGINE_E_PENDING, "engine: session %d has a request %s", sid,
                   ss->has_result ? "whose result was not taken" : "pending");
        return NULL;
    }
    if ((*rc = check_tokens(e, catchup, n_catchup, "catch-up", err)) != 0) return NULL;
    if ((long)ss->n_past + n_catchup + 1 > (long)e->n_ctx) {
        *rc = fail(err, UHLM_ENGINE_E_CTX_FULL,
                   "engine: pos %d + %d catch-up + 1 exceeds the context of %d", ss->n_past,
                   n_catchup, e->n_ctx);
        return NULL;
    }
    return ss;
}

static void stage(uhlm_engine *e, int sid, session *ss, int kind, uint32_t rid,
                  const int *catchup, int n_catchup, uint64_t draw_seed) {
    request *rq = &ss->rq;
    memset(rq, 0, sizeof *rq);
    rq->kind = kind;
    rq->request_id = rid;
    rq->first = 1;
    rq->n_catchup = n_catchup;
    rq->draw_seed = draw_seed;
    rq->kv0 = uhlm_seq_len(e->ctx, sid);
    if (n_catchup > 0)
        memcpy(ss->committed + ss->n_past, catchup, sizeof(int) * (size_t)n_catchup);
}

int uhlm_engine_submit_verify(uhlm_engine *e, int sid, const uhlm_verify_req *r,
                              uint32_t request_id, uhlm_error *err) {
    int rc = 0;
    session *ss = check_request(e, sid, r->catchup, r->n_catchup, &rc, err);
    if (!ss) return rc;
    if (r->draft < 0 || r->draft >= e->V)
        return fail(err, UHLM_ENGINE_E_BAD_TOKEN, "engine: draft %d outside [0, %d)", r->draft,
                    e->V);
    int greedy = ss->s.temp == 0.0f;
    if (!greedy && uhlm_verify_decode_x(&r->enc, r->x, r->x_len, e->V, r->draft, ss->x, err) != 0)
        return -UHLM_ENGINE_E_BAD_PROBS;
    stage(e, sid, ss, REQ_VERIFY, request_id, r->catchup, r->n_catchup, r->draw_seed);
    ss->rq.draft = r->draft;
    ss->rq.greedy = greedy;
    return 0;
}

int uhlm_engine_submit_generate(uhlm_engine *e, int sid, const uhlm_generate_req *r,
                                uint32_t request_id, uhlm_error *err) {
    int rc = 0;
    session *ss = check_request(e, sid, r->catchup, r->n_catchup, &rc, err);
    if (!ss) return rc;
    if (r->n_gen < 1) return fail(err, UHLM_ENGINE_E_INVALID, "engine: n_gen %d", r->n_gen);
    stage(e, sid, ss, REQ_GENERATE, request_id, r->catchup, r->n_catchup, r->draw_seed);
    ss->rq.n_gen = r->n_gen;
    ss->rq.stop_eos = r->stop_eos;
    ss->rq.start = ss->n_past + r->n_catchup;
    return 0;
}

/* ------------------------------------------------------------------ flushing */

/* Where the cache must end before the request can be decided on: the prompt less its
 * pending last token (a prefill), or the committed context plus a staged catch-up. */
static int request_end(const session *ss) {
    if (ss->rq.kind == REQ_OPEN) return ss->n_past - 1;
    return ss->n_past + (ss->rq.first ? ss->rq.n_catchup : 0);
}

int uhlm_engine_pending(const uhlm_engine *e, int sid) {
    const session *ss = session_of(e, sid);
    if (!ss || ss->rq.kind == REQ_NONE) return -1;
    return request_end(ss) - uhlm_seq_len(e->ctx, sid);
}

int uhlm_engine_n_pending(const uhlm_engine *e) {
    int n = 0;
    for (int i = 0; i < e->S; i++) n += e->ss[i].open && e->ss[i].rq.kind != REQ_NONE;
    return n;
}

/* Undoes a failed request: the cache goes back to what it held at submit and the staged
 * catch-up is dropped, so the session is as before; a failed prefill closes the session. */
static void request_fail(uhlm_engine *e, int sid, const char *why) {
    session *ss = &e->ss[sid];
    uhlm_error e2;
    if (uhlm_seq_len(e->ctx, sid) > ss->rq.kv0) uhlm_seq_truncate(e->ctx, sid, ss->rq.kv0, &e2);
    int was_open = ss->rq.kind == REQ_OPEN;
    set_result(ss, UHLM_ENGINE_FAILED);
    snprintf(ss->res.error, sizeof ss->res.error, "%s%s", was_open ? "prefill failed: " : "", why);
    if (was_open) {
        ss->open = 0;
        ss->last_used = ++e->tick;
    }
}

static uint64_t ns_since(double t0) { return (uint64_t)((uhlm_now() - t0) * 1e9); }

/* A VERIFY whose tokens are all in the cache: the decision. */
static void decide_verify(uhlm_engine *e, int sid, const float *logits, double dt_fwd) {
    session *ss = &e->ss[sid];
    request *rq = &ss->rq;
    uhlm_error err;
    double td = uhlm_now();
    int pos = ss->n_past + rq->n_catchup;
    uhlm_verdict vd;
    if (uhlm_verify_logits(&ss->s, logits, rq->greedy ? NULL : ss->x, e->V, rq->draft,
                           rq->draw_seed, pos, e->y, &vd, &err) != 0) {
        request_fail(e, sid, err.msg);
        return;
    }
    ss->n_past = pos;
    ss->committed[ss->n_past++] = vd.token;
    rq->cost.llm_ns += (uint64_t)(dt_fwd * 1e9) + ns_since(td);
    set_result(ss, UHLM_ENGINE_VERDICT);
    vd.request_id = rq->request_id;
    vd.cost = ss->res.cost;
    vd.n_past = ss->n_past;
    ss->res.verdict = vd;
}

/* A GENERATE step with its tokens in the cache: one token; the result after the last. */
static void decide_generate(uhlm_engine *e, int sid, const float *logits, double dt_fwd) {
    session *ss = &e->ss[sid];
    request *rq = &ss->rq;
    uhlm_error err;
    double td = uhlm_now();
    int pos = ss->n_past + (rq->first ? rq->n_catchup : 0);
    int tok = uhlm_generate_token(&ss->s, logits, e->V, rq->draw_seed, pos, e->y, &err);
    if (tok < 0) {
        request_fail(e, sid, err.msg);
        return;
    }
    rq->first = 0;
    ss->n_past = pos;
    rq->kv0 = ss->n_past; /* this token is committed: a later failure keeps it */
    ss->committed[ss->n_past++] = tok;
    rq->n_out++;
    rq->cost.llm_ns += (uint64_t)(dt_fwd * 1e9) + ns_since(td);
    if (rq->n_out < rq->n_gen && !(rq->stop_eos && uhlm_tokenizer_is_eog(uhlm_model_tokenizer(e->m), tok)) &&
        ss->n_past < e->n_ctx)
        return; /* stays pending: its next token joins the next flush */
    int start = rq->start, n_out = rq->n_out;
    set_result(ss, UHLM_ENGINE_GENERATED);
    ss->res.tokens = ss->committed + start;
    ss->res.n_tokens = n_out;
}

/* The requests to flush into e->list; their number, or a negative code. */
static int flush_list(uhlm_engine *e, const int *sids, int n, uhlm_error *err) {
    if (!sids) {
        int k = 0;
        for (int i = 0; i < e->S; i++)
            if (e->ss[i].open && e->ss[i].rq.kind != REQ_NONE) e->list[k++] = i;
        return k;
    }
    if (n < 0 || n > e->S) return fail(err, UHLM_ENGINE_E_INVALID, "engine: flush of %d sessions", n);
    for (int i = 0; i < n; i++) {
        if (uhlm_engine_pending(e, sids[i]) < 0)
            return fail(err, UHLM_ENGINE_E_NO_SESSION,
                        "engine: flush: session %d has no request pending", sids[i]);
        for (int j = 0; j < i; j++)
            if (sids[j] == sids[i])
                return fail(err, UHLM_ENGINE_E_INVALID, "engine: flush: session %d listed twice",
                            sids[i]);
        e->list[i] = sids[i];
    }
    return n;
}

int uhlm_engine_flush(uhlm_engine *e, const int *sids, const int *max_feed, int n,
                      uhlm_error *err) {
    int nq = flush_list(e, sids, n, err);
    if (nq <= 0) return nq;
    int nb = 0, rows = 0;
    for (int i = 0; i < nq; i++) {
        int sid = e->list[i];
        session *ss = &e->ss[sid];
        int kv = uhlm_seq_len(e->ctx, sid), end = request_end(ss), feed = end - kv;
        if (max_feed && max_feed[i] > 0 && max_feed[i] < feed) feed = max_feed[i];
        e->kv[i] = kv;
        e->fed[i] = feed;
        e->row[i] = -1;
        for (int p = kv; p < kv + feed; p++)
            e->batch[nb++] = (uhlm_batch_entry){sid, p, ss->committed[p], 0};
        if (kv + feed == end && ss->rq.kind != REQ_OPEN) {
            e->batch[nb - 1].logits = 1;
            e->row[i] = rows++;
        }
    }
    double t0 = uhlm_now();
    uhlm_error fe;
    if (uhlm_decode(e->ctx, e->batch, nb, e->logits, NULL, &fe) != 0) {
        for (int i = 0; i < nq; i++) request_fail(e, e->list[i], fe.msg);
        return fail(err, UHLM_ENGINE_E_INTERNAL, "engine: forward of %d requests, %d tokens: %s",
                    nq, nb, fe.msg);
    }
    double dt = uhlm_now() - t0;
    for (int i = 0; i < nq; i++) {
        int sid = e->list[i];
        session *ss = &e->ss[sid];
        request *rq = &ss->rq;
        rq->cost.forward_calls++;
        rq->cost.seq_tokens += (uint32_t)e->fed[i];
        rq->cost.batch_size = (uint32_t)nq;
        rq->cost.batch_tokens = (uint32_t)nb;
        if (e->row[i] >= 0) {
            const float *lg = e->logits + (size_t)e->row[i] * (size_t)e->V;
            if (rq->kind == REQ_VERIFY) decide_verify(e, sid, lg, dt);
            else decide_generate(e, sid, lg, dt);
        } else {
            rq->cost.llm_ns += (uint64_t)(dt * 1e9);
            if (rq->kind == REQ_OPEN && e->kv[i] + e->fed[i] == request_end(ss))
                set_result(ss, UHLM_ENGINE_OPENED);
        }
    }
    return nb;
}

int uhlm_engine_take(uhlm_engine *e, int sid, uhlm_engine_result *out) {
    if (sid < 0 || sid >= e->S || !e->ss[sid].has_result) return 0;
    *out = e->ss[sid].res;
    e->ss[sid].has_result = 0;
    return 1;
}
