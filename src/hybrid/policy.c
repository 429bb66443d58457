/* policy.c: modes and the skip decision (policy.h). */
#include "uhlm/policy.h"

#include <math.h>
#include <string.h>

static const char *const mode_names[] = {"slm", "llm", "hlm", "rand", "uhlm"};

int uhlm_mode_parse(const char *name, uhlm_mode *out) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, mode_names[i])) {
            *out = (uhlm_mode)i;
            return 0;
        }
    return -1;
}

const char *uhlm_mode_name(uhlm_mode m) {
    return (m >= UHLM_MODE_SLM && m <= UHLM_MODE_UHLM) ? mode_names[m] : "?";
}

int uhlm_policy_check(const uhlm_policy *p, uhlm_error *err) {
    if (p->mode < UHLM_MODE_SLM || p->mode > UHLM_MODE_UHLM)
        return uhlm_set_error(err, "unknown mode %d", (int)p->mode);
    if (p->mode == UHLM_MODE_UHLM && !isfinite(p->u_th))
        return uhlm_set_error(err, "u_th must be finite (got %g)", p->u_th);
    if (p->mode == UHLM_MODE_RAND && !(p->skip_prob >= 0.0 && p->skip_prob <= 1.0))
        return uhlm_set_error(err, "skip probability must be in [0, 1] (got %g)", p->skip_prob);
    return 0;
}

int uhlm_policy_needs_u(const uhlm_policy *p) { return p->mode == UHLM_MODE_UHLM; }

int uhlm_policy_skip(const uhlm_policy *p, double u, uhlm_rng *rng) {
    switch (p->mode) {
    case UHLM_MODE_SLM: return 1;
    case UHLM_MODE_RAND: return uhlm_rng_uniform(rng) < p->skip_prob;
    case UHLM_MODE_UHLM: return u <= p->u_th;
    default: return 0;
    }
}
