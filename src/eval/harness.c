/* harness.c: the runs of the evaluation harness: one configuration on one prompt, on every
 * prompt (a set), and the fixed plan of sets of `uhlm eval` (harness.h). */
#include "eval/harness_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/strbuf.h"
#include "uhlm/chat.h"
#include "uhlm/hybrid.h"
#include "uhlm/tokenizer.h"

/* ---- small pieces ---- */

int uhlm_eval_check_pair(const uhlm_model *slm, const uhlm_model *llm, uhlm_error *err) {
    if (uhlm_model_config(slm)->vocab_size == uhlm_model_config(llm)->vocab_size &&
        uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(slm)) == uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(llm)))
        return 0;
    return uhlm_set_error(err,
                          "vocabulary mismatch: the SLM %s has %d tokens, the LLM %s has %d%s; "
                          "both models must share one vocabulary",
                          uhlm_model_path(slm), uhlm_model_config(slm)->vocab_size, uhlm_model_path(llm), uhlm_model_config(llm)->vocab_size,
                          uhlm_model_config(slm)->vocab_size == uhlm_model_config(llm)->vocab_size ? " but different pieces"
                                                                     : "");
}

uint64_t uhlm_eval_rep_mix(int rep) {
    if (rep == 0) return 0;
    /* splitmix64 of the repetition: far from 0 and from each other */
    uint64_t z = (uint64_t)rep * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t uhlm_eval_prompt_seed(uint64_t seed, const char *id) {
    uint64_t h = uhlm_fnv1a(UHLM_FNV_INIT, &seed, sizeof seed);
    return uhlm_fnv1a(h, id, strlen(id));
}

int uhlm_eval_prompt_tokens(const uhlm_model *m, int chat, const char *text, int *ids, int cap,
                            uhlm_error *err) {
    if (chat) return uhlm_chat_tokenize(m, NULL, text, ids, cap, err);
    return uhlm_tokenize(uhlm_model_tokenizer(m), text, strlen(text), uhlm_tokenizer_add_bos(uhlm_model_tokenizer(m)), 0, ids, cap,
                         err);
}

int uhlm_eval_load_prompts(const char *path, uint64_t max_bytes, double split,
                           uhlm_prompt_set *out, uhlm_error *err) {
    uhlm_prompt_set all = {0};
    *out = (uhlm_prompt_set){0};
    if (uhlm_prompts_load_max(path, max_bytes, &all, err) != 0) return -1;
    if (split < 0) {
        *out = all;
        return 0;
    }
    int rc = uhlm_prompts_split(&all, split, 0, out, err);
    uhlm_prompts_free(&all);
    if (rc != 0) return -1;
    if (out->n == 0) {
        uhlm_prompts_free(out);
        return uhlm_set_error(err, "the held-out part of --split %g is empty", split);
    }
    return 0;
}

uhlm_eval_opts uhlm_eval_default_opts(void) {
    uhlm_eval_opts o;
    memset(&o, 0, sizeof o);
    o.base = uhlm_device_default_params();
    o.base.n_gen = 64;
    for (int m = 0; m < UHLM_EVAL_N_MODES; m++) o.want[m] = 1;
    o.u_th = 0.2;
    o.skip_prob = NAN;
    static const double snr[] = {-10, -5, 0, 5, 10, 20, 30};
    o.n_snr = (int)(sizeof snr / sizeof *snr);
    memcpy(o.snr, snr, sizeof snr);
    static const double q[] = {0.2, 0.4, 0.6, 0.8};
    o.n_sweep = (int)(sizeof q / sizeof *q);
    memcpy(o.sweep_q, q, sizeof q);
    o.sweep_snr = 0.0;
    o.greedy = 1;
    o.n_threads = 1;
    o.n_reps = 1;
    o.n_boot = UHLM_EVAL_BOOTSTRAP_DEFAULT;
    o.seed = 42;
    o.threshold_source = "--uth";
    o.temperature = o.base.sampling.temp;
    return o;
}

int uhlm_eval_opts_check(const uhlm_eval_opts *o, uhlm_error *err) {
    if (uhlm_channel_params_check(&o->base.channel, err) ||
        uhlm_sampling_check(&o->base.sampling, err))
        return -1;
    if (o->n_snr < 1 || o->n_snr > UHLM_EVAL_MAX_SNR)
        return uhlm_set_error(err, "%d SNR values (1 to %d)", o->n_snr, UHLM_EVAL_MAX_SNR);
    int on_grid = 0;
    for (int k = 0; k < o->n_snr; k++) on_grid |= o->snr[k] == o->sweep_snr;
    if (!on_grid && o->n_snr == UHLM_EVAL_MAX_SNR) return uhlm_set_error(err, "too many SNR values");
    if (o->n_reps < 1 || o->n_reps > UHLM_EVAL_MAX_REPS)
        return uhlm_set_error(err, "%d repetitions (1 to %d)", o->n_reps, UHLM_EVAL_MAX_REPS);
    if (o->n_boot < 0 || o->n_boot > 1000000)
        return uhlm_set_error(err, "%d bootstrap resamples (0 to 1000000)", o->n_boot);
    if (o->n_sweep < 0 || o->n_sweep > UHLM_EVAL_MAX_SWEEP ||
        o->n_sweep_methods < 0 || o->n_sweep_methods > UHLM_EVAL_MAX_METHODS)
        return uhlm_set_error(err, "too many sweep points or methods");
    return 0;
}

void uhlm_eval_set_free(uhlm_eval_set *s) {
    for (int i = 0; s->rec && i < s->n; i++) free(s->rec[i].tokens);
    free(s->rec);
    s->rec = NULL;
    s->n = 0;
}

void uhlm_eval_results_free(uhlm_eval_results *r) {
    for (int m = 0; m < UHLM_EVAL_N_MODES; m++) {
        uhlm_eval_set_free(&r->main[m]);
        uhlm_eval_set_free(&r->greedy[m]);
    }
    uhlm_eval_set_free(&r->llm_self);
    for (int s = 0; r->sweep && s < r->n_sweep; s++) {
        uhlm_eval_set_free(&r->sweep[s].u);
        uhlm_eval_set_free(&r->sweep[s].r);
    }
    free(r->sweep);
    memset(r, 0, sizeof *r);
}

/* ---- one run ---- */

static void on_token(void *user, const uhlm_token_event *ev) {
    uhlm_eval_harness *h = user;
    if (uhlm_msglog_event(&h->log, ev) != 0) h->oom = 1;
    uhlm_calib_sample smp;
    if (h->rec && uhlm_calib_sample_of_event(ev, &smp)) uhlm_calib_samples_push(h->rec, &smp);
}

/* Quality of a finished run: the embedding (into the reference slot for a reference set),
 * the cosine to the reference and the NLL under the LLM. */
static int run_quality(uhlm_eval_harness *h, const uhlm_eval_cfg *c, int i, size_t slot,
                       const int *all, int n_all, uhlm_eval_record *r, uhlm_error *err) {
    const int *gen = all + h->np[i];
    int ng = n_all - h->np[i];
    /* the embedding sees the text only: a final EOS is not part of it */
    int ne = ng > 0 && uhlm_tokenizer_is_eog(uhlm_model_tokenizer(h->slm), gen[ng - 1]) ? ng - 1 : ng;
    float *emb = c->reference ? h->ref_emb + slot * (size_t)h->D : h->emb;
    double sum;
    if ((h->o.hidden_cosine && uhlm_embed_tokens(h->qctx, gen, ne, emb, err) != 0) ||
        (ng > 0 && uhlm_sequence_nll(h->qctx, all, n_all, h->np[i], &sum, err) != 0))
        return eval_error_wrap(err, "quality of prompt %s", h->ps->items[i].id);
    if (ng > 0) {
        r->nll_sum = sum;
        r->nll_n = ng;
    }
    if (h->have_ref_emb && !c->reference) {
        r->cos = uhlm_cosine(emb, h->ref_emb + slot * (size_t)h->D, h->D);
        r->have_cos = 1;
    }
    return 0;
}

/* Exact and prefix match of a greedy run against the greedy reference. */
static void run_exact(uhlm_eval_harness *h, const uhlm_eval_cfg *c, size_t slot,
                      uhlm_eval_record *r) {
    r->have_exact = 1;
    if (c->reference) {
        r->exact = 1;
        r->prefix = 1.0;
        return;
    }
    const int *t = r->tokens, *ref = h->ref_greedy[slot];
    int n = r->n_tokens, rn = h->ref_greedy_n[slot], pre = 0;
    while (pre < n && pre < rn && t[pre] == ref[pre]) pre++;
    r->exact = pre == n && n == rn;
    r->prefix = (double)pre / (double)(rn > n ? (rn ? rn : 1) : (n ? n : 1));
}

/* Counts, compute and the link time replayed at every SNR. */
static void run_account(uhlm_eval_harness *h, const uhlm_device_params *p,
                        const uhlm_device_stats *s, uint64_t seed, uhlm_eval_record *r) {
    int needs_u = uhlm_policy_needs_u(&p->policy);
    r->generated = s->generated;
    r->transmitted = s->transmitted;
    r->skipped = s->skipped;
    r->rejected = s->rejected;
    r->accepted = s->accepted;
    r->outright = s->accepted_outright;
    r->catchup = s->catchup_tokens;
    r->llm_calls = s->llm_forward_calls;
    r->shadow_evaluated = s->shadow_evaluated;
    r->shadow_true = s->shadow_true_skips;
    r->shadow_beta_sum = s->shadow_beta_sum;
    r->up_bits = s->uplink_bits;
    r->down_bits = s->downlink_bits;
    r->slm_s = s->slm_s;
    r->unc_s = needs_u ? s->unc_s : 0.0;
    r->llm_s = s->llm_s;
    r->compute_s = s->slm_s + s->llm_s + (needs_u ? s->unc_s : 0.0);
    for (int k = 0; k < h->o.n_snr; k++) {
        uhlm_channel_params cp = p->channel;
        cp.up.snr_db = cp.down.snr_db = h->o.snr[k];
        double up, down;
        uhlm_msglog_replay(&h->log, &cp, seed, &up, &down);
        r->link_s[k] = up + down;
    }
}

static uhlm_device *run_device(uhlm_eval_harness *h, const uhlm_eval_cfg *c,
                               uhlm_device_params *p, uhlm_error *err) {
    *p = h->o.base;
    p->policy.mode = c->mode;
    p->policy.u_th = c->u_th;
    p->policy.skip_prob = c->skip_prob;
    p->unc.method = c->method;
    p->record_u = c->record_u;
    if (c->greedy) p->sampling.temp = 0.0f;
    int skipping = c->mode == UHLM_MODE_SLM || c->mode == UHLM_MODE_RAND ||
                   c->mode == UHLM_MODE_UHLM;
    return uhlm_device_new(c->mode == UHLM_MODE_LLM ? NULL : h->slm_ctx, 0,
                           c->mode == UHLM_MODE_SLM ? NULL : h->ver,
                           skipping && !c->greedy ? h->shadow : NULL, p, err);
}

/* One run of c on prompt i, repetition rep, into r. */
static int run_one(uhlm_eval_harness *h, const uhlm_eval_cfg *c, int i, int rep, uint64_t seed,
                   uhlm_calib_samples *rec, uhlm_eval_record *r, uhlm_error *err) {
    size_t slot = (size_t)rep * (size_t)h->n_prompts + (size_t)i; /* of the references */
    uhlm_device_params p;
    memset(r, 0, sizeof *r);
    r->prompt = i;
    r->rep = rep;
    r->seed = seed;
    r->cos = NAN;
    uhlm_device *d = run_device(h, c, &p, err);
    if (!d) return -1;
    const char *id = h->ps->items[i].id;
    h->rec = rec;
    h->oom = 0;
    uhlm_msglog_reset(&h->log, (uint64_t)h->np[i] * (uint64_t)uhlm_token_bits(uhlm_model_config(h->slm)->vocab_size));
    uhlm_device_set_callback(d, on_token, h);
    if (h->o.cancel) uhlm_device_set_cancel(d, h->o.cancel, h->o.cancel_user);
    int rc = -1;
    if (uhlm_device_start(d, h->ids[i], h->np[i], seed, err) != 0 || uhlm_device_run(d, err) < 0) {
        eval_error_wrap(err, "prompt %s, mode %s", id, uhlm_mode_name(c->mode));
        goto out;
    }
    if (h->oom || (rec && rec->oom)) {
        uhlm_set_error(err, "out of memory");
        goto out;
    }
    const uhlm_device_stats *s = uhlm_device_get_stats(d);
    if (s->unverified > 0) {
        /* the remote verifier fell back to the SLM alone: the tokens are no longer those of
         * this mode, so the row would mix two systems; stop rather than report it */
        uhlm_set_error(err,
                       "prompt %s, mode %s: the server was unavailable for %d tokens (generated "
                       "by the SLM alone); eval results need an unbroken connection",
                       id, uhlm_mode_name(c->mode), s->unverified);
        goto out;
    }
    int n_all;
    const int *all = uhlm_device_tokens(d, &n_all);
    int ng = n_all - h->np[i];
    if (!(r->tokens = malloc(sizeof(int) * (size_t)(ng ? ng : 1)))) {
        uhlm_set_error(err, "out of memory");
        goto out;
    }
    memcpy(r->tokens, all + h->np[i], sizeof(int) * (size_t)ng);
    r->n_tokens = ng;
    if (c->want_quality && run_quality(h, c, i, slot, all, n_all, r, err) != 0) goto out;
    if (c->greedy) run_exact(h, c, slot, r);
    run_account(h, &p, s, seed, r);
    rc = 0;
out:
    uhlm_device_free(d);
    return rc;
}

int uhlm_eval_run_set(uhlm_eval_harness *h, const uhlm_eval_cfg *cfg, uint64_t seed_xor,
                      const char *label, uhlm_calib_samples *rec, uhlm_progress *progress,
                      uhlm_eval_set *out, uhlm_error *err) {
    memset(out, 0, sizeof *out);
    out->cfg = *cfg;
    snprintf(out->label, sizeof out->label, "%s", label ? label : "");
    if (cfg->greedy && !cfg->reference && !h->have_ref_greedy)
        return uhlm_set_error(err, "a greedy set needs the greedy reference set first");
    int n_runs = h->n_prompts * h->o.n_reps;
    if (!(out->rec = calloc((size_t)n_runs, sizeof *out->rec)))
        return uhlm_set_error(err, "out of memory");
    for (int j = 0; j < n_runs; j++) {
        int i = j % h->n_prompts, rep = j / h->n_prompts;
        uint64_t seed = h->seeds[i] ^ uhlm_eval_rep_mix(rep) ^ seed_xor;
        int rc = run_one(h, cfg, i, rep, seed, rec, &out->rec[j], err);
        if (rc == 0) out->n++;
        else free(out->rec[j].tokens);
        if (progress) uhlm_progress_step(progress, 1);
        if (rc != 0) return -1;
    }
    if (cfg->reference && cfg->want_quality && h->o.hidden_cosine) h->have_ref_emb = 1;
    if (cfg->reference && cfg->greedy) {
        for (int i = 0; i < n_runs; i++) {
            free(h->ref_greedy[i]);
            h->ref_greedy[i] = malloc(sizeof(int) * (size_t)(out->rec[i].n_tokens + 1));
            if (!h->ref_greedy[i]) return uhlm_set_error(err, "out of memory");
            memcpy(h->ref_greedy[i], out->rec[i].tokens, sizeof(int) * (size_t)out->rec[i].n_tokens);
            h->ref_greedy_n[i] = out->rec[i].n_tokens;
        }
        h->have_ref_greedy = 1;
    }
    return 0;
}

/* ---- the harness ---- */

void uhlm_eval_harness_free(uhlm_eval_harness *h) {
    if (!h) return;
    uhlm_msglog_free(&h->log);
    for (int i = 0; h->ids && i < h->n_prompts; i++) free(h->ids[i]);
    for (int i = 0; h->ref_greedy && i < h->n_prompts * h->o.n_reps; i++) free(h->ref_greedy[i]);
    free(h->ids);
    free(h->np);
    free(h->seeds);
    free(h->ref_emb);
    free(h->ref_greedy);
    free(h->ref_greedy_n);
    free(h->emb);
    if (h->own_ver) uhlm_verifier_free(h->ver);
    uhlm_ctx_free(h->qctx);
    uhlm_ctx_free(h->shadow);
    uhlm_ctx_free(h->slm_ctx);
    free(h);
}

/* The options as the runs read them: the sweep's SNR on the grid, the sweep methods spelled
 * out. */
static void harness_opts(uhlm_eval_harness *h, const uhlm_eval_opts *o) {
    h->o = *o;
    h->k_sweep = -1;
    for (int k = 0; k < h->o.n_snr; k++)
        if (h->o.snr[k] == h->o.sweep_snr) h->k_sweep = k;
    h->n_snr_report = h->o.n_snr;
    if (h->k_sweep < 0) { /* replays are cheap: the sweep's throughput comes from the grid */
        h->k_sweep = h->o.n_snr;
        h->o.snr[h->o.n_snr++] = h->o.sweep_snr;
    }
    if (h->o.n_sweep_methods == 0) h->o.sweep_methods[h->o.n_sweep_methods++] = o->base.unc.method;
    if (h->o.n_sweep == 0) h->o.n_sweep_methods = 0;
}

/* The contexts, the verifier, and one device to check the settings against the pair. */
static int harness_contexts(uhlm_eval_harness *h, uhlm_verifier *ver, uhlm_error *err) {
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = h->o.n_threads;
    cp.simd = h->o.simd;
    if (!(h->slm_ctx = uhlm_ctx_new(h->slm, &cp, err)) ||
        !(h->shadow = uhlm_ctx_new(h->llm, &cp, err)) || !(h->qctx = uhlm_ctx_new(h->llm, &cp, err)))
        return -1;
    h->ver = ver;
    if (!ver) {
        if (!(h->ver = uhlm_verifier_inproc_new(h->llm, &cp, err))) return -1;
        h->own_ver = 1;
    }
    /* validates the payload and sampling against the pair once, before any work; with a
     * remote verifier this is also where it connects */
    uhlm_device *d = uhlm_device_new(h->slm_ctx, 0, h->ver, h->shadow, &h->o.base, err);
    if (!d) return -1;
    h->n_ctx = uhlm_device_n_ctx(d);
    uhlm_device_free(d);
    return 0;
}

static int harness_prompts(uhlm_eval_harness *h, uhlm_error *err) {
    int NP = h->n_prompts;
    size_t slots = (size_t)NP * (size_t)h->o.n_reps; /* references per (repetition, prompt) */
    h->D = uhlm_model_config(h->llm)->dim;
    h->ids = calloc((size_t)NP, sizeof *h->ids);
    h->np = calloc((size_t)NP, sizeof *h->np);
    h->seeds = calloc((size_t)NP, sizeof *h->seeds);
    h->ref_emb = malloc(sizeof(float) * slots * (size_t)h->D);
    h->ref_greedy = calloc(slots, sizeof *h->ref_greedy);
    h->ref_greedy_n = calloc(slots, sizeof *h->ref_greedy_n);
    h->emb = malloc(sizeof(float) * (size_t)h->D);
    if (!h->ids || !h->np || !h->seeds || !h->ref_emb || !h->ref_greedy || !h->ref_greedy_n ||
        !h->emb)
        return uhlm_set_error(err, "out of memory");
    for (int i = 0; i < NP; i++) {
        const uhlm_prompt *p = &h->ps->items[i];
        if (!(h->ids[i] = malloc(sizeof(int) * ((size_t)h->n_ctx + 1))))
            return uhlm_set_error(err, "out of memory");
        h->np[i] = uhlm_eval_prompt_tokens(h->slm, h->o.chat, p->text, h->ids[i], h->n_ctx + 1, err);
        if (h->np[i] < 0) return eval_error_wrap(err, "prompt %s", p->id);
        if (h->np[i] >= h->n_ctx)
            return uhlm_set_error(err, "prompt %s is %d tokens, the context holds %d", p->id,
                                  h->np[i], h->n_ctx);
        h->seeds[i] = uhlm_eval_prompt_seed(h->o.seed, p->id);
    }
    return 0;
}

uhlm_eval_harness *uhlm_eval_harness_new(uhlm_model *slm, uhlm_model *llm, uhlm_verifier *ver,
                                         const uhlm_prompt_set *ps, const uhlm_eval_opts *opts,
                                         uhlm_error *err) {
    if (uhlm_eval_opts_check(opts, err) != 0) return NULL;
    if (ps->n <= 0) {
        uhlm_set_error(err, "no prompts to evaluate");
        return NULL;
    }
    uhlm_eval_harness *h = calloc(1, sizeof *h);
    if (!h) {
        uhlm_set_error(err, "out of memory");
        return NULL;
    }
    harness_opts(h, opts);
    h->slm = slm;
    h->llm = llm;
    h->ps = ps;
    h->n_prompts = opts->limit > 0 && opts->limit < ps->n ? opts->limit : ps->n;
    if (harness_contexts(h, ver, err) != 0 || harness_prompts(h, err) != 0) {
        uhlm_eval_harness_free(h);
        return NULL;
    }
    return h;
}

int uhlm_eval_harness_n_prompts(const uhlm_eval_harness *h) { return h->n_prompts; }
uhlm_verifier *uhlm_eval_harness_verifier(uhlm_eval_harness *h) { return h->ver; }

long uhlm_eval_total_runs(const uhlm_eval_harness *h) {
    const uhlm_eval_opts *o = &h->o;
    long NP = (long)h->n_prompts * h->o.n_reps;
    int n_main = 0;
    for (int m = 0; m < UHLM_EVAL_N_MODES; m++) n_main += o->want[m] || m == UHLM_MODE_LLM;
    long total = NP * (n_main + 1) * (o->greedy ? 2 : 1);
    for (int k = 0; k < o->n_sweep_methods; k++)
        total += NP * (2 * o->n_sweep + !(o->sweep_methods[k] == o->base.unc.method &&
                                          o->want[UHLM_MODE_HLM]));
    return total;
}

/* ---- the plan ---- */

static uhlm_eval_cfg cfg_of(uhlm_mode m, double u_th, double skip, uhlm_unc_method method,
                            int greedy, int record_u, int quality, int reference) {
    return (uhlm_eval_cfg){m, u_th, skip, method, greedy, record_u, quality, reference};
}

static void fit_method(uhlm_eval_method_fit *F, uhlm_unc_method method,
                       const uhlm_calib_samples *rec) {
    uhlm_error e;
    F->method = method;
    F->ok = uhlm_calib_fit(rec->s, rec->n, &F->fit, &e) == 0;
    F->n = rec->n;
    F->delta = uhlm_calib_delta(rec->s, rec->n);
    uhlm_calib_bins(rec->s, rec->n, UHLM_EVAL_N_BINS, F->bins);
}

static const uhlm_mode run_order[4] = {UHLM_MODE_SLM, UHLM_MODE_HLM, UHLM_MODE_UHLM, UHLM_MODE_RAND};

/* The llm reference and its run-to-run similarity, then the other modes at the session
 * temperature; hlm records u for the fit, rand follows uhlm to match its skip rate. */
static int plan_main(uhlm_eval_harness *h, uhlm_progress *pg, uhlm_calib_samples *rec,
                     uhlm_eval_results *R, uhlm_error *err) {
    const uhlm_eval_opts *o = &h->o;
    uhlm_unc_method um = o->base.unc.method;
    uhlm_eval_cfg c = cfg_of(UHLM_MODE_LLM, o->u_th, 0, um, 0, 0, 1, 1);
    if (uhlm_eval_run_set(h, &c, 0, "llm", NULL, pg, &R->main[UHLM_MODE_LLM], err)) return -1;
    c.reference = 0;
    if (uhlm_eval_run_set(h, &c, 0x9e3779b97f4a7c15ULL, "llm-seed2", NULL, pg, &R->llm_self, err))
        return -1;
    R->rand_prob = NAN;
    for (int oi = 0; oi < 4; oi++) {
        uhlm_mode m = run_order[oi];
        if (!o->want[m]) continue;
        c = cfg_of(m, o->u_th, 0, um, 0, m == UHLM_MODE_HLM, 1, 0);
        if (m == UHLM_MODE_RAND) {
            if (o->want[UHLM_MODE_UHLM]) {
                uhlm_eval_acc a;
                uhlm_eval_sum(&R->main[UHLM_MODE_UHLM], 0, &a);
                R->rand_prob = uhlm_eval_ratio((double)a.skipped, (double)a.gen);
            } else {
                R->rand_prob = isnan(o->skip_prob) ? 0.5 : o->skip_prob;
            }
            if (!isfinite(R->rand_prob)) R->rand_prob = 0;
            c.skip_prob = R->rand_prob;
        }
        if (uhlm_eval_run_set(h, &c, 0, uhlm_mode_name(m), m == UHLM_MODE_HLM ? rec : NULL, pg,
                              &R->main[m], err))
            return -1;
        if (m == UHLM_MODE_HLM) fit_method(&R->fits[R->n_fits++], um, rec);
    }
    return 0;
}

/* Temperature 0: every mode against the greedy llm tokens. */
static int plan_greedy(uhlm_eval_harness *h, uhlm_progress *pg, uhlm_eval_results *R,
                       uhlm_error *err) {
    const uhlm_eval_opts *o = &h->o;
    uhlm_eval_cfg g = cfg_of(UHLM_MODE_LLM, o->u_th, 0, o->base.unc.method, 1, 0, 0, 1);
    if (uhlm_eval_run_set(h, &g, 0, NULL, NULL, pg, &R->greedy[UHLM_MODE_LLM], err)) return -1;
    g.reference = 0;
    for (int oi = 0; oi < 4; oi++) {
        uhlm_mode m = run_order[oi];
        if (!o->want[m]) continue;
        g.mode = m;
        g.skip_prob = m == UHLM_MODE_RAND ? R->rand_prob : 0;
        if (uhlm_eval_run_set(h, &g, 0, NULL, NULL, pg, &R->greedy[m], err)) return -1;
    }
    return 0;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* One sweep method: u_th at the quantiles of u over samples S (nearest rank), uhlm there and
 * rand at the skip rate uhlm reached. */
static int plan_sweep_method(uhlm_eval_harness *h, uhlm_progress *pg, uhlm_unc_method method,
                             const uhlm_calib_samples *S, uhlm_eval_results *R, uhlm_error *err) {
    const uhlm_eval_opts *o = &h->o;
    double *uvals = malloc(sizeof(double) * (S->n ? S->n : 1));
    if (!uvals) return uhlm_set_error(err, "out of memory");
    for (size_t j = 0; j < S->n; j++) uvals[j] = S->s[j].u;
    qsort(uvals, S->n, sizeof *uvals, cmp_d);
    int rc = 0;
    const char *mn = uhlm_unc_method_name(method);
    for (int q = 0; q < o->n_sweep && rc == 0; q++) {
        uhlm_eval_sweep_point *P = &R->sweep[R->n_sweep++];
        P->method = method;
        P->q = o->sweep_q[q];
        size_t r = S->n ? (size_t)floor(o->sweep_q[q] * (double)(S->n - 1) + 0.5) : 0;
        P->u_th = S->n ? uvals[r] : 0;
        uhlm_eval_cfg c = cfg_of(UHLM_MODE_UHLM, P->u_th, 0, method, 0, 0, 1, 0);
        char label[64];
        snprintf(label, sizeof label, "sweep-uhlm-%s-q%.2f", mn, P->q);
        if ((rc = uhlm_eval_run_set(h, &c, 0, label, NULL, pg, &P->u, err)) != 0) break;
        uhlm_eval_acc a;
        uhlm_eval_sum(&P->u, 0, &a);
        P->skip = uhlm_eval_ratio((double)a.skipped, (double)a.gen);
        if (!isfinite(P->skip)) P->skip = 0;
        c = cfg_of(UHLM_MODE_RAND, 0, P->skip, method, 0, 0, 1, 0);
        snprintf(label, sizeof label, "sweep-rand-%s-q%.2f", mn, P->q);
        rc = uhlm_eval_run_set(h, &c, 0, label, NULL, pg, &P->r, err);
    }
    free(uvals);
    return rc;
}

/* The sweep: per method, u from hlm (the main pass, or one of the method's own). */
static int plan_sweep(uhlm_eval_harness *h, uhlm_progress *pg, uhlm_calib_samples *rec,
                      uhlm_eval_results *R, uhlm_error *err) {
    const uhlm_eval_opts *o = &h->o;
    uhlm_calib_samples rec2 = {0};
    int rc = 0;
    for (int k = 0; k < o->n_sweep_methods && rc == 0; k++) {
        uhlm_unc_method m = o->sweep_methods[k];
        uhlm_calib_samples *S = rec;
        if (!(m == o->base.unc.method && o->want[UHLM_MODE_HLM])) {
            S = &rec2;
            rec2.n = 0;
            uhlm_eval_cfg c = cfg_of(UHLM_MODE_HLM, o->u_th, 0, m, 0, 1, 0, 0);
            uhlm_eval_set tmp;
            rc = uhlm_eval_run_set(h, &c, 0, NULL, &rec2, pg, &tmp, err);
            uhlm_eval_set_free(&tmp);
            if (rc != 0) break;
            fit_method(&R->fits[R->n_fits++], m, &rec2);
        }
        rc = plan_sweep_method(h, pg, m, S, R, err);
    }
    uhlm_calib_samples_free(&rec2);
    return rc;
}

int uhlm_eval_run_all(uhlm_eval_harness *h, uhlm_progress *progress, uhlm_eval_results *out,
                      uhlm_error *err) {
    memset(out, 0, sizeof *out);
    double w0 = uhlm_now();
    out->sweep = calloc((size_t)(h->o.n_sweep_methods * h->o.n_sweep + 1), sizeof *out->sweep);
    if (!out->sweep) return uhlm_set_error(err, "out of memory");
    uhlm_calib_samples rec = {0};
    int rc = plan_main(h, progress, &rec, out, err);
    if (rc == 0 && h->o.greedy) rc = plan_greedy(h, progress, out, err);
    if (rc == 0) rc = plan_sweep(h, progress, &rec, out, err);
    uhlm_calib_samples_free(&rec);
    /* every layer between the device and here returns -1 for any failure; a cancel is told
     * apart by asking again (the callback keeps answering once it has said stop) */
    if (rc != 0 && h->o.cancel && h->o.cancel(h->o.cancel_user)) rc = UHLM_CANCELLED;
    if (rc == 0 && progress) uhlm_progress_end(progress);
    out->wall_s = uhlm_now() - w0;
    return rc;
}
