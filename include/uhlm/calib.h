/* calib.h: calibration of the skip threshold from HLM runs (DESIGN §2.3).
 *
 * Input: one sample per verified token of an HLM run with u recorded: the SLM's uncertainty
 * u, the LLM's rejection probability β = max(0, 1 - y[d]/x̃[d]), whether the draft was
 * accepted (the realised coin) and whether it was accepted outright (y[d] >= x̃[d], β = 0).
 *
 * Fit: ordinary least squares β̂ = a·u + b with R² = 1 - SS_res/SS_tot.
 * Thresholds: risk-averse u_th = -b/a (β̂ <= 0: skip what the fit says is accepted outright);
 * risk-prone u_th = (Δ - b)/a with Δ the share of drafts with y[d] < x̃[d] (β > 0). Both need
 * a > 0: with a flat or falling fit, uncertainty says nothing about rejection and no
 * threshold is meaningful, which is reported as an error rather than a silly number.
 *
 * Risk of a threshold, over a sample set standing for the token distribution f(u):
 *   bound    = (1/N) Σ_{u_i <= u_th} (a·u_i + b)⁺   (∫₀^{u_th} (a u + b)⁺ f(u) du, empirical f)
 *   loose    = (a·u_th + b)⁺ · P(u <= u_th)
 *   observed = (1/N) Σ_{u_i <= u_th} rejected_i     (and the same with β_i, its expectation)
 * all as shares of all tokens; divided by P(u <= u_th) they become shares of skipped tokens. */
#ifndef UHLM_CALIB_H
#define UHLM_CALIB_H

#include "common.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_calib_sample {
    double u, beta;
    int accepted; /* the verifier kept the draft */
    int outright; /* y[d] >= x̃[d] */
} uhlm_calib_sample;

typedef struct uhlm_linfit {
    double a, b, r2;
    size_t n;
} uhlm_linfit;

/* Least squares y = a x + b. Needs n >= 2 and x not constant; r2 is 1 when y is constant and
 * fitted exactly. All values must be finite. */
UHLM_API int uhlm_linfit_compute(const double *x, const double *y, size_t n, uhlm_linfit *out,
                        uhlm_error *err);
/* The same over samples (x = u, y = β). */
UHLM_API int uhlm_calib_fit(const uhlm_calib_sample *s, size_t n, uhlm_linfit *out, uhlm_error *err);

typedef struct uhlm_calib_bin {
    double lo, hi; /* [lo, hi); the last bin includes 1 */
    size_t count;
    double frac; /* count / n */
    double mean_u, mean_beta, reject_rate, outright_rate; /* NaN when empty */
} uhlm_calib_bin;

/* nbins equal bins over [0, 1]; u outside is clamped into the end bins. */
UHLM_API void uhlm_calib_bins(const uhlm_calib_sample *s, size_t n, int nbins, uhlm_calib_bin *out);

/* Δ: share of samples with β > 0 (0 when n = 0). */
UHLM_API double uhlm_calib_delta(const uhlm_calib_sample *s, size_t n);

UHLM_API int uhlm_calib_thresholds(const uhlm_linfit *f, double delta, double *averse, double *prone,
                          uhlm_error *err);

typedef struct uhlm_calib_risk {
    double u_th;
    size_t n, n_skip;
    double p_skip;        /* n_skip / n */
    double bound;         /* joint shares of all tokens, see above */
    double bound_loose;
    double observed_reject;
    double observed_beta;
} uhlm_calib_risk;

UHLM_API void uhlm_calib_risk_eval(const uhlm_calib_sample *s, size_t n, const uhlm_linfit *f, double u_th,
                          uhlm_calib_risk *out);

/* The budget rule, a third threshold for pairs where both formulas above are degenerate
 * (b > 0 makes -b/a negative: never skip; a small a makes (Δ - b)/a > 1: always skip):
 * the largest u_th whose expected-risk bound ∫₀^{u_th} (a u + b)⁺ f(u) du, as a share of
 * all tokens, stays <= R, with f the empirical u distribution of the training tokens.
 *
 * The bound is a non-decreasing step function of u_th that changes only at sample values,
 * so it is kept as a curve of knots (u_k, bound(u_k)), u_k ascending and distinct, bound
 * counting every sample with u <= u_k. The threshold for R is the largest knot whose bound
 * is <= R; below the first knot nothing is skipped, so when even the first knot breaks the
 * budget the threshold is -1 (verify every token); when no knot does, it is 1 (u lies in
 * [0, 1]: skip every token). Picking knots rather than points between them keeps u_th on a
 * value u actually takes, so `u <= u_th` includes exactly the tokens the bound counted.
 *
 * With more distinct u values than max_knots (the continuous methods), the curve keeps
 * max_knots of them evenly spaced by rank, always with the last; a threshold read from the
 * thinned curve can only be smaller than the exact one, so the budget still holds. */
typedef struct uhlm_calib_curve {
    double *u, *bound;
    size_t n;
} uhlm_calib_curve;

#define UHLM_CALIB_BUDGET_DEFAULT 0.02
#define UHLM_CALIB_MAX_KNOTS 512

UHLM_API int uhlm_calib_budget_curve(const uhlm_calib_sample *s, size_t n, const uhlm_linfit *f,
                            size_t max_knots, uhlm_calib_curve *out, uhlm_error *err);
UHLM_API void uhlm_calib_curve_free(uhlm_calib_curve *c);
UHLM_API double uhlm_calib_budget_threshold(const uhlm_calib_curve *c, double R);

/* The --risk argument of `uhlm run` and `uhlm eval`: "averse", "prone", "budget" (the R
 * chosen at calibration, thresholds.budget) or "budget:R" with 0 <= R <= 1. *R gets R, or
 * NAN for plain "budget". Either out pointer may be NULL. 0, or -1 with err (may be NULL). */
typedef enum { UHLM_RISK_AVERSE, UHLM_RISK_PRONE, UHLM_RISK_BUDGET } uhlm_risk_kind;
UHLM_API int uhlm_calib_risk_parse(const char *risk, uhlm_risk_kind *kind, double *R, uhlm_error *err);

/* u_th for a --risk argument from a calib.json written by `uhlm calibrate`: the number
 * thresholds.risk_averse, thresholds.risk_prone or thresholds.budget, or for "budget:R" the
 * threshold of R on the curve in budget.curve_u / budget.curve_bound. */
UHLM_API int uhlm_calib_load_threshold(const char *path, const char *risk, double *u_th, uhlm_error *err);
/* The same for a file of at most max_bytes (0: the default, see uhlm_read_file_max). */
UHLM_API int uhlm_calib_load_threshold_max(const char *path, const char *risk, uint64_t max_bytes,
                                  double *u_th, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
