/* sampler.h: seedable PRNG and the sampling distribution (temperature, top-k, top-p).
 *
 * The hybrid algorithm needs the distribution itself, not just a sample: uhlm_sampling_probs
 * turns logits into the exact probability vector that is then sampled from (temperature 0
 * gives a one-hot vector at the argmax, lowest index on ties). The PRNG is xoshiro256** seeded
 * by splitmix64; the same seed gives the same stream on every platform. */
#ifndef UHLM_SAMPLER_H
#define UHLM_SAMPLER_H

#include <stdint.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_rng {
    uint64_t s[4];
} uhlm_rng;

UHLM_API void uhlm_rng_seed(uhlm_rng *r, uint64_t seed);
UHLM_API uint64_t uhlm_rng_u64(uhlm_rng *r);
UHLM_API double uhlm_rng_uniform(uhlm_rng *r); /* [0, 1), 53 random bits */

typedef struct uhlm_sampling {
    float temp;  /* 0 = greedy */
    int top_k;   /* 0 = off */
    float top_p; /* 1 = off */
} uhlm_sampling;

/* Validates settings: temp >= 0 and finite, top_k >= 0, 0 < top_p <= 1. */
UHLM_API int uhlm_sampling_check(const uhlm_sampling *s, uhlm_error *err);

/* probs[0..n) = the sampling distribution of logits under s (softmax at temperature, then
 * top-k, then top-p, renormalised). Returns the argmax of the logits, or -1 if a temporary
 * allocation for top-k/top-p failed. */
UHLM_API int uhlm_sampling_probs(const uhlm_sampling *s, const float *logits, int n, float *probs);
/* Inverse-CDF draw from probs (which sum to ~1); never returns an index with probability 0. */
UHLM_API int uhlm_sample(const float *probs, int n, uhlm_rng *r);
UHLM_API int uhlm_argmax(const float *x, int n);

#ifdef __cplusplus
}
#endif
#endif
