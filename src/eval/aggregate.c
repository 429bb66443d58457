/* aggregate.c: sums of run records and the rates taken from them (harness.h). */
#include <math.h>
#include <string.h>

#include "uhlm/harness.h"

/* One record into a. Every field adds in record order, so a sum over a set is the
 * sum the runs would have made as they finished. */
static void add_record(uhlm_eval_acc *a, const uhlm_eval_record *r, int n_snr) {
    a->runs++;
    a->gen += r->generated;
    a->trans += r->transmitted;
    a->skipped += r->skipped;
    a->rejected += r->rejected;
    a->accepted += r->accepted;
    a->outright += r->outright;
    a->catchup += r->catchup;
    a->llm_calls += r->llm_calls;
    a->sh_eval += r->shadow_evaluated;
    a->sh_true += r->shadow_true;
    a->sh_beta_sum += r->shadow_beta_sum;
    a->up_bits += (double)r->up_bits;
    a->down_bits += (double)r->down_bits;
    a->slm_s += r->slm_s;
    a->unc_s += r->unc_s;
    a->llm_s += r->llm_s;
    a->compute_s += r->compute_s;
    for (int k = 0; k < n_snr; k++) a->link_s[k] += r->link_s[k];
    if (r->have_cos) {
        a->cos_sum += r->cos;
        a->cos_n++;
    }
    if (r->nll_n > 0) {
        a->nll_sum += r->nll_sum;
        a->nll_n += r->nll_n;
    }
    if (r->have_exact) {
        a->exact_n += r->exact;
        a->exact_total++;
        a->prefix_sum += r->prefix;
    }
}

void uhlm_eval_sum(const uhlm_eval_set *s, int n_snr, uhlm_eval_acc *a) {
    memset(a, 0, sizeof *a);
    if (n_snr > UHLM_EVAL_MAX_SNR) n_snr = UHLM_EVAL_MAX_SNR;
    for (int i = 0; i < s->n; i++) add_record(a, &s->rec[i], n_snr);
}

void uhlm_eval_sum_weighted(const uhlm_eval_set *s, int n_snr, const int *weight, int by_rep,
                            uhlm_eval_acc *a) {
    memset(a, 0, sizeof *a);
    if (n_snr > UHLM_EVAL_MAX_SNR) n_snr = UHLM_EVAL_MAX_SNR;
    for (int i = 0; i < s->n; i++) {
        int w = weight[by_rep ? s->rec[i].rep : s->rec[i].prompt];
        for (int j = 0; j < w; j++) add_record(a, &s->rec[i], n_snr);
    }
}

double uhlm_eval_ratio(double a, double b) { return b > 0 ? a / b : NAN; }
double uhlm_eval_acc_cos(const uhlm_eval_acc *a) { return a->cos_n ? a->cos_sum / a->cos_n : NAN; }
double uhlm_eval_acc_nll(const uhlm_eval_acc *a) { return a->nll_n ? a->nll_sum / a->nll_n : NAN; }
double uhlm_eval_acc_ppl(const uhlm_eval_acc *a) {
    return a->nll_n ? exp(a->nll_sum / a->nll_n) : NAN;
}
double uhlm_eval_acc_tput(const uhlm_eval_acc *a, int k) {
    return uhlm_eval_ratio((double)a->gen, a->compute_s + a->link_s[k]);
}
double uhlm_eval_acc_tr(const uhlm_eval_acc *a) {
    return uhlm_eval_ratio((double)a->trans, (double)a->gen);
}
double uhlm_eval_acc_tsr(const uhlm_eval_acc *a) {
    return a->sh_eval ? (double)a->sh_true / a->sh_eval : NAN;
}
double uhlm_eval_acc_rej(const uhlm_eval_acc *a) {
    return uhlm_eval_ratio((double)a->rejected, (double)a->trans);
}
double uhlm_eval_acc_tsr_expected(const uhlm_eval_acc *a) {
    return a->sh_eval ? 1.0 - a->sh_beta_sum / (double)a->sh_eval : NAN;
}
