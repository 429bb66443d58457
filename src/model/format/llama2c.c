/* llama2c.c: loads llama2.c checkpoints (legacy v0, v1 fp32, v2 int8 groups) in place.
 *
 * Layouts (from llama2.c's export.py):
 *  v0: 7 int32 (dim, hidden, layers, heads, kv_heads, vocab [negative: unshared classifier],
 *      seq_len), then fp32 tok_embd, attn_norm[L], wq[L], wk[L], wv[L], wo[L], ffn_norm[L],
 *      w1[L], w2[L], w3[L], final norm, rope cos/sin tables (ignored), [classifier].
 *  v1: 256-byte header (magic "ak42", version, 7 int32, shared flag byte), then fp32
 *      attn_norm[L], ffn_norm[L], final norm, tok_embd, wq..w3 per kind, [classifier].
 *  v2: as v1 plus int32 group size in the header; fp32 norms, then the int8 values of every
 *      matrix in the v1 order, then all their fp32 scales in the same order. */
#include "model/model_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2C_MAGIC 0x616b3432u

typedef struct {
    const uint8_t *base;
    uint64_t off, size;
    const char *path;
    uhlm_error *err;
    int failed;
} cursor;

/* Reserves n bytes and returns where they start; sets failed (with a message naming what was
 * being read) if the file is too short. */
static const void *take(cursor *c, uint64_t n, const char *what) {
    if (c->failed) return NULL;
    if (n > c->size || c->off > c->size - n) {
        uhlm_set_error(c->err,
                       "%s: truncated file: %s needs %llu bytes at offset %llu, file has %llu",
                       c->path, what, (unsigned long long)n, (unsigned long long)c->off,
                       (unsigned long long)c->size);
        c->failed = 1;
        return NULL;
    }
    const void *p = c->base + c->off;
    c->off += n;
    return p;
}

static int check_config(const uhlm_config *p, const char *path, uhlm_error *err) {
    if (p->dim <= 0 || p->dim > 65536 || p->hidden_dim <= 0 || p->hidden_dim > (1 << 20) ||
        p->n_layers <= 0 || p->n_layers > 1024 || p->n_heads <= 0 || p->n_heads > 1024 ||
        p->n_kv_heads <= 0 || p->vocab_size <= 0 || p->vocab_size > (1 << 22) ||
        p->seq_len <= 0 || p->seq_len > (1 << 22))
        return uhlm_set_error(err,
                              "%s: absurd model dimensions (dim %d, hidden %d, layers %d, heads %d, "
                              "kv heads %d, vocab %d, seq_len %d)",
                              path, p->dim, p->hidden_dim, p->n_layers, p->n_heads, p->n_kv_heads,
                              p->vocab_size, p->seq_len);
    if (p->dim % p->n_heads != 0 || p->n_kv_heads > p->n_heads || p->n_heads % p->n_kv_heads != 0)
        return uhlm_set_error(err, "%s: inconsistent heads: dim %d, heads %d, kv heads %d", path,
                              p->dim, p->n_heads, p->n_kv_heads);
    if ((p->dim / p->n_heads) % 2 != 0)
        return uhlm_set_error(err, "%s: head dimension %d is odd (RoPE needs pairs)", path,
                              p->dim / p->n_heads);
    return 0;
}

static uhlm_tensor mat(uhlm_type t, int64_t rows, int64_t cols, const void *data) {
    uhlm_tensor x;
    memset(&x, 0, sizeof x);
    x.type = t;
    x.rows = rows;
    x.cols = cols;
    x.data = data;
    return x;
}

/* Matrix shapes in file order for v1/v2: tok_embd, then per-kind per-layer. */
enum { K_WQ, K_WK, K_WV, K_WO, K_W1, K_W2, K_W3, K_N };

static void kind_shape(const uhlm_config *p, int k, int64_t *rows, int64_t *cols) {
    int64_t kv = (int64_t)p->n_kv_heads * (p->dim / p->n_heads);
    switch (k) {
    case K_WQ: *rows = p->dim; *cols = p->dim; break;
    case K_WK:
    case K_WV: *rows = kv; *cols = p->dim; break;
    case K_WO: *rows = p->dim; *cols = p->dim; break;
    case K_W1:
    case K_W3: *rows = p->hidden_dim; *cols = p->dim; break;
    default: *rows = p->dim; *cols = p->hidden_dim; break;
    }
}

static uhlm_tensor *layer_slot(uhlm_layer *l, int k) {
    switch (k) {
    case K_WQ: return &l->wq;
    case K_WK: return &l->wk;
    case K_WV: return &l->wv;
    case K_WO: return &l->wo;
    case K_W1: return &l->w1;
    case K_W2: return &l->w2;
    default: return &l->w3;
    }
}

static int finish(uhlm_model *m, cursor *c, uhlm_error *err) {
    if (c->failed) return -1;
    if (c->off != c->size && m->format != UHLM_FORMAT_LLAMA2C_V0)
        return uhlm_set_error(err, "%s: %llu unexpected trailing bytes after the weights", m->path,
                              (unsigned long long)(c->size - c->off));
    if (c->off != c->size)
        return uhlm_set_error(err,
                              "%s: file size %llu does not match the header (expected %llu bytes)",
                              m->path, (unsigned long long)c->size, (unsigned long long)c->off);
    if (m->cfg.shared_classifier) m->w.output = m->w.tok_embd;
    return 0;
}

int uhlm_llama2c_load(uhlm_model *m, uhlm_error *err) {
    if (uhlm_file_load(&m->map, m->path, m->load, err) != 0) return -1;
    cursor c = {m->map.data, 0, m->map.size, m->path, err, 0};
    uhlm_config *p = &m->cfg;
    int version = 0, group = 0;
    const uint32_t *magic = take(&c, 4, "header");
    if (!magic) return -1;
    int32_t hdr[7];
    if (*magic == LLAMA2C_MAGIC) {
        const void *v = take(&c, 4, "header");
        if (!v) return -1;
        int32_t vv;
        memcpy(&vv, v, sizeof vv);
        version = vv;
        if (version != 1 && version != 2)
            return uhlm_set_error(err, "%s: unsupported llama2.c version %d (expected 1 or 2)",
                                  m->path, version);
        const int32_t *h = take(&c, 28, "header");
        const uint8_t *shared = take(&c, 1, "header");
        if (!h || !shared) return -1;
        memcpy(hdr, h, sizeof hdr);
        p->shared_classifier = *shared != 0;
        if (version == 2) {
            /* at byte 37: unaligned, so copied rather than dereferenced */
            const void *g = take(&c, 4, "header");
            if (!g) return -1;
            int32_t gv;
            memcpy(&gv, g, sizeof gv);
            group = gv;
        }
        if (!take(&c, 256 - c.off, "256-byte header")) return -1;
    } else {
        c.off = 0;
        const int32_t *h = take(&c, 28, "header");
        if (!h) return -1;
        memcpy(hdr, h, sizeof hdr);
        /* the sign of the vocab size carries the shared-classifier flag; INT32_MIN has no
         * positive counterpart, so it is refused before the negation */
        if (hdr[5] == INT32_MIN)
            return uhlm_set_error(err, "%s: vocab size %d in the header is out of range", m->path,
                                  hdr[5]);
        p->shared_classifier = hdr[5] > 0;
        if (hdr[5] < 0) hdr[5] = -hdr[5];
    }
    p->dim = hdr[0];
    p->hidden_dim = hdr[1];
    p->n_layers = hdr[2];
    p->n_heads = hdr[3];
    p->n_kv_heads = hdr[4];
    p->vocab_size = hdr[5];
    p->seq_len = hdr[6];
    p->rope_theta = 10000.0f;
    p->norm_eps = 1e-5f;
    if (check_config(p, m->path, err) != 0) return -1;
    p->head_dim = p->dim / p->n_heads;
    m->format = (uhlm_format)version;
    m->wtype = version == 2 ? UHLM_TYPE_Q8_G : UHLM_TYPE_F32;
    if (version == 2 && (group <= 0 || p->dim % group != 0))
        return uhlm_set_error(err, "%s: bad quantization group size %d for dim %d", m->path, group,
                              p->dim);

    int L = p->n_layers;
    m->w.layers = calloc((size_t)L, sizeof(uhlm_layer));
    if (!m->w.layers) return uhlm_set_error(err, "%s: out of memory", m->path);
    uhlm_weights *w = &m->w;
    uint64_t D = (uint64_t)p->dim, V = (uint64_t)p->vocab_size;

    if (version == 0) {
        w->tok_embd = mat(UHLM_TYPE_F32, p->vocab_size, p->dim, take(&c, V * D * 4, "token embeddings"));
        for (int l = 0; l < L; l++) w->layers[l].attn_norm = take(&c, D * 4, "attention norms");
        for (int k = K_WQ; k <= K_WO; k++)
            for (int l = 0; l < L; l++) {
                int64_t r, cc;
                kind_shape(p, k, &r, &cc);
                *layer_slot(&w->layers[l], k) =
                    mat(UHLM_TYPE_F32, r, cc, take(&c, (uint64_t)r * (uint64_t)cc * 4, "attention weights"));
            }
        for (int l = 0; l < L; l++) w->layers[l].ffn_norm = take(&c, D * 4, "ffn norms");
        for (int k = K_W1; k <= K_W3; k++)
            for (int l = 0; l < L; l++) {
                int64_t r, cc;
                kind_shape(p, k, &r, &cc);
                *layer_slot(&w->layers[l], k) =
                    mat(UHLM_TYPE_F32, r, cc, take(&c, (uint64_t)r * (uint64_t)cc * 4, "ffn weights"));
            }
        w->out_norm = take(&c, D * 4, "final norm");
        take(&c, (uint64_t)p->seq_len * (uint64_t)p->head_dim * 4, "rope tables");
        if (!p->shared_classifier)
            w->output = mat(UHLM_TYPE_F32, p->vocab_size, p->dim, take(&c, V * D * 4, "classifier"));
        return finish(m, &c, err);
    }

    for (int l = 0; l < L; l++) w->layers[l].attn_norm = take(&c, D * 4, "attention norms");
    for (int l = 0; l < L; l++) w->layers[l].ffn_norm = take(&c, D * 4, "ffn norms");
    w->out_norm = take(&c, D * 4, "final norm");
    uhlm_type t = version == 1 ? UHLM_TYPE_F32 : UHLM_TYPE_Q8_G;
    uint64_t esz = version == 1 ? 4 : 1;
    /* every matrix, in file order, so v2 can attach scales in a second pass */
    int nmat = 1 + K_N * L + (p->shared_classifier ? 0 : 1);
    uhlm_tensor **order = malloc(sizeof(uhlm_tensor *) * (size_t)nmat);
    if (!order) return uhlm_set_error(err, "%s: out of memory", m->path);
    int oi = 0;
    order[oi++] = &w->tok_embd;
    w->tok_embd = mat(t, p->vocab_size, p->dim, NULL);
    for (int k = 0; k < K_N; k++)
        for (int l = 0; l < L; l++) {
            int64_t r, cc;
            kind_shape(p, k, &r, &cc);
            *layer_slot(&w->layers[l], k) = mat(t, r, cc, NULL);
            order[oi++] = layer_slot(&w->layers[l], k);
        }
    if (!p->shared_classifier) {
        w->output = mat(t, p->vocab_size, p->dim, NULL);
        order[oi++] = &w->output;
    }
    for (int i = 0; i < nmat; i++) {
        uint64_t n = (uint64_t)order[i]->rows * (uint64_t)order[i]->cols;
        if (version == 2 && n % (uint64_t)group != 0) {
            free(order);
            return uhlm_set_error(err, "%s: matrix %d has %llu elements, not a multiple of the "
                                  "group size %d", m->path, i, (unsigned long long)n, group);
        }
        order[i]->data = take(&c, n * esz, "weights");
        order[i]->group = group;
    }
    if (version == 2)
        for (int i = 0; i < nmat; i++) {
            uint64_t n = (uint64_t)order[i]->rows * (uint64_t)order[i]->cols;
            order[i]->scales = take(&c, n / (uint64_t)group * 4, "quantization scales");
        }
    free(order);
    return finish(m, &c, err);
}
