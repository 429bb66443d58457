/* uncertainty.c: temperature-perturbation uncertainty and its alternatives (uncertainty.h).
 *
 * Why perturb can skip the M softmaxes.
 *   The naive method draws θ_m, then s_m ~ softmax(z/θ_m), and counts s_m != d. Given θ_m,
 *   the indicator 1[s_m != d] is a Bernoulli variable with parameter 1 - p_θm(d), where
 *   p_θ(d) = softmax(z/θ)[d]; the M indicators are independent given the θs, and the θs are
 *   i.i.d. So drawing θ_m and then a uniform U_m and testing U_m >= p_θm(d) produces, sample
 *   for sample, a variable with exactly the law of 1[s_m != d], and u, their mean, has
 *   exactly the law of the naive u. The sampled token itself is never needed, only whether
 *   it is d.
 *
 * Why p_θ(d) is cheap.
 *   p_θ(d) = e_d / S(θ), e_i = exp(-g_i/θ), g_i = z_max - z_i, S = Σ_i e_i. The test U < p is
 *   U·S < e_d, so any bounds L <= S <= H decide it: U·L >= e_d means disagree, U·H < e_d
 *   means agree. Two passes over the logits (no exp) prepare, for every θ at once:
 *     - the K = 32 largest logits, their gaps sorted ascending, kept exactly;
 *     - a histogram of the other gaps in buckets of width w = 1/8 from g_K (the K-th gap),
 *       plus an overflow bucket.
 *   Per sample the bounds tighten in stages and the sample stops at the first decisive one:
 *     1. the exact top terms one at a time: after j terms, L = their sum and H = L + (V-j)·
 *        (the next term), since every term not yet added is at most the next one. A draft far
 *        from the top, or a peaked distribution, is decided after one or two exps.
 *     2. the buckets: a member of bucket b has a term in [e0·r^(b+1), e0·r^b], e0 = exp(-g_K/θ),
 *        r = exp(-w/θ), so one polynomial in r bounds the whole tail from both sides.
 *     3. only when U falls between those bounds (probability e_d/L - e_d/H, which the tests
 *        measure at well under 1%), one exact pass over the vocabulary.
 *   Every decision is the exact decision (up to floating-point rounding), so u keeps its law.
 *   The cost per call is the two passes plus a few exps per sample, versus M·V exps. */
#include "hybrid/uncertainty_internal.h"
#include "uhlm/uncertainty.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOPK 32
#define NBUCKET 256
#define BUCKET_W 0.125
#define BUCKET_INV_W 8.0

struct uhlm_unc {
    uhlm_unc_params p;
    int n_vocab;
    uint64_t fallbacks;
    /* prepared per call */
    double zmax, zmin;
    int k;               /* exact entries */
    float topv[TOPK];    /* min-heap of the K largest logits while selecting */
    double gtop[TOPK];   /* gaps of the exact entries, ascending (gtop[0] = 0) */
    double gk;           /* the largest of them: where the buckets start */
    uint32_t icnt[NBUCKET]; /* histogram being built */
    double cnt[NBUCKET];    /* tail counts per bucket */
    double cnt_over;     /* tail tokens beyond the last bucket */
    int last_bucket;     /* highest nonempty bucket, -1 if none */
};

uhlm_unc_params uhlm_unc_default_params(void) {
    uhlm_unc_params p = {UHLM_UNC_PERTURB, UHLM_UNC_DEFAULT_SAMPLES, UHLM_UNC_DEFAULT_THETA_MAX};
    return p;
}

int uhlm_unc_params_check(const uhlm_unc_params *p, uhlm_error *err) {
    if (p->method < UHLM_UNC_PERTURB || p->method > UHLM_UNC_MARGIN)
        return uhlm_set_error(err, "unknown uncertainty method %d", (int)p->method);
    if (p->samples < 1 || p->samples > 1000000)
        return uhlm_set_error(err, "uncertainty samples must be in [1, 1000000] (got %d)",
                              p->samples);
    if (!(p->theta_max > 0.0) || !isfinite(p->theta_max))
        return uhlm_set_error(err, "theta-max must be a finite number > 0 (got %g)", p->theta_max);
    return 0;
}

static const char *const method_names[] = {"perturb", "entropy", "maxprob", "margin"};

int uhlm_unc_method_parse(const char *name, uhlm_unc_method *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, method_names[i])) {
            *out = (uhlm_unc_method)i;
            return 0;
        }
    return -1;
}

const char *uhlm_unc_method_name(uhlm_unc_method m) {
    return (m >= UHLM_UNC_PERTURB && m <= UHLM_UNC_MARGIN) ? method_names[m] : "?";
}

uhlm_unc *uhlm_unc_new(int n_vocab, const uhlm_unc_params *p, uhlm_error *err) {
    if (n_vocab < 1) {
        uhlm_set_error(err, "uncertainty: vocabulary size %d", n_vocab);
        return NULL;
    }
    if (uhlm_unc_params_check(p, err) != 0) return NULL;
    uhlm_unc *u = calloc(1, sizeof *u);
    if (!u) {
        uhlm_set_error(err, "uncertainty: out of memory (vocabulary %d)", n_vocab);
        return NULL;
    }
    u->p = *p;
    u->n_vocab = n_vocab;
    return u;
}

void uhlm_unc_free(uhlm_unc *u) { free(u); }

const uhlm_unc_params *uhlm_unc_get_params(const uhlm_unc *u) { return &u->p; }
uint64_t uhlm_unc_fallbacks(const uhlm_unc *u) { return u->fallbacks; }

static int bad_logit(const float *z, int i, uhlm_error *err) {
    return uhlm_set_error(err, "uncertainty: logit %d is %g", i, (double)z[i]);
}

/* Max and min over the logits; -inf entries are allowed (masked tokens, probability 0). */
static int scan_range(const float *z, int n, double *zmax, double *zmin, uhlm_error *err) {
    float mx = -INFINITY, mn = INFINITY;
    for (int i = 0; i < n; i++) {
        float v = z[i];
        if (isnan(v) || v == INFINITY) return bad_logit(z, i, err);
        if (v > mx) mx = v;
        if (v < mn) mn = v;
    }
    if (mx == -INFINITY) return uhlm_set_error(err, "uncertainty: every logit is -inf");
    *zmax = mx;
    *zmin = mn;
    return 0;
}

static void heap_sift_down(float *v, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && v[l] < v[m]) m = l;
        if (r < n && v[r] < v[m]) m = r;
        if (m == i) return;
        float tv = v[i];
        v[i] = v[m];
        v[m] = tv;
        i = m;
    }
}

/* The two passes described at the top: validation, range and the K largest values in one,
 * the histogram of the rest in the other. */
static int prepare(uhlm_unc *u, const float *z, uhlm_error *err) {
    int n = u->n_vocab;
    int k = n < TOPK ? n : TOPK;
    float mn = INFINITY;
    for (int i = 0; i < k; i++) {
        if (isnan(z[i]) || z[i] == INFINITY) return bad_logit(z, i, err);
        mn = z[i] < mn ? z[i] : mn;
        u->topv[i] = z[i];
    }
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(u->topv, k, i);
    for (int i = k; i < n; i++) {
        float v = z[i];
        if (v > u->topv[0]) {
            if (v == INFINITY) return bad_logit(z, i, err);
            u->topv[0] = v;
            heap_sift_down(u->topv, k, 0);
        } else if (isnan(v)) {
            return bad_logit(z, i, err);
        }
        mn = v < mn ? v : mn;
    }
    float mx = u->topv[0];
    for (int j = 1; j < k; j++) mx = u->topv[j] > mx ? u->topv[j] : mx;
    if (mx == -INFINITY) return uhlm_set_error(err, "uncertainty: every logit is -inf");
    u->zmax = mx;
    u->zmin = mn;
    u->k = k;
    for (int j = 0; j < k; j++) { /* insertion sort: K is small */
        double g = u->zmax - (double)u->topv[j];
        int at = j;
        while (at > 0 && u->gtop[at - 1] > g) {
            u->gtop[at] = u->gtop[at - 1];
            at--;
        }
        u->gtop[at] = g;
    }
    u->gk = u->gtop[k - 1];
    /* every token goes in; the K exact ones all land in bucket 0 (their gap is <= g_K) and
     * are taken out again, which saves telling them apart in the loop */
    memset(u->icnt, 0, sizeof u->icnt);
    uint32_t over = 0;
    double base = u->zmax - u->gk; /* the K-th largest logit */
    for (int i = 0; i < n; i++) {
        double t = (base - (double)z[i]) * BUCKET_INV_W;
        if (!(t < NBUCKET)) /* also catches -inf logits (t = +inf) */
            over++;
        else
            u->icnt[t > 0.0 ? (int)t : 0]++;
    }
    u->icnt[0] -= (uint32_t)k;
    u->cnt_over = over;
    u->last_bucket = -1;
    for (int b = 0; b < NBUCKET; b++) {
        u->cnt[b] = u->icnt[b];
        if (u->icnt[b]) u->last_bucket = b;
    }
    return 0;
}

static double exact_p(const float *z, int n, double zmax, double gd, double theta) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp(-(zmax - (double)z[i]) / theta);
    return exp(-gd / theta) / s;
}

/* 1: s_m != d, 0: s_m == d, -1: the bounds cannot tell (take the exact pass). */
static int decide(const uhlm_unc *u, double theta, double U, double ed) {
    int n = u->n_vocab, k = u->k;
    double L = 0.0, t = exp(-u->gtop[0] / theta);
    for (int j = 0; j < k; j++) {
        L += t;
        if (U * L >= ed) return 1;
        if (j + 1 == k) break;
        double next = exp(-u->gtop[j + 1] / theta);
        if (U * (L + (double)(n - 1 - j) * next) < ed) return 0;
        t = next;
    }
    if (k == n) return U * L >= ed; /* L is S itself */
    double e0 = t; /* exp(-g_K/θ): the largest a tail term can be */
    if (U * (L + (double)(n - k) * e0) < ed) return 0;
    double r = exp(-BUCKET_W / theta), pw = 1.0, poly = 0.0;
    for (int b = 0; b <= u->last_bucket && pw > 0.0; b++) {
        poly += u->cnt[b] * pw;
        pw *= r;
    }
    double hi = L + e0 * poly, lo = L + e0 * r * poly;
    if (u->cnt_over > 0.0) {
        hi += u->cnt_over * exp(-(u->gk + NBUCKET * BUCKET_W) / theta);
        lo += u->cnt_over * exp(-(u->zmax - u->zmin) / theta); /* 0 when zmin = -inf */
    }
    if (U * lo >= ed) return 1;
    if (U * hi < ed) return 0;
    return -1;
}

/* θ in (0, θ_max]: 1 - U with U in [0, 1) never gives 0. */
static double draw_theta(const uhlm_unc *u, uhlm_rng *rng) {
    return u->p.theta_max * (1.0 - uhlm_rng_uniform(rng));
}

static int perturb(uhlm_unc *u, const float *z, int d, uhlm_rng *rng, double *out, int exact,
                   uhlm_error *err) {
    if (!rng) return uhlm_set_error(err, "uncertainty: perturb needs an RNG");
    if (d < 0 || d >= u->n_vocab)
        return uhlm_set_error(err, "uncertainty: draft %d outside the vocabulary of %d", d,
                              u->n_vocab);
    if (exact ? scan_range(z, u->n_vocab, &u->zmax, &u->zmin, err) : prepare(u, z, err))
        return -1;
    double gd = u->zmax - (double)z[d];
    int disagree = 0;
    for (int m = 0; m < u->p.samples; m++) {
        double theta = draw_theta(u, rng);
        double U = uhlm_rng_uniform(rng);
        int dis = exact ? -1 : decide(u, theta, U, exp(-gd / theta));
        if (dis < 0) {
            if (!exact) u->fallbacks++;
            dis = !(U < exact_p(z, u->n_vocab, u->zmax, gd, theta));
        }
        disagree += dis;
    }
    *out = (double)disagree / u->p.samples;
    return 0;
}

int uhlm_unc_perturb_exact(uhlm_unc *u, const float *z, int d, uhlm_rng *rng, double *out,
                           uhlm_error *err) {
    return perturb(u, z, d, rng, out, 1, err);
}

int uhlm_unc_compute(uhlm_unc *u, const float *z, int d, uhlm_rng *rng, double *out,
                     uhlm_error *err) {
    if (u->p.method == UHLM_UNC_PERTURB) return perturb(u, z, d, rng, out, 0, err);
    double zmax, zmin;
    if (scan_range(z, u->n_vocab, &zmax, &zmin, err) != 0) return -1;
    int n = u->n_vocab;
    /* softmax(z) at temperature 1 in one pass: S = Σ e_i, and what each signal needs. Single
     * precision exps (these signals only rank tokens; nothing exact depends on them), summed
     * in double. */
    double s = 0.0, sg = 0.0, second = 0.0;
    int seen_max = 0;
    const float fmax_ = (float)zmax;
    for (int i = 0; i < n; i++) {
        float g = z[i] - fmax_; /* <= 0 */
        double e = expf(g);
        s += e;
        if (e > 0.0) sg += e * g;
        /* the runner-up: a second logit equal to the max counts as a tie */
        if (g == 0.0 && !seen_max) {
            seen_max = 1;
        } else if (e > second) {
            second = e;
        }
    }
    double v;
    switch (u->p.method) {
    case UHLM_UNC_ENTROPY:
        /* H = -Σ p log p = log S - Σ p_i (z_i - z_max) */
        v = n > 1 ? (log(s) - sg / s) / log((double)n) : 0.0;
        break;
    case UHLM_UNC_MAXPROB: v = 1.0 - 1.0 / s; break;
    default: v = 1.0 - (1.0 - second) / s; break;
    }
    *out = v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
    return 0;
}
