/* model.c: model loading (format dispatch, tokenizer attachment) and the batched Llama forward
 * pass over per-sequence KV caches (see model.h for the contract). */
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/ctx_internal.h"
#include "model/format/gguf.h"
#include "model/ggml_forward.h"
#include "model/threadpool.h"

#include "model/kernels/attention.h"
#include "model/kernels/vmath.h"

/* ------------------------------------------------------------------ loading */

const char *uhlm_format_name(uhlm_format f) {
    switch (f) {
    case UHLM_FORMAT_LLAMA2C_V0: return "llama2.c v0";
    case UHLM_FORMAT_LLAMA2C_V1: return "llama2.c v1";
    case UHLM_FORMAT_LLAMA2C_V2: return "llama2.c v2 (int8)";
    case UHLM_FORMAT_GGUF: return "GGUF";
    }
    return "?";
}

const char *uhlm_arch_name(uhlm_arch a) {
    switch (a) {
    case UHLM_ARCH_LLAMA: return "llama";
    case UHLM_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

const char *uhlm_rope_type_name(uhlm_rope_type t) {
    switch (t) {
    case UHLM_ROPE_NORM: return "norm";
    case UHLM_ROPE_NEOX: return "neox";
    }
    return "?";
}

const char *uhlm_numerics_name(uhlm_numerics n) {
    switch (n) {
    case UHLM_NUMERICS_DEFAULT: return "default";
    case UHLM_NUMERICS_GGML: return "ggml";
    }
    return "?";
}

int uhlm_numerics_from_name(const char *name, uhlm_numerics *out) {
    if (!strcmp(name, "default")) *out = UHLM_NUMERICS_DEFAULT;
    else if (!strcmp(name, "ggml")) *out = UHLM_NUMERICS_GGML;
    else return -1;
    return 0;
}

const uhlm_config *uhlm_model_config(const uhlm_model *m) { return &m->cfg; }
const uhlm_tokenizer *uhlm_model_tokenizer(const uhlm_model *m) { return m->tok; }
int uhlm_model_n_vocab(const uhlm_model *m) { return m->cfg.vocab_size; }
const char *uhlm_model_path(const uhlm_model *m) { return m->path; }
uhlm_format uhlm_model_format(const uhlm_model *m) { return m->format; }
uhlm_type uhlm_model_weight_type(const uhlm_model *m) { return m->wtype; }
int uhlm_model_is_synthetic(const uhlm_model *m) { return m->synthetic; }

static const uhlm_mmap *weights_map(const uhlm_model *m) {
    return m->gguf ? uhlm_gguf_map(m->gguf) : &m->map;
}

uhlm_load_mode uhlm_model_load_mode(const uhlm_model *m) { return weights_map(m)->mode; }

int64_t uhlm_model_huge_bytes(const uhlm_model *m) { return uhlm_file_huge_bytes(weights_map(m)); }

uint64_t uhlm_model_file_bytes(const uhlm_model *m) { return weights_map(m)->size; }

const char *uhlm_model_chat_template(const uhlm_model *m, size_t *len) {
    if (len) *len = m->chat_template_len;
    return m->chat_template;
}

int uhlm_model_attach_tokenizer(uhlm_model *m, uhlm_tokenizer *tok, uhlm_error *err) {
    int n = uhlm_tokenizer_vocab_size(tok);
    if (n != m->cfg.vocab_size) {
        uhlm_tokenizer_free(tok);
        return uhlm_set_error(err, "%s: vocabulary size %d disagrees with the tokenizer's %d",
                              m->path, m->cfg.vocab_size, n);
    }
    uhlm_tokenizer_free(m->tok);
    m->tok = tok;
    return 0;
}

uhlm_model_params uhlm_model_default_params(void) {
    uhlm_model_params p;
    memset(&p, 0, sizeof p);
    p.load = UHLM_LOAD_AUTO;
    return p;
}

uhlm_model *uhlm_model_load(const char *path, const char *tokenizer_path, uhlm_error *err) {
    uhlm_model_params p = uhlm_model_default_params();
    return uhlm_model_load_params(path, tokenizer_path, &p, err);
}

uhlm_model *uhlm_model_load_params(const char *path, const char *tokenizer_path,
                                   const uhlm_model_params *params, uhlm_error *err) {
    if (!path || !params) {
        uhlm_set_error(err, "model: no file name or parameters given");
        return NULL;
    }
    if (params->load != UHLM_LOAD_AUTO && params->load != UHLM_LOAD_MMAP &&
        params->load != UHLM_LOAD_COPY) {
        uhlm_set_error(err, "%s: unknown load mode %d", path, (int)params->load);
        return NULL;
    }
    uhlm_model *m = calloc(1, sizeof *m);
    if (!m) {
        uhlm_set_error(err, "%s: out of memory", path);
        return NULL;
    }
    if (strlen(path) >= sizeof m->path) {
        free(m);
        uhlm_set_error(err, "model path too long");
        return NULL;
    }
    strcpy(m->path, path);
    m->load = params->load;
    uhlm_mmap probe;
    if (uhlm_mmap_open(&probe, path, err) != 0) {
        free(m);
        return NULL;
    }
    uint32_t magic = 0;
    if (probe.size >= 4) memcpy(&magic, probe.data, 4);
    uhlm_mmap_close(&probe);
    int rc = magic == UHLM_GGUF_MAGIC ? uhlm_gguf_load_llama(m, err) : uhlm_llama2c_load(m, err);
    if (rc == 0 && tokenizer_path) {
        uhlm_tokenizer *t = uhlm_tokenizer_load_bin(tokenizer_path, 0, err);
        rc = t ? uhlm_model_attach_tokenizer(m, t, err) : -1;
    }
    if (rc != 0) {
        uhlm_model_free(m);
        return NULL;
    }
    return m;
}

void uhlm_model_free(uhlm_model *m) {
    if (!m) return;
    uhlm_mmap_close(&m->map);
    if (m->gguf) uhlm_gguf_close(m->gguf);
    uhlm_tokenizer_free(m->tok);
    free(m->w.out_ids);
    free(m->owned_output);
    free(m->w.layers);
    free(m);
}

uint64_t uhlm_model_weight_bytes(const uhlm_model *m) {
    const uhlm_config *p = &m->cfg;
    uint64_t b = 0;
    for (int l = 0; l < p->n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        b += uhlm_tensor_nbytes(&L->wq) + uhlm_tensor_nbytes(&L->wk) + uhlm_tensor_nbytes(&L->wv) +
             uhlm_tensor_nbytes(&L->wo) + uhlm_tensor_nbytes(&L->w1) + uhlm_tensor_nbytes(&L->w2) +
             uhlm_tensor_nbytes(&L->w3) + 2u * (uint64_t)p->dim * 4u;
        const uint64_t qd = (uint64_t)p->n_heads * (uint64_t)p->head_dim;
        const uint64_t kvd = (uint64_t)p->n_kv_heads * (uint64_t)p->head_dim;
        b += (L->bq ? qd * 4u : 0) + (L->bk ? kvd * 4u : 0) + (L->bv ? kvd * 4u : 0);
    }
    /* one embedding row is read per token; the classifier is read whole */
    b += uhlm_tensor_nbytes(&m->w.output) + (uint64_t)p->dim * 4u;
    return b;
}

/* ------------------------------------------------------------------ context */

uhlm_ctx_params uhlm_ctx_default_params(void) {
    uhlm_ctx_params p = {1, 0, 0, 256, UHLM_SIMD_AUTO, UHLM_NUMERICS_DEFAULT};
    return p;
}

static size_t max_scratch(const uhlm_model *m, int B) {
    size_t s = uhlm_matmul_scratch(&m->w.output, B);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (int i = 0; i < 7; i++) {
            size_t t = uhlm_matmul_scratch(ts[i], B);
            if (t > s) s = t;
        }
    }
    return s;
}

uhlm_ctx *uhlm_ctx_new(const uhlm_model *m, const uhlm_ctx_params *pp, uhlm_error *err) {
    uhlm_ctx_params p = pp ? *pp : uhlm_ctx_default_params();
    const uhlm_config *c = &m->cfg;
    if (p.n_seq <= 0) p.n_seq = 1;
    if (p.n_ctx <= 0) p.n_ctx = c->seq_len;
    if (p.max_batch <= 0) p.max_batch = 256;
    if (p.n_ctx > c->seq_len) {
        uhlm_set_error(err, "%s: context %d exceeds the model's maximum %d", m->path, p.n_ctx,
                       c->seq_len);
        return NULL;
    }
    if (p.n_seq > 65536 || p.max_batch > 65536) {
        uhlm_set_error(err, "too many sequences (%d) or batch entries (%d)", p.n_seq, p.max_batch);
        return NULL;
    }
    if (p.numerics != UHLM_NUMERICS_DEFAULT && p.numerics != UHLM_NUMERICS_GGML) {
        uhlm_set_error(err, "unknown numerics mode %d", (int)p.numerics);
        return NULL;
    }
    if (p.numerics == UHLM_NUMERICS_GGML && uhlm_ggml_check_model(m, err) != 0) return NULL;
    uhlm_simd simd = uhlm_simd_resolve(p.simd);
    if (!uhlm_simd_supported(simd)) {
        uhlm_set_error(err, "SIMD level %s is not supported by this CPU", uhlm_simd_name(simd));
        return NULL;
    }
    p.simd = simd;
    uhlm_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        uhlm_set_error(err, "out of memory");
        return NULL;
    }
    x->m = m;
    x->p = p;
    x->kv_dim = c->n_kv_heads * c->head_dim;
    x->q_dim = c->n_heads * c->head_dim;
    size_t B = (size_t)p.max_batch;
    /* xb holds normed inputs (dim wide) and attention outputs (q_dim wide) */
    size_t xb_w = (size_t)(c->dim > x->q_dim ? c->dim : x->q_dim);
    x->seqs = calloc((size_t)p.n_seq, sizeof(kv_seq));
    x->pending = calloc((size_t)p.n_seq, sizeof(int));
    x->x = malloc(B * (size_t)c->dim * sizeof(float));
    x->xb = malloc(B * xb_w * sizeof(float));
    x->xb2 = malloc(B * (size_t)c->dim * sizeof(float));
    x->q = malloc(B * (size_t)x->q_dim * sizeof(float));
    x->k = malloc(B * (size_t)x->kv_dim * sizeof(float));
    x->v = malloc(B * (size_t)x->kv_dim * sizeof(float));
    x->hb = malloc(B * (size_t)c->hidden_dim * sizeof(float));
    x->hb2 = malloc(B * (size_t)c->hidden_dim * sizeof(float));
    x->att = malloc(B * (size_t)c->n_heads * (size_t)p.n_ctx * sizeof(float));
    x->rope = malloc((size_t)p.n_ctx * (size_t)c->head_dim * sizeof(float));
    size_t mms = max_scratch(m, p.max_batch);
    x->mm_scratch = aligned_alloc(64, (mms + 63) / 64 * 64 + 64);
    if (!x->seqs || !x->pending || !x->x || !x->xb || !x->xb2 || !x->q || !x->k || !x->v ||
        !x->hb || !x->hb2 || !x->att || !x->rope || !x->mm_scratch) {
        uhlm_ctx_free(x);
        uhlm_set_error(err, "out of memory allocating an inference context");
        return NULL;
    }
    /* RoPE table: cos/sin pairs per position and frequency, computed as llama2.c does so the
     * logits match its reference to float rounding. Linear scaling multiplies the position;
     * by 1.0f when there is none, which is exact, so unscaled models keep the same table. */
    int hd = c->head_dim;
    const float pscale = c->rope_freq_scale > 0 ? c->rope_freq_scale : 1.0f;
    for (int pos = 0; pos < p.n_ctx; pos++)
        for (int i = 0; i < hd; i += 2) {
            float freq = 1.0f / powf(c->rope_theta, (float)i / (float)hd);
            float val = (float)pos * pscale * freq;
            x->rope[(size_t)pos * hd + i] = cosf(val);
            x->rope[(size_t)pos * hd + i + 1] = sinf(val);
        }
    x->pool = uhlm_pool_new(p.n_threads, err);
    if (!x->pool) {
        uhlm_ctx_free(x);
        return NULL;
    }
    if (p.numerics == UHLM_NUMERICS_GGML) {
        x->ggml = uhlm_ggml_scratch_new(m, p.max_batch, p.n_ctx, uhlm_pool_size(x->pool));
        if (!x->ggml) {
            uhlm_ctx_free(x);
            uhlm_set_error(err, "out of memory allocating an inference context");
            return NULL;
        }
    }
    return x;
}

void uhlm_ctx_free(uhlm_ctx *x) {
    if (!x) return;
    if (x->seqs)
        for (int i = 0; i < x->p.n_seq; i++) {
            free(x->seqs[i].k);
            free(x->seqs[i].v);
            free(x->seqs[i].tokens);
        }
    free(x->seqs);
    free(x->pending);
    free(x->x);
    free(x->xb);
    free(x->xb2);
    free(x->q);
    free(x->k);
    free(x->v);
    free(x->hb);
    free(x->hb2);
    free(x->att);
    free(x->rope);
    free(x->mm_scratch);
    uhlm_ggml_scratch_free(x->ggml);
    uhlm_pool_free(x->pool);
    free(x);
}

const uhlm_model *uhlm_ctx_model(const uhlm_ctx *c) { return c->m; }
int uhlm_ctx_n_ctx(const uhlm_ctx *c) { return c->p.n_ctx; }
int uhlm_ctx_n_seq(const uhlm_ctx *c) { return c->p.n_seq; }
uhlm_simd uhlm_ctx_simd(const uhlm_ctx *c) { return c->p.simd; }

uhlm_ctx_thread_stats uhlm_ctx_thread_stats_get(const uhlm_ctx *c) {
    const uhlm_pool_stats s = uhlm_pool_get_stats(c->pool);
    return (uhlm_ctx_thread_stats){s.parallel_runs, s.stalls, s.solo_runs};
}

int uhlm_seq_len(const uhlm_ctx *c, int seq) {
    return (seq >= 0 && seq < c->p.n_seq) ? c->seqs[seq].len : -1;
}

const int *uhlm_seq_tokens(const uhlm_ctx *c, int seq) {
    static const int none[1] = {0};
    if (seq < 0 || seq >= c->p.n_seq) return NULL;
    return c->seqs[seq].tokens ? c->seqs[seq].tokens : none;
}

int uhlm_seq_truncate(uhlm_ctx *c, int seq, int pos, uhlm_error *err) {
    if (seq < 0 || seq >= c->p.n_seq)
        return uhlm_set_error(err, "sequence %d out of range [0, %d)", seq, c->p.n_seq);
    if (pos < 0 || pos > c->seqs[seq].len)
        return uhlm_set_error(err, "cannot truncate sequence %d of length %d to %d", seq,
                              c->seqs[seq].len, pos);
    c->seqs[seq].len = pos;
    return 0;
}

static int seq_alloc(uhlm_ctx *c, kv_seq *s) {
    if (s->k) return 0;
    size_t n = (size_t)c->m->cfg.n_layers * (size_t)c->p.n_ctx * (size_t)c->kv_dim;
    s->k = malloc(n * sizeof(float));
    s->v = malloc(n * sizeof(float));
    s->tokens = malloc((size_t)c->p.n_ctx * sizeof(int));
    if (!s->k || !s->v || !s->tokens) {
        free(s->k);
        free(s->v);
        free(s->tokens);
        s->k = s->v = NULL;
        s->tokens = NULL;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ forward */

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

/* x += d, then o = rmsnorm(x): one pass over x instead of two, with exactly the additions and
 * the sum of squares of the two-step version (same values, same order), so the logits do not
 * change. */
static void add_rmsnorm(float *o, float *x, const float *d, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int j = 0; j < n; j++) {
        x[j] += d[j];
        ss += x[j] * x[j];
    }
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

/* NORM: rotates adjacent pairs (2i, 2i+1) of each head by angle i. */
static void rope(float *v, int n, const float *tab, int hd) {
    for (int i = 0; i < n; i += 2) {
        int j = i % hd;
        float fcr = tab[j], fci = tab[j + 1];
        float a = v[i], b = v[i + 1];
        v[i] = a * fcr - b * fci;
        v[i + 1] = a * fci + b * fcr;
    }
}

/* NEOX: rotates (i, i + hd/2) of each head by angle i; same table, pair i at tab[2i]. */
static void rope_neox(float *v, int n, const float *tab, int hd) {
    const int half = hd / 2;
    for (int h = 0; h < n; h += hd)
        for (int i = 0; i < half; i++) {
            float fcr = tab[2 * i], fci = tab[2 * i + 1];
            float a = v[h + i], b = v[h + i + half];
            v[h + i] = a * fcr - b * fci;
            v[h + i + half] = a * fci + b * fcr;
        }
}

static void add_bias(float *y, const float *b, int n, int width) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < width; j++) y[(size_t)i * width + j] += b[j];
}

typedef struct {
    uhlm_ctx *c;
    const uhlm_batch_entry *e;
    int layer;
    uhlm_attn_fn fn;
} attn_job;

/* One (entry, head) pair per work item: each writes its own slice of xb, and the kernel's
 * order of operations is fixed per pair, so the result does not depend on how the pool
 * splits the range, on the batch, or on the thread count. */
static void attn_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    attn_job *j = arg;
    uhlm_ctx *c = j->c;
    const uhlm_config *p = &c->m->cfg;
    int hd = p->head_dim, nh = p->n_heads, qd = c->q_dim;
    int grp = p->n_heads / p->n_kv_heads;
    uhlm_attn_args a;
    a.stride = (size_t)hd;
    a.hd = hd;
    a.scale = 1.0f / sqrtf((float)hd);
    for (int64_t it = begin; it < end; it++) {
        int i = (int)(it / nh), h = (int)(it % nh);
        const uhlm_batch_entry *e = &j->e[i];
        kv_seq *s = &c->seqs[e->seq];
        const size_t head_off = kv_at(c, j->layer, h / grp, 0);
        a.q = c->q + (size_t)i * qd + (size_t)h * hd;
        a.k = s->k + head_off;
        a.v = s->v + head_off;
        a.n_pos = e->pos + 1;
        a.att = c->att + ((size_t)i * nh + h) * (size_t)c->p.n_ctx;
        a.out = c->xb + (size_t)i * qd + (size_t)h * hd;
        j->fn(&a);
    }
}

/* hb = silu(hb) * hb2, elementwise (vmath.h). Vectorized, one token's worth (a few thousand
 * elements, about a microsecond) costs less than waking the pool, so it runs inline until a
 * batch makes it worth spreading. */
typedef struct {
    uhlm_swiglu_fn fn;
    float *g;
    const float *u;
} swiglu_job;

#define SWIGLU_GRAIN 16384

static void swiglu_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const swiglu_job *j = arg;
    j->fn(j->g + begin, j->u + begin, end - begin);
}

static void matmul(uhlm_ctx *c, const uhlm_tensor *W, const float *X, int n, float *Y) {
    uhlm_matmul(c->p.simd, c->pool, W, X, n, Y, c->mm_scratch);
}

/* Runs n <= max_batch validated entries; their sequences already have caches. */
/* A draft-vocabulary classifier wrote nl rows of n_out logits, packed. Spread them in place to
 * nl rows of V, -inf for the unlisted tokens, going backwards: row r's entry j moves to
 * r * V + ids[j] >= r * n_out + j (V >= n_out, ids strictly increasing from >= 0), so every
 * write lands at or after the packed entries still to be read, and no scratch the size of a
 * batch of logits is needed. */
static void spread_draft_logits(float *z, int nl, const int32_t *ids, int n_out, int V) {
    for (int r = nl - 1; r >= 0; r--) {
        const size_t src = (size_t)r * (size_t)n_out, dst = (size_t)r * (size_t)V;
        int j = n_out - 1;
        for (int v = V - 1; v >= 0; v--) {
            if (j >= 0 && ids[j] == v)
                z[dst + (size_t)v] = z[src + (size_t)j--];
            else
                z[dst + (size_t)v] = -INFINITY;
        }
    }
}

static void forward_chunk(uhlm_ctx *c, const uhlm_batch_entry *e, int n, float *logits,
                          float *hidden) {
    const uhlm_model *m = c->m;
    const uhlm_config *p = &m->cfg;
    int D = p->dim, H = p->hidden_dim, kvd = c->kv_dim, qd = c->q_dim, hd = p->head_dim;
    void (*rope_fn)(float *, int, const float *, int) =
        p->rope_type == UHLM_ROPE_NEOX ? rope_neox : rope;
    for (int i = 0; i < n; i++) uhlm_tensor_row(&m->w.tok_embd, e[i].token, c->x + (size_t)i * D);
    /* the first layer's attention norm; each later one is fused into the residual add that
     * ends the layer before it */
    for (int i = 0; i < n; i++)
        rmsnorm(c->xb + (size_t)i * D, c->x + (size_t)i * D, m->w.layers[0].attn_norm, D,
                p->norm_eps);
    for (int l = 0; l < p->n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_out[3] = {c->q, c->k, c->v};
        uhlm_matmul_multi(c->p.simd, c->pool, qkv, qkv_out, 3, c->xb, n, c->mm_scratch);
        if (L->bq) add_bias(c->q, L->bq, n, qd);
        if (L->bk) add_bias(c->k, L->bk, n, kvd);
        if (L->bv) add_bias(c->v, L->bv, n, kvd);
        for (int i = 0; i < n; i++) {
            const float *tab = c->rope + (size_t)e[i].pos * hd;
            rope_fn(c->q + (size_t)i * qd, qd, tab, hd);
            rope_fn(c->k + (size_t)i * kvd, kvd, tab, hd);
            kv_seq *s = &c->seqs[e[i].seq];
            for (int h = 0; h < p->n_kv_heads; h++) {
                const size_t at = kv_at(c, l, h, e[i].pos);
                const size_t from = (size_t)i * kvd + (size_t)h * hd;
                memcpy(s->k + at, c->k + from, (size_t)hd * sizeof(float));
                memcpy(s->v + at, c->v + from, (size_t)hd * sizeof(float));
            }
        }
        attn_job job = {c, e, l, uhlm_attn_kernel(c->p.simd)};
        uhlm_pool_run(c->pool, attn_task, &job, (int64_t)n * p->n_heads, 1);
        matmul(c, &L->wo, c->xb, n, c->xb2);
        for (int i = 0; i < n; i++)
            add_rmsnorm(c->xb + (size_t)i * D, c->x + (size_t)i * D, c->xb2 + (size_t)i * D,
                        L->ffn_norm, D, p->norm_eps);
        const uhlm_tensor *up[2] = {&L->w1, &L->w3};
        float *const up_out[2] = {c->hb, c->hb2};
        uhlm_matmul_multi(c->p.simd, c->pool, up, up_out, 2, c->xb, n, c->mm_scratch);
        swiglu_job sj = {uhlm_swiglu_kernel(c->p.simd), c->hb, c->hb2};
        uhlm_pool_run(c->pool, swiglu_task, &sj, (int64_t)n * H, SWIGLU_GRAIN);
        matmul(c, &L->w2, c->hb, n, c->xb);
        if (l + 1 < p->n_layers) {
            /* x += the FFN output, then the next layer's attention norm of x into xb, which
             * held that output: add_rmsnorm reads d = xb whole before it writes o = xb */
            for (int i = 0; i < n; i++)
                add_rmsnorm(c->xb + (size_t)i * D, c->x + (size_t)i * D, c->xb + (size_t)i * D,
                            m->w.layers[l + 1].attn_norm, D, p->norm_eps);
        } else {
            for (size_t j = 0; j < (size_t)n * D; j++) c->x[j] += c->xb[j];
        }
    }
    /* only entries that want logits go through the final norm and the classifier */
    int nl = 0;
    for (int i = 0; i < n; i++) {
        if (!e[i].logits) continue;
        rmsnorm(c->xb + (size_t)nl * D, c->x + (size_t)i * D, m->w.out_norm, D, p->norm_eps);
        nl++;
    }
    if (nl == 0) return;
    if (hidden) memcpy(hidden, c->xb, (size_t)nl * D * sizeof(float));
    if (!logits) return;
    matmul(c, &m->w.output, c->xb, nl, logits);
    if (m->w.out_ids) spread_draft_logits(logits, nl, m->w.out_ids, m->w.n_out, p->vocab_size);
}

/* 1 when some z[0 .. n) is NaN or infinite: an all-ones exponent. An integer OR over the
 * row, which compilers vectorize; a per-element isfinite with an early exit stays scalar and
 * cost 2-3% of a small model's step. */
static int any_nonfinite(const float *z, size_t n) {
    uint32_t bad = 0;
    for (size_t v = 0; v < n; v++) {
        uint32_t u;
        memcpy(&u, &z[v], sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    return bad != 0;
}

/* Corrupt weights (NaN or Inf values that pass every format check) show up as non-finite
 * logits; sampling from them would print garbage, so the call fails instead, and the entries'
 * cache positions are dropped again so that the call changes nothing. The scan costs one pass
 * over the logits, small beside the classifier matmul that produced them. */
static int logits_finite(uhlm_ctx *c, const uhlm_batch_entry *e, int n, const float *logits,
                         uhlm_error *err) {
    size_t V = (size_t)c->m->cfg.vocab_size;
    const int32_t *ids = c->m->w.out_ids; /* the only tokens whose logits are not -inf */
    size_t row = 0;
    for (int i = 0; i < n; i++) {
        if (!e[i].logits) continue;
        const float *z = logits + row++ * V;
        if (!any_nonfinite(z, V)) continue; /* a draft vocabulary's -inf lands in the slow path */
        int j = 0;
        for (size_t v = 0; v < V; v++) {
            if (ids) {
                int listed = j < c->m->w.n_out && (size_t)ids[j] == v;
                j += listed;
                if (!listed && z[v] == -INFINITY) continue;
            }
            if (isfinite(z[v])) continue;
            for (int j = 0; j < n; j++) /* positions are consecutive: the least is the old length */
                if (c->seqs[e[j].seq].len > e[j].pos) c->seqs[e[j].seq].len = e[j].pos;
            return uhlm_set_error(err,
                                  "%s: non-finite logit (%g) for token %zu at batch entry %d "
                                  "(sequence %d, position %d): the model's weights hold NaN or "
                                  "Inf values",
                                  c->m->path, (double)z[v], v, i, e[i].seq, e[i].pos);
        }
    }
    return 0;
}

int uhlm_decode(uhlm_ctx *c, const uhlm_batch_entry *e, int n, float *logits, float *hidden,
                uhlm_error *err) {
    if (n < 0) return uhlm_set_error(err, "negative batch size %d", n);
    const uhlm_config *p = &c->m->cfg;
    for (int s = 0; s < c->p.n_seq; s++) c->pending[s] = c->seqs[s].len;
    for (int i = 0; i < n; i++) {
        if (e[i].seq < 0 || e[i].seq >= c->p.n_seq)
            return uhlm_set_error(err, "batch entry %d: sequence %d out of range [0, %d)", i,
                                  e[i].seq, c->p.n_seq);
        if (e[i].token < 0 || e[i].token >= p->vocab_size)
            return uhlm_set_error(err, "batch entry %d: token %d out of range [0, %d)", i,
                                  e[i].token, p->vocab_size);
        if (e[i].pos != c->pending[e[i].seq])
            return uhlm_set_error(err,
                                  "batch entry %d: position %d for sequence %d, expected %d "
                                  "(positions must continue the sequence)",
                                  i, e[i].pos, e[i].seq, c->pending[e[i].seq]);
        if (e[i].pos >= c->p.n_ctx)
            return uhlm_set_error(err, "batch entry %d: position %d is past the context size %d",
                                  i, e[i].pos, c->p.n_ctx);
        c->pending[e[i].seq]++;
    }
    for (int i = 0; i < n; i++)
        if (seq_alloc(c, &c->seqs[e[i].seq]) != 0)
            return uhlm_set_error(err, "out of memory allocating the KV cache of sequence %d",
                                  e[i].seq);
    size_t V = (size_t)p->vocab_size, D = (size_t)p->dim;
    float *logits0 = logits;
    for (int off = 0; off < n; off += c->p.max_batch) {
        int cn = n - off < c->p.max_batch ? n - off : c->p.max_batch;
        int nl = 0;
        for (int i = 0; i < cn; i++) nl += e[off + i].logits != 0;
        if (c->ggml)
            uhlm_ggml_forward_chunk(c, e + off, cn, logits, hidden);
        else
            forward_chunk(c, e + off, cn, logits, hidden);
        for (int i = 0; i < cn; i++) {
            kv_seq *s = &c->seqs[e[off + i].seq];
            s->tokens[e[off + i].pos] = e[off + i].token;
            s->len = e[off + i].pos + 1;
        }
        if (logits) logits += (size_t)nl * V;
        if (hidden) hidden += (size_t)nl * D;
    }
    return logits0 ? logits_finite(c, e, n, logits0, err) : 0;
}
