/* verify.c: accept/reject/resample and the position-keyed RNG streams (verify.h). */
#include "uhlm/verify.h"

#include <string.h>

#include "model/mix64.h"

uint64_t uhlm_hybrid_stream_seed(uint64_t seed, int stream) {
    return uhlm_mix64(uhlm_mix64(seed ^ 0x75686c6d5f737472ULL) +
                      0x9e3779b97f4a7c15ULL * (uint64_t)stream);
}

uint64_t uhlm_hybrid_pos_seed(uint64_t stream_seed, uint64_t pos) {
    return uhlm_mix64(stream_seed + 0xd1b54a32d192ed03ULL * (pos + 1));
}

void uhlm_hybrid_rng(uhlm_rng *r, uint64_t stream_seed, uint64_t pos) {
    uhlm_rng_seed(r, uhlm_hybrid_pos_seed(stream_seed, pos));
}

int uhlm_sample_weights(const float *w, int n, uhlm_rng *rng) {
    double total = 0.0;
    for (int i = 0; i < n; i++)
        if (w[i] > 0.0f) total += w[i];
    if (!(total > 0.0)) return -1;
    double t = uhlm_rng_uniform(rng) * total, c = 0.0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (!(w[i] > 0.0f)) continue;
        c += w[i];
        last = i;
        if (t < c) return i;
    }
    return last; /* rounding left t at the very top: the last positive weight takes it */
}

int uhlm_verify(const float *x, const float *y, int n, int d, uhlm_rng *rng,
                uhlm_verdict *out, uhlm_error *err) {
    if (d < 0 || d >= n) return uhlm_set_error(err, "verify: draft %d outside [0, %d)", d, n);
    if (!(x[d] > 0.0f))
        return uhlm_set_error(err, "verify: draft %d has probability %g under x", d, (double)x[d]);
    memset(out, 0, sizeof *out); /* the cost and context are the caller's to fill */
    double xd = x[d], yd = y[d] > 0.0f ? y[d] : 0.0;
    double ratio = yd / xd;
    out->x_d = xd;
    out->y_d = yd;
    out->beta = ratio >= 1.0 ? 0.0 : 1.0 - ratio;
    out->y_ge_x = yd >= xd;
    out->residual_fallback = 0;
    /* always draw the accept uniform, so the stream's use does not depend on y */
    double u = uhlm_rng_uniform(rng);
    if (u < ratio) {
        out->token = d;
        out->accepted = 1;
        return 0;
    }
    out->accepted = 0;
    /* residual max(0, y - x): the pass computes its mass, the draw walks it again, so no
     * vocabulary-sized scratch is needed */
    double mass = 0.0;
    for (int i = 0; i < n; i++) {
        double r = (double)y[i] - (double)x[i];
        if (r > 0.0) mass += r;
    }
    double t = uhlm_rng_uniform(rng);
    if (mass > 0.0) {
        double c = 0.0;
        int last = -1;
        t *= mass;
        for (int i = 0; i < n; i++) {
            double r = (double)y[i] - (double)x[i];
            if (!(r > 0.0)) continue;
            c += r;
            last = i;
            if (t < c) break;
        }
        out->token = last;
        return 0;
    }
    /* y <= x everywhere in floats means y == x up to rounding, and a rejection then had
     * (numerically) zero probability; y itself is the right distribution to fall back on */
    out->residual_fallback = 1;
    double c = 0.0, tot = 0.0;
    int last = -1;
    for (int i = 0; i < n; i++)
        if (y[i] > 0.0f) tot += y[i];
    if (!(tot > 0.0)) return uhlm_set_error(err, "verify: y has no mass");
    t *= tot;
    for (int i = 0; i < n; i++) {
        if (!(y[i] > 0.0f)) continue;
        c += y[i];
        last = i;
        if (t < c) break;
    }
    out->token = last;
    out->accepted = last == d;
    return 0;
}

int uhlm_verify_greedy(int n, int d, int y_argmax, uhlm_verdict *out, uhlm_error *err) {
    if (d < 0 || d >= n || y_argmax < 0 || y_argmax >= n)
        return uhlm_set_error(err, "verify: token %d or %d outside [0, %d)", d, y_argmax, n);
    memset(out, 0, sizeof *out);
    out->accepted = d == y_argmax;
    out->token = y_argmax;
    out->x_d = 1.0;
    out->y_d = out->accepted ? 1.0 : 0.0;
    out->beta = out->accepted ? 0.0 : 1.0;
    out->y_ge_x = out->accepted;
    out->residual_fallback = 0;
    return 0;
}
