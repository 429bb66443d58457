/* verifier_internal.h: views into the in-process verifier (verifier_inproc.c) for tests that
 * check its KV invariant; not part of the public API (the library exports neither). In-tree
 * users link libuhlm.a. v must come from uhlm_verifier_inproc_new. */
#ifndef UHLM_VERIFIER_INTERNAL_H
#define UHLM_VERIFIER_INTERNAL_H

#include "uhlm/model.h"
#include "uhlm/verifier.h"

/* The context: its cache holds the committed tokens but the newest. */
uhlm_ctx *uhlm_verifier_inproc_ctx(uhlm_verifier *v);
/* The committed context of the open session (*n tokens). */
const int *uhlm_verifier_inproc_committed(uhlm_verifier *v, int *n);

#endif
