/* verifier.h: the server side of hybrid inference as an interface (DESIGN §5).
 *
 * The device loop talks to "a verifier" through this small vtable, so one code path serves
 * the in-process LLM (this file) and a remote server (the network layer implements the same
 * operations over the wire protocol: OPEN, VERIFY, GENERATE, CLOSE).
 *
 * Session state, shared by both sides: the committed context, the tokens both agree on. OPEN
 * commits the prompt; VERIFY commits the catch-up tokens (the device's skipped tokens the
 * verifier has not seen, in order) and then the final token it decides; GENERATE commits its
 * catch-up and the tokens it generates. The verifier computes y for position p = the
 * committed length after catch-up, i.e. the LLM's next-token distribution given the whole
 * device context. An implementation keeps its KV cache one token behind the committed
 * context (the newest token is fed, with logits, at the next request), so each request is
 * exactly ONE batched forward over [pending token, catch-up...], logits on the last entry.
 *
 * Randomness (verify.h): draws for the token at absolute position p come from
 * uhlm_hybrid_rng(draw_seed, p), where draw_seed is the request's (the device passes its
 * session's UHLM_STREAM_VERIFY / UHLM_STREAM_LLM stream seed). Results therefore depend only
 * on (context, x̃, draft, seed), not on request history, batching or reconnects.
 *
 * Return values of every operation: 0 ok; -1 error (with err), fatal for the session;
 * UHLM_VERIFIER_UNAVAILABLE: the verifier cannot be reached right now and NOTHING was
 * committed; the device keeps the tokens pending and carries on alone (a remote verifier
 * resynchronises on a later call, re-opening with the context it had committed).
 *
 * Sampling settings (temperature, top-k, top-p) come with open and apply to y exactly as
 * uhlm_sampling_probs applies them to x. Temperature 0 selects the greedy rule; the request
 * then carries no x. */
#ifndef UHLM_VERIFIER_H
#define UHLM_VERIFIER_H

#include "common.h"
#include "model.h"
#include "payload.h"
#include "sampler.h"
#include "verify.h" /* uhlm_verdict: the one verdict type of every layer */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UHLM_VERIFIER_UNAVAILABLE 1

typedef struct uhlm_verifier_info {
    int n_vocab;
    uint64_t fingerprint; /* uhlm_tokenizer_fingerprint of the LLM's vocabulary; 0 = unknown */
    int n_ctx;            /* positions per session */
    /* nonzero: a session may outgrow n_ctx, and the verifier then answers UNAVAILABLE (the
     * remote verifier: the device goes on with the SLM alone), so n_ctx need not bound a device
     * that has an SLM. 0 (in-process): the device stops at n_ctx. */
    int ctx_fallback;
    char model[256];      /* for reports */
} uhlm_verifier_info;

typedef struct uhlm_opened {
    int n_past;   /* committed context (the prompt length) */
    double llm_s; /* compute spent on the prompt (prefill) */
    int forward_calls;
    int batch_tokens;
} uhlm_opened;

typedef struct uhlm_verify_req {
    const int *catchup; /* tokens to commit before deciding; may be NULL when n_catchup = 0 */
    int n_catchup;
    int draft;
    uhlm_payload_spec enc; /* how x is encoded; ignored when greedy */
    const uint8_t *x;      /* encoded x̃ (uhlm_payload_bytes); NULL when greedy */
    size_t x_len;
    uint64_t draw_seed;
} uhlm_verify_req;

typedef struct uhlm_generate_req {
    const int *catchup;
    int n_catchup;
    int n_gen;    /* >= 1 */
    int stop_eos; /* stop after an EOS token */
    uint64_t draw_seed;
} uhlm_generate_req;

typedef struct uhlm_generated {
    int n; /* tokens written (1..n_gen; fewer at EOS or the context end) */
    double llm_s;
    int forward_calls;
    int batch_tokens;
    int n_past;
} uhlm_generated;

typedef struct uhlm_verifier uhlm_verifier;

typedef struct uhlm_verifier_ops {
    int (*info)(uhlm_verifier *v, uhlm_verifier_info *out, uhlm_error *err);
    /* Starts a session (ending any previous one) with the prompt as committed context
     * (n >= 1; the device's prompt starts with BOS). */
    int (*open)(uhlm_verifier *v, const int *prompt, int n, const uhlm_sampling *s, uint64_t seed,
                uhlm_opened *out, uhlm_error *err);
    /* out: the verdict (verify.h), its cost.seq_tokens = this session's tokens in the forwards
     * (the pending token plus catch-up), n_past = the committed length after the token. */
    int (*verify)(uhlm_verifier *v, const uhlm_verify_req *r, uhlm_verdict *out, uhlm_error *err);
    /* tokens receives up to r->n_gen ids. */
    int (*generate)(uhlm_verifier *v, const uhlm_generate_req *r, int *tokens, uhlm_generated *out,
                    uhlm_error *err);
    /* Ends the session; the verifier can be opened again. */
    void (*close)(uhlm_verifier *v);
    void (*destroy)(uhlm_verifier *v);
} uhlm_verifier_ops;

struct uhlm_verifier {
    const uhlm_verifier_ops *ops;
    void *impl;
};

static inline int uhlm_verifier_info_get(uhlm_verifier *v, uhlm_verifier_info *out,
                                         uhlm_error *err) {
    return v->ops->info(v, out, err);
}
static inline int uhlm_verifier_open(uhlm_verifier *v, const int *prompt, int n,
                                     const uhlm_sampling *s, uint64_t seed, uhlm_opened *out,
                                     uhlm_error *err) {
    return v->ops->open(v, prompt, n, s, seed, out, err);
}
static inline int uhlm_verifier_verify(uhlm_verifier *v, const uhlm_verify_req *r,
                                       uhlm_verdict *out, uhlm_error *err) {
    return v->ops->verify(v, r, out, err);
}
static inline int uhlm_verifier_generate(uhlm_verifier *v, const uhlm_generate_req *r, int *tokens,
                                         uhlm_generated *out, uhlm_error *err) {
    return v->ops->generate(v, r, tokens, out, err);
}
static inline void uhlm_verifier_close(uhlm_verifier *v) { v->ops->close(v); }
static inline void uhlm_verifier_free(uhlm_verifier *v) {
    if (v) v->ops->destroy(v);
}

/* ---- the in-process verifier ----
 * The verification engine (engine.h) on `llm` with cp->n_seq sessions (normally 1), one
 * open at a time; the model is borrowed and must outlive the verifier. open() keeps the
 * longest common prefix of the previous session's cache with the new prompt (the engine's
 * prefix reuse), so repeated sessions on one prompt prefill once. */
UHLM_API uhlm_verifier *uhlm_verifier_inproc_new(const uhlm_model *llm, const uhlm_ctx_params *cp,
                                        uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
