/* harness.h: the evaluation harness of `uhlm eval` (DESIGN §2.4-§2.5) as library calls: runs,
 * sweeps, aggregation and report writers. The command line only collects options into a
 * uhlm_eval_opts, loads the models and calls these.
 *
 * Layers, bottom up:
 *   run      one configuration (uhlm_eval_cfg: mode, u_th, method, greedy, ...) on one prompt
 *            with one seed gives one uhlm_eval_record: the device's counts and compute, the
 *            link time replayed for every SNR (eval.h), quality against the llm reference,
 *            and the generated tokens themselves;
 *   set      the same configuration over every prompt, each with K seeds (opts.n_reps): a
 *            uhlm_eval_set, records in prompt order, repetition after repetition;
 *   harness  the fixed plan of sets (uhlm_eval_run_all, below), kept in uhlm_eval_results;
 *   sum      uhlm_eval_sum adds a set's records, in record order, into a uhlm_eval_acc, from
 *            which every reported rate is taken. Because the sum is over records, a subset
 *            or a resample of prompts (or of repetitions) is summed the same way;
 *   report   uhlm_eval_write_reports writes results.csv, sweep.csv, methods.csv, bins.csv,
 *            per_prompt.csv, results.json, summary.md, and answers.jsonl: the text of every
 *            labelled run (for quality scored outside, e.g. sentence embeddings), and
 *            intervals.csv: bootstrap 95% intervals of the headline figures.
 *
 * Plan of uhlm_eval_run_all. Per prompt: the llm reference at the session temperature (its
 * embedding is the yardstick of quality), a second llm run with another seed (the LLM's own
 * run-to-run similarity), the requested modes (slm, hlm, uhlm, rand; with the shadow LLM where
 * tokens are skipped; hlm records (u, β) for the fit; rand skips at the rate uhlm reached, or
 * at opts.skip_prob without uhlm), then every mode at temperature 0 against the greedy llm
 * tokens (exact match), then per sweep method one hlm pass recording u (unless the main hlm
 * pass already used that method) plus a uhlm run at each u quantile and a rand run at the
 * skip rate it reached. Each prompt's seed depends only on the run seed and its id (and
 * the repetition, uhlm_eval_rep_mix).
 *
 * Errors: every call returns 0, or -1 with err; nothing is printed except through the
 * progress bar the caller passes. */
#ifndef UHLM_HARNESS_H
#define UHLM_HARNESS_H

#include "calib.h"
#include "calib_samples.h"
#include "common.h"
#include "device.h"
#include "eval.h"
#include "model.h"
#include "prompts.h"
#include "verifier.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UHLM_EVAL_MAX_SNR 64
#define UHLM_EVAL_MAX_SWEEP 32
#define UHLM_EVAL_MAX_METHODS 4
#define UHLM_EVAL_N_BINS 10
#define UHLM_EVAL_N_MODES 5
#define UHLM_EVAL_MAX_REPS 1000

/* ---- small pieces shared with calibration ---- */

/* 0 when the two models share a vocabulary, else -1 with err saying how they differ. */
UHLM_API int uhlm_eval_check_pair(const uhlm_model *slm, const uhlm_model *llm, uhlm_error *err);
/* A per-prompt seed from the run seed and the prompt id: results do not depend on the order
 * or the subset of prompts. */
UHLM_API uint64_t uhlm_eval_prompt_seed(uint64_t seed, const char *id);
/* Repetition r of a run draws with its prompt seed xor uhlm_eval_rep_mix(r); 0 for r = 0, so
 * one repetition is the run of a single seed. */
UHLM_API uint64_t uhlm_eval_rep_mix(int rep);
/* A prompt's ids: one chat user turn (chat != 0) or plain text with BOS as the vocabulary
 * says; returns as uhlm_tokenize. */
UHLM_API int uhlm_eval_prompt_tokens(const uhlm_model *m, int chat, const char *text, int *ids, int cap,
                            uhlm_error *err);
/* The prompts of a file of at most max_bytes; with split >= 0 only the held-out part of that
 * train/test split (an error when it is empty). */
UHLM_API int uhlm_eval_load_prompts(const char *path, uint64_t max_bytes, double split,
                           uhlm_prompt_set *out, uhlm_error *err);

/* ---- options ---- */

typedef struct uhlm_eval_opts {
    uhlm_device_params base; /* sampling, payload, uncertainty, channel, n_gen */
    int want[UHLM_EVAL_N_MODES]; /* modes to report, by uhlm_mode; llm always runs */
    double u_th;
    double skip_prob; /* rand's skip probability when uhlm is not run; NaN: 0.5 */
    double snr[UHLM_EVAL_MAX_SNR];
    int n_snr;
    double sweep_q[UHLM_EVAL_MAX_SWEEP]; /* quantiles of u */
    int n_sweep;
    uhlm_unc_method sweep_methods[UHLM_EVAL_MAX_METHODS];
    int n_sweep_methods;
    double sweep_snr; /* joins the SNR grid when it is not on it */
    int greedy;       /* the temperature-0 pass */
    int chat;         /* prompts are user turns of the SLM's chat template */
    int n_threads;    /* per model context */
    uhlm_simd simd;   /* every model context's kernels; UHLM_SIMD_AUTO (0): the best */
    int n_reps;       /* every set runs each prompt with this many seeds (--seeds K) */
    int n_boot;       /* bootstrap resamples of intervals.csv */
    int limit;        /* only the first prompts; 0: all */
    uint64_t seed;
    /* only reported, never read by the runs */
    double temperature; /* as given, base.sampling.temp being its float; reported when it
                           rounds to that float, else base.sampling.temp is */
    const char *prompts_path;
    const char *threshold_source; /* the calib file, or "--uth" */
    const char *risk;             /* may be NULL */
    const char *server;           /* may be NULL: in process */
    /* optional (common.h): polled before every token of every run; when it answers nonzero,
     * uhlm_eval_run_all stops and returns UHLM_CANCELLED, its results incomplete (fit to free,
     * not to report) */
    uhlm_cancel_fn cancel;
    void *cancel_user;
    /* nonzero: also the cosine of each run's mean-pooled LLM hidden state to the llm
     * reference's (record.cos, the cos_sim columns). Off by default: it does not separate the
     * modes (docs/results.md) and its extra LLM pass cost 17-18% of an eval's CPU time; the
     * paper's quality metric is the sentence-embedding cosine of answers.jsonl. */
    int hidden_cosine;
} uhlm_eval_opts;

/* 0 when the options can run (channel, sampling, room for the sweep's SNR on the grid),
 * else -1 with err: a usage error. */
UHLM_API int uhlm_eval_opts_check(const uhlm_eval_opts *o, uhlm_error *err);
/* Defaults of `uhlm eval`: every mode, SNR -10..30 dB, sweep at quantiles .2 .4 .6 .8 of the
 * default method at 0 dB, greedy pass on, 64 tokens, u_th 0.2, seed 42, one repetition,
 * 1000 bootstrap resamples, one thread. */
UHLM_API uhlm_eval_opts uhlm_eval_default_opts(void);

/* ---- runs ---- */

typedef struct uhlm_eval_cfg {
    uhlm_mode mode;
    double u_th, skip_prob;
    uhlm_unc_method method;
    int greedy;       /* temperature 0, no shadow */
    int record_u;     /* collect (u, β) samples */
    int want_quality; /* embedding cosine and NLL under the LLM */
    int reference;    /* this set's embeddings (want_quality) or tokens (greedy) become the
                         harness's reference for the sets run after it */
} uhlm_eval_cfg;

/* One run: one configuration on one prompt with one seed. */
typedef struct uhlm_eval_record {
    int prompt; /* index into the harness's prompts */
    int rep;    /* repetition: the seed is the prompt seed xor uhlm_eval_rep_mix(rep) */
    uint64_t seed;
    int generated, transmitted, skipped, rejected, accepted, outright, catchup, llm_calls;
    int shadow_evaluated, shadow_true;
    double shadow_beta_sum;
    uint64_t up_bits, down_bits;
    double slm_s, unc_s, llm_s; /* unc_s only where the policy reads u */
    double compute_s;           /* slm_s + llm_s + unc_s, as the device's clock gave them */
    double link_s[UHLM_EVAL_MAX_SNR]; /* replayed, by the harness's SNR index */
    int have_cos;  /* the cosine to the llm reference was measured */
    double cos;
    int nll_n;     /* generated tokens scored (0: no NLL) */
    double nll_sum;
    int have_exact; /* temperature 0, compared with the greedy llm tokens */
    int exact;
    double prefix; /* share of the longer sequence matched as a prefix */
    int *tokens;   /* the generated tokens (malloc'd) */
    int n_tokens;
} uhlm_eval_record;

/* A configuration over every prompt and repetition, records in prompt order within each
 * repetition, repetition after repetition. label names it in per_prompt.csv and
 * answers.jsonl ("" leaves it out). */
typedef struct uhlm_eval_set {
    uhlm_eval_cfg cfg;
    char label[64];
    uhlm_eval_record *rec;
    int n;
} uhlm_eval_set;
UHLM_API void uhlm_eval_set_free(uhlm_eval_set *s);

/* ---- aggregation ---- */

typedef struct uhlm_eval_acc {
    long runs, gen, trans, skipped, rejected, accepted, outright, catchup, llm_calls;
    long sh_eval, sh_true;
    double sh_beta_sum; /* expected rejections of the shadowed skips */
    double up_bits, down_bits, slm_s, unc_s, llm_s, compute_s;
    double link_s[UHLM_EVAL_MAX_SNR];
    double cos_sum;
    long cos_n;
    double nll_sum;
    long nll_n;
    long exact_n, exact_total;
    double prefix_sum;
} uhlm_eval_acc;

/* Adds records into *a (zeroed first), in record order, n_snr link times each. */
UHLM_API void uhlm_eval_sum(const uhlm_eval_set *s, int n_snr, uhlm_eval_acc *a);
/* The same with each record counted weight[unit] times, unit its prompt index (by_rep = 0)
 * or its repetition (by_rep = 1): the sum of a bootstrap resample of prompts or of seeds. */
UHLM_API void uhlm_eval_sum_weighted(const uhlm_eval_set *s, int n_snr, const int *weight, int by_rep,
                            uhlm_eval_acc *a);
/* NaN where undefined (nothing generated, nothing transmitted, no quality). */
UHLM_API double uhlm_eval_ratio(double a, double b);
UHLM_API double uhlm_eval_acc_cos(const uhlm_eval_acc *a);
UHLM_API double uhlm_eval_acc_nll(const uhlm_eval_acc *a);
UHLM_API double uhlm_eval_acc_ppl(const uhlm_eval_acc *a);
UHLM_API double uhlm_eval_acc_tput(const uhlm_eval_acc *a, int k); /* tokens/s at SNR index k */
UHLM_API double uhlm_eval_acc_tr(const uhlm_eval_acc *a);
/* TSR, two readings over the skipped tokens the shadow LLM scored: the share accepted outright
 * (y[d] >= x̃[d], β = 0), and the expected acceptance, the mean of 1 − β. */
UHLM_API double uhlm_eval_acc_tsr(const uhlm_eval_acc *a);
UHLM_API double uhlm_eval_acc_tsr_expected(const uhlm_eval_acc *a);
UHLM_API double uhlm_eval_acc_rej(const uhlm_eval_acc *a);

/* ---- the harness ---- */

typedef struct uhlm_eval_sweep_point {
    uhlm_unc_method method;
    double q, u_th, skip;
    uhlm_eval_set u, r; /* uhlm at u_th, rand at the skip rate uhlm reached */
} uhlm_eval_sweep_point;

typedef struct uhlm_eval_method_fit {
    uhlm_unc_method method;
    uhlm_linfit fit;
    int ok;
    size_t n;
    double delta;
    uhlm_calib_bin bins[UHLM_EVAL_N_BINS];
} uhlm_eval_method_fit;

typedef struct uhlm_eval_results {
    uhlm_eval_set main[UHLM_EVAL_N_MODES];   /* by uhlm_mode; llm is the reference */
    uhlm_eval_set greedy[UHLM_EVAL_N_MODES]; /* temperature 0 */
    uhlm_eval_set llm_self;                  /* llm with a second seed */
    uhlm_eval_sweep_point *sweep;
    int n_sweep;
    uhlm_eval_method_fit fits[UHLM_EVAL_N_MODES];
    int n_fits;
    double rand_prob; /* rand's skip probability */
    double wall_s;
} uhlm_eval_results;
UHLM_API void uhlm_eval_results_free(uhlm_eval_results *r);

typedef struct uhlm_eval_harness uhlm_eval_harness;

/* A harness for the pair over the first opts->limit prompts of ps (borrowed, as are the
 * models and opts' strings). ver: the verifier (borrowed), or NULL for one in process on llm.
 * Creates the contexts, checks the settings against the pair with one device, and tokenizes
 * every prompt. */
UHLM_API uhlm_eval_harness *uhlm_eval_harness_new(uhlm_model *slm, uhlm_model *llm, uhlm_verifier *ver,
                                         const uhlm_prompt_set *ps, const uhlm_eval_opts *opts,
                                         uhlm_error *err);
UHLM_API void uhlm_eval_harness_free(uhlm_eval_harness *h);
UHLM_API int uhlm_eval_harness_n_prompts(const uhlm_eval_harness *h);
/* The verifier the harness runs with (its own in-process one, or the caller's). */
UHLM_API uhlm_verifier *uhlm_eval_harness_verifier(uhlm_eval_harness *h);

/* One set: cfg over every prompt, each with its prompt seed xor seed_xor. Quality sets get
 * the cosine to the reference embeddings once a reference set has run; greedy sets get exact
 * match against the greedy reference tokens. rec: collects (u, β) samples (may be NULL).
 * progress may be NULL. out is overwritten. */
UHLM_API int uhlm_eval_run_set(uhlm_eval_harness *h, const uhlm_eval_cfg *cfg, uint64_t seed_xor,
                      const char *label, uhlm_calib_samples *rec, uhlm_progress *progress,
                      uhlm_eval_set *out, uhlm_error *err);

/* The whole plan above. progress (may be NULL) is initialised by the caller for
 * uhlm_eval_total_runs runs. */
UHLM_API long uhlm_eval_total_runs(const uhlm_eval_harness *h);
/* Returns 0, -1 with err, or UHLM_CANCELLED when opts.cancel stopped it (results incomplete). */
UHLM_API int uhlm_eval_run_all(uhlm_eval_harness *h, uhlm_progress *progress, uhlm_eval_results *out,
                      uhlm_error *err);

/* ---- intervals ---- */

/* A headline figure with its bootstrap 95% interval. */
typedef struct uhlm_eval_interval {
    uhlm_mode mode;
    int metric;         /* index of name in the list below */
    const char *name;   /* tr, tsr, tsr_expected, rejection_rate, cos_sim, cos_pct_llm, ppl,
                           ppl_pct_llm, uplink_reduction_vs_hlm, exact_match (per mode);
                           throughput_tok_s, speedup_vs_hlm (per mode and SNR) */
    int snr_index;      /* -1 for the figures that do not depend on the SNR */
    double value;       /* as in results.csv */
    double lo, hi;      /* the 2.5% and 97.5% points of the resampled figure; NaN if none */
} uhlm_eval_interval;

typedef struct uhlm_eval_intervals {
    uhlm_eval_interval *iv;
    int n;
    int n_boot;
    int by_rep; /* resampled seeds (one prompt, several seeds), else prompts */
} uhlm_eval_intervals;

/* n_boot resamples, drawn from a stream seeded by seed: of prompts, or of seeds when there is
 * one prompt and several repetitions. Each resample sums every set with the drawn
 * multiplicities (uhlm_eval_sum_weighted) and recomputes each figure. */
UHLM_API int uhlm_eval_bootstrap(const uhlm_eval_harness *h, const uhlm_eval_results *R, int n_boot,
                        uint64_t seed, uhlm_eval_intervals *out, uhlm_error *err);
UHLM_API void uhlm_eval_intervals_free(uhlm_eval_intervals *iv);
#define UHLM_EVAL_BOOTSTRAP_DEFAULT 1000

/* ---- reports ---- */

/* mkdir -p of one level: the folder exists afterwards, or -1 with err. */
UHLM_API int uhlm_eval_make_dir(const char *dir, uhlm_error *err);
/* The nine files into dir (atomically each); intervals.csv: the bootstrap intervals of the
 * headline figures (uhlm_eval_bootstrap with opts.n_boot resamples). */
UHLM_API int uhlm_eval_write_reports(const uhlm_eval_harness *h, const uhlm_eval_results *r,
                            const char *dir, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
