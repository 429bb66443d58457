/* test_draft_vocab.c: a classifier restricted to a draft vocabulary (uhlm_model_output_tokens).
 * The kept tokens' logits are the full classifier's, bit for bit (their rows are copied), every
 * other logit is -inf, batched and one at a time; the restriction survives a GGUF round trip;
 * and every malformed uhlm.output_token_ids is refused with a message naming it. The speculative
 * exactness with such a drafter is in test_hybrid_exact.c. */
#include "check.h"
#include "gguf_edit.h"
#include "model/format/gguf.h"
#include "uhlm/model.h"
#include "uhlm/tokenizer.h"

#define PREFIX "Once upon a time, there was a little girl named Lily."

static uhlm_model *load_slm(void) {
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"),
                                    uhlm_test_model_path("tok512.bin"), &err);
    CHECKF(m != NULL, "%s", err.msg);
    return m;
}

/* Logits of every prompt position, batched in one call or one token per call. */
static float *logits_of(uhlm_model *m, const int *toks, int n, int batched) {
    uhlm_error err = {{0}};
    const int V = uhlm_model_n_vocab(m);
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    uhlm_ctx *c = uhlm_ctx_new(m, &cp, &err);
    float *lg = malloc(sizeof(float) * (size_t)V * (size_t)n);
    CHECK(c && lg);
    if (!c || !lg) {
        uhlm_ctx_free(c);
        free(lg);
        return NULL;
    }
    uhlm_batch_entry be[256];
    for (int i = 0; i < n; i++) be[i] = (uhlm_batch_entry){0, i, toks[i], 1};
    int rc = 0;
    if (batched)
        rc = uhlm_decode(c, be, n, lg, NULL, &err);
    else
        for (int i = 0; i < n && rc == 0; i++)
            rc = uhlm_decode(c, &be[i], 1, lg + (size_t)i * V, NULL, &err);
    CHECKF(rc == 0, "%s", err.msg);
    uhlm_ctx_free(c);
    return lg;
}

/* Every position: kept tokens equal the full model's logits exactly, the rest are -inf. */
static void check_spread(const float *full, const float *part, int n, int V, const int32_t *ids,
                         int nk, const char *what) {
    long bad_kept = 0, bad_rest = 0;
    for (int r = 0; r < n; r++) {
        int j = 0;
        for (int v = 0; v < V; v++) {
            float a = full[(size_t)r * V + v], b = part[(size_t)r * V + v];
            if (j < nk && ids[j] == v) {
                bad_kept += memcmp(&a, &b, sizeof a) != 0;
                j++;
            } else {
                bad_rest += !(isinf(b) && b < 0);
            }
        }
    }
    CHECKF(bad_kept == 0 && bad_rest == 0, "%s: %ld kept logits differ, %ld others are not -inf",
           what, bad_kept, bad_rest);
}

static int32_t *some_ids(int V, int *n) {
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)V);
    int k = 0;
    for (int v = 0; v < V; v++)
        if (v < 3 || v % 5 == 1 || v % 7 == 0) ids[k++] = v;
    *n = k;
    return ids;
}

typedef struct {
    const int32_t *ids;
    int n;
    uhlm_gguf_type atype;
} ids_kv;

static int add_ids(uhlm_gguf_writer *w, const void *user) {
    const ids_kv *k = user;
    if (!k->ids) return 0;
    if (k->atype != UHLM_GGUF_FLOAT32)
        return uhlm_gguf_set_arr_i32(w, "uhlm.output_token_ids", k->ids, (uint64_t)k->n);
    float *f = malloc(sizeof(float) * (size_t)(k->n ? k->n : 1));
    if (!f) return -1;
    for (int i = 0; i < k->n; i++) f[i] = (float)k->ids[i];
    int rc = uhlm_gguf_set_arr_f32(w, "uhlm.output_token_ids", f, (uint64_t)k->n);
    free(f);
    return rc;
}

/* Writes src with uhlm.output_token_ids replaced by ids (n of them, or the key dropped when ids
 * is NULL), as an array of `atype`, and output.weight dropped when drop_output is set. */
static int write_edit(const char *src, const char *out, const int32_t *ids, int n,
                      uhlm_gguf_type atype, int drop_output) {
    ids_kv k = {ids, n, atype};
    gguf_edit e = {.drop_keys = {"uhlm.output_token_ids"},
                   .drop_tensor = drop_output ? "output.weight" : NULL,
                   .add_kvs = add_ids,
                   .user = &k};
    return gguf_rewrite(src, out, &e);
}

static void expect_refusal(const char *src, const int32_t *ids, int n, uhlm_gguf_type atype,
                           int drop_output, const char *want) {
    char path[1024];
    snprintf(path, sizeof path, "%s/uhlm-test-dv-bad-%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    CHECK(write_edit(src, path, ids, n, atype, drop_output) == 0);
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    CHECKF(!m && strstr(err.msg, want), "want '%s', got '%s'", want, m ? "(loaded)" : err.msg);
    uhlm_model_free(m);
    remove(path);
}

int main(void) {
    uhlm_error err = {{0}};
    uhlm_model *full = load_slm(), *part = load_slm();
    if (!full || !part) return check_report();
    const int V = uhlm_model_n_vocab(full);
    int n_out = -1;
    CHECK(uhlm_model_output_tokens(full, &n_out) == NULL && n_out == V);

    int toks[256];
    int n = uhlm_tokenize(uhlm_model_tokenizer(full), PREFIX, strlen(PREFIX), 1, 0, toks, 256, &err);
    CHECK(n > 5);
    int nk;
    int32_t *ids = some_ids(V, &nk);
    CHECKF(uhlm_model_keep_output_tokens(part, ids, nk, &err) == 0, "%s", err.msg);
    const int32_t *got = uhlm_model_output_tokens(part, &n_out);
    CHECK(got && n_out == nk && !memcmp(got, ids, sizeof(int32_t) * (size_t)nk));

    float *lf = logits_of(full, toks, n, 1), *lp = logits_of(part, toks, n, 1);
    float *lp1 = logits_of(part, toks, n, 0);
    if (lf && lp && lp1) {
        check_spread(lf, lp, n, V, ids, nk, "batched");
        check_spread(lf, lp1, n, V, ids, nk, "one token per call");
    }

    /* API refusals leave the model as it was */
    int32_t bad[3] = {6, 1, 7};
    CHECK(uhlm_model_keep_output_tokens(part, bad, 3, &err) != 0 &&
          strstr(err.msg, "strictly increasing"));
    bad[0] = 0, bad[1] = 1, bad[2] = V;
    CHECK(uhlm_model_keep_output_tokens(part, bad, 3, &err) != 0 && strstr(err.msg, "outside"));
    bad[0] = 0, bad[1] = 1, bad[2] = 4; /* 4 % 5 != 1, 4 % 7 != 0: not scored any more */
    CHECK(uhlm_model_keep_output_tokens(part, bad, 3, &err) != 0 &&
          strstr(err.msg, "token 4 is not in the classifier's draft vocabulary"));
    CHECK(uhlm_model_keep_output_tokens(part, bad, 0, &err) != 0);
    CHECK(uhlm_model_output_tokens(part, &n_out) && n_out == nk);

    /* GGUF round trip: the ids and the kept rows are written and read back */
    char path[1024];
    snprintf(path, sizeof path, "%s/uhlm-test-dv-%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    CHECKF(uhlm_gguf_save_llama(part, UHLM_TYPE_F32, path, &err) == 0, "%s", err.msg);
    uhlm_model *back = uhlm_model_load(path, NULL, &err);
    CHECKF(back != NULL, "%s", err.msg);
    if (back) {
        got = uhlm_model_output_tokens(back, &n_out);
        CHECK(got && n_out == nk && !memcmp(got, ids, sizeof(int32_t) * (size_t)nk));
        float *lb = logits_of(back, toks, n, 1);
        if (lf && lb) check_spread(lf, lb, n, V, ids, nk, "after a GGUF round trip");
        free(lb);
        /* a subset of a draft vocabulary can be kept again */
        int32_t sub[4] = {0, 1, 6, 21};
        CHECKF(uhlm_model_keep_output_tokens(back, sub, 4, &err) == 0, "%s", err.msg);
        lb = logits_of(back, toks, n, 1);
        if (lf && lb) check_spread(lf, lb, n, V, sub, 4, "a subset kept again");
        free(lb);
        uhlm_model_free(back);

        /* malformed files */
        int32_t unsorted[3] = {1, 0, 2}, high[3] = {0, 1, V}, neg[3] = {-1, 0, 1};
        expect_refusal(path, unsorted, 3, UHLM_GGUF_INT32, 0, "must be strictly increasing");
        expect_refusal(path, high, 3, UHLM_GGUF_INT32, 0, "outside the vocabulary");
        expect_refusal(path, neg, 3, UHLM_GGUF_INT32, 0, "= -1 is outside the vocabulary");
        expect_refusal(path, ids, nk, UHLM_GGUF_FLOAT32, 0, "must be an array of int32");
        expect_refusal(path, ids, 0, UHLM_GGUF_INT32, 0, "has 0 entries");
        /* one id fewer than output.weight's rows: the shape check names the tensor */
        expect_refusal(path, ids, nk - 1, UHLM_GGUF_INT32, 0, "output.weight");
        expect_refusal(path, ids, nk, UHLM_GGUF_INT32, 1, "has no output.weight");
    }
    remove(path);
    free(lf);
    free(lp);
    free(lp1);
    free(ids);
    uhlm_model_free(full);
    uhlm_model_free(part);
    return check_report();
}
