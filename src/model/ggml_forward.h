/* ggml_forward.h: the forward pass of UHLM_NUMERICS_GGML (ggml_forward.c), llama.cpp's CPU
 * arithmetic bit for bit. Internal to src/model; model.c dispatches to it. */
#ifndef UHLM_GGML_FORWARD_H
#define UHLM_GGML_FORWARD_H

#include "uhlm/model.h"

typedef struct uhlm_ggml_scratch uhlm_ggml_scratch;

/* 0 when m can run with GGML numerics; else -1 and err names what it lacks. */
int uhlm_ggml_check_model(const uhlm_model *m, uhlm_error *err);
/* Buffers for batches of up to max_batch entries, n_ctx positions and `threads` pool threads;
 * NULL when out of memory. */
uhlm_ggml_scratch *uhlm_ggml_scratch_new(const uhlm_model *m, int max_batch, int n_ctx,
                                         int threads);
void uhlm_ggml_scratch_free(uhlm_ggml_scratch *s);
/* forward_chunk's contract (model.c): n validated entries whose sequences have caches; writes
 * their K and V, and logits / hidden rows for the entries that want logits. */
void uhlm_ggml_forward_chunk(uhlm_ctx *c, const uhlm_batch_entry *e, int n, float *logits,
                             float *hidden);

#endif
