/* uncertainty.h: the device's uncertainty signal u(t) in [0, 1] (DESIGN §2.2).
 *
 * `perturb` is the U-HLM signal: M temperatures θ_m ~ U(0, θ_max], one sample s_m from
 * softmax(z/θ_m) each, u = #{m : s_m != d} / M, where z are the SLM's raw logits (before the
 * session's temperature and top-k/top-p) and d is the draft. It is computed without M
 * softmaxes over the vocabulary and is equal in distribution to the naive method; see the
 * comment in uncertainty.c for the argument and the cost. θ -> 0 is the argmax (ties share
 * the mass evenly, which is the limit of softmax).
 *
 * The alternatives ignore the draft and the RNG; they read softmax(z) at temperature 1, so
 * they stay informative at temperature 0, where the sampling distribution is one-hot:
 *   entropy  H(softmax(z)) / log V
 *   maxprob  1 - max_i p_i
 *   margin   1 - (p_(1) - p_(2))   (top-2 margin; 1 when the two largest tie)
 *
 * Contract: a uhlm_unc holds scratch for one vocabulary size and is used by one thread at a
 * time; it has no hidden randomness (the caller passes the RNG, so the device controls the
 * stream). Perturb consumes exactly 2·M uniforms per call whatever the logits. */
#ifndef UHLM_UNCERTAINTY_H
#define UHLM_UNCERTAINTY_H

#include "common.h"
#include "sampler.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum uhlm_unc_method {
    UHLM_UNC_PERTURB = 0,
    UHLM_UNC_ENTROPY = 1,
    UHLM_UNC_MAXPROB = 2,
    UHLM_UNC_MARGIN = 3
} uhlm_unc_method;

typedef struct uhlm_unc_params {
    uhlm_unc_method method; /* default PERTURB */
    int samples;            /* M >= 1; default 20 */
    double theta_max;       /* > 0, finite; default 2.0 */
} uhlm_unc_params;

#define UHLM_UNC_DEFAULT_SAMPLES 20
#define UHLM_UNC_DEFAULT_THETA_MAX 2.0

UHLM_API uhlm_unc_params uhlm_unc_default_params(void);
UHLM_API int uhlm_unc_params_check(const uhlm_unc_params *p, uhlm_error *err);
/* "perturb", "entropy", "maxprob", "margin" (0 ok, -1 unknown). */
UHLM_API int uhlm_unc_method_parse(const char *name, uhlm_unc_method *out);
UHLM_API const char *uhlm_unc_method_name(uhlm_unc_method m);

typedef struct uhlm_unc uhlm_unc;

UHLM_API uhlm_unc *uhlm_unc_new(int n_vocab, const uhlm_unc_params *p, uhlm_error *err);
UHLM_API void uhlm_unc_free(uhlm_unc *u);
UHLM_API const uhlm_unc_params *uhlm_unc_get_params(const uhlm_unc *u);

/* u for logits z[0..n_vocab) and draft d. rng is used by perturb only (may be NULL for the
 * others). Returns 0, or -1 when the logits contain NaN or +inf, or no finite value. */
UHLM_API int uhlm_unc_compute(uhlm_unc *u, const float *z, int d, uhlm_rng *rng, double *out,
                     uhlm_error *err);


/* Samples that could not be decided by the bounds and took the exact pass, since creation. */
UHLM_API uint64_t uhlm_unc_fallbacks(const uhlm_unc *u);

#ifdef __cplusplus
}
#endif
#endif
