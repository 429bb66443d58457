/* policy.h: the five generation modes and the skip decision (DESIGN §2.4).
 *
 *   slm   always skip: the device alone, nothing is sent
 *   llm   the server alone, autoregressive (no drafts; handled by the device loop)
 *   hlm   never skip: every draft is verified
 *   rand  skip with probability p, a coin from the POLICY stream (verify.h)
 *   uhlm  skip iff u <= u_th (u_th < 0: never skip; u_th >= 1: always skip)
 *
 * The decision is a pure function of (mode, u, the coin), so the device loop is one code
 * path for every mode. */
#ifndef UHLM_POLICY_H
#define UHLM_POLICY_H

#include "common.h"
#include "sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum uhlm_mode {
    UHLM_MODE_SLM = 0,
    UHLM_MODE_LLM = 1,
    UHLM_MODE_HLM = 2,
    UHLM_MODE_RAND = 3,
    UHLM_MODE_UHLM = 4
} uhlm_mode;

UHLM_API int uhlm_mode_parse(const char *name, uhlm_mode *out); /* 0 ok, -1 unknown */
UHLM_API const char *uhlm_mode_name(uhlm_mode m);

typedef struct uhlm_policy {
    uhlm_mode mode;
    double u_th;      /* uhlm; any finite value */
    double skip_prob; /* rand; in [0, 1] */
} uhlm_policy;

UHLM_API int uhlm_policy_check(const uhlm_policy *p, uhlm_error *err);
/* Whether the policy reads u (only uhlm does); the device skips computing it otherwise
 * unless asked to record it. */
UHLM_API int uhlm_policy_needs_u(const uhlm_policy *p);
/* 1 skip, 0 verify. rng is used by rand only (one uniform), may be NULL otherwise. Not
 * meaningful for llm. */
UHLM_API int uhlm_policy_skip(const uhlm_policy *p, double u, uhlm_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
