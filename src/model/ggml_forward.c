/* ggml_forward.c: the forward pass of UHLM_NUMERICS_GGML, llama.cpp's computation graph for a
 * `llama` model (src/models/llama.cpp of the vendored tree) with ggml's CPU kernels as
 * kernels/ggml_compat.c reproduces them, so that the logits equal llama.cpp's bit for bit.
 *
 * One uhlm_decode chunk is one llama.cpp ubatch. Which kernel ggml picks depends on the
 * ubatch, and so does the rounding; this file makes the same choices:
 *   - matrices (ggml_compute_forward_mul_mat): the activation rows are quantized to the
 *     weight type's vec_dot_type (Q8_1 for Q4_1, Q8_0 for Q8_0, F16 for F16). With two or more
 *     rows, llamafile's sgemm takes Q8_0 (tinyBLAS_Q0_AVX: per element the same value as
 *     ggml_vec_dot_q8_0_q8_0) and F16 (tinyBLAS: one 16-lane accumulator instead of
 *     ggml_vec_dot_f16's four); Q4_1 always goes through ggml_vec_dot_q4_1_q8_1;
 *   - attention without flash attention: KQ = mul_mat(K, Q) reads a permuted Q, so sgemm
 *     declines it and every score is ggml_vec_dot_f32; softmax with scale 1/sqrt(head_dim) and
 *     the causal mask; KQV = mul_mat(V^T, softmax) is contiguous, so a ubatch of two or more
 *     tokens takes tinyBLAS and a single token ggml_vec_dot_f32. llama.cpp pads the KV window
 *     to a multiple of 256 positions; masked positions weigh exactly 0 and add nothing to any
 *     lane, so only the valid positions are visited here;
 *   - the last layer continues only with the rows whose output is wanted (inp_out_ids), so
 *     its FFN and the classifier see that many rows (which decides the F16 kernel).
 * RMSNorm (sum of squares in double, fused with the weight), RoPE (its cos/sin cache built by
 * repeated multiplication), SwiGLU and the residual adds follow ggml's order of operations. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ctx_internal.h"
#include "model/ggml_forward.h"
#include "model/kernels/ggml_compat.h"

#define UHLM_GGML_MAX_HEAD_DIM 1024

static int matrix_ok(const uhlm_tensor *t) {
    return t->type == UHLM_TYPE_F16 || t->type == UHLM_TYPE_Q8_0 || t->type == UHLM_TYPE_Q4_1;
}

int uhlm_ggml_check_model(const uhlm_model *m, uhlm_error *err) {
    const uhlm_config *p = &m->cfg;
    if (p->arch != UHLM_ARCH_LLAMA)
        return uhlm_set_error(err, "%s: --numerics ggml supports the llama architecture, not %s",
                              m->path, uhlm_arch_name(p->arch));
    if (m->w.out_ids)
        return uhlm_set_error(err, "%s: --numerics ggml does not support a draft vocabulary",
                              m->path);
    const uhlm_type et = m->w.tok_embd.type;
    if (et != UHLM_TYPE_F32 && et != UHLM_TYPE_F16 && et != UHLM_TYPE_Q8_0)
        return uhlm_set_error(err, "%s: --numerics ggml supports f32, f16 and q8_0 token "
                              "embeddings, not %s", m->path, uhlm_type_name(et));
    if (!matrix_ok(&m->w.output))
        return uhlm_set_error(err, "%s: --numerics ggml supports f16, q8_0 and q4_1 matrices; "
                              "the classifier is %s", m->path, uhlm_type_name(m->w.output.type));
    /* ggml_vec_dot_f32 finishes a length that is not a multiple of 64 with a tail whose
     * rounding GCC decides (FMA or not, by length); KQ's length is the head size */
    if (p->head_dim > UHLM_GGML_MAX_HEAD_DIM || p->head_dim % 64)
        return uhlm_set_error(err, "%s: --numerics ggml supports head sizes that are multiples "
                              "of 64 up to %d, not %d", m->path, UHLM_GGML_MAX_HEAD_DIM,
                              p->head_dim);
    for (int l = 0; l < p->n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (int i = 0; i < 7; i++)
            if (!matrix_ok(ts[i]))
                return uhlm_set_error(err, "%s: --numerics ggml supports f16, q8_0 and q4_1 "
                                      "matrices; layer %d has %s", m->path, l,
                                      uhlm_type_name(ts[i]->type));
    }
    return 0;
}

/* Per-context buffers: activations converted for a matrix (the widest input times the
 * batch), and per thread one attention row (scores, then weights) and one head's V^T, both
 * padded to 64 positions. */
struct uhlm_ggml_scratch {
    void *act;
    float *att; /* [threads][npad + head_dim * npad] */
    int npad, threads;
    float *rows; /* the last layer's output rows: [max_batch][dim] */
};

static int64_t widest(const uhlm_model *m) {
    int64_t w = m->w.output.cols;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (int i = 0; i < 7; i++)
            if (ts[i]->cols > w) w = ts[i]->cols;
    }
    return w;
}

uhlm_ggml_scratch *uhlm_ggml_scratch_new(const uhlm_model *m, int max_batch, int n_ctx,
                                         int threads) {
    uhlm_ggml_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    const size_t cols = (size_t)widest(m), B = (size_t)max_batch;
    /* 2 bytes per element (F16) or 36 per 32 (Q8_1): F16 is the larger */
    s->act = malloc(B * cols * 2 + 64);
    s->npad = (n_ctx + 63) / 64 * 64;
    s->threads = threads > 0 ? threads : 1;
    const size_t hd = (size_t)m->cfg.head_dim;
    s->att = malloc((size_t)s->threads * ((size_t)s->npad + hd * (size_t)s->npad) * sizeof(float));
    s->rows = malloc(B * (size_t)m->cfg.dim * sizeof(float));
    if (!s->act || !s->att || !s->rows) {
        uhlm_ggml_scratch_free(s);
        return NULL;
    }
    return s;
}

void uhlm_ggml_scratch_free(uhlm_ggml_scratch *s) {
    if (!s) return;
    free(s->act);
    free(s->att);
    free(s->rows);
    free(s);
}

/* ------------------------------------------------------------------ matrices */

/* The context's SIMD level picks the AVX2 dot products or the portable ones: same bits, so
 * the level only changes the speed (and UHLM_SIMD=scalar runs the portable code). */
static const ggc_dot_fns *dots(const uhlm_ctx *c) { return ggc_dots(c->p.simd >= UHLM_SIMD_AVX2); }

typedef struct {
    const uhlm_tensor *W;
    const void *act;
    size_t act_row; /* bytes per converted activation row */
    int n, batched;
    float *Y;
    const ggc_dot_fns *dot;
} mm_job;

static void mm_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const mm_job *j = arg;
    const uhlm_tensor *W = j->W;
    const int cols = (int)W->cols;
    const size_t wrow = uhlm_type_bytes(W->type, W->cols);
    for (int64_t r = begin; r < end; r++) {
        const void *w = (const uint8_t *)W->data + (size_t)r * wrow;
        for (int i = 0; i < j->n; i++) {
            const void *a = (const uint8_t *)j->act + (size_t)i * j->act_row;
            float y;
            switch (W->type) {
            case UHLM_TYPE_Q4_1: y = j->dot->q4_1(cols, w, a); break;
            case UHLM_TYPE_Q8_0: y = j->dot->q8_0(cols, w, a); break;
            default: y = j->batched ? j->dot->f16_tiny(cols, w, a) : j->dot->f16(cols, w, a); break;
            }
            j->Y[(size_t)i * (size_t)W->rows + (size_t)r] = y;
        }
    }
}

/* Y[n][W.rows] = X[n][W.cols] W^T as ggml_compute_forward_mul_mat computes it. */
static void matmul(uhlm_ctx *c, const uhlm_tensor *W, const float *X, int n, float *Y) {
    uhlm_ggml_scratch *s = c->ggml;
    const int64_t cols = W->cols;
    mm_job j = {W, s->act, 0, n, 0, Y, dots(c)};
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t)i * (size_t)cols;
        switch (W->type) {
        case UHLM_TYPE_Q4_1:
            j.act_row = (size_t)(cols / UHLM_QK) * sizeof(uhlm_block_q8_1);
            ggc_quantize_q8_1(x, (uhlm_block_q8_1 *)((uint8_t *)s->act + (size_t)i * j.act_row),
                              cols);
            break;
        case UHLM_TYPE_Q8_0:
            j.act_row = (size_t)(cols / UHLM_QK) * sizeof(uhlm_block_q8_0);
            ggc_quantize_q8_0(x, (uhlm_block_q8_0 *)((uint8_t *)s->act + (size_t)i * j.act_row),
                              cols);
            break;
        default:
            j.act_row = (size_t)cols * sizeof(uint16_t);
            ggc_to_f16(x, (uint16_t *)((uint8_t *)s->act + (size_t)i * j.act_row), cols);
            break;
        }
    }
    /* llamafile_sgemm for F16 x F16: n >= 2 columns, k % 16 == 0 and rows % 4 == 0 */
    j.batched = W->type == UHLM_TYPE_F16 && n >= 2 && cols % 16 == 0 && W->rows % 4 == 0;
    uhlm_pool_run(c->pool, mm_task, &j, W->rows, 16);
}

/* ------------------------------------------------------------------ attention */

typedef struct {
    uhlm_ctx *c;
    const uhlm_batch_entry *e;
    int layer, batched;
} attn_job;

static void attn_task(void *arg, int64_t begin, int64_t end, int tid) {
    const attn_job *j = arg;
    uhlm_ctx *c = j->c;
    const uhlm_config *p = &c->m->cfg;
    uhlm_ggml_scratch *s = c->ggml;
    const int hd = p->head_dim, nh = p->n_heads, qd = c->q_dim, grp = p->n_heads / p->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hd);
    float *att = s->att + (size_t)tid * ((size_t)s->npad + (size_t)hd * (size_t)s->npad);
    float *vt = att + s->npad;
    const ggc_dot_fns *dot = dots(c);
    for (int64_t it = begin; it < end; it++) {
        const int i = (int)(it / nh), h = (int)(it % nh);
        const uhlm_batch_entry *e = &j->e[i];
        const kv_seq *sq = &c->seqs[e->seq];
        const size_t off = kv_at(c, j->layer, h / grp, 0);
        const float *q = c->q + (size_t)i * qd + (size_t)h * hd;
        const int nv = e->pos + 1;
        /* KQ: mul_mat(K, Q), src0 = the key row, src1 = the query */
        for (int t = 0; t < nv; t++) att[t] = dot->f32(hd, sq->k + off + (size_t)t * hd, q);
        ggc_soft_max(att, att, nv, scale);
        /* KQV: mul_mat(V^T, weights); the masked tail is zero in both operands */
        const int np = j->batched ? (nv + 15) / 16 * 16 : (nv + 63) / 64 * 64;
        for (int t = nv; t < np; t++) att[t] = 0.0f;
        for (int d = 0; d < hd; d++) {
            float *row = vt + (size_t)d * s->npad;
            for (int t = 0; t < nv; t++) row[t] = sq->v[off + (size_t)t * hd + d];
            for (int t = nv; t < np; t++) row[t] = 0.0f;
        }
        float *out = c->xb + (size_t)i * qd + (size_t)h * hd;
        for (int d = 0; d < hd; d++)
            out[d] = j->batched ? dot->f32_tiny(np, vt + (size_t)d * s->npad, att)
                                : dot->f32(np, vt + (size_t)d * s->npad, att);
    }
}

/* ------------------------------------------------------------------ forward */

void uhlm_ggml_forward_chunk(uhlm_ctx *c, const uhlm_batch_entry *e, int n, float *logits,
                             float *hidden) {
    const uhlm_model *m = c->m;
    const uhlm_config *p = &m->cfg;
    const int D = p->dim, H = p->hidden_dim, kvd = c->kv_dim, qd = c->q_dim, hd = p->head_dim;
    const float fscale = p->rope_freq_scale > 0 ? p->rope_freq_scale : 1.0f;
    float cache[UHLM_GGML_MAX_HEAD_DIM];
    for (int i = 0; i < n; i++) uhlm_tensor_row(&m->w.tok_embd, e[i].token, c->x + (size_t)i * D);
    int n_out = 0;
    for (int i = 0; i < n; i++) n_out += e[i].logits != 0;
    for (int l = 0; l < p->n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        for (int i = 0; i < n; i++)
            ggc_rms_norm_mul(c->x + (size_t)i * D, L->attn_norm, c->xb + (size_t)i * D, D,
                             p->norm_eps);
        matmul(c, &L->wq, c->xb, n, c->q);
        matmul(c, &L->wk, c->xb, n, c->k);
        matmul(c, &L->wv, c->xb, n, c->v);
        for (int i = 0; i < n; i++) {
            ggc_rope_cache(cache, hd, e[i].pos, p->rope_theta, fscale);
            void (*rot)(float *, const float *, int) =
                p->rope_type == UHLM_ROPE_NEOX ? ggc_rope_neox : ggc_rope_norm;
            for (int h = 0; h < p->n_heads; h++) rot(c->q + (size_t)i * qd + (size_t)h * hd, cache, hd);
            for (int h = 0; h < p->n_kv_heads; h++) rot(c->k + (size_t)i * kvd + (size_t)h * hd, cache, hd);
            kv_seq *s = &c->seqs[e[i].seq];
            for (int h = 0; h < p->n_kv_heads; h++) {
                const size_t at = kv_at(c, l, h, e[i].pos), from = (size_t)i * kvd + (size_t)h * hd;
                memcpy(s->k + at, c->k + from, (size_t)hd * sizeof(float));
                memcpy(s->v + at, c->v + from, (size_t)hd * sizeof(float));
            }
        }
        /* llamafile_sgemm takes KQV (F32, k = the padded window) for n >= 2 and m % 4 == 0 */
        attn_job aj = {c, e, l, n >= 2 && hd % 4 == 0};
        uhlm_pool_run(c->pool, attn_task, &aj, (int64_t)n * p->n_heads, 1);
        matmul(c, &L->wo, c->xb, n, c->xb2);
        int rows = n;
        if (l == p->n_layers - 1) {
            /* inp_out_ids: only the rows that give outputs go on */
            int k = 0;
            for (int i = 0; i < n; i++) {
                if (!e[i].logits) continue;
                memmove(c->x + (size_t)k * D, c->x + (size_t)i * D, sizeof(float) * (size_t)D);
                memmove(c->xb2 + (size_t)k * D, c->xb2 + (size_t)i * D, sizeof(float) * (size_t)D);
                k++;
            }
            rows = n_out;
        }
        /* ffn_inp = attn_out + inpSA */
        for (size_t j = 0; j < (size_t)rows * D; j++) c->x[j] = c->xb2[j] + c->x[j];
        for (int i = 0; i < rows; i++)
            ggc_rms_norm_mul(c->x + (size_t)i * D, L->ffn_norm, c->xb + (size_t)i * D, D,
                             p->norm_eps);
        if (rows == 0) break;
        matmul(c, &L->w1, c->xb, rows, c->hb);
        matmul(c, &L->w3, c->xb, rows, c->hb2);
        for (int i = 0; i < rows; i++) /* ggml_vec_swiglu_f32 runs row by row */
            ggc_swiglu(c->hb + (size_t)i * H, c->hb + (size_t)i * H, c->hb2 + (size_t)i * H, H);
        matmul(c, &L->w2, c->hb, rows, c->xb);
        /* l_out = ffn_out + ffn_inp */
        for (size_t j = 0; j < (size_t)rows * D; j++) c->x[j] = c->xb[j] + c->x[j];
    }
    if (n_out == 0) return;
    for (int i = 0; i < n_out; i++)
        ggc_rms_norm_mul(c->x + (size_t)i * D, m->w.out_norm, c->xb + (size_t)i * D, D,
                         p->norm_eps);
    if (hidden) memcpy(hidden, c->xb, (size_t)n_out * D * sizeof(float));
    if (logits) matmul(c, &m->w.output, c->xb, n_out, logits);
}
