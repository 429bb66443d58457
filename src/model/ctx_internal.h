/* ctx_internal.h: the layout of an inference context (uhlm_ctx, opaque in uhlm/model.h), for
 * model.c and the forward passes beside it (ggml_forward.c). */
#ifndef UHLM_CTX_INTERNAL_H
#define UHLM_CTX_INTERNAL_H

#include "model/model_internal.h"
#include "model/threadpool.h"

typedef struct {
    /* [n_layers][n_kv_heads][n_ctx][head_dim]: head-major, so attention reads each head's
     * keys and values as one sequential stream (position-major rows made it stride through
     * the cache and, at 16 sequences of a few hundred positions, wait on memory) */
    float *k, *v;
    int *tokens;  /* [n_ctx] */
    int len;
} kv_seq;

struct uhlm_ctx {
    const uhlm_model *m;
    uhlm_ctx_params p;
    uhlm_pool *pool;
    kv_seq *seqs;
    int kv_dim, q_dim;
    /* scratch for one chunk of up to max_batch entries */
    float *x, *xb, *xb2, *q, *k, *v, *hb, *hb2, *att, *rope;
    int *pending; /* per-seq length during validation */
    void *mm_scratch;
    struct uhlm_ggml_scratch *ggml; /* UHLM_NUMERICS_GGML's buffers (ggml_forward.c), else NULL */
};

/* Offset in a sequence's k or v of (layer, kv head, position): the cache layout, in one
 * place for the writer and the reader. */
static inline size_t kv_at(const uhlm_ctx *c, int layer, int kvh, int pos) {
    const size_t heads = (size_t)c->m->cfg.n_kv_heads, n_ctx = (size_t)c->p.n_ctx;
    return (((size_t)layer * heads + (size_t)kvh) * n_ctx + (size_t)pos) *
           (size_t)c->m->cfg.head_dim;
}

#endif
