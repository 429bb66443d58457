/* uncertainty_internal.h: entry points of the uncertainty module for the tests and the
 * benchmark only (not exported; the API is uhlm/uncertainty.h). */
#ifndef UHLM_UNCERTAINTY_INTERNAL_H
#define UHLM_UNCERTAINTY_INTERNAL_H

#include "uhlm/uncertainty.h"

/* Perturb with the exact per-sample probability (one full pass over the vocabulary per
 * sample) and the same RNG consumption as uhlm_unc_compute: for the same RNG state both give
 * the same u except when a uniform falls within float rounding of a probability. For tests
 * and the benchmark. */
int uhlm_unc_perturb_exact(uhlm_unc *u, const float *z, int d, uhlm_rng *rng, double *out,
                           uhlm_error *err);

#endif
