/* report.c: the report writers of the evaluation harness (harness.h): results.csv,
 * sweep.csv, methods.csv, bins.csv, per_prompt.csv, results.json and summary.md. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/harness_internal.h"
#include "eval/strbuf.h"
#include "uhlm/hybrid.h"
#include "uhlm/tokenizer.h"

/* Everything the writers read: the sums of every set, and the yardsticks of "% of llm" and
 * "% of hlm". */
typedef struct report {
    const uhlm_eval_harness *h;
    const uhlm_eval_results *R;
    uhlm_eval_acc main[UHLM_EVAL_N_MODES], greedy[UHLM_EVAL_N_MODES], self;
    const uhlm_eval_acc *H; /* hlm, when run */
    double cos_llm, cos_hlm, ppl_llm, ppl_hlm;
    ebuf csv, scsv, mcsv, bcsv, md, pp, ans, ivc;
    cJSON *root;
} report;

static const uhlm_mode rep_order[UHLM_EVAL_N_MODES] = {UHLM_MODE_SLM, UHLM_MODE_LLM, UHLM_MODE_HLM,
                                                       UHLM_MODE_RAND, UHLM_MODE_UHLM};

static cJSON *num(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }
#define ratio uhlm_eval_ratio

static void report_sums(report *r) {
    const uhlm_eval_harness *h = r->h;
    const uhlm_eval_results *R = r->R;
    for (int m = 0; m < UHLM_EVAL_N_MODES; m++) {
        uhlm_eval_sum(&R->main[m], h->o.n_snr, &r->main[m]);
        uhlm_eval_sum(&R->greedy[m], h->o.n_snr, &r->greedy[m]);
    }
    uhlm_eval_sum(&R->llm_self, h->o.n_snr, &r->self);
    int hlm = h->o.want[UHLM_MODE_HLM];
    r->H = hlm ? &r->main[UHLM_MODE_HLM] : NULL;
    r->cos_llm = uhlm_eval_acc_cos(&r->self);
    r->cos_hlm = hlm ? uhlm_eval_acc_cos(&r->main[UHLM_MODE_HLM]) : NAN;
    r->ppl_llm = uhlm_eval_acc_ppl(&r->main[UHLM_MODE_LLM]);
    r->ppl_hlm = hlm ? uhlm_eval_acc_ppl(&r->main[UHLM_MODE_HLM]) : NAN;
}

/* The temperature as the user wrote it, when the options carry it. */
static double temperature(const uhlm_eval_opts *o) {
    return (float)o->temperature == o->base.sampling.temp ? o->temperature : o->base.sampling.temp;
}

static int config_json(const report *r, cJSON *cfgj) {
    const uhlm_eval_harness *h = r->h;
    const uhlm_eval_opts *o = &h->o;
    char pb[64];
    cJSON_AddStringToObject(cfgj, "slm", uhlm_model_path(h->slm));
    cJSON_AddStringToObject(cfgj, "llm", uhlm_model_path(h->llm));
    cJSON_AddStringToObject(cfgj, "prompts", o->prompts_path ? o->prompts_path : "");
    cJSON_AddNumberToObject(cfgj, "n_prompts", h->n_prompts);
    if (o->n_reps > 1) cJSON_AddNumberToObject(cfgj, "seeds", o->n_reps); /* --seeds K */
    cJSON_AddNumberToObject(cfgj, "n_gen", (double)o->base.n_gen);
    cJSON_AddNumberToObject(cfgj, "temperature", temperature(o));
    uhlm_payload_format(&o->base.payload, pb, sizeof pb);
    cJSON_AddStringToObject(cfgj, "payload", pb);
    cJSON_AddStringToObject(cfgj, "uncertainty", uhlm_unc_method_name(o->base.unc.method));
    cJSON_AddNumberToObject(cfgj, "u_th", o->u_th);
    cJSON_AddItemToObject(cfgj, "rand_skip_prob", num(r->R->rand_prob));
    cJSON_AddStringToObject(cfgj, "threshold_source",
                            o->threshold_source ? o->threshold_source : "--uth");
    if (o->risk) cJSON_AddStringToObject(cfgj, "risk", o->risk);
    cJSON_AddNumberToObject(cfgj, "bandwidth_hz", o->base.channel.up.bandwidth_hz);
    cJSON_AddStringToObject(cfgj, "fading", uhlm_fading_name(o->base.channel.fading));
    cJSON_AddNumberToObject(cfgj, "sweep_snr_db", o->sweep_snr);
    snprintf(pb, sizeof pb, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(cfgj, "seed", pb);
    cJSON_AddNumberToObject(cfgj, "threads", (double)o->n_threads);
    if (o->server) cJSON_AddStringToObject(cfgj, "server", o->server);
    cJSON_AddNumberToObject(cfgj, "wall_seconds", r->R->wall_s);
    cJSON_AddItemToObject(cfgj, "llm_self_cos_sim", num(r->cos_llm));
    return 0;
}

static int result_json(cJSON *rows, uhlm_mode m, double snr, const uhlm_eval_acc *a, int k,
                       double tp, double tr, double tsr, double rej, double cosv, double cos_pct_llm,
                       double cos_pct_hlm, double ppl, double ppl_pct_llm, double ppl_pct_hlm,
                       double exact, double prefix, double sp, double upred) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    cJSON_AddItemToArray(rows, o);
    cJSON_AddStringToObject(o, "mode", uhlm_mode_name(m));
    cJSON_AddNumberToObject(o, "snr_db", snr);
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
    cJSON_AddItemToObject(o, "tsr_expected", num(uhlm_eval_acc_tsr_expected(a)));
    cJSON_AddItemToObject(o, "rejection_rate", num(rej));
    cJSON_AddNumberToObject(o, "transmitted", (double)a->trans);
    cJSON_AddNumberToObject(o, "skipped", (double)a->skipped);
    cJSON_AddNumberToObject(o, "uplink_bytes", a->up_bits / 8.0);
    cJSON_AddNumberToObject(o, "downlink_bytes", a->down_bits / 8.0);
    cJSON_AddNumberToObject(o, "llm_calls", (double)a->llm_calls);
    cJSON_AddNumberToObject(o, "catchup_tokens", (double)a->catchup);
    cJSON_AddItemToObject(o, "cos_sim", num(cosv));
    cJSON_AddItemToObject(o, "cos_pct_llm", num(cos_pct_llm));
    cJSON_AddItemToObject(o, "cos_pct_hlm", num(cos_pct_hlm));
    cJSON_AddItemToObject(o, "nll", num(uhlm_eval_acc_nll(a)));
    cJSON_AddItemToObject(o, "ppl", num(ppl));
    cJSON_AddItemToObject(o, "ppl_pct_llm", num(ppl_pct_llm));
    cJSON_AddItemToObject(o, "ppl_pct_hlm", num(ppl_pct_hlm));
    cJSON_AddItemToObject(o, "exact_match", num(exact));
    cJSON_AddItemToObject(o, "prefix_match", num(prefix));
    cJSON_AddItemToObject(o, "speedup_vs_hlm", num(sp));
    cJSON_AddItemToObject(o, "uplink_reduction_vs_hlm", num(upred));
    return 0;
}

/* results.csv and results.json's "results": one row per reported mode and SNR. */
static int write_results(report *r, cJSON *rows) {
    const uhlm_eval_harness *h = r->h;
    int greedy = h->o.greedy, NP = h->n_prompts;
    const uhlm_eval_acc *H = r->H;
    eb_printf(&r->csv, "mode,snr_db,prompts,generated,throughput_tok_s,accounted_s,compute_s,link_s,"
                       "tr,tsr,rejection_rate,uplink_bytes,uplink_bytes_per_token,llm_calls,"
                       "catchup_tokens,skip_prob,cos_sim,cos_pct_llm,cos_pct_hlm,nll,ppl,ppl_pct_llm,"
                       "ppl_pct_hlm,exact_match,prefix_match,speedup_vs_hlm,uplink_reduction_vs_hlm,"
                       "tsr_expected\n");
    for (int ri = 0; ri < UHLM_EVAL_N_MODES; ri++) {
        uhlm_mode m = rep_order[ri];
        if (!h->o.want[m]) continue;
        const uhlm_eval_acc *a = &r->main[m], *g = &r->greedy[m];
        double cosv = m == UHLM_MODE_LLM ? r->cos_llm : uhlm_eval_acc_cos(a);
        double ppl = uhlm_eval_acc_ppl(a);
        double tr = ratio((double)a->trans, (double)a->gen);
        double tsr = uhlm_eval_acc_tsr(a);
        double rej = ratio((double)a->rejected, (double)a->trans);
        double exact = greedy ? ratio((double)g->exact_n, (double)g->exact_total) : NAN;
        double prefix = greedy ? ratio(g->prefix_sum, (double)g->exact_total) : NAN;
        double upred = H ? 1.0 - ratio((double)a->trans, (double)H->trans) : NAN;
        double rand_prob = m == UHLM_MODE_RAND ? r->R->rand_prob : NAN;
        for (int k = 0; k < h->n_snr_report; k++) {
            double tp = uhlm_eval_acc_tput(a, k), sp = H ? tp / uhlm_eval_acc_tput(H, k) : NAN;
            eb_printf(&r->csv, "%s,%g,%d,%ld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.0f,%.6g,%ld,%ld,%.6g,"
                               "%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n",
                      uhlm_mode_name(m), h->o.snr[k], NP, a->gen, tp, a->compute_s + a->link_s[k],
                      a->compute_s, a->link_s[k], tr, tsr, rej, a->up_bits / 8.0,
                      ratio(a->up_bits / 8.0, (double)a->gen), a->llm_calls, a->catchup, rand_prob,
                      cosv, 100 * cosv / r->cos_llm, 100 * cosv / r->cos_hlm, uhlm_eval_acc_nll(a),
                      ppl, 100 * r->ppl_llm / ppl, 100 * r->ppl_hlm / ppl, exact, prefix, sp, upred,
                      uhlm_eval_acc_tsr_expected(a));
            if (result_json(rows, m, h->o.snr[k], a, k, tp, tr, tsr, rej, cosv,
                            100 * cosv / r->cos_llm, 100 * cosv / r->cos_hlm, ppl,
                            100 * r->ppl_llm / ppl, 100 * r->ppl_hlm / ppl, exact, prefix, sp, upred))
                return -1;
        }
    }
    return 0;
}

/* sweep.csv and results.json's "sweep". */
static int write_sweep(report *r, cJSON *swj) {
    const uhlm_eval_harness *h = r->h;
    eb_printf(&r->scsv, "method,quantile,u_th,kind,skip_rate,tr,tsr,rejection_rate,throughput_tok_s,"
                        "cos_sim,cos_pct_llm,nll,ppl,tsr_expected\n");
    static const char *const kinds[2] = {"uhlm", "rand"};
    for (int s = 0; s < r->R->n_sweep; s++) {
        const uhlm_eval_sweep_point *P = &r->R->sweep[s];
        const uhlm_eval_set *two[2] = {&P->u, &P->r};
        for (int j = 0; j < 2; j++) {
            uhlm_eval_acc a;
            uhlm_eval_sum(two[j], h->o.n_snr, &a);
            double cosv = uhlm_eval_acc_cos(&a), tsr = uhlm_eval_acc_tsr(&a);
            double skip = ratio((double)a.skipped, (double)a.gen), tr = uhlm_eval_acc_tr(&a);
            double rej = uhlm_eval_acc_rej(&a), tp = uhlm_eval_acc_tput(&a, h->k_sweep);
            const char *mn = uhlm_unc_method_name(P->method);
            eb_printf(&r->scsv, "%s,%g,%.6g,%s,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", mn,
                      P->q, P->u_th, kinds[j], skip, tr, tsr, rej, tp, cosv,
                      100 * cosv / r->cos_llm, uhlm_eval_acc_nll(&a), uhlm_eval_acc_ppl(&a),
                      uhlm_eval_acc_tsr_expected(&a));
            cJSON *o = cJSON_CreateObject();
            if (!o) return -1;
            cJSON_AddItemToArray(swj, o);
            cJSON_AddStringToObject(o, "method", mn);
            cJSON_AddNumberToObject(o, "quantile", P->q);
            cJSON_AddNumberToObject(o, "u_th", P->u_th);
            cJSON_AddStringToObject(o, "kind", kinds[j]);
            cJSON_AddItemToObject(o, "skip_rate", num(skip));
            cJSON_AddItemToObject(o, "tr", num(tr));
            cJSON_AddItemToObject(o, "tsr", num(tsr));
            cJSON_AddItemToObject(o, "tsr_expected", num(uhlm_eval_acc_tsr_expected(&a)));
            cJSON_AddItemToObject(o, "rejection_rate", num(rej));
            cJSON_AddItemToObject(o, "throughput_tok_s", num(tp));
            cJSON_AddItemToObject(o, "cos_sim", num(cosv));
            cJSON_AddItemToObject(o, "cos_pct_llm", num(100 * cosv / r->cos_llm));
            cJSON_AddItemToObject(o, "nll", num(uhlm_eval_acc_nll(&a)));
            cJSON_AddItemToObject(o, "ppl", num(uhlm_eval_acc_ppl(&a)));
        }
    }
    return 0;
}

/* methods.csv, bins.csv and results.json's "methods": the fit of β on u per method. */
static int write_methods(report *r, cJSON *mj) {
    eb_printf(&r->mcsv, "method,a,b,r2,tokens,delta\n");
    eb_printf(&r->bcsv, "method,lo,hi,count,fraction,mean_u,mean_beta,reject_rate\n");
    for (int j = 0; j < r->R->n_fits; j++) {
        const uhlm_eval_method_fit *F = &r->R->fits[j];
        const char *nm = uhlm_unc_method_name(F->method);
        eb_printf(&r->mcsv, "%s,%.6g,%.6g,%.6g,%zu,%.6g\n", nm, F->ok ? F->fit.a : NAN,
                  F->ok ? F->fit.b : NAN, F->ok ? F->fit.r2 : NAN, F->n, F->delta);
        cJSON *o = cJSON_CreateObject();
        if (!o) return -1;
        cJSON_AddItemToArray(mj, o);
        cJSON_AddStringToObject(o, "method", nm);
        cJSON_AddItemToObject(o, "a", num(F->ok ? F->fit.a : NAN));
        cJSON_AddItemToObject(o, "b", num(F->ok ? F->fit.b : NAN));
        cJSON_AddItemToObject(o, "r2", num(F->ok ? F->fit.r2 : NAN));
        cJSON_AddNumberToObject(o, "tokens", (double)F->n);
        cJSON_AddNumberToObject(o, "delta", F->delta);
        cJSON *bj = cJSON_AddArrayToObject(o, "bins");
        for (int b = 0; b < UHLM_EVAL_N_BINS; b++) {
            const uhlm_calib_bin *B = &F->bins[b];
            eb_printf(&r->bcsv, "%s,%g,%g,%zu,%.6g,%.6g,%.6g,%.6g\n", nm, B->lo, B->hi, B->count,
                      B->frac, B->mean_u, B->mean_beta, B->reject_rate);
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
    return 0;
}

/* intervals.csv: one line per headline figure. */
static int write_intervals(report *r) {
    const uhlm_eval_harness *h = r->h;
    uhlm_eval_intervals iv;
    uhlm_error err;
    if (uhlm_eval_bootstrap(h, r->R, h->o.n_boot, h->o.seed, &iv, &err) != 0) return -1;
    eb_printf(&r->ivc, "mode,snr_db,metric,value,lo,hi,resamples,unit\n");
    for (int i = 0; i < iv.n; i++) {
        const uhlm_eval_interval *x = &iv.iv[i];
        eb_printf(&r->ivc, "%s,", uhlm_mode_name(x->mode));
        if (x->snr_index >= 0) eb_printf(&r->ivc, "%g", h->o.snr[x->snr_index]);
        eb_printf(&r->ivc, ",%s,%.6g,%.6g,%.6g,%d,%s\n", x->name, x->value, x->lo, x->hi,
                  iv.n_boot, iv.by_rep ? "seeds" : "prompts");
    }
    uhlm_eval_intervals_free(&iv);
    return 0;
}

/* per_prompt.csv: one line per labelled run, in the order they ran. */
static void pp_set(ebuf *b, const uhlm_eval_harness *h, const uhlm_eval_set *s) {
    if (!s->label[0]) return;
    for (int i = 0; i < s->n; i++) {
        const uhlm_eval_record *x = &s->rec[i];
        eb_printf(b, "%s,", s->label);
        eb_csv_str(b, h->ps->items[x->prompt].id);
        eb_printf(b, ",%d,%d,%d,%d,%.6g,%.6g,%.6g", x->generated, x->transmitted, x->skipped,
                  x->rejected, (double)x->up_bits / 8.0, x->have_cos ? x->cos : NAN,
                  x->nll_n > 0 ? x->nll_sum / x->nll_n : NAN);
        if (h->o.n_reps > 1) eb_printf(b, ",%d", x->rep);
        eb_printf(b, "\n");
    }
}

/* answers.jsonl: the text of each labelled run, one JSON object a line. */
static int answers_set(ebuf *b, const uhlm_eval_harness *h, const uhlm_eval_set *s) {
    if (!s->label[0]) return 0;
    for (int i = 0; i < s->n; i++) {
        const uhlm_eval_record *x = &s->rec[i];
        const uhlm_prompt *p = &h->ps->items[x->prompt];
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)x->seed);
        char *text = uhlm_detokenize(uhlm_model_tokenizer(h->slm), x->tokens, x->n_tokens);
        cJSON *o = cJSON_CreateObject();
        char *line = NULL;
        if (text && o) {
            cJSON_AddStringToObject(o, "run", s->label);
            cJSON_AddStringToObject(o, "mode", uhlm_mode_name(s->cfg.mode));
            cJSON_AddStringToObject(o, "prompt_id", p->id);
            cJSON_AddNumberToObject(o, "rep", x->rep);
            cJSON_AddStringToObject(o, "seed", seed);
            cJSON_AddNumberToObject(o, "tokens", x->n_tokens);
            cJSON_AddStringToObject(o, "text", text);
            cJSON_AddStringToObject(o, "prompt", p->text);
            if (p->reference) cJSON_AddStringToObject(o, "reference", p->reference);
            else cJSON_AddNullToObject(o, "reference");
            line = cJSON_PrintUnformatted(o);
        }
        if (line) eb_printf(b, "%s\n", line);
        cJSON_free(line);
        cJSON_Delete(o);
        free(text);
        if (!line) return -1;
    }
    return 0;
}

static int write_answers(report *r) {
    const uhlm_eval_results *R = r->R;
    static const uhlm_mode order[4] = {UHLM_MODE_SLM, UHLM_MODE_HLM, UHLM_MODE_UHLM, UHLM_MODE_RAND};
    int bad = answers_set(&r->ans, r->h, &R->main[UHLM_MODE_LLM]) ||
              answers_set(&r->ans, r->h, &R->llm_self);
    for (int oi = 0; oi < 4; oi++) bad = bad || answers_set(&r->ans, r->h, &R->main[order[oi]]);
    for (int s = 0; s < R->n_sweep; s++)
        bad = bad || answers_set(&r->ans, r->h, &R->sweep[s].u) ||
              answers_set(&r->ans, r->h, &R->sweep[s].r);
    return bad ? -1 : 0;
}

static void write_per_prompt(report *r) {
    const uhlm_eval_results *R = r->R;
    /* the repetition column only with --seeds K > 1, so one seed gives the file it always did */
    eb_printf(&r->pp, "run,prompt_id,generated,transmitted,skipped,rejected,uplink_bytes,cos_sim,nll%s\n",
              r->h->o.n_reps > 1 ? ",rep" : "");
    pp_set(&r->pp, r->h, &R->main[UHLM_MODE_LLM]);
    pp_set(&r->pp, r->h, &R->llm_self);
    static const uhlm_mode order[4] = {UHLM_MODE_SLM, UHLM_MODE_HLM, UHLM_MODE_UHLM, UHLM_MODE_RAND};
    for (int oi = 0; oi < 4; oi++) pp_set(&r->pp, r->h, &R->main[order[oi]]);
    for (int s = 0; s < R->n_sweep; s++) {
        pp_set(&r->pp, r->h, &R->sweep[s].u);
        pp_set(&r->pp, r->h, &R->sweep[s].r);
    }
}

static void md_quality(report *r) {
    const uhlm_eval_harness *h = r->h;
    /* no hidden-state cosine here: it does not separate the modes (docs/results.md), so a
     * column of it would read as a quality figure; it stays in results.csv */
    eb_printf(&r->md, "## Transmission and quality (SNR-independent)\n\n"
                      "| mode | TR | TSR | TSR expected | rejection | uplink kB/token | LLM calls | "
                      "catch-up | NLL | PPL | PPL %% llm | exact match (T=0) |\n"
                      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int ri = 0; ri < UHLM_EVAL_N_MODES; ri++) {
        uhlm_mode m = rep_order[ri];
        if (!h->o.want[m]) continue;
        const uhlm_eval_acc *a = &r->main[m], *g = &r->greedy[m];
        eb_printf(&r->md, "| %s | %.3f | %.3f | %.3f | %.3f | %.2f | %ld | %ld | %.3f | %.2f | %.1f | %.3f |\n",
                  uhlm_mode_name(m), ratio((double)a->trans, (double)a->gen), uhlm_eval_acc_tsr(a),
                  uhlm_eval_acc_tsr_expected(a), ratio((double)a->rejected, (double)a->trans),
                  ratio(a->up_bits / 8000.0, (double)a->gen), a->llm_calls, a->catchup,
                  uhlm_eval_acc_nll(a), uhlm_eval_acc_ppl(a), 100 * r->ppl_llm / uhlm_eval_acc_ppl(a),
                  h->o.greedy ? ratio((double)g->exact_n, (double)g->exact_total) : NAN);
    }
}

static void md_throughput(report *r) {
    const uhlm_eval_harness *h = r->h;
    int n = h->n_snr_report;
    eb_printf(&r->md, "\nTSR is the share of skipped tokens the LLM would have accepted outright "
                      "(y[d] >= x[d]); TSR expected is the expected acceptance of skipped tokens "
                      "(mean of 1 - beta), tsr_expected in results.csv. The cosine of LLM hidden "
                      "states (cos_sim in results.csv) is left out: it does not separate the modes; "
                      "scripts/sentence_cosine.py scores answers.jsonl by sentence embeddings.\n\n"
                      "## Accounted throughput (tokens/s) against SNR\n\n| mode |");
    for (int k = 0; k < n; k++) eb_printf(&r->md, " %g dB |", h->o.snr[k]);
    eb_printf(&r->md, "\n|---|");
    for (int k = 0; k < n; k++) eb_printf(&r->md, "---|");
    eb_printf(&r->md, "\n");
    for (int ri = 0; ri < UHLM_EVAL_N_MODES; ri++) {
        uhlm_mode m = rep_order[ri];
        if (!h->o.want[m]) continue;
        eb_printf(&r->md, "| %s |", uhlm_mode_name(m));
        for (int k = 0; k < n; k++) eb_printf(&r->md, " %.1f |", uhlm_eval_acc_tput(&r->main[m], k));
        eb_printf(&r->md, "\n");
    }
    if (r->H && h->o.want[UHLM_MODE_UHLM]) {
        const uhlm_eval_acc *U = &r->main[UHLM_MODE_UHLM];
        eb_printf(&r->md, "| uhlm / hlm |");
        for (int k = 0; k < n; k++)
            eb_printf(&r->md, " %.2fx |", uhlm_eval_acc_tput(U, k) / uhlm_eval_acc_tput(r->H, k));
        eb_printf(&r->md, "\n\nuhlm sends %.2f%% fewer uplink messages (and LLM verifications) than hlm.\n",
                  100 * (1 - ratio((double)U->trans, (double)r->H->trans)));
    }
}

static void md_sweep_methods(report *r) {
    const uhlm_eval_harness *h = r->h;
    const uhlm_eval_results *R = r->R;
    if (R->n_sweep) {
        eb_printf(&r->md, "\n## u_th sweep (throughput at %g dB)\n\n| method | quantile | u_th | kind | skip rate | TSR | throughput | PPL | PPL %% llm |\n|---|---|---|---|---|---|---|---|---|\n",
                  h->o.sweep_snr);
        for (int s = 0; s < R->n_sweep; s++) {
            const uhlm_eval_set *two[2] = {&R->sweep[s].u, &R->sweep[s].r};
            for (int j = 0; j < 2; j++) {
                uhlm_eval_acc a;
                uhlm_eval_sum(two[j], h->o.n_snr, &a);
                eb_printf(&r->md, "| %s | %g | %.3f | %s | %.3f | %.3f | %.1f | %.2f | %.1f |\n",
                          uhlm_unc_method_name(R->sweep[s].method), R->sweep[s].q, R->sweep[s].u_th,
                          j ? "rand" : "uhlm", ratio((double)a.skipped, (double)a.gen),
                          uhlm_eval_acc_tsr(&a), uhlm_eval_acc_tput(&a, h->k_sweep),
                          uhlm_eval_acc_ppl(&a), 100 * r->ppl_llm / uhlm_eval_acc_ppl(&a));
            }
        }
    }
    eb_printf(&r->md, "\n## Rejection against uncertainty (hlm, per token)\n\n| method | a | b | R^2 | tokens | Delta |\n|---|---|---|---|---|---|\n");
    for (int j = 0; j < R->n_fits; j++) {
        const uhlm_eval_method_fit *F = &R->fits[j];
        eb_printf(&r->md, "| %s | %.4f | %.4f | %.4f | %zu | %.4f |\n", uhlm_unc_method_name(F->method),
                  F->ok ? F->fit.a : NAN, F->ok ? F->fit.b : NAN, F->ok ? F->fit.r2 : NAN, F->n,
                  F->delta);
    }
}

/* summary.md: the same figures as Markdown tables. */
static void write_md(report *r) {
    const uhlm_eval_harness *h = r->h;
    const uhlm_eval_opts *o = &h->o;
    char pb[64];
    uhlm_payload_format(&o->base.payload, pb, sizeof pb);
    eb_printf(&r->md, "# uhlm eval summary\n\n");
    eb_printf(&r->md, "SLM `%s`, LLM `%s`, %d prompts from `%s`, %ld tokens each, temperature %g, "
                      "payload %s, uncertainty %s, u_th %.4g (%s%s%s), rand skip probability %.4g, "
                      "bandwidth %g Hz, fading %s, seed %llu. Wall time %.1f s.\n\n",
              uhlm_model_path(h->slm), uhlm_model_path(h->llm), h->n_prompts, o->prompts_path ? o->prompts_path : "",
              (long)o->base.n_gen, temperature(o), pb, uhlm_unc_method_name(o->base.unc.method),
              o->u_th, o->threshold_source ? o->threshold_source : "--uth", o->risk ? ", risk " : "",
              o->risk ? o->risk : "", r->R->rand_prob, o->base.channel.up.bandwidth_hz,
              uhlm_fading_name(o->base.channel.fading), (unsigned long long)o->seed, r->R->wall_s);
    md_quality(r);
    md_throughput(r);
    md_sweep_methods(r);
}

int uhlm_eval_make_dir(const char *dir, uhlm_error *err) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
        errno = ENOTDIR;
    }
    return uhlm_set_error(err, "cannot create output folder %s: %s", dir, strerror(errno));
}

static int write_out(const char *dir, const char *name, const ebuf *b, uhlm_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (b->oom) return uhlm_set_error(err, "out of memory writing %s", path);
    return uhlm_write_file_atomic(path, b->s ? b->s : "", b->len, err);
}

/* Builds every file in memory; -1 only when out of memory. */
static int build(report *r) {
    if (!(r->root = cJSON_CreateObject())) return -1;
    cJSON *cfgj = cJSON_AddObjectToObject(r->root, "config");
    cJSON *rows = cJSON_AddArrayToObject(r->root, "results");
    if (!cfgj || !rows || config_json(r, cfgj) || write_results(r, rows)) return -1;
    cJSON *swj = cJSON_AddArrayToObject(r->root, "sweep");
    if (!swj || write_sweep(r, swj)) return -1;
    cJSON *mj = cJSON_AddArrayToObject(r->root, "methods");
    if (!mj || write_methods(r, mj)) return -1;
    write_md(r);
    write_per_prompt(r);
    return write_answers(r) || write_intervals(r) ? -1 : 0;
}

int uhlm_eval_write_reports(const uhlm_eval_harness *h, const uhlm_eval_results *R,
                            const char *dir, uhlm_error *err) {
    report r;
    memset(&r, 0, sizeof r);
    r.h = h;
    r.R = R;
    report_sums(&r);
    int rc = -1;
    char *js = NULL;
    if (build(&r) != 0 || !(js = cJSON_Print(r.root))) {
        uhlm_set_error(err, "out of memory");
        goto done;
    }
    ebuf jb = {js, strlen(js), strlen(js) + 1, 0};
    if (write_out(dir, "results.csv", &r.csv, err) || write_out(dir, "sweep.csv", &r.scsv, err) ||
        write_out(dir, "methods.csv", &r.mcsv, err) || write_out(dir, "bins.csv", &r.bcsv, err) ||
        write_out(dir, "per_prompt.csv", &r.pp, err) || write_out(dir, "summary.md", &r.md, err) ||
        write_out(dir, "results.json", &jb, err) || write_out(dir, "answers.jsonl", &r.ans, err) ||
        write_out(dir, "intervals.csv", &r.ivc, err))
        goto done;
    rc = 0;
done:
    cJSON_free(js);
    cJSON_Delete(r.root);
    eb_free(&r.csv);
    eb_free(&r.scsv);
    eb_free(&r.mcsv);
    eb_free(&r.bcsv);
    eb_free(&r.md);
    eb_free(&r.pp);
    eb_free(&r.ans);
    eb_free(&r.ivc);
    return rc;
}
