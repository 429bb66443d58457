/* cmd_eval.c: `uhlm eval`, the paper's evaluation (DESIGN §2.4-§2.5): the five modes over a
 * prompt set and an SNR grid, with quality against the LLM's own output, a u_th sweep with
 * a skip-rate-matched random control, and a comparison of uncertainty methods.
 *
 * The harness itself (the runs, sweeps, aggregation and report files) is library code,
 * uhlm/harness.h; this command parses the options into a uhlm_eval_opts, loads the pair,
 * connects to a server when asked, and calls it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_mkdir.h"
#include "cli/cli_signal.h"
#include "cli/options.h"
#include "cli/cli_remote.h"
#include "cli/eval_common.h"
#include "uhlm/calib.h"
#include "uhlm/harness.h"
#include "uhlm/hybrid.h"
#include "uhlm/prompts.h"
#include "uhlm/remote.h"

#define MAX_SNR UHLM_EVAL_MAX_SNR
#define MAX_SWEEP UHLM_EVAL_MAX_SWEEP

static const cli_command eval_cmd = {
    "eval", "--prompts FILE -o DIR",
    "Runs every requested mode on every prompt once, re-accounts the link time for each\n"
    "SNR from the recorded message sizes, and writes to DIR:\n"
    "  results.csv    one row per mode and SNR: throughput, TR, TSR (accepted outright;\n"
    "                 tsr_expected: mean 1 - beta of the skipped tokens), rejection rate,\n"
    "                 uplink bytes, LLM calls, catch-up tokens, quality\n"
    "  sweep.csv      uhlm at u_th = quantiles of u, and rand at the same skip rate\n"
    "  methods.csv    fit of beta on u per uncertainty method (a, b, R^2)\n"
    "  bins.csv       binned mean rejection against u per method\n"
    "  per_prompt.csv per mode and prompt: tokens, transmissions, quality\n"
    "  results.json   all of the above; summary.md  Markdown tables\n"
    "  intervals.csv  bootstrap 95% intervals of the headline figures: over prompts\n"
    "                 (over seeds with one prompt and --seeds K), 1000 resamples\n"
    "  answers.jsonl  the text of every run in per_prompt.csv (with the prompt and the\n"
    "                 Alpaca reference), which scripts/sentence_cosine.py scores by\n"
    "                 sentence embeddings (the paper's quality metric)\n\n"
    "Quality is measured against the llm mode's output for the same prompt and seed:\n"
    "the LLM's per-token NLL of the generated text, the exact-match rate of the\n"
    "temperature-0 outputs, and with --hidden-cosine (CSV and JSON only: it does not\n"
    "separate the modes) the cosine similarity of `uhlm embed` embeddings (LLM hidden\n"
    "state, mean-pooled). The llm row's similarity is that of two llm runs with\n"
    "different seeds; quality is also given as % of llm and % of hlm.",
    "Throughput is generated tokens / (SLM + LLM compute, u only where the policy reads\n"
    "it, + link time). Progress goes to stderr: a bar with an ETA on a TTY, else plain\n"
    "lines (one per tenth of the runs, at least one per 10 s, with elapsed time and ETA).",
    0};

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

/* What the library does not take: names to resolve, the remote link, the output folder. */
typedef struct eval_cli {
    const char *slm_arg, *llm_arg, *tok_arg, *out_dir, *calib_path, *risk;
    const char *modes_arg, *sweep_methods_arg, *server, *token_file;
    long max_in_mb;
    int no_chat;
    double split, connect_to, read_to, uth;
    cli_remote remote;
} eval_cli;

/* A comma-separated list of names, each parsed by parse into out[n] (an int-sized enum);
 * the count, or -1 after a message. */
static int parse_names(const char *opt, const char *arg, const char *what, const char *known,
                       int (*parse)(const char *, void *), size_t size, void *out, int cap) {
    int n = 0;
    const char *p = arg;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        char tmp[16];
        if (k == 0 || k >= sizeof tmp || n == cap) {
            fprintf(stderr, "uhlm eval: invalid %s '%s'\n", opt, arg);
            return -1;
        }
        memcpy(tmp, p, k);
        tmp[k] = '\0';
        if (parse(tmp, (char *)out + (size_t)n * size) != 0) {
            fprintf(stderr, "uhlm eval: unknown %s '%s' in %s (%s)\n", what, tmp, opt, known);
            return -1;
        }
        n++;
        p += k + (c ? 1 : 0);
    }
    return n;
}
static int parse_mode(const char *s, void *out) { return uhlm_mode_parse(s, out); }
static int parse_method(const char *s, void *out) { return uhlm_unc_method_parse(s, out); }

/* The checks and lists that follow the option loop; 0, or the exit status. */
static int eval_finish_opts(eval_cli *c, uhlm_eval_opts *o) {
    uhlm_error err = {{0}};
    if (!o->prompts_path || !c->out_dir) {
        fprintf(stderr, "uhlm eval: --prompts FILE and -o DIR are required (see 'uhlm eval --help')\n");
        return 2;
    }
    if ((c->calib_path != NULL) != (c->risk != NULL)) {
        fprintf(stderr, "uhlm eval: --calib and --risk go together (--calib F --risk "
                        "averse|prone|budget|budget:R)\n");
        return 2;
    }
    if (c->calib_path && !isnan(c->uth)) {
        fprintf(stderr, "uhlm eval: give either --uth or --calib/--risk, not both\n");
        return 2;
    }
    if (c->risk && uhlm_calib_risk_parse(c->risk, NULL, NULL, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        return 2;
    }
    int remote_rc = cli_remote_setup("eval", c->server, c->token_file, &c->remote);
    if (remote_rc != 0) return remote_rc;
    uhlm_mode modes[64];
    int n_modes = parse_names("--modes", c->modes_arg, "mode", "slm, llm, hlm, rand, uhlm",
                              parse_mode, sizeof *modes, modes, 64);
    if (n_modes < 0) return 2;
    memset(o->want, 0, sizeof o->want);
    for (int k = 0; k < n_modes; k++) o->want[modes[k]] = 1;
    if (c->sweep_methods_arg) {
        o->n_sweep_methods = parse_names("--sweep-methods", c->sweep_methods_arg, "method",
                                         "perturb, entropy, maxprob, margin", parse_method,
                                         sizeof *o->sweep_methods, o->sweep_methods,
                                         UHLM_EVAL_MAX_METHODS);
        if (o->n_sweep_methods < 0) return 2;
    }
    if (c->calib_path && uhlm_calib_load_threshold_max(c->calib_path, c->risk,
                                                       (uint64_t)c->max_in_mb << 20, &c->uth, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        return 1;
    }
    o->u_th = isnan(c->uth) ? 0.2 : c->uth;
    o->threshold_source = c->calib_path ? c->calib_path : "--uth";
    o->risk = c->risk;
    o->server = c->server;
    if (uhlm_eval_opts_check(o, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        return 2;
    }
    return 0;
}

/* Link events of the remote verifier (lost, reconnected), one line each. */
static void remote_log(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "\nuhlm eval: %s\n", msg);
}

/* The device connects lazily and carries on alone when the server is down; an eval must not,
 * so an unreachable server is an error here, before any work. Quality and the shadow use the
 * local LLM: a warning when the server's is another. */
static int check_server(const eval_cli *c, uhlm_verifier *ver, const uhlm_model *llm) {
    uhlm_remote_stats rst;
    uhlm_error err = {{0}};
    if (uhlm_remote_get_stats(ver, &rst) != 0 || rst.connects == 0) {
        fprintf(stderr, "uhlm eval: cannot reach the server at %s (is `uhlm serve` running "
                        "there?)\n", c->server);
        return -1;
    }
    uhlm_verifier_info vi;
    if (uhlm_verifier_info_get(ver, &vi, &err) == 0) {
        const char *lb = strrchr(uhlm_model_path(llm), '/'), *rb = strrchr(vi.model, '/');
        lb = lb ? lb + 1 : uhlm_model_path(llm);
        rb = rb ? rb + 1 : vi.model;
        size_t rn = strcspn(rb, "@"); /* the remote verifier appends @host:port */
        if (vi.model[0] && (strlen(lb) != rn || strncmp(lb, rb, rn)))
            fprintf(stderr, "uhlm eval: warning: the server runs %s, the local LLM (shadow and "
                            "quality) is %s\n", vi.model, uhlm_model_path(llm));
    }
    return 0;
}

/* Loads the pair, builds the harness, runs it and writes the reports. */
static int eval_main(eval_cli *c, uhlm_eval_opts *o) {
    const char *cmd = "eval";
    uhlm_error err = {{0}};
    uhlm_prompt_set ps = {0};
    uhlm_model *slm = NULL, *llm = NULL;
    uhlm_verifier *ver = NULL;
    uhlm_eval_harness *h = NULL;
    uhlm_eval_results res = {0};
    int rc = 1;
    double w0 = uhlm_now();
    if (uhlm_eval_load_prompts(o->prompts_path, (uint64_t)c->max_in_mb << 20, c->split, &ps, &err) ||
        cli_mkdir_p(c->out_dir, &err) || uhlm_eval_make_dir(c->out_dir, &err)) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        goto done;
    }
    if (!(slm = cli_load_model(cmd, c->slm_arg, c->tok_arg, UHLM_LOAD_AUTO, "SLM")) ||
        !(llm = cli_load_model(cmd, c->llm_arg, c->tok_arg, UHLM_LOAD_AUTO, "LLM")) ||
        evc_check_pair(cmd, slm, llm, c->slm_arg, c->llm_arg))
        goto done;
    if (cli_check_payload(cmd, &o->base.payload, slm) != 0) {
        rc = 2;
        goto done;
    }
    if (c->server && !(ver = cli_remote_verifier(&c->remote, slm, "uhlm-eval", c->connect_to,
                                                 c->read_to, o->seed, remote_log, &err))) {
        fprintf(stderr, "uhlm eval: --server %s: %s\n", c->server, err.msg);
        goto done;
    }
    o->chat = cli_prompts_chat(cmd, slm, c->no_chat);
    o->cancel = cli_sigint_cancel;
    if (!(h = uhlm_eval_harness_new(slm, llm, ver, &ps, o, &err))) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        goto done;
    }
    if (c->server && check_server(c, ver, llm) != 0) goto done;
    uhlm_progress pg;
    uhlm_progress_init(&pg, stderr, uhlm_eval_total_runs(h), "eval");
    if (cli_sigint_install(cmd) != 0) goto done;
    int run_rc = uhlm_eval_run_all(h, &pg, &res, &err);
    cli_sigint_restore();
    if (run_rc == UHLM_CANCELLED) {
        /* the reports compare sets run to the end; a cut plan would mix whole and missing
         * sets, so nothing is written rather than something half-true */
        fprintf(stderr, "\nuhlm eval: interrupted (%s); no results written to %s/\n", err.msg,
                c->out_dir);
        rc = CLI_EXIT_INTERRUPTED;
        goto done;
    }
    if (run_rc != 0) {
        fprintf(stderr, "\nuhlm eval: %s\n", err.msg);
        goto done;
    }
    res.wall_s = uhlm_now() - w0; /* the whole command, loading included */
    if (uhlm_eval_write_reports(h, &res, c->out_dir, &err) != 0) {
        fprintf(stderr, "uhlm eval: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "uhlm eval: %d prompts, %.1f s; results in %s/\n",
            uhlm_eval_harness_n_prompts(h), res.wall_s, c->out_dir);
    rc = 0;
done:
    uhlm_eval_results_free(&res);
    uhlm_eval_harness_free(h);
    uhlm_verifier_free(ver);
    uhlm_model_free(slm);
    uhlm_model_free(llm);
    uhlm_prompts_free(&ps);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    const char *slm_arg = UHLM_DEFAULT_SLM, *llm_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    const char *prompts_path = NULL, *out_dir = NULL, *calib_path = NULL, *risk = NULL;
    const char *modes_arg = "slm,llm,hlm,rand,uhlm", *sweep_methods_arg = NULL;
    long threads = 0, n_gen = 64, top_k = 0, samples_m = UHLM_UNC_DEFAULT_SAMPLES, limit = 0;
    long max_in_mb = UHLM_INPUT_MAX_MB, n_seeds = 1;
    double temp = 1.0, top_p = 1.0, theta_max = UHLM_UNC_DEFAULT_THETA_MAX, split = -1;
    double bw = UHLM_CHANNEL_DEFAULT_BANDWIDTH, lat = 0.0, uth = NAN, skip_prob = NAN;
    double sweep_snr = 0.0;
    double sweep_q[MAX_SWEEP] = {0.2, 0.4, 0.6, 0.8};
    int n_sweep = 4, greedy = 1, no_chat = 0;
    uint64_t seed = 42;
    const char *server = NULL, *token_file = NULL;
    cli_remote tls = {.tls_ca = NULL}; /* --tls-ca, --tls-insecure */
    double connect_to = 3.0, read_to = 30.0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    uhlm_device_params dp = uhlm_device_default_params();
    /* the SNR grid as the option loop fills it */
    struct {
        double snr[MAX_SNR];
        int n_snr;
    } E = {{-10, -5, 0, 5, 10, 20, 30}, 7};
    const char *snr_arg = NULL, *sweep_arg = NULL;
    int no_greedy = 0, hidden_cosine = 0;
    const cli_arg args[] = {
        CLI_ARGS_PAIR(&slm_arg, &llm_arg, &tok_arg),
        CLI_ARG(CLI_PROMPTS, &prompts_path),
        CLI_ARG(CLI_NO_CHAT, &no_chat),
        {.id = CLI_MAX_INPUT_MB, .dst = &max_in_mb,
         .help = "largest --prompts or --calib file read, in MiB"},
        {.id = CLI_N_PREDICT, .dst = &n_gen, .lo = 1, .hi = 1 << 20, .help = "tokens per prompt"},
        CLI_ARG(CLI_SEED, &seed),
        CLI_ARGS_SAMPLING(&temp, &top_k, &top_p),
        {.id = CLI_UTH, .dst = &uth, .def = "0.2"},
        {.id = CLI_SKIP_PROB, .dst = &skip_prob, .def = "0.5",
         .help = "rand skip probability when uhlm is not run (else rand skips at the rate uhlm "
                 "achieved)"},
        {.id = CLI_CALIB, .dst = &calib_path,
         .help = "with --risk: u_th from `uhlm calibrate` output FILE instead of --uth; "
                 "budget:R is the largest u_th whose 95% upper limit of rejected-and-skipped "
                 "tokens on the fit prompts is <= R of all tokens"},
        CLI_ARG(CLI_RISK, &risk),
        CLI_ARGS_UNCERTAINTY(&dp.unc.method, &samples_m, &theta_max),
        CLI_ARG(CLI_PAYLOAD, &dp.payload),
        {.id = CLI_SNR_GRID, .dst = &snr_arg, .help = "SNR grid in dB, both links"},
        CLI_ARG(CLI_BANDWIDTH, &bw),
        CLI_ARG(CLI_LATENCY, &lat),
        CLI_ARG(CLI_FADING, &dp.channel.fading),
        {.id = CLI_SERVER, .dst = &server,
         .help = "verify (and run llm mode) on a `uhlm serve` server with the same LLM; same "
                 "seeds, same tokens as in process. The LLM is still loaded here for the "
                 "untimed shadow and the quality metrics. The eval fails if the server cannot "
                 "be reached or drops tokens to SLM-alone fallback (the results would mix two "
                 "systems)"},
        CLI_ARGS_REMOTE(&token_file, &connect_to, &read_to),
        CLI_ARGS_TLS_CLIENT(&tls),
        {.id = CLI_MODES, .dst = &modes_arg,
         .help = "modes to report (llm always runs: it is the reference). rand skips at the "
                 "rate uhlm achieved (or --skip-prob without uhlm)"},
        {.id = CLI_SPLIT, .dst = &split, .def = "none: every prompt",
         .help = "use only the held-out part of a --split F train/test split by id (the part "
                 "`uhlm calibrate --split F` did not fit on)"},
        CLI_ARG(CLI_LIMIT, &limit),
        CLI_ARG(CLI_GREEDY_OFF, &no_greedy),
        CLI_ARG(CLI_HIDDEN_COSINE, &hidden_cosine),
        {.id = CLI_SWEEP, .dst = &sweep_arg,
         .help = "quantiles of u (from hlm) used as u_th sweep points, or none"},
        {.id = CLI_SWEEP_METHODS, .dst = &sweep_methods_arg, .def = "the --uncertainty one"},
        {.id = CLI_SWEEP_SNR, .dst = &sweep_snr, .help = "SNR for the sweep's throughput"},
        CLI_ARG(CLI_SEEDS, &n_seeds),
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &simd),
        {.id = CLI_OUTPUT, .dst = &out_dir, .help = "the directory to write the results to"},
    };
    int prc = cli_parse(&eval_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (prc != CLI_CONTINUE) return cli_exit_status(prc);
    if (no_greedy) greedy = 0;
    if (snr_arg && (E.n_snr = parse_list(cmd, "--snr", snr_arg, E.snr, MAX_SNR, -200, 200)) < 0)
        return 2;
    if (sweep_arg && !strcmp(sweep_arg, "none"))
        n_sweep = 0;
    else if (sweep_arg &&
             (n_sweep = parse_list(cmd, "--sweep", sweep_arg, sweep_q, MAX_SWEEP, 0.0, 1.0)) < 0)
        return 2;
    /* the parsed values, collected for the library */
    uhlm_eval_opts o = uhlm_eval_default_opts();
    dp.n_gen = (int)n_gen;
    dp.sampling = (uhlm_sampling){(float)temp, (int)top_k, (float)top_p};
    dp.unc.samples = (int)samples_m;
    dp.unc.theta_max = theta_max;
    dp.channel.up = (uhlm_link){bw, 10.0, lat};
    dp.channel.down = dp.channel.up;
    o.base = dp;
    o.temperature = temp;
    memcpy(o.snr, E.snr, sizeof E.snr);
    o.n_snr = E.n_snr;
    memcpy(o.sweep_q, sweep_q, sizeof sweep_q);
    o.n_sweep = n_sweep;
    o.sweep_snr = sweep_snr;
    o.skip_prob = skip_prob;
    o.hidden_cosine = hidden_cosine;
    o.greedy = greedy;
    o.n_threads = (int)threads;
    o.simd = simd;
    o.n_reps = (int)n_seeds;
    o.limit = (int)limit;
    o.seed = seed;
    o.prompts_path = prompts_path;
    eval_cli c = {.slm_arg = slm_arg, .llm_arg = llm_arg, .tok_arg = tok_arg, .out_dir = out_dir,
                  .calib_path = calib_path, .risk = risk, .modes_arg = modes_arg,
                  .sweep_methods_arg = sweep_methods_arg, .server = server,
                  .token_file = token_file, .max_in_mb = max_in_mb, .no_chat = no_chat,
                  .split = split, .connect_to = connect_to, .read_to = read_to, .uth = uth};
    c.remote.tls_ca = tls.tls_ca;
    c.remote.tls_insecure = tls.tls_insecure;
    int rc = eval_finish_opts(&c, &o);
    return rc ? rc : eval_main(&c, &o);
}
