/* device.h: the device's generation loop, one code path for the five modes (DESIGN §2).
 *
 * Per step at position t (every mode but llm):
 *   SLM logits z -> x = uhlm_sampling_probs(z) -> bytes = encode(x) -> x̃ = decode(bytes)
 *   -> draft d ~ x̃ (DRAFT stream; argmax at temperature 0) -> u (UNC stream; only when the
 *   policy reads it or record_u is set) -> policy: skip (d is final and joins the catch-up
 *   list) or verify (catch-up + d + bytes go to the verifier, whose verdict is final).
 * The final token is fed to the SLM, so a resampled token replaces the draft in its cache.
 * llm mode asks the verifier to generate each token instead; only while the verifier is
 * unavailable does the SLM (when given) generate, unverified, and those tokens go to the
 * verifier as catch-up once it is back.
 * At temperature 0 no x is sent (the greedy rule needs only d).
 *
 * The verifier session is opened lazily, with the prompt, at the first request: a run that
 * never verifies (slm, or uhlm with u_th >= 1) costs the server nothing and sends nothing.
 *
 * Stopping: after n_gen tokens, after EOS (id 2; counted as generated, not printed), or when
 * the sequence fills the smaller context of the SLM and the verifier. BOS is an ordinary
 * token here, as in `uhlm generate`.
 *
 * Accounting (virtual clock): measured compute (SLM: forwards, x, encode/decode, draft; u;
 * LLM: as reported by the verifier) plus channel time (channel.h) for every message:
 *   uplink at open:  prompt ids, n_prompt·⌈log2 V⌉ bits
 *   uplink/verify:   payload bits + (catch-up + 1 draft)·⌈log2 V⌉ bits
 *   downlink/verdict: ⌈log2 V⌉ + 1 bits (token, accepted flag). y[d], β and the LLM time in
 *                    a verdict are measurement side-channels and are not counted.
 *   llm mode: the prompt up at open, then ⌈log2 V⌉ bits down per token.
 * The shadow LLM (optional, device-side, untimed) evaluates y at skipped positions to give
 * the true skip rate and the would-be rejection of skipped tokens.
 *
 * Determinism: all draws are keyed by (seed, stream, position) (verify.h), so a seed fixes
 * the output for every mode, thread count and batching. */
#ifndef UHLM_DEVICE_H
#define UHLM_DEVICE_H

#include "channel.h"
#include "common.h"
#include "model.h"
#include "payload.h"
#include "policy.h"
#include "sampler.h"
#include "uncertainty.h"
#include "verifier.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_device_params {
    uhlm_policy policy;
    uhlm_sampling sampling;
    uhlm_payload_spec payload;
    uhlm_unc_params unc;
    uhlm_channel_params channel;
    int n_gen;    /* tokens to generate at most, >= 0 */
    int record_u; /* compute u in every mode (calibration); charged to unc time */
} uhlm_device_params;

/* uhlm mode, u_th 0.2, skip_prob 0.5, temp 1 (no top-k/top-p), f32, perturb M=20 θ=2,
 * channel defaults, n_gen 256. */
UHLM_API uhlm_device_params uhlm_device_default_params(void);

/* One token's record, passed to the callback as soon as the token is final. */
typedef struct uhlm_token_event {
    int pos;     /* absolute position of the token */
    int index;   /* 0-based among generated tokens */
    int draft;   /* -1 in llm mode */
    int token;   /* final */
    double u;    /* NaN when not computed */
    int skipped; /* the policy skipped (or the verifier was unavailable) */
    int verified;
    int accepted; /* verified and accepted */
    double x_d;   /* x̃[d] */
    double y_d,
        beta;   /* verified: from the verifier; skipped with a shadow: from the shadow; else NaN */
    int have_y; /* y_d/beta are meaningful */
    int n_catchup; /* catch-up tokens sent with this request */
    uint64_t up_bits, down_bits;
    double slm_s, unc_s, llm_s, link_s;
    /* verified (hybrid modes): the verifier's verdict as it came, the one verdict type of
     * every layer (verify.h); accepted, y_d and beta above are the device's view of the
     * token, which for a skipped one come from the shadow. Zero when not verified. */
    uhlm_verdict verdict;
} uhlm_token_event;

typedef void (*uhlm_token_cb)(void *user, const uhlm_token_event *ev);

typedef struct uhlm_device_stats {
    int prompt_tokens;
    int generated;   /* tokens produced, EOS included */
    int transmitted; /* verification requests (drafts sent); llm mode: tokens generated */
    int skipped;
    int accepted, rejected;
    int accepted_outright; /* verified with y[d] >= x[d] */
    int unverified;        /* the verifier was unavailable: kept unverified */
    int catchup_tokens;    /* skipped-token ids sent as catch-up */
    int llm_forward_calls; /* verifier forwards, prompt prefill included */
    int llm_batch_tokens;  /* tokens through those forwards */
    uint64_t uplink_bits, downlink_bits;
    uint64_t uplink_msgs, downlink_msgs;
    double slm_s, unc_s, llm_s; /* measured compute */
    double up_s, down_s;        /* accounted link time */
    double verify_wall_s;       /* wall time inside verifier calls (remote: includes the network) */
    double wall_s;              /* wall time of start + steps, the shadow excluded */
    int n_u;
    double sum_u;
    double sum_beta; /* over verified tokens */
    /* shadow (skipped tokens only) */
    int shadow_evaluated;
    int shadow_true_skips;  /* y[d] >= x[d] */
    double shadow_beta_sum; /* expected rejections had they been sent */
    const char *stop;       /* "length", "eos", "context", "cancelled", or NULL while running */
} uhlm_device_stats;

/* Derived numbers (0 when undefined). */
UHLM_API double uhlm_stats_tr(const uhlm_device_stats *s);             /* transmitted / generated */
UHLM_API double uhlm_stats_rejection_rate(const uhlm_device_stats *s); /* rejected / transmitted */
UHLM_API double uhlm_stats_tsr(const uhlm_device_stats *s);            /* shadow true skips / evaluated */
UHLM_API double uhlm_stats_compute_s(const uhlm_device_stats *s);      /* slm + unc + llm */
UHLM_API double uhlm_stats_accounted_s(const uhlm_device_stats *s);    /* compute + link */

typedef struct uhlm_device uhlm_device;

/* slm: the device model's context (sequence slm_seq; borrowed; may be NULL in llm mode).
 * v: the verifier (borrowed; may be NULL in slm mode). shadow: an optional LLM context
 * (sequence 0, borrowed) for --shadow. Refuses a vocabulary mismatch between the SLM, the
 * verifier and the shadow (size, and tokenizer fingerprint where both are known). */
UHLM_API uhlm_device *uhlm_device_new(uhlm_ctx *slm, int slm_seq, uhlm_verifier *v, uhlm_ctx *shadow,
                             const uhlm_device_params *p, uhlm_error *err);
UHLM_API void uhlm_device_free(uhlm_device *d);
UHLM_API void uhlm_device_set_callback(uhlm_device *d, uhlm_token_cb cb, void *user);
/* Polled before each token by uhlm_device_step (and so uhlm_device_run): nonzero stops there
 * with UHLM_CANCELLED and stats.stop "cancelled"; a later step resumes if it answers 0. NULL
 * (the default) never cancels. */
UHLM_API void uhlm_device_set_cancel(uhlm_device *d, uhlm_cancel_fn fn, void *user);

/* Starts a generation: resets the stats and the channel, closes any open verifier session,
 * prefills the SLM with the prompt (reusing its cached common prefix). prompt[0] is usually
 * BOS. */
UHLM_API int uhlm_device_start(uhlm_device *d, const int *prompt, int n_prompt, uint64_t seed,
                      uhlm_error *err);
/* One token: 1 (written to *token), 0 when generation has ended (stats.stop says why), -1 on
 * error, UHLM_CANCELLED when the cancel callback asked to stop. */
UHLM_API int uhlm_device_step(uhlm_device *d, int *token, uhlm_error *err);
/* Runs steps to the end. Returns the number of generated tokens, -1 or UHLM_CANCELLED. */
UHLM_API int uhlm_device_run(uhlm_device *d, uhlm_error *err);
/* Closes the verifier session (also done by start and free). */
UHLM_API void uhlm_device_finish(uhlm_device *d);

UHLM_API const uhlm_device_stats *uhlm_device_get_stats(const uhlm_device *d);
/* The device sequence: prompt then generated tokens. */
UHLM_API const int *uhlm_device_tokens(const uhlm_device *d, int *n);
/* How many leading tokens of that sequence the verifier has committed (0 if never opened). */
UHLM_API int uhlm_device_n_sent(const uhlm_device *d);
UHLM_API int uhlm_device_n_ctx(const uhlm_device *d);

/* A run's parameters and statistics as values, for reports (the CLI renders them as JSON).
 * Self-contained: it stays valid after the device is freed. */
typedef struct uhlm_device_report {
    uhlm_device_params params;
    uhlm_device_stats stats;
    char slm[256]; /* the SLM file's base name; "" without an SLM */
    char llm[256]; /* the verifier's model name; "" without a verifier */
    int n_vocab;
    uint64_t seed;   /* as given to uhlm_device_start */
    int has_shadow;  /* a shadow LLM evaluated the skipped tokens (stats.shadow_*) */
} uhlm_device_report;

UHLM_API void uhlm_device_get_report(const uhlm_device *d, uhlm_device_report *out);
/* One line for stderr. */
UHLM_API int uhlm_device_stats_line(const uhlm_device *d, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
