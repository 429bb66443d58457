/* verify.h: speculative verification of one draft (DESIGN §2.1) and the hybrid RNG streams.
 *
 * Verification. Given the device's distribution x (the reconstructed x̃ the draft was drawn
 * from), the LLM's distribution y and the draft d ~ x: accept d with probability
 * min(1, y[d]/x[d]); otherwise draw from r = max(0, y - x) / Σ max(0, y - x). The final
 * token is then distributed exactly as y. A rejected draft is never the final token: r[d] = 0
 * whenever d is rejected (y[d] < x[d]), so `accepted` == (token == draft).
 * Greedy (temperature 0): accept iff d == argmax y, else take argmax y; x is not needed.
 *
 * Randomness. Every random choice of a hybrid session comes from a stream derived from the
 * session seed, and inside a stream from the absolute position of the token it concerns:
 *     rng(stream, pos) = uhlm_rng_seed(uhlm_hybrid_pos_seed(uhlm_hybrid_stream_seed(seed,
 *                                                                         stream), pos))
 *   UHLM_STREAM_DRAFT    device: the draft d ~ x̃ at pos                   (1 uniform)
 *   UHLM_STREAM_UNC      device: perturbation samples at pos              (2·M uniforms)
 *   UHLM_STREAM_POLICY   device: the rand policy's coin at pos            (1 uniform)
 *   UHLM_STREAM_VERIFY   server: accept test and residual draw at pos     (1 or 2 uniforms)
 *   UHLM_STREAM_LLM      server: llm-mode sampling of the token at pos    (1 uniform)
 * Because draws are keyed by position rather than taken from one running stream, a token's
 * randomness does not depend on how many draws earlier steps made (a skip draws no verify
 * uniforms, a rejection draws one more), on batching, or on reconnects: slm and uhlm with
 * u_th = 1 give the same text, and a remote verifier given the same VERIFY seed reproduces
 * the in-process one. The streams are distinct hashes of the seed, so the draws that must be
 * independent for exactness (the draft's and the verifier's) are. */
#ifndef UHLM_VERIFY_H
#define UHLM_VERIFY_H

#include "common.h"
#include "payload.h"
#include "sampler.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    UHLM_STREAM_DRAFT = 1,
    UHLM_STREAM_UNC = 2,
    UHLM_STREAM_POLICY = 3,
    UHLM_STREAM_VERIFY = 4,
    UHLM_STREAM_LLM = 5,
    UHLM_STREAM_CHANNEL = 6 /* fading draws (sequential, see channel.h) */
};

UHLM_API uint64_t uhlm_hybrid_stream_seed(uint64_t seed, int stream);
UHLM_API uint64_t uhlm_hybrid_pos_seed(uint64_t stream_seed, uint64_t pos);
/* r = the generator for (stream_seed, pos). */
UHLM_API void uhlm_hybrid_rng(uhlm_rng *r, uint64_t stream_seed, uint64_t pos);

/* The cost of one request to the LLM, as the verifier reports it (and the wire carries it). */
typedef struct uhlm_cost {
    uint64_t llm_ns;        /* LLM compute for this request (forwards and decisions), ns */
    uint32_t forward_calls; /* batched forwards it took part in */
    uint32_t seq_tokens;    /* this session's tokens in those forwards */
    uint32_t batch_size;    /* requests in the (last) batched forward */
    uint32_t batch_tokens;  /* all tokens in that forward, every session */
} uhlm_cost;

/* The verifier's verdict on one draft: the ONE shape it has in every layer. uhlm_verify
 * fills the decision, the engine (engine.h) adds the cost and the context length, the
 * verifier interface (verifier.h) returns it, the wire codec (wire.h: VERDICT) encodes and
 * decodes it as is, and the device's token events (device.h) carry it. */
typedef struct uhlm_verdict {
    uint32_t request_id; /* the request it answers (the wire's id; 0 in process) */
    int token;           /* the final token, committed */
    int accepted;        /* the draft was accepted (then token == draft) */
    int y_ge_x;          /* y[d] >= x[d]: accepted outright (for TSR) */
    int residual_fallback; /* rejected but the residual summed to 0 in floats: drew from y
                            * (diagnostic; not carried on the wire) */
    double x_d, y_d;
    double beta;     /* rejection probability max(0, 1 - y[d]/x[d]); greedy: 0 or 1 */
    uhlm_cost cost;  /* zero from uhlm_verify alone */
    int n_past;      /* committed context length after the token; 0 from uhlm_verify alone */
} uhlm_verdict;

/* x, y: n probabilities each (non-negative, summing to ~1). Draws one uniform for the accept
 * test and, on rejection, one more for the residual. -1 (with err) when d is out of range or
 * x[d] <= 0 (d cannot have been drawn from x). */
UHLM_API int uhlm_verify(const float *x, const float *y, int n, int d, uhlm_rng *rng,
                uhlm_verdict *out, uhlm_error *err);

/* Greedy rule: y_argmax is the LLM's argmax (lowest index on ties). x_d is reported as 1. */
UHLM_API int uhlm_verify_greedy(int n, int d, int y_argmax, uhlm_verdict *out, uhlm_error *err);

/* Inverse-CDF draw from w[0..n) scaled by its own sum (w need not be normalised); never
 * returns an index with weight 0. -1 when the weights sum to 0. */
UHLM_API int uhlm_sample_weights(const float *w, int n, uhlm_rng *rng);

/* ---- the verifier's steps, shared by every verifier (in-process and the server) ----
 * One definition of "what the verifier decides", so that a server batching many devices
 * gives bit-identical verdicts to the in-process verifier. */

/* Decodes the device's encoded x into x (n floats) and checks that draft d can have been
 * drawn from it (x̃[d] > 0). -1 with err otherwise (the wire layer's BAD_PROBS). */
UHLM_API int uhlm_verify_decode_x(const uhlm_payload_spec *enc, const uint8_t *bytes, size_t len, int n,
                         int d, float *x, uhlm_error *err);

/* The decision for draft d at absolute position pos, from the LLM's logits there:
 * y = uhlm_sampling_probs(s, logits) (written to y, n floats of scratch); then the greedy
 * rule when s->temp == 0 (x is not read and may be NULL), else uhlm_verify(x, y) with the
 * draws of uhlm_hybrid_rng(draw_seed, pos). 0, or -1 with err. */
UHLM_API int uhlm_verify_logits(const uhlm_sampling *s, const float *logits, const float *x, int n, int d,
                       uint64_t draw_seed, int pos, float *y, uhlm_verdict *out,
                       uhlm_error *err);

/* The llm mode's token at absolute position pos: the argmax at temperature 0, else a draw
 * from y = uhlm_sampling_probs(s, logits) with uhlm_hybrid_rng(draw_seed, pos). y is n
 * floats of scratch. The token, or -1 with err. */
UHLM_API int uhlm_generate_token(const uhlm_sampling *s, const float *logits, int n, uint64_t draw_seed,
                        int pos, float *y, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
