/* bootstrap.c: 95% intervals of the headline figures by bootstrap (harness.h). A resample
 * draws the units (prompts, or seeds when there is one prompt) with replacement and sums every
 * set with the drawn multiplicities; ratios such as "% of llm" are taken within the resample,
 * so their numerator and denominator move together. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/harness_internal.h"

/* Sums of everything a figure reads. */
typedef struct sums {
    uhlm_eval_acc main[UHLM_EVAL_N_MODES], greedy[UHLM_EVAL_N_MODES], self;
} sums;

static void sum_all(const uhlm_eval_harness *h, const uhlm_eval_results *R, const int *w,
                    int by_rep, sums *S) {
    for (int m = 0; m < UHLM_EVAL_N_MODES; m++) {
        if (w) {
            uhlm_eval_sum_weighted(&R->main[m], h->o.n_snr, w, by_rep, &S->main[m]);
            uhlm_eval_sum_weighted(&R->greedy[m], h->o.n_snr, w, by_rep, &S->greedy[m]);
        } else {
            uhlm_eval_sum(&R->main[m], h->o.n_snr, &S->main[m]);
            uhlm_eval_sum(&R->greedy[m], h->o.n_snr, &S->greedy[m]);
        }
    }
    if (w) uhlm_eval_sum_weighted(&R->llm_self, h->o.n_snr, w, by_rep, &S->self);
    else uhlm_eval_sum(&R->llm_self, h->o.n_snr, &S->self);
}

enum { M_TR, M_TSR, M_TSR_EXP, M_REJ, M_COS, M_COS_PCT, M_PPL, M_PPL_PCT, M_UPRED, M_EXACT,
       M_TPUT, M_SPEEDUP, M_COUNT };
static const char *const metric_names[M_COUNT] = {
    "tr", "tsr", "tsr_expected", "rejection_rate", "cos_sim", "cos_pct_llm", "ppl",
    "ppl_pct_llm", "uplink_reduction_vs_hlm", "exact_match", "throughput_tok_s",
    "speedup_vs_hlm"};

/* One figure from sums, as results.csv computes it. */
static double figure(const uhlm_eval_harness *h, const sums *S, uhlm_mode m, int metric, int k) {
    const uhlm_eval_acc *a = &S->main[m];
    const uhlm_eval_acc *H = h->o.want[UHLM_MODE_HLM] ? &S->main[UHLM_MODE_HLM] : NULL;
    double cos_llm = uhlm_eval_acc_cos(&S->self);
    double cosv = m == UHLM_MODE_LLM ? cos_llm : uhlm_eval_acc_cos(a);
    switch (metric) {
    case M_TR: return uhlm_eval_acc_tr(a);
    case M_TSR: return uhlm_eval_acc_tsr(a);
    case M_TSR_EXP: return uhlm_eval_acc_tsr_expected(a);
    case M_REJ: return uhlm_eval_acc_rej(a);
    case M_COS: return cosv;
    case M_COS_PCT: return 100 * cosv / cos_llm;
    case M_PPL: return uhlm_eval_acc_ppl(a);
    case M_PPL_PCT: return 100 * uhlm_eval_acc_ppl(&S->main[UHLM_MODE_LLM]) / uhlm_eval_acc_ppl(a);
    case M_UPRED: return H ? 1.0 - uhlm_eval_ratio((double)a->trans, (double)H->trans) : NAN;
    case M_EXACT:
        return h->o.greedy ? uhlm_eval_ratio((double)S->greedy[m].exact_n,
                                             (double)S->greedy[m].exact_total)
                           : NAN;
    case M_TPUT: return uhlm_eval_acc_tput(a, k);
    case M_SPEEDUP: return H ? uhlm_eval_acc_tput(a, k) / uhlm_eval_acc_tput(H, k) : NAN;
    }
    return NAN;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* The 2.5% and 97.5% points (nearest rank) of the finite values of v[0..n). */
static void percentiles(double *v, int n, double *lo, double *hi) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) v[m++] = v[i];
    if (m == 0) {
        *lo = *hi = NAN;
        return;
    }
    qsort(v, (size_t)m, sizeof *v, cmp_d);
    *lo = v[(size_t)floor(0.025 * (m - 1) + 0.5)];
    *hi = v[(size_t)floor(0.975 * (m - 1) + 0.5)];
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The list of reported figures: per reported mode the SNR-free ones, then per SNR the
 * throughput ones. */
static int list_figures(const uhlm_eval_harness *h, uhlm_eval_interval *out) {
    static const uhlm_mode order[UHLM_EVAL_N_MODES] = {UHLM_MODE_SLM, UHLM_MODE_LLM, UHLM_MODE_HLM,
                                                       UHLM_MODE_RAND, UHLM_MODE_UHLM};
    int n = 0;
    for (int oi = 0; oi < UHLM_EVAL_N_MODES; oi++) {
        uhlm_mode m = order[oi];
        if (!h->o.want[m]) continue;
        for (int f = 0; f < M_TPUT; f++)
            if (out) out[n++] = (uhlm_eval_interval){m, f, metric_names[f], -1, NAN, NAN, NAN};
            else n++;
        for (int k = 0; k < h->n_snr_report; k++)
            for (int f = M_TPUT; f < M_COUNT; f++)
                if (out) out[n++] = (uhlm_eval_interval){m, f, metric_names[f], k, NAN, NAN, NAN};
                else n++;
    }
    return n;
}

int uhlm_eval_bootstrap(const uhlm_eval_harness *h, const uhlm_eval_results *R, int n_boot,
                        uint64_t seed, uhlm_eval_intervals *out, uhlm_error *err) {
    memset(out, 0, sizeof *out);
    int by_rep = h->n_prompts == 1 && h->o.n_reps > 1;
    int units = by_rep ? h->o.n_reps : h->n_prompts;
    int nf = list_figures(h, NULL);
    out->by_rep = by_rep;
    out->n_boot = n_boot;
    out->iv = calloc((size_t)(nf ? nf : 1), sizeof *out->iv);
    double *v = malloc(sizeof(double) * (size_t)(nf ? nf : 1) * (size_t)(n_boot ? n_boot : 1));
    int *w = calloc((size_t)units, sizeof *w);
    sums *S = malloc(sizeof *S);
    int rc = -1;
    if (!out->iv || !v || !w || !S) {
        uhlm_set_error(err, "out of memory");
        goto done;
    }
    out->n = list_figures(h, out->iv);
    sum_all(h, R, NULL, 0, S);
    for (int f = 0; f < nf; f++)
        out->iv[f].value = figure(h, S, out->iv[f].mode, out->iv[f].metric, out->iv[f].snr_index);
    uint64_t st = seed ^ 0xb0075742a9ef7c1dULL;
    for (int b = 0; b < n_boot; b++) {
        memset(w, 0, sizeof *w * (size_t)units);
        for (int u = 0; u < units; u++) w[splitmix64(&st) % (uint64_t)units]++;
        sum_all(h, R, w, by_rep, S);
        for (int f = 0; f < nf; f++)
            v[(size_t)f * n_boot + b] =
                figure(h, S, out->iv[f].mode, out->iv[f].metric, out->iv[f].snr_index);
    }
    for (int f = 0; f < nf && n_boot > 0; f++)
        percentiles(v + (size_t)f * n_boot, n_boot, &out->iv[f].lo, &out->iv[f].hi);
    rc = 0;
done:
    if (rc != 0) uhlm_eval_intervals_free(out);
    free(v);
    free(w);
    free(S);
    return rc;
}

void uhlm_eval_intervals_free(uhlm_eval_intervals *iv) {
    free(iv->iv);
    memset(iv, 0, sizeof *iv);
}
