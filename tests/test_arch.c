/* test_arch.c: architectures and hyperparameters of GGUF models beyond TinyStories' llama.
 *
 * The models are tiny random-weight GGUFs built here, in the temp dir, by arch_fixture.h (the
 * same files scripts/make_qwen2_fixture.py makes, with tok512.bin's vocabulary from
 * $UHLM_MODELS); only their expected logits are committed (tests/fixtures/NAME-logits.txt,
 * NAME-llamacpp.txt).
 * - qwen2-tiny (qwen2, GQA 4/2, q/k/v biases, NEOX RoPE with linear scaling x2, tied
 *   classifier, chat template) gives the logits of a numpy reference forward pass and of
 *   llama.cpp itself, batched and token by token;
 * - its metadata maps to the config (arch, rope type, scaling, heads, biases, template);
 * - variants written from it are refused with messages naming the key or tensor: another
 *   architecture, YaRN scaling, rope.dimension_count != head_dim, unsupported tensors; and a
 *   key_length that differs from dim / heads is honoured (shapes follow it);
 * - llama-kl-tiny (llama, attention.key_length 24 != 64 / 4, one key/value head, NORM RoPE,
 *   separate classifier) likewise;
 * - SmolLM2-135M-Instruct (when present, see scripts/setup.sh) loads as llama with a tied
 *   Q8_0 classifier, 9/3 heads and a ChatML template.
 *
 * `test_arch --write-fixture NAME OUT` only writes fixture model NAME to OUT (for
 * tests/cli_chat.sh). */
#include "arch_fixture.h"
#include "check.h"
#include "gguf_edit.h"
#include "uhlm/chat.h"
#include "model/format/gguf.h"
#include "model/model_internal.h"
#include "uhlm/model.h"

static const char *source_path(const char *rel) {
    static char buf[4][1024];
    static int slot;
    char *out = buf[slot++ & 3];
    const char *src = getenv("UHLM_SOURCE_DIR");
    const char *cands[3] = {src, ".", ".."};
    for (int i = 0; i < 3; i++) {
        if (!cands[i]) continue;
        snprintf(out, 1024, "%s/%s", cands[i], rel);
        if (access(out, R_OK) == 0) return out;
    }
    fprintf(stderr, "%s not found (set UHLM_SOURCE_DIR)\n", rel);
    exit(2);
}

/* "# ..." lines, "# tokens: a b c", then one row of V floats per token */
static float *read_logits(const char *rel, int V, int *toks, int *n_tok) {
    FILE *f = fopen(source_path(rel), "r");
    if (!f) return NULL;
    char line[256];
    *n_tok = 0;
    float *out = NULL;
    long pos = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] != '#') break;
        if (!strncmp(line, "# tokens:", 9)) {
            char *p = line + 9, *e;
            for (long v; (v = strtol(p, &e, 10)), e != p; p = e) toks[(*n_tok)++] = (int)v;
        }
        pos = ftell(f);
    }
    fseek(f, pos, SEEK_SET);
    out = malloc(sizeof(float) * (size_t)V * (size_t)*n_tok);
    for (int i = 0; out && i < V * *n_tok; i++)
        if (fscanf(f, "%f", &out[i]) != 1) {
            free(out);
            out = NULL;
        }
    fclose(f);
    return out;
}

static float max_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

/* The fixture's logits for its token list, batched and token by token, against the numpy
 * reference and llama.cpp (max abs 1e-4: both are float64/F32 computations of the same
 * graph). */
static void check_logits(uhlm_model *m, const char *name) {
    uhlm_error err = {{0}};
    char f_ref[256], f_lc[256];
    snprintf(f_ref, sizeof f_ref, "tests/fixtures/%s-logits.txt", name);
    snprintf(f_lc, sizeof f_lc, "tests/fixtures/%s-llamacpp.txt", name);
    int V = uhlm_model_config(m)->vocab_size, toks[64], nt = 0, nt2 = 0, toks2[64];
    float *ref = read_logits(f_ref, V, toks, &nt);
    float *lcpp = read_logits(f_lc, V, toks2, &nt2);
    CHECK(ref && lcpp && nt >= 8 && nt == nt2 && !memcmp(toks, toks2, sizeof(int) * (size_t)nt));
    float *got = malloc(sizeof(float) * (size_t)V * (size_t)nt);
    float *step = malloc(sizeof(float) * (size_t)V * (size_t)nt);
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 2;
    uhlm_ctx *c = uhlm_ctx_new(m, &cp, &err);
    CHECKF(c != NULL, "%s", err.msg);
    if (ref && lcpp && got && step && c) {
        uhlm_batch_entry b[64];
        for (int i = 0; i < nt; i++) b[i] = (uhlm_batch_entry){0, i, toks[i], 1};
        CHECK(uhlm_decode(c, b, nt, got, NULL, &err) == 0);
        CHECK(uhlm_seq_truncate(c, 0, 0, &err) == 0);
        for (int i = 0; i < nt; i++)
            CHECK(uhlm_decode(c, &b[i], 1, step + (size_t)i * V, NULL, &err) == 0);
        size_t n = (size_t)V * (size_t)nt;
        float d_ref = max_diff(got, ref, n), d_lc = max_diff(got, lcpp, n),
              d_step = max_diff(got, step, n);
        printf("%s: max |logit diff| vs numpy %.3g, vs llama.cpp %.3g, batched vs stepwise %.3g\n",
               name, d_ref, d_lc, d_step);
        CHECK(d_ref < 1e-4f && d_lc < 1e-4f && d_step < 1e-5f);
    }
    uhlm_ctx_free(c);
    free(got);
    free(step);
    free(ref);
    free(lcpp);
}

static void check_qwen2(const char *path) {
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (!m) return;
    const uhlm_config *p = uhlm_model_config(m);
    CHECK(p->arch == UHLM_ARCH_QWEN2 && p->rope_type == UHLM_ROPE_NEOX);
    CHECK(p->dim == 64 && p->n_layers == 2 && p->n_heads == 4 && p->n_kv_heads == 2 &&
          p->head_dim == 16 && p->hidden_dim == 96 && p->vocab_size == 512 && p->seq_len == 256);
    CHECK(p->rope_freq_scale == 0.5f && p->rope_theta == 10000.0f && p->norm_eps == 1e-6f);
    CHECK(p->shared_classifier && m->w.output.data == m->w.tok_embd.data);
    CHECK(m->w.layers[0].bq && m->w.layers[1].bk && m->w.layers[1].bv);
    CHECK(uhlm_chat_model_template(m).kind == UHLM_CHAT_CHATML);
    check_logits(m, "qwen2-tiny");
    uhlm_model_free(m);
}

/* llama with a key length that is not dim / heads, one key/value head, its own classifier */
static void check_llama_key_length(const char *fixture) {
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(fixture, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (!m) return;
    const uhlm_config *p = uhlm_model_config(m);
    CHECK(p->arch == UHLM_ARCH_LLAMA && p->rope_type == UHLM_ROPE_NORM);
    CHECK(p->dim == 64 && p->n_heads == 4 && p->n_kv_heads == 1 && p->head_dim == 24 &&
          p->hidden_dim == 64 && p->rope_theta == 500000.0f && p->rope_freq_scale == 1.0f);
    CHECK(!p->shared_classifier && m->w.output.data != m->w.tok_embd.data);
    CHECK(m->w.layers[0].wq.rows == 96 && m->w.layers[0].wo.cols == 96 && !m->w.layers[0].bq);
    CHECK(uhlm_chat_model_template(m).kind == UHLM_CHAT_NONE);
    check_logits(m, "llama-kl-tiny");
    /* only plain llama models can be written back */
    char path[1024];
    snprintf(path, sizeof path, "%s/uhlm-test-arch-save-%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    CHECK(uhlm_gguf_save_llama(m, UHLM_TYPE_F32, path, &err) != 0 &&
          strstr(err.msg, "only plain llama models"));
    remove(path);
    uhlm_model_free(m);
}

/* ---- variants of the qwen2 fixture: copy its keys and tensors with changes ---- */

typedef struct {
    const char *drop_key;     /* key left out */
    const char *set_key;      /* key added or replaced ... */
    const char *set_str;      /* ... with this string */
    int64_t set_int;          /* ... or this u32 when set_str is NULL */
    const char *extra_tensor; /* a copy of blk.0.ffn_norm.weight under this name */
} variant;

static int set_variant_key(uhlm_gguf_writer *w, const void *user) {
    const variant *v = user;
    if (!v->set_key) return 0;
    return v->set_str ? uhlm_gguf_set_str(w, v->set_key, v->set_str)
                      : uhlm_gguf_set_u32(w, v->set_key, (uint32_t)v->set_int);
}

static int write_variant(const char *fixture, const char *out, const variant *v) {
    gguf_edit e = {.drop_keys = {v->drop_key, v->set_key},
                   .dup_tensor = v->extra_tensor ? "blk.0.ffn_norm.weight" : NULL,
                   .dup_as = v->extra_tensor,
                   .add_kvs = set_variant_key,
                   .user = v};
    return gguf_rewrite(fixture, out, &e);
}

static void expect_refusal(const char *fixture, const variant *v, const char *want) {
    char path[1024];
    snprintf(path, sizeof path, "%s/uhlm-test-arch-%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    CHECK(write_variant(fixture, path, v) == 0);
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    CHECKF(!m && strstr(err.msg, want), "want '%s', got '%s'", want, m ? "(loaded)" : err.msg);
    uhlm_model_free(m);
    remove(path);
}

static void check_refusals(const char *fix) {
    expect_refusal(fix, &(variant){.set_key = "general.architecture", .set_str = "gpt2"},
                   "architecture 'gpt2' is not supported (supported: llama, qwen2)");
    expect_refusal(fix, &(variant){.set_key = "qwen2.rope.scaling.type", .set_str = "yarn"},
                   "RoPE scaling type 'yarn'");
    expect_refusal(fix, &(variant){.set_key = "qwen2.rope.dimension_count", .set_int = 8},
                   "qwen2.rope.dimension_count 8 differs from the head dimension 16");
    expect_refusal(fix, &(variant){.extra_tensor = "blk.0.attn_output.bias"},
                   "tensor 'blk.0.attn_output.bias' is not supported");
    expect_refusal(fix, &(variant){.set_key = "qwen2.attention.head_count_kv", .set_int = 3},
                   "4 heads are not a multiple of 3 key/value heads");
    /* key_length 8 instead of 64/4: the q/k/v shapes no longer match, and the message says
     * which tensor and what shape the key length implies */
    expect_refusal(fix, &(variant){.set_key = "qwen2.attention.key_length", .set_int = 8},
                   "tensor 'blk.0.attn_q.weight' has shape [64, 64], expected [64, 32]");
    /* the tied classifier is optional in both directions: no scaling key means none */
    char path[1024];
    snprintf(path, sizeof path, "%s/uhlm-test-arch-ok-%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    CHECK(write_variant(fix, path, &(variant){.drop_key = "qwen2.rope.scaling.factor"}) == 0);
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    CHECKF(m && uhlm_model_config(m)->rope_freq_scale == 1.0f, "%s", m ? "wrong scale" : err.msg);
    uhlm_model_free(m);
    remove(path);
}

static void check_smollm2(void) {
    const char *env = getenv("UHLM_MODELS");
    const char *dirs[] = {env, "models", "../models", "../shared/models"};
    char path[1024] = "";
    for (int i = 0; i < 4; i++) {
        if (!dirs[i]) continue;
        snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dirs[i]);
        if (access(path, R_OK) == 0) break;
        path[0] = '\0';
    }
    if (!path[0]) {
        printf("SKIP: SmolLM2-135M-Instruct.Q4_1.gguf not found (scripts/setup.sh fetches it)\n");
        return;
    }
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (!m) return;
    const uhlm_config *p = uhlm_model_config(m);
    CHECK(p->arch == UHLM_ARCH_LLAMA && p->rope_type == UHLM_ROPE_NORM && p->n_layers == 30 &&
          p->dim == 576 && p->n_heads == 9 && p->n_kv_heads == 3 && p->head_dim == 64 &&
          p->vocab_size == 49152 && p->rope_theta == 100000.0f);
    CHECK(p->shared_classifier && m->w.output.type == UHLM_TYPE_Q8_0);
    CHECK(uhlm_chat_model_template(m).kind == UHLM_CHAT_CHATML);
    uhlm_model_free(m);
}

int main(int argc, char **argv) {
    uhlm_error err = {{0}};
    const char *tok = uhlm_test_model_path("tok512.bin");
    if (argc == 4 && !strcmp(argv[1], "--write-fixture")) {
        if (arch_fixture_write(argv[2], tok, argv[3], &err) == 0) return 0;
        fprintf(stderr, "test_arch: %s\n", err.msg);
        return 1;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: test_arch [--write-fixture qwen2-tiny|llama-kl-tiny OUT.gguf]\n");
        return 2;
    }
    char qwen2[1024], llama_kl[1024];
    snprintf(qwen2, sizeof qwen2, "%s/uhlm-test-arch-qwen2-tiny-%d.gguf", uhlm_test_tmpdir(),
             (int)getpid());
    snprintf(llama_kl, sizeof llama_kl, "%s/uhlm-test-arch-llama-kl-tiny-%d.gguf",
             uhlm_test_tmpdir(), (int)getpid());
    int ok_q = arch_fixture_write("qwen2-tiny", tok, qwen2, &err) == 0;
    CHECKF(ok_q, "%s", err.msg);
    int ok_l = arch_fixture_write("llama-kl-tiny", tok, llama_kl, &err) == 0;
    CHECKF(ok_l, "%s", err.msg);
    if (ok_q) {
        check_qwen2(qwen2);
        check_refusals(qwen2);
    }
    if (ok_l) check_llama_key_length(llama_kl);
    remove(qwen2);
    remove(llama_kl);
    check_smollm2();
    return check_report();
}
