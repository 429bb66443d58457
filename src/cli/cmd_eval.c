/* cmd_eval.c: `uhlm eval`, the paper's evaluation (DESIGN §2.4-§2.5): the five modes over a
 * prompt set and an SNR grid, with quality against the LLM's own output, a u_th sweep with
 * a skip-rate-matched random control, and a comparison of uncertainty methods.
 *
 * Cost model. The SNR changes only link times, never tokens or compute, so each (mode,
 * prompt) runs once and its message log is replayed through the channel for every SNR
 * (eval.h; tests/test_eval.c checks the replay against real runs). Per prompt the runs are:
 * the five modes at the session temperature (with the shadow LLM where tokens are skipped),
 * a second llm run with another seed (the LLM's own run-to-run similarity, the yardstick of
 * "% of llm"), the five modes again at temperature 0 (exact match), and, per sweep method,
 * one hlm pass recording u plus a uhlm and a matched rand run per sweep point. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/cli_remote.h"
#include "cli/eval_common.h"
#include "uhlm/calib.h"
#include "uhlm/eval.h"
#include "uhlm/hybrid.h"
#include "uhlm/prompts.h"
#include "uhlm/remote.h"
#include "uhlm/tokenizer.h"
#include "uhlm/wire.h"

#define MAX_SNR 64
#define MAX_SWEEP 32
#define N_BINS 10

static void help(FILE *f) {
    fprintf(
        f,
        "usage: uhlm eval --prompts FILE -o DIR [-m SLM] [--llm LLM] [-z TOK]\n"
        "                 [--modes slm,llm,hlm,rand,uhlm] [--snr DB,DB,...]\n"
        "                 [--calib CALIB.json --risk RISK | --uth U] [--skip-prob P]\n"
        "                 [--payload ENC] [--uncertainty METHOD] [--samples M] [--theta-max T]\n"
        "                 [--temp T] [--top-k K] [--top-p P] [-n N] [--limit P] [--split F]\n"
        "                 [--bandwidth HZ] [--latency S] [--fading none|rayleigh]\n"
        "                 [--sweep Q,Q,...] [--sweep-methods M,M,...] [--sweep-snr DB]\n"
        "                 [--no-greedy] [--no-chat] [--seed S] [-t THREADS]\n"
        "                 [--server HOST:PORT [--auth-token-file F] [--connect-timeout S]\n"
        "                  [--read-timeout S]] [--max-input-mb MB]\n\n"
        "Runs every requested mode on every prompt once, re-accounts the link time for each\n"
        "SNR from the recorded message sizes, and writes to DIR:\n"
        "  results.csv    one row per mode and SNR: throughput, TR, TSR, rejection rate,\n"
        "                 uplink bytes, LLM calls, catch-up tokens, quality\n"
        "  sweep.csv      uhlm at u_th = quantiles of u, and rand at the same skip rate\n"
        "  methods.csv    fit of beta on u per uncertainty method (a, b, R^2)\n"
        "  bins.csv       binned mean rejection against u per method\n"
        "  per_prompt.csv per mode and prompt: tokens, transmissions, quality\n"
        "  results.json   all of the above; summary.md  Markdown tables\n\n"
        "Quality is measured against the llm mode's output for the same prompt and seed:\n"
        "cosine similarity of `uhlm embed` embeddings (LLM hidden state, mean-pooled), the\n"
        "LLM's per-token NLL of the generated text, and the exact-match rate of the\n"
        "temperature-0 outputs. The llm row's similarity is that of two llm runs with\n"
        "different seeds; quality is also given as %% of llm and %% of hlm.\n\n"
        "  --modes LIST     modes to report (default all five; llm always runs: it is the\n"
        "                   reference). rand skips at the rate uhlm achieved (or --skip-prob\n"
        "                   without uhlm)\n"
        "  --snr LIST       SNR grid in dB, both links (default -10,-5,0,5,10,20,30)\n"
        "  --calib F --risk averse|prone|budget|budget:R   u_th from `uhlm calibrate`\n"
        "                   (else --uth, default 0.2); budget:R is the largest u_th whose\n"
        "                   95%% upper limit of rejected-and-skipped tokens on the fit\n"
        "                   prompts is <= R of all tokens\n"
        "  --split F        use only the held-out part of a --split F train/test split by id\n"
        "                   (the part `uhlm calibrate --split F` did not fit on)\n"
        "  --sweep LIST     quantiles of u (from hlm) used as u_th sweep points\n"
        "                   (default 0.2,0.4,0.6,0.8; 'none' for no sweep)\n"
        "  --sweep-methods LIST  uncertainty methods to sweep (default: the --uncertainty one)\n"
        "  --sweep-snr DB   SNR for the sweep's throughput (default 0)\n"
        "  --no-greedy      skip the temperature-0 pass (no exact-match rate)\n"
        "  --no-chat        use prompts as plain text even when the SLM has a chat template\n"
        "                   (by default they are wrapped as user turns in it, as --chat;\n"
        "                   Alpaca records give instruction or instruction + \"\\n\\n\" + input)\n"
        "  -n N             tokens per prompt (default 64)\n"
        "  --limit P        only the first P prompts\n"
        "  -t THREADS       threads per model (default 1: the default pair is tiny)\n"
        "  --server H:P     verify (and run llm mode) on a `uhlm serve` server with the same\n"
        "                   LLM; same seeds, same tokens as in process. The LLM is still\n"
        "                   loaded here for the untimed shadow and the quality metrics.\n"
        "                   The eval fails if the server cannot be reached or drops tokens\n"
        "                   to SLM-alone fallback (the results would mix two systems)\n"
        "  --auth-token-file F, --connect-timeout S, --read-timeout S   as in `uhlm run`\n"
        "  --max-input-mb MB  largest --prompts/--calib file read (default %d MiB)\n"
        "  other options as in `uhlm run`\n\n"
        "Throughput is generated tokens / (SLM + LLM compute, u only where the policy reads\n"
        "it, + link time). A progress bar with an ETA is drawn on stderr when it is a TTY.\n",
        UHLM_INPUT_MAX_MB);
}

/* ---- parsing helpers ---- */

static int parse_list(const char *cmd, const char *opt, const char *s, double *out, int cap,
                      double lo, double hi) {
    int n = 0;
    const char *p = s;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        char tmp[64];
        if (k == 0 || k >= sizeof tmp || n == cap) {
            fprintf(stderr, "uhlm %s: invalid list for %s: '%s' (at most %d numbers, comma-separated)\n",
                    cmd, opt, s, cap);
            return -1;
        }
        memcpy(tmp, p, k);
        tmp[k] = '\0';
        if (cli_parse_float(cmd, opt, tmp, lo, hi, &out[n])) return -1;
        n++;
        p += k + (c ? 1 : 0);
        if (c && !*p) {
            fprintf(stderr, "uhlm %s: invalid list for %s: '%s' (trailing comma)\n", cmd, opt, s);
            return -1;
        }
    }
    if (n == 0) fprintf(stderr, "uhlm %s: empty list for %s\n", cmd, opt);
    return n ? n : -1;
}

/* ---- accumulators ---- */

typedef struct acc {
    long runs, gen, trans, skipped, rejected, accepted, outright, catchup, llm_calls;
    long sh_eval, sh_true;
    double up_bits, down_bits, slm_s, unc_s, llm_s, compute_s;
    double link_s[MAX_SNR];
    double cos_sum;
    long cos_n;
    double nll_sum;
    long nll_n;
    long exact_n, exact_total;
    double prefix_sum;
} acc;

typedef struct cfg {
    uhlm_mode mode;
    double u_th, skip_prob;
    uhlm_unc_method method;
    int greedy;
    int record_u;
    int want_quality;
} cfg;

typedef struct {
    uhlm_msglog log;
    evc_samples *rec; /* NULL unless collecting (u, beta) */
    int oom;
} ev_state;

static void on_token(void *user, const uhlm_token_event *ev) {
    ev_state *st = user;
    if (uhlm_msglog_event(&st->log, ev) != 0) st->oom = 1;
    uhlm_calib_sample smp;
    if (st->rec && evc_calib_sample(ev, &smp)) evc_samples_push(st->rec, &smp);
}

/* Link events of the remote verifier (lost, reconnected), one line each. */
static void remote_log(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "\nuhlm eval: %s\n", msg);
}

/* ---- the environment ---- */

typedef struct env {
    const char *cmd;
    uhlm_model *slm, *llm;
    uhlm_ctx *slm_ctx, *shadow, *qctx;
    uhlm_verifier *ver;
    uhlm_device_params base;
    uhlm_prompt_set ps;
    int n_prompts;
    int **ids;
    int *np;
    uint64_t *seeds;
    int n_ctx, D;
    int remote; /* ver is a uhlm serve connection */
    double snr[MAX_SNR];
    int n_snr;
    /* the llm references per prompt */
    float *ref_emb;       /* n_prompts x D, temperature T */
    int **ref_greedy;     /* generated tokens at temperature 0 */
    int *ref_greedy_n;
    float *emb;           /* scratch D */
    int *gen_buf;         /* scratch n_ctx */
    ev_state evs;
    sbuf per_prompt;
    uhlm_progress pg;
} env;

/* One run of cfg on prompt i; adds to a (which may be NULL) and returns 0 or -1. out_tokens
 * (if not NULL) receives a malloc'd copy of the generated tokens. */
static int run_one(env *e, const cfg *c, int i, uint64_t seed, acc *a, const char *label,
                   evc_samples *rec, int **out_tokens, int *out_n, float *out_emb) {
    uhlm_error err = {{0}};
    uhlm_device_params p = e->base;
    p.policy.mode = c->mode;
    p.policy.u_th = c->u_th;
    p.policy.skip_prob = c->skip_prob;
    p.unc.method = c->method;
    p.record_u = c->record_u;
    if (c->greedy) p.sampling.temp = 0.0f;
    int skipping = c->mode == UHLM_MODE_SLM || c->mode == UHLM_MODE_RAND ||
                   c->mode == UHLM_MODE_UHLM;
    uhlm_device *d = uhlm_device_new(c->mode == UHLM_MODE_LLM ? NULL : e->slm_ctx, 0,
                                     c->mode == UHLM_MODE_SLM ? NULL : e->ver,
                                     skipping && !c->greedy ? e->shadow : NULL, &p, &err);
    if (!d) {
        fprintf(stderr, "\nuhlm %s: %s\n", e->cmd, err.msg);
        return -1;
    }
    e->evs.rec = rec;
    e->evs.oom = 0;
    uhlm_msglog_reset(&e->evs.log, (uint64_t)e->np[i] * (uint64_t)uhlm_token_bits(e->slm->cfg.vocab_size));
    uhlm_device_set_callback(d, on_token, &e->evs);
    int rc = -1;
    if (uhlm_device_start(d, e->ids[i], e->np[i], seed, &err) != 0 ||
        uhlm_device_run(d, &err) < 0) {
        fprintf(stderr, "\nuhlm %s: prompt %s, mode %s: %s\n", e->cmd, e->ps.items[i].id,
                uhlm_mode_name(c->mode), err.msg);
        goto out;
    }
    if (e->evs.oom || (rec && rec->oom)) {
        fprintf(stderr, "\nuhlm %s: out of memory\n", e->cmd);
        goto out;
    }
    const uhlm_device_stats *s = uhlm_device_get_stats(d);
    if (s->unverified > 0) {
        /* the remote verifier fell back to the SLM alone: the tokens are no longer those of
         * this mode, so the row would mix two systems; stop rather than report it */
        fprintf(stderr,
                "\nuhlm %s: prompt %s, mode %s: the server was unavailable for %d tokens "
                "(generated by the SLM alone); eval results need an unbroken connection\n",
                e->cmd, e->ps.items[i].id, uhlm_mode_name(c->mode), s->unverified);
        goto out;
    }
    int n_all;
    const int *all = uhlm_device_tokens(d, &n_all);
    int ng = n_all - e->np[i];
    const int *gen = all + e->np[i];
    if (out_tokens) {
        *out_tokens = malloc(sizeof(int) * (size_t)(ng ? ng : 1));
        if (!*out_tokens) {
            fprintf(stderr, "\nuhlm %s: out of memory\n", e->cmd);
            goto out;
        }
        memcpy(*out_tokens, gen, sizeof(int) * (size_t)ng);
        *out_n = ng;
    }
    double nll = NAN, cosv = NAN;
    if (c->want_quality) {
        /* the embedding sees the text only: a final EOS is not part of it */
        int ne = ng > 0 && uhlm_tokenizer_is_eog(e->slm->tok, gen[ng - 1]) ? ng - 1 : ng;
        float *emb = out_emb ? out_emb : e->emb;
        double sum;
        if (uhlm_embed_tokens(e->qctx, gen, ne, emb, &err) != 0 ||
            (ng > 0 && uhlm_sequence_nll(e->qctx, all, n_all, e->np[i], &sum, &err) != 0)) {
            fprintf(stderr, "\nuhlm %s: quality of prompt %s: %s\n", e->cmd, e->ps.items[i].id,
                    err.msg);
            goto out;
        }
        if (ng > 0) nll = sum / ng;
        if (a) {
            if (ng > 0) {
                a->nll_sum += sum;
                a->nll_n += ng;
            }
            if (e->ref_emb) {
                cosv = uhlm_cosine(emb, e->ref_emb + (size_t)i * e->D, e->D);
                a->cos_sum += cosv;
                a->cos_n++;
            }
        }
    }
    if (a) {
        int needs_u = uhlm_policy_needs_u(&p.policy);
        double comp = s->slm_s + s->llm_s + (needs_u ? s->unc_s : 0.0);
        a->runs++;
        a->gen += s->generated;
        a->trans += s->transmitted;
        a->skipped += s->skipped;
        a->rejected += s->rejected;
        a->accepted += s->accepted;
        a->outright += s->accepted_outright;
        a->catchup += s->catchup_tokens;
        a->llm_calls += s->llm_forward_calls;
        a->sh_eval += s->shadow_evaluated;
        a->sh_true += s->shadow_true_skips;
        a->up_bits += (double)s->uplink_bits;
        a->down_bits += (double)s->downlink_bits;
        a->slm_s += s->slm_s;
        a->unc_s += needs_u ? s->unc_s : 0.0;
        a->llm_s += s->llm_s;
        a->compute_s += comp;
        for (int k = 0; k < e->n_snr; k++) {
            uhlm_channel_params cp = p.channel;
            cp.up.snr_db = cp.down.snr_db = e->snr[k];
            double up, down;
            uhlm_msglog_replay(&e->evs.log, &cp, seed, &up, &down);
            a->link_s[k] += up + down;
        }
    }
    if (label) {
        sb_printf(&e->per_prompt, "%s,", label);
        sb_csv_str(&e->per_prompt, e->ps.items[i].id);
        sb_printf(&e->per_prompt, ",%d,%d,%d,%d,%.6g,%.6g,%.6g\n", s->generated, s->transmitted,
                  s->skipped, s->rejected, (double)s->uplink_bits / 8.0, cosv, nll);
        if (e->per_prompt.oom) {
            fprintf(stderr, "\nuhlm %s: out of memory\n", e->cmd);
            goto out;
        }
    }
    rc = 0;
out:
    uhlm_device_free(d);
    uhlm_progress_step(&e->pg, 1);
    return rc;
}

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }
static cJSON *num(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }
static double acc_cos(const acc *a) { return a->cos_n ? a->cos_sum / a->cos_n : NAN; }
static double acc_ppl(const acc *a) { return a->nll_n ? exp(a->nll_sum / a->nll_n) : NAN; }
static double acc_nll(const acc *a) { return a->nll_n ? a->nll_sum / a->nll_n : NAN; }
static double acc_tput(const acc *a, int k) { return ratio((double)a->gen, a->compute_s + a->link_s[k]); }

/* The q-quantile of u over samples (nearest rank). */
static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

typedef struct sweep_pt {
    uhlm_unc_method method;
    double q, u_th, skip;
    acc u, r;
} sweep_pt;

typedef struct method_fit {
    uhlm_unc_method method;
    uhlm_linfit fit;
    int ok;
    size_t n;
    double delta;
    uhlm_calib_bin bins[N_BINS];
} method_fit;

static int mkdir_p(const char *dir) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
        errno = ENOTDIR;
    }
    return -1;
}

static int write_out(const char *dir, const char *name, const sbuf *b) {
    char path[4096];
    uhlm_error err = {{0}};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (b->oom) {
        fprintf(stderr, "uhlm eval: out of memory writing %s\n", path);
        return -1;
    }
    if (uhlm_write_file_atomic(path, b->s ? b->s : "", b->len, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        return -1;
    }
    return 0;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    const char *slm_arg = UHLM_DEFAULT_SLM, *llm_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    const char *prompts_path = NULL, *out_dir = NULL, *calib_path = NULL, *risk = NULL;
    const char *modes_arg = "slm,llm,hlm,rand,uhlm", *sweep_methods_arg = NULL;
    long threads = 1, n_gen = 64, top_k = 0, samples_m = UHLM_UNC_DEFAULT_SAMPLES, limit = 0;
    long max_in_mb = UHLM_INPUT_MAX_MB;
    double temp = 1.0, top_p = 1.0, theta_max = UHLM_UNC_DEFAULT_THETA_MAX, split = -1;
    double bw = UHLM_CHANNEL_DEFAULT_BANDWIDTH, lat = 0.0, uth = NAN, skip_prob = NAN;
    double sweep_snr = 0.0;
    double sweep_q[MAX_SWEEP] = {0.2, 0.4, 0.6, 0.8};
    int n_sweep = 4, greedy = 1, no_chat = 0;
    uint64_t seed = 42;
    const char *server = NULL, *token_file = NULL;
    double connect_to = 3.0, read_to = 30.0;
    uhlm_device_params dp = uhlm_device_default_params();
    uhlm_error err = {{0}};
    env E;
    memset(&E, 0, sizeof E);
    E.cmd = cmd;
    double snr_default[] = {-10, -5, 0, 5, 10, 20, 30};
    E.n_snr = 7;
    memcpy(E.snr, snr_default, sizeof snr_default);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-greedy")) {
            greedy = 0;
            continue;
        }
        if (!strcmp(a, "--no-chat")) {
            no_chat = 1;
            continue;
        }
        static const char *const valued[] = {
            "-m",          "--llm",       "-z",        "--prompts", "-o",          "--modes",
            "--snr",       "--calib",     "--risk",    "--uth",     "--skip-prob", "--payload",
            "--uncertainty", "--samples", "--theta-max", "--temp",  "--top-k",     "--top-p",
            "-n",          "--limit",     "--split",   "--bandwidth", "--latency", "--fading",
            "--sweep",     "--sweep-methods", "--sweep-snr", "--seed", "-t",       "--server",
            "--auth-token-file", "--connect-timeout", "--read-timeout", "--max-input-mb"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
        if (!known) {
            fprintf(stderr, "uhlm eval: unknown option '%s' (see 'uhlm eval --help')\n", a);
            return 2;
        }
        if (!(v = cli_need_arg(cmd, argc, argv, &i))) return 2;
        int bad = 0;
        if (!strcmp(a, "-m"))
            slm_arg = v;
        else if (!strcmp(a, "--llm"))
            llm_arg = v;
        else if (!strcmp(a, "-z"))
            tok_arg = v;
        else if (!strcmp(a, "--prompts"))
            prompts_path = v;
        else if (!strcmp(a, "-o"))
            out_dir = v;
        else if (!strcmp(a, "--modes"))
            modes_arg = v;
        else if (!strcmp(a, "--calib"))
            calib_path = v;
        else if (!strcmp(a, "--risk"))
            risk = v;
        else if (!strcmp(a, "--sweep-methods"))
            sweep_methods_arg = v;
        else if (!strcmp(a, "--server"))
            server = v;
        else if (!strcmp(a, "--auth-token-file"))
            token_file = v;
        else if (!strcmp(a, "--connect-timeout"))
            bad = cli_parse_float(cmd, a, v, 1e-3, 3600, &connect_to);
        else if (!strcmp(a, "--max-input-mb"))
            bad = cli_parse_int(cmd, a, v, 1, 1 << 20, &max_in_mb);
        else if (!strcmp(a, "--read-timeout"))
            bad = cli_parse_float(cmd, a, v, 1e-3, 86400, &read_to);
        else if (!strcmp(a, "--snr")) {
            bad = (E.n_snr = parse_list(cmd, a, v, E.snr, MAX_SNR, -200, 200)) < 0;
        } else if (!strcmp(a, "--sweep")) {
            if (!strcmp(v, "none"))
                n_sweep = 0;
            else
                bad = (n_sweep = parse_list(cmd, a, v, sweep_q, MAX_SWEEP, 0.0, 1.0)) < 0;
        } else if (!strcmp(a, "--sweep-snr"))
            bad = cli_parse_float(cmd, a, v, -200, 200, &sweep_snr);
        else if (!strcmp(a, "--uth"))
            bad = cli_parse_float(cmd, a, v, -1e9, 1e9, &uth);
        else if (!strcmp(a, "--skip-prob"))
            bad = cli_parse_float(cmd, a, v, 0.0, 1.0, &skip_prob);
        else if (!strcmp(a, "--samples"))
            bad = cli_parse_int(cmd, a, v, 1, 1000000, &samples_m);
        else if (!strcmp(a, "--theta-max"))
            bad = cli_parse_float(cmd, a, v, 1e-6, 1e6, &theta_max);
        else if (!strcmp(a, "--temp"))
            bad = cli_parse_float(cmd, a, v, 0, 1e6, &temp);
        else if (!strcmp(a, "--top-k"))
            bad = cli_parse_int(cmd, a, v, 0, 1 << 24, &top_k);
        else if (!strcmp(a, "--top-p"))
            bad = cli_parse_float(cmd, a, v, 1e-9, 1.0, &top_p);
        else if (!strcmp(a, "-n"))
            bad = cli_parse_int(cmd, a, v, 1, 1 << 20, &n_gen);
        else if (!strcmp(a, "--limit"))
            bad = cli_parse_int(cmd, a, v, 1, 1L << 30, &limit);
        else if (!strcmp(a, "--split"))
            bad = cli_parse_float(cmd, a, v, 0.0, 1.0, &split);
        else if (!strcmp(a, "--bandwidth"))
            bad = cli_parse_float(cmd, a, v, 1e-3, 1e15, &bw);
        else if (!strcmp(a, "--latency"))
            bad = cli_parse_float(cmd, a, v, 0.0, 1e6, &lat);
        else if (!strcmp(a, "--seed"))
            bad = cli_parse_u64(cmd, a, v, &seed);
        else if (!strcmp(a, "-t"))
            bad = cli_parse_int(cmd, a, v, 0, 1024, &threads);
        else if (!strcmp(a, "--fading")) {
            if ((bad = uhlm_fading_parse(v, &dp.channel.fading) != 0))
                fprintf(stderr, "uhlm eval: unknown fading model '%s' (none, rayleigh)\n", v);
        } else if (!strcmp(a, "--payload")) {
            if ((bad = uhlm_payload_parse(v, &dp.payload, &err) != 0))
                fprintf(stderr, "uhlm eval: %s\n", err.msg);
        } else if (!strcmp(a, "--uncertainty")) {
            if ((bad = uhlm_unc_method_parse(v, &dp.unc.method) != 0))
                fprintf(stderr,
                        "uhlm eval: unknown uncertainty '%s' (perturb, entropy, maxprob, margin)\n",
                        v);
        }
        if (bad) return 2;
    }
    if (!prompts_path || !out_dir) {
        fprintf(stderr, "uhlm eval: --prompts FILE and -o DIR are required (see 'uhlm eval --help')\n");
        return 2;
    }
    if ((calib_path != NULL) != (risk != NULL)) {
        fprintf(stderr, "uhlm eval: --calib and --risk go together (--calib F --risk "
                        "averse|prone|budget|budget:R)\n");
        return 2;
    }
    if (calib_path && !isnan(uth)) {
        fprintf(stderr, "uhlm eval: give either --uth or --calib/--risk, not both\n");
        return 2;
    }
    if (risk && uhlm_calib_risk_parse(risk, NULL, NULL, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        return 2;
    }
    cli_remote remote;
    int remote_rc = cli_remote_setup("eval", server, token_file, &remote);
    if (remote_rc != 0) return remote_rc;
    /* modes */
    int want[5] = {0};
    {
        const char *p = modes_arg;
        while (*p) {
            const char *c = strchr(p, ',');
            size_t k = c ? (size_t)(c - p) : strlen(p);
            char tmp[16];
            uhlm_mode m;
            if (k == 0 || k >= sizeof tmp) {
                fprintf(stderr, "uhlm eval: invalid --modes '%s'\n", modes_arg);
                return 2;
            }
            memcpy(tmp, p, k);
            tmp[k] = '\0';
            if (uhlm_mode_parse(tmp, &m) != 0) {
                fprintf(stderr, "uhlm eval: unknown mode '%s' in --modes (slm, llm, hlm, rand, uhlm)\n",
                        tmp);
                return 2;
            }
            want[m] = 1;
            p += k + (c ? 1 : 0);
        }
    }
    /* sweep methods */
    uhlm_unc_method smeth[4];
    int n_smeth = 0;
    if (sweep_methods_arg) {
        const char *p = sweep_methods_arg;
        while (*p) {
            const char *c = strchr(p, ',');
            size_t k = c ? (size_t)(c - p) : strlen(p);
            char tmp[16];
            uhlm_unc_method m;
            if (k == 0 || k >= sizeof tmp || n_smeth == 4) {
                fprintf(stderr, "uhlm eval: invalid --sweep-methods '%s'\n", sweep_methods_arg);
                return 2;
            }
            memcpy(tmp, p, k);
            tmp[k] = '\0';
            if (uhlm_unc_method_parse(tmp, &m) != 0) {
                fprintf(stderr,
                        "uhlm eval: unknown method '%s' in --sweep-methods (perturb, entropy, "
                        "maxprob, margin)\n",
                        tmp);
                return 2;
            }
            smeth[n_smeth++] = m;
            p += k + (c ? 1 : 0);
        }
    } else {
        smeth[n_smeth++] = dp.unc.method;
    }
    if (n_sweep == 0) n_smeth = 0;
    if (calib_path && uhlm_calib_load_threshold_max(calib_path, risk, (uint64_t)max_in_mb << 20, &uth, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        return 1;
    }
    if (isnan(uth)) uth = 0.2;
    dp.n_gen = (int)n_gen;
    dp.sampling = (uhlm_sampling){(float)temp, (int)top_k, (float)top_p};
    dp.unc.samples = (int)samples_m;
    dp.unc.theta_max = theta_max;
    dp.channel.up = (uhlm_link){bw, 10.0, lat};
    dp.channel.down = dp.channel.up;
    E.base = dp;
    if (uhlm_channel_params_check(&dp.channel, &err) || uhlm_sampling_check(&dp.sampling, &err)) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        return 2;
    }
    /* the sweep's SNR joins the grid (replays are cheap), so its throughput is at hand */
    int k_sweep = -1;
    for (int k = 0; k < E.n_snr; k++)
        if (E.snr[k] == sweep_snr) k_sweep = k;
    if (k_sweep < 0) {
        if (E.n_snr == MAX_SNR) {
            fprintf(stderr, "uhlm eval: too many SNR values\n");
            return 2;
        }
        E.snr[E.n_snr] = sweep_snr;
        k_sweep = E.n_snr;
    }
    int n_snr_report = E.n_snr;
    if (k_sweep == E.n_snr) E.n_snr++;

    int rc = 1;
    acc main_acc[5], greedy_acc[5], llm_self;
    memset(main_acc, 0, sizeof main_acc);
    memset(greedy_acc, 0, sizeof greedy_acc);
    memset(&llm_self, 0, sizeof llm_self);
    sweep_pt *sw = NULL;
    method_fit mf[5];
    memset(mf, 0, sizeof mf);
    int n_mf = 0;
    evc_samples rec = {0}, rec2 = {0};
    double *uvals = NULL;
    double rand_prob = NAN;
    sbuf csv = {0}, md = {0}, scsv = {0}, mcsv = {0}, bcsv = {0};
    cJSON *root = NULL;
    char *js = NULL;
    double w0 = uhlm_now();

    uhlm_prompt_set all_ps = {0};
    if (uhlm_prompts_load_max(prompts_path, (uint64_t)max_in_mb << 20, &all_ps, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        goto done;
    }
    if (split >= 0) {
        if (uhlm_prompts_split(&all_ps, split, 0, &E.ps, &err) != 0) {
            fprintf(stderr, "uhlm eval: %s\n", err.msg);
            goto done;
        }
        if (E.ps.n == 0) {
            fprintf(stderr, "uhlm eval: the held-out part of --split %g is empty\n", split);
            goto done;
        }
    } else {
        E.ps = all_ps;
        all_ps = (uhlm_prompt_set){0};
    }
    E.n_prompts = limit > 0 && limit < E.ps.n ? (int)limit : E.ps.n;
    if (mkdir_p(out_dir) != 0) {
        fprintf(stderr, "uhlm eval: cannot create output folder %s: %s\n", out_dir, strerror(errno));
        goto done;
    }
    if (!(E.slm = cli_load_model(cmd, slm_arg, tok_arg, "SLM")) ||
        !(E.llm = cli_load_model(cmd, llm_arg, tok_arg, "LLM")) || evc_check_pair(cmd, E.slm, E.llm))
        goto done;
    if (cli_check_payload(cmd, &dp.payload, E.slm) != 0) {
        rc = 2;
        goto done;
    }
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)threads;
    if (!(E.slm_ctx = uhlm_ctx_new(E.slm, &cp, &err)) || !(E.shadow = uhlm_ctx_new(E.llm, &cp, &err)) ||
        !(E.qctx = uhlm_ctx_new(E.llm, &cp, &err))) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        goto done;
    }
    if (server) {
        if (!(E.ver = cli_remote_verifier(&remote, E.slm, "uhlm-eval", connect_to, read_to, seed,
                                          remote_log, &err))) {
            fprintf(stderr, "uhlm eval: --server %s: %s\n", server, err.msg);
            goto done;
        }
        E.remote = 1;
    } else if (!(E.ver = uhlm_verifier_inproc_new(E.llm, &cp, &err))) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        goto done;
    }
    {
        /* validates the payload and sampling against the pair once, before any work */
        uhlm_device *d = uhlm_device_new(E.slm_ctx, 0, E.ver, E.shadow, &dp, &err);
        if (!d) {
            fprintf(stderr, "uhlm eval: %s\n", err.msg);
            goto done;
        }
        E.n_ctx = uhlm_device_n_ctx(d);
        uhlm_device_free(d);
        /* the device connects lazily and carries on alone when the server is down; an eval
         * must not, so an unreachable server is an error here, before any work */
        uhlm_remote_stats rst;
        if (E.remote && (uhlm_remote_get_stats(E.ver, &rst) != 0 || rst.connects == 0)) {
            fprintf(stderr, "uhlm eval: cannot reach the server at %s (is `uhlm serve` running "
                            "there?)\n", server);
            goto done;
        }
        uhlm_verifier_info vi;
        if (E.remote && uhlm_verifier_info_get(E.ver, &vi, &err) == 0) {
            /* quality and the shadow use the local LLM: warn when the server's is another */
            const char *lb = strrchr(E.llm->path, '/'), *rb = strrchr(vi.model, '/');
            lb = lb ? lb + 1 : E.llm->path;
            rb = rb ? rb + 1 : vi.model;
            size_t rn = strcspn(rb, "@"); /* the remote verifier appends @host:port */
            if (vi.model[0] && (strlen(lb) != rn || strncmp(lb, rb, rn)))
                fprintf(stderr, "uhlm eval: warning: the server runs %s, the local LLM (shadow and "
                                "quality) is %s\n", vi.model, E.llm->path);
        }
    }
    E.D = E.llm->cfg.dim;
    int NP = E.n_prompts;
    E.ids = calloc((size_t)NP, sizeof *E.ids);
    E.np = calloc((size_t)NP, sizeof *E.np);
    E.seeds = calloc((size_t)NP, sizeof *E.seeds);
    E.ref_emb = malloc(sizeof(float) * (size_t)NP * (size_t)E.D);
    E.ref_greedy = calloc((size_t)NP, sizeof *E.ref_greedy);
    E.ref_greedy_n = calloc((size_t)NP, sizeof *E.ref_greedy_n);
    E.emb = malloc(sizeof(float) * (size_t)E.D);
    sw = calloc((size_t)(n_smeth * n_sweep + 1), sizeof *sw);
    if (!E.ids || !E.np || !E.seeds || !E.ref_emb || !E.ref_greedy || !E.ref_greedy_n || !E.emb || !sw) {
        fprintf(stderr, "uhlm eval: out of memory\n");
        goto done;
    }
    const int chat = cli_prompts_chat(cmd, E.slm, no_chat);
    for (int i = 0; i < NP; i++) {
        const uhlm_prompt *p = &E.ps.items[i];
        if (!(E.ids[i] = malloc(sizeof(int) * ((size_t)E.n_ctx + 1)))) {
            fprintf(stderr, "uhlm eval: out of memory\n");
            goto done;
        }
        E.np[i] = cli_prompt_tokens(E.slm, chat, p->text, E.ids[i], E.n_ctx + 1, &err);
        if (E.np[i] < 0) {
            fprintf(stderr, "uhlm eval: prompt %s: %s\n", p->id, err.msg);
            goto done;
        }
        if (E.np[i] >= E.n_ctx) {
            fprintf(stderr, "uhlm eval: prompt %s is %d tokens, the context holds %d\n", p->id,
                    E.np[i], E.n_ctx);
            goto done;
        }
        E.seeds[i] = evc_prompt_seed(seed, p->id);
    }
    sb_printf(&E.per_prompt, "run,prompt_id,generated,transmitted,skipped,rejected,uplink_bytes,cos_sim,nll\n");

    /* total runs, for the progress bar */
    long total = 0;
    int n_main = 0;
    for (int m = 0; m < 5; m++) n_main += want[m] || m == UHLM_MODE_LLM;
    total = (long)NP * (n_main + 1) * (greedy ? 2 : 1);
    for (int k = 0; k < n_smeth; k++)
        total += (long)NP * (2 * n_sweep + !(smeth[k] == dp.unc.method && want[UHLM_MODE_HLM]));
    uhlm_progress_init(&E.pg, stderr, total, "eval");

    /* 1. the llm reference and its run-to-run similarity */
    cfg cllm = {UHLM_MODE_LLM, uth, 0, dp.unc.method, 0, 0, 1};
    float *ref_all = E.ref_emb;
    E.ref_emb = NULL; /* the reference runs fill it, not compare with it */
    for (int i = 0; i < NP; i++)
        if (run_one(&E, &cllm, i, E.seeds[i], &main_acc[UHLM_MODE_LLM], "llm", NULL, NULL, NULL,
                    ref_all + (size_t)i * E.D))
            goto done;
    E.ref_emb = ref_all;
    for (int i = 0; i < NP; i++)
        if (run_one(&E, &cllm, i, E.seeds[i] ^ 0x9e3779b97f4a7c15ULL, &llm_self, "llm-seed2", NULL,
                    NULL, NULL, NULL))
            goto done;
    /* 2. the other modes; hlm records u for the fit; rand follows uhlm to match its rate */
    uhlm_mode order[4] = {UHLM_MODE_SLM, UHLM_MODE_HLM, UHLM_MODE_UHLM, UHLM_MODE_RAND};
    for (int oi = 0; oi < 4; oi++) {
        uhlm_mode m = order[oi];
        if (!want[m]) continue;
        cfg c = {m, uth, 0, dp.unc.method, 0, m == UHLM_MODE_HLM, 1};
        if (m == UHLM_MODE_RAND) {
            if (want[UHLM_MODE_UHLM])
                rand_prob = ratio((double)main_acc[UHLM_MODE_UHLM].skipped,
                                  (double)main_acc[UHLM_MODE_UHLM].gen);
            else
                rand_prob = isnan(skip_prob) ? 0.5 : skip_prob;
            if (!isfinite(rand_prob)) rand_prob = 0;
            c.skip_prob = rand_prob;
        }
        for (int i = 0; i < NP; i++)
            if (run_one(&E, &c, i, E.seeds[i], &main_acc[m], uhlm_mode_name(m),
                        m == UHLM_MODE_HLM ? &rec : NULL, NULL, NULL, NULL))
                goto done;
        if (m == UHLM_MODE_HLM) {
            method_fit *F = &mf[n_mf++];
            F->method = dp.unc.method;
            F->ok = uhlm_calib_fit(rec.s, rec.n, &F->fit, &err) == 0;
            F->n = rec.n;
            F->delta = uhlm_calib_delta(rec.s, rec.n);
            uhlm_calib_bins(rec.s, rec.n, N_BINS, F->bins);
        }
    }
    /* 3. temperature 0: exact match against greedy llm */
    if (greedy) {
        cfg g = {UHLM_MODE_LLM, uth, 0, dp.unc.method, 1, 0, 0};
        for (int i = 0; i < NP; i++)
            if (run_one(&E, &g, i, E.seeds[i], &greedy_acc[UHLM_MODE_LLM], NULL, NULL,
                        &E.ref_greedy[i], &E.ref_greedy_n[i], NULL))
                goto done;
        greedy_acc[UHLM_MODE_LLM].exact_n = greedy_acc[UHLM_MODE_LLM].exact_total = NP;
        greedy_acc[UHLM_MODE_LLM].prefix_sum = NP;
        for (int oi = 0; oi < 4; oi++) {
            uhlm_mode m = order[oi];
            if (!want[m]) continue;
            g.mode = m;
            g.skip_prob = m == UHLM_MODE_RAND ? rand_prob : 0;
            for (int i = 0; i < NP; i++) {
                int *t = NULL, n = 0;
                if (run_one(&E, &g, i, E.seeds[i], &greedy_acc[m], NULL, NULL, &t, &n, NULL))
                    goto done;
                int rn = E.ref_greedy_n[i], pre = 0;
                while (pre < n && pre < rn && t[pre] == E.ref_greedy[i][pre]) pre++;
                greedy_acc[m].exact_n += pre == n && n == rn;
                greedy_acc[m].exact_total++;
                greedy_acc[m].prefix_sum += (double)pre / (double)(rn > n ? (rn ? rn : 1) : (n ? n : 1));
                free(t);
            }
        }
    }
    /* 4. the sweep: per method, u from hlm, u_th at its quantiles, rand at the same rate */
    int n_sw = 0;
    for (int k = 0; k < n_smeth; k++) {
        evc_samples *R = &rec;
        if (!(smeth[k] == dp.unc.method && want[UHLM_MODE_HLM])) {
            /* this method's u comes from its own hlm pass (the main one recorded another) */
            R = &rec2;
            rec2.n = 0;
            cfg c = {UHLM_MODE_HLM, uth, 0, smeth[k], 0, 1, 0};
            for (int i = 0; i < NP; i++)
                if (run_one(&E, &c, i, E.seeds[i], NULL, NULL, &rec2, NULL, NULL, NULL)) goto done;
            method_fit *F = &mf[n_mf++];
            F->method = smeth[k];
            F->ok = uhlm_calib_fit(rec2.s, rec2.n, &F->fit, &err) == 0;
            F->n = rec2.n;
            F->delta = uhlm_calib_delta(rec2.s, rec2.n);
            uhlm_calib_bins(rec2.s, rec2.n, N_BINS, F->bins);
        }
        free(uvals);
        if (!(uvals = malloc(sizeof(double) * (R->n ? R->n : 1)))) {
            fprintf(stderr, "uhlm eval: out of memory\n");
            goto done;
        }
        for (size_t j = 0; j < R->n; j++) uvals[j] = R->s[j].u;
        qsort(uvals, R->n, sizeof *uvals, cmp_d);
        for (int q = 0; q < n_sweep; q++) {
            sweep_pt *P = &sw[n_sw++];
            P->method = smeth[k];
            P->q = sweep_q[q];
            size_t r = R->n ? (size_t)floor(sweep_q[q] * (double)(R->n - 1) + 0.5) : 0;
            P->u_th = R->n ? uvals[r] : 0;
            cfg c = {UHLM_MODE_UHLM, P->u_th, 0, smeth[k], 0, 0, 1};
            char label[64];
            snprintf(label, sizeof label, "sweep-uhlm-%s-q%.2f", uhlm_unc_method_name(smeth[k]), P->q);
            for (int i = 0; i < NP; i++)
                if (run_one(&E, &c, i, E.seeds[i], &P->u, label, NULL, NULL, NULL, NULL)) goto done;
            P->skip = ratio((double)P->u.skipped, (double)P->u.gen);
            if (!isfinite(P->skip)) P->skip = 0;
            cfg cr = {UHLM_MODE_RAND, 0, P->skip, smeth[k], 0, 0, 1};
            snprintf(label, sizeof label, "sweep-rand-%s-q%.2f", uhlm_unc_method_name(smeth[k]), P->q);
            for (int i = 0; i < NP; i++)
                if (run_one(&E, &cr, i, E.seeds[i], &P->r, label, NULL, NULL, NULL, NULL)) goto done;
        }
    }
    uhlm_progress_end(&E.pg);
    double wall = uhlm_now() - w0;

    /* ---- outputs ---- */
    double cos_llm = acc_cos(&llm_self), cos_hlm = want[UHLM_MODE_HLM] ? acc_cos(&main_acc[UHLM_MODE_HLM]) : NAN;
    double ppl_llm = acc_ppl(&main_acc[UHLM_MODE_LLM]),
           ppl_hlm = want[UHLM_MODE_HLM] ? acc_ppl(&main_acc[UHLM_MODE_HLM]) : NAN;
    const acc *H = want[UHLM_MODE_HLM] ? &main_acc[UHLM_MODE_HLM] : NULL;
    sb_printf(&csv, "mode,snr_db,prompts,generated,throughput_tok_s,accounted_s,compute_s,link_s,"
                    "tr,tsr,rejection_rate,uplink_bytes,uplink_bytes_per_token,llm_calls,"
                    "catchup_tokens,skip_prob,cos_sim,cos_pct_llm,cos_pct_hlm,nll,ppl,ppl_pct_llm,"
                    "ppl_pct_hlm,exact_match,prefix_match,speedup_vs_hlm,uplink_reduction_vs_hlm\n");
    if (!(root = cJSON_CreateObject())) goto oom;
    cJSON *cfgj = cJSON_AddObjectToObject(root, "config");
    cJSON *rows = cJSON_AddArrayToObject(root, "results");
    if (!cfgj || !rows) goto oom;
    {
        char pb[64];
        cJSON_AddStringToObject(cfgj, "slm", E.slm->path);
        cJSON_AddStringToObject(cfgj, "llm", E.llm->path);
        cJSON_AddStringToObject(cfgj, "prompts", prompts_path);
        cJSON_AddNumberToObject(cfgj, "n_prompts", NP);
        cJSON_AddNumberToObject(cfgj, "n_gen", (double)n_gen);
        cJSON_AddNumberToObject(cfgj, "temperature", temp);
        uhlm_payload_format(&dp.payload, pb, sizeof pb);
        cJSON_AddStringToObject(cfgj, "payload", pb);
        cJSON_AddStringToObject(cfgj, "uncertainty", uhlm_unc_method_name(dp.unc.method));
        cJSON_AddNumberToObject(cfgj, "u_th", uth);
        cJSON_AddItemToObject(cfgj, "rand_skip_prob", num(rand_prob));
        cJSON_AddStringToObject(cfgj, "threshold_source", calib_path ? calib_path : "--uth");
        if (risk) cJSON_AddStringToObject(cfgj, "risk", risk);
        cJSON_AddNumberToObject(cfgj, "bandwidth_hz", bw);
        cJSON_AddStringToObject(cfgj, "fading", uhlm_fading_name(dp.channel.fading));
        cJSON_AddNumberToObject(cfgj, "sweep_snr_db", sweep_snr);
        snprintf(pb, sizeof pb, "%llu", (unsigned long long)seed);
        cJSON_AddStringToObject(cfgj, "seed", pb);
        cJSON_AddNumberToObject(cfgj, "threads", (double)threads);
        if (server) cJSON_AddStringToObject(cfgj, "server", server);
        cJSON_AddNumberToObject(cfgj, "wall_seconds", wall);
        cJSON_AddItemToObject(cfgj, "llm_self_cos_sim", num(cos_llm));
    }
    uhlm_mode rep[5] = {UHLM_MODE_SLM, UHLM_MODE_LLM, UHLM_MODE_HLM, UHLM_MODE_RAND, UHLM_MODE_UHLM};
    for (int ri = 0; ri < 5; ri++) {
        uhlm_mode m = rep[ri];
        if (!want[m]) continue;
        const acc *a = &main_acc[m];
        const acc *g = &greedy_acc[m];
        double cosv = m == UHLM_MODE_LLM ? cos_llm : acc_cos(a), ppl = acc_ppl(a);
        double tr = ratio((double)a->trans, (double)a->gen);
        double tsr = a->sh_eval ? (double)a->sh_true / a->sh_eval : NAN;
        double rej = ratio((double)a->rejected, (double)a->trans);
        double exact = greedy ? ratio((double)g->exact_n, (double)g->exact_total) : NAN;
        double prefix = greedy ? ratio(g->prefix_sum, (double)g->exact_total) : NAN;
        double upred = H ? 1.0 - ratio((double)a->trans, (double)H->trans) : NAN;
        for (int k = 0; k < n_snr_report; k++) {
            double tp = acc_tput(a, k), sp = H ? tp / acc_tput(H, k) : NAN;
            sb_printf(&csv, "%s,%g,%d,%ld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.0f,%.6g,%ld,%ld,%.6g,"
                            "%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n",
                      uhlm_mode_name(m), E.snr[k], NP, a->gen, tp, a->compute_s + a->link_s[k],
                      a->compute_s, a->link_s[k], tr, tsr, rej, a->up_bits / 8.0,
                      ratio(a->up_bits / 8.0, (double)a->gen), a->llm_calls, a->catchup,
                      m == UHLM_MODE_RAND ? rand_prob : NAN, cosv, 100 * cosv / cos_llm,
                      100 * cosv / cos_hlm, acc_nll(a), ppl, 100 * ppl_llm / ppl,
                      100 * ppl_hlm / ppl, exact, prefix, sp, upred);
            cJSON *o = cJSON_CreateObject();
            if (!o) goto oom;
            cJSON_AddItemToArray(rows, o);
            cJSON_AddStringToObject(o, "mode", uhlm_mode_name(m));
            cJSON_AddNumberToObject(o, "snr_db", E.snr[k]);
            cJSON_AddNumberToObject(o, "generated", (double)a->gen);
            cJSON_AddItemToObject(o, "throughput_tok_s", num(tp));
            cJSON_AddNumberToObject(o, "accounted_s", a->compute_s + a->link_s[k]);
            cJSON_AddNumberToObject(o, "compute_s", a->compute_s);
            cJSON_AddNumberToObject(o, "slm_s", a->slm_s);
            cJSON_AddNumberToObject(o, "unc_s", a->unc_s);
            cJSON_AddNumberToObject(o, "llm_s", a->llm_s);
            cJSON_AddNumberToObject(o, "link_s", a->link_s[k]);
            cJSON_AddItemToObject(o, "tr", num(tr));
            cJSON_AddItemToObject(o, "tsr", num(tsr));
            cJSON_AddItemToObject(o, "rejection_rate", num(rej));
            cJSON_AddNumberToObject(o, "transmitted", (double)a->trans);
            cJSON_AddNumberToObject(o, "skipped", (double)a->skipped);
            cJSON_AddNumberToObject(o, "uplink_bytes", a->up_bits / 8.0);
            cJSON_AddNumberToObject(o, "downlink_bytes", a->down_bits / 8.0);
            cJSON_AddNumberToObject(o, "llm_calls", (double)a->llm_calls);
            cJSON_AddNumberToObject(o, "catchup_tokens", (double)a->catchup);
            cJSON_AddItemToObject(o, "cos_sim", num(cosv));
            cJSON_AddItemToObject(o, "cos_pct_llm", num(100 * cosv / cos_llm));
            cJSON_AddItemToObject(o, "cos_pct_hlm", num(100 * cosv / cos_hlm));
            cJSON_AddItemToObject(o, "nll", num(acc_nll(a)));
            cJSON_AddItemToObject(o, "ppl", num(ppl));
            cJSON_AddItemToObject(o, "ppl_pct_llm", num(100 * ppl_llm / ppl));
            cJSON_AddItemToObject(o, "ppl_pct_hlm", num(100 * ppl_hlm / ppl));
            cJSON_AddItemToObject(o, "exact_match", num(exact));
            cJSON_AddItemToObject(o, "prefix_match", num(prefix));
            cJSON_AddItemToObject(o, "speedup_vs_hlm", num(sp));
            cJSON_AddItemToObject(o, "uplink_reduction_vs_hlm", num(upred));
        }
    }
    /* sweep */
    sb_printf(&scsv, "method,quantile,u_th,kind,skip_rate,tr,tsr,rejection_rate,throughput_tok_s,"
                     "cos_sim,cos_pct_llm,nll,ppl\n");
    cJSON *swj = cJSON_AddArrayToObject(root, "sweep");
    if (!swj) goto oom;
    for (int s = 0; s < n_sw; s++) {
        const sweep_pt *P = &sw[s];
        const acc *two[2] = {&P->u, &P->r};
        const char *kinds[2] = {"uhlm", "rand"};
        for (int j = 0; j < 2; j++) {
            const acc *a = two[j];
            double cosv = acc_cos(a);
            double tsr = a->sh_eval ? (double)a->sh_true / a->sh_eval : NAN;
            sb_printf(&scsv, "%s,%g,%.6g,%s,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n",
                      uhlm_unc_method_name(P->method), P->q, P->u_th, kinds[j],
                      ratio((double)a->skipped, (double)a->gen), ratio((double)a->trans, (double)a->gen),
                      tsr, ratio((double)a->rejected, (double)a->trans), acc_tput(a, k_sweep), cosv,
                      100 * cosv / cos_llm, acc_nll(a), acc_ppl(a));
            cJSON *o = cJSON_CreateObject();
            if (!o) goto oom;
            cJSON_AddItemToArray(swj, o);
            cJSON_AddStringToObject(o, "method", uhlm_unc_method_name(P->method));
            cJSON_AddNumberToObject(o, "quantile", P->q);
            cJSON_AddNumberToObject(o, "u_th", P->u_th);
            cJSON_AddStringToObject(o, "kind", kinds[j]);
            cJSON_AddItemToObject(o, "skip_rate", num(ratio((double)a->skipped, (double)a->gen)));
            cJSON_AddItemToObject(o, "tr", num(ratio((double)a->trans, (double)a->gen)));
            cJSON_AddItemToObject(o, "tsr", num(tsr));
            cJSON_AddItemToObject(o, "rejection_rate", num(ratio((double)a->rejected, (double)a->trans)));
            cJSON_AddItemToObject(o, "throughput_tok_s", num(acc_tput(a, k_sweep)));
            cJSON_AddItemToObject(o, "cos_sim", num(cosv));
            cJSON_AddItemToObject(o, "cos_pct_llm", num(100 * cosv / cos_llm));
            cJSON_AddItemToObject(o, "nll", num(acc_nll(a)));
            cJSON_AddItemToObject(o, "ppl", num(acc_ppl(a)));
        }
    }
    /* methods: fit and bins */
    sb_printf(&mcsv, "method,a,b,r2,tokens,delta\n");
    sb_printf(&bcsv, "method,lo,hi,count,fraction,mean_u,mean_beta,reject_rate\n");
    cJSON *mj = cJSON_AddArrayToObject(root, "methods");
    if (!mj) goto oom;
    for (int j = 0; j < n_mf; j++) {
        const method_fit *F = &mf[j];
        const char *nm = uhlm_unc_method_name(F->method);
        sb_printf(&mcsv, "%s,%.6g,%.6g,%.6g,%zu,%.6g\n", nm, F->ok ? F->fit.a : NAN,
                  F->ok ? F->fit.b : NAN, F->ok ? F->fit.r2 : NAN, F->n, F->delta);
        cJSON *o = cJSON_CreateObject();
        if (!o) goto oom;
        cJSON_AddItemToArray(mj, o);
        cJSON_AddStringToObject(o, "method", nm);
        cJSON_AddItemToObject(o, "a", num(F->ok ? F->fit.a : NAN));
        cJSON_AddItemToObject(o, "b", num(F->ok ? F->fit.b : NAN));
        cJSON_AddItemToObject(o, "r2", num(F->ok ? F->fit.r2 : NAN));
        cJSON_AddNumberToObject(o, "tokens", (double)F->n);
        cJSON_AddNumberToObject(o, "delta", F->delta);
        cJSON *bj = cJSON_AddArrayToObject(o, "bins");
        for (int b = 0; b < N_BINS; b++) {
            const uhlm_calib_bin *B = &F->bins[b];
            sb_printf(&bcsv, "%s,%g,%g,%zu,%.6g,%.6g,%.6g,%.6g\n", nm, B->lo, B->hi, B->count, B->frac,
                      B->mean_u, B->mean_beta, B->reject_rate);
            cJSON *bo = bj ? cJSON_CreateObject() : NULL;
            if (!bo) continue;
            cJSON_AddItemToArray(bj, bo);
            cJSON_AddNumberToObject(bo, "lo", B->lo);
            cJSON_AddNumberToObject(bo, "hi", B->hi);
            cJSON_AddNumberToObject(bo, "count", (double)B->count);
            cJSON_AddItemToObject(bo, "mean_u", num(B->mean_u));
            cJSON_AddItemToObject(bo, "mean_beta", num(B->mean_beta));
            cJSON_AddItemToObject(bo, "reject_rate", num(B->reject_rate));
        }
    }
    /* Markdown */
    sb_printf(&md, "# uhlm eval summary\n\n");
    sb_printf(&md, "SLM `%s`, LLM `%s`, %d prompts from `%s`, %ld tokens each, temperature %g, "
                   "payload %s, uncertainty %s, u_th %.4g (%s%s%s), rand skip probability %.4g, "
                   "bandwidth %g Hz, fading %s, seed %llu. Wall time %.1f s.\n\n",
              E.slm->path, E.llm->path, NP, prompts_path, n_gen, temp,
              cJSON_GetStringValue(cJSON_GetObjectItem(cfgj, "payload")),
              uhlm_unc_method_name(dp.unc.method), uth, calib_path ? calib_path : "--uth",
              risk ? ", risk " : "", risk ? risk : "", rand_prob, bw,
              uhlm_fading_name(dp.channel.fading), (unsigned long long)seed, wall);
    sb_printf(&md, "## Transmission and quality (SNR-independent)\n\n"
                   "| mode | TR | TSR | rejection | uplink kB/token | LLM calls | catch-up | cos sim | "
                   "cos %% llm | cos %% hlm | NLL | PPL | PPL %% llm | exact match (T=0) |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int ri = 0; ri < 5; ri++) {
        uhlm_mode m = rep[ri];
        if (!want[m]) continue;
        const acc *a = &main_acc[m];
        double cosv = m == UHLM_MODE_LLM ? cos_llm : acc_cos(a);
        sb_printf(&md, "| %s | %.3f | %.3f | %.3f | %.2f | %ld | %ld | %.4f | %.1f | %.1f | %.3f | %.2f | %.1f | %.3f |\n",
                  uhlm_mode_name(m), ratio((double)a->trans, (double)a->gen),
                  a->sh_eval ? (double)a->sh_true / a->sh_eval : NAN,
                  ratio((double)a->rejected, (double)a->trans), ratio(a->up_bits / 8000.0, (double)a->gen),
                  a->llm_calls, a->catchup, cosv, 100 * cosv / cos_llm, 100 * cosv / cos_hlm,
                  acc_nll(a), acc_ppl(a), 100 * ppl_llm / acc_ppl(a),
                  greedy ? ratio((double)greedy_acc[m].exact_n, (double)greedy_acc[m].exact_total) : NAN);
    }
    sb_printf(&md, "\nThe llm row's cosine similarity is between two llm runs with different seeds.\n\n"
                   "## Accounted throughput (tokens/s) against SNR\n\n| mode |");
    for (int k = 0; k < n_snr_report; k++) sb_printf(&md, " %g dB |", E.snr[k]);
    sb_printf(&md, "\n|---|");
    for (int k = 0; k < n_snr_report; k++) sb_printf(&md, "---|");
    sb_printf(&md, "\n");
    for (int ri = 0; ri < 5; ri++) {
        uhlm_mode m = rep[ri];
        if (!want[m]) continue;
        sb_printf(&md, "| %s |", uhlm_mode_name(m));
        for (int k = 0; k < n_snr_report; k++) sb_printf(&md, " %.1f |", acc_tput(&main_acc[m], k));
        sb_printf(&md, "\n");
    }
    if (H && want[UHLM_MODE_UHLM]) {
        sb_printf(&md, "| uhlm / hlm |");
        for (int k = 0; k < n_snr_report; k++)
            sb_printf(&md, " %.2fx |", acc_tput(&main_acc[UHLM_MODE_UHLM], k) / acc_tput(H, k));
        sb_printf(&md, "\n\nuhlm sends %.2f%% fewer uplink messages (and LLM verifications) than hlm.\n",
                  100 * (1 - ratio((double)main_acc[UHLM_MODE_UHLM].trans, (double)H->trans)));
    }
    if (n_sw) {
        sb_printf(&md, "\n## u_th sweep (throughput at %g dB)\n\n| method | quantile | u_th | kind | skip rate | TSR | throughput | cos sim | cos %% llm | PPL |\n|---|---|---|---|---|---|---|---|---|---|\n", sweep_snr);
        for (int s = 0; s < n_sw; s++) {
            const acc *two[2] = {&sw[s].u, &sw[s].r};
            for (int j = 0; j < 2; j++)
                sb_printf(&md, "| %s | %g | %.3f | %s | %.3f | %.3f | %.1f | %.4f | %.1f | %.2f |\n",
                          uhlm_unc_method_name(sw[s].method), sw[s].q, sw[s].u_th, j ? "rand" : "uhlm",
                          ratio((double)two[j]->skipped, (double)two[j]->gen),
                          two[j]->sh_eval ? (double)two[j]->sh_true / two[j]->sh_eval : NAN,
                          acc_tput(two[j], k_sweep), acc_cos(two[j]), 100 * acc_cos(two[j]) / cos_llm,
                          acc_ppl(two[j]));
        }
    }
    sb_printf(&md, "\n## Rejection against uncertainty (hlm, per token)\n\n| method | a | b | R^2 | tokens | Delta |\n|---|---|---|---|---|---|\n");
    for (int j = 0; j < n_mf; j++)
            sb_printf(&md, "| %s | %.4f | %.4f | %.4f | %zu | %.4f |\n", uhlm_unc_method_name(mf[j].method),
                      mf[j].ok ? mf[j].fit.a : NAN, mf[j].ok ? mf[j].fit.b : NAN,
                      mf[j].ok ? mf[j].fit.r2 : NAN, mf[j].n, mf[j].delta);
    if (!(js = cJSON_Print(root))) goto oom;
    sbuf jb = {js, strlen(js), strlen(js) + 1, 0};
    if (write_out(out_dir, "results.csv", &csv) || write_out(out_dir, "sweep.csv", &scsv) ||
        write_out(out_dir, "methods.csv", &mcsv) || write_out(out_dir, "bins.csv", &bcsv) ||
        write_out(out_dir, "per_prompt.csv", &E.per_prompt) || write_out(out_dir, "summary.md", &md) ||
        write_out(out_dir, "results.json", &jb))
        goto done;
    fprintf(stderr, "uhlm eval: %d prompts, %.1f s; results in %s/\n", NP, wall, out_dir);
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "uhlm eval: out of memory\n");
done:
    cJSON_free(js);
    cJSON_Delete(root);
    sb_free(&csv);
    sb_free(&md);
    sb_free(&scsv);
    sb_free(&mcsv);
    sb_free(&bcsv);
    sb_free(&E.per_prompt);
    free(uvals);
    free(rec.s);
    free(rec2.s);
    free(sw);
    uhlm_msglog_free(&E.evs.log);
    for (int i = 0; E.ids && i < E.n_prompts; i++) free(E.ids[i]);
    for (int i = 0; E.ref_greedy && i < E.n_prompts; i++) free(E.ref_greedy[i]);
    free(E.ids);
    free(E.np);
    free(E.seeds);
    free(E.ref_emb);
    free(E.ref_greedy);
    free(E.ref_greedy_n);
    free(E.emb);
    uhlm_verifier_free(E.ver);
    uhlm_ctx_free(E.qctx);
    uhlm_ctx_free(E.shadow);
    uhlm_ctx_free(E.slm_ctx);
    uhlm_model_free(E.slm);
    uhlm_model_free(E.llm);
    uhlm_prompts_free(&E.ps);
    uhlm_prompts_free(&all_ps);
    return rc;
}
