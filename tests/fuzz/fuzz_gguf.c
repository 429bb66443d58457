/* fuzz_gguf.c: libFuzzer target for the GGUF reader (uhlm/gguf.h) and the llama mapping on top
 * of it (uhlm_model_load of a GGUF, with its embedded vocabulary).
 *
 * The input is the file. The reader promises that after a successful open every descriptor
 * can be trusted; the target checks it: each tensor's data lies inside the file, tensors do
 * not overlap, every string and array lies inside the file. If the file is also a loadable
 * model, one row of every matrix is dequantized and the vocabulary is exercised.
 * fuzz-max-len: 65536
 *
 * Built with -DUHLM_FUZZ_SEEDGEN, it writes seeds with the library's own writer: tiny llama
 * models in f32, f16 norms, q8_0 and q4_0, and a file with a key of every value type (named
 * without .gguf, which .gitignore keeps out of the repository). */
#include "fuzz_common.h"
#include "model/format/gguf.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "model/kernels/quant.h"

#ifndef UHLM_FUZZ_SEEDGEN

static void inside(const void *p, uint64_t n, const uint8_t *base, uint64_t size, const char *what) {
    if (n == 0) return;
    const uint8_t *q = p;
    fuzz_require(q >= base && q <= base + size && n <= (uint64_t)(base + size - q), what);
}

static void check_reader(const char *path, const uint8_t *data, size_t size) {
    uhlm_error err;
    uhlm_gguf *g = uhlm_gguf_open(path, &err);
    if (!g) {
        fuzz_require(strstr(err.msg, path) != NULL, "error message without the path");
        return;
    }
    /* the mapping holds the same bytes as data; check positions against the mapping's base,
     * found through the first descriptor that points into it */
    const uint8_t *base = NULL;
    uint64_t nt = uhlm_gguf_n_tensors(g), nkv = uhlm_gguf_n_kv(g);
    if (nkv > 0) base = (const uint8_t *)uhlm_gguf_kv_at(g, 0)->key.s - 24 - 8;
    fuzz_require(nkv == 0 || memcmp(base, data, 24) == 0, "key 0 is not where the header says");
    unsigned sum = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        const uhlm_gguf_kv *kv = uhlm_gguf_kv_at(g, i);
        inside(kv->key.s, kv->key.len, base, size, "key outside the file");
        if (kv->type == UHLM_GGUF_STRING) inside(kv->v.str.s, kv->v.str.len, base, size, "string");
        if (kv->type == UHLM_GGUF_ARRAY && kv->arr_type == UHLM_GGUF_STRING)
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                inside(kv->strs[j].s, kv->strs[j].len, base, size, "array string");
                for (uint64_t c = 0; c < kv->strs[j].len; c++) sum += (unsigned char)kv->strs[j].s[c];
            }
    }
    for (uint64_t i = 0; i < nt; i++) {
        const uhlm_gguf_tensor *t = uhlm_gguf_tensor_at(g, i);
        fuzz_require(t->nbytes > 0, "empty tensor");
        if (base) inside(t->data, t->nbytes, base, size, "tensor data outside the file");
        const uint8_t *d = t->data;
        for (uint64_t j = 0; j < t->nbytes; j += 61) sum += d[j];
        sum += d[t->nbytes - 1];
        char name[80];
        size_t nl = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
        memcpy(name, t->name.s, nl);
        name[nl] = '\0';
        if (strlen(name) == nl) fuzz_require(uhlm_gguf_find_tensor(g, name) != NULL, "lookup");
        /* regions are disjoint: each one ends before the next begins */
        if (i > 0) {
            const uhlm_gguf_tensor *p = uhlm_gguf_tensor_at(g, i - 1);
            fuzz_require(p->offset + p->nbytes <= t->offset, "tensors overlap");
        }
    }
    (void)sum;
    uhlm_gguf_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_as_file(data, size);
    check_reader(path, data, size);
    uhlm_error err;
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    if (!m) return 0;
    const uhlm_config *c = uhlm_model_config(m);
    float *row = malloc(sizeof(float) * (size_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim));
    fuzz_require(row != NULL, "out of memory");
    uhlm_tensor_row(&m->w.tok_embd, m->w.tok_embd.rows - 1, row);
    uhlm_tensor_row(&m->w.output, 0, row);
    for (int l = 0; l < c->n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (int k = 0; k < 7; k++) uhlm_tensor_row(ts[k], ts[k]->rows - 1, row);
    }
    free(row);
    if (uhlm_model_tokenizer(m)) fuzz_exercise_tokenizer(uhlm_model_tokenizer(m), "Hello world, once upon a time", 29);
    uhlm_model_free(m);
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN */

/* A llama model of dim D (hidden 2D, 1 layer, 2 heads, 1 kv head, vocab 5) with matrices of
 * type mt and norms of type nt. */
static int write_model(const char *path, int D, uhlm_type mt, uhlm_type nt, int with_output) {
    uhlm_error err;
    uhlm_gguf_writer *w = uhlm_gguf_writer_new(&err);
    if (!w) return -1;
    int H = 2 * D, KV = D / 2;
    uhlm_gguf_set_str(w, "general.architecture", "llama");
    uhlm_gguf_set_str(w, "general.name", "fuzz-seed");
    uhlm_gguf_set_u32(w, "llama.context_length", 16);
    uhlm_gguf_set_u32(w, "llama.embedding_length", (uint32_t)D);
    uhlm_gguf_set_u32(w, "llama.block_count", 1);
    uhlm_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)H);
    uhlm_gguf_set_u32(w, "llama.attention.head_count", 2);
    uhlm_gguf_set_u32(w, "llama.attention.head_count_kv", 1);
    uhlm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    uhlm_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f);
    const char *toks[5] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81hi", "a"};
    size_t lens[5] = {5, 3, 4, 5, 1};
    float sc[5] = {0, 0, 0, -1, -2};
    int32_t ty[5] = {2, 3, 3, 1, 1};
    uhlm_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    uhlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 5);
    uhlm_gguf_set_arr_f32(w, "tokenizer.ggml.scores", sc, 5);
    uhlm_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", ty, 5);
    uhlm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    static float fbuf[4096];
    static uint8_t qbuf[4096 * 4];
    for (int i = 0; i < 4096; i++) fbuf[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    struct {
        const char *name;
        int ne0, ne1;
    } ts[12] = {{"token_embd.weight", D, 5},       {"output_norm.weight", D, 0},
                {"output.weight", D, 5},           {"blk.0.attn_norm.weight", D, 0},
                {"blk.0.ffn_norm.weight", D, 0},   {"blk.0.attn_q.weight", D, D},
                {"blk.0.attn_k.weight", D, KV},    {"blk.0.attn_v.weight", D, KV},
                {"blk.0.attn_output.weight", D, D}, {"blk.0.ffn_gate.weight", D, H},
                {"blk.0.ffn_down.weight", H, D},   {"blk.0.ffn_up.weight", D, H}};
    for (int i = 0; i < 12; i++) {
        if (i == 2 && !with_output) continue;
        int is_norm = ts[i].ne1 == 0;
        uhlm_type t = is_norm ? nt : mt;
        uint64_t ne[2] = {(uint64_t)ts[i].ne0, (uint64_t)ts[i].ne1};
        uint64_t n = (uint64_t)ts[i].ne0 * (uint64_t)(is_norm ? 1 : ts[i].ne1);
        const void *data = fbuf;
        uint64_t nb = n * 4;
        if (t == UHLM_TYPE_F16) nb = n * 2;
        if (t == UHLM_TYPE_Q8_0 || t == UHLM_TYPE_Q4_0) {
            uhlm_quantize_row(t, fbuf, qbuf, (int64_t)n);
            data = qbuf;
            nb = n / 32 * (t == UHLM_TYPE_Q8_0 ? 34 : 18);
        }
        if (t == UHLM_TYPE_F16) {
            uint16_t *h = (uint16_t *)qbuf;
            for (uint64_t j = 0; j < n; j++) h[j] = uhlm_f32_to_f16(fbuf[j]);
            data = qbuf;
        }
        uhlm_gguf_add_tensor(w, ts[i].name, t, is_norm ? 1 : 2, ne, data, nb);
    }
    int rc = uhlm_gguf_write(w, path, &err);
    if (rc != 0) fprintf(stderr, "%s: %s\n", path, err.msg);
    uhlm_gguf_writer_free(w);
    return rc;
}

static int write_kv_file(const char *path) {
    uhlm_error err;
    uhlm_gguf_writer *w = uhlm_gguf_writer_new(&err);
    if (!w) return -1;
    uhlm_gguf_set_u32(w, "general.alignment", 16);
    uhlm_gguf_set_i32(w, "i32", -7);
    uhlm_gguf_set_f32(w, "f32", 1.5f);
    uhlm_gguf_set_bool(w, "bool", 1);
    uhlm_gguf_set_str(w, "str", "text");
    float f[4] = {1, 2, 3, 4};
    int32_t i[2] = {4, -5};
    const char *s[2] = {"a", "bc"};
    size_t l[2] = {1, 2};
    uhlm_gguf_set_arr_f32(w, "arr.f32", f, 3);
    uhlm_gguf_set_arr_i32(w, "arr.i32", i, 2);
    uhlm_gguf_set_arr_str(w, "arr.str", s, l, 2);
    uint64_t ne1[1] = {4}, ne2[2] = {2, 2};
    uhlm_gguf_add_tensor(w, "a", UHLM_TYPE_F32, 1, ne1, f, 16);
    uhlm_gguf_add_tensor(w, "b", UHLM_TYPE_F32, 2, ne2, f, 16);
    int rc = uhlm_gguf_write(w, path, &err);
    if (rc != 0) fprintf(stderr, "%s: %s\n", path, err.msg);
    uhlm_gguf_writer_free(w);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char p[1024];
    int rc = 0;
    snprintf(p, sizeof p, "%s/model-f32", argv[1]);
    rc |= write_model(p, 8, UHLM_TYPE_F32, UHLM_TYPE_F32, 0);
    snprintf(p, sizeof p, "%s/model-f32-output", argv[1]);
    rc |= write_model(p, 8, UHLM_TYPE_F32, UHLM_TYPE_F32, 1);
    snprintf(p, sizeof p, "%s/model-f16", argv[1]);
    rc |= write_model(p, 8, UHLM_TYPE_F16, UHLM_TYPE_F32, 0);
    snprintf(p, sizeof p, "%s/model-q4_0", argv[1]);
    rc |= write_model(p, 32, UHLM_TYPE_Q4_0, UHLM_TYPE_F32, 0);
    snprintf(p, sizeof p, "%s/model-q8_0", argv[1]);
    rc |= write_model(p, 32, UHLM_TYPE_Q8_0, UHLM_TYPE_F32, 0);
    snprintf(p, sizeof p, "%s/kv-types", argv[1]);
    rc |= write_kv_file(p);
    return rc ? 1 : 0;
}

#endif
