/* calib_report.c: the analysis of a calibration collection and its calib.json
 * (calib_samples.h). The fit, threshold and budget rules themselves are calib.c's. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/strbuf.h"
#include "uhlm/calib_samples.h"
#include "uhlm/hybrid.h"

#define CAL_BINS 10

void uhlm_calib_analysis_free(uhlm_calib_analysis *a) { uhlm_calib_curve_free(&a->curve); }

int uhlm_calib_analyse(const uhlm_calib_collection *c, double split, double budget,
                       uhlm_calib_analysis *out, uhlm_error *err) {
    memset(out, 0, sizeof *out);
    const uhlm_calib_sample *tr = c->train.s, *te = c->test.s;
    const size_t ntr = c->train.n, nte = c->test.n;
    if (c->n_train_prompts == 0 || c->n_test_prompts == 0)
        return uhlm_set_error(err,
                              "the split %.2f leaves %d training and %d test prompts; both parts "
                              "need at least one (use more prompts or another --split)",
                              split, c->n_train_prompts, c->n_test_prompts);
    if (uhlm_calib_fit(tr, ntr, &out->fit, err) != 0) return eval_error_wrap(err, "training part");
    uhlm_error e2;
    out->have_te = uhlm_calib_fit(te, nte, &out->fit_te, &e2) == 0;
    out->delta = uhlm_calib_delta(tr, ntr);
    out->delta_te = uhlm_calib_delta(te, nte);
    out->averse = out->prone = NAN;
    out->have_th = uhlm_calib_thresholds(&out->fit, out->delta, &out->averse, &out->prone,
                                         &out->th_err) == 0;
    /* the budget rule needs no fit: the line's prediction is only stored beside it */
    if (uhlm_calib_budget_curve(tr, ntr, &out->fit, UHLM_CALIB_CONFIDENCE_DEFAULT,
                                UHLM_CALIB_MAX_KNOTS, &out->curve, err) != 0)
        return -1;
    out->budget = budget;
    out->u_budget = uhlm_calib_budget_threshold(&out->curve, budget);
    /* out-of-sample R²: the training fit scored on the held-out tokens */
    double ssr = 0, sst = 0, my = 0;
    for (size_t i = 0; i < nte; i++) my += te[i].beta;
    my = nte ? my / (double)nte : 0;
    for (size_t i = 0; i < nte; i++) {
        double r = te[i].beta - (out->fit.a * te[i].u + out->fit.b), d = te[i].beta - my;
        ssr += r * r;
        sst += d * d;
    }
    out->r2_test = sst > 0 ? 1.0 - ssr / sst : NAN;
    return 0;
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

/* "settings", "split" and "fit". */
static int head_json(cJSON *o, const uhlm_calib_collection *c, const uhlm_calib_analysis *a,
                     const uhlm_calib_info *info) {
    cJSON_AddStringToObject(o, "slm", info->slm);
    cJSON_AddStringToObject(o, "llm", info->llm);
    cJSON_AddStringToObject(o, "prompts", info->prompts);
    cJSON *st = cJSON_AddObjectToObject(o, "settings");
    if (!st) return -1;
    char pbuf[64];
    uhlm_payload_format(info->payload, pbuf, sizeof pbuf);
    cJSON_AddNumberToObject(st, "n_gen", (double)info->n_gen);
    cJSON_AddNumberToObject(st, "temperature", info->temperature);
    cJSON_AddNumberToObject(st, "top_k", (double)info->top_k);
    cJSON_AddNumberToObject(st, "top_p", info->top_p);
    cJSON_AddStringToObject(st, "payload", pbuf);
    cJSON_AddStringToObject(st, "uncertainty", uhlm_unc_method_name(info->method));
    cJSON_AddNumberToObject(st, "samples", (double)info->samples);
    cJSON_AddNumberToObject(st, "theta_max", info->theta_max);
    snprintf(pbuf, sizeof pbuf, "%llu", (unsigned long long)info->seed);
    cJSON_AddStringToObject(st, "seed", pbuf);
    cJSON *sp = cJSON_AddObjectToObject(o, "split");
    if (!sp) return -1;
    cJSON_AddNumberToObject(sp, "train_fraction", info->split);
    cJSON_AddNumberToObject(sp, "train_prompts", c->n_train_prompts);
    cJSON_AddNumberToObject(sp, "test_prompts", c->n_test_prompts);
    cJSON_AddNumberToObject(sp, "train_tokens", (double)c->train.n);
    cJSON_AddNumberToObject(sp, "test_tokens", (double)c->test.n);
    cJSON *fj = cJSON_AddObjectToObject(o, "fit");
    if (!fj) return -1;
    cJSON_AddNumberToObject(fj, "a", a->fit.a);
    cJSON_AddNumberToObject(fj, "b", a->fit.b);
    cJSON_AddNumberToObject(fj, "r2", a->fit.r2);
    cJSON_AddNumberToObject(fj, "n", (double)a->fit.n);
    cJSON_AddItemToObject(fj, "r2_test", num(a->r2_test));
    cJSON *ft = cJSON_AddObjectToObject(fj, "test_fit");
    if (ft) {
        cJSON_AddItemToObject(ft, "a", num(a->have_te ? a->fit_te.a : NAN));
        cJSON_AddItemToObject(ft, "b", num(a->have_te ? a->fit_te.b : NAN));
        cJSON_AddItemToObject(ft, "r2", num(a->have_te ? a->fit_te.r2 : NAN));
    }
    return 0;
}

/* "thresholds", "risk" and "budget". */
static int risk_part(cJSON *o, const uhlm_calib_collection *c, const uhlm_calib_analysis *a) {
    const uhlm_calib_sample *tr = c->train.s, *te = c->test.s;
    const size_t ntr = c->train.n, nte = c->test.n;
    cJSON *th = cJSON_AddObjectToObject(o, "thresholds");
    if (!th) return -1;
    cJSON_AddItemToObject(th, "risk_averse", num(a->averse));
    cJSON_AddItemToObject(th, "risk_prone", num(a->prone));
    cJSON_AddNumberToObject(th, "budget", a->u_budget);
    cJSON *rk = cJSON_AddObjectToObject(o, "risk");
    if (!rk) return -1;
    if (a->have_th) {
        const char *names[2] = {"risk_averse", "risk_prone"};
        double u[2] = {a->averse, a->prone};
        for (int k = 0; k < 2; k++) {
            cJSON *r = cJSON_AddObjectToObject(rk, names[k]);
            if (!r) return -1;
            cJSON_AddItemToObject(r, "train", risk_json(tr, ntr, &a->fit, u[k]));
            cJSON_AddItemToObject(r, "test", risk_json(te, nte, &a->fit, u[k]));
        }
    }
    cJSON *r = cJSON_AddObjectToObject(rk, "budget");
    cJSON *bj = cJSON_AddObjectToObject(o, "budget");
    cJSON *cu = cJSON_CreateDoubleArray(a->curve.u, (int)a->curve.n);
    cJSON *cb = cJSON_CreateDoubleArray(a->curve.upper, (int)a->curve.n);
    cJSON *co = cJSON_CreateDoubleArray(a->curve.observed, (int)a->curve.n);
    cJSON *cp = cJSON_CreateDoubleArray(a->curve.predicted, (int)a->curve.n);
    if (!r || !bj || !cu || !cb || !co || !cp) {
        cJSON_Delete(cu);
        cJSON_Delete(cb);
        cJSON_Delete(co);
        cJSON_Delete(cp);
        return -1;
    }
    cJSON_AddItemToObject(r, "train", risk_json(tr, ntr, &a->fit, a->u_budget));
    cJSON_AddItemToObject(r, "test", risk_json(te, nte, &a->fit, a->u_budget));
    cJSON_AddNumberToObject(bj, "R", a->budget);
    cJSON_AddNumberToObject(bj, "confidence", UHLM_CALIB_CONFIDENCE_DEFAULT);
    cJSON_AddNumberToObject(bj, "u_th", a->u_budget);
    cJSON_AddStringToObject(bj, "rule",
                            "largest u_th whose one-sided Clopper-Pearson upper limit (at "
                            "'confidence') of the share of the N training tokens with "
                            "u_i <= u_th that the LLM rejected is <= R; -1: verify all, "
                            "1: skip all");
    cJSON_AddItemToObject(bj, "curve_u", cu);
    cJSON_AddItemToObject(bj, "curve_upper", cb);
    cJSON_AddItemToObject(bj, "curve_observed", co);
    cJSON_AddItemToObject(bj, "curve_predicted", cp);
    return 0;
}

char *uhlm_calib_report_json(const uhlm_calib_collection *c, const uhlm_calib_analysis *a,
                             const uhlm_calib_info *info, size_t *len) {
    const uhlm_calib_sample *tr = c->train.s;
    const size_t ntr = c->train.n;
    char *js = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o || head_json(o, c, a, info) != 0) goto done;
    cJSON_AddNumberToObject(o, "delta", a->delta);
    cJSON_AddNumberToObject(o, "delta_test", a->delta_te);
    double mean_u = 0, mean_b = 0;
    for (size_t i = 0; i < ntr; i++) {
        mean_u += tr[i].u;
        mean_b += tr[i].beta;
    }
    cJSON_AddItemToObject(o, "mean_u", num(ntr ? mean_u / (double)ntr : NAN));
    cJSON_AddItemToObject(o, "mean_beta", num(ntr ? mean_b / (double)ntr : NAN));
    if (risk_part(o, c, a) != 0) goto done;
    cJSON_AddItemToObject(o, "bins", bins_json(tr, ntr));
    cJSON_AddItemToObject(o, "bins_test", bins_json(c->test.s, c->test.n));
    cJSON *pp = cJSON_AddObjectToObject(o, "paper");
    if (pp) {
        cJSON_AddStringToObject(pp, "pair", "TinyLlama-1.1B / Llama-2-7B");
        cJSON_AddNumberToObject(pp, "a", 0.82);
        cJSON_AddNumberToObject(pp, "b", -0.06);
        cJSON_AddNumberToObject(pp, "risk_averse", 0.07);
        cJSON_AddNumberToObject(pp, "risk_prone", 0.43);
    }
    cJSON_AddNumberToObject(o, "wall_seconds", info->wall_s);
    char *p = cJSON_Print(o);
    if (p) {
        /* copied so that the caller frees with free(), whatever allocator cJSON uses */
        size_t n = strlen(p);
        if ((js = malloc(n + 2))) {
            memcpy(js, p, n);
            js[n] = '\n';
            js[n + 1] = '\0';
            *len = n + 1;
        }
        cJSON_free(p);
    }
done:
    cJSON_Delete(o);
    return js;
}
