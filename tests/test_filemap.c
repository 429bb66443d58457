/* test_filemap.c: how model files come into memory (uhlm_load_mode).
 *
 * - a copy holds the file's exact bytes, 2 MiB aligned, and says it is a copy; AUTO maps
 *   files under UHLM_LOAD_COPY_MIN;
 * - mapped and copied models (llama2.c and GGUF Q8_0) give bit-identical logits;
 * - missing, empty and non-regular files, and unknown modes, fail with messages. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

static void test_names(void) {
    uhlm_load_mode m;
    const char *names[] = {"auto", "mmap", "copy"};
    for (int i = 0; i < 3; i++) {
        CHECK(uhlm_load_mode_from_name(names[i], &m) == 0);
        CHECK(!strcmp(uhlm_load_mode_name(m), names[i]));
    }
    CHECK(uhlm_load_mode_from_name("huge", &m) == -1);
    CHECK(uhlm_load_mode_from_name(NULL, &m) == -1);
}

static void test_bytes(void) {
    const char *path = uhlm_test_model_path("stories260K.bin");
    uhlm_error err = {{0}};
    uhlm_mmap a, b, c;
    CHECKF(uhlm_file_load(&a, path, UHLM_LOAD_MMAP, &err) == 0, "%s", err.msg);
    CHECKF(uhlm_file_load(&b, path, UHLM_LOAD_COPY, &err) == 0, "%s", err.msg);
    CHECKF(uhlm_file_load(&c, path, UHLM_LOAD_AUTO, &err) == 0, "%s", err.msg);
    CHECK(a.mode == UHLM_LOAD_MMAP && b.mode == UHLM_LOAD_COPY);
    CHECK(c.mode == UHLM_LOAD_MMAP); /* 1 MB: under UHLM_LOAD_COPY_MIN */
    CHECK(a.size == b.size && a.size > 0 && memcmp(a.data, b.data, a.size) == 0);
    CHECK(((uintptr_t)b.data & (((uintptr_t)2 << 20) - 1)) == 0);
    int64_t h = uhlm_file_huge_bytes(&b);
    CHECK(h >= -1 && h <= (int64_t)b.size);
    uhlm_mmap_close(&a);
    uhlm_mmap_close(&b);
    uhlm_mmap_close(&c);
    CHECK(b.data == NULL && b.size == 0);
    uhlm_mmap_close(&b); /* twice: harmless */
}

static void test_errors(void) {
    uhlm_error err = {{0}};
    uhlm_mmap m;
    CHECK(uhlm_file_load(&m, "/nonexistent/model.gguf", UHLM_LOAD_COPY, &err) != 0);
    CHECK(strstr(err.msg, "/nonexistent/model.gguf") && strstr(err.msg, "cannot open"));
    CHECK(uhlm_file_load(&m, uhlm_test_tmpdir(), UHLM_LOAD_COPY, &err) != 0);
    CHECK(strstr(err.msg, "not a regular file") != NULL);
    char p[1024];
    snprintf(p, sizeof p, "%s/uhlm_test_empty_%d.bin", uhlm_test_tmpdir(), (int)getpid());
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (f) fclose(f);
    CHECK(uhlm_file_load(&m, p, UHLM_LOAD_COPY, &err) != 0);
    CHECK(strstr(err.msg, "empty") != NULL);
    unlink(p);
    CHECK(uhlm_file_load(&m, uhlm_test_model_path("stories260K.bin"), (uhlm_load_mode)7, &err) != 0);
    CHECK(strstr(err.msg, "load mode") != NULL);
    uhlm_model_params mp = uhlm_model_default_params();
    CHECK(mp.load == UHLM_LOAD_AUTO);
    mp.load = (uhlm_load_mode)-1;
    CHECK(uhlm_model_load_params(uhlm_test_model_path("stories260K.bin"), NULL, &mp, &err) == NULL);
    CHECK(strstr(err.msg, "load mode") != NULL);
}

/* greedy logits of n steps from BOS, concatenated */
static float *run(const char *path, uhlm_load_mode mode, int n) {
    uhlm_error err = {{0}};
    uhlm_model_params mp = uhlm_model_default_params();
    mp.load = mode;
    uhlm_model *m = uhlm_model_load_params(path, NULL, &mp, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (!m) return NULL;
    CHECK(uhlm_model_load_mode(m) == mode);
    CHECK(uhlm_model_file_bytes(m) > 0);
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    uhlm_ctx *c = uhlm_ctx_new(m, &cp, &err);
    CHECKF(c != NULL, "%s", err.msg);
    const int V = uhlm_model_n_vocab(m);
    float *out = c ? calloc((size_t)n * (size_t)V, sizeof(float)) : NULL;
    CHECK(out != NULL);
    int tok = 1;
    for (int i = 0; out && i < n; i++) {
        uhlm_batch_entry e = {0, i, tok, 1};
        CHECKF(uhlm_decode(c, &e, 1, out + (size_t)i * (size_t)V, NULL, &err) == 0, "%s", err.msg);
        tok = uhlm_argmax(out + (size_t)i * (size_t)V, V);
    }
    uhlm_ctx_free(c);
    uhlm_model_free(m);
    return out;
}

static void same_logits(const char *path, int V, const char *what) {
    const int n = 12;
    float *a = run(path, UHLM_LOAD_MMAP, n), *b = run(path, UHLM_LOAD_COPY, n);
    CHECKF(a && b && memcmp(a, b, sizeof(float) * (size_t)n * (size_t)V) == 0,
           "%s: mapped and copied logits differ", what);
    free(a);
    free(b);
}

static void test_models(void) {
    const char *l2c = uhlm_test_model_path("stories260K.bin");
    same_logits(l2c, 512, "llama2.c");
    /* a GGUF with quantized matrices, written from the same weights */
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(l2c, uhlm_test_model_path("tok512.bin"), &err);
    CHECKF(m != NULL, "%s", err.msg);
    char p[1024];
    snprintf(p, sizeof p, "%s/uhlm_test_load_%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    CHECKF(m && uhlm_gguf_save_llama(m, UHLM_TYPE_Q8_0, p, &err) == 0, "%s", err.msg);
    uhlm_model_free(m);
    same_logits(p, 512, "GGUF Q8_0");
    unlink(p);
}

int main(void) {
    test_names();
    test_bytes();
    test_errors();
    test_models();
    return check_report();
}
