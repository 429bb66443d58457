/* device.c: the device loop and its accounting (device.h). */
#include "uhlm/device.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/engine.h" /* uhlm_seq_reuse_prefix: the one prefix-reuse rule */
#include "uhlm/tokenizer.h"
#include "uhlm/verify.h"

struct uhlm_device {
    uhlm_ctx *slm, *shadow;
    int seq;
    uhlm_verifier *v;
    uhlm_verifier_info vinfo;
    int have_vinfo;
    uhlm_device_params p;
    int n_vocab, n_ctx, ib, greedy;
    uhlm_unc *unc;
    uhlm_channel ch;
    uint64_t seed, s_draft, s_unc, s_policy, s_verify, s_llm;
    int *tokens; /* n_ctx */
    int n_tok, n_prompt, n_sent, opened, started, done;
    int prompt_charged; /* the prompt's uplink bits: charged with the first delivered request */
    float *logits, *x, *xt, *ysh, *shlogits; /* n_vocab each */
    uint8_t *enc;
    size_t enc_cap;
    uhlm_batch_entry *batch; /* n_ctx */
    uhlm_device_stats st;
    uhlm_token_cb cb;
    void *user;
    uhlm_cancel_fn cancel;
    void *cancel_user;
    char slm_name[256];
};

uhlm_device_params uhlm_device_default_params(void) {
    uhlm_device_params p;
    memset(&p, 0, sizeof p);
    p.policy = (uhlm_policy){UHLM_MODE_UHLM, 0.2, 0.5};
    p.sampling = (uhlm_sampling){1.0f, 0, 1.0f};
    p.payload = (uhlm_payload_spec){UHLM_PAYLOAD_F32, 0, 0};
    p.unc = uhlm_unc_default_params();
    p.channel = uhlm_channel_default_params();
    p.n_gen = 256;
    p.record_u = 0;
    return p;
}

double uhlm_stats_tr(const uhlm_device_stats *s) {
    return s->generated ? (double)s->transmitted / s->generated : 0.0;
}
double uhlm_stats_rejection_rate(const uhlm_device_stats *s) {
    return s->transmitted ? (double)s->rejected / s->transmitted : 0.0;
}
double uhlm_stats_tsr(const uhlm_device_stats *s) {
    return s->shadow_evaluated ? (double)s->shadow_true_skips / s->shadow_evaluated : 0.0;
}
double uhlm_stats_compute_s(const uhlm_device_stats *s) { return s->slm_s + s->unc_s + s->llm_s; }
double uhlm_stats_accounted_s(const uhlm_device_stats *s) {
    return uhlm_stats_compute_s(s) + s->up_s + s->down_s;
}

static const char *base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

static uint64_t model_fingerprint(const uhlm_model *m) {
    return uhlm_model_tokenizer(m) ? uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(m)) : 0;
}

uhlm_device *uhlm_device_new(uhlm_ctx *slm, int slm_seq, uhlm_verifier *v, uhlm_ctx *shadow,
                             const uhlm_device_params *p, uhlm_error *err) {
    uhlm_mode mode = p->policy.mode;
    if (uhlm_policy_check(&p->policy, err) || uhlm_sampling_check(&p->sampling, err) ||
        uhlm_unc_params_check(&p->unc, err) || uhlm_channel_params_check(&p->channel, err))
        return NULL;
    if (p->n_gen < 0) {
        uhlm_set_error(err, "device: n_gen %d", p->n_gen);
        return NULL;
    }
    if (mode != UHLM_MODE_LLM && !slm) {
        uhlm_set_error(err, "device: mode %s needs an SLM", uhlm_mode_name(mode));
        return NULL;
    }
    if (mode != UHLM_MODE_SLM && !v) {
        uhlm_set_error(err, "device: mode %s needs a verifier", uhlm_mode_name(mode));
        return NULL;
    }
    if (slm && (slm_seq < 0 || slm_seq >= uhlm_ctx_n_seq(slm))) {
        uhlm_set_error(err, "device: SLM sequence %d outside the context's %d", slm_seq,
                       uhlm_ctx_n_seq(slm));
        return NULL;
    }
    uhlm_device *d = calloc(1, sizeof *d);
    if (!d) {
        uhlm_set_error(err, "device: out of memory");
        return NULL;
    }
    d->slm = slm;
    d->seq = slm_seq;
    d->v = v;
    d->shadow = mode == UHLM_MODE_LLM ? NULL : shadow;
    d->p = *p;
    d->greedy = p->sampling.temp == 0.0f;
    if (v) {
        if (uhlm_verifier_info_get(v, &d->vinfo, err) != 0) goto fail;
        d->have_vinfo = 1;
    }
    const uhlm_model *sm = slm ? uhlm_ctx_model(slm) : NULL;
    d->n_vocab = sm ? uhlm_model_config(sm)->vocab_size : d->vinfo.n_vocab;
    d->n_ctx = slm ? uhlm_ctx_n_ctx(slm) : d->vinfo.n_ctx;
    snprintf(d->slm_name, sizeof d->slm_name, "%.255s", sm ? base_name(uhlm_model_path(sm)) : "");
    uint64_t fp = sm ? model_fingerprint(sm) : d->vinfo.fingerprint;
    if (d->have_vinfo) {
        if (d->vinfo.n_vocab != d->n_vocab ||
            (fp && d->vinfo.fingerprint && fp != d->vinfo.fingerprint)) {
            uhlm_set_error(err,
                           "vocabulary mismatch: the SLM has %d tokens (fingerprint %016llx), the "
                           "LLM %s has %d (fingerprint %016llx); both models must share one "
                           "vocabulary",
                           d->n_vocab, (unsigned long long)fp, d->vinfo.model, d->vinfo.n_vocab,
                           (unsigned long long)d->vinfo.fingerprint);
            goto fail;
        }
        /* a remote server's context bounds what it verifies, not the SLM's run: a server that
         * advertises a context too small for the prompt must not make every run fail */
        if (d->vinfo.n_ctx < d->n_ctx && !(slm && d->vinfo.ctx_fallback))
            d->n_ctx = d->vinfo.n_ctx;
    }
    if (d->shadow) {
        const uhlm_model *shm = uhlm_ctx_model(d->shadow);
        uint64_t sfp = model_fingerprint(shm);
        if (uhlm_model_config(shm)->vocab_size != d->n_vocab || (fp && sfp && fp != sfp)) {
            uhlm_set_error(err, "vocabulary mismatch: the shadow LLM has %d tokens, the SLM %d",
                           uhlm_model_config(shm)->vocab_size, d->n_vocab);
            goto fail;
        }
        if (uhlm_ctx_n_ctx(d->shadow) < d->n_ctx) d->n_ctx = uhlm_ctx_n_ctx(d->shadow);
    }
    if (uhlm_payload_check(&p->payload, d->n_vocab, err) != 0) goto fail;
    d->ib = uhlm_token_bits(d->n_vocab);
    size_t V = (size_t)d->n_vocab, C = (size_t)d->n_ctx;
    d->enc_cap = uhlm_payload_bytes(&p->payload, d->n_vocab);
    d->tokens = malloc(sizeof(int) * C);
    d->batch = malloc(sizeof(uhlm_batch_entry) * C);
    d->logits = malloc(sizeof(float) * V);
    d->x = malloc(sizeof(float) * V);
    d->xt = malloc(sizeof(float) * V);
    d->ysh = malloc(sizeof(float) * V);
    d->shlogits = malloc(sizeof(float) * V);
    d->enc = malloc(d->enc_cap ? d->enc_cap : 1);
    if (!d->tokens || !d->batch || !d->logits || !d->x || !d->xt || !d->ysh || !d->shlogits ||
        !d->enc) {
        uhlm_set_error(err, "device: out of memory (vocabulary %zu, context %zu)", V, C);
        goto fail;
    }
    if (mode != UHLM_MODE_LLM && !(d->unc = uhlm_unc_new(d->n_vocab, &p->unc, err))) goto fail;
    return d;
fail:
    uhlm_device_free(d);
    return NULL;
}

void uhlm_device_finish(uhlm_device *d) {
    if (d->opened && d->v) uhlm_verifier_close(d->v);
    d->opened = 0;
}

void uhlm_device_free(uhlm_device *d) {
    if (!d) return;
    uhlm_device_finish(d);
    uhlm_unc_free(d->unc);
    free(d->tokens);
    free(d->batch);
    free(d->logits);
    free(d->x);
    free(d->xt);
    free(d->ysh);
    free(d->shlogits);
    free(d->enc);
    free(d);
}

void uhlm_device_set_callback(uhlm_device *d, uhlm_token_cb cb, void *user) {
    d->cb = cb;
    d->user = user;
}

void uhlm_device_set_cancel(uhlm_device *d, uhlm_cancel_fn fn, void *user) {
    d->cancel = fn;
    d->cancel_user = user;
}

const uhlm_device_stats *uhlm_device_get_stats(const uhlm_device *d) { return &d->st; }
const int *uhlm_device_tokens(const uhlm_device *d, int *n) {
    *n = d->n_tok;
    return d->tokens;
}
int uhlm_device_n_sent(const uhlm_device *d) { return d->opened ? d->n_sent : 0; }
int uhlm_device_n_ctx(const uhlm_device *d) { return d->n_ctx; }

/* Brings ctx's sequence to prompt with logits for its last token, keeping the cached common
 * prefix (so repeated runs on one prompt cost one token). */
static int prefill(uhlm_device *d, uhlm_ctx *ctx, int seq, const int *prompt, int n, float *out,
                   uhlm_error *err) {
    int lcp = uhlm_seq_reuse_prefix(ctx, seq, prompt, n, err);
    if (lcp < 0) return -1;
    int m = 0;
    for (int i = lcp; i < n; i++) d->batch[m++] = (uhlm_batch_entry){seq, i, prompt[i], i == n - 1};
    return uhlm_decode(ctx, d->batch, m, out, NULL, err);
}

int uhlm_device_start(uhlm_device *d, const int *prompt, int n_prompt, uint64_t seed,
                      uhlm_error *err) {
    uhlm_device_finish(d);
    d->started = d->done = d->prompt_charged = 0;
    if (n_prompt < 1 || !prompt) return uhlm_set_error(err, "device: empty prompt");
    if (n_prompt > d->n_ctx)
        return uhlm_set_error(err, "device: prompt is %d tokens, the context holds %d", n_prompt,
                              d->n_ctx);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= d->n_vocab)
            return uhlm_set_error(err, "device: prompt token %d is %d, outside [0, %d)", i,
                                  prompt[i], d->n_vocab);
    double w0 = uhlm_now();
    memset(&d->st, 0, sizeof d->st);
    memcpy(d->tokens, prompt, sizeof(int) * (size_t)n_prompt);
    d->n_tok = d->n_prompt = n_prompt;
    d->n_sent = 0;
    d->st.prompt_tokens = n_prompt;
    d->seed = seed;
    d->s_draft = uhlm_hybrid_stream_seed(seed, UHLM_STREAM_DRAFT);
    d->s_unc = uhlm_hybrid_stream_seed(seed, UHLM_STREAM_UNC);
    d->s_policy = uhlm_hybrid_stream_seed(seed, UHLM_STREAM_POLICY);
    d->s_verify = uhlm_hybrid_stream_seed(seed, UHLM_STREAM_VERIFY);
    d->s_llm = uhlm_hybrid_stream_seed(seed, UHLM_STREAM_LLM);
    uhlm_channel_init(&d->ch, &d->p.channel, seed);
    if (d->p.policy.mode != UHLM_MODE_LLM) {
        double t = uhlm_now();
        if (prefill(d, d->slm, d->seq, prompt, n_prompt, d->logits, err) != 0) return -1;
        d->st.slm_s += uhlm_now() - t;
    }
    double shadow_s = 0.0;
    if (d->shadow) {
        double t = uhlm_now();
        if (prefill(d, d->shadow, 0, prompt, n_prompt, d->shlogits, err) != 0) return -1;
        shadow_s = uhlm_now() - t;
    }
    d->started = 1;
    d->st.wall_s = uhlm_now() - w0 - shadow_s;
    return 0;
}

/* Opens the verifier session with the prompt on first need. 0, UNAVAILABLE or -1. */
static int ensure_open(uhlm_device *d, uhlm_error *err) {
    if (d->opened) return 0;
    uhlm_opened o;
    int rc = uhlm_verifier_open(d->v, d->tokens, d->n_prompt, &d->p.sampling, d->seed, &o, err);
    if (rc != 0) return rc;
    d->opened = 1;
    d->n_sent = d->n_prompt;
    d->st.llm_s += o.llm_s;
    d->st.llm_forward_calls += o.forward_calls;
    d->st.llm_batch_tokens += o.batch_tokens;
    return 0;
}

/* A remote verifier's open() sends nothing (the prompt travels with the first request), and a
 * server that is never reached never gets the prompt: its bits are charged once a request went
 * through, so the stats never show uplink bits that did not go out. */
static void charge_prompt(uhlm_device *d) {
    if (d->prompt_charged) return;
    d->prompt_charged = 1;
    uhlm_channel_send_up(&d->ch, (uint64_t)d->n_prompt * (uint64_t)d->ib);
}

static void sync_channel_stats(uhlm_device *d) {
    d->st.up_s = d->ch.up_s;
    d->st.down_s = d->ch.down_s;
    d->st.uplink_bits = d->ch.up_bits;
    d->st.downlink_bits = d->ch.down_bits;
    d->st.uplink_msgs = d->ch.up_msgs;
    d->st.downlink_msgs = d->ch.down_msgs;
}

/* llm mode with the server unreachable: the SLM generates this token instead, unverified.
 * Its cache is brought up to the device sequence first (only the tokens it has not seen
 * since its last use), and the draw uses the DRAFT stream at this position, as slm mode does.
 * The token stays pending, so the next GENERATE sends it as catch-up: nothing is lost or
 * duplicated when the server comes back. */
static int step_llm_fallback(uhlm_device *d, int pos, uhlm_token_event *ev, uhlm_error *err) {
    if (!d->slm)
        return uhlm_set_error(err, "llm mode: the verifier is unavailable and there is no SLM "
                                   "to fall back on");
    double t = uhlm_now();
    if (prefill(d, d->slm, d->seq, d->tokens, d->n_tok, d->logits, err) != 0) return -1;
    int am = uhlm_sampling_probs(&d->p.sampling, d->logits, d->n_vocab, d->x);
    if (am < 0) return uhlm_set_error(err, "device: out of memory");
    int tok = am;
    if (!d->greedy) {
        uhlm_rng rng;
        uhlm_hybrid_rng(&rng, d->s_draft, (uint64_t)pos);
        tok = uhlm_sample_weights(d->x, d->n_vocab, &rng);
        if (tok < 0) return uhlm_set_error(err, "device: x has no mass");
    }
    ev->slm_s = uhlm_now() - t;
    d->st.slm_s += ev->slm_s;
    ev->draft = tok;
    ev->token = tok;
    ev->skipped = 1;
    d->st.skipped++;
    d->st.unverified++;
    return 0;
}

static int step_llm(uhlm_device *d, int pos, uhlm_token_event *ev, uhlm_error *err) {
    int rc = ensure_open(d, err);
    if (rc == UHLM_VERIFIER_UNAVAILABLE) return step_llm_fallback(d, pos, ev, err);
    if (rc != 0) return -1;
    uhlm_generate_req r = {d->tokens + d->n_sent, d->n_tok - d->n_sent, 1, 1, d->s_llm};
    uhlm_generated g;
    int tok;
    double t = uhlm_now();
    rc = uhlm_verifier_generate(d->v, &r, &tok, &g, err);
    d->st.verify_wall_s += uhlm_now() - t;
    if (rc == UHLM_VERIFIER_UNAVAILABLE) return step_llm_fallback(d, pos, ev, err);
    if (rc != 0) return -1;
    /* charged once the request went through: a request to an unreachable server sent nothing */
    charge_prompt(d);
    if (r.n_catchup > 0) {
        ev->up_bits = (uint64_t)r.n_catchup * (uint64_t)d->ib;
        ev->link_s += uhlm_channel_send_up(&d->ch, ev->up_bits);
    }
    if (g.n != 1) return uhlm_set_error(err, "llm mode: the verifier generated %d tokens", g.n);
    d->st.catchup_tokens += r.n_catchup;
    d->st.llm_s += g.llm_s;
    d->st.llm_forward_calls += g.forward_calls;
    d->st.llm_batch_tokens += g.batch_tokens;
    d->st.transmitted++;
    ev->down_bits = (uint64_t)d->ib;
    ev->link_s += uhlm_channel_send_down(&d->ch, ev->down_bits);
    ev->llm_s = g.llm_s;
    ev->n_catchup = r.n_catchup;
    ev->token = tok;
    ev->verified = 1;
    d->n_sent = pos + 1;
    return 0;
}

static int step_hybrid(uhlm_device *d, int pos, uhlm_token_event *ev, double *shadow_s,
                       uhlm_error *err) {
    uhlm_rng rng;
    double t = uhlm_now();
    int am = uhlm_sampling_probs(&d->p.sampling, d->logits, d->n_vocab, d->x);
    if (am < 0) return uhlm_set_error(err, "device: out of memory");
    int draft;
    long enc_len = 0;
    if (d->greedy) {
        memcpy(d->xt, d->x, sizeof(float) * (size_t)d->n_vocab);
        draft = am;
    } else {
        enc_len = uhlm_payload_encode(&d->p.payload, d->x, d->n_vocab, d->enc, d->enc_cap, err);
        if (enc_len < 0) return -1;
        if (uhlm_payload_decode(&d->p.payload, d->enc, (size_t)enc_len, d->n_vocab, d->xt, err))
            return -1;
        uhlm_hybrid_rng(&rng, d->s_draft, (uint64_t)pos);
        draft = uhlm_sample_weights(d->xt, d->n_vocab, &rng);
        if (draft < 0) return uhlm_set_error(err, "device: x̃ has no mass");
    }
    ev->slm_s = uhlm_now() - t;
    d->st.slm_s += ev->slm_s;
    ev->draft = draft;
    ev->x_d = d->xt[draft];

    if (uhlm_policy_needs_u(&d->p.policy) || d->p.record_u) {
        t = uhlm_now();
        uhlm_hybrid_rng(&rng, d->s_unc, (uint64_t)pos);
        if (uhlm_unc_compute(d->unc, d->logits, draft, &rng, &ev->u, err) != 0) return -1;
        ev->unc_s = uhlm_now() - t;
        d->st.unc_s += ev->unc_s;
        d->st.n_u++;
        d->st.sum_u += ev->u;
    }
    uhlm_hybrid_rng(&rng, d->s_policy, (uint64_t)pos);
    int skip = uhlm_policy_skip(&d->p.policy, ev->u, &rng);
    int token = draft;
    if (!skip) {
        int rc = ensure_open(d, err);
        if (rc < 0) return -1;
        if (rc == 0) {
            uhlm_verify_req r = {d->tokens + d->n_sent,
                                 d->n_tok - d->n_sent,
                                 draft,
                                 d->p.payload,
                                 d->greedy ? NULL : d->enc,
                                 d->greedy ? 0 : (size_t)enc_len,
                                 d->s_verify};
            uint64_t bits = (d->greedy ? 0 : uhlm_payload_bits(&d->p.payload, d->n_vocab)) +
                            (uint64_t)(r.n_catchup + 1) * (uint64_t)d->ib;
            /* the prompt goes first (its channel draw comes before the request's, as the
             * replay in eval.h assumes); both are taken back if the request fails */
            int prompt_now = !d->prompt_charged;
            uint64_t pbits = prompt_now ? (uint64_t)d->n_prompt * (uint64_t)d->ib : 0;
            charge_prompt(d);
            double link = uhlm_channel_send_up(&d->ch, bits);
            uhlm_verdict vd;
            t = uhlm_now();
            rc = uhlm_verifier_verify(d->v, &r, &vd, err);
            d->st.verify_wall_s += uhlm_now() - t;
            if (rc < 0) return -1;
            ev->link_s += link;
            if (rc != 0) {
                /* the device spent the link time before it learnt the server was gone, but
                 * the request never reached it: the stats show no uplink bits for it */
                d->ch.up_bits -= bits + pbits;
                d->ch.up_msgs -= 1u + (unsigned)prompt_now;
                d->prompt_charged = !prompt_now && d->prompt_charged;
            }
            if (rc == 0) {
                ev->up_bits = bits;
                ev->down_bits = (uint64_t)d->ib + 1;
                ev->link_s += uhlm_channel_send_down(&d->ch, ev->down_bits);
                token = vd.token;
                ev->verdict = vd;
                ev->verified = 1;
                ev->accepted = vd.accepted;
                ev->y_d = vd.y_d;
                ev->beta = vd.beta;
                ev->have_y = 1;
                ev->llm_s = (double)vd.cost.llm_ns * 1e-9;
                ev->n_catchup = r.n_catchup;
                d->st.transmitted++;
                d->st.catchup_tokens += r.n_catchup;
                d->st.llm_s += ev->llm_s;
                d->st.llm_forward_calls += (int)vd.cost.forward_calls;
                d->st.llm_batch_tokens += (int)vd.cost.seq_tokens;
                d->st.accepted += vd.accepted;
                d->st.rejected += !vd.accepted;
                d->st.accepted_outright += vd.y_ge_x;
                d->st.sum_beta += vd.beta;
                d->n_sent = pos + 1;
            }
        }
        if (rc == UHLM_VERIFIER_UNAVAILABLE) d->st.unverified++;
    }
    if (!ev->verified) {
        ev->skipped = 1;
        d->st.skipped++;
        if (d->shadow) {
            /* what the LLM would have said about this skipped draft; untimed */
            t = uhlm_now();
            if (uhlm_sampling_probs(&d->p.sampling, d->shlogits, d->n_vocab, d->ysh) < 0)
                return uhlm_set_error(err, "device: out of memory");
            double yd = d->ysh[draft], xd = ev->x_d;
            ev->y_d = yd;
            ev->beta = yd >= xd ? 0.0 : 1.0 - yd / xd;
            ev->have_y = 1;
            d->st.shadow_evaluated++;
            d->st.shadow_true_skips += yd >= xd;
            d->st.shadow_beta_sum += ev->beta;
            *shadow_s += uhlm_now() - t;
        }
    }
    ev->token = token;
    return 0;
}

int uhlm_device_step(uhlm_device *d, int *token, uhlm_error *err) {
    if (!d->started) return uhlm_set_error(err, "device: step before start");
    if (d->done) return 0;
    int pos = d->n_tok;
    if (d->st.generated >= d->p.n_gen || pos >= d->n_ctx) {
        d->st.stop = d->st.generated >= d->p.n_gen ? "length" : "context";
        d->done = 1;
        return 0;
    }
    if (d->cancel && d->cancel(d->cancel_user)) {
        d->st.stop = "cancelled";
        uhlm_set_error(err, "device: cancelled after %d tokens", d->st.generated);
        return UHLM_CANCELLED;
    }
    d->st.stop = NULL; /* resumed after a cancel */
    double w0 = uhlm_now(), shadow_s = 0.0;
    uhlm_token_event ev;
    memset(&ev, 0, sizeof ev);
    ev.pos = pos;
    ev.index = d->st.generated;
    ev.draft = -1;
    ev.u = ev.y_d = ev.beta = NAN;
    ev.x_d = NAN;
    int rc = d->p.policy.mode == UHLM_MODE_LLM ? step_llm(d, pos, &ev, err)
                                               : step_hybrid(d, pos, &ev, &shadow_s, err);
    if (rc != 0) {
        d->done = 1;
        return -1;
    }
    int tok = ev.token;
    d->tokens[d->n_tok++] = tok;
    d->st.generated++;
    if (uhlm_tokenizer_is_eog(d->slm ? uhlm_model_tokenizer(uhlm_ctx_model(d->slm)) : NULL, tok)) {
        d->st.stop = "eos";
        d->done = 1;
    } else if (d->st.generated < d->p.n_gen && d->n_tok < d->n_ctx &&
               d->p.policy.mode != UHLM_MODE_LLM) {
        /* the final token (the verdict's, if it replaced the draft) enters the SLM's cache */
        uhlm_batch_entry e = {d->seq, pos, tok, 1};
        double t = uhlm_now();
        if (uhlm_decode(d->slm, &e, 1, d->logits, NULL, err) != 0) {
            d->done = 1;
            return -1;
        }
        double dt = uhlm_now() - t;
        ev.slm_s += dt;
        d->st.slm_s += dt;
        if (d->shadow) {
            e.seq = 0;
            t = uhlm_now();
            if (uhlm_decode(d->shadow, &e, 1, d->shlogits, NULL, err) != 0) {
                d->done = 1;
                return -1;
            }
            shadow_s += uhlm_now() - t;
        }
    }
    sync_channel_stats(d);
    d->st.wall_s += uhlm_now() - w0 - shadow_s;
    if (d->cb) d->cb(d->user, &ev);
    *token = tok;
    return 1;
}

int uhlm_device_run(uhlm_device *d, uhlm_error *err) {
    int tok, rc;
    while ((rc = uhlm_device_step(d, &tok, err)) == 1) {
    }
    return rc == UHLM_CANCELLED ? UHLM_CANCELLED : rc < 0 ? -1 : d->st.generated;
}

void uhlm_device_get_report(const uhlm_device *d, uhlm_device_report *out) {
    out->params = d->p;
    out->stats = d->st;
    snprintf(out->slm, sizeof out->slm, "%s", d->slm_name);
    snprintf(out->llm, sizeof out->llm, "%.255s", d->have_vinfo ? d->vinfo.model : "");
    out->n_vocab = d->n_vocab;
    out->seed = d->seed;
    out->has_shadow = d->shadow != NULL;
}

static double ratio(double a, double b) { return b > 0.0 ? a / b : 0.0; }

int uhlm_device_stats_line(const uhlm_device *d, char *buf, size_t cap) {
    const uhlm_device_stats *s = &d->st;
    char tsr[64] = "";
    if (d->shadow)
        snprintf(tsr, sizeof tsr, " tsr %.3f would-reject %.3f", uhlm_stats_tsr(s),
                 ratio(s->shadow_beta_sum, s->shadow_evaluated));
    return snprintf(buf, cap,
                    "uhlm run: mode %s, %d tokens (stop: %s), TR %.3f (%d sent, %d skipped), "
                    "rejections %d, catch-up %d, LLM calls %d, uplink %.1f kB, "
                    "compute %.3f s (slm %.3f, u %.4f, llm %.3f), link %.3f s, "
                    "%.1f tok/s accounted, %.1f tok/s compute%s",
                    uhlm_mode_name(d->p.policy.mode), s->generated, s->stop ? s->stop : "running",
                    uhlm_stats_tr(s), s->transmitted, s->skipped, s->rejected, s->catchup_tokens,
                    s->llm_forward_calls, (double)s->uplink_bits / 8000.0, uhlm_stats_compute_s(s),
                    s->slm_s, s->unc_s, s->llm_s, s->up_s + s->down_s,
                    ratio(s->generated, uhlm_stats_accounted_s(s)),
                    ratio(s->generated, uhlm_stats_compute_s(s)), tsr);
}
