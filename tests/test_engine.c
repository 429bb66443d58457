/* test_engine.c: the verification engine (engine.h) on the real LLM.
 *
 *  - interleaving: three sessions whose requests share every flush (and, in a second pass,
 *    are fed one token per flush, as the server's fair share does) give exactly the verdicts
 *    and generated tokens of each session run alone through the in-process verifier;
 *  - prefix reuse: a reopened prompt prefills only what is new, for the same tenant only;
 *  - close/reopen: a closed id is refused, a reopened session starts clean;
 *  - bad input: unknown session, draft or catch-up outside the vocabulary, x̃ that cannot
 *    have produced the draft, context overflow, a second pending request, no free session:
 *    each is a clear error with its code, and changes nothing (the next request gives the
 *    verdict it would have given anyway). */
#include "check.h"
#include "uhlm/engine.h"
#include "uhlm/model.h"
#include "uhlm/tokenizer.h"

#define N_SESS 3
#define N_REQ 12
#define N_CTX 96

static const char *prompts[N_SESS] = {"Once upon a time, there was a little girl",
                                      "The cat sat on the mat and", "Tom had a red ball"};

typedef struct {
    const uhlm_model *llm;
    int V;
    uint8_t *x; /* an f32 x̃: a fixed, smooth distribution (so drafts get rejected too) */
    size_t x_len;
    int prompt[N_SESS][64], np[N_SESS];
} env;

/* Request i of session k: a catch-up of (i + k) % 3 tokens and a draft, all fixed. */
static int request_of(const env *e, int k, int i, int *catchup, uhlm_verify_req *r) {
    int nc = (i + k) % 3;
    for (int j = 0; j < nc; j++) catchup[j] = 30 + (97 * (i + 1) + 31 * j + 7 * k) % 400;
    *r = (uhlm_verify_req){catchup, nc, 40 + (53 * i + 11 * k) % 300, {UHLM_PAYLOAD_F32, 0, 0},
                           e->x, e->x_len, 1000 + (uint64_t)k};
    return nc;
}

static int same_verdict(const uhlm_verdict *a, const uhlm_verdict *b) {
    return a->token == b->token && a->accepted == b->accepted && a->y_ge_x == b->y_ge_x &&
           a->y_d == b->y_d && a->x_d == b->x_d && a->beta == b->beta && a->n_past == b->n_past;
}

/* Each session alone, through the in-process verifier: the reference verdicts, and the
 * tokens of one GENERATE of 5 after the verifies. */
static void reference(env *e, uhlm_verdict ref[N_SESS][N_REQ], int gen[N_SESS][5]) {
    uhlm_error err;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = N_CTX;
    uhlm_sampling smp = {1.0f, 0, 1.0f};
    for (int k = 0; k < N_SESS; k++) {
        uhlm_verifier *v = uhlm_verifier_inproc_new(e->llm, &cp, &err);
        CHECK(v != NULL);
        if (!v) return;
        uhlm_opened o;
        CHECK(uhlm_verifier_open(v, e->prompt[k], e->np[k], &smp, 0, &o, &err) == 0);
        for (int i = 0; i < N_REQ; i++) {
            int cu[4];
            uhlm_verify_req r;
            request_of(e, k, i, cu, &r);
            CHECKF(uhlm_verifier_verify(v, &r, &ref[k][i], &err) == 0, "%s", err.msg);
        }
        uhlm_generate_req g = {NULL, 0, 5, 0, 2000 + (uint64_t)k};
        uhlm_generated go;
        CHECK(uhlm_verifier_generate(v, &g, gen[k], &go, &err) == 0 && go.n == 5);
        uhlm_verifier_free(v);
    }
}

static uhlm_engine *engine_new(env *e, int sessions) {
    uhlm_error err;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = N_CTX;
    cp.n_seq = sessions;
    uhlm_engine *eng = uhlm_engine_new(e->llm, &cp, &err);
    CHECKF(eng != NULL, "%s", err.msg);
    return eng;
}

/* Opens session k's prompt for tenant t; the session id, its OPENED result in *res (after
 * as many flushes as it takes). */
static int open_session(uhlm_engine *eng, env *e, int k, uint64_t t, uhlm_engine_result *res) {
    uhlm_error err;
    uhlm_engine_open_req o = {e->prompt[k], e->np[k], {1.0f, 0, 1.0f}, t};
    int sid = uhlm_engine_open(eng, &o, &err);
    CHECKF(sid >= 0, "open: %s", err.msg);
    if (sid < 0) return -1;
    while (!uhlm_engine_take(eng, sid, res)) CHECK(uhlm_engine_flush(eng, &sid, NULL, 1, &err) > 0);
    CHECK(res->kind == UHLM_ENGINE_OPENED && res->n_past == e->np[k]);
    return sid;
}

/* All sessions' requests in shared flushes; feed_one: one token per request and flush. */
static void interleaved(env *e, uhlm_verdict ref[N_SESS][N_REQ], int gen[N_SESS][5],
                        int feed_one) {
    uhlm_error err;
    uhlm_engine *eng = engine_new(e, N_SESS);
    if (!eng) return;
    int sid[N_SESS];
    /* the three prefills share flushes too */
    for (int k = 0; k < N_SESS; k++) {
        uhlm_engine_open_req o = {e->prompt[k], e->np[k], {1.0f, 0, 1.0f}, 0};
        sid[k] = uhlm_engine_open(eng, &o, &err);
        CHECK(sid[k] >= 0);
    }
    int ones[N_SESS] = {1, 1, 1}, mismatches = 0, flushes = 0, batched = 0;
    for (int i = -1; i < N_REQ; i++) {
        int cu[N_SESS][4];
        for (int k = 0; k < N_SESS && i >= 0; k++) {
            uhlm_verify_req r;
            request_of(e, k, i, cu[k], &r);
            CHECK(uhlm_engine_submit_verify(eng, sid[k], &r, (uint32_t)(100 * k + i), &err) == 0);
        }
        int done = 0;
        uhlm_engine_result res[N_SESS];
        int got[N_SESS] = {0};
        while (done < N_SESS) {
            int n = uhlm_engine_flush(eng, NULL, feed_one ? ones : NULL, 0, &err);
            flushes++;
            CHECKF(n > 0, "flush: %s", err.msg);
            if (n <= 0) break;
            batched += n > 1;
            for (int k = 0; k < N_SESS; k++)
                if (!got[k] && uhlm_engine_take(eng, sid[k], &res[k])) got[k] = 1, done++;
        }
        for (int k = 0; k < N_SESS && i >= 0; k++) {
            CHECK(res[k].kind == UHLM_ENGINE_VERDICT && res[k].request_id == (uint32_t)(100 * k + i));
            mismatches += !same_verdict(&res[k].verdict, &ref[k][i]);
            CHECK(res[k].verdict.request_id == res[k].request_id);
            CHECK(res[k].verdict.cost.forward_calls >= 1 && res[k].verdict.cost.batch_size >= 1);
        }
    }
    /* a GENERATE in each session, again sharing flushes */
    for (int k = 0; k < N_SESS; k++) {
        uhlm_generate_req g = {NULL, 0, 5, 0, 2000 + (uint64_t)k};
        CHECK(uhlm_engine_submit_generate(eng, sid[k], &g, 7, &err) == 0);
    }
    int done = 0, got[N_SESS] = {0};
    while (done < N_SESS && uhlm_engine_flush(eng, NULL, NULL, 0, &err) > 0)
        for (int k = 0; k < N_SESS; k++) {
            uhlm_engine_result r;
            if (got[k] || !uhlm_engine_take(eng, sid[k], &r)) continue;
            got[k] = 1;
            done++;
            CHECK(r.kind == UHLM_ENGINE_GENERATED && r.n_tokens == 5);
            CHECK(r.n_tokens == 5 && !memcmp(r.tokens, gen[k], sizeof gen[k]));
            CHECK(r.cost.forward_calls == 5);
        }
    CHECK(done == N_SESS);
    CHECKF(mismatches == 0, "%d verdicts differ from the sessions run alone", mismatches);
    CHECK(batched > N_REQ / 2); /* the flushes really held several sessions */
    printf("interleaved (%s): %d sessions x %d verdicts + generate match the runs alone, "
           "%d flushes\n",
           feed_one ? "one token per flush" : "whole requests", N_SESS, N_REQ, flushes);
    uhlm_engine_free(eng);
}

static void prefix_reuse(env *e) {
    uhlm_engine *eng = engine_new(e, 2);
    if (!eng) return;
    uhlm_engine_result r;
    int sid = open_session(eng, e, 0, 5, &r);
    CHECK(r.reused == 0 && r.cost.seq_tokens == (uint32_t)(e->np[0] - 1));
    uhlm_engine_close(eng, sid);
    /* the same tenant again: everything but the pending last token is cached */
    sid = open_session(eng, e, 0, 5, &r);
    CHECK(r.reused == e->np[0] - 1 && r.cost.forward_calls == 0);
    uhlm_engine_close(eng, sid);
    /* a longer prompt sharing the head: only the new part is fed */
    int longer[64];
    memcpy(longer, e->prompt[0], sizeof(int) * (size_t)e->np[0]);
    longer[e->np[0]] = 50;
    longer[e->np[0] + 1] = 60;
    uhlm_engine_open_req o = {longer, e->np[0] + 2, {1.0f, 0, 1.0f}, 5};
    uhlm_error err;
    sid = uhlm_engine_open(eng, &o, &err);
    CHECK(sid >= 0);
    while (sid >= 0 && !uhlm_engine_take(eng, sid, &r)) uhlm_engine_flush(eng, NULL, NULL, 0, &err);
    CHECK(r.kind == UHLM_ENGINE_OPENED && r.reused == e->np[0] - 1 && r.cost.seq_tokens == 2);
    uhlm_engine_close(eng, sid);
    /* another tenant sees no cache at all: its prefill is whole */
    sid = open_session(eng, e, 0, 6, &r);
    CHECK(r.reused == 0 && r.cost.seq_tokens == (uint32_t)(e->np[0] - 1));
    uhlm_engine_close(eng, sid);
    printf("prefix reuse: same tenant reuses %d tokens, another tenant none\n", e->np[0] - 1);
    uhlm_engine_free(eng);
}

static int verify_now(uhlm_engine *eng, int sid, const uhlm_verify_req *r, uhlm_verdict *out) {
    uhlm_error err;
    uhlm_engine_result res;
    int rc = uhlm_engine_submit_verify(eng, sid, r, 1, &err);
    if (rc < 0) return rc;
    while (!uhlm_engine_take(eng, sid, &res))
        if (uhlm_engine_flush(eng, &sid, NULL, 1, &err) < 0) return -100;
    *out = res.verdict;
    return res.kind == UHLM_ENGINE_VERDICT ? 0 : -101;
}

static void bad_input(env *e, uhlm_verdict ref[N_SESS][N_REQ]) {
    uhlm_engine *eng = engine_new(e, 1);
    if (!eng) return;
    uhlm_error err;
    uhlm_engine_result r;
    int V = e->V, sid = open_session(eng, e, 0, 0, &r);
    int cu[4];
    uhlm_verify_req good, bad;
    request_of(e, 0, 0, cu, &good);
    /* unknown sessions */
    CHECK(uhlm_engine_submit_verify(eng, 5, &good, 0, &err) == -UHLM_ENGINE_E_NO_SESSION &&
          strstr(err.msg, "not open"));
    CHECK(uhlm_engine_submit_verify(eng, -1, &good, 0, &err) == -UHLM_ENGINE_E_NO_SESSION);
    CHECK(uhlm_engine_pending(eng, 5) == -1 && uhlm_engine_flush(eng, &(int){5}, NULL, 1, &err) ==
                                                  -UHLM_ENGINE_E_NO_SESSION);
    /* a draft and a catch-up token outside the vocabulary */
    bad = good;
    bad.draft = V;
    CHECK(uhlm_engine_submit_verify(eng, sid, &bad, 0, &err) == -UHLM_ENGINE_E_BAD_TOKEN &&
          strstr(err.msg, "draft"));
    int neg[1] = {-3};
    bad = good;
    bad.catchup = neg;
    bad.n_catchup = 1;
    CHECK(uhlm_engine_submit_verify(eng, sid, &bad, 0, &err) == -UHLM_ENGINE_E_BAD_TOKEN &&
          strstr(err.msg, "catch-up"));
    /* x̃ that gives the draft probability 0, and one that does not decode */
    float *z = calloc((size_t)V, sizeof(float));
    if (z) {
        z[1] = 1.0f;
        bad = good;
        bad.x = (const uint8_t *)z;
        CHECK(uhlm_engine_submit_verify(eng, sid, &bad, 0, &err) == -UHLM_ENGINE_E_BAD_PROBS);
        bad.x_len = 7;
        CHECK(uhlm_engine_submit_verify(eng, sid, &bad, 0, &err) == -UHLM_ENGINE_E_BAD_PROBS);
        free(z);
    }
    /* context overflow: a catch-up running past N_CTX, and a prompt longer than it */
    int *many = calloc(N_CTX, sizeof(int));
    if (many) {
        for (int i = 0; i < N_CTX; i++) many[i] = 100 + i % 50;
        bad = good;
        bad.catchup = many;
        bad.n_catchup = N_CTX - e->np[0];
        CHECK(uhlm_engine_submit_verify(eng, sid, &bad, 0, &err) == -UHLM_ENGINE_E_CTX_FULL &&
              strstr(err.msg, "exceeds the context"));
        uhlm_engine_open_req o = {many, N_CTX + 0, {1.0f, 0, 1.0f}, 0};
        CHECK(uhlm_engine_open(eng, &o, &err) == -UHLM_ENGINE_E_BUSY); /* the one session is open */
        free(many);
    }
    /* every refusal changed nothing: the next request gives the reference verdict */
    uhlm_verdict v;
    CHECK(verify_now(eng, sid, &good, &v) == 0 && same_verdict(&v, &ref[0][0]));
    /* a second request while one is pending */
    uhlm_verify_req next;
    request_of(e, 0, 1, cu, &next);
    CHECK(uhlm_engine_submit_verify(eng, sid, &next, 0, &err) == 0);
    CHECK(uhlm_engine_submit_verify(eng, sid, &next, 0, &err) == -UHLM_ENGINE_E_PENDING);
    CHECK(uhlm_engine_n_pending(eng) == 1 && uhlm_engine_pending(eng, sid) == next.n_catchup + 1);
    CHECK(uhlm_engine_flush(eng, NULL, NULL, 0, &err) == next.n_catchup + 1);
    CHECK(uhlm_engine_take(eng, sid, &r) && same_verdict(&r.verdict, &ref[0][1]));
    /* close: the id is refused; reopen: a clean session, the same verdicts again */
    uhlm_engine_close(eng, sid);
    CHECK(uhlm_engine_n_open(eng) == 0);
    CHECK(uhlm_engine_submit_verify(eng, sid, &good, 0, &err) == -UHLM_ENGINE_E_NO_SESSION);
    uhlm_engine_open_req o = {e->prompt[0], e->np[0], {1.0f, 0, 1.0f}, 0};
    int big[N_CTX + 1];
    for (int i = 0; i <= N_CTX; i++) big[i] = 1;
    uhlm_engine_open_req ob = {big, N_CTX + 1, {1.0f, 0, 1.0f}, 0};
    CHECK(uhlm_engine_open(eng, &ob, &err) == -UHLM_ENGINE_E_CTX_FULL);
    uhlm_engine_open_req oe = {big, 0, {1.0f, 0, 1.0f}, 0};
    CHECK(uhlm_engine_open(eng, &oe, &err) == -UHLM_ENGINE_E_INVALID);
    uhlm_engine_open_req os = {e->prompt[0], e->np[0], {-1.0f, 0, 1.0f}, 0};
    CHECK(uhlm_engine_open(eng, &os, &err) == -UHLM_ENGINE_E_INVALID);
    sid = uhlm_engine_open(eng, &o, &err);
    CHECK(sid >= 0);
    CHECK(uhlm_engine_take(eng, sid, &r) && r.kind == UHLM_ENGINE_OPENED); /* cached prefix */
    for (int i = 0; i < 3; i++) {
        uhlm_verify_req q;
        request_of(e, 0, i, cu, &q);
        CHECK(verify_now(eng, sid, &q, &v) == 0 && same_verdict(&v, &ref[0][i]));
    }
    printf("bad input: each refused with its code, nothing changed; close/reopen clean\n");
    uhlm_engine_free(eng);
}

int main(void) {
    env e;
    uhlm_error err;
    uhlm_model *llm = uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"),
                                      uhlm_test_model_path("tok512.bin"), &err);
    CHECKF(llm != NULL, "%s", err.msg);
    if (!llm) return check_report();
    e.llm = llm;
    e.V = uhlm_model_config(llm)->vocab_size;
    float *xf = malloc(sizeof(float) * (size_t)e.V);
    if (!xf) return 1;
    double sum = 0.0;
    for (int i = 0; i < e.V; i++) sum += xf[i] = 1.0f + (float)(i % 17);
    for (int i = 0; i < e.V; i++) xf[i] = (float)(xf[i] / sum);
    e.x = (uint8_t *)xf;
    e.x_len = sizeof(float) * (size_t)e.V;
    for (int k = 0; k < N_SESS; k++) {
        e.np[k] = uhlm_tokenize(uhlm_model_tokenizer(llm), prompts[k], strlen(prompts[k]), 1, 0, e.prompt[k], 64,
                                &err);
        CHECK(e.np[k] > 3);
    }
    static uhlm_verdict ref[N_SESS][N_REQ];
    static int gen[N_SESS][5];
    reference(&e, ref, gen);
    int acc = 0;
    for (int k = 0; k < N_SESS; k++)
        for (int i = 0; i < N_REQ; i++) acc += ref[k][i].accepted;
    CHECK(acc > 0 && acc < N_SESS * N_REQ); /* both outcomes occur */
    interleaved(&e, ref, gen, 0);
    interleaved(&e, ref, gen, 1);
    prefix_reuse(&e);
    bad_input(&e, ref);
    free(xf);
    uhlm_model_free(llm);
    return check_report();
}
