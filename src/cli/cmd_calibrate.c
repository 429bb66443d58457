/* cmd_calibrate.c: `uhlm calibrate`, DESIGN §2.3: run HLM with u recorded over a prompt set,
 * fit β̂ = a·u + b on the training part, derive the risk-averse and risk-prone thresholds,
 * and check the predicted risk against the held-out part. The collection, the analysis and
 * calib.json are library code (uhlm/calib_samples.h); this command parses the options, loads
 * the pair, calls it and prints the summary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_mkdir.h"
#include "cli/options.h"
#include "cli/eval_common.h"
#include "uhlm/calib.h"
#include "uhlm/calib_samples.h"
#include "uhlm/eval.h"
#include "uhlm/hybrid.h"
#include "uhlm/prompts.h"

static const cli_command calibrate_cmd = {
    "calibrate", "--prompts FILE -o CALIB.json",
    "Runs hlm (every token verified) with the uncertainty u recorded, fits the LLM's\n"
    "rejection probability beta = a*u + b by least squares on the training prompts,\n"
    "and derives the paper's skip thresholds (its Theorem 1): risk-averse\n"
    "u_th = -b/a, risk-prone u_th = (Delta - b)/a with Delta the share of drafts with\n"
    "y[d] < x[d]. The line's predicted risk of each threshold (the paper's bound, a\n"
    "prediction, not a bound) is set beside the rejections actually seen on the\n"
    "held-out prompts. The budget rule picks the largest u_th whose one-sided 95%\n"
    "Clopper-Pearson upper limit of the observed share of all training tokens skipped\n"
    "and rejected stays <= R; it needs no shape of the fit, and holds for new prompts\n"
    "like the training ones with that confidence. `uhlm run` and `uhlm eval` read the\n"
    "result with --calib CALIB.json --risk averse|prone|budget|budget:R.",
    "Each prompt's seed is derived from the seed and the prompt id.", 0};

/* What the library does not take: names to resolve and files to write. */
typedef struct calib_cli {
    const char *slm_arg, *llm_arg, *tok_arg, *prompts_path, *out_path, *csv_path;
    long max_in_mb;
    int no_chat;
    double budget;
} calib_cli;

/* The held-out check of each threshold, one line each on stdout. */
static void print_summary(const uhlm_calib_collection *col, const uhlm_calib_analysis *an) {
    const uhlm_calib_sample *te = col->test.s;
    const size_t nte = col->test.n;
    printf("fit (train, %zu tokens of %d prompts): beta = %.4f*u %+.4f, R^2 %.4f "
           "(held-out R^2 %.4f)\n",
           col->train.n, col->n_train_prompts, an->fit.a, an->fit.b, an->fit.r2, an->r2_test);
    printf("delta (share of drafts with y[d] < x[d]) %.4f\n", an->delta);
    if (an->have_th) {
        double u[2] = {an->averse, an->prone};
        const char *nm[2] = {"risk-averse", "risk-prone"};
        for (int k = 0; k < 2; k++) {
            uhlm_calib_risk r;
            uhlm_calib_risk_eval(te, nte, &an->fit, u[k], &r);
            printf("%s u_th %.4f: held-out skip share %.3f, predicted risk %.4f (loose %.4f), "
                   "observed rejections %.4f (expected %.4f) of all tokens\n",
                   nm[k], u[k], r.p_skip, r.predicted, r.predicted_loose, r.observed_reject,
                   r.observed_beta);
        }
    }
    uhlm_calib_risk r;
    uhlm_calib_risk_eval(te, nte, &an->fit, an->u_budget, &r);
    printf("budget R %.4g u_th %.4f: held-out skip share %.3f, predicted risk %.4f (loose %.4f), "
           "observed rejections %.4f (expected %.4f) of all tokens\n",
           an->budget, an->u_budget, r.p_skip, r.predicted, r.predicted_loose, r.observed_reject,
           r.observed_beta);
    fflush(stdout);
}

/* Loads the pair, collects, analyses, writes calib.json (and the CSV) and prints. */
static int calib_main(const calib_cli *c, uhlm_calib_collect_opts *o, uhlm_calib_info *info) {
    const char *cmd = "calibrate";
    uhlm_error err = {{0}};
    uhlm_prompt_set ps = {0};
    uhlm_model *slm = NULL, *llm = NULL;
    uhlm_calib_collection col = {0};
    uhlm_calib_analysis an = {0};
    char *js = NULL;
    int rc = 1;
    double w0 = uhlm_now();
    /* the folders first, so a bad -o fails now rather than after the collection */
    if (uhlm_prompts_load_max(c->prompts_path, (uint64_t)c->max_in_mb << 20, &ps, &err) != 0 ||
        cli_mkdir_parent(c->out_path, &err) != 0 ||
        (c->csv_path && cli_mkdir_parent(c->csv_path, &err) != 0)) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    if (!(slm = cli_load_model(cmd, c->slm_arg, c->tok_arg, UHLM_LOAD_AUTO, "SLM")) ||
        !(llm = cli_load_model(cmd, c->llm_arg, c->tok_arg, UHLM_LOAD_AUTO, "LLM")) ||
        evc_check_pair(cmd, slm, llm, c->slm_arg, c->llm_arg))
        goto done;
    if (cli_check_payload(cmd, &o->dp.payload, slm) != 0) {
        rc = 2;
        goto done;
    }
    o->chat = cli_prompts_chat(cmd, slm, c->no_chat);
    uhlm_progress pg;
    uhlm_progress_init(&pg, stderr, o->limit > 0 && o->limit < ps.n ? o->limit : ps.n, "calibrate");
    if (uhlm_calib_collect(slm, llm, &ps, o, &pg, &col, &err) != 0 ||
        (c->csv_path && uhlm_write_file_atomic(c->csv_path, col.csv, col.csv_len, &err) != 0)) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    if (uhlm_calib_analyse(&col, o->split, c->budget, &an, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    if (!an.have_th) fprintf(stderr, "uhlm calibrate: %s\n", an.th_err.msg);
    info->slm = uhlm_model_path(slm);
    info->llm = uhlm_model_path(llm);
    info->wall_s = uhlm_now() - w0;
    size_t jl = 0;
    if (!(js = uhlm_calib_report_json(&col, &an, info, &jl))) {
        fprintf(stderr, "uhlm calibrate: out of memory\n");
        goto done;
    }
    if (uhlm_write_file_atomic(c->out_path, js, jl, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    print_summary(&col, &an);
    rc = an.have_th ? 0 : 1;
done:
    free(js);
    uhlm_calib_analysis_free(&an);
    uhlm_calib_collection_free(&col);
    uhlm_model_free(slm);
    uhlm_model_free(llm);
    uhlm_prompts_free(&ps);
    return rc;
}

int cmd_calibrate(int argc, char **argv) {
    const char *slm_arg = UHLM_DEFAULT_SLM, *llm_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    const char *prompts_path = NULL, *out_path = NULL, *csv_path = NULL;
    long threads = 0, n_gen = 128, top_k = 0, samples = UHLM_UNC_DEFAULT_SAMPLES, limit = 0;
    long max_in_mb = UHLM_INPUT_MAX_MB;
    double temp = 1.0, top_p = 1.0, theta_max = UHLM_UNC_DEFAULT_THETA_MAX, split = 0.5;
    double budget = UHLM_CALIB_BUDGET_DEFAULT;
    int no_chat = 0;
    uint64_t seed = 42;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    uhlm_device_params dp = uhlm_device_default_params();
    const cli_arg args[] = {
        CLI_ARGS_PAIR(&slm_arg, &llm_arg, &tok_arg),
        CLI_ARG(CLI_PROMPTS, &prompts_path),
        CLI_ARG(CLI_NO_CHAT, &no_chat),
        CLI_ARG(CLI_MAX_INPUT_MB, &max_in_mb),
        {.id = CLI_N_PREDICT, .dst = &n_gen, .lo = 1, .hi = 1 << 20, .help = "tokens per prompt"},
        CLI_ARG(CLI_SEED, &seed),
        CLI_ARGS_SAMPLING(&temp, &top_k, &top_p),
        CLI_ARGS_UNCERTAINTY(&dp.unc.method, &samples, &theta_max),
        CLI_ARG(CLI_PAYLOAD, &dp.payload),
        {.id = CLI_SPLIT, .dst = &split,
         .help = "share of prompts (by a hash of the id) used for the fit, strictly between 0 "
                 "and 1; the rest is the held-out test part"},
        CLI_ARG(CLI_LIMIT, &limit),
        CLI_ARG(CLI_BUDGET, &budget),
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &simd),
        {.id = CLI_OUTPUT, .dst = &out_path, .help = "calibration result (JSON)"},
        CLI_ARG(CLI_CSV, &csv_path),
    };
    int prc = cli_parse(&calibrate_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (prc != CLI_CONTINUE) return cli_exit_status(prc);
    if (!prompts_path || !out_path) {
        fprintf(stderr, "uhlm calibrate: --prompts FILE and -o FILE are required (see 'uhlm "
                        "calibrate --help')\n");
        return 2;
    }
    if (split <= 0.0 || split >= 1.0) {
        fprintf(stderr, "uhlm calibrate: --split must be strictly between 0 and 1 (a fit part and "
                        "a held-out part)\n");
        return 2;
    }
    /* the parsed values, collected for the library */
    uhlm_calib_collect_opts o = {0};
    dp.n_gen = (int)n_gen;
    dp.sampling = (uhlm_sampling){(float)temp, (int)top_k, (float)top_p};
    dp.unc.samples = (int)samples;
    dp.unc.theta_max = theta_max;
    o.dp = dp;
    o.split = split;
    o.limit = (int)limit;
    o.n_threads = (int)threads;
    o.simd = simd;
    o.seed = seed;
    o.want_csv = csv_path != NULL;
    uhlm_calib_info info = {NULL, NULL, prompts_path, n_gen, top_k, samples, temp, top_p,
                            theta_max, &o.dp.payload, dp.unc.method, seed, split, 0};
    calib_cli c = {slm_arg, llm_arg, tok_arg, prompts_path, out_path, csv_path, max_in_mb,
                   no_chat, budget};
    return calib_main(&c, &o, &info);
}
