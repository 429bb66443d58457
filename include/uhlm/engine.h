/* engine.h: the verification engine, transport-free (DESIGN §5, §6).
 *
 * The engine is the LLM side of hybrid inference with no I/O: it owns one LLM context with
 * max_sessions sequences and, per session, the committed context (the tokens device and
 * verifier agree on). It is what the in-process verifier (verifier.h) and the server
 * (server.h) are built on, and what anyone embeds to verify drafts behind their own event
 * loop or transport:
 *
 *     e = uhlm_engine_new(llm, &cp, &err);                 cp.n_seq = sessions
 *     sid = uhlm_engine_open(e, &open, &err);              prompt, sampling, tenant
 *     uhlm_engine_submit_verify(e, sid, &req, rid, &err);  catch-up ids, draft d, x̃
 *     ... submit for other sessions ...
 *     uhlm_engine_flush(e, NULL, NULL, 0, &err);           ONE uhlm_decode over them all
 *     while (uhlm_engine_take(e, sid, &res)) ...           res.verdict
 *     uhlm_engine_close(e, sid);
 *
 * Invariant ("one token behind"): between requests a session's KV cache holds
 * committed[0 .. n_past-1); the newest committed token is pending and is fed, with logits,
 * by the next request. So every request is one forward over [pending token, catch-up...]
 * with logits on its last entry, and its decision reads exactly those logits. Decisions use
 * uhlm_verify_logits / uhlm_generate_token (verify.h) with the request's draw seed and the
 * absolute position, and the forward computes each entry's row independently of the rest of
 * the batch, so a verdict does not depend on which other sessions shared the flush, on the
 * order they were submitted in, or on how a request's tokens were split over flushes.
 *
 * Requests. Each session has at most one request pending: the prefill of its prompt (queued
 * by open), a VERIFY (submit_verify) or a GENERATE (submit_generate). A refused request
 * (any error return of open/submit) changes nothing. A flush feeds each listed request its
 * next tokens (all of them, or at most max_feed[i]: the caller's fair-share scheduling),
 * decides the requests whose tokens are all in the cache, and leaves their results to take.
 * A GENERATE of n_gen > 1 stays pending after each token and takes part in one flush per
 * token. A failed forward (allocation) refuses every request in it: each session is rolled
 * back to where it was before the request (a failed prefill closes its session) and its
 * result is UHLM_ENGINE_FAILED.
 *
 * Prefix reuse. A closed session's cache stays; open() picks, among the free sessions, the
 * one whose cache shares the longest prefix with the prompt, so a repeated or resumed prompt
 * prefills only what is new. Only caches last used by the same tenant are considered (a
 * different tenant's cache is treated as empty, so neither the cost nor the timing of an
 * open says what others sent); tenant 0 everywhere means one tenant.
 *
 * Errors: functions return 0 (or a session id) on success and a negative -UHLM_ENGINE_E_*
 * code with err->msg set otherwise. Not thread-safe: one thread drives an engine (the
 * model's thread pool parallelises inside the forward). No global state. */
#ifndef UHLM_ENGINE_H
#define UHLM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "model.h"
#include "payload.h"
#include "sampler.h"
#include "verifier.h"
#include "verify.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (negated in return values). */
enum {
    UHLM_ENGINE_E_INVALID = 1,    /* bad argument: sampling settings, empty prompt, n_gen */
    UHLM_ENGINE_E_NO_SESSION = 2, /* session id unknown or closed */
    UHLM_ENGINE_E_BAD_TOKEN = 3,  /* a prompt, catch-up or draft id outside the vocabulary */
    UHLM_ENGINE_E_BAD_PROBS = 4,  /* x̃ does not decode, or gives the draft probability 0 */
    UHLM_ENGINE_E_CTX_FULL = 5,   /* the prompt or the request does not fit the context */
    UHLM_ENGINE_E_BUSY = 6,       /* every session is open */
    UHLM_ENGINE_E_PENDING = 7,    /* the session already has a request pending */
    UHLM_ENGINE_E_INTERNAL = 8    /* allocation or model failure */
};

typedef struct uhlm_engine uhlm_engine;

/* A session's prompt and settings. */
typedef struct uhlm_engine_open_req {
    const int *prompt; /* n >= 1 tokens; the device's prompt starts with BOS */
    int n;
    uhlm_sampling sampling; /* applied to y as uhlm_sampling_probs applies it to x */
    uint64_t tenant;        /* whose cached prefixes it may reuse (see Prefix reuse) */
} uhlm_engine_open_req;

enum {
    UHLM_ENGINE_NONE = 0,
    UHLM_ENGINE_OPENED = 1,    /* the prompt is prefilled: the session takes requests */
    UHLM_ENGINE_VERDICT = 2,   /* a VERIFY was decided */
    UHLM_ENGINE_GENERATED = 3, /* a GENERATE produced its tokens */
    UHLM_ENGINE_FAILED = 4     /* the request was refused after all (see Requests) */
};

typedef struct uhlm_engine_result {
    int kind;            /* UHLM_ENGINE_* */
    uint32_t request_id; /* as submitted (0 for OPENED) */
    uhlm_verdict verdict; /* VERDICT */
    const int *tokens;    /* GENERATED: n_tokens ids, valid until the session's next call */
    int n_tokens;
    int reused;      /* OPENED: prompt tokens whose cache entries were reused */
    uhlm_cost cost;  /* of the request, every flush it took part in (VERDICT: also in verdict) */
    int n_past;      /* committed context length after the request */
    char error[256]; /* FAILED: why */
} uhlm_engine_result;

/* cp->n_seq is the number of sessions, cp->n_ctx the positions of each (0: the model's);
 * the model is borrowed and must outlive the engine. */
UHLM_API uhlm_engine *uhlm_engine_new(const uhlm_model *llm, const uhlm_ctx_params *cp, uhlm_error *err);
UHLM_API void uhlm_engine_free(uhlm_engine *e);

UHLM_API int uhlm_engine_n_vocab(const uhlm_engine *e);
UHLM_API int uhlm_engine_n_ctx(const uhlm_engine *e);
UHLM_API int uhlm_engine_max_sessions(const uhlm_engine *e);
UHLM_API int uhlm_engine_n_open(const uhlm_engine *e);

/* Opens a session with o->prompt as its committed context and returns its id (>= 0; ids
 * are 0 .. max_sessions-1 and a closed id is given out again). The prefill is queued as the
 * session's pending request; its result (OPENED, or FAILED) comes from a flush, or at once
 * when the cached prefix already covers the prompt. */
UHLM_API int uhlm_engine_open(uhlm_engine *e, const uhlm_engine_open_req *o, uhlm_error *err);

/* Queues a VERIFY: commit r->catchup, then decide r->draft at position n_past + n_catchup
 * with y from the LLM and x̃ from r->x (ignored at temperature 0). request_id is echoed. */
UHLM_API int uhlm_engine_submit_verify(uhlm_engine *e, int sid, const uhlm_verify_req *r,
                              uint32_t request_id, uhlm_error *err);
/* Queues a GENERATE: commit r->catchup, then generate up to r->n_gen tokens (fewer at EOS
 * with r->stop_eos, or at the end of the context). */
UHLM_API int uhlm_engine_submit_generate(uhlm_engine *e, int sid, const uhlm_generate_req *r,
                                uint32_t request_id, uhlm_error *err);

/* Tokens session sid's pending request still has to feed before its next decision (0 for
 * a prefill that is done), or -1 when it has no request pending. */
UHLM_API int uhlm_engine_pending(const uhlm_engine *e, int sid);
/* Sessions with a request pending. */
UHLM_API int uhlm_engine_n_pending(const uhlm_engine *e);

/* One uhlm_decode over the pending requests of sids[0..n) (sids NULL: every pending
 * request, in session order), each feeding at most max_feed[i] tokens (max_feed NULL, or a
 * value <= 0: all; at least one is always fed), then the decisions. Returns the number of
 * tokens in the forward (0 when nothing was pending), or a negative code when the forward
 * failed (the requests in it are FAILED, see Requests). */
UHLM_API int uhlm_engine_flush(uhlm_engine *e, const int *sids, const int *max_feed, int n,
                      uhlm_error *err);

/* Takes session sid's finished result: 1 (written to *out), 0 when there is none. */
UHLM_API int uhlm_engine_take(uhlm_engine *e, int sid, uhlm_engine_result *out);

/* Ends session sid, dropping a pending request or result; its cache stays for reuse. */
UHLM_API void uhlm_engine_close(uhlm_engine *e, int sid);

/* Session state: the committed context (NULL when sid is not open). */
UHLM_API const int *uhlm_engine_committed(const uhlm_engine *e, int sid, int *n_past);

/* ---- prefix reuse, the one rule (the engine's sessions and the device's SLM use it) ----
 * How many leading tokens of tokens[0..n) sequence seq's cache already holds, at most
 * n - 1: the last token is always left to be fed, since its logits are what the caller
 * needs next (and the engine's newest token is pending, the invariant). */
UHLM_API int uhlm_seq_common_prefix(const uhlm_ctx *ctx, int seq, const int *tokens, int n);
/* Truncates seq to that common prefix; its length, or -1 with err. */
UHLM_API int uhlm_seq_reuse_prefix(uhlm_ctx *ctx, int seq, const int *tokens, int n, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
