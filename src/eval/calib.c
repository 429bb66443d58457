/* calib.c: the linear fit of β on u, the paper's thresholds, predicted and observed risk, and
 * the budget rule on a Clopper-Pearson upper limit of the observed rejections (calib.h). */
#include "uhlm/calib.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int uhlm_linfit_compute(const double *x, const double *y, size_t n, uhlm_linfit *out,
                        uhlm_error *err) {
    memset(out, 0, sizeof *out);
    if (n < 2) return uhlm_set_error(err, "fit: need at least 2 samples, have %zu", n);
    /* two passes (means first): the one-pass formula cancels badly when u clusters near 0 */
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            return uhlm_set_error(err, "fit: sample %zu is not finite", i);
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxx = 0, sxy = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if (!(sxx > 0))
        return uhlm_set_error(err, "fit: all %zu uncertainty values are equal (%g); no slope", n,
                              mx);
    out->a = sxy / sxx;
    out->b = my - out->a * mx;
    double ssr = 0;
    for (size_t i = 0; i < n; i++) {
        double r = y[i] - (out->a * x[i] + out->b);
        ssr += r * r;
    }
    out->r2 = syy > 0 ? 1.0 - ssr / syy : 1.0;
    out->n = n;
    return 0;
}

int uhlm_calib_fit(const uhlm_calib_sample *s, size_t n, uhlm_linfit *out, uhlm_error *err) {
    double *x = malloc(sizeof(double) * (n ? n : 1)), *y = malloc(sizeof(double) * (n ? n : 1));
    if (!x || !y) {
        free(x);
        free(y);
        return uhlm_set_error(err, "fit: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        x[i] = s[i].u;
        y[i] = s[i].beta;
    }
    int rc = uhlm_linfit_compute(x, y, n, out, err);
    free(x);
    free(y);
    return rc;
}

void uhlm_calib_bins(const uhlm_calib_sample *s, size_t n, int nbins, uhlm_calib_bin *out) {
    for (int k = 0; k < nbins; k++) {
        memset(&out[k], 0, sizeof out[k]);
        out[k].lo = (double)k / nbins;
        out[k].hi = (double)(k + 1) / nbins;
    }
    for (size_t i = 0; i < n; i++) {
        int k = (int)floor(s[i].u * nbins);
        if (k < 0) k = 0;
        if (k >= nbins) k = nbins - 1;
        uhlm_calib_bin *b = &out[k];
        b->count++;
        b->mean_u += s[i].u;
        b->mean_beta += s[i].beta;
        b->reject_rate += !s[i].accepted;
        b->outright_rate += s[i].outright;
    }
    for (int k = 0; k < nbins; k++) {
        uhlm_calib_bin *b = &out[k];
        double c = (double)b->count;
        b->frac = n ? c / (double)n : 0.0;
        if (b->count == 0) {
            b->mean_u = b->mean_beta = b->reject_rate = b->outright_rate = NAN;
        } else {
            b->mean_u /= c;
            b->mean_beta /= c;
            b->reject_rate /= c;
            b->outright_rate /= c;
        }
    }
}

double uhlm_calib_delta(const uhlm_calib_sample *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += s[i].beta > 0.0;
    return n ? (double)k / (double)n : 0.0;
}

int uhlm_calib_thresholds(const uhlm_linfit *f, double delta, double *averse, double *prone,
                          uhlm_error *err) {
    if (!(f->a > 0.0) || !isfinite(f->a))
        return uhlm_set_error(err,
                              "fit slope a = %g is not positive: rejection does not grow with "
                              "uncertainty here, so no threshold follows from the fit",
                              f->a);
    *averse = -f->b / f->a;
    *prone = (delta - f->b) / f->a;
    return 0;
}

void uhlm_calib_risk_eval(const uhlm_calib_sample *s, size_t n, const uhlm_linfit *f, double u_th,
                          uhlm_calib_risk *out) {
    memset(out, 0, sizeof *out);
    out->u_th = u_th;
    out->n = n;
    double pred_sum = 0, rej = 0, beta = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(s[i].u <= u_th)) continue;
        out->n_skip++;
        double pred = f->a * s[i].u + f->b;
        pred_sum += pred > 0 ? pred : 0;
        rej += !s[i].accepted;
        beta += s[i].beta;
    }
    if (!n) return;
    double N = (double)n;
    out->p_skip = (double)out->n_skip / N;
    out->predicted = pred_sum / N;
    double top = f->a * u_th + f->b;
    out->predicted_loose = (top > 0 ? top : 0) * out->p_skip;
    out->observed_reject = rej / N;
    out->observed_beta = beta / N;
}

/* log Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15). Our own because C's
 * lgamma sets the global signgam. */
static double log_gamma(double x) {
    static const double c[9] = {0.99999999999980993,  676.5203681218851,     -1259.1392167224028,
                                771.32342877765313,   -176.61502916214059,   12.507343278686905,
                                -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7};
    if (x < 0.5) /* reflection keeps the series in its accurate range */
        return log(M_PI / fabs(sin(M_PI * x))) - log_gamma(1.0 - x);
    x -= 1.0;
    double a = c[0], t = x + 7.5;
    for (int i = 1; i < 9; i++) a += c[i] / (x + i);
    return 0.5 * log(2.0 * M_PI) + (x + 0.5) * log(t) - t + log(a);
}

/* The continued fraction of the incomplete beta function (modified Lentz), converging fast
 * for x < (a + 1)/(a + b + 2); iterations grow like sqrt(max(a, b)), so the cap is generous. */
static double beta_cf(double a, double b, double x) {
    const double tiny = 1e-300, eps = 1e-15;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 100000; m++) {
        double m2 = 2.0 * m, aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < eps) break;
    }
    return h;
}

/* The regularized incomplete beta function I_x(a, b), a, b > 0, given lbeta = log B(a, b). */
static double ibeta(double a, double b, double x, double lbeta) {
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    double lbt = a * log(x) + b * log1p(-x) - lbeta;
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(lbt) * beta_cf(a, b, x) / a;
    return 1.0 - exp(lbt) * beta_cf(b, a, 1.0 - x) / b;
}

double uhlm_binom_upper(size_t k, size_t n, double confidence) {
    if (n == 0 || !(confidence > 0.0 && confidence < 1.0)) return NAN;
    if (k >= n) return 1.0;
    if (k == 0) return -expm1(log1p(-confidence) / (double)n); /* 1 - (1 - conf)^(1/n) */
    /* P(X <= k | n, p) = 1 - I_p(k + 1, n - k): the limit is the confidence-quantile of
     * Beta(k + 1, n - k). Newton on I_p (its derivative is the Beta density), kept inside a
     * bracket [lo, hi] with I(lo) < confidence <= I(hi) and bisecting whenever a step leaves
     * it; the answer is a point with I >= confidence, so rounding errs on the safe side. */
    double a = (double)k + 1.0, b = (double)(n - k);
    double lbeta = log_gamma(a) + log_gamma(b) - log_gamma(a + b);
    double lo = 0.0, hi = 1.0, p = a / (a + b);
    for (int it = 0; it < 300; it++) {
        double I = ibeta(a, b, p, lbeta);
        if (I < confidence)
            lo = p;
        else
            hi = p;
        if (hi - lo <= 1e-14 * hi) break;
        double pdf = exp((a - 1.0) * log(p) + (b - 1.0) * log1p(-p) - lbeta);
        double next = p - (I - confidence) / pdf;
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        if (fabs(next - p) <= 1e-13 * p) {
            /* converged: step just past the root to close the bracket from above */
            double q = p + 1e-12 * p;
            if (q < hi && ibeta(a, b, q, lbeta) >= confidence) return q;
            next = 0.5 * (lo + hi);
        }
        p = next;
    }
    return hi;
}

typedef struct {
    double u, pred;
    int rejected;
} upair;

static int cmp_upair(const void *x, const void *y) {
    double a = ((const upair *)x)->u, b = ((const upair *)y)->u;
    return a < b ? -1 : a > b;
}

void uhlm_calib_curve_free(uhlm_calib_curve *c) {
    free(c->u);
    free(c->upper);
    free(c->observed);
    free(c->predicted);
    memset(c, 0, sizeof *c);
}

int uhlm_calib_budget_curve(const uhlm_calib_sample *s, size_t n, const uhlm_linfit *f,
                            double confidence, size_t max_knots, uhlm_calib_curve *out,
                            uhlm_error *err) {
    memset(out, 0, sizeof *out);
    if (max_knots < 1) return uhlm_set_error(err, "budget curve: max_knots must be >= 1");
    if (!(confidence > 0.0 && confidence < 1.0))
        return uhlm_set_error(err, "budget curve: confidence %g is not strictly between 0 and 1",
                              confidence);
    if (n == 0) return 0; /* no tokens, no knots: the threshold is -1 */
    upair *p = malloc(sizeof *p * n);
    if (!p) return uhlm_set_error(err, "budget curve: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(s[i].u)) {
            free(p);
            return uhlm_set_error(err, "budget curve: sample %zu has a non-finite u", i);
        }
        double pred = f ? f->a * s[i].u + f->b : 0.0;
        p[i] = (upair){s[i].u, pred > 0 ? pred : 0, !s[i].accepted};
    }
    qsort(p, n, sizeof *p, cmp_upair);
    size_t k = 0; /* distinct values */
    for (size_t i = 0; i < n; i++) k += i + 1 == n || p[i + 1].u != p[i].u;
    size_t m = k < max_knots ? k : max_knots;
    out->u = malloc(sizeof(double) * m);
    out->upper = malloc(sizeof(double) * m);
    out->observed = malloc(sizeof(double) * m);
    out->predicted = f ? malloc(sizeof(double) * m) : NULL;
    if (!out->u || !out->upper || !out->observed || (f && !out->predicted)) {
        free(p);
        uhlm_calib_curve_free(out);
        return uhlm_set_error(err, "budget curve: out of memory");
    }
    /* knot j of the k distinct values is kept when it is the next of the m evenly spaced
     * ranks ceil((i+1)·k/m) - 1, i = 0..m-1; the last rank is k - 1 */
    double cum_pred = 0;
    size_t rej = 0, j = 0, next_i = 0;
    for (size_t i = 0; i < n; i++) {
        cum_pred += p[i].pred;
        rej += (size_t)p[i].rejected;
        if (i + 1 < n && p[i + 1].u == p[i].u) continue;
        size_t want = ((next_i + 1) * k + m - 1) / m - 1;
        if (j == want) {
            double up = uhlm_binom_upper(rej, n, confidence);
            /* the limit rises with the count; the max only guards the reader's ascending
             * check against a rounding wobble, and can only make the rule stricter */
            if (next_i > 0 && up < out->upper[next_i - 1]) up = out->upper[next_i - 1];
            out->u[next_i] = p[i].u;
            out->upper[next_i] = up;
            out->observed[next_i] = (double)rej / (double)n;
            if (f) out->predicted[next_i] = cum_pred / (double)n;
            next_i++;
        }
        j++;
    }
    free(p);
    out->n = next_i;
    return 0;
}

double uhlm_calib_budget_threshold(const uhlm_calib_curve *c, double R) {
    /* upper is non-decreasing: find the last knot within the budget */
    size_t lo = 0, hi = c->n; /* answer: count of knots with upper <= R */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->upper[mid] <= R)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return -1.0;
    if (lo == c->n) return 1.0;
    return c->u[lo - 1];
}

int uhlm_calib_risk_parse(const char *risk, uhlm_risk_kind *kind, double *R, uhlm_error *err) {
    uhlm_risk_kind k;
    double r = NAN;
    if (!strcmp(risk, "averse"))
        k = UHLM_RISK_AVERSE;
    else if (!strcmp(risk, "prone"))
        k = UHLM_RISK_PRONE;
    else if (!strcmp(risk, "budget"))
        k = UHLM_RISK_BUDGET;
    else if (!strncmp(risk, "budget:", 7)) {
        k = UHLM_RISK_BUDGET;
        const char *v = risk + 7;
        char *end;
        errno = 0;
        r = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(r) || r < 0 || r > 1)
            return uhlm_set_error(err,
                                  "--risk budget:R needs a number R in [0, 1] (the share of all "
                                  "tokens skipped but rejected by the LLM), got '%s'",
                                  v);
    } else
        return uhlm_set_error(err, "unknown risk '%s' (averse, prone, budget or budget:R)", risk);
    if (kind) *kind = k;
    if (R) *R = r;
    return 0;
}

/* The curve arrays of a calib.json; 0 or -1. */
static int load_curve(const cJSON *o, const char *path, uhlm_calib_curve *c, uhlm_error *err) {
    memset(c, 0, sizeof *c);
    const cJSON *bj = cJSON_GetObjectItemCaseSensitive(o, "budget");
    const cJSON *cu = bj ? cJSON_GetObjectItemCaseSensitive(bj, "curve_u") : NULL;
    const cJSON *cb = bj ? cJSON_GetObjectItemCaseSensitive(bj, "curve_upper") : NULL;
    if (!cb && bj && cJSON_GetObjectItemCaseSensitive(bj, "curve_bound"))
        return uhlm_set_error(err,
                              "%s: its budget curve (budget.curve_bound) is the least-squares "
                              "line's predicted risk, from an `uhlm calibrate` older than the "
                              "confidence-limit rule; run it again",
                              path);
    if (!cJSON_IsArray(cu) || !cJSON_IsArray(cb) || cJSON_GetArraySize(cu) != cJSON_GetArraySize(cb))
        return uhlm_set_error(err,
                              "%s: no budget.curve_u/curve_upper arrays of equal length (written "
                              "by an older `uhlm calibrate`? run it again)",
                              path);
    size_t n = (size_t)cJSON_GetArraySize(cu);
    c->u = malloc(sizeof(double) * (n ? n : 1));
    c->upper = malloc(sizeof(double) * (n ? n : 1));
    if (!c->u || !c->upper) {
        uhlm_calib_curve_free(c);
        return uhlm_set_error(err, "%s: out of memory", path);
    }
    size_t i = 0;
    const cJSON *x, *y = cb->child;
    cJSON_ArrayForEach(x, cu) {
        /* u and the risk share both live in [0, 1]; a knot above 1 would make the "no knot
         * breaks the budget" answer (1) smaller than a lower budget's, so it is refused. */
        if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y) || !(x->valuedouble >= 0.0) ||
            !(x->valuedouble <= 1.0) || !(y->valuedouble >= 0.0) || !(y->valuedouble <= 1.0) ||
            (i > 0 && !(x->valuedouble > c->u[i - 1] && y->valuedouble >= c->upper[i - 1]))) {
            uhlm_calib_curve_free(c);
            return uhlm_set_error(err,
                                  "%s: budget curve entry %zu is not a number in [0, 1] above "
                                  "the previous one",
                                  path, i);
        }
        c->u[i] = x->valuedouble;
        c->upper[i] = y->valuedouble;
        i++;
        y = y->next;
    }
    c->n = i;
    return 0;
}

int uhlm_calib_load_threshold(const char *path, const char *risk, double *u_th, uhlm_error *err) {
    return uhlm_calib_load_threshold_max(path, risk, 0, u_th, err);
}

int uhlm_calib_load_threshold_max(const char *path, const char *risk, uint64_t max_bytes,
                                  double *u_th, uhlm_error *err) {
    uhlm_risk_kind kind;
    double R;
    if (uhlm_calib_risk_parse(risk, &kind, &R, err) != 0) return -1;
    const char *key = kind == UHLM_RISK_AVERSE ? "risk_averse"
                      : kind == UHLM_RISK_PRONE ? "risk_prone"
                                                : "budget";
    char *buf;
    size_t len;
    if (uhlm_read_file_max(path, "calibration", max_bytes, &buf, &len, err) != 0) return -1;
    cJSON *o = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!o) return uhlm_set_error(err, "%s: not valid JSON (expected a uhlm calibrate output)", path);
    int rc = 0;
    if (kind == UHLM_RISK_BUDGET && !isnan(R)) {
        uhlm_calib_curve c;
        if ((rc = load_curve(o, path, &c, err)) == 0) {
            *u_th = uhlm_calib_budget_threshold(&c, R);
            uhlm_calib_curve_free(&c);
        }
    } else {
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(o, "thresholds");
        const cJSON *v = th ? cJSON_GetObjectItemCaseSensitive(th, key) : NULL;
        if (!v || !cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            rc = uhlm_set_error(err, "%s: no number thresholds.%s (not a uhlm calibrate output%s?)",
                                path, key,
                                kind == UHLM_RISK_BUDGET ? ", or one older than the budget rule"
                                                         : "");
        else
            *u_th = v->valuedouble;
    }
    cJSON_Delete(o);
    return rc;
}
