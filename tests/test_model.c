/* test_model.c: the forward pass against the llama2.c reference and against itself.
 *
 * - greedy stories260K from BOS reproduces llama2.c's reference text;
 * - logits agree (max abs 1e-4) between batched and token-by-token forward, multi-sequence
 *   batches and separate runs, scalar and SIMD kernels, thread counts, and the llama2.c v0, v1
 *   and GGUF F32 encodings of the same weights;
 * - llama2.c v2 (int8 groups) and GGUF Q8_0/Q4_0 stay within documented tolerances and give
 *   the same greedy text on a short run;
 * - KV-cache truncation (rollback) recomputes identical logits;
 * - malformed checkpoints fail with clear errors. */
#include <stdint.h>

#include "check.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

static uhlm_model *load(const char *name, const char *tok) {
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(uhlm_test_model_path(name), tok ? uhlm_test_model_path(tok) : NULL, &err);
    if (!m) fprintf(stderr, "load %s: %s\n", name, err.msg);
    return m;
}

static uhlm_ctx *mkctx(const uhlm_model *m, int n_seq, int threads, uhlm_simd simd, int max_batch) {
    uhlm_ctx_params p = uhlm_ctx_default_params();
    p.n_seq = n_seq;
    p.n_threads = threads;
    p.simd = simd;
    p.max_batch = max_batch;
    uhlm_error err = {{0}};
    uhlm_ctx *c = uhlm_ctx_new(m, &p, &err);
    if (!c) fprintf(stderr, "ctx: %s\n", err.msg);
    return c;
}

/* logits for every position of `toks` on sequence `seq`, one token per decode call */
static int logits_stepwise(uhlm_ctx *c, int seq, const int *toks, int n, float *out) {
    int V = uhlm_model_config(uhlm_ctx_model(c))->vocab_size;
    uhlm_error err = {{0}};
    for (int i = 0; i < n; i++) {
        uhlm_batch_entry e = {seq, i, toks[i], 1};
        if (uhlm_decode(c, &e, 1, out + (size_t)i * V, NULL, &err) != 0) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int logits_batched(uhlm_ctx *c, int seq, const int *toks, int n, float *out) {
    uhlm_batch_entry *b = malloc(sizeof *b * (size_t)n);
    if (!b) return -1;
    for (int i = 0; i < n; i++) b[i] = (uhlm_batch_entry){seq, i, toks[i], 1};
    uhlm_error err = {{0}};
    int rc = uhlm_decode(c, b, n, out, NULL, &err);
    if (rc) fprintf(stderr, "decode: %s\n", err.msg);
    free(b);
    return rc;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as failure */
    }
    return m;
}

/* greedy text from BOS */
static char *greedy_text(const uhlm_model *m, uhlm_ctx *c, int n, int *toks_out) {
    int V = uhlm_model_config(m)->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)V);
    if (!lg) return NULL;
    uhlm_error err = {{0}};
    int tok = UHLM_TOKEN_BOS, *toks = malloc(sizeof(int) * (size_t)(n + 1));
    int nt = 0;
    for (int pos = 0; pos < n; pos++) {
        uhlm_batch_entry e = {0, pos, tok, 1};
        if (uhlm_decode(c, &e, 1, lg, NULL, &err) != 0) break;
        tok = uhlm_argmax(lg, V);
        if (toks_out) toks_out[pos] = tok;
        toks[nt++] = tok;
        if (tok == UHLM_TOKEN_EOS) break;
    }
    char *s = uhlm_detokenize(uhlm_model_tokenizer(m), toks, nt);
    free(toks);
    free(lg);
    return s;
}

static const int probe[] = {1, 403, 407, 261, 378, 268, 261, 301, 350, 442, 290, 262, 355, 259,
                            370, 46, 13, 317, 345, 267, 380, 400, 322, 395, 258, 283, 265, 460};
#define NPROBE ((int)(sizeof probe / sizeof probe[0]))

static void test_reference_text(void) {
    uhlm_model *m = load("stories260K.bin", "tok512.bin");
    CHECK(m != NULL);
    if (!m) return;
    uhlm_ctx *c = mkctx(m, 1, 2, UHLM_SIMD_AUTO, 0);
    char *s = greedy_text(m, c, 200, NULL);
    const char *want = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park.";
    CHECKF(s && strncmp(s, want, strlen(want)) == 0, "got: %.200s", s ? s : "(null)");
    free(s);
    uhlm_ctx_free(c);
    uhlm_model_free(m);
}

static void test_consistency(const char *name) {
    uhlm_model *m = load(name, "tok512.bin");
    CHECK(m != NULL);
    if (!m) return;
    int V = uhlm_model_config(m)->vocab_size;
    size_t N = (size_t)NPROBE * V;
    float *a = malloc(N * 4), *b = malloc(N * 4), *cc = malloc(N * 4);
    uhlm_ctx *c1 = mkctx(m, 3, 1, UHLM_SIMD_SCALAR, 0);
    CHECK(a && b && cc && c1);
    if (!(a && b && cc && c1)) goto out;
    /* reference: scalar, one thread, token by token */
    CHECK(logits_stepwise(c1, 0, probe, NPROBE, a) == 0);
    /* batched, several chunk sizes and thread counts, every SIMD level the CPU has */
    uhlm_simd levels[3] = {UHLM_SIMD_SCALAR, UHLM_SIMD_AVX2, UHLM_SIMD_AVX512};
    for (int li = 0; li < 3; li++) {
        if (!uhlm_simd_supported(levels[li])) continue;
        int chunks[3] = {256, 7, 1};
        for (int ci = 0; ci < 3; ci++)
            for (int th = 1; th <= 3; th += 2) {
                uhlm_ctx *c2 = mkctx(m, 1, th, levels[li], chunks[ci]);
                CHECK(c2 && logits_batched(c2, 0, probe, NPROBE, b) == 0);
                double d = maxdiff(a, b, N);
                CHECKF(d < 1e-4, "%s %s chunk %d threads %d: max abs diff %g", name,
                       uhlm_simd_name(levels[li]), chunks[ci], th, d);
                uhlm_ctx_free(c2);
            }
        /* same SIMD level, different thread counts: bit-identical */
        uhlm_ctx *t1 = mkctx(m, 1, 1, levels[li], 0), *t2 = mkctx(m, 1, 2, levels[li], 0);
        CHECK(t1 && t2 && logits_batched(t1, 0, probe, NPROBE, b) == 0 &&
              logits_batched(t2, 0, probe, NPROBE, cc) == 0);
        CHECKF(memcmp(b, cc, N * 4) == 0, "%s: 1 and 2 threads differ", uhlm_simd_name(levels[li]));
        uhlm_ctx_free(t1);
        uhlm_ctx_free(t2);
    }
    /* multi-sequence: interleave two sequences in one batch, compare each with a separate run */
    {
        uhlm_ctx *c3 = mkctx(m, 3, 2, UHLM_SIMD_AUTO, 0);
        int n2 = 11;
        uhlm_batch_entry bb[NPROBE + 11];
        int k = 0;
        for (int i = 0; i < NPROBE; i++) {
            bb[k++] = (uhlm_batch_entry){2, i, probe[i], 1};
            if (i < n2) bb[k++] = (uhlm_batch_entry){1, i, probe[NPROBE - 1 - i], 1};
        }
        float *ml = malloc((size_t)k * V * 4);
        float *sep = malloc((size_t)n2 * V * 4);
        int rev[11];
        for (int i = 0; i < n2; i++) rev[i] = probe[NPROBE - 1 - i];
        uhlm_error err = {{0}};
        CHECK(c3 && ml && sep && uhlm_decode(c3, bb, k, ml, NULL, &err) == 0);
        uhlm_ctx *c4 = mkctx(m, 1, 1, UHLM_SIMD_AUTO, 0);
        CHECK(c4 && logits_stepwise(c4, 0, rev, n2, sep) == 0);
        double d0 = 0, d1 = 0;
        int ia = 0, ib = 0;
        for (int j = 0; j < k; j++) {
            const float *row = ml + (size_t)j * V;
            if (bb[j].seq == 2) {
                double d = maxdiff(row, a + (size_t)ia++ * V, V);
                if (d > d0) d0 = d;
            } else {
                double d = maxdiff(row, sep + (size_t)ib++ * V, V);
                if (d > d1) d1 = d;
            }
        }
        CHECKF(d0 < 1e-4 && d1 < 1e-4, "multi-seq diffs %g %g", d0, d1);
        CHECK(uhlm_seq_len(c3, 2) == NPROBE && uhlm_seq_len(c3, 1) == n2 && uhlm_seq_len(c3, 0) == 0);
        const int *st = uhlm_seq_tokens(c3, 1);
        CHECK(st && memcmp(st, rev, sizeof rev) == 0);
        /* rollback: truncate and recompute the tail, logits identical to the first time */
        CHECK(uhlm_seq_truncate(c3, 2, 10, &err) == 0 && uhlm_seq_len(c3, 2) == 10);
        uhlm_batch_entry tail[NPROBE];
        for (int i = 10; i < NPROBE; i++) tail[i - 10] = (uhlm_batch_entry){2, i, probe[i], 1};
        CHECK(uhlm_decode(c3, tail, NPROBE - 10, ml, NULL, &err) == 0);
        CHECK(maxdiff(ml, a + (size_t)10 * V, (size_t)(NPROBE - 10) * V) < 1e-4);
        /* invalid entries are refused and change nothing */
        uhlm_batch_entry bad[3] = {{2, NPROBE, 5, 0}, {2, NPROBE + 2, 5, 1}, {0, 0, 0, 0}};
        CHECK(uhlm_decode(c3, bad, 2, ml, NULL, &err) != 0 && strstr(err.msg, "position"));
        CHECK(uhlm_seq_len(c3, 2) == NPROBE);
        bad[0] = (uhlm_batch_entry){0, 0, V, 1};
        CHECK(uhlm_decode(c3, bad, 1, ml, NULL, &err) != 0 && strstr(err.msg, "token"));
        bad[0] = (uhlm_batch_entry){3, 0, 1, 1};
        CHECK(uhlm_decode(c3, bad, 1, ml, NULL, &err) != 0 && strstr(err.msg, "sequence"));
        CHECK(uhlm_seq_truncate(c3, 2, NPROBE + 1, &err) != 0);
        free(ml);
        free(sep);
        uhlm_ctx_free(c3);
        uhlm_ctx_free(c4);
    }
out:
    free(a);
    free(b);
    free(cc);
    uhlm_ctx_free(c1);
    uhlm_model_free(m);
}

/* Writes a llama2.c v1 (fp32) or v2 (int8, group g) file with the weights of m. */
static int write_v12(const uhlm_model *m, const char *path, int version, int g) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const uhlm_config *p = uhlm_model_config(m);
    uint8_t hdr[256] = {0};
    uint32_t magic = 0x616b3432;
    int32_t ints[9] = {version, p->dim, p->hidden_dim, p->n_layers, p->n_heads, p->n_kv_heads,
                       p->vocab_size, p->seq_len, 0};
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, ints, 32);
    hdr[36] = (uint8_t)p->shared_classifier;
    if (version == 2) memcpy(hdr + 37, &g, 4);
    int ok = fwrite(hdr, 1, 256, f) == 256;
    int L = p->n_layers;
    for (int l = 0; l < L; l++) ok &= fwrite(m->w.layers[l].attn_norm, 4, p->dim, f) == (size_t)p->dim;
    for (int l = 0; l < L; l++) ok &= fwrite(m->w.layers[l].ffn_norm, 4, p->dim, f) == (size_t)p->dim;
    ok &= fwrite(m->w.out_norm, 4, p->dim, f) == (size_t)p->dim;
    const uhlm_tensor *mats[1 + 7 * 64 + 1];
    int nm = 0;
    mats[nm++] = &m->w.tok_embd;
    for (int k = 0; k < 7; k++)
        for (int l = 0; l < L; l++) {
            const uhlm_layer *ly = &m->w.layers[l];
            const uhlm_tensor *t[7] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w1, &ly->w2, &ly->w3};
            mats[nm++] = t[k];
        }
    if (!p->shared_classifier) mats[nm++] = &m->w.output;
    float *scales_all = NULL;
    size_t ns = 0;
    for (int i = 0; i < nm && ok; i++) {
        size_t n = (size_t)mats[i]->rows * mats[i]->cols;
        const float *x = mats[i]->data;
        if (version == 1) {
            ok &= fwrite(x, 4, n, f) == n;
            continue;
        }
        int8_t *q = malloc(n);
        float *ns2 = realloc(scales_all, (ns + n / g) * 4);
        if (!q || !ns2) {
            free(q);
            ok = 0;
            break;
        }
        scales_all = ns2;
        for (size_t gi = 0; gi < n / g; gi++) {
            float amax = 0;
            for (int j = 0; j < g; j++) amax = fmaxf(amax, fabsf(x[gi * g + j]));
            float s = amax / 127.0f;
            scales_all[ns++] = s;
            for (int j = 0; j < g; j++) q[gi * g + j] = (int8_t)(s ? roundf(x[gi * g + j] / s) : 0);
        }
        ok &= fwrite(q, 1, n, f) == n;
        free(q);
    }
    if (version == 2 && ok) ok &= fwrite(scales_all, 4, ns, f) == ns;
    free(scales_all);
    ok &= fclose(f) == 0;
    return ok ? 0 : -1;
}

static void test_formats(void) {
    uhlm_model *m = load("stories260K.bin", "tok512.bin");
    CHECK(m && uhlm_model_format(m) == UHLM_FORMAT_LLAMA2C_V0 && uhlm_model_config(m)->n_kv_heads == 4 && uhlm_model_config(m)->n_heads == 8);
    if (!m) return;
    int V = uhlm_model_config(m)->vocab_size;
    size_t N = (size_t)NPROBE * V;
    float *a = malloc(N * 4), *b = malloc(N * 4);
    uhlm_ctx *c = mkctx(m, 1, 2, UHLM_SIMD_AUTO, 0);
    CHECK(a && b && c && logits_batched(c, 0, probe, NPROBE, a) == 0);
    char p1[512], p2[512], p3[512];
    snprintf(p1, sizeof p1, "%s/uhlm_test_v1_%d.bin", uhlm_test_tmpdir(), (int)getpid());
    snprintf(p2, sizeof p2, "%s/uhlm_test_v2_%d.bin", uhlm_test_tmpdir(), (int)getpid());
    snprintf(p3, sizeof p3, "%s/uhlm_test_f32_%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    uhlm_error err = {{0}};
    CHECK(write_v12(m, p1, 1, 0) == 0 && write_v12(m, p2, 2, 64) == 0);
    CHECKF(uhlm_gguf_save_llama(m, UHLM_TYPE_F32, p3, &err) == 0, "%s", err.msg);
    const char *paths[3] = {p1, p2, p3};
    double tol[3] = {1e-4, 0.5, 1e-4}; /* int8 groups: a quantized model, not a re-encoding */
    uhlm_format fmts[3] = {UHLM_FORMAT_LLAMA2C_V1, UHLM_FORMAT_LLAMA2C_V2, UHLM_FORMAT_GGUF};
    for (int i = 0; i < 3; i++) {
        uhlm_model *m2 = uhlm_model_load(paths[i], i < 2 ? uhlm_test_model_path("tok512.bin") : NULL, &err);
        CHECKF(m2 != NULL, "%s: %s", paths[i], err.msg);
        if (!m2) continue;
        CHECK(m2->format == fmts[i] && uhlm_model_tokenizer(m2) && uhlm_model_config(m2)->vocab_size == V);
        uhlm_ctx *c2 = mkctx(m2, 1, 2, UHLM_SIMD_AUTO, 0);
        CHECK(c2 && logits_batched(c2, 0, probe, NPROBE, b) == 0);
        double d = maxdiff(a, b, N);
        CHECKF(d < tol[i], "%s: max abs logit diff %g (tolerance %g)", uhlm_format_name(fmts[i]), d, tol[i]);
        printf("format %-20s max abs logit diff vs llama2.c v0: %.3g\n", uhlm_format_name(fmts[i]), d);
        int t1[40], t2[40];
        uhlm_ctx *g1 = mkctx(m, 1, 1, UHLM_SIMD_AUTO, 0), *g2 = mkctx(m2, 1, 1, UHLM_SIMD_AUTO, 0);
        char *s1 = greedy_text(m, g1, 40, t1), *s2 = greedy_text(m2, g2, 40, t2);
        CHECKF(s1 && s2 && !strcmp(s1, s2), "%s greedy differs:\n%s\n%s", uhlm_format_name(fmts[i]), s1, s2);
        free(s1);
        free(s2);
        uhlm_ctx_free(g1);
        uhlm_ctx_free(g2);
        uhlm_ctx_free(c2);
        uhlm_model_free(m2);
    }
    remove(p1);
    remove(p2);
    remove(p3);
    free(a);
    free(b);
    uhlm_ctx_free(c);
    uhlm_model_free(m);
}

/* GGUF Q8_0 and Q4_0 of the LLM (all dims multiples of 32): documented tolerances, same greedy text */
static void test_quantized(void) {
    uhlm_model *m = load("stories-llm-2.76M.bin", "tok512.bin");
    CHECK(m != NULL);
    if (!m) return;
    int V = uhlm_model_config(m)->vocab_size;
    size_t N = (size_t)NPROBE * V;
    float *a = malloc(N * 4), *b = malloc(N * 4), *s = malloc(N * 4);
    uhlm_ctx *c = mkctx(m, 1, 2, UHLM_SIMD_AUTO, 0);
    CHECK(a && b && s && c && logits_batched(c, 0, probe, NPROBE, a) == 0);
    uhlm_type types[3] = {UHLM_TYPE_F16, UHLM_TYPE_Q8_0, UHLM_TYPE_Q4_0};
    /* Max abs logit error of the format itself (weights AND 8-bit activations), documented in
     * docs/performance.md; logits span ~[-20, 20]. The kernels are checked against an exact
     * reference in test_quant; these bounds are what the formats cost on this model. */
    double tol[3] = {0.05, 0.5, 4.0};
    /* Scalar and SIMD sum in different orders. A 1-ulp difference can flip the rounding of one
     * re-quantized activation, which moves later layers by up to half a quantization step, so
     * the paths agree to a small fraction of the format's own error rather than to float ulps. */
    double simd_tol[3] = {1e-3, 0.03, 0.3};
    int greedy_n[3] = {48, 32, 12};
    for (int i = 0; i < 3; i++) {
        char p[512];
        uhlm_error err = {{0}};
        snprintf(p, sizeof p, "%s/uhlm_test_q_%d_%d.gguf", uhlm_test_tmpdir(), i, (int)getpid());
        CHECKF(uhlm_gguf_save_llama(m, types[i], p, &err) == 0, "%s", err.msg);
        uhlm_model *m2 = uhlm_model_load(p, NULL, &err);
        CHECKF(m2 != NULL, "%s", err.msg);
        if (!m2) continue;
        CHECK(m2->wtype == types[i]);
        uhlm_ctx *c2 = mkctx(m2, 1, 2, UHLM_SIMD_AUTO, 0);
        CHECK(c2 && logits_batched(c2, 0, probe, NPROBE, b) == 0);
        double d = maxdiff(a, b, N);
        printf("gguf %-5s max abs logit diff vs f32: %.3g (tolerance %g)\n", uhlm_type_name(types[i]), d, tol[i]);
        CHECKF(d < tol[i], "%s: %g", uhlm_type_name(types[i]), d);
        /* scalar and SIMD agree closely on the quantized model too */
        uhlm_ctx *cs = mkctx(m2, 1, 1, UHLM_SIMD_SCALAR, 0);
        CHECK(cs && logits_batched(cs, 0, probe, NPROBE, s) == 0);
        printf("gguf %-5s max abs logit diff scalar vs simd: %.3g (tolerance %g)\n",
               uhlm_type_name(types[i]), maxdiff(s, b, N), simd_tol[i]);
        CHECKF(maxdiff(s, b, N) < simd_tol[i], "%s scalar vs simd %g", uhlm_type_name(types[i]), maxdiff(s, b, N));
        int t1[64], t2[64];
        uhlm_ctx *g1 = mkctx(m, 1, 1, UHLM_SIMD_AUTO, 0), *g2 = mkctx(m2, 1, 1, UHLM_SIMD_AUTO, 0);
        char *s1 = greedy_text(m, g1, greedy_n[i], t1), *s2 = greedy_text(m2, g2, greedy_n[i], t2);
        CHECKF(s1 && s2 && !strcmp(s1, s2), "%s greedy differs:\n%s\n%s", uhlm_type_name(types[i]), s1, s2);
        free(s1);
        free(s2);
        uhlm_ctx_free(g1);
        uhlm_ctx_free(g2);
        uhlm_ctx_free(cs);
        uhlm_ctx_free(c2);
        uhlm_model_free(m2);
        remove(p);
    }
    free(a);
    free(b);
    free(s);
    uhlm_ctx_free(c);
    uhlm_model_free(m);
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void expect_fail(const char *path, const char *tok, const char *needle) {
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(path, tok, &err);
    CHECKF(m == NULL && strstr(err.msg, needle) && strstr(err.msg, path),
           "expected failure containing '%s', got '%s'", needle, m ? "(loaded)" : err.msg);
    uhlm_model_free(m);
}

static void test_malformed(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/uhlm_test_bad_%d.bin", uhlm_test_tmpdir(), (int)getpid());
    uhlm_mmap src;
    uhlm_error err = {{0}};
    CHECK(uhlm_mmap_open(&src, uhlm_test_model_path("stories260K.bin"), &err) == 0);
    /* truncated at several points */
    size_t cuts[5] = {3, 27, 100, src.size / 2, src.size - 1};
    for (int i = 0; i < 5; i++) {
        CHECK(write_bytes(p, src.data, cuts[i]) == 0);
        expect_fail(p, NULL, "truncated");
    }
    /* trailing bytes after the last tensor: the header does not describe this file */
    uint8_t *longer = malloc(src.size + 4);
    CHECK(longer != NULL);
    if (longer) {
        memcpy(longer, src.data, src.size);
        memset(longer + src.size, 0, 4);
        CHECK(write_bytes(p, longer, src.size + 4) == 0);
        expect_fail(p, NULL, "does not match");
        free(longer);
    }
    /* absurd dimensions */
    uint8_t *buf = malloc(src.size);
    memcpy(buf, src.data, src.size);
    int32_t bad[3][2] = {{0, -5}, {2, 1 << 30}, {6, 0}};
    for (int i = 0; i < 3; i++) {
        memcpy(buf, src.data, 28);
        memcpy(buf + bad[i][0] * 4, &bad[i][1], 4);
        CHECK(write_bytes(p, buf, src.size) == 0);
        expect_fail(p, NULL, "absurd");
    }
    /* heads that do not divide */
    memcpy(buf, src.data, 28);
    int32_t h = 7;
    memcpy(buf + 12, &h, 4);
    CHECK(write_bytes(p, buf, src.size) == 0);
    expect_fail(p, NULL, "heads");
    /* v1 header with an unsupported version */
    uint32_t magic = 0x616b3432;
    int32_t ver = 9;
    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &ver, 4);
    CHECK(write_bytes(p, buf, 300) == 0);
    expect_fail(p, NULL, "version");
    /* vocabulary that disagrees with the tokenizer */
    expect_fail(uhlm_test_model_path("stories260K.bin"), uhlm_test_model_path("tokenizer.bin"), "vocabulary");
    /* missing and empty files */
    expect_fail("/nonexistent/model.bin", NULL, "cannot open");
    CHECK(write_bytes(p, buf, 0) == 0);
    expect_fail(p, NULL, "empty");
    free(buf);
    uhlm_mmap_close(&src);
    remove(p);
}

int main(void) {
    test_reference_text();
    test_consistency("stories260K.bin");
    test_consistency("stories-slm-0.28M.bin");
    test_formats();
    test_quantized();
    test_malformed();
    return check_report();
}
