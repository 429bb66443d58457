/* calib.h: calibration of the skip threshold from HLM runs (DESIGN §2.3).
 *
 * Input: one sample per verified token of an HLM run with u recorded: the SLM's uncertainty
 * u, the LLM's rejection probability β = max(0, 1 - y[d]/x̃[d]), whether the draft was
 * accepted (the realised coin) and whether it was accepted outright (y[d] >= x̃[d], β = 0).
 *
 * Fit: ordinary least squares β̂ = a·u + b with R² = 1 - SS_res/SS_tot.
 * The paper's thresholds (U-HLM, Theorem 1), kept as the paper states them: risk-averse
 * u_th = -b/a (β̂ <= 0: skip what the fit says is accepted outright); risk-prone
 * u_th = (Δ - b)/a with Δ the share of drafts with y[d] < x̃[d] (β > 0). Both need a > 0:
 * with a flat or falling fit, uncertainty says nothing about rejection and no threshold is
 * meaningful, which is reported as an error rather than a silly number.
 *
 * Risk of a threshold, over a sample set standing for the token distribution f(u):
 *   predicted = (1/N) Σ_{u_i <= u_th} (a·u_i + b)⁺   (∫₀^{u_th} (a u + b)⁺ f(u) du, empirical f)
 *   loose     = (a·u_th + b)⁺ · P(u <= u_th)
 *   observed  = (1/N) Σ_{u_i <= u_th} rejected_i     (and the same with β_i, its expectation)
 * all as shares of all tokens; divided by P(u <= u_th) they become shares of skipped tokens.
 * The paper calls the first its risk bound; it is the least-squares line's prediction, a bound
 * only where the line lies above the true rejection probability, which nothing guarantees
 * (on the TinyStories pair the observed share exceeds it at u_th = 0.85). Hence the name
 * "predicted risk" here, and a budget rule built on the observed rejections instead (below). */
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
    double predicted;     /* joint shares of all tokens, see above */
    double predicted_loose;
    double observed_reject;
    double observed_beta;
} uhlm_calib_risk;

UHLM_API void uhlm_calib_risk_eval(const uhlm_calib_sample *s, size_t n, const uhlm_linfit *f, double u_th,
                          uhlm_calib_risk *out);

/* The budget rule, a third threshold for pairs where both formulas above are degenerate
 * (b > 0 makes -b/a negative: never skip; a small a makes (Δ - b)/a > 1: always skip):
 * the largest u_th for which a one-sided upper confidence limit, at level `confidence`, of
 * the share of all tokens that are skipped and rejected, r(u_th) = P(u <= u_th, rejected),
 * stays <= R. It rests on the rejections the calibration actually observed, not on the line,
 * so it needs no linear shape, no sign of a or b and no Δ.
 *
 * Why a Clopper-Pearson limit on the cumulative share, and not per-bin limits: with N
 * independent calibration tokens, the count K(u_th) of tokens with u <= u_th that were
 * rejected is Binomial(N, r(u_th)) for every u_th, and the exact (Clopper-Pearson) limit
 * U(K, N) has P(U < r) <= 1 - confidence at any fixed u_th, however small N or r (the Wilson
 * limit is only approximately so, and falls short for the small counts a small R means).
 * Choosing u_th by scanning all knots needs no multiplicity correction: K and so U only grow
 * with u_th, so for any t with r(t) > R the rule can pick a threshold >= t only if
 * U(K(t), N) <= R, which has probability <= 1 - confidence; the t with r(t) > R form an
 * interval reaching up to 1, so picking any of them is the increasing limit of those events
 * and has probability <= 1 - confidence too.
 * Hence P(r(chosen u_th) > R) <= 1 - confidence: the budget holds out of sample, for tokens
 * drawn like the calibration tokens, with that probability. Per-bin limits would each need
 * a union (Bonferroni) correction over the bins and, summed, compound their slack.
 * What the guarantee assumes is independent tokens; tokens of one prompt are correlated,
 * which makes N overstate the information, so tests/cli_calib_budget.sh checks the rule on
 * held-out prompts of a real pair, not only on synthetic independent samples.
 *
 * U(K, N) is a non-decreasing step function of u_th that changes only at sample values, so
 * it is kept as a curve of knots (u_k, U(u_k)), u_k ascending and distinct, each counting
 * every sample with u <= u_k. The threshold for R is the largest knot whose limit is <= R;
 * below the first knot nothing is skipped, so when even the first knot breaks the budget
 * the threshold is -1 (verify every token); when no knot does, it is 1 (u lies in [0, 1]:
 * skip every token). Picking knots rather than points between them keeps u_th on a value u
 * actually takes, so `u <= u_th` includes exactly the tokens the limit counted.
 *
 * With more distinct u values than max_knots (the continuous methods), the curve keeps
 * max_knots of them evenly spaced by rank, always with the last; a threshold read from the
 * thinned curve can only be smaller than the exact one, so the budget still holds. */
typedef struct uhlm_calib_curve {
    double *u;         /* knots, ascending and distinct */
    double *upper;     /* U(u_k): the limit the budget threshold is read from */
    double *observed;  /* K(u_k) / N, the observed share (NULL in a curve read from a file) */
    double *predicted; /* the line's predicted risk at u_k (NULL without a fit or from a file) */
    size_t n;
} uhlm_calib_curve;

#define UHLM_CALIB_BUDGET_DEFAULT 0.02
#define UHLM_CALIB_CONFIDENCE_DEFAULT 0.95
#define UHLM_CALIB_MAX_KNOTS 512

/* One-sided Clopper-Pearson upper limit of a binomial proportion: the p with
 * P(X <= k | n, p) = 1 - confidence, X ~ Binomial(n, p); 1 when k >= n, and for k = 0 the
 * closed form 1 - (1 - confidence)^(1/n). NaN when n = 0 or confidence is not in (0, 1). */
UHLM_API double uhlm_binom_upper(size_t k, size_t n, double confidence);

/* The curve over samples s (the fit part). f may be NULL (then predicted stays NULL).
 * confidence in (0, 1), max_knots >= 1; n = 0 gives an empty curve (threshold -1). */
UHLM_API int uhlm_calib_budget_curve(const uhlm_calib_sample *s, size_t n, const uhlm_linfit *f,
                            double confidence, size_t max_knots, uhlm_calib_curve *out,
                            uhlm_error *err);
UHLM_API void uhlm_calib_curve_free(uhlm_calib_curve *c);
/* The largest knot with upper <= R; -1 or 1 at the ends, as above. */
UHLM_API double uhlm_calib_budget_threshold(const uhlm_calib_curve *c, double R);

/* The --risk argument of `uhlm run` and `uhlm eval`: "averse", "prone", "budget" (the R
 * chosen at calibration, thresholds.budget) or "budget:R" with 0 <= R <= 1. *R gets R, or
 * NAN for plain "budget". Either out pointer may be NULL. 0, or -1 with err (may be NULL). */
typedef enum { UHLM_RISK_AVERSE, UHLM_RISK_PRONE, UHLM_RISK_BUDGET } uhlm_risk_kind;
UHLM_API int uhlm_calib_risk_parse(const char *risk, uhlm_risk_kind *kind, double *R, uhlm_error *err);

/* u_th for a --risk argument from a calib.json written by `uhlm calibrate`: the number
 * thresholds.risk_averse, thresholds.risk_prone or thresholds.budget, or for "budget:R" the
 * threshold of R on the curve in budget.curve_u / budget.curve_upper (u and limits in [0, 1],
 * both ascending). A file whose budget curve is only the old budget.curve_bound (the line's
 * predicted risk, written before the confidence-limit rule) is refused with that reason. */
UHLM_API int uhlm_calib_load_threshold(const char *path, const char *risk, double *u_th, uhlm_error *err);
/* The same for a file of at most max_bytes (0: the default, see uhlm_read_file_max). */
UHLM_API int uhlm_calib_load_threshold_max(const char *path, const char *risk, uint64_t max_bytes,
                                  double *u_th, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
