/* engine_internal.h: the verification engine's LLM context (engine.c), for the in-process
 * verifier's test view (verifier_internal.h); not part of the public API (not exported). */
#ifndef UHLM_ENGINE_INTERNAL_H
#define UHLM_ENGINE_INTERNAL_H

#include "uhlm/engine.h"
#include "uhlm/model.h"

/* Each session's cache is sequence `sid` of this context. */
uhlm_ctx *uhlm_engine_ctx(uhlm_engine *e);

#endif
