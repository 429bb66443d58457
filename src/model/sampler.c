/* sampler.c: xoshiro256** PRNG and the sampling distribution (see sampler.h). */
#include "uhlm/sampler.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void uhlm_rng_seed(uhlm_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t uhlm_rng_u64(uhlm_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double uhlm_rng_uniform(uhlm_rng *r) { return (double)(uhlm_rng_u64(r) >> 11) * 0x1.0p-53; }

int uhlm_sampling_check(const uhlm_sampling *s, uhlm_error *err) {
    if (!(s->temp >= 0.0f) || !isfinite(s->temp))
        return uhlm_set_error(err, "temperature must be a finite number >= 0 (got %g)", s->temp);
    if (s->top_k < 0) return uhlm_set_error(err, "top-k must be >= 0 (got %d)", s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return uhlm_set_error(err, "top-p must be in (0, 1] (got %g)", s->top_p);
    return 0;
}

int uhlm_argmax(const float *x, int n) {
    /* the running maximum in a register: re-reading x[best] made each step wait on a load
     * (4.3% of a 15M decode step, against 1.4% for llama2.c's loop) */
    int best = 0;
    float bv = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    return best;
}

/* qsort context-free comparator: sorts indices by descending probability, index ascending on
 * ties so the order (and hence top-p cut) is deterministic. */
typedef struct {
    float p;
    int i;
} pi_pair;

static int cmp_desc(const void *a, const void *b) {
    const pi_pair *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

int uhlm_sampling_probs(const uhlm_sampling *s, const float *logits, int n, float *probs) {
    int am = uhlm_argmax(logits, n);
    if (s->temp == 0.0f) {
        for (int i = 0; i < n; i++) probs[i] = 0.0f;
        probs[am] = 1.0f;
        return am;
    }
    /* softmax in double for the normaliser: probabilities feed an exactness test */
    float mx = logits[am];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        probs[i] = expf((logits[i] - mx) / s->temp);
        sum += probs[i];
    }
    for (int i = 0; i < n; i++) probs[i] = (float)(probs[i] / sum);
    int k = (s->top_k > 0 && s->top_k < n) ? s->top_k : n;
    if (k == n && s->top_p >= 1.0f) return am;

    /* keep the k most likely, then the smallest prefix whose mass reaches top_p */
    pi_pair *pairs = malloc(sizeof(pi_pair) * (size_t)n);
    if (!pairs) return -1;
    for (int i = 0; i < n; i++) pairs[i] = (pi_pair){probs[i], i};
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_desc);
    int keep = k;
    if (s->top_p < 1.0f) {
        double c = 0.0;
        for (int j = 0; j < k; j++) {
            c += pairs[j].p;
            if (c >= s->top_p) {
                keep = j + 1;
                break;
            }
        }
    }
    double kept = 0.0;
    for (int j = 0; j < keep; j++) kept += pairs[j].p;
    for (int i = 0; i < n; i++) probs[i] = 0.0f;
    for (int j = 0; j < keep; j++) probs[pairs[j].i] = (float)(pairs[j].p / kept);
    free(pairs);
    return am;
}

int uhlm_sample(const float *probs, int n, uhlm_rng *r) {
    double u = uhlm_rng_uniform(r);
    double c = 0.0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (probs[i] <= 0.0f) continue;
        c += probs[i];
        last = i;
        if (u < c) return i;
    }
    /* rounding left u above the total mass: the last nonzero entry takes the remainder */
    return last >= 0 ? last : 0;
}
