/* gguf_llama.c: GGUF `llama` and `qwen2` files <-> uhlm_model (load; save writes `llama`).
 *
 * Both architectures are the same transformer here; keys live under "<arch>." and what
 * differs is data: qwen2 has q/k/v biases (blk.N.attn_{q,k,v}.bias, optional for either, as
 * in llama.cpp) and NEOX RoPE (llama.cpp's llama_model_rope_type: llama = NORM, qwen2 = NEOX).
 * Anything either family may carry that the forward pass does not compute (MoE, fused qkv,
 * other biases, YaRN, sliding windows, partial rotary) is refused by name.
 *
 * Key and tensor names are llama.cpp's (llama-arch.cpp, convert_hf_to_gguf.py), so files we
 * write load in llama.cpp and files llama.cpp's converters write load here:
 *   token_embd.weight [dim, vocab], output_norm.weight [dim], output.weight [dim, vocab]
 *   (absent: tied to token_embd), blk.N.{attn_norm, ffn_norm}.weight [dim],
 *   blk.N.attn_q.weight [dim, q_dim], blk.N.attn_output.weight [q_dim, dim],
 *   blk.N.attn_{k,v}.weight [dim, kv_dim] (q_dim = heads * head_dim, usually dim),
 *   blk.N.ffn_{gate,up}.weight [dim, hidden], blk.N.ffn_down.weight [hidden, dim].
 * GGUF lists ne[0] (the row length, i.e. the input dimension) first.
 *
 * Q and K: llama.cpp's `llama` graph applies RoPE to adjacent pairs (rope type NORM), which is
 * the layout of Meta's checkpoints and therefore of llama2.c's; only Hugging Face weights need
 * the permutation that convert_hf_to_gguf.py applies. Our matrices are written as they are.
 *
 * The vocabulary travels in tokenizer.ggml.* with U+2581 for spaces; in memory the tokenizer
 * stores ' ' (tokenizer.h), so pieces are converted on the way out and, by the tokenizer, on
 * the way in. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/format/gguf.h"
#include "model/model_internal.h"

/* Marks random-weight models (uhlm convert --random-shape) so that nothing mistakes them for
 * a real model: benchmarks may use them, quality evaluations must not. */
#define KEY_SYNTHETIC "uhlm.synthetic"
/* Names of matrices that could not take the requested block type (row length not a multiple
 * of 32) and were kept in F32. */
#define KEY_FALLBACK "uhlm.f32_fallback"
/* int32 array: the draft vocabulary of a classifier that scores only these tokens (see
 * uhlm_weights.out_ids); output.weight then has one row per listed token */
#define KEY_OUTPUT_IDS "uhlm.output_token_ids"
/* The same for the K-quant types, whose fallback is a smaller block type (uhlm_type_fallback);
 * each listed tensor's own GGUF type says which. */
#define KEY_FALLBACK_K "uhlm.type_fallback"

/* ------------------------------------------------------------------ load */

static int get_dim(const uhlm_gguf *g, const char *key, int required, int64_t def, int64_t lo,
                   int64_t hi, int *out, uhlm_error *err) {
    int64_t v = def;
    if (uhlm_gguf_find_kv(g, key) || required)
        if (uhlm_gguf_get_int(g, key, &v, err) != 0) return -1;
    if (v < lo || v > hi)
        return uhlm_set_error(err, "%s: %s = %lld is out of range [%lld, %lld]", uhlm_gguf_path(g),
                              key, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int get_pos_float(const uhlm_gguf *g, const char *key, double def, double hi, float *out,
                         uhlm_error *err) {
    double v = def;
    if (uhlm_gguf_find_kv(g, key) && uhlm_gguf_get_float(g, key, &v, err) != 0) return -1;
    if (!isfinite(v) || v <= 0 || v > hi)
        return uhlm_set_error(err, "%s: %s = %g is out of range (0, %g]", uhlm_gguf_path(g), key, v,
                              hi);
    *out = (float)v;
    return 0;
}

static void shape_str(const uhlm_gguf_tensor *t, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "[%llu", (unsigned long long)t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims && n > 0 && (size_t)n < cap; d++)
        n += snprintf(buf + n, cap - (size_t)n, ", %llu", (unsigned long long)t->ne[d]);
    if (n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, "]");
}

/* The tensor must exist with ne = [ne0, ne1] (ne1 = 1: a vector); its data must be aligned for
 * the element accesses the kernels make (GGUF allows alignments down to 1). */
static const uhlm_gguf_tensor *need_tensor(const uhlm_gguf *g, const char *name, uint64_t ne0,
                                           uint64_t ne1, uhlm_error *err) {
    const char *path = uhlm_gguf_path(g);
    const uhlm_gguf_tensor *t = uhlm_gguf_find_tensor(g, name);
    if (!t) {
        uhlm_set_error(err, "%s: missing tensor '%s'", path, name);
        return NULL;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        char s[128];
        shape_str(t, s, sizeof s);
        if (ne1 == 1)
            uhlm_set_error(err, "%s: tensor '%s' has shape %s, expected [%llu]", path, name, s,
                           (unsigned long long)ne0);
        else
            uhlm_set_error(err,
                           "%s: tensor '%s' has shape %s, expected [%llu, %llu] (ne[0] = input "
                           "dim, ne[1] = output dim)",
                           path, name, s, (unsigned long long)ne0, (unsigned long long)ne1);
        return NULL;
    }
    uintptr_t need = t->type == UHLM_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)t->data % need != 0) {
        uhlm_set_error(err, "%s: tensor '%s' data is not %u-byte aligned (file alignment too small)",
                       path, name, (unsigned)need);
        return NULL;
    }
    return t;
}

static int load_mat(const uhlm_gguf *g, const char *name, int rows, int cols, uhlm_tensor *out,
                    uhlm_error *err) {
    const uhlm_gguf_tensor *t = need_tensor(g, name, (uint64_t)cols, (uint64_t)rows, err);
    if (!t) return -1;
    memset(out, 0, sizeof *out);
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    return 0;
}

static int load_norm(const uhlm_gguf *g, const char *name, int dim, const float **out,
                     uhlm_error *err) {
    const uhlm_gguf_tensor *t = need_tensor(g, name, (uint64_t)dim, 1, err);
    if (!t) return -1;
    if (t->type != UHLM_TYPE_F32)
        return uhlm_set_error(err, "%s: norm tensor '%s' has type %s, expected f32",
                              uhlm_gguf_path(g), name, uhlm_type_name(t->type));
    *out = t->data;
    return 0;
}

/* An optional F32 vector: *out stays NULL when the file does not have it. */
static int load_bias(const uhlm_gguf *g, const char *name, int n, const float **out,
                     uhlm_error *err) {
    *out = NULL;
    if (!uhlm_gguf_find_tensor(g, name)) return 0;
    return load_norm(g, name, n, out, err);
}

/* Tensors llama.cpp's graphs for these architectures would use but this engine does not:
 * refusing them beats silently computing something else. */
static int refuse_extra_tensors(const uhlm_gguf *g, int n_layers, uhlm_error *err) {
    static const char *const per_layer[] = {"attn_qkv.weight", "attn_output.bias",
                                            "ffn_gate.bias",   "ffn_up.bias",
                                            "ffn_down.bias",   "ffn_gate_inp.weight",
                                            "attn_q_norm.weight", "attn_k_norm.weight"};
    char name[96];
    if (uhlm_gguf_find_tensor(g, "output.bias"))
        return uhlm_set_error(err, "%s: tensor 'output.bias' is not supported", uhlm_gguf_path(g));
    for (int l = 0; l < n_layers; l++)
        for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++) {
            snprintf(name, sizeof name, "blk.%d.%s", l, per_layer[i]);
            if (uhlm_gguf_find_tensor(g, name))
                return uhlm_set_error(err, "%s: tensor '%s' is not supported", uhlm_gguf_path(g),
                                      name);
        }
    return 0;
}

static int str_is(uhlm_gguf_str s, const char *v) {
    size_t n = strlen(v);
    return s.len == n && memcmp(s.s, v, n) == 0;
}

static int str_contains(uhlm_gguf_str s, const char *v) {
    size_t n = strlen(v);
    for (uint64_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.s + i, v, n) == 0) return 1;
    return 0;
}

static int check_special_id(const uhlm_gguf *g, const char *key, int64_t want, uhlm_error *err) {
    if (!uhlm_gguf_find_kv(g, key)) return 0;
    int64_t v;
    if (uhlm_gguf_get_int(g, key, &v, err) != 0) return -1;
    if (v != want)
        return uhlm_set_error(err, "%s: %s is %lld; only %lld is supported (Llama vocabulary)",
                              uhlm_gguf_path(g), key, (long long)v, (long long)want);
    return 0;
}

/* Printable, bounded copy of a string value for error messages. */
static void show_str(uhlm_gguf_str v, char *buf, size_t cap) {
    size_t n = v.len < cap - 1 ? (size_t)v.len : cap - 1;
    memcpy(buf, v.s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f) buf[i] = '?';
}

/* Optional token id key: -1 when absent. */
static int get_opt_id(const uhlm_gguf *g, const char *key, int *out, uhlm_error *err) {
    *out = -1;
    if (!uhlm_gguf_find_kv(g, key)) return 0;
    int64_t v;
    if (uhlm_gguf_get_int(g, key, &v, err) != 0) return -1;
    if (v < 0 || v > INT32_MAX)
        return uhlm_set_error(err, "%s: %s = %lld is not a token id", uhlm_gguf_path(g), key,
                              (long long)v);
    *out = (int)v;
    return 0;
}

/* Optional bool key: -1 when absent. */
static int get_opt_bool(const uhlm_gguf *g, const char *key, int *out, uhlm_error *err) {
    *out = -1;
    const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != UHLM_GGUF_BOOL)
        return uhlm_set_error(err, "%s: %s is not a bool", uhlm_gguf_path(g), key);
    *out = kv->v.u != 0;
    return 0;
}

/* The byte-level BPE vocabulary (tokenizer.ggml.model = "gpt2"). */
static int load_bpe(const uhlm_gguf *g, const uhlm_gguf_kv *toks, uhlm_tokenizer **out,
                    uhlm_error *err) {
    const char *path = uhlm_gguf_path(g);
    uint64_t n = toks->arr_n;
    const uhlm_gguf_kv *mg = uhlm_gguf_find_kv(g, "tokenizer.ggml.merges");
    const uhlm_gguf_kv *ty = uhlm_gguf_find_kv(g, "tokenizer.ggml.token_type");
    const uhlm_gguf_kv *pre = uhlm_gguf_find_kv(g, "tokenizer.ggml.pre");
    if (!mg)
        return uhlm_set_error(err, "%s: tokenizer.ggml.merges is missing (required by the gpt2 "
                              "tokenizer model)", path);
    if (mg->type != UHLM_GGUF_ARRAY || mg->arr_type != UHLM_GGUF_STRING || mg->arr_n > INT32_MAX)
        return uhlm_set_error(err, "%s: tokenizer.ggml.merges is not an array of strings", path);
    if (ty && (ty->type != UHLM_GGUF_ARRAY ||
               (ty->arr_type != UHLM_GGUF_INT32 && ty->arr_type != UHLM_GGUF_UINT32) ||
               ty->arr_n != n))
        return uhlm_set_error(err, "%s: tokenizer.ggml.token_type must be %llu int32 values", path,
                              (unsigned long long)n);
    if (pre && pre->type != UHLM_GGUF_STRING)
        return uhlm_set_error(err, "%s: tokenizer.ggml.pre is not a string", path);
    uhlm_bpe_vocab v = {0};
    char prebuf[64] = "";
    if (pre) {
        if (pre->v.str.len >= sizeof prebuf || memchr(pre->v.str.s, 0, pre->v.str.len)) {
            char buf[64];
            show_str(pre->v.str, buf, sizeof buf);
            return uhlm_set_error(err, "%s: tokenizer.ggml.pre = '%s' is not a supported "
                                  "pre-tokenizer", path, buf);
        }
        memcpy(prebuf, pre->v.str.s, pre->v.str.len);
        prebuf[pre->v.str.len] = '\0';
    }
    v.pre = prebuf;
    if (get_opt_id(g, "tokenizer.ggml.bos_token_id", &v.bos, err) ||
        get_opt_id(g, "tokenizer.ggml.eos_token_id", &v.eos, err) ||
        get_opt_id(g, "tokenizer.ggml.unknown_token_id", &v.unk, err) ||
        get_opt_id(g, "tokenizer.ggml.padding_token_id", &v.pad, err) ||
        get_opt_bool(g, "tokenizer.ggml.add_bos_token", &v.add_bos, err) ||
        get_opt_bool(g, "tokenizer.ggml.add_eos_token", &v.add_eos, err))
        return -1;
    static const char *const eog_keys[] = {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
                                           "tokenizer.ggml.fim_pad_token_id",
                                           "tokenizer.ggml.fim_rep_token_id",
                                           "tokenizer.ggml.fim_sep_token_id"};
    int eog[5], n_eog = 0;
    for (int k = 0; k < 5; k++) {
        int id;
        if (get_opt_id(g, eog_keys[k], &id, err) != 0) return -1;
        if (id >= 0) eog[n_eog++] = id;
    }
    v.eog_ids = eog;
    v.n_eog_ids = n_eog;
    uint64_t nm = mg->arr_n;
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    const char **merges = malloc((size_t)(nm ? nm : 1) * sizeof *merges);
    size_t *mlens = malloc((size_t)(nm ? nm : 1) * sizeof *mlens);
    int32_t *types = ty ? malloc((size_t)n * sizeof *types) : NULL;
    int rc = -1;
    if (!pieces || !lens || !merges || !mlens || (ty && !types)) {
        uhlm_set_error(err, "%s: out of memory reading the vocabulary", path);
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        pieces[i] = toks->strs[i].s;
        lens[i] = (size_t)toks->strs[i].len;
    }
    for (uint64_t i = 0; i < nm; i++) {
        merges[i] = mg->strs[i].s;
        mlens[i] = (size_t)mg->strs[i].len;
    }
    if (ty) memcpy(types, ty->data, (size_t)n * 4); /* only byte-aligned in the mapping */
    v.n_tokens = (int)n;
    v.tokens = pieces;
    v.token_lens = lens;
    v.types = types;
    v.n_merges = (int)nm;
    v.merges = merges;
    v.merge_lens = mlens;
    *out = uhlm_tokenizer_from_bpe(&v, path, err);
    rc = *out ? 0 : -1;
done:
    free(pieces);
    free(lens);
    free(merges);
    free(mlens);
    free(types);
    return rc;
}

/* Builds the embedded vocabulary; *out stays NULL when the file has none. */
static int load_tokenizer(const uhlm_gguf *g, const uhlm_gguf_kv *toks, uhlm_tokenizer **out,
                          uhlm_error *err) {
    const char *path = uhlm_gguf_path(g);
    *out = NULL;
    if (!toks) return 0;
    const uhlm_gguf_kv *model = uhlm_gguf_find_kv(g, "tokenizer.ggml.model");
    if (model) {
        if (model->type != UHLM_GGUF_STRING)
            return uhlm_set_error(err, "%s: tokenizer.ggml.model is not a string", path);
        if (str_is(model->v.str, "gpt2")) return load_bpe(g, toks, out, err);
        if (!str_is(model->v.str, "llama")) {
            char buf[64];
            show_str(model->v.str, buf, sizeof buf);
            return uhlm_set_error(err,
                                  "%s: tokenizer.ggml.model = '%s' is not supported (only 'llama', "
                                  "SentencePiece BPE, and 'gpt2', byte-level BPE)",
                                  path, buf);
        }
    }
    if (check_special_id(g, "tokenizer.ggml.bos_token_id", UHLM_TOKEN_BOS, err) != 0 ||
        check_special_id(g, "tokenizer.ggml.eos_token_id", UHLM_TOKEN_EOS, err) != 0 ||
        check_special_id(g, "tokenizer.ggml.unknown_token_id", UHLM_TOKEN_UNK, err) != 0)
        return -1;
    uint64_t n = toks->arr_n; /* bounded by the caller (vocab range check) */
    const uhlm_gguf_kv *sc = uhlm_gguf_find_kv(g, "tokenizer.ggml.scores");
    const uhlm_gguf_kv *ty = uhlm_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (sc && (sc->type != UHLM_GGUF_ARRAY || sc->arr_type != UHLM_GGUF_FLOAT32 || sc->arr_n != n))
        return uhlm_set_error(err, "%s: tokenizer.ggml.scores must be %llu float32 values", path,
                              (unsigned long long)n);
    if (ty && (ty->type != UHLM_GGUF_ARRAY ||
               (ty->arr_type != UHLM_GGUF_INT32 && ty->arr_type != UHLM_GGUF_UINT32) ||
               ty->arr_n != n))
        return uhlm_set_error(err, "%s: tokenizer.ggml.token_type must be %llu int32 values", path,
                              (unsigned long long)n);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = ty ? malloc((size_t)n * sizeof *types) : NULL;
    int rc = -1;
    if (!pieces || !lens || !scores || (ty && !types)) {
        uhlm_set_error(err, "%s: out of memory reading the vocabulary", path);
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        pieces[i] = toks->strs[i].s;
        lens[i] = (size_t)toks->strs[i].len;
    }
    /* array data in the mapping is only byte-aligned: copy rather than cast */
    if (sc) memcpy(scores, sc->data, (size_t)n * 4);
    if (ty) memcpy(types, ty->data, (size_t)n * 4);
    *out = uhlm_tokenizer_from_arrays((int)n, pieces, lens, scores, types, 1, path, err);
    rc = *out ? 0 : -1;
done:
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return rc;
}

/* A GGUF string as a printable C string for messages (truncated, controls as '?'). */
static void printable(uhlm_gguf_str v, char *buf, size_t cap) {
    size_t n = v.len < cap - 1 ? (size_t)v.len : cap - 1;
    memcpy(buf, v.s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f) buf[i] = '?';
}

/* The per-architecture part of the hyperparameters: keys are "<arch>.<name>". */
typedef struct {
    const uhlm_gguf *g;
    const char *arch;
    char key[128];
} akey;

static const char *K(akey *a, const char *name) {
    snprintf(a->key, sizeof a->key, "%s.%s", a->arch, name);
    return a->key;
}

/* RoPE scaling as llama.cpp reads it: rope.scaling.type defaults to linear, the factor comes
 * from rope.scaling.factor or the older rope.scale_linear; 0 or absent means none. Only linear
 * scaling (and none) is implemented: YaRN, LongRoPE etc. are refused by name. */
static int load_rope_scaling(akey *a, uhlm_config *p, uhlm_error *err) {
    const uhlm_gguf *g = a->g;
    const char *path = uhlm_gguf_path(g);
    const uhlm_gguf_kv *ty = uhlm_gguf_find_kv(g, K(a, "rope.scaling.type"));
    if (ty) {
        if (ty->type != UHLM_GGUF_STRING)
            return uhlm_set_error(err, "%s: %s is not a string", path, a->key);
        if (!str_is(ty->v.str, "none") && !str_is(ty->v.str, "linear")) {
            char buf[64];
            printable(ty->v.str, buf, sizeof buf);
            return uhlm_set_error(err,
                                  "%s: RoPE scaling type '%s' (%s) is not supported (only none "
                                  "and linear)",
                                  path, buf, a->key);
        }
    }
    double factor = 0.0;
    const char *fk = K(a, "rope.scaling.factor");
    if (!uhlm_gguf_find_kv(g, fk)) fk = K(a, "rope.scale_linear");
    if (uhlm_gguf_find_kv(g, fk) && uhlm_gguf_get_float(g, fk, &factor, err) != 0) return -1;
    if (!isfinite(factor) || factor < 0 || factor > 1e6)
        return uhlm_set_error(err, "%s: %s = %g is out of range [0, 1e6]", path, fk, factor);
    p->rope_freq_scale = factor == 0.0 ? 1.0f : (float)(1.0 / factor);
    /* llama.cpp scales cos and sin by this (YaRN's mscale); only the neutral value is done */
    double attn = 1.0;
    const char *ak = K(a, "rope.scaling.attn_factor");
    if (uhlm_gguf_find_kv(g, ak) && uhlm_gguf_get_float(g, ak, &attn, err) != 0) return -1;
    if (attn != 1.0)
        return uhlm_set_error(err, "%s: %s = %g is not supported (only 1)", path, ak, attn);
    return 0;
}

uhlm_tokenizer *uhlm_tokenizer_load_gguf(const char *path, uhlm_error *err) {
    if (!path) {
        uhlm_set_error(err, "tokenizer: no file name given");
        return NULL;
    }
    uhlm_gguf *g = uhlm_gguf_open(path, err);
    if (!g) return NULL;
    uhlm_tokenizer *t = NULL;
    const uhlm_gguf_kv *toks = uhlm_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!toks)
        uhlm_set_error(err, "%s: no vocabulary (tokenizer.ggml.tokens is missing)", path);
    else if (toks->type != UHLM_GGUF_ARRAY || toks->arr_type != UHLM_GGUF_STRING)
        uhlm_set_error(err, "%s: tokenizer.ggml.tokens is not an array of strings", path);
    else if (toks->arr_n < 1 || toks->arr_n > (1u << 22))
        uhlm_set_error(err, "%s: tokenizer.ggml.tokens has %llu entries (1 to %d allowed)", path,
                       (unsigned long long)toks->arr_n, 1 << 22);
    else
        load_tokenizer(g, toks, &t, err);
    uhlm_gguf_close(g);
    return t;
}

/* The architecture (and with it the RoPE type). */
static int read_arch(const uhlm_gguf *g, const char *path, uhlm_config *p, uhlm_error *err) {
    uhlm_gguf_str arch;
    if (uhlm_gguf_get_str(g, "general.architecture", &arch, err) != 0) return -1;
    memset(p, 0, sizeof *p);
    if (str_is(arch, "llama")) {
        p->arch = UHLM_ARCH_LLAMA;
        p->rope_type = UHLM_ROPE_NORM;
    } else if (str_is(arch, "qwen2")) {
        /* llama.cpp: LLM_ARCH_QWEN2 -> LLAMA_ROPE_TYPE_NEOX (llama_model_rope_type) */
        p->arch = UHLM_ARCH_QWEN2;
        p->rope_type = UHLM_ROPE_NEOX;
    } else {
        char buf[64];
        printable(arch, buf, sizeof buf);
        return uhlm_set_error(err, "%s: architecture '%s' is not supported (supported: %s)", path,
                              buf, UHLM_SUPPORTED_ARCHS);
    }
    return 0;
}

/* Features of these families that this engine does not implement are refused by name; RoPE
 * scaling, which it does implement in part, is read here too. */
static int refuse_unsupported(akey *a, const char *path, uhlm_config *p, uhlm_error *err) {
    const uhlm_gguf *g = a->g;
    int64_t experts = 0;
    if (uhlm_gguf_find_kv(g, K(a, "expert_count")) &&
        uhlm_gguf_get_int(g, a->key, &experts, err) != 0)
        return -1;
    if (experts > 0)
        return uhlm_set_error(err, "%s: mixture-of-experts models (%lld experts) are not supported",
                              path, (long long)experts);
    if (load_rope_scaling(a, p, err) != 0) return -1;
    if (uhlm_gguf_find_tensor(g, "rope_freqs.weight"))
        return uhlm_set_error(err, "%s: per-dimension RoPE frequencies (rope_freqs.weight, Llama 3.1) "
                              "are not supported", path);
    if (uhlm_gguf_find_kv(g, K(a, "attention.sliding_window")))
        return uhlm_set_error(err, "%s: sliding-window attention (%s) is not supported", path,
                              a->key);
    return 0;
}

/* Context, widths, layers, heads and their dimensions, the norm epsilon and the RoPE base. */
static int read_dims(akey *a, const char *path, uhlm_config *p, uhlm_error *err) {
    const uhlm_gguf *g = a->g;
    if (get_dim(g, K(a, "context_length"), 1, 0, 1, 1 << 22, &p->seq_len, err) ||
        get_dim(g, K(a, "embedding_length"), 1, 0, 1, 65536, &p->dim, err) ||
        get_dim(g, K(a, "block_count"), 1, 0, 1, 1024, &p->n_layers, err) ||
        get_dim(g, K(a, "feed_forward_length"), 1, 0, 1, 1 << 20, &p->hidden_dim, err) ||
        get_dim(g, K(a, "attention.head_count"), 1, 0, 1, 1024, &p->n_heads, err) ||
        get_dim(g, K(a, "attention.head_count_kv"), 0, p->n_heads, 1, p->n_heads,
                &p->n_kv_heads, err))
        return -1;
    if (p->n_heads % p->n_kv_heads != 0)
        return uhlm_set_error(err,
                              "%s: %d heads are not a multiple of %d key/value heads (grouped-"
                              "query attention needs whole groups)",
                              path, p->n_heads, p->n_kv_heads);
    /* head_dim = dim / heads unless attention.key_length says otherwise */
    int def_hd = p->dim % p->n_heads == 0 ? p->dim / p->n_heads : 0;
    const int has_kl = uhlm_gguf_find_kv(g, K(a, "attention.key_length")) != NULL;
    if (has_kl) {
        if (get_dim(g, a->key, 1, 0, 1, 65536, &p->head_dim, err)) return -1;
    } else if (def_hd == 0) {
        return uhlm_set_error(err, "%s: dim %d is not a multiple of the %d heads", path, p->dim,
                              p->n_heads);
    } else {
        p->head_dim = def_hd;
    }
    int vl = p->head_dim;
    if (get_dim(g, K(a, "attention.value_length"), 0, p->head_dim, 1, 65536, &vl, err)) return -1;
    if (vl != p->head_dim)
        return uhlm_set_error(err, "%s: value length %d differs from key length %d (not supported)",
                              path, vl, p->head_dim);
    if (p->head_dim % 2 != 0)
        return uhlm_set_error(err, "%s: head dimension %d is odd (RoPE needs pairs)", path,
                              p->head_dim);
    if ((int64_t)p->n_heads * p->head_dim > 65536)
        return uhlm_set_error(err, "%s: %d heads of %d are too wide", path, p->n_heads,
                              p->head_dim);
    int rot = p->head_dim;
    if (get_dim(g, K(a, "rope.dimension_count"), 0, p->head_dim, 1, 1 << 20, &rot, err)) return -1;
    if (rot != p->head_dim)
        return uhlm_set_error(err,
                              "%s: %s %d differs from the head dimension %d "
                              "(partial rotary embeddings are not supported)",
                              path, a->key, rot, p->head_dim);
    if (get_pos_float(g, K(a, "attention.layer_norm_rms_epsilon"), 1e-5, 1.0, &p->norm_eps, err) ||
        get_pos_float(g, K(a, "rope.freq_base"), 10000.0, 1e12, &p->rope_theta, err))
        return -1;
    return 0;
}

/* The vocabulary size: the embedded token list (*toks, NULL when absent) defines it;
 * <arch>.vocab_size must agree if both exist. */
static int read_vocab_size(akey *a, const char *path, uhlm_config *p, const uhlm_gguf_kv **toks_out,
                           uhlm_error *err) {
    const uhlm_gguf *g = a->g;
    const uhlm_gguf_kv *toks = uhlm_gguf_find_kv(g, "tokenizer.ggml.tokens");
    *toks_out = toks;
    if (toks && (toks->type != UHLM_GGUF_ARRAY || toks->arr_type != UHLM_GGUF_STRING))
        return uhlm_set_error(err, "%s: tokenizer.ggml.tokens is not an array of strings", path);
    int vs = 0;
    int has_vs = uhlm_gguf_find_kv(g, K(a, "vocab_size")) != NULL;
    if (has_vs && get_dim(g, a->key, 1, 0, 1, 1 << 22, &vs, err)) return -1;
    if (toks) {
        if (toks->arr_n < 1 || toks->arr_n > (1u << 22))
            return uhlm_set_error(err, "%s: tokenizer.ggml.tokens has %llu entries (1 to %d allowed)",
                                  path, (unsigned long long)toks->arr_n, 1 << 22);
        if (has_vs && (uint64_t)vs != toks->arr_n)
            return uhlm_set_error(err,
                                  "%s: %s.vocab_size %d disagrees with the %llu entries of "
                                  "tokenizer.ggml.tokens",
                                  path, a->arch, vs, (unsigned long long)toks->arr_n);
        vs = (int)toks->arr_n;
    } else if (!has_vs) {
        return uhlm_set_error(err, "%s: no vocabulary: neither tokenizer.ggml.tokens nor "
                              "%s.vocab_size is present", path, a->arch);
    }
    p->vocab_size = vs;
    return 0;
}

/* One transformer block's norms, matrices and optional q/k/v biases. */
static int load_layer(const uhlm_gguf *g, const uhlm_config *p, int l, uhlm_layer *L,
                      uhlm_error *err) {
    int kv_dim = p->n_kv_heads * p->head_dim, q_dim = p->n_heads * p->head_dim;
    char n[9][64];
    static const char *const suffix[9] = {"attn_norm", "ffn_norm", "attn_q",   "attn_k",  "attn_v",
                                          "attn_output", "ffn_gate", "ffn_down", "ffn_up"};
    for (int k = 0; k < 9; k++) snprintf(n[k], sizeof n[k], "blk.%d.%s.weight", l, suffix[k]);
    if (load_norm(g, n[0], p->dim, &L->attn_norm, err) ||
        load_norm(g, n[1], p->dim, &L->ffn_norm, err) ||
        load_mat(g, n[2], q_dim, p->dim, &L->wq, err) ||
        load_mat(g, n[3], kv_dim, p->dim, &L->wk, err) ||
        load_mat(g, n[4], kv_dim, p->dim, &L->wv, err) ||
        load_mat(g, n[5], p->dim, q_dim, &L->wo, err) ||
        load_mat(g, n[6], p->hidden_dim, p->dim, &L->w1, err) ||
        load_mat(g, n[7], p->dim, p->hidden_dim, &L->w2, err) ||
        load_mat(g, n[8], p->hidden_dim, p->dim, &L->w3, err))
        return -1;
    /* q/k/v biases: qwen2 has them; llama.cpp accepts them (optional) for llama too */
    char b[64];
    snprintf(b, sizeof b, "blk.%d.attn_q.bias", l);
    if (load_bias(g, b, q_dim, &L->bq, err)) return -1;
    snprintf(b, sizeof b, "blk.%d.attn_k.bias", l);
    if (load_bias(g, b, kv_dim, &L->bk, err)) return -1;
    snprintf(b, sizeof b, "blk.%d.attn_v.bias", l);
    if (load_bias(g, b, kv_dim, &L->bv, err)) return -1;
    return 0;
}

/* The draft vocabulary, when the file has one: 1..vocab_size token ids, strictly increasing
 * (so each is listed once and lookups can bisect). Copied, since array data in the KV section
 * is not aligned. */
static int read_output_ids(uhlm_model *m, const uhlm_gguf *g, const char *path, uhlm_error *err) {
    uhlm_weights *w = &m->w;
    const int vs = m->cfg.vocab_size;
    w->out_ids = NULL;
    w->n_out = vs;
    const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(g, KEY_OUTPUT_IDS);
    if (!kv) return 0;
    if (kv->type != UHLM_GGUF_ARRAY || kv->arr_type != UHLM_GGUF_INT32)
        return uhlm_set_error(err, "%s: %s must be an array of int32", path, KEY_OUTPUT_IDS);
    if (kv->arr_n < 1 || kv->arr_n > (uint64_t)vs)
        return uhlm_set_error(err, "%s: %s has %llu entries; it needs 1 to %d (the vocabulary)",
                              path, KEY_OUTPUT_IDS, (unsigned long long)kv->arr_n, vs);
    const int n = (int)kv->arr_n;
    w->out_ids = malloc((size_t)n * sizeof *w->out_ids);
    if (!w->out_ids) return uhlm_set_error(err, "%s: out of memory", path);
    const unsigned char *b = kv->data;
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                     (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        int32_t id = (int32_t)u;
        if (id < 0 || id >= vs)
            return uhlm_set_error(err, "%s: %s[%d] = %d is outside the vocabulary [0, %d)", path,
                                  KEY_OUTPUT_IDS, i, (int)id, vs);
        if (i > 0 && id <= w->out_ids[i - 1])
            return uhlm_set_error(err,
                                  "%s: %s must be strictly increasing: entry %d is %d after %d",
                                  path, KEY_OUTPUT_IDS, i, (int)id, (int)w->out_ids[i - 1]);
        w->out_ids[i] = id;
    }
    w->n_out = n;
    return 0;
}

/* The embedding, the output norm and classifier (tied to the embedding when output.weight is
 * absent; with a draft vocabulary, one row per listed token), and every layer. */
static int load_weights(uhlm_model *m, const uhlm_gguf *g, const char *path, uhlm_error *err) {
    uhlm_config *p = &m->cfg;
    const int vs = p->vocab_size;
    uhlm_weights *w = &m->w;
    const uhlm_gguf_tensor *te = uhlm_gguf_find_tensor(g, "token_embd.weight");
    if (te && te->ne[0] == (uint64_t)p->dim && te->ne[1] != (uint64_t)vs && te->ne[2] == 1)
        return uhlm_set_error(err,
                              "%s: token_embd.weight has %llu rows but the vocabulary has %d tokens",
                              path, (unsigned long long)te->ne[1], vs);
    if (load_mat(g, "token_embd.weight", vs, p->dim, &w->tok_embd, err) ||
        load_norm(g, "output_norm.weight", p->dim, &w->out_norm, err))
        return -1;
    if (read_output_ids(m, g, path, err) != 0) return -1;
    if (uhlm_gguf_find_tensor(g, "output.weight")) {
        if (load_mat(g, "output.weight", w->n_out, p->dim, &w->output, err)) return -1;
        p->shared_classifier = 0;
    } else if (w->out_ids) {
        return uhlm_set_error(err,
                              "%s: %s lists %d tokens but the file has no output.weight (a "
                              "classifier tied to the embedding scores every token)",
                              path, KEY_OUTPUT_IDS, w->n_out);
    } else {
        w->output = w->tok_embd;
        p->shared_classifier = 1;
    }
    w->layers = calloc((size_t)p->n_layers, sizeof *w->layers);
    if (!w->layers) return uhlm_set_error(err, "%s: out of memory", path);
    if (refuse_extra_tensors(g, p->n_layers, err) != 0) return -1;
    for (int l = 0; l < p->n_layers; l++)
        if (load_layer(g, p, l, &w->layers[l], err) != 0) return -1;
    m->wtype = w->layers[0].wq.type;
    return 0;
}

/* The chat template (pointing into the file's mapping) and whether the model is synthetic. */
static int read_extras(uhlm_model *m, const uhlm_gguf *g, const char *path, uhlm_error *err) {
    m->chat_template = NULL;
    m->chat_template_len = 0;
    const uhlm_gguf_kv *ct = uhlm_gguf_find_kv(g, "tokenizer.chat_template");
    if (ct) {
        if (ct->type != UHLM_GGUF_STRING)
            return uhlm_set_error(err, "%s: tokenizer.chat_template is not a string", path);
        m->chat_template = ct->v.str.s;
        m->chat_template_len = (size_t)ct->v.str.len;
    }

    m->synthetic = 0;
    const uhlm_gguf_kv *syn = uhlm_gguf_find_kv(g, KEY_SYNTHETIC);
    if (syn && syn->type == UHLM_GGUF_BOOL && syn->v.u) m->synthetic = 1;
    const uhlm_gguf_kv *name = uhlm_gguf_find_kv(g, "general.name");
    if (name && name->type == UHLM_GGUF_STRING && str_contains(name->v.str, "synthetic"))
        m->synthetic = 1;
    return 0;
}

static int load(uhlm_model *m, const uhlm_gguf *g, uhlm_error *err) {
    const char *path = m->path;
    uhlm_config *p = &m->cfg;
    if (read_arch(g, path, p, err) != 0) return -1;
    akey a = {g, uhlm_arch_name(p->arch), {0}};
    const uhlm_gguf_kv *toks = NULL;
    if (refuse_unsupported(&a, path, p, err) != 0 || read_dims(&a, path, p, err) != 0 ||
        read_vocab_size(&a, path, p, &toks, err) != 0 || load_weights(m, g, path, err) != 0 ||
        read_extras(m, g, path, err) != 0)
        return -1;
    return load_tokenizer(g, toks, &m->tok, err);
}

int uhlm_gguf_load_llama(uhlm_model *m, uhlm_error *err) {
    uhlm_gguf *g = uhlm_gguf_open_mode(m->path, m->load, err);
    if (!g) return -1;
    m->tok = NULL;
    m->w.layers = NULL;
    if (load(m, g, err) != 0) {
        /* leave nothing half-attached: the caller may free m with uhlm_model_free or not */
        free(m->w.layers);
        free(m->w.out_ids);
        memset(&m->w, 0, sizeof m->w);
        uhlm_tokenizer_free(m->tok);
        m->tok = NULL;
        uhlm_gguf_close(g);
        m->gguf = NULL;
        return -1;
    }
    m->gguf = g;
    m->format = UHLM_FORMAT_GGUF;
    return 0;
}

/* ------------------------------------------------------------------ save */

/* Buffers that must outlive uhlm_gguf_write (the writer references tensor data). */
typedef struct {
    void **p;
    size_t n, cap;
} owned;

static void *own(owned *o, size_t bytes) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        void **np = realloc(o->p, nc * sizeof *np);
        if (!np) return NULL;
        o->p = np;
        o->cap = nc;
    }
    void *b = malloc(bytes ? bytes : 1);
    if (b) o->p[o->n++] = b;
    return b;
}

static void owned_free(owned *o) {
    for (size_t i = 0; i < o->n; i++) free(o->p[i]);
    free(o->p);
}

typedef struct {
    uhlm_gguf_writer *w;
    owned buf;
    const char *path;
    uhlm_type want;
    const char **fallback; /* names kept in F32 */
    size_t n_fallback;
    float *row; /* one row of scratch, cols of the widest matrix */
} saver;

/* Adds matrix W as `name` in the requested type, converting row by row unless W already has
 * that type (then its bytes are written straight from the source mapping, no copy). */
static int save_mat(saver *s, const char *name, const uhlm_tensor *W, uhlm_error *err) {
    uhlm_type t = uhlm_type_fallback(s->want, W->cols);
    if (t != s->want) s->fallback[s->n_fallback++] = name;
    uint64_t ne[2] = {(uint64_t)W->cols, (uint64_t)W->rows};
    size_t row_bytes = uhlm_type_bytes(t, W->cols);
    if ((uint64_t)W->rows > SIZE_MAX / row_bytes)
        return uhlm_set_error(err, "%s: tensor '%s' is too large", s->path, name);
    size_t nbytes = row_bytes * (size_t)W->rows;
    const void *data = W->data;
    if (W->type != t) {
        uint8_t *dst = own(&s->buf, nbytes);
        if (!dst) return uhlm_set_error(err, "%s: out of memory converting '%s'", s->path, name);
        for (int64_t r = 0; r < W->rows; r++) {
            uhlm_tensor_row(W, r, s->row);
            uhlm_quantize_row(t, s->row, dst + (size_t)r * row_bytes, W->cols);
        }
        data = dst;
    }
    if (uhlm_gguf_add_tensor(s->w, name, t, 2, ne, data, nbytes) != 0)
        return uhlm_set_error(err, "%s: cannot add tensor '%s'", s->path, name);
    return 0;
}

static int save_norm(saver *s, const char *name, const float *v, int dim, uhlm_error *err) {
    uint64_t ne[1] = {(uint64_t)dim};
    if (uhlm_gguf_add_tensor(s->w, name, UHLM_TYPE_F32, 1, ne, v, (uint64_t)dim * 4) != 0)
        return uhlm_set_error(err, "%s: cannot add tensor '%s'", s->path, name);
    return 0;
}

/* general.name: the model file's base name without extension, marked when synthetic. */
static void model_name(const uhlm_model *m, char *buf, size_t cap) {
    const char *b = strrchr(m->path, '/');
    b = b ? b + 1 : m->path;
    size_t n = strlen(b);
    const char *dot = strrchr(b, '.');
    if (dot && dot != b && (!strcmp(dot, ".bin") || !strcmp(dot, ".gguf"))) n = (size_t)(dot - b);
    if (n == 0) {
        b = "model";
        n = 5;
    }
    const char *prefix = m->synthetic && !strstr(b, "synthetic") ? "synthetic-" : "";
    snprintf(buf, cap, "%s%.*s", prefix, (int)n, b);
}

static uint32_t ggml_ftype(uhlm_type t) {
    switch (t) {
    case UHLM_TYPE_F16: return 1;  /* LLAMA_FTYPE_MOSTLY_F16 */
    case UHLM_TYPE_Q4_0: return 2; /* LLAMA_FTYPE_MOSTLY_Q4_0 */
    case UHLM_TYPE_Q8_0: return 7; /* LLAMA_FTYPE_MOSTLY_Q8_0 */
    case UHLM_TYPE_Q4_1: return 3; /* LLAMA_FTYPE_MOSTLY_Q4_1 */
    case UHLM_TYPE_Q5_0: return 8; /* LLAMA_FTYPE_MOSTLY_Q5_0 */
    case UHLM_TYPE_Q5_1: return 9; /* LLAMA_FTYPE_MOSTLY_Q5_1 */
    /* K types: every matrix, token_embd and output included, takes the one type. That is
     * closest to llama.cpp's _S mixes, which still raise output.weight (and Q4_K_S a few
     * attn_v / ffn_down layers) a type higher; _M raises more of them. Honestly "_S". */
    case UHLM_TYPE_Q2_K: return 10; /* LLAMA_FTYPE_MOSTLY_Q2_K */
    case UHLM_TYPE_Q3_K: return 11; /* LLAMA_FTYPE_MOSTLY_Q3_K_S */
    case UHLM_TYPE_Q4_K: return 14; /* LLAMA_FTYPE_MOSTLY_Q4_K_S */
    case UHLM_TYPE_Q5_K: return 16; /* LLAMA_FTYPE_MOSTLY_Q5_K_S */
    case UHLM_TYPE_Q6_K: return 18; /* LLAMA_FTYPE_MOSTLY_Q6_K */
    default: return 0;             /* LLAMA_FTYPE_ALL_F32 */
    }
}

/* Byte-level BPE: the pieces, types and merges as they were read, so the vocabulary loads
 * back (here and in llama.cpp) with the same ids and the same fingerprint. */
static int put_bpe_vocab(uhlm_gguf_writer *w, const uhlm_tokenizer *tok, owned *buf,
                         const char *path, uhlm_error *err) {
    int n = uhlm_tokenizer_vocab_size(tok), nm = uhlm_tokenizer_n_merges(tok);
    const char **pieces = own(buf, (size_t)n * sizeof *pieces);
    size_t *lens = own(buf, (size_t)n * sizeof *lens);
    int32_t *types = own(buf, (size_t)n * sizeof *types);
    const char **merges = own(buf, (size_t)(nm ? nm : 1) * sizeof *merges);
    size_t *mlens = own(buf, (size_t)(nm ? nm : 1) * sizeof *mlens);
    if (!pieces || !lens || !types || !merges || !mlens)
        return uhlm_set_error(err, "%s: out of memory writing the vocabulary", path);
    for (int i = 0; i < n; i++) {
        pieces[i] = uhlm_tokenizer_piece(tok, i, &lens[i]);
        types[i] = uhlm_tokenizer_type(tok, i);
    }
    for (int i = 0; i < nm; i++) merges[i] = uhlm_tokenizer_merge(tok, i, &mlens[i]);
    int rc = 0;
    rc |= uhlm_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    rc |= uhlm_gguf_set_str(w, "tokenizer.ggml.pre", uhlm_tokenizer_pre(tok));
    rc |= uhlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", pieces, lens, (uint64_t)n);
    rc |= uhlm_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    rc |= uhlm_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, mlens, (uint64_t)nm);
    static const char *const keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                        "tokenizer.ggml.unknown_token_id",
                                        "tokenizer.ggml.padding_token_id"};
    int ids[4] = {uhlm_tokenizer_bos(tok), uhlm_tokenizer_eos(tok), uhlm_tokenizer_unk(tok),
                  uhlm_tokenizer_pad(tok)};
    for (int k = 0; k < 4; k++)
        if (ids[k] >= 0) rc |= uhlm_gguf_set_u32(w, keys[k], (uint32_t)ids[k]);
    rc |= uhlm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", uhlm_tokenizer_add_bos(tok));
    rc |= uhlm_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", uhlm_tokenizer_add_eos(tok));
    (void)rc; /* a failed setter is reported by uhlm_gguf_write with its reason */
    return 0;
}

static int put_vocab(uhlm_gguf_writer *w, const uhlm_tokenizer *tok, owned *buf, const char *path,
                     uhlm_error *err) {
    if (uhlm_tokenizer_kind(tok) == UHLM_VOCAB_BPE) return put_bpe_vocab(w, tok, buf, path, err);
    int n = uhlm_tokenizer_vocab_size(tok);
    const char **pieces = own(buf, (size_t)n * sizeof *pieces);
    size_t *lens = own(buf, (size_t)n * sizeof *lens);
    float *scores = own(buf, (size_t)n * sizeof *scores);
    int32_t *types = own(buf, (size_t)n * sizeof *types);
    if (!pieces || !lens || !scores || !types)
        return uhlm_set_error(err, "%s: out of memory writing the vocabulary", path);
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        const char *p = uhlm_tokenizer_piece(tok, i, &len);
        if (!p) return uhlm_set_error(err, "%s: tokenizer has no piece for id %d", path, i);
        size_t spaces = 0;
        for (size_t j = 0; j < len; j++) spaces += p[j] == ' ';
        char *q = own(buf, len + 2 * spaces);
        if (!q) return uhlm_set_error(err, "%s: out of memory writing the vocabulary", path);
        size_t o = 0;
        for (size_t j = 0; j < len; j++) {
            if (p[j] == ' ') {
                memcpy(q + o, "\xe2\x96\x81", 3); /* U+2581, SentencePiece's space mark */
                o += 3;
            } else {
                q[o++] = p[j];
            }
        }
        pieces[i] = q;
        lens[i] = o;
        scores[i] = uhlm_tokenizer_score(tok, i);
        types[i] = uhlm_tokenizer_type(tok, i);
    }
    int rc = 0;
    rc |= uhlm_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    rc |= uhlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", pieces, lens, (uint64_t)n);
    rc |= uhlm_gguf_set_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)n);
    rc |= uhlm_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    rc |= uhlm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", UHLM_TOKEN_BOS);
    rc |= uhlm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", UHLM_TOKEN_EOS);
    rc |= uhlm_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", UHLM_TOKEN_UNK);
    rc |= uhlm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    rc |= uhlm_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
    /* a failed setter is reported by uhlm_gguf_write with its reason */
    (void)rc;
    return 0;
}

/* Writes m as GGUF `llama`. Matrices (including token_embd and output) take `type`; norms stay
 * F32. The 32-element block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) need rows that are a multiple
 * of 32 elements: a matrix whose row length is not (stories260K's ffn_down, hidden 172) is kept
 * in F32 instead and its name is recorded in the string array uhlm.f32_fallback, so the file
 * says which tensors did not take the requested type. F16 has no blocks and always applies. The
 * K-quants need rows that are a multiple of 256: other matrices take uhlm_type_fallback's type
 * (as llama.cpp's quantizer does) and are listed in uhlm.type_fallback. */
int uhlm_gguf_save_llama(const uhlm_model *m, uhlm_type type, const char *path, uhlm_error *err) {
    if (type != UHLM_TYPE_F32 && !uhlm_type_is_gguf((int)type))
        return uhlm_set_error(err,
                              "%s: cannot write tensor type %d to GGUF (f32, f16, q8_0, q4_0, "
                              "q4_1, q5_0, q5_1, q2_k .. q6_k)",
                              path, (int)type);
    if (!m->tok)
        return uhlm_set_error(err, "%s: a tokenizer is required: GGUF embeds the vocabulary", path);
    const uhlm_config *p = &m->cfg;
    if (p->arch != UHLM_ARCH_LLAMA || p->rope_type != UHLM_ROPE_NORM ||
        (p->n_layers > 0 && (m->w.layers[0].bq || m->w.layers[0].bk || m->w.layers[0].bv)) ||
        p->head_dim * p->n_heads != p->dim)
        return uhlm_set_error(err, "%s: only plain llama models can be written (this one is %s)",
                              path, uhlm_arch_name(p->arch));
    if (uhlm_tokenizer_vocab_size(m->tok) != p->vocab_size)
        return uhlm_set_error(err, "%s: the tokenizer has %d tokens but the model's vocabulary is %d",
                              path, uhlm_tokenizer_vocab_size(m->tok), p->vocab_size);
    saver s;
    memset(&s, 0, sizeof s);
    s.path = path;
    s.want = type;
    int rc = -1;
    s.w = uhlm_gguf_writer_new(err);
    size_t n_mats = 2 + 7 * (size_t)p->n_layers;
    s.fallback = malloc(n_mats * sizeof *s.fallback);
    int widest = p->dim > p->hidden_dim ? p->dim : p->hidden_dim;
    s.row = malloc((size_t)widest * sizeof *s.row);
    if (!s.w || !s.fallback || !s.row) {
        if (s.w) uhlm_set_error(err, "%s: out of memory", path);
        goto done;
    }
    char name[256];
    model_name(m, name, sizeof name);
    uhlm_gguf_writer *w = s.w;
    uhlm_gguf_set_str(w, "general.architecture", "llama");
    uhlm_gguf_set_str(w, "general.name", name);
    uhlm_gguf_set_u32(w, "general.file_type", ggml_ftype(type));
    if (uhlm_type_block(type) > 1)
        uhlm_gguf_set_u32(w, "general.quantization_version", 2); /* GGML_QNT_VERSION */
    uhlm_gguf_set_u32(w, "general.alignment", UHLM_GGUF_DEFAULT_ALIGNMENT);
    if (m->synthetic) uhlm_gguf_set_bool(w, KEY_SYNTHETIC, 1);
    uhlm_gguf_set_u32(w, "llama.vocab_size", (uint32_t)p->vocab_size);
    uhlm_gguf_set_u32(w, "llama.context_length", (uint32_t)p->seq_len);
    uhlm_gguf_set_u32(w, "llama.embedding_length", (uint32_t)p->dim);
    uhlm_gguf_set_u32(w, "llama.block_count", (uint32_t)p->n_layers);
    uhlm_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)p->hidden_dim);
    uhlm_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)p->head_dim);
    uhlm_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)p->n_heads);
    uhlm_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)p->n_kv_heads);
    uhlm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", p->norm_eps);
    uhlm_gguf_set_f32(w, "llama.rope.freq_base", p->rope_theta);
    if (p->rope_freq_scale > 0 && p->rope_freq_scale != 1.0f) {
        uhlm_gguf_set_str(w, "llama.rope.scaling.type", "linear");
        uhlm_gguf_set_f32(w, "llama.rope.scaling.factor", 1.0f / p->rope_freq_scale);
    }
    if (put_vocab(w, m->tok, &s.buf, path, err) != 0) goto done;
    if (m->chat_template && m->chat_template_len > 0) {
        /* kept so that the written file chats as the source did (uhlm_chat, llama.cpp) */
        char *ct = own(&s.buf, m->chat_template_len + 1);
        if (!ct) {
            uhlm_set_error(err, "%s: out of memory writing the chat template", path);
            goto done;
        }
        memcpy(ct, m->chat_template, m->chat_template_len);
        ct[m->chat_template_len] = '\0';
        if (uhlm_gguf_set_str(w, "tokenizer.chat_template", ct) != 0) {
            uhlm_set_error(err, "%s: out of memory writing the chat template", path);
            goto done;
        }
    }

    const uhlm_weights *W = &m->w;
    if (save_mat(&s, "token_embd.weight", &W->tok_embd, err) ||
        save_norm(&s, "output_norm.weight", W->out_norm, p->dim, err))
        goto done;
    if (!p->shared_classifier && save_mat(&s, "output.weight", &W->output, err)) goto done;
    if (W->out_ids && uhlm_gguf_set_arr_i32(w, KEY_OUTPUT_IDS, W->out_ids, (uint64_t)W->n_out)) {
        uhlm_set_error(err, "%s: out of memory", path);
        goto done;
    }
    for (int l = 0; l < p->n_layers; l++) {
        const uhlm_layer *L = &W->layers[l];
        static const char *const suffix[9] = {"attn_norm", "attn_q",   "attn_k",  "attn_v",
                                              "attn_output", "ffn_norm", "ffn_gate", "ffn_down",
                                              "ffn_up"};
        const uhlm_tensor *mats[9] = {NULL, &L->wq, &L->wk, &L->wv, &L->wo, NULL, &L->w1, &L->w2, &L->w3};
        const float *norms[9] = {L->attn_norm, NULL, NULL, NULL, NULL, L->ffn_norm, NULL, NULL, NULL};
        for (int k = 0; k < 9; k++) {
            /* the writer copies the name; the fallback list needs it until the end */
            char *nm = own(&s.buf, 64);
            if (!nm) {
                uhlm_set_error(err, "%s: out of memory", path);
                goto done;
            }
            snprintf(nm, 64, "blk.%d.%s.weight", l, suffix[k]);
            if (mats[k] ? save_mat(&s, nm, mats[k], err) : save_norm(&s, nm, norms[k], p->dim, err))
                goto done;
        }
    }
    if (s.n_fallback > 0) {
        size_t *lens = own(&s.buf, s.n_fallback * sizeof *lens);
        if (!lens) {
            uhlm_set_error(err, "%s: out of memory", path);
            goto done;
        }
        for (size_t i = 0; i < s.n_fallback; i++) lens[i] = strlen(s.fallback[i]);
        uhlm_gguf_set_arr_str(w, uhlm_type_block(type) == 256 ? KEY_FALLBACK_K : KEY_FALLBACK,
                              s.fallback, lens, s.n_fallback);
    }
    rc = uhlm_gguf_write(w, path, err);
done:
    uhlm_gguf_writer_free(s.w);
    owned_free(&s.buf);
    free(s.fallback);
    free(s.row);
    return rc;
}
