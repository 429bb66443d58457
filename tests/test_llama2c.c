/* test_llama2c.c: the llama2.c checkpoint loader on hostile input.
 *
 * Tiny checkpoints of each version (v0 legacy, v1 fp32, v2 int8 groups) are built in memory:
 * - each loads, with the header's shape;
 * - every header field set to the int32 extremes (INT32_MIN, -1, 0, INT32_MAX) fails with a
 *   message, never undefined behaviour (a v0 vocab size of INT32_MIN used to be negated, an
 *   overflow the sanitizer build aborted on);
 * - truncations (every cut in the header, a spread through the weights) fail, as do trailing bytes, and random byte flips never crash. */
#include <limits.h>
#include <stdint.h>

#include "check.h"
#include "uhlm/model.h"

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = (b->n + n) * 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_i32(bytes *b, int32_t v) { put(b, &v, 4); }

static void put_floats(bytes *b, size_t n, float v) {
    for (size_t i = 0; i < n; i++) put(b, &v, 4);
}

static void put_i8s(bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int8_t v = (int8_t)(i % 7) - 3;
        put(b, &v, 1);
    }
}

/* dim 8, hidden 16, 1 layer, 2 heads, 2 kv heads, vocab 4, seq_len 4 */
enum { D = 8, H = 16, L = 1, NH = 2, V = 4, S = 4, GROUP = 8 };

/* Offset of the 7 int32 config fields: 0 in v0, 8 (after magic and version) in v1/v2. */
static size_t cfg_off(int version) { return version == 0 ? 0 : 8; }

static void build(bytes *b, int version, int shared) {
    b->n = 0;
    int32_t hdr[7] = {D, H, L, NH, NH, shared || version ? V : -V, S};
    if (version == 0) {
        for (int i = 0; i < 7; i++) put_i32(b, hdr[i]);
    } else {
        put_i32(b, 0x616b3432);
        put_i32(b, version);
        for (int i = 0; i < 7; i++) put_i32(b, hdr[i]);
        uint8_t sh = (uint8_t)(shared != 0);
        put(b, &sh, 1);
        if (version == 2) put_i32(b, GROUP);
        uint8_t z = 0;
        while (b->n < 256) put(b, &z, 1);
    }
    size_t mats[] = {(size_t)V * D, (size_t)D * D, (size_t)D * D, (size_t)D * D, (size_t)D * D,
                     (size_t)H * D, (size_t)D * H, (size_t)H * D};
    if (version == 0) {
        put_floats(b, mats[0], 0.01f);
        put_floats(b, D, 1.0f);
        for (int k = 1; k <= 4; k++) put_floats(b, mats[k], 0.02f);
        put_floats(b, D, 1.0f);
        for (int k = 5; k <= 7; k++) put_floats(b, mats[k], 0.02f);
        put_floats(b, D, 1.0f);
        put_floats(b, (size_t)S * (D / NH), 0.5f); /* rope tables */
        if (!shared) put_floats(b, mats[0], 0.01f);
        return;
    }
    put_floats(b, D, 1.0f); /* attn norm */
    put_floats(b, D, 1.0f); /* ffn norm */
    put_floats(b, D, 1.0f); /* final norm */
    size_t nm = shared ? 8 : 9;
    for (size_t k = 0; k < nm; k++) {
        size_t n = mats[k < 8 ? k : 0];
        if (version == 1) put_floats(b, n, 0.02f);
        else put_i8s(b, n);
    }
    if (version == 2)
        for (size_t k = 0; k < nm; k++) put_floats(b, mats[k < 8 ? k : 0] / GROUP, 0.01f);
}

static const char *tmp_file(void) {
    static char path[1024];
    if (!path[0])
        snprintf(path, sizeof path, "%s/uhlm_test_llama2c_%d.bin", uhlm_test_tmpdir(),
                 (int)getpid());
    return path;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* Loads the bytes; returns 1 if loaded. A failure must name the file. */
static int try_load(const uint8_t *p, size_t n, char *msg, size_t cap) {
    const char *path = tmp_file();
    write_file(path, p, n);
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    if (msg) snprintf(msg, cap, "%s", err.msg);
    if (!m) {
        CHECKF(strstr(err.msg, path) != NULL, "message without the path: %s", err.msg);
        return 0;
    }
    uhlm_model_free(m);
    return 1;
}

static void test_valid(void) {
    bytes b = {0};
    for (int version = 0; version <= 2; version++)
        for (int shared = 0; shared <= 1; shared++) {
            build(&b, version, shared);
            uhlm_error err = {{0}};
            write_file(tmp_file(), b.p, b.n);
            uhlm_model *m = uhlm_model_load(tmp_file(), NULL, &err);
            CHECKF(m != NULL, "v%d shared %d: %s", version, shared, err.msg);
            if (m) {
                CHECK(uhlm_model_config(m)->dim == D && uhlm_model_config(m)->vocab_size == V && uhlm_model_config(m)->hidden_dim == H &&
                      uhlm_model_config(m)->seq_len == S && uhlm_model_config(m)->shared_classifier == shared);
                uhlm_model_free(m);
            }
        }
    free(b.p);
}

static void test_header_extremes(void) {
    static const int32_t vals[] = {INT32_MIN, INT32_MIN + 1, -1, 0, INT32_MAX};
    bytes b = {0};
    char msg[1024];
    for (int version = 0; version <= 2; version++)
        for (int field = 0; field < 7 + (version == 2); field++)
            for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
                build(&b, version, 1);
                /* v2's group size is the int32 after the shared byte, at 37 */
                size_t at = field < 7 ? cfg_off(version) + 4 * (size_t)field : 37;
                memcpy(b.p + at, &vals[k], 4);
                int loaded = try_load(b.p, b.n, msg, sizeof msg);
                /* -1 as a v0 vocab size is a valid unshared classifier of 1 token, which
                 * then does not match the file size; nothing else may load either */
                CHECKF(!loaded, "v%d field %d = %d loaded", version, field, vals[k]);
            }
    /* the reported case: v0 with vocab INT32_MIN */
    build(&b, 0, 1);
    int32_t v = INT32_MIN;
    memcpy(b.p + 20, &v, 4);
    CHECK(!try_load(b.p, b.n, msg, sizeof msg));
    CHECKF(strstr(msg, "vocab size -2147483648") != NULL, "%s", msg);
    free(b.p);
}

static void test_truncation_and_flips(void) {
    bytes b = {0};
    char msg[1024];
    for (int version = 0; version <= 2; version++) {
        build(&b, version, version != 1);
        int bad = 0;
        /* every cut in the header, then a spread of cuts through the weights (each try is a
         * file write, so not all of them) and the last few bytes */
        for (size_t len = 0; len < b.n; len += len < 300 || len + 8 > b.n ? 1 : 61)
            bad += try_load(b.p, len, NULL, 0);
        CHECKF(bad == 0, "v%d: %d truncations loaded", version, bad);
        uint8_t z = 0;
        put(&b, &z, 1);
        CHECK(!try_load(b.p, b.n, msg, sizeof msg));
        b.n--;
        /* byte flips in the header and the first weights */
        uint32_t seed = 12345u + (uint32_t)version;
        uint8_t *mut = malloc(b.n);
        if (!mut) exit(2);
        for (int it = 0; it < 300; it++) {
            memcpy(mut, b.p, b.n);
            for (int f = 0; f < 3; f++) {
                seed = seed * 1664525u + 1013904223u;
                size_t at = (seed >> 8) % (version == 0 ? 32 : 300);
                seed = seed * 1664525u + 1013904223u;
                mut[at < b.n ? at : 0] ^= (uint8_t)(1u << ((seed >> 16) & 7));
            }
            try_load(mut, b.n, NULL, 0);
        }
        free(mut);
    }
    free(b.p);
}

int main(void) {
    test_valid();
    test_header_extremes();
    test_truncation_and_flips();
    unlink(tmp_file());
    return check_report();
}
