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
#include "cli/eval_common.h"
#include "uhlm/calib.h"
#include "uhlm/calib_samples.h"
#include "uhlm/eval.h"
#include "uhlm/hybrid.h"
#include "uhlm/prompts.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: uhlm calibrate --prompts FILE -o CALIB.json [-m SLM] [--llm LLM] [-z TOK]\n"
            "                      [-n N] [--temp T] [--top-k K] [--top-p P] [--payload ENC]\n"
            "                      [--uncertainty perturb|entropy|maxprob|margin] [--samples M]\n"
            "                      [--theta-max T] [--split F] [--limit P] [--seed S]\n"
            "                      [--budget R] [--csv FILE] [--no-chat] [-t THREADS]\n"
            "                      [--max-input-mb MB]\n\n"
            "Runs hlm (every token verified) with the uncertainty u recorded, fits the LLM's\n"
            "rejection probability beta = a*u + b by least squares on the training prompts,\n"
            "and derives the skip thresholds: risk-averse u_th = -b/a, risk-prone\n"
            "u_th = (Delta - b)/a with Delta the share of drafts with y[d] < x[d]. The\n"
            "expected-risk bound of each threshold is set beside the rejections actually seen\n"
            "on the held-out prompts. Where both formulas are degenerate (b > 0 gives a\n"
            "negative risk-averse u_th: never skip; a small a gives a risk-prone u_th > 1:\n"
            "always skip), the budget rule picks the largest u_th whose bound, as a share of\n"
            "all training tokens, stays <= R. `uhlm run` and `uhlm eval` read the result\n"
            "with --calib CALIB.json --risk averse|prone|budget|budget:R.\n\n"
            "  --prompts FILE   JSONL or a JSON array of {\"id\",\"prompt\"} or Alpaca records\n"
            "                   (user turn: instruction, or instruction + \"\\n\\n\" + input)\n"
            "  --no-chat        use prompts as plain text even when the SLM has a chat template\n"
            "                   (by default they are wrapped as user turns in it, as --chat)\n"
            "  -o FILE          calibration result (JSON)\n"
            "  --csv FILE       per-token records: prompt, split, u, beta, accepted, ...\n"
            "  --budget R       risk budget of thresholds.budget, the expected share of all\n"
            "                   tokens skipped and rejected (default %g); other budgets are\n"
            "                   read later from the stored curve with --risk budget:R\n"
            "  --split F        share of prompts (by a hash of the id) used for the fit;\n"
            "                   the rest is the held-out test part (default 0.5)\n"
            "  --limit P        use only the first P prompts (default all)\n"
            "  -n N             tokens per prompt (default 128)\n"
            "  -t THREADS       threads per model (default 1: the pair is tiny)\n"
            "  --max-input-mb MB  largest --prompts file read (default %d MiB)\n"
            "  other options as in `uhlm run` (defaults: temp 1, f32, perturb M=%d theta=%g,\n"
            "  seed 42; each prompt's seed is derived from the seed and the prompt id)\n",
            UHLM_CALIB_BUDGET_DEFAULT, UHLM_INPUT_MAX_MB, UHLM_UNC_DEFAULT_SAMPLES,
            UHLM_UNC_DEFAULT_THETA_MAX);
}

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
            printf("%s u_th %.4f: held-out skip share %.3f, risk bound %.4f (loose %.4f), "
                   "observed rejections %.4f (expected %.4f) of all tokens\n",
                   nm[k], u[k], r.p_skip, r.bound, r.bound_loose, r.observed_reject,
                   r.observed_beta);
        }
    }
    uhlm_calib_risk r;
    uhlm_calib_risk_eval(te, nte, &an->fit, an->u_budget, &r);
    printf("budget R %.4g u_th %.4f: held-out skip share %.3f, risk bound %.4f (loose %.4f), "
           "observed rejections %.4f (expected %.4f) of all tokens\n",
           an->budget, an->u_budget, r.p_skip, r.bound, r.bound_loose, r.observed_reject,
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
    if (uhlm_prompts_load_max(c->prompts_path, (uint64_t)c->max_in_mb << 20, &ps, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    if (!(slm = cli_load_model(cmd, c->slm_arg, c->tok_arg, "SLM")) ||
        !(llm = cli_load_model(cmd, c->llm_arg, c->tok_arg, "LLM")) || evc_check_pair(cmd, slm, llm))
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
    info->slm = slm->path;
    info->llm = llm->path;
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
    const char *cmd = "calibrate";
    const char *slm_arg = UHLM_DEFAULT_SLM, *llm_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    const char *prompts_path = NULL, *out_path = NULL, *csv_path = NULL;
    long threads = 1, n_gen = 128, top_k = 0, samples = UHLM_UNC_DEFAULT_SAMPLES, limit = 0;
    long max_in_mb = UHLM_INPUT_MAX_MB;
    double temp = 1.0, top_p = 1.0, theta_max = UHLM_UNC_DEFAULT_THETA_MAX, split = 0.5;
    double budget = UHLM_CALIB_BUDGET_DEFAULT;
    int no_chat = 0;
    uint64_t seed = 42;
    uhlm_device_params dp = uhlm_device_default_params();
    uhlm_error err = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        }
        static const char *const valued[] = {
            "-m",      "--llm",       "-z",      "--prompts", "-o",          "--csv",
            "-n",      "--temp",      "--top-k", "--top-p",   "--payload",   "--uncertainty",
            "--samples", "--theta-max", "--split", "--limit",  "--seed",      "-t",
            "--budget", "--max-input-mb"};
        if (!strcmp(a, "--no-chat")) {
            no_chat = 1;
            continue;
        }
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
        if (!known) {
            fprintf(stderr, "uhlm calibrate: unknown option '%s' (see 'uhlm calibrate --help')\n",
                    a);
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
            out_path = v;
        else if (!strcmp(a, "--csv"))
            csv_path = v;
        else if (!strcmp(a, "-n"))
            bad = cli_parse_int(cmd, a, v, 1, 1 << 20, &n_gen);
        else if (!strcmp(a, "--temp"))
            bad = cli_parse_float(cmd, a, v, 0, 1e6, &temp);
        else if (!strcmp(a, "--top-k"))
            bad = cli_parse_int(cmd, a, v, 0, 1 << 24, &top_k);
        else if (!strcmp(a, "--max-input-mb"))
            bad = cli_parse_int(cmd, a, v, 1, 1 << 20, &max_in_mb);
        else if (!strcmp(a, "--top-p"))
            bad = cli_parse_float(cmd, a, v, 1e-9, 1.0, &top_p);
        else if (!strcmp(a, "--samples"))
            bad = cli_parse_int(cmd, a, v, 1, 1000000, &samples);
        else if (!strcmp(a, "--theta-max"))
            bad = cli_parse_float(cmd, a, v, 1e-6, 1e6, &theta_max);
        else if (!strcmp(a, "--split"))
            bad = cli_parse_float(cmd, a, v, 0.0, 1.0, &split);
        else if (!strcmp(a, "--limit"))
            bad = cli_parse_int(cmd, a, v, 1, 1L << 30, &limit);
        else if (!strcmp(a, "--budget"))
            bad = cli_parse_float(cmd, a, v, 0.0, 1.0, &budget);
        else if (!strcmp(a, "--seed"))
            bad = cli_parse_u64(cmd, a, v, &seed);
        else if (!strcmp(a, "-t"))
            bad = cli_parse_int(cmd, a, v, 0, 1024, &threads);
        else if (!strcmp(a, "--payload")) {
            if ((bad = uhlm_payload_parse(v, &dp.payload, &err) != 0))
                fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        } else if (!strcmp(a, "--uncertainty")) {
            if ((bad = uhlm_unc_method_parse(v, &dp.unc.method) != 0))
                fprintf(stderr,
                        "uhlm calibrate: unknown uncertainty '%s' (perturb, entropy, maxprob, "
                        "margin)\n",
                        v);
        }
        if (bad) return 2;
    }
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
    o.seed = seed;
    o.want_csv = csv_path != NULL;
    uhlm_calib_info info = {NULL, NULL, prompts_path, n_gen, top_k, samples, temp, top_p,
                            theta_max, &o.dp.payload, dp.unc.method, seed, split, 0};
    calib_cli c = {slm_arg, llm_arg, tok_arg, prompts_path, out_path, csv_path, max_in_mb,
                   no_chat, budget};
    return calib_main(&c, &o, &info);
}
