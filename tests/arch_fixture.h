/* arch_fixture.h: builds the tiny random-weight GGUF models of scripts/make_qwen2_fixture.py at
 * test time, so that no model file is committed; only their expected logits are
 * (tests/fixtures/NAME-logits.txt, NAME-llamacpp.txt).
 *
 * arch_fixture_write(name, tok512, out) writes the same file the script makes, byte for byte
 * (the script prints its sha256, and the logits files name it): the same keys in the same order,
 * tok512.bin's vocabulary, and the weights drawn from splitmix64 exactly as the script's
 * make_weights does (see the comment there). Everything is exact in double until the one
 * double -> float rounding, so C and numpy agree to the bit.
 *
 *   qwen2-tiny     qwen2, dim 64, 2 layers, 4 heads over 2 key/value heads (head_dim 16), FFN 96,
 *                  rope base 10000 with linear scaling x2, rms eps 1e-6, q/k/v biases, tied
 *                  classifier, a ChatML chat template;
 *   llama-kl-tiny  llama, attention.key_length 24 (query width 96, not dim), 4 heads over 1
 *                  key/value head, FFN 64, rope base 500000, a separate output.weight. */
#ifndef UHLM_TEST_ARCH_FIXTURE_H
#define UHLM_TEST_ARCH_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/format/gguf.h"

#define ARCH_FIXTURE_MAX_TENSORS 64

typedef struct {
    const char *name, *arch;
    int dim, layers, heads, kv_heads, hd, ffn, ctx;
    float base, scale, eps;
    int bias, tied, key_length;
    uint64_t seed;
} arch_fixture_cfg;

/* scripts/make_qwen2_fixture.py: QWEN2, LLAMA_KL */
static const arch_fixture_cfg arch_fixtures[] = {
    {"qwen2-tiny", "qwen2", 64, 2, 4, 2, 16, 96, 256, 10000.0f, 2.0f, 1e-6f, 1, 1, 0, 1234},
    {"llama-kl-tiny", "llama", 64, 2, 4, 1, 24, 64, 256, 500000.0f, 1.0f, 1e-5f, 0, 0, 1, 4321},
};

typedef struct {
    char **pieces;
    size_t *lens;
    float *scores;
    int32_t *types;
    uint64_t n;
} arch_fixture_vocab;

static void arch_fixture_vocab_free(arch_fixture_vocab *v) {
    for (uint64_t i = 0; v->pieces && i < v->n; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->lens);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

/* llama2.c tokenizer.bin: int32 max_len, then per piece float score, int32 len, bytes. Spaces
 * become U+2581 as in GGUF SentencePiece vocabularies; types as the script assigns them. */
static int arch_fixture_read_vocab(const char *path, arch_fixture_vocab *v, uhlm_error *err) {
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    if (!f) return uhlm_set_error(err, "%s: cannot open", path);
    int32_t max_len;
    uint64_t cap = 0;
    int rc = fread(&max_len, 4, 1, f) == 1 ? 0 : -1;
    for (;;) {
        float score;
        int32_t len;
        if (rc || fread(&score, 4, 1, f) != 1) break; /* end of file */
        if (fread(&len, 4, 1, f) != 1 || len < 0 || len > 4096) {
            rc = -1;
            break;
        }
        char raw[4096];
        if ((size_t)len > 0 && fread(raw, 1, (size_t)len, f) != (size_t)len) {
            rc = -1;
            break;
        }
        if (v->n == cap) {
            cap = cap ? 2 * cap : 512;
            char **p = realloc(v->pieces, sizeof *p * cap);
            if (p) v->pieces = p;
            size_t *l = realloc(v->lens, sizeof *l * cap);
            if (l) v->lens = l;
            float *s = realloc(v->scores, sizeof *s * cap);
            if (s) v->scores = s;
            int32_t *t = realloc(v->types, sizeof *t * cap);
            if (t) v->types = t;
            if (!p || !l || !s || !t) {
                rc = -1;
                break;
            }
        }
        char *piece = malloc(3 * (size_t)len + 1);
        if (!piece) {
            rc = -1;
            break;
        }
        size_t o = 0;
        for (int32_t i = 0; i < len; i++) {
            if (raw[i] == ' ') {
                memcpy(piece + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                piece[o++] = raw[i];
            }
        }
        piece[o] = '\0';
        int32_t type = 1;
        if (len == 5 && !memcmp(raw, "<unk>", 5))
            type = 2;
        else if ((len == 3 && !memcmp(raw, "<s>", 3)) || (len == 4 && !memcmp(raw, "</s>", 4)))
            type = 3;
        else if (len == 6 && !memcmp(raw, "<0x", 3) && raw[5] == '>')
            type = 6;
        v->pieces[v->n] = piece;
        v->lens[v->n] = o;
        v->scores[v->n] = score;
        v->types[v->n] = type;
        v->n++;
    }
    if (ferror(f)) rc = -1;
    fclose(f);
    if (rc == 0 && v->n == 0) rc = -1;
    if (rc) {
        arch_fixture_vocab_free(v);
        return uhlm_set_error(err, "%s: not a readable llama2.c tokenizer file", path);
    }
    return 0;
}

/* the script's splitmix64 stream: draw i (from 1) mixes seed + i * golden */
static uint64_t arch_fixture_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* One tensor of the script's tensor_specs: rows x cols (rows 0: a vector of cols), values
 * mean + a * k / 2^23 for k the top 24 bits of each draw less 2^23. */
static int arch_fixture_tensor(uhlm_gguf_writer *w, const char *name, int rows, int cols,
                               double mean, double a, uint64_t *state, float **keep, int *n_keep) {
    size_t n = (size_t)(rows ? rows : 1) * (size_t)cols;
    float *d = *n_keep < ARCH_FIXTURE_MAX_TENSORS ? malloc(sizeof *d * n) : NULL;
    if (!d) return -1;
    keep[(*n_keep)++] = d;
    for (size_t i = 0; i < n; i++) {
        int64_t k = (int64_t)(arch_fixture_next(state) >> 40) - (INT64_C(1) << 23);
        d[i] = (float)(mean + a * ((double)k / (double)(1 << 23)));
    }
    uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
    return uhlm_gguf_add_tensor(w, name, UHLM_TYPE_F32, rows ? 2 : 1, ne, d, sizeof *d * n);
}

static int arch_fixture_tensors(uhlm_gguf_writer *w, const arch_fixture_cfg *C, int vocab,
                                float **keep, int *n_keep) {
    const int D = C->dim, QD = C->heads * C->hd, KVD = C->kv_heads * C->hd;
    uint64_t st = C->seed;
    char nm[64];
    int rc = arch_fixture_tensor(w, "token_embd.weight", vocab, D, 0, 0.75, &st, keep, n_keep);
    if (!rc) rc = arch_fixture_tensor(w, "output_norm.weight", 0, D, 1, 0.1875, &st, keep, n_keep);
    if (!rc && !C->tied)
        rc = arch_fixture_tensor(w, "output.weight", vocab, D, 0, 0.5, &st, keep, n_keep);
    /* per layer, in the script's order: name, rows (0: vector), cols, mean, a; biases are
     * skipped without C->bias */
    for (int l = 0; !rc && l < C->layers; l++) {
        const struct {
            const char *n;
            int rows, cols;
            double mean, a;
        } spec[] = {{"attn_norm.weight", 0, D, 1, 0.1875}, {"attn_q.weight", QD, D, 0, 0.375},
                    {"attn_q.bias", 0, QD, 0, 0.5},        {"attn_k.weight", KVD, D, 0, 0.375},
                    {"attn_k.bias", 0, KVD, 0, 0.5},       {"attn_v.weight", KVD, D, 0, 0.375},
                    {"attn_v.bias", 0, KVD, 0, 0.5},       {"attn_output.weight", D, QD, 0, 0.25},
                    {"ffn_norm.weight", 0, D, 1, 0.1875},  {"ffn_gate.weight", C->ffn, D, 0, 0.25},
                    {"ffn_up.weight", C->ffn, D, 0, 0.25}, {"ffn_down.weight", D, C->ffn, 0, 0.25}};
        for (size_t i = 0; !rc && i < sizeof spec / sizeof spec[0]; i++) {
            if (strstr(spec[i].n, ".bias") && !C->bias) continue;
            snprintf(nm, sizeof nm, "blk.%d.%s", l, spec[i].n);
            rc = arch_fixture_tensor(w, nm, spec[i].rows, spec[i].cols, spec[i].mean, spec[i].a,
                                     &st, keep, n_keep);
        }
    }
    return rc;
}

static int arch_fixture_u32(uhlm_gguf_writer *w, const arch_fixture_cfg *C, const char *key,
                            uint32_t v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", C->arch, key);
    return uhlm_gguf_set_u32(w, k, v);
}

static int arch_fixture_f32(uhlm_gguf_writer *w, const arch_fixture_cfg *C, const char *key,
                            float v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", C->arch, key);
    return uhlm_gguf_set_f32(w, k, v);
}

/* Writes the fixture model `name` (see arch_fixtures) to out, with the vocabulary of the
 * llama2.c tokenizer file tok512 (tok512.bin). 0 on success, -1 with err set. */
static int arch_fixture_write(const char *name, const char *tok512, const char *out,
                              uhlm_error *err) {
    const arch_fixture_cfg *C = NULL;
    for (size_t i = 0; i < sizeof arch_fixtures / sizeof arch_fixtures[0]; i++)
        if (!strcmp(arch_fixtures[i].name, name)) C = &arch_fixtures[i];
    if (!C) return uhlm_set_error(err, "no fixture model named '%s'", name);
    arch_fixture_vocab v;
    if (arch_fixture_read_vocab(tok512, &v, err)) return -1;
    uhlm_gguf_writer *w = uhlm_gguf_writer_new(err);
    float *keep[ARCH_FIXTURE_MAX_TENSORS];
    int n_keep = 0;
    char title[128];
    snprintf(title, sizeof title, "%s-random (uhlm test fixture)", C->name);
    /* gguf-py's order: GGUFWriter(path, arch) adds general.architecture, then the add_* calls
     * of the script's write_gguf */
    int rc = w ? 0 : -1;
    if (!rc) rc = uhlm_gguf_set_str(w, "general.architecture", C->arch);
    if (!rc) rc = uhlm_gguf_set_str(w, "general.name", title);
    if (!rc) rc = arch_fixture_u32(w, C, "context_length", (uint32_t)C->ctx);
    if (!rc) rc = arch_fixture_u32(w, C, "embedding_length", (uint32_t)C->dim);
    if (!rc) rc = arch_fixture_u32(w, C, "block_count", (uint32_t)C->layers);
    if (!rc) rc = arch_fixture_u32(w, C, "feed_forward_length", (uint32_t)C->ffn);
    if (!rc) rc = arch_fixture_u32(w, C, "attention.head_count", (uint32_t)C->heads);
    if (!rc) rc = arch_fixture_u32(w, C, "attention.head_count_kv", (uint32_t)C->kv_heads);
    if (!rc && C->key_length) rc = arch_fixture_u32(w, C, "attention.key_length", (uint32_t)C->hd);
    if (!rc && C->key_length)
        rc = arch_fixture_u32(w, C, "attention.value_length", (uint32_t)C->hd);
    if (!rc) rc = arch_fixture_f32(w, C, "rope.freq_base", C->base);
    if (!rc && C->scale != 1.0f) {
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", C->arch);
        rc = uhlm_gguf_set_str(w, k, "linear");
        if (!rc) rc = arch_fixture_f32(w, C, "rope.scaling.factor", C->scale);
    }
    if (!rc) rc = arch_fixture_f32(w, C, "attention.layer_norm_rms_epsilon", C->eps);
    if (!rc) rc = uhlm_gguf_set_u32(w, "general.file_type", 0); /* all F32 */
    if (!rc) rc = uhlm_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    if (!rc)
        rc = uhlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.pieces,
                                   v.lens, v.n);
    if (!rc) rc = uhlm_gguf_set_arr_f32(w, "tokenizer.ggml.scores", v.scores, v.n);
    if (!rc) rc = uhlm_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", v.types, v.n);
    if (!rc) rc = uhlm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!rc) rc = uhlm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (!rc) rc = uhlm_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!rc) rc = uhlm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    if (!rc && C->tied)
        rc = uhlm_gguf_set_str(
            w, "tokenizer.chat_template",
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
    if (!rc) rc = arch_fixture_tensors(w, C, (int)v.n, keep, &n_keep);
    if (rc && w && err && !err->msg[0]) uhlm_set_error(err, "%s: building the GGUF failed", C->name);
    if (!rc) rc = uhlm_gguf_write(w, out, err);
    uhlm_gguf_writer_free(w);
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    arch_fixture_vocab_free(&v);
    return rc;
}

#endif
