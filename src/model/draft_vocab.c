/* draft_vocab.c: a classifier restricted to a draft vocabulary (see uhlm_weights.out_ids).
 * The forward pass spreads its logits over the whole vocabulary (model.c); this file makes such
 * a classifier from a full one and answers which tokens it scores. */
#include "model/model_internal.h"

#include <stdlib.h>
#include <string.h>

const int32_t *uhlm_model_output_tokens(const uhlm_model *m, int *n) {
    if (n) *n = m->w.out_ids ? m->w.n_out : m->cfg.vocab_size;
    return m->w.out_ids;
}

/* The classifier row holding token id, or -1 when the classifier does not score it. */
static int64_t row_of(const uhlm_weights *w, int32_t id) {
    if (!w->out_ids) return id;
    int lo = 0, hi = w->n_out - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (w->out_ids[mid] == id) return mid;
        if (w->out_ids[mid] < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int uhlm_model_keep_output_tokens(uhlm_model *m, const int32_t *ids, int n, uhlm_error *err) {
    const int V = m->cfg.vocab_size;
    uhlm_weights *w = &m->w;
    if (!ids || n < 1 || n > V)
        return uhlm_set_error(err, "%s: a draft vocabulary needs 1 to %d tokens (got %d)", m->path,
                              V, n);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return uhlm_set_error(err, "%s: draft vocabulary entry %d is token %d, outside [0, %d)",
                                  m->path, i, (int)ids[i], V);
        if (i > 0 && ids[i] <= ids[i - 1])
            return uhlm_set_error(err,
                                  "%s: the draft vocabulary must be strictly increasing: entry %d "
                                  "is %d after %d",
                                  m->path, i, (int)ids[i], (int)ids[i - 1]);
        if (row_of(w, ids[i]) < 0)
            return uhlm_set_error(err,
                                  "%s: token %d is not in the classifier's draft vocabulary, so it "
                                  "cannot be kept",
                                  m->path, (int)ids[i]);
    }
    const uhlm_tensor *src = &w->output;
    const int64_t D = src->cols;
    /* Rows of block types are whole blocks: copying their bytes keeps each kept token's logit
     * bit for bit. Q8_G scales run across rows, so those rows are dequantized to f32. */
    const uhlm_type t = src->type == UHLM_TYPE_Q8_G ? UHLM_TYPE_F32 : src->type;
    const size_t rb = uhlm_type_bytes(t, D);
    int32_t *own_ids = malloc((size_t)n * sizeof *own_ids);
    unsigned char *rows = malloc((size_t)n * rb);
    if (!own_ids || !rows) {
        free(own_ids);
        free(rows);
        return uhlm_set_error(err, "%s: out of memory for a %d-token classifier", m->path, n);
    }
    for (int i = 0; i < n; i++) {
        const int64_t r = row_of(w, ids[i]);
        if (t == UHLM_TYPE_F32 && src->type != UHLM_TYPE_F32)
            uhlm_tensor_row(src, r, (float *)(void *)(rows + (size_t)i * rb));
        else
            memcpy(rows + (size_t)i * rb, (const unsigned char *)src->data + (size_t)r * rb, rb);
        own_ids[i] = ids[i];
    }
    free(w->out_ids);
    free(m->owned_output);
    w->out_ids = own_ids;
    w->n_out = n;
    m->owned_output = rows;
    w->output = (uhlm_tensor){.type = t, .rows = n, .cols = D, .data = rows};
    m->cfg.shared_classifier = 0;
    return 0;
}
