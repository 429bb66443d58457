/* cmd_calibrate.c: `uhlm calibrate`, DESIGN §2.3: run HLM with u recorded over a prompt set,
 * fit β̂ = a·u + b on the training part, derive the paper's risk-averse and risk-prone
 * thresholds and the budget threshold, and check them against the held-out part. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/eval_common.h"
#include "uhlm/calib.h"
#include "uhlm/eval.h"
#include "uhlm/hybrid.h"
#include "uhlm/prompts.h"
#include "uhlm/tokenizer.h"

#define CAL_BINS 10

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
            "and derives the paper's skip thresholds (its Theorem 1): risk-averse\n"
            "u_th = -b/a, risk-prone u_th = (Delta - b)/a with Delta the share of drafts with\n"
            "y[d] < x[d]. The line's predicted risk of each threshold (the paper's bound, a\n"
            "prediction, not a bound) is set beside the rejections actually seen on the\n"
            "held-out prompts. The budget rule picks the largest u_th whose one-sided %g%%\n"
            "Clopper-Pearson upper limit of the observed share of all training tokens skipped\n"
            "and rejected stays <= R; it needs no shape of the fit, and holds for new prompts\n"
            "like the training ones with that confidence. `uhlm run` and `uhlm eval` read the\n"
            "result with --calib CALIB.json --risk averse|prone|budget|budget:R.\n\n"
            "  --prompts FILE   JSONL or a JSON array of {\"id\",\"prompt\"} or Alpaca records\n"
            "                   (user turn: instruction, or instruction + \"\\n\\n\" + input)\n"
            "  --no-chat        use prompts as plain text even when the SLM has a chat template\n"
            "                   (by default they are wrapped as user turns in it, as --chat)\n"
            "  -o FILE          calibration result (JSON)\n"
            "  --csv FILE       per-token records: prompt, split, u, beta, accepted, ...\n"
            "  --budget R       risk budget of thresholds.budget, the share of all tokens\n"
            "                   skipped and rejected (default %g); other budgets are\n"
            "                   read later from the stored curve with --risk budget:R\n"
            "  --split F        share of prompts (by a hash of the id) used for the fit;\n"
            "                   the rest is the held-out test part (default 0.5)\n"
            "  --limit P        use only the first P prompts (default all)\n"
            "  -n N             tokens per prompt (default 128)\n"
            "  -t THREADS       threads per model (default 1: the pair is tiny)\n"
            "  --max-input-mb MB  largest --prompts file read (default %d MiB)\n"
            "  other options as in `uhlm run` (defaults: temp 1, f32, perturb M=%d theta=%g,\n"
            "  seed 42; each prompt's seed is derived from the seed and the prompt id)\n",
            100.0 * UHLM_CALIB_CONFIDENCE_DEFAULT, UHLM_CALIB_BUDGET_DEFAULT, UHLM_INPUT_MAX_MB, UHLM_UNC_DEFAULT_SAMPLES,
            UHLM_UNC_DEFAULT_THETA_MAX);
}

typedef struct {
    evc_samples train, test; /* by the prompt's side of the split, in token order */
    sbuf *csv;
    const char *id;
    int is_train;
} collector;

static void on_token(void *user, const uhlm_token_event *ev) {
    collector *c = user;
    uhlm_calib_sample smp;
    if (!evc_calib_sample(ev, &smp)) return;
    evc_samples_push(c->is_train ? &c->train : &c->test, &smp);
    if (c->csv) {
        sb_csv_str(c->csv, c->id);
        sb_printf(c->csv, ",%s,%d,%d,%d,%d,%.6f,%.9g,%.9g,%.9g,%d,%d\n",
                  c->is_train ? "train" : "test", ev->index, ev->pos, ev->draft, ev->token, ev->u,
                  ev->beta, ev->x_d, ev->y_d, ev->accepted, smp.outright);
    }
}

static cJSON *num(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static cJSON *bins_json(const uhlm_calib_sample *s, size_t n) {
    uhlm_calib_bin b[CAL_BINS];
    uhlm_calib_bins(s, n, CAL_BINS, b);
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < CAL_BINS; k++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) continue;
        cJSON_AddNumberToObject(o, "lo", b[k].lo);
        cJSON_AddNumberToObject(o, "hi", b[k].hi);
        cJSON_AddNumberToObject(o, "count", (double)b[k].count);
        cJSON_AddNumberToObject(o, "fraction", b[k].frac);
        cJSON_AddItemToObject(o, "mean_u", num(b[k].mean_u));
        cJSON_AddItemToObject(o, "mean_beta", num(b[k].mean_beta));
        cJSON_AddItemToObject(o, "reject_rate", num(b[k].reject_rate));
        cJSON_AddItemToObject(o, "outright_rate", num(b[k].outright_rate));
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *risk_json(const uhlm_calib_sample *s, size_t n, const uhlm_linfit *f, double u_th) {
    uhlm_calib_risk r;
    uhlm_calib_risk_eval(s, n, f, u_th, &r);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "u_th", u_th);
    cJSON_AddNumberToObject(o, "tokens", (double)r.n);
    cJSON_AddNumberToObject(o, "skipped", (double)r.n_skip);
    cJSON_AddNumberToObject(o, "p_skip", r.p_skip);
    cJSON_AddNumberToObject(o, "predicted_risk", r.predicted);
    cJSON_AddNumberToObject(o, "predicted_risk_loose", r.predicted_loose);
    /* the old names of the two above, kept one release for readers of calib.json */
    cJSON_AddNumberToObject(o, "bound", r.predicted);
    cJSON_AddNumberToObject(o, "bound_loose", r.predicted_loose);
    cJSON_AddNumberToObject(o, "observed_reject", r.observed_reject);
    cJSON_AddNumberToObject(o, "observed_beta", r.observed_beta);
    double ps = r.p_skip;
    cJSON_AddItemToObject(o, "predicted_risk_per_skipped", num(ps > 0 ? r.predicted / ps : NAN));
    cJSON_AddItemToObject(o, "bound_per_skipped", num(ps > 0 ? r.predicted / ps : NAN));
    cJSON_AddItemToObject(o, "observed_reject_per_skipped",
                          num(ps > 0 ? r.observed_reject / ps : NAN));
    cJSON_AddItemToObject(o, "observed_beta_per_skipped", num(ps > 0 ? r.observed_beta / ps : NAN));
    return o;
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
    dp.policy.mode = UHLM_MODE_HLM;
    dp.record_u = 1;
    dp.n_gen = (int)n_gen;
    dp.sampling = (uhlm_sampling){(float)temp, (int)top_k, (float)top_p};
    dp.unc.samples = (int)samples;
    dp.unc.theta_max = theta_max;

    int rc = 1;
    uhlm_prompt_set ps = {0};
    uhlm_model *slm = NULL, *llm = NULL;
    uhlm_ctx *slm_ctx = NULL;
    uhlm_verifier *ver = NULL;
    uhlm_device *dev = NULL;
    int *ids = NULL;
    sbuf csv = {0};
    collector col = {0};
    uhlm_calib_curve curve = {0};
    cJSON *o = NULL;
    char *js = NULL;
    double w0 = uhlm_now();

    if (uhlm_prompts_load_max(prompts_path, (uint64_t)max_in_mb << 20, &ps, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    int n_use = limit > 0 && limit < ps.n ? (int)limit : ps.n;
    if (!(slm = cli_load_model(cmd, slm_arg, tok_arg, "SLM")) ||
        !(llm = cli_load_model(cmd, llm_arg, tok_arg, "LLM")) || evc_check_pair(cmd, slm, llm))
        goto done;
    if (cli_check_payload(cmd, &dp.payload, slm) != 0) {
        rc = 2;
        goto done;
    }
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)threads;
    if (!(slm_ctx = uhlm_ctx_new(slm, &cp, &err)) ||
        !(ver = uhlm_verifier_inproc_new(llm, &cp, &err)) ||
        !(dev = uhlm_device_new(slm_ctx, 0, ver, NULL, &dp, &err))) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    int n_ctx = uhlm_device_n_ctx(dev);
    const int chat = cli_prompts_chat(cmd, slm, no_chat);
    if (!(ids = malloc(sizeof(int) * ((size_t)n_ctx + 1)))) {
        fprintf(stderr, "uhlm calibrate: out of memory\n");
        goto done;
    }
    if (csv_path) {
        col.csv = &csv;
        sb_printf(&csv, "prompt_id,split,index,pos,draft,token,u,beta,x_d,y_d,accepted,outright\n");
    }
    uhlm_device_set_callback(dev, on_token, &col);
    int n_train_p = 0, n_test_p = 0;
    uhlm_progress pg;
    uhlm_progress_init(&pg, stderr, n_use, "calibrate");
    for (int i = 0; i < n_use; i++) {
        const uhlm_prompt *p = &ps.items[i];
        int np = cli_prompt_tokens(slm, chat, p->text, ids, n_ctx + 1, &err);
        if (np < 0) {
            fprintf(stderr, "uhlm calibrate: prompt %s: %s\n", p->id, err.msg);
            goto done;
        }
        if (np >= n_ctx) {
            fprintf(stderr, "uhlm calibrate: prompt %s is %d tokens, the context holds %d\n", p->id,
                    np, n_ctx);
            goto done;
        }
        col.id = p->id;
        col.is_train = uhlm_prompt_is_train(p->id, split);
        n_train_p += col.is_train;
        n_test_p += !col.is_train;
        if (uhlm_device_start(dev, ids, np, evc_prompt_seed(seed, p->id), &err) != 0 ||
            uhlm_device_run(dev, &err) < 0) {
            fprintf(stderr, "uhlm calibrate: prompt %s: %s\n", p->id, err.msg);
            goto done;
        }
        if (col.train.oom || col.test.oom || csv.oom) {
            fprintf(stderr, "uhlm calibrate: out of memory\n");
            goto done;
        }
        uhlm_progress_step(&pg, 1);
    }
    uhlm_progress_end(&pg);
    if (csv_path && uhlm_write_file_atomic(csv_path, csv.s, csv.len, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    const uhlm_calib_sample *tr = col.train.s, *te = col.test.s;
    const size_t ntr = col.train.n, nte = col.test.n;
    if (n_train_p == 0 || n_test_p == 0) {
        fprintf(stderr,
                "uhlm calibrate: the split %.2f leaves %d training and %d test prompts; both "
                "parts need at least one (use more prompts or another --split)\n",
                split, n_train_p, n_test_p);
        goto done;
    }
    uhlm_linfit fit, fit_te = {0};
    if (uhlm_calib_fit(tr, ntr, &fit, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: training part: %s\n", err.msg);
        goto done;
    }
    int have_te = uhlm_calib_fit(te, nte, &fit_te, &err) == 0;
    double delta = uhlm_calib_delta(tr, ntr), delta_te = uhlm_calib_delta(te, nte);
    double averse = NAN, prone = NAN;
    int have_th = uhlm_calib_thresholds(&fit, delta, &averse, &prone, &err) == 0;
    if (!have_th) fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
    /* the budget rule needs no fit: the line's prediction is only stored beside it */
    if (uhlm_calib_budget_curve(tr, ntr, &fit, UHLM_CALIB_CONFIDENCE_DEFAULT, UHLM_CALIB_MAX_KNOTS,
                                &curve, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    double u_budget = uhlm_calib_budget_threshold(&curve, budget);
    /* out-of-sample R²: the training fit scored on the held-out tokens */
    double ssr = 0, sst = 0, my = 0;
    for (size_t i = 0; i < nte; i++) my += te[i].beta;
    my = nte ? my / (double)nte : 0;
    for (size_t i = 0; i < nte; i++) {
        double r = te[i].beta - (fit.a * te[i].u + fit.b), d = te[i].beta - my;
        ssr += r * r;
        sst += d * d;
    }

    if (!(o = cJSON_CreateObject())) goto oom;
    cJSON_AddStringToObject(o, "slm", slm->path);
    cJSON_AddStringToObject(o, "llm", llm->path);
    cJSON_AddStringToObject(o, "prompts", prompts_path);
    cJSON *st = cJSON_AddObjectToObject(o, "settings");
    if (!st) goto oom;
    char pbuf[64];
    uhlm_payload_format(&dp.payload, pbuf, sizeof pbuf);
    cJSON_AddNumberToObject(st, "n_gen", (double)n_gen);
    cJSON_AddNumberToObject(st, "temperature", temp);
    cJSON_AddNumberToObject(st, "top_k", (double)top_k);
    cJSON_AddNumberToObject(st, "top_p", top_p);
    cJSON_AddStringToObject(st, "payload", pbuf);
    cJSON_AddStringToObject(st, "uncertainty", uhlm_unc_method_name(dp.unc.method));
    cJSON_AddNumberToObject(st, "samples", (double)samples);
    cJSON_AddNumberToObject(st, "theta_max", theta_max);
    snprintf(pbuf, sizeof pbuf, "%llu", (unsigned long long)seed);
    cJSON_AddStringToObject(st, "seed", pbuf);
    cJSON *sp = cJSON_AddObjectToObject(o, "split");
    if (!sp) goto oom;
    cJSON_AddNumberToObject(sp, "train_fraction", split);
    cJSON_AddNumberToObject(sp, "train_prompts", n_train_p);
    cJSON_AddNumberToObject(sp, "test_prompts", n_test_p);
    cJSON_AddNumberToObject(sp, "train_tokens", (double)ntr);
    cJSON_AddNumberToObject(sp, "test_tokens", (double)nte);
    cJSON *fj = cJSON_AddObjectToObject(o, "fit");
    if (!fj) goto oom;
    cJSON_AddNumberToObject(fj, "a", fit.a);
    cJSON_AddNumberToObject(fj, "b", fit.b);
    cJSON_AddNumberToObject(fj, "r2", fit.r2);
    cJSON_AddNumberToObject(fj, "n", (double)fit.n);
    cJSON_AddItemToObject(fj, "r2_test", num(sst > 0 ? 1.0 - ssr / sst : NAN));
    cJSON *ft = cJSON_AddObjectToObject(fj, "test_fit");
    if (ft) {
        cJSON_AddItemToObject(ft, "a", num(have_te ? fit_te.a : NAN));
        cJSON_AddItemToObject(ft, "b", num(have_te ? fit_te.b : NAN));
        cJSON_AddItemToObject(ft, "r2", num(have_te ? fit_te.r2 : NAN));
    }
    cJSON_AddNumberToObject(o, "delta", delta);
    cJSON_AddNumberToObject(o, "delta_test", delta_te);
    double mean_u = 0, mean_b = 0;
    for (size_t i = 0; i < ntr; i++) {
        mean_u += tr[i].u;
        mean_b += tr[i].beta;
    }
    cJSON_AddItemToObject(o, "mean_u", num(ntr ? mean_u / (double)ntr : NAN));
    cJSON_AddItemToObject(o, "mean_beta", num(ntr ? mean_b / (double)ntr : NAN));
    cJSON *th = cJSON_AddObjectToObject(o, "thresholds");
    if (!th) goto oom;
    cJSON_AddItemToObject(th, "risk_averse", num(averse));
    cJSON_AddItemToObject(th, "risk_prone", num(prone));
    cJSON_AddNumberToObject(th, "budget", u_budget);
    cJSON *rk = cJSON_AddObjectToObject(o, "risk");
    if (!rk) goto oom;
    if (have_th) {
        const char *names[2] = {"risk_averse", "risk_prone"};
        double u[2] = {averse, prone};
        for (int k = 0; k < 2; k++) {
            cJSON *r = cJSON_AddObjectToObject(rk, names[k]);
            if (!r) goto oom;
            cJSON_AddItemToObject(r, "train", risk_json(tr, ntr, &fit, u[k]));
            cJSON_AddItemToObject(r, "test", risk_json(te, nte, &fit, u[k]));
        }
    }
    {
        cJSON *r = cJSON_AddObjectToObject(rk, "budget");
        cJSON *bj = cJSON_AddObjectToObject(o, "budget");
        cJSON *cu = cJSON_CreateDoubleArray(curve.u, (int)curve.n);
        cJSON *cb = cJSON_CreateDoubleArray(curve.upper, (int)curve.n);
        cJSON *co = cJSON_CreateDoubleArray(curve.observed, (int)curve.n);
        cJSON *cp = cJSON_CreateDoubleArray(curve.predicted, (int)curve.n);
        if (!r || !bj || !cu || !cb || !co || !cp) {
            cJSON_Delete(cu);
            cJSON_Delete(cb);
            cJSON_Delete(co);
            cJSON_Delete(cp);
            goto oom;
        }
        cJSON_AddItemToObject(r, "train", risk_json(tr, ntr, &fit, u_budget));
        cJSON_AddItemToObject(r, "test", risk_json(te, nte, &fit, u_budget));
        cJSON_AddNumberToObject(bj, "R", budget);
        cJSON_AddNumberToObject(bj, "confidence", UHLM_CALIB_CONFIDENCE_DEFAULT);
        cJSON_AddNumberToObject(bj, "u_th", u_budget);
        cJSON_AddStringToObject(bj, "rule",
                                "largest u_th whose one-sided Clopper-Pearson upper limit (at "
                                "'confidence') of the share of the N training tokens with "
                                "u_i <= u_th that the LLM rejected is <= R; -1: verify all, "
                                "1: skip all");
        cJSON_AddItemToObject(bj, "curve_u", cu);
        cJSON_AddItemToObject(bj, "curve_upper", cb);
        cJSON_AddItemToObject(bj, "curve_observed", co);
        cJSON_AddItemToObject(bj, "curve_predicted", cp);
    }
    cJSON_AddItemToObject(o, "bins", bins_json(tr, ntr));
    cJSON_AddItemToObject(o, "bins_test", bins_json(te, nte));
    cJSON *pp = cJSON_AddObjectToObject(o, "paper");
    if (pp) {
        cJSON_AddStringToObject(pp, "pair", "TinyLlama-1.1B / Llama-2-7B");
        cJSON_AddNumberToObject(pp, "a", 0.82);
        cJSON_AddNumberToObject(pp, "b", -0.06);
        cJSON_AddNumberToObject(pp, "risk_averse", 0.07);
        cJSON_AddNumberToObject(pp, "risk_prone", 0.43);
    }
    cJSON_AddNumberToObject(o, "wall_seconds", uhlm_now() - w0);
    if (!(js = cJSON_Print(o))) goto oom;
    size_t jl = strlen(js);
    js[jl] = '\n'; /* the terminator becomes a final newline; written by length */
    if (uhlm_write_file_atomic(out_path, js, jl + 1, &err) != 0) {
        fprintf(stderr, "uhlm calibrate: %s\n", err.msg);
        goto done;
    }
    printf("fit (train, %zu tokens of %d prompts): beta = %.4f*u %+.4f, R^2 %.4f "
           "(held-out R^2 %.4f)\n",
           ntr, n_train_p, fit.a, fit.b, fit.r2, sst > 0 ? 1.0 - ssr / sst : NAN);
    printf("delta (share of drafts with y[d] < x[d]) %.4f\n", delta);
    if (have_th) {
        double u[2] = {averse, prone};
        const char *nm[2] = {"risk-averse", "risk-prone"};
        for (int k = 0; k < 2; k++) {
            uhlm_calib_risk r;
            uhlm_calib_risk_eval(te, nte, &fit, u[k], &r);
            printf("%s u_th %.4f: held-out skip share %.3f, predicted risk %.4f (loose %.4f), "
                   "observed rejections %.4f (expected %.4f) of all tokens\n",
                   nm[k], u[k], r.p_skip, r.predicted, r.predicted_loose, r.observed_reject,
                   r.observed_beta);
        }
    }
    {
        uhlm_calib_risk r;
        uhlm_calib_risk_eval(te, nte, &fit, u_budget, &r);
        printf("budget R %.4g u_th %.4f: held-out skip share %.3f, predicted risk %.4f (loose %.4f), "
               "observed rejections %.4f (expected %.4f) of all tokens\n",
               budget, u_budget, r.p_skip, r.predicted, r.predicted_loose, r.observed_reject,
               r.observed_beta);
    }
    fflush(stdout);
    rc = have_th ? 0 : 1;
    goto done;
oom:
    fprintf(stderr, "uhlm calibrate: out of memory\n");
done:
    cJSON_free(js);
    cJSON_Delete(o);
    uhlm_calib_curve_free(&curve);
    free(col.train.s);
    free(col.test.s);
    sb_free(&csv);
    free(ids);
    uhlm_device_free(dev);
    uhlm_verifier_free(ver);
    uhlm_ctx_free(slm_ctx);
    uhlm_model_free(slm);
    uhlm_model_free(llm);
    uhlm_prompts_free(&ps);
    return rc;
}
