/* test_gguf.c: the GGUF reader/writer and the llama mapping.
 *
 * - writer -> reader round trip of every setter and of tensors of each type and rank;
 * - a hand-built file with all 13 value types (nested arrays included), v2 and v3;
 * - malformed files fail at open with a message naming the file and the defect: bad magic,
 *   versions 1 and 99, truncation at every byte offset, absurd counts and lengths, bad tensor
 *   shapes/types/offsets, bad alignment, duplicates; random byte corruption never crashes;
 * - llama level: missing tensor, wrong shape, wrong architecture, vocabulary disagreements;
 * - stories260K (llama2.c + tok512.bin) -> GGUF F32 -> uhlm_model_load gives the same config,
 *   vocabulary and bit-identical weights; F16/Q8_0/Q4_0 equal quantize-then-dequantize of the
 *   original rows, with the documented F32 fallback for rows not a multiple of 32;
 * - `uhlm convert` (when CTest gives $UHLM_BIN): random shapes are reproducible, marked
 *   synthetic and shaped like stories15M; usage errors exit 2;
 * - corrupt models: tensor data that overlaps or leaves gaps (a changed type or offset) fails at
 *   open; NaN weights make uhlm_decode fail (non-finite logits) and generate exit 1 with no text. */
#include <stdarg.h>
#include <stdint.h>
#include <sys/wait.h>

#include "check.h"
#include "model/format/gguf.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

/* ------------------------------------------------------------------ helpers */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(bytes *b, uint16_t v) { put(b, &v, 2); }
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_pad(bytes *b, size_t a) {
    while (b->n % a) put_u8(b, 0);
}

/* One stable path per name for the whole run, so callers may hold the pointer. */
static const char *tmp_path(const char *name) {
    static char names[32][64], paths[32][1024];
    static int n;
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return paths[i];
    if (n == 32 || strlen(name) >= sizeof names[0]) {
        fprintf(stderr, "tmp_path: too many or too long names\n");
        exit(2);
    }
    snprintf(names[n], sizeof names[n], "%s", name);
    snprintf(paths[n], sizeof paths[n], "%s/uhlm_test_gguf_%d_%s", uhlm_test_tmpdir(), (int)getpid(),
             name);
    return paths[n++];
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(sz > 0 ? (size_t)sz : 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return p;
}

/* The open must fail, and the message must name the file and contain `want`. */
#define EXPECT_FAIL(path, want)                                                              \
    do {                                                                                     \
        uhlm_error e_ = {{0}};                                                               \
        uhlm_gguf *g_ = uhlm_gguf_open((path), &e_);                                         \
        CHECKF(!g_ && strstr(e_.msg, (want)) && strstr(e_.msg, (path)),                      \
               "expected failure with '%s', got %s: %s", (want), g_ ? "success" : "error", \
               e_.msg);                                                                      \
        uhlm_gguf_close(g_);                                                                 \
    } while (0)

static int str_is(uhlm_gguf_str s, const char *v) {
    return s.len == strlen(v) && memcmp(s.s, v, s.len) == 0;
}

/* ------------------------------------------------------------------ writer round trip */

static void test_writer_roundtrip(void) {
    const char *path = tmp_path("rt.gguf");
    uhlm_error err = {{0}};
    uhlm_gguf_writer *w = uhlm_gguf_writer_new(&err);
    CHECK(w != NULL);
    if (!w) return;
    float af[3] = {1.5f, -2.0f, 1e-30f};
    int32_t ai[4] = {-1, 0, 7, INT32_MIN};
    const char *as[3] = {"alpha", "", "nul\0inside"};
    size_t al[3] = {5, 0, 10};
    CHECK(uhlm_gguf_set_u32(w, "t.u32", 0xdeadbeefu) == 0);
    CHECK(uhlm_gguf_set_i32(w, "t.i32", -123456) == 0);
    CHECK(uhlm_gguf_set_f32(w, "t.f32", 3.25f) == 0);
    CHECK(uhlm_gguf_set_bool(w, "t.bool", 7) == 0);
    CHECK(uhlm_gguf_set_str(w, "t.str", "hello \xe2\x96\x81 world") == 0);
    CHECK(uhlm_gguf_set_str(w, "t.empty", "") == 0);
    CHECK(uhlm_gguf_set_arr_f32(w, "t.af", af, 3) == 0);
    CHECK(uhlm_gguf_set_arr_i32(w, "t.ai", ai, 4) == 0);
    CHECK(uhlm_gguf_set_arr_i32(w, "t.ai0", NULL, 0) == 0);
    CHECK(uhlm_gguf_set_arr_str(w, "t.as", as, al, 3) == 0);
    CHECK(uhlm_gguf_set_u32(w, "t.replaced", 1) == 0);
    CHECK(uhlm_gguf_set_str(w, "t.replaced", "second") == 0); /* replaces, keeps the count */

    float f32[12];
    for (int i = 0; i < 12; i++) f32[i] = (float)i * 0.5f - 3.0f;
    uint16_t f16[8];
    for (int i = 0; i < 8; i++) f16[i] = (uint16_t)(0x3c00 + i);
    uint8_t q8[2 * 2 * 34], q4[3 * 2 * 18];
    for (size_t i = 0; i < sizeof q8; i++) q8[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof q4; i++) q4[i] = (uint8_t)(i * 13);
    float f4d[6] = {1, 2, 3, 4, 5, 6};
    uint64_t ne_f32[2] = {4, 3}, ne_f16[1] = {8}, ne_q8[2] = {64, 2}, ne_q4[3] = {32, 3, 2},
             ne_4d[4] = {2, 1, 1, 3};
    CHECK(uhlm_gguf_add_tensor(w, "m.f32", UHLM_TYPE_F32, 2, ne_f32, f32, sizeof f32) == 0);
    CHECK(uhlm_gguf_add_tensor(w, "v.f16", UHLM_TYPE_F16, 1, ne_f16, f16, sizeof f16) == 0);
    CHECK(uhlm_gguf_add_tensor(w, "m.q8", UHLM_TYPE_Q8_0, 2, ne_q8, q8, sizeof q8) == 0);
    CHECK(uhlm_gguf_add_tensor(w, "t.q4", UHLM_TYPE_Q4_0, 3, ne_q4, q4, sizeof q4) == 0);
    CHECK(uhlm_gguf_add_tensor(w, "t.4d", UHLM_TYPE_F32, 4, ne_4d, f4d, sizeof f4d) == 0);
    CHECK(uhlm_gguf_write(w, path, &err) == 0);
    uhlm_gguf_writer_free(w);

    uhlm_gguf *g = uhlm_gguf_open(path, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (!g) return;
    CHECK(uhlm_gguf_version(g) == 3);
    CHECK(!strcmp(uhlm_gguf_path(g), path));
    CHECK(uhlm_gguf_n_kv(g) == 11);
    CHECK(uhlm_gguf_n_tensors(g) == 5);
    int64_t iv = 0;
    double fv = 0;
    uhlm_gguf_str sv;
    CHECK(uhlm_gguf_get_int(g, "t.u32", &iv, &err) == 0 && iv == 0xdeadbeefLL);
    CHECK(uhlm_gguf_get_int(g, "t.i32", &iv, &err) == 0 && iv == -123456);
    CHECK(uhlm_gguf_get_float(g, "t.f32", &fv, &err) == 0 && fv == 3.25);
    const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(g, "t.bool");
    CHECK(kv && kv->type == UHLM_GGUF_BOOL && kv->v.u == 1);
    CHECK(uhlm_gguf_get_str(g, "t.str", &sv, &err) == 0 && str_is(sv, "hello \xe2\x96\x81 world"));
    CHECK(uhlm_gguf_get_str(g, "t.empty", &sv, &err) == 0 && sv.len == 0);
    CHECK(uhlm_gguf_get_str(g, "t.replaced", &sv, &err) == 0 && str_is(sv, "second"));
    kv = uhlm_gguf_find_kv(g, "t.af");
    CHECK(kv && kv->type == UHLM_GGUF_ARRAY && kv->arr_type == UHLM_GGUF_FLOAT32 && kv->arr_n == 3 &&
          !memcmp(kv->data, af, sizeof af));
    kv = uhlm_gguf_find_kv(g, "t.ai");
    CHECK(kv && kv->arr_type == UHLM_GGUF_INT32 && kv->arr_n == 4 && !memcmp(kv->data, ai, sizeof ai));
    kv = uhlm_gguf_find_kv(g, "t.ai0");
    CHECK(kv && kv->arr_type == UHLM_GGUF_INT32 && kv->arr_n == 0);
    kv = uhlm_gguf_find_kv(g, "t.as");
    CHECK(kv && kv->arr_type == UHLM_GGUF_STRING && kv->arr_n == 3 && kv->strs);
    if (kv && kv->strs && kv->arr_n == 3)
        for (int i = 0; i < 3; i++)
            CHECK(kv->strs[i].len == al[i] && !memcmp(kv->strs[i].s, as[i], al[i]));
    /* kv_at walks the file order */
    kv = uhlm_gguf_kv_at(g, 0);
    CHECK(kv && str_is(kv->key, "t.u32"));
    CHECK(uhlm_gguf_kv_at(g, 11) == NULL);
    CHECK(uhlm_gguf_find_kv(g, "nope") == NULL);
    CHECK(uhlm_gguf_get_int(g, "nope", &iv, &err) != 0 && strstr(err.msg, "missing key 'nope'"));
    CHECK(uhlm_gguf_get_int(g, "t.str", &iv, &err) != 0 && strstr(err.msg, "expected an integer"));
    CHECK(uhlm_gguf_get_float(g, "t.u32", &fv, &err) != 0 && strstr(err.msg, "expected a float"));
    CHECK(uhlm_gguf_get_str(g, "t.f32", &sv, &err) != 0 && strstr(err.msg, "expected a string"));

    struct {
        const char *name;
        uhlm_type type;
        uint32_t nd;
        const uint64_t *ne;
        const void *data;
        size_t nbytes;
    } want[5] = {{"m.f32", UHLM_TYPE_F32, 2, ne_f32, f32, sizeof f32},
                 {"v.f16", UHLM_TYPE_F16, 1, ne_f16, f16, sizeof f16},
                 {"m.q8", UHLM_TYPE_Q8_0, 2, ne_q8, q8, sizeof q8},
                 {"t.q4", UHLM_TYPE_Q4_0, 3, ne_q4, q4, sizeof q4},
                 {"t.4d", UHLM_TYPE_F32, 4, ne_4d, f4d, sizeof f4d}};
    for (int i = 0; i < 5; i++) {
        const uhlm_gguf_tensor *t = uhlm_gguf_find_tensor(g, want[i].name);
        CHECKF(t != NULL, "%s", want[i].name);
        if (!t) continue;
        CHECK(t == uhlm_gguf_tensor_at(g, (uint64_t)i));
        CHECK(t->type == want[i].type && t->n_dims == want[i].nd && t->nbytes == want[i].nbytes);
        for (uint32_t d = 0; d < 4; d++) CHECK(t->ne[d] == (d < want[i].nd ? want[i].ne[d] : 1));
        CHECK(t->offset % UHLM_GGUF_DEFAULT_ALIGNMENT == 0);
        CHECK(!memcmp(t->data, want[i].data, want[i].nbytes));
    }
    CHECK(uhlm_gguf_find_tensor(g, "m.f3") == NULL);
    CHECK(uhlm_gguf_find_tensor(g, "zzz") == NULL);
    uhlm_gguf_close(g);

    /* writer-side validation: the failed call returns -1 and the write reports why */
    w = uhlm_gguf_writer_new(&err);
    CHECK(uhlm_gguf_add_tensor(w, "a", UHLM_TYPE_F32, 2, ne_f32, f32, sizeof f32) == 0);
    CHECK(uhlm_gguf_add_tensor(w, "a", UHLM_TYPE_F32, 2, ne_f32, f32, sizeof f32) != 0);
    CHECK(uhlm_gguf_write(w, tmp_path("bad.gguf"), &err) != 0 && strstr(err.msg, "duplicate tensor name 'a'"));
    CHECK(access(tmp_path("bad.gguf"), F_OK) != 0);
    uhlm_gguf_writer_free(w);
    w = uhlm_gguf_writer_new(&err);
    CHECK(uhlm_gguf_add_tensor(w, "a", UHLM_TYPE_F32, 2, ne_f32, f32, sizeof f32 - 4) != 0);
    CHECK(uhlm_gguf_write(w, tmp_path("bad.gguf"), &err) != 0 && strstr(err.msg, "bytes given"));
    uhlm_gguf_writer_free(w);
    w = uhlm_gguf_writer_new(&err);
    uint64_t ne33[1] = {33};
    CHECK(uhlm_gguf_add_tensor(w, "q", UHLM_TYPE_Q8_0, 1, ne33, q8, 34) != 0);
    CHECK(uhlm_gguf_add_tensor(w, "g", UHLM_TYPE_Q8_G, 1, ne33, q8, 33) != 0);
    CHECK(uhlm_gguf_write(w, tmp_path("bad.gguf"), &err) != 0 && strstr(err.msg, "block size"));
    uhlm_gguf_writer_free(w);
    w = uhlm_gguf_writer_new(&err);
    CHECK(uhlm_gguf_set_u32(w, "general.alignment", 3) == 0);
    CHECK(uhlm_gguf_write(w, tmp_path("bad.gguf"), &err) != 0 && strstr(err.msg, "power of two"));
    uhlm_gguf_writer_free(w);
    /* a custom alignment is honoured by writer and reader */
    w = uhlm_gguf_writer_new(&err);
    CHECK(uhlm_gguf_set_u32(w, "general.alignment", 64) == 0);
    CHECK(uhlm_gguf_add_tensor(w, "a", UHLM_TYPE_F32, 1, ne_f16, f32, 32) == 0);
    CHECK(uhlm_gguf_add_tensor(w, "b", UHLM_TYPE_F32, 1, ne_f16, f32, 32) == 0);
    CHECK(uhlm_gguf_write(w, path, &err) == 0);
    uhlm_gguf_writer_free(w);
    g = uhlm_gguf_open(path, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        const uhlm_gguf_tensor *b = uhlm_gguf_find_tensor(g, "b");
        CHECK(b && b->offset == 64 && !memcmp(b->data, f32, 32));
        uhlm_gguf_close(g);
    }
    /* I/O failure: the directory does not exist */
    w = uhlm_gguf_writer_new(&err);
    CHECK(uhlm_gguf_write(w, "/nonexistent-dir-uhlm/x.gguf", &err) != 0 &&
          strstr(err.msg, "cannot create"));
    uhlm_gguf_writer_free(w);
    unlink(path);
}

/* ------------------------------------------------------------------ every value type */

static void put_kv_hdr(bytes *b, const char *key, uint32_t type) {
    put_str(b, key);
    put_u32(b, type);
}

static void test_all_value_types(void) {
    for (uint32_t version = 2; version <= 3; version++) {
        bytes b = {0};
        put_u32(&b, UHLM_GGUF_MAGIC);
        put_u32(&b, version);
        put_u64(&b, 1);  /* tensors */
        put_u64(&b, 18); /* kv */
        put_kv_hdr(&b, "v.u8", UHLM_GGUF_UINT8); put_u8(&b, 200);
        put_kv_hdr(&b, "v.i8", UHLM_GGUF_INT8); put_u8(&b, (uint8_t)-100);
        put_kv_hdr(&b, "v.u16", UHLM_GGUF_UINT16); put_u16(&b, 65000);
        put_kv_hdr(&b, "v.i16", UHLM_GGUF_INT16); put_u16(&b, (uint16_t)-30000);
        put_kv_hdr(&b, "v.u32", UHLM_GGUF_UINT32); put_u32(&b, 4000000000u);
        put_kv_hdr(&b, "v.i32", UHLM_GGUF_INT32); put_u32(&b, (uint32_t)-2000000000);
        float f = -0.75f;
        put_kv_hdr(&b, "v.f32", UHLM_GGUF_FLOAT32); put(&b, &f, 4);
        put_kv_hdr(&b, "v.bool", UHLM_GGUF_BOOL); put_u8(&b, 1);
        put_kv_hdr(&b, "v.str", UHLM_GGUF_STRING); put_str(&b, "text");
        put_kv_hdr(&b, "v.u64", UHLM_GGUF_UINT64); put_u64(&b, UINT64_MAX);
        put_kv_hdr(&b, "v.i64", UHLM_GGUF_INT64); put_u64(&b, (uint64_t)INT64_MIN);
        double d = 1e300;
        put_kv_hdr(&b, "v.f64", UHLM_GGUF_FLOAT64); put(&b, &d, 8);
        /* arrays: of u16, of bools, of strings, of arrays of u8, of arrays of strings, of
         * arrays of arrays */
        put_kv_hdr(&b, "a.u16", UHLM_GGUF_ARRAY); put_u32(&b, UHLM_GGUF_UINT16); put_u64(&b, 3);
        put_u16(&b, 1); put_u16(&b, 2); put_u16(&b, 3);
        put_kv_hdr(&b, "a.bool", UHLM_GGUF_ARRAY); put_u32(&b, UHLM_GGUF_BOOL); put_u64(&b, 2);
        put_u8(&b, 0); put_u8(&b, 1);
        put_kv_hdr(&b, "a.str", UHLM_GGUF_ARRAY); put_u32(&b, UHLM_GGUF_STRING); put_u64(&b, 2);
        put_str(&b, "x"); put_str(&b, "yz");
        put_kv_hdr(&b, "a.arr", UHLM_GGUF_ARRAY); put_u32(&b, UHLM_GGUF_ARRAY); put_u64(&b, 2);
        put_u32(&b, UHLM_GGUF_UINT8); put_u64(&b, 2); put_u8(&b, 9); put_u8(&b, 8);
        put_u32(&b, UHLM_GGUF_UINT8); put_u64(&b, 0);
        put_kv_hdr(&b, "a.arrstr", UHLM_GGUF_ARRAY); put_u32(&b, UHLM_GGUF_ARRAY); put_u64(&b, 1);
        put_u32(&b, UHLM_GGUF_STRING); put_u64(&b, 2); put_str(&b, "p"); put_str(&b, "q");
        put_kv_hdr(&b, "a.deep", UHLM_GGUF_ARRAY); put_u32(&b, UHLM_GGUF_ARRAY); put_u64(&b, 1);
        put_u32(&b, UHLM_GGUF_ARRAY); put_u64(&b, 1);
        put_u32(&b, UHLM_GGUF_FLOAT64); put_u64(&b, 1); put(&b, &d, 8);
        /* tensor */
        put_str(&b, "w");
        put_u32(&b, 1);
        put_u64(&b, 4);
        put_u32(&b, UHLM_TYPE_F32);
        put_u64(&b, 0);
        put_pad(&b, 32);
        float data[4] = {1, 2, 3, 4};
        put(&b, data, sizeof data);
        const char *path = tmp_path("types.gguf");
        write_file(path, b.p, b.n);
        free(b.p);

        uhlm_error err = {{0}};
        uhlm_gguf *g = uhlm_gguf_open(path, &err);
        CHECKF(g != NULL, "v%u: %s", version, err.msg);
        if (!g) continue;
        CHECK(uhlm_gguf_version(g) == version);
        int64_t iv;
        double fv;
        CHECK(uhlm_gguf_get_int(g, "v.u8", &iv, &err) == 0 && iv == 200);
        CHECK(uhlm_gguf_get_int(g, "v.i8", &iv, &err) == 0 && iv == -100);
        CHECK(uhlm_gguf_get_int(g, "v.u16", &iv, &err) == 0 && iv == 65000);
        CHECK(uhlm_gguf_get_int(g, "v.i16", &iv, &err) == 0 && iv == -30000);
        CHECK(uhlm_gguf_get_int(g, "v.u32", &iv, &err) == 0 && iv == 4000000000LL);
        CHECK(uhlm_gguf_get_int(g, "v.i32", &iv, &err) == 0 && iv == -2000000000LL);
        CHECK(uhlm_gguf_get_float(g, "v.f32", &fv, &err) == 0 && fv == -0.75);
        CHECK(uhlm_gguf_get_int(g, "v.bool", &iv, &err) != 0);
        CHECK(uhlm_gguf_find_kv(g, "v.bool")->v.u == 1);
        uhlm_gguf_str s;
        CHECK(uhlm_gguf_get_str(g, "v.str", &s, &err) == 0 && str_is(s, "text"));
        CHECK(uhlm_gguf_get_int(g, "v.u64", &iv, &err) != 0 && strstr(err.msg, "out of range"));
        CHECK(uhlm_gguf_find_kv(g, "v.u64")->v.u == UINT64_MAX);
        CHECK(uhlm_gguf_get_int(g, "v.i64", &iv, &err) == 0 && iv == INT64_MIN);
        CHECK(uhlm_gguf_get_float(g, "v.f64", &fv, &err) == 0 && fv == 1e300);
        const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(g, "a.u16");
        uint16_t u16[3];
        CHECK(kv && kv->arr_n == 3 && kv->arr_type == UHLM_GGUF_UINT16);
        if (kv) {
            memcpy(u16, kv->data, 6);
            CHECK(u16[0] == 1 && u16[1] == 2 && u16[2] == 3);
        }
        kv = uhlm_gguf_find_kv(g, "a.str");
        CHECK(kv && kv->arr_n == 2 && str_is(kv->strs[0], "x") && str_is(kv->strs[1], "yz"));
        kv = uhlm_gguf_find_kv(g, "a.arr");
        CHECK(kv && kv->arr_type == UHLM_GGUF_ARRAY && kv->arr_n == 2 && kv->data);
        kv = uhlm_gguf_find_kv(g, "a.deep");
        CHECK(kv && kv->arr_type == UHLM_GGUF_ARRAY && kv->arr_n == 1);
        const uhlm_gguf_tensor *t = uhlm_gguf_find_tensor(g, "w");
        CHECK(t && t->nbytes == 16 && !memcmp(t->data, data, 16));
        uhlm_gguf_close(g);
        unlink(path);
    }
}

/* ------------------------------------------------------------------ malformed files */

/* A one- or two-tensor file whose every field can be bent. */
typedef struct {
    uint32_t magic, version;
    int64_t n_tensors_hdr, n_kv_hdr; /* -1: the true count */
    int align_kind;                  /* 0 absent, 1 uint32, 2 uint64 */
    uint64_t align;
    int n_t;
    struct {
        const char *name;
        uint32_t n_dims;
        uint64_t ne[5];
        uint32_t type;
        uint64_t offset;
    } t[2];
    uint64_t data_bytes;
} fspec;

static fspec base_spec(void) {
    fspec s;
    memset(&s, 0, sizeof s);
    s.magic = UHLM_GGUF_MAGIC;
    s.version = 3;
    s.n_tensors_hdr = s.n_kv_hdr = -1;
    s.n_t = 2;
    s.t[0].name = "a";
    s.t[0].n_dims = 2;
    s.t[0].ne[0] = 4;
    s.t[0].ne[1] = 2;
    s.t[0].type = UHLM_TYPE_F32;
    s.t[1] = s.t[0];
    s.t[1].name = "b";
    s.t[1].offset = 32;
    s.data_bytes = 64;
    return s;
}

static void build(const char *path, const fspec *s) {
    bytes b = {0};
    put_u32(&b, s->magic);
    put_u32(&b, s->version);
    put_u64(&b, s->n_tensors_hdr >= 0 ? (uint64_t)s->n_tensors_hdr : (uint64_t)s->n_t);
    put_u64(&b, s->n_kv_hdr >= 0 ? (uint64_t)s->n_kv_hdr : (uint64_t)(1 + (s->align_kind != 0)));
    put_kv_hdr(&b, "general.name", UHLM_GGUF_STRING);
    put_str(&b, "malformed");
    if (s->align_kind == 1) {
        put_kv_hdr(&b, "general.alignment", UHLM_GGUF_UINT32);
        put_u32(&b, (uint32_t)s->align);
    } else if (s->align_kind == 2) {
        put_kv_hdr(&b, "general.alignment", UHLM_GGUF_UINT64);
        put_u64(&b, s->align);
    }
    for (int i = 0; i < s->n_t; i++) {
        put_str(&b, s->t[i].name);
        put_u32(&b, s->t[i].n_dims);
        for (uint32_t d = 0; d < s->t[i].n_dims && d < 5; d++) put_u64(&b, s->t[i].ne[d]);
        put_u32(&b, s->t[i].type);
        put_u64(&b, s->t[i].offset);
    }
    uint64_t a = s->align_kind == 1 && s->align && !(s->align & (s->align - 1)) ? s->align : 32;
    put_pad(&b, (size_t)a);
    for (uint64_t i = 0; i < s->data_bytes; i++) put_u8(&b, (uint8_t)i);
    write_file(path, b.p, b.n);
    free(b.p);
}

#define SPEC_FAIL(field_changes, want)                \
    do {                                              \
        fspec s_ = base_spec();                       \
        field_changes;                                \
        const char *p_ = tmp_path("bad.gguf");        \
        build(p_, &s_);                               \
        EXPECT_FAIL(p_, want);                        \
    } while (0)

static void test_malformed_header_and_tensors(void) {
    /* the base spec itself is valid */
    fspec s0 = base_spec();
    const char *p0 = tmp_path("good.gguf");
    build(p0, &s0);
    uhlm_error err = {{0}};
    uhlm_gguf *g = uhlm_gguf_open(p0, &err);
    CHECKF(g != NULL, "%s", err.msg);
    uhlm_gguf_close(g);

    SPEC_FAIL(s_.magic = 0x4c4c4747u, "bad magic 0x4c4c4747 (not a GGUF file)");
    SPEC_FAIL(s_.version = 1, "GGUF version 1 is not supported");
    SPEC_FAIL(s_.version = 99, "unsupported GGUF version 99");
    SPEC_FAIL(s_.version = 0x03000000u, "big-endian");
    SPEC_FAIL(s_.n_tensors_hdr = (int64_t)1 << 60, "absurd tensor count 1152921504606846976");
    SPEC_FAIL(s_.n_kv_hdr = (int64_t)1 << 60, "absurd key/value count 1152921504606846976");
    SPEC_FAIL(s_.t[1].n_dims = 0, "tensor 'b' has 0 dimensions");
    SPEC_FAIL(s_.t[1].n_dims = 5, "tensor 'b' has 5 dimensions");
    SPEC_FAIL(s_.t[1].ne[1] = 0, "tensor 'b' has dimension 1 of size 0");
    SPEC_FAIL((s_.t[1].ne[0] = (uint64_t)1 << 32, s_.t[1].ne[1] = (uint64_t)1 << 32),
              "tensor 'b' has too many elements");
    SPEC_FAIL(s_.t[1].ne[0] = UINT64_MAX, "tensor 'b' has too many elements");
    SPEC_FAIL((s_.t[1].n_dims = 4, s_.t[1].ne[2] = (uint64_t)1 << 40, s_.t[1].ne[3] = (uint64_t)1 << 40),
              "too many elements");
    SPEC_FAIL((s_.t[1].ne[0] = (uint64_t)1 << 61, s_.t[1].ne[1] = 2), "tensor 'b' is too large");
    SPEC_FAIL(s_.t[1].type = 16, "unsupported tensor type 16 (iq2_xxs)");
    SPEC_FAIL(s_.t[1].type = 12, "row length 4, not a multiple of the q4_K block size 256");
    SPEC_FAIL(s_.t[1].type = 30, "unsupported tensor type 30 (bf16)");
    SPEC_FAIL(s_.t[1].type = 1000, "unsupported tensor type 1000");
    SPEC_FAIL((s_.t[1].type = UHLM_TYPE_Q8_0, s_.t[1].ne[0] = 33),
              "row length 33, not a multiple of the q8_0 block size 32");
    SPEC_FAIL(s_.t[1].offset = 4, "tensor 'b' data offset 4 is not a multiple of the alignment 32");
    SPEC_FAIL(s_.t[1].offset = 64, "tensor 'b' data runs past end of file");
    SPEC_FAIL(s_.t[1].offset = UINT64_MAX - 31, "data runs past end of file");
    SPEC_FAIL(s_.data_bytes = 63, "tensor 'b' data runs past end of file");
    SPEC_FAIL((s_.align_kind = 1, s_.align = 0), "general.alignment 0 is not a nonzero power of two");
    SPEC_FAIL((s_.align_kind = 1, s_.align = 3), "general.alignment 3 is not a nonzero power of two");
    SPEC_FAIL((s_.align_kind = 2, s_.align = 32), "general.alignment has type uint64, expected uint32");
    SPEC_FAIL((s_.align_kind = 1, s_.align = 64), "not a multiple of the alignment 64");
    SPEC_FAIL(s_.t[1].name = "a", "duplicate tensor name 'a'");
    SPEC_FAIL(s_.t[1].name = "", "tensor info 1 has a name of 0 bytes");
    SPEC_FAIL(s_.t[1].name = "a-name-that-is-much-longer-than-the-sixty-three-bytes-ggml-allows",
              "tensor info 1 has a name of 65 bytes");
    SPEC_FAIL(s_.n_tensors_hdr = 3, "tensor info 2"); /* reads the zero padding as a name */
    /* Data regions must be laid out as llama.cpp's gguf reader requires: in tensor-info order,
     * each at the end of the previous one rounded up to the alignment. Anything else means a
     * type, shape or offset was changed: before this check an overlapping tensor loaded and
     * generate printed garbage. */
    SPEC_FAIL(s_.t[1].offset = 0, "tensor 'b' data at offset 0 overlaps tensor 'a'");
    SPEC_FAIL(s_.t[0].ne[0] = 8, "tensor 'b' data at offset 32 overlaps tensor 'a'"); /* a grows */
    /* a written as f32 [16, 2] (128 bytes), its type then changed to f16 (64 bytes) */
    SPEC_FAIL((s_.t[0].type = UHLM_TYPE_F16, s_.t[0].ne[0] = 16, s_.t[1].offset = 128,
               s_.data_bytes = 160),
              "tensor 'b' data at offset 128 leaves 64 unused bytes after tensor 'a'");
    SPEC_FAIL((s_.t[1].offset = 64, s_.data_bytes = 96),
              "tensor 'b' data at offset 64 leaves 32 unused bytes after tensor 'a'");
    SPEC_FAIL((s_.t[0].offset = 32, s_.t[1].offset = 0),
              "tensor 'a' data at offset 32 leaves 32 unused bytes");

    /* a smaller alignment is accepted */
    fspec s1 = base_spec();
    s1.align_kind = 1;
    s1.align = 16;
    s1.t[0].ne[1] = 1; /* 16 bytes, so that b can start at 16 */
    s1.t[1].offset = 16;
    build(p0, &s1);
    g = uhlm_gguf_open(p0, &err);
    CHECKF(g != NULL, "%s", err.msg);
    uhlm_gguf_close(g);
    unlink(p0);
    unlink(tmp_path("bad.gguf"));
}

/* Header + one raw key/value whose bytes the caller appends. */
static void kv_file_begin(bytes *b, uint64_t n_kv) {
    b->n = 0;
    put_u32(b, UHLM_GGUF_MAGIC);
    put_u32(b, 3);
    put_u64(b, 0);
    put_u64(b, n_kv);
}

static void test_malformed_kv(void) {
    const char *p = tmp_path("badkv.gguf");
    bytes b = {0};
    char pad[64] = {0};
    const uint64_t huge = (uint64_t)1 << 60;

    kv_file_begin(&b, 1);
    put_u64(&b, huge); /* key length */
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "string length 1152921504606846976");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_STRING);
    put_u64(&b, huge);
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "string length 1152921504606846976");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_ARRAY);
    put_u32(&b, UHLM_GGUF_UINT32);
    put_u64(&b, huge);
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "array of 1152921504606846976 uint32 elements runs past end of file");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_ARRAY);
    put_u32(&b, UHLM_GGUF_STRING);
    put_u64(&b, huge);
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "absurd string array length 1152921504606846976");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_ARRAY);
    put_u32(&b, UHLM_GGUF_ARRAY);
    put_u64(&b, huge);
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "absurd nested array length");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_ARRAY);
    put_u32(&b, UHLM_GGUF_ARRAY);
    put_u64(&b, 1);
    put_u32(&b, UHLM_GGUF_UINT8);
    put_u64(&b, huge);
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "array of 1152921504606846976 uint8 elements runs past end of file");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", 13);
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "key 'k' has unknown value type 13");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_ARRAY);
    put_u32(&b, 77);
    put_u64(&b, 1);
    put(&b, pad, sizeof pad);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "array of unknown element type 77");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_BOOL);
    put_u8(&b, 2);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "invalid bool value 2");

    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "", UHLM_GGUF_UINT8);
    put_u8(&b, 2);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "key/value 0 has a key of 0 bytes");

    kv_file_begin(&b, 2);
    put_kv_hdr(&b, "dup", UHLM_GGUF_UINT8);
    put_u8(&b, 1);
    put_kv_hdr(&b, "dup", UHLM_GGUF_UINT8);
    put_u8(&b, 2);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "duplicate key 'dup'");

    /* arrays nested 20 deep: the recursion is bounded */
    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_ARRAY);
    for (int i = 0; i < 20; i++) {
        put_u32(&b, UHLM_GGUF_ARRAY);
        put_u64(&b, 1);
    }
    put_u32(&b, UHLM_GGUF_UINT8);
    put_u64(&b, 0);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "nested more than");

    /* truncated in the middle of a value */
    kv_file_begin(&b, 1);
    put_kv_hdr(&b, "k", UHLM_GGUF_UINT64);
    put_u32(&b, 0);
    write_file(p, b.p, b.n);
    EXPECT_FAIL(p, "truncated file while reading key/value 0 ('k')");

    write_file(p, "GGU", 3);
    EXPECT_FAIL(p, "truncated file while reading header");
    write_file(p, "", 0);
    EXPECT_FAIL(p, "empty");
    EXPECT_FAIL(tmp_path("does-not-exist.gguf"), "cannot open");
    free(b.p);
    unlink(p);
}

/* Every prefix of a valid file shorter than its last tensor's end must be refused cleanly, and
 * random corruption must never crash (ASan/UBSan builds make this a strong check). */
static void test_truncation_and_corruption(void) {
    const char *src = tmp_path("trunc_src.gguf"), *p = tmp_path("trunc.gguf");
    uhlm_error err = {{0}};
    uhlm_gguf_writer *w = uhlm_gguf_writer_new(&err);
    const char *toks[4] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81hi"};
    size_t lens[4] = {5, 3, 4, 5};
    float sc[4] = {0, 0, 0, -1};
    uhlm_gguf_set_str(w, "general.architecture", "llama");
    uhlm_gguf_set_u32(w, "llama.block_count", 1);
    uhlm_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f);
    uhlm_gguf_set_bool(w, "b", 1);
    uhlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 4);
    uhlm_gguf_set_arr_f32(w, "tokenizer.ggml.scores", sc, 4);
    float data[40];
    for (int i = 0; i < 40; i++) data[i] = (float)i;
    uint64_t ne1[2] = {8, 3}, ne2[1] = {16};
    uhlm_gguf_add_tensor(w, "x.weight", UHLM_TYPE_F32, 2, ne1, data, 96);
    uhlm_gguf_add_tensor(w, "y.weight", UHLM_TYPE_F16, 1, ne2, data, 32);
    CHECK(uhlm_gguf_write(w, src, &err) == 0);
    uhlm_gguf_writer_free(w);
    size_t n = 0;
    uint8_t *full = read_all(src, &n);
    CHECK(full != NULL && n > 0);
    if (!full) return;
    uhlm_gguf *g = uhlm_gguf_open(src, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (!g) {
        free(full);
        return;
    }
    /* The data section holds 96 + 32 bytes, both multiples of the alignment, so the last
     * tensor ends exactly at the end of the file and every shorter prefix must fail. */
    const uhlm_gguf_tensor *y = uhlm_gguf_find_tensor(g, "y.weight");
    CHECK(y && y->offset == 96 && y->nbytes == 32);
    uhlm_gguf_close(g);
    int bad = 0, msg_ok = 0;
    for (size_t len = 0; len < n; len++) {
        write_file(p, full, len);
        uhlm_error e = {{0}};
        uhlm_gguf *t = uhlm_gguf_open(p, &e);
        if (t) {
            bad++;
            fprintf(stderr, "truncation at %zu of %zu accepted\n", len, n);
            uhlm_gguf_close(t);
        } else if (strstr(e.msg, p) && (strstr(e.msg, "truncated") || strstr(e.msg, "past end") ||
                                        strstr(e.msg, "absurd") || strstr(e.msg, "empty"))) {
            msg_ok++;
        } else {
            fprintf(stderr, "truncation at %zu: unexpected message: %s\n", len, e.msg);
        }
    }
    CHECKF(bad == 0, "%d truncated files accepted", bad);
    CHECKF(msg_ok == (int)n, "%d of %zu messages as expected", msg_ok, n);
    /* one cut point, with the exact message of the brief */
    {
        size_t cut = 0; /* inside the dimensions of the second tensor info */
        for (size_t i = 0; i + 8 <= n && !cut; i++)
            if (!memcmp(full + i, "y.weight", 8)) cut = i + 8 + 4 + 3;
        CHECK(cut > 0);
        write_file(p, full, cut);
        EXPECT_FAIL(p, "truncated file while reading tensor info 1");
    }

    uhlm_rng r;
    uhlm_rng_seed(&r, 7);
    uint8_t *mut = malloc(n);
    int opened = 0;
    for (int it = 0; it < 3000 && mut; it++) {
        memcpy(mut, full, n);
        int flips = 1 + (int)(uhlm_rng_u64(&r) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(uhlm_rng_u64(&r) % n);
            uint64_t how = uhlm_rng_u64(&r);
            mut[at] = how & 1 ? (uint8_t)(how >> 8) : (uint8_t)(mut[at] ^ (1u << ((how >> 8) & 7)));
        }
        size_t len = uhlm_rng_u64(&r) % 4 == 0 ? (size_t)(uhlm_rng_u64(&r) % n) + 1 : n;
        write_file(p, mut, len);
        uhlm_error e = {{0}};
        uhlm_gguf *t = uhlm_gguf_open(p, &e);
        if (!t) {
            if (!strstr(e.msg, p)) fprintf(stderr, "message without path: %s\n", e.msg);
            CHECK(strstr(e.msg, p) != NULL);
            continue;
        }
        opened++;
        /* everything the reader hands out must be readable */
        unsigned sum = 0;
        for (uint64_t i = 0; i < uhlm_gguf_n_tensors(t); i++) {
            const uhlm_gguf_tensor *tt = uhlm_gguf_tensor_at(t, i);
            const uint8_t *d = tt->data;
            for (uint64_t j = 0; j < tt->nbytes; j++) sum += d[j];
            for (uint64_t j = 0; j < tt->name.len; j++) sum += (unsigned char)tt->name.s[j];
        }
        for (uint64_t i = 0; i < uhlm_gguf_n_kv(t); i++) {
            const uhlm_gguf_kv *kv = uhlm_gguf_kv_at(t, i);
            for (uint64_t j = 0; j < kv->key.len; j++) sum += (unsigned char)kv->key.s[j];
            if (kv->type == UHLM_GGUF_ARRAY && kv->arr_type == UHLM_GGUF_STRING)
                for (uint64_t j = 0; j < kv->arr_n; j++)
                    for (uint64_t c = 0; c < kv->strs[j].len; c++) sum += (unsigned char)kv->strs[j].s[c];
        }
        (void)sum;
        uhlm_gguf_close(t);
    }
    CHECK(opened > 0); /* some flips land in data and keep the file valid */
    free(mut);
    free(full);
    unlink(p);
    unlink(src);
}

/* ------------------------------------------------------------------ llama mapping */

typedef struct {
    const char *arch;
    const char *drop_tensor; /* leave this tensor out */
    const char *drop_key;
    uint64_t embd_rows;      /* 0: vocab */
    uint64_t attn_k_ne1;     /* 0: kv_dim */
    int norm_f16;
    int vocab_size_key;      /* 0: absent */
    const char *tok_model;
    int synthetic;
    const char *name;
    int with_output;
    int bos_id;              /* -1: absent */
    int nan_norm;            /* output_norm.weight all NaN */
} tiny_opts;

static tiny_opts tiny_default(void) {
    tiny_opts o;
    memset(&o, 0, sizeof o);
    o.arch = "llama";
    o.tok_model = "llama";
    o.name = "tiny";
    o.bos_id = 1;
    return o;
}

/* dim 32, hidden 64, 1 layer, 4 heads, 2 kv heads, vocab 5, seq 16 */
enum { T_DIM = 32, T_HID = 64, T_KV = 16, T_VOCAB = 5 };

static int write_tiny(const char *path, const tiny_opts *o, uhlm_error *err) {
    uhlm_gguf_writer *w = uhlm_gguf_writer_new(err);
    if (!w) return -1;
    uhlm_gguf_set_str(w, "general.architecture", o->arch);
    uhlm_gguf_set_str(w, "general.name", o->name);
    const char *keys[6] = {"llama.context_length", "llama.embedding_length", "llama.block_count",
                           "llama.feed_forward_length", "llama.attention.head_count",
                           "llama.attention.head_count_kv"};
    uint32_t vals[6] = {16, T_DIM, 1, T_HID, 4, 2};
    for (int i = 0; i < 6; i++)
        if (!o->drop_key || strcmp(o->drop_key, keys[i])) uhlm_gguf_set_u32(w, keys[i], vals[i]);
    uhlm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    uhlm_gguf_set_f32(w, "llama.rope.freq_base", 500000.0f);
    if (o->vocab_size_key) uhlm_gguf_set_u32(w, "llama.vocab_size", (uint32_t)o->vocab_size_key);
    if (o->synthetic) uhlm_gguf_set_bool(w, "uhlm.synthetic", 1);
    const char *toks[T_VOCAB] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81hi", "a"};
    size_t lens[T_VOCAB] = {5, 3, 4, 5, 1};
    float sc[T_VOCAB] = {0, 0, 0, -1, -2};
    int32_t ty[T_VOCAB] = {2, 3, 3, 1, 1};
    uhlm_gguf_set_str(w, "tokenizer.ggml.model", o->tok_model);
    uhlm_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, T_VOCAB);
    uhlm_gguf_set_arr_f32(w, "tokenizer.ggml.scores", sc, T_VOCAB);
    uhlm_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", ty, T_VOCAB);
    if (o->bos_id >= 0) uhlm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)o->bos_id);

    static float buf[16384];
    for (int i = 0; i < 16384; i++) buf[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    struct {
        const char *name;
        uint64_t ne0, ne1;
    } ts[12] = {{"token_embd.weight", T_DIM, o->embd_rows ? o->embd_rows : T_VOCAB},
                {"output_norm.weight", T_DIM, 0},
                {"output.weight", T_DIM, T_VOCAB},
                {"blk.0.attn_norm.weight", T_DIM, 0},
                {"blk.0.ffn_norm.weight", T_DIM, 0},
                {"blk.0.attn_q.weight", T_DIM, T_DIM},
                {"blk.0.attn_k.weight", T_DIM, o->attn_k_ne1 ? o->attn_k_ne1 : T_KV},
                {"blk.0.attn_v.weight", T_DIM, T_KV},
                {"blk.0.attn_output.weight", T_DIM, T_DIM},
                {"blk.0.ffn_gate.weight", T_DIM, T_HID},
                {"blk.0.ffn_down.weight", T_HID, T_DIM},
                {"blk.0.ffn_up.weight", T_DIM, T_HID}};
    for (int i = 0; i < 12; i++) {
        if (o->drop_tensor && !strcmp(o->drop_tensor, ts[i].name)) continue;
        if (i == 2 && !o->with_output) continue;
        int is_norm = ts[i].ne1 == 0;
        uint64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        uhlm_type t = is_norm && o->norm_f16 ? UHLM_TYPE_F16 : UHLM_TYPE_F32;
        uint64_t nb = ts[i].ne0 * (is_norm ? 1 : ts[i].ne1) * (t == UHLM_TYPE_F32 ? 4 : 2);
        static float nan_buf[T_DIM];
        const float *src = buf;
        if (o->nan_norm && !strcmp(ts[i].name, "output_norm.weight")) {
            for (int j = 0; j < T_DIM; j++) nan_buf[j] = NAN;
            src = nan_buf;
        }
        uhlm_gguf_add_tensor(w, ts[i].name, t, is_norm ? 1 : 2, ne, src, nb);
    }
    int rc = uhlm_gguf_write(w, path, err);
    uhlm_gguf_writer_free(w);
    return rc;
}

#define TINY_FAIL(changes, want)                                                            \
    do {                                                                                    \
        tiny_opts o_ = tiny_default();                                                      \
        changes;                                                                            \
        const char *p_ = tmp_path("tiny_bad.gguf");                                         \
        uhlm_error e_ = {{0}};                                                              \
        CHECKF(write_tiny(p_, &o_, &e_) == 0, "%s", e_.msg);                                \
        uhlm_model *m_ = uhlm_model_load(p_, NULL, &e_);                                    \
        CHECKF(!m_ && strstr(e_.msg, (want)) && strstr(e_.msg, p_),                         \
               "expected failure with '%s', got %s: %s", (want), m_ ? "success" : "error", \
               e_.msg);                                                                     \
        uhlm_model_free(m_);                                                                \
        unlink(p_);                                                                         \
    } while (0)

static void test_llama_mapping(void) {
    const char *p = tmp_path("tiny.gguf");
    uhlm_error err = {{0}};
    tiny_opts o = tiny_default();
    CHECKF(write_tiny(p, &o, &err) == 0, "%s", err.msg);
    uhlm_model *m = uhlm_model_load(p, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (m) {
        const uhlm_config *c = uhlm_model_config(m);
        CHECK(c->dim == T_DIM && c->hidden_dim == T_HID && c->n_layers == 1 && c->n_heads == 4 &&
              c->n_kv_heads == 2 && c->head_dim == 8 && c->vocab_size == T_VOCAB && c->seq_len == 16);
        CHECK(c->norm_eps == 1e-6f && c->rope_theta == 500000.0f);
        CHECK(c->shared_classifier == 1 && m->w.output.data == m->w.tok_embd.data);
        CHECK(uhlm_model_format(m) == UHLM_FORMAT_GGUF && m->gguf != NULL && uhlm_model_weight_type(m) == UHLM_TYPE_F32);
        CHECK(uhlm_model_is_synthetic(m) == 0);
        CHECK(m->w.layers[0].wk.rows == T_KV && m->w.layers[0].wk.cols == T_DIM);
        CHECK(m->w.layers[0].w2.rows == T_DIM && m->w.layers[0].w2.cols == T_HID);
        CHECK(uhlm_model_tokenizer(m) != NULL && uhlm_tokenizer_vocab_size(uhlm_model_tokenizer(m)) == T_VOCAB);
        if (uhlm_model_tokenizer(m)) {
            size_t len = 0;
            const char *piece = uhlm_tokenizer_piece(uhlm_model_tokenizer(m), 3, &len);
            CHECK(piece && len == 3 && !memcmp(piece, " hi", 3)); /* U+2581 -> ' ' */
            CHECK(uhlm_tokenizer_score(uhlm_model_tokenizer(m), 4) == -2.0f);
        }
        uhlm_model_free(m);
    }
    o.with_output = 1;
    o.synthetic = 1;
    CHECKF(write_tiny(p, &o, &err) == 0, "%s", err.msg);
    m = uhlm_model_load(p, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (m) {
        CHECK(uhlm_model_config(m)->shared_classifier == 0 && m->w.output.data != m->w.tok_embd.data);
        CHECK(m->w.output.rows == T_VOCAB && m->w.output.cols == T_DIM);
        CHECK(uhlm_model_is_synthetic(m) == 1);
        uhlm_model_free(m);
    }
    o = tiny_default();
    o.name = "synthetic-random-x";
    CHECKF(write_tiny(p, &o, &err) == 0, "%s", err.msg);
    m = uhlm_model_load(p, NULL, &err);
    CHECK(m && uhlm_model_is_synthetic(m) == 1);
    uhlm_model_free(m);
    /* the loader can be called on its own, and cleans up after a failure */
    uhlm_model *mm = calloc(1, sizeof *mm);
    snprintf(mm->path, sizeof mm->path, "%s", p);
    CHECK(uhlm_gguf_load_llama(mm, &err) == 0 && mm->gguf && mm->w.layers);
    uhlm_model_free(mm);
    unlink(p);

    TINY_FAIL(o_.arch = "gpt2", "architecture 'gpt2' is not supported");
    TINY_FAIL(o_.drop_tensor = "blk.0.ffn_up.weight", "missing tensor 'blk.0.ffn_up.weight'");
    TINY_FAIL(o_.drop_tensor = "token_embd.weight", "missing tensor 'token_embd.weight'");
    TINY_FAIL(o_.drop_tensor = "output_norm.weight", "missing tensor 'output_norm.weight'");
    TINY_FAIL(o_.attn_k_ne1 = T_DIM,
              "tensor 'blk.0.attn_k.weight' has shape [32, 32], expected [32, 16]");
    TINY_FAIL(o_.embd_rows = T_VOCAB + 1, "token_embd.weight has 6 rows but the vocabulary has 5 tokens");
    TINY_FAIL(o_.norm_f16 = 1, "has type f16, expected f32");
    TINY_FAIL(o_.vocab_size_key = 7, "llama.vocab_size 7 disagrees");
    TINY_FAIL(o_.drop_key = "llama.block_count", "missing key 'llama.block_count'");
    TINY_FAIL(o_.drop_key = "llama.embedding_length", "missing key 'llama.embedding_length'");
    TINY_FAIL(o_.tok_model = "bert", "tokenizer.ggml.model = 'bert' is not supported");
    TINY_FAIL(o_.tok_model = "gpt2", "tokenizer.ggml.merges is missing"); /* BPE: test_bpe.c */
    TINY_FAIL(o_.bos_id = 5, "tokenizer.ggml.bos_token_id is 5");

    /* head_count_kv defaults to head_count: 4 kv heads of 8 = 32 rows for attn_k */
    o = tiny_default();
    o.drop_key = "llama.attention.head_count_kv";
    CHECKF(write_tiny(p, &o, &err) == 0, "%s", err.msg);
    m = uhlm_model_load(p, NULL, &err);
    CHECKF(!m && strstr(err.msg, "expected [32, 32]"), "%s", err.msg);
    uhlm_model_free(m);
    unlink(p);
}

/* ------------------------------------------------------------------ stories260K round trip */

static int same_tensor_rows(const uhlm_tensor *a, const uhlm_tensor *b) {
    if (a->rows != b->rows || a->cols != b->cols) return 0;
    float *x = malloc((size_t)a->cols * sizeof *x), *y = malloc((size_t)a->cols * sizeof *y);
    int ok = x && y;
    for (int64_t r = 0; ok && r < a->rows; r++) {
        uhlm_tensor_row(a, r, x);
        uhlm_tensor_row(b, r, y);
        ok = !memcmp(x, y, (size_t)a->cols * sizeof *x);
    }
    free(x);
    free(y);
    return ok;
}

/* b's rows equal a's rows quantized to type t and back (t's kernels, bit for bit) */
static int quantized_rows(const uhlm_tensor *a, const uhlm_tensor *b, uhlm_type t) {
    if (a->rows != b->rows || a->cols != b->cols || b->type != t) return 0;
    size_t rb = uhlm_type_bytes(t, a->cols);
    float *x = malloc((size_t)a->cols * sizeof *x), *y = malloc((size_t)a->cols * sizeof *y);
    void *q = malloc(rb);
    int ok = x && y && q;
    for (int64_t r = 0; ok && r < a->rows; r++) {
        uhlm_tensor_row(a, r, x);
        uhlm_quantize_row(t, x, q, a->cols);
        uhlm_dequantize_row(t, q, x, a->cols);
        uhlm_tensor_row(b, r, y);
        ok = !memcmp(x, y, (size_t)a->cols * sizeof *x);
    }
    free(x);
    free(y);
    free(q);
    return ok;
}

static void test_stories_roundtrip(void) {
    const char *bin = uhlm_test_model_path("stories260K.bin");
    const char *tok = uhlm_test_model_path("tok512.bin");
    uhlm_error err = {{0}};
    uhlm_model *a = uhlm_model_load(bin, tok, &err);
    CHECKF(a != NULL, "%s", err.msg);
    if (!a) return;
    const char *p = tmp_path("stories260K_f32.gguf");
    CHECKF(uhlm_gguf_save_llama(a, UHLM_TYPE_F32, p, &err) == 0, "%s", err.msg);
    uhlm_model *b = uhlm_model_load(p, NULL, &err);
    CHECKF(b != NULL, "%s", err.msg);
    if (b) {
        const uhlm_config *x = uhlm_model_config(a), *y = uhlm_model_config(b);
        CHECK(x->dim == y->dim && x->hidden_dim == y->hidden_dim && x->n_layers == y->n_layers &&
              x->n_heads == y->n_heads && x->n_kv_heads == y->n_kv_heads &&
              x->vocab_size == y->vocab_size && x->seq_len == y->seq_len &&
              x->head_dim == y->head_dim && x->rope_theta == y->rope_theta &&
              x->norm_eps == y->norm_eps && x->shared_classifier == y->shared_classifier);
        CHECK(y->dim == 64 && y->hidden_dim == 172 && y->n_layers == 5 && y->n_heads == 8 &&
              y->n_kv_heads == 4 && y->vocab_size == 512 && y->seq_len == 512 && y->shared_classifier);
        CHECK(uhlm_model_format(b) == UHLM_FORMAT_GGUF && uhlm_model_weight_type(b) == UHLM_TYPE_F32 && !uhlm_model_is_synthetic(b));
        size_t D = (size_t)x->dim * sizeof(float);
        CHECK(same_tensor_rows(&a->w.tok_embd, &b->w.tok_embd));
        CHECK(same_tensor_rows(&a->w.output, &b->w.output));
        CHECK(!memcmp(a->w.out_norm, b->w.out_norm, D));
        int all = 1;
        for (int l = 0; l < x->n_layers; l++) {
            const uhlm_layer *u = &a->w.layers[l], *v = &b->w.layers[l];
            all &= !memcmp(u->attn_norm, v->attn_norm, D) && !memcmp(u->ffn_norm, v->ffn_norm, D);
            all &= same_tensor_rows(&u->wq, &v->wq) && same_tensor_rows(&u->wk, &v->wk) &&
                   same_tensor_rows(&u->wv, &v->wv) && same_tensor_rows(&u->wo, &v->wo) &&
                   same_tensor_rows(&u->w1, &v->w1) && same_tensor_rows(&u->w2, &v->w2) &&
                   same_tensor_rows(&u->w3, &v->w3);
        }
        CHECK(all);
        /* the vocabulary survives U+2581 <-> ' ' unchanged */
        CHECK(uhlm_model_tokenizer(b) && uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(a)) == uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(b)));
        const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(b->gguf, "tokenizer.ggml.tokens");
        int has_mark = 0, has_space = 0;
        for (uint64_t i = 0; kv && i < kv->arr_n; i++) {
            for (uint64_t j = 0; j < kv->strs[i].len; j++) has_space |= kv->strs[i].s[j] == ' ';
            for (uint64_t j = 0; j + 3 <= kv->strs[i].len; j++)
                has_mark |= !memcmp(kv->strs[i].s + j, "\xe2\x96\x81", 3);
        }
        CHECK(kv && has_mark && !has_space);
        int64_t v;
        uhlm_gguf_str s;
        CHECK(uhlm_gguf_get_int(b->gguf, "general.file_type", &v, &err) == 0 && v == 0);
        CHECK(uhlm_gguf_get_int(b->gguf, "llama.rope.dimension_count", &v, &err) == 0 && v == 8);
        CHECK(uhlm_gguf_get_str(b->gguf, "general.name", &s, &err) == 0 && str_is(s, "stories260K"));
        CHECK(uhlm_gguf_get_str(b->gguf, "tokenizer.ggml.model", &s, &err) == 0 && str_is(s, "llama"));
        CHECK(uhlm_gguf_find_tensor(b->gguf, "output.weight") == NULL);
        CHECK(uhlm_gguf_find_kv(b->gguf, "uhlm.f32_fallback") == NULL);

        /* GGUF -> GGUF keeps the weights too */
        const char *p2 = tmp_path("stories260K_f32b.gguf");
        CHECKF(uhlm_gguf_save_llama(b, UHLM_TYPE_F32, p2, &err) == 0, "%s", err.msg);
        uhlm_model *c = uhlm_model_load(p2, NULL, &err);
        CHECKF(c && same_tensor_rows(&a->w.layers[4].w2, &c->w.layers[4].w2) &&
                   same_tensor_rows(&a->w.tok_embd, &c->w.tok_embd),
               "%s", err.msg);
        uhlm_model_free(c);
        unlink(p2);
        uhlm_model_free(b);
    }
    unlink(p);

    /* quantized saves: every matrix is quantize-then-dequantize of the original, except the
     * ffn_down rows of 172 which stay f32 for q8_0/q4_0 */
    const uhlm_type qt[3] = {UHLM_TYPE_F16, UHLM_TYPE_Q8_0, UHLM_TYPE_Q4_0};
    const int ftype[3] = {1, 7, 2};
    for (int i = 0; i < 3; i++) {
        const char *pq = tmp_path("stories260K_q.gguf");
        CHECKF(uhlm_gguf_save_llama(a, qt[i], pq, &err) == 0, "%s", err.msg);
        uhlm_model *q = uhlm_model_load(pq, NULL, &err);
        CHECKF(q != NULL, "%s: %s", uhlm_type_name(qt[i]), err.msg);
        if (!q) continue;
        int fb = qt[i] != UHLM_TYPE_F16;
        int ok = quantized_rows(&a->w.tok_embd, &q->w.tok_embd, qt[i]);
        for (int l = 0; l < uhlm_model_config(a)->n_layers; l++) {
            const uhlm_layer *u = &a->w.layers[l], *v = &q->w.layers[l];
            ok &= quantized_rows(&u->wq, &v->wq, qt[i]) && quantized_rows(&u->wk, &v->wk, qt[i]) &&
                  quantized_rows(&u->wv, &v->wv, qt[i]) && quantized_rows(&u->wo, &v->wo, qt[i]) &&
                  quantized_rows(&u->w1, &v->w1, qt[i]) && quantized_rows(&u->w3, &v->w3, qt[i]);
            ok &= fb ? (v->w2.type == UHLM_TYPE_F32 && same_tensor_rows(&u->w2, &v->w2))
                     : quantized_rows(&u->w2, &v->w2, qt[i]);
            ok &= !memcmp(u->attn_norm, v->attn_norm, (size_t)uhlm_model_config(a)->dim * 4);
        }
        CHECKF(ok, "%s weights", uhlm_type_name(qt[i]));
        CHECK(uhlm_model_weight_type(q) == qt[i]);
        int64_t v;
        CHECK(uhlm_gguf_get_int(q->gguf, "general.file_type", &v, &err) == 0 && v == ftype[i]);
        const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(q->gguf, "uhlm.f32_fallback");
        if (fb) {
            CHECK(kv && kv->arr_type == UHLM_GGUF_STRING && kv->arr_n == 5 &&
                  str_is(kv->strs[0], "blk.0.ffn_down.weight"));
        } else {
            CHECK(kv == NULL);
        }
        uhlm_model_free(q);
        unlink(pq);
    }

    /* refusals */
    CHECK(uhlm_gguf_save_llama(a, UHLM_TYPE_Q8_G, tmp_path("x.gguf"), &err) != 0 &&
          strstr(err.msg, "cannot write tensor type"));
    uhlm_tokenizer *t = a->tok;
    a->tok = NULL;
    CHECK(uhlm_gguf_save_llama(a, UHLM_TYPE_F32, tmp_path("x.gguf"), &err) != 0 &&
          strstr(err.msg, "tokenizer is required"));
    a->tok = t;
    CHECK(access(tmp_path("x.gguf"), F_OK) != 0);
    uhlm_model_free(a);
}

/* ------------------------------------------------------------------ uhlm convert */

static int run_cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_cli(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = read_all(a, &na), *y = read_all(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static void test_cli_convert(void) {
    const char *bin = getenv("UHLM_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "test_cli_convert: skipped (UHLM_BIN not set; run through ctest)\n");
        return;
    }
    const char *tok = uhlm_test_model_path("tok512.bin");
    const char *a = tmp_path("r15a.gguf"), *b = tmp_path("r15b.gguf"), *c = tmp_path("r15c.gguf");
    CHECK(run_cli("'%s' convert --random-shape 15M --vocab 512 --seed 5 -z '%s' -o '%s' "
                  "--type q8_0 2>/dev/null", bin, tok, a) == 0);
    CHECK(run_cli("'%s' convert --random-shape 15M --vocab 512 --seed 5 -z '%s' -o '%s' "
                  "--type q8_0 2>/dev/null", bin, tok, b) == 0);
    CHECK(run_cli("'%s' convert --random-shape 15M --vocab 512 --seed 6 -z '%s' -o '%s' "
                  "--type q8_0 2>/dev/null", bin, tok, c) == 0);
    CHECK(same_file(a, b));
    CHECK(!same_file(a, c));
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(a, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (m) {
        const uhlm_config *p = uhlm_model_config(m);
        CHECK(p->dim == 288 && p->hidden_dim == 768 && p->n_layers == 6 && p->n_heads == 6 &&
              p->n_kv_heads == 6 && p->seq_len == 256 && p->vocab_size == 512 &&
              p->shared_classifier == 1);
        CHECK(uhlm_model_is_synthetic(m) == 1 && uhlm_model_weight_type(m) == UHLM_TYPE_Q8_0);
        uhlm_gguf_str s;
        CHECK(uhlm_gguf_get_str(m->gguf, "general.name", &s, &err) == 0 &&
              str_is(s, "synthetic-random-stories15M"));
        const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(m->gguf, "uhlm.synthetic");
        CHECK(kv && kv->type == UHLM_GGUF_BOOL && kv->v.u == 1);
        /* weights ~ N(0, 0.02), norms 1 */
        double s1 = 0, s2 = 0;
        float row[768];
        const uhlm_tensor *w1 = &m->w.layers[2].w1;
        for (int64_t r = 0; r < w1->rows; r++) {
            uhlm_tensor_row(w1, r, row);
            for (int64_t j = 0; j < w1->cols; j++) {
                s1 += row[j];
                s2 += (double)row[j] * row[j];
            }
        }
        double n = (double)w1->rows * (double)w1->cols, mean = s1 / n;
        double sd = sqrt(s2 / n - mean * mean);
        CHECKF(fabs(mean) < 1e-3 && fabs(sd - 0.02) < 1e-3, "mean %g sd %g", mean, sd);
        CHECK(m->w.out_norm[0] == 1.0f && m->w.layers[5].ffn_norm[287] == 1.0f);
        uhlm_model_free(m);
    }
    CHECK(run_cli("'%s' convert -m '%s' -z '%s' -o '%s' --type f16 2>/dev/null", bin,
                  uhlm_test_model_path("stories260K.bin"), tok, c) == 0);
    m = uhlm_model_load(c, NULL, &err);
    CHECKF(m && uhlm_model_weight_type(m) == UHLM_TYPE_F16 && !uhlm_model_is_synthetic(m) && uhlm_model_config(m)->hidden_dim == 172, "%s",
           err.msg);
    uhlm_model_free(m);
    /* usage errors */
    CHECK(run_cli("'%s' convert --help >/dev/null", bin) == 0);
    CHECK(run_cli("'%s' convert --random-shape 15M -z '%s' -o '%s' 2>/dev/null", bin, tok, b) == 2);
    CHECK(run_cli("'%s' convert --random-shape 7B -z '%s' -o '%s' 2>/dev/null", bin, tok, b) == 2);
    CHECK(run_cli("'%s' convert --random-shape 15M --vocab 512 -o '%s' 2>/dev/null", bin, b) == 2);
    CHECK(run_cli("'%s' convert -m x.bin -z '%s' -o '%s' --type iq4_xs 2>/dev/null", bin, tok, b) == 2);
    CHECK(run_cli("'%s' convert -m x.bin -z '%s' 2>/dev/null", bin, tok) == 2);
    CHECK(run_cli("'%s' convert --bogus 2>/dev/null", bin) == 2);
    CHECK(run_cli("'%s' convert -m /nonexistent.bin -z '%s' -o '%s' 2>/dev/null", bin, tok, b) == 1);
    unlink(a);
    unlink(b);
    unlink(c);
}

/* Corrupt models that used to load and make generate print garbage with exit status 0: a
 * tensor offset pointed into another tensor, and weights that produce NaN logits. Both must
 * now fail with a message, and generate must print no text. */
static void test_corrupt_model_cli(void) {
    const char *bin = getenv("UHLM_BIN");
    const char *p = tmp_path("tiny_corrupt.gguf"), *log = tmp_path("tiny_corrupt.log");
    const char *out = tmp_path("tiny_corrupt.out");
    uhlm_error err = {{0}};
    tiny_opts o = tiny_default();
    o.nan_norm = 1;
    CHECKF(write_tiny(p, &o, &err) == 0, "%s", err.msg);
    uhlm_model *m = uhlm_model_load(p, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg); /* NaN weights are not a format error */
    if (m) {
        uhlm_ctx_params cp = uhlm_ctx_default_params();
        cp.n_threads = 1;
        uhlm_ctx *c = uhlm_ctx_new(m, &cp, &err);
        CHECKF(c != NULL, "%s", err.msg);
        if (c) {
            float logits[T_VOCAB];
            uhlm_batch_entry e = {0, 0, 1, 1};
            CHECK(uhlm_decode(c, &e, 1, logits, NULL, &err) != 0);
            CHECKF(strstr(err.msg, "non-finite logit") != NULL, "%s", err.msg);
            /* the failed call changed nothing: position 0 can be decoded again */
            CHECK(uhlm_seq_len(c, 0) == 0);
            CHECK(uhlm_decode(c, &e, 1, NULL, NULL, &err) == 0 && uhlm_seq_len(c, 0) == 1);
            uhlm_ctx_free(c);
        }
        uhlm_model_free(m);
    }
    if (bin && access(bin, X_OK) == 0) {
        CHECK(run_cli("'%s' generate -m '%s' -n 4 --temp 0 -t 1 >'%s' 2>'%s'", bin, p, out,
                      log) == 1);
        size_t n = 0;
        uint8_t *text = read_all(out, &n);
        CHECKF(n == 0, "generate printed %zu bytes: %.*s", n, (int)n, text ? (char *)text : "");
        free(text);
        char msg[2048] = {0};
        FILE *lf = fopen(log, "r");
        if (lf) {
            size_t got = fread(msg, 1, sizeof msg - 1, lf);
            msg[got] = '\0';
            fclose(lf);
        }
        CHECKF(strstr(msg, "non-finite logit") != NULL, "stderr: %s", msg);
    }
    /* offset of the last tensor moved onto the first one */
    o = tiny_default();
    CHECKF(write_tiny(p, &o, &err) == 0, "%s", err.msg);
    size_t n = 0;
    uint8_t *f = read_all(p, &n);
    size_t at = 0;
    const char *name = "blk.0.ffn_up.weight";
    size_t nl = strlen(name);
    for (size_t i = 0; f && i + nl <= n && !at; i++)
        if (!memcmp(f + i, name, nl)) at = i + nl + 4 + 2 * 8 + 4; /* n_dims, ne[2], type */
    CHECK(at > 0);
    if (at) {
        uint64_t zero = 0;
        memcpy(f + at, &zero, 8);
        write_file(p, f, n);
        m = uhlm_model_load(p, NULL, &err);
        CHECKF(!m && strstr(err.msg, "tensor 'blk.0.ffn_up.weight' data at offset 0 overlaps"),
               "%s", m ? "loaded" : err.msg);
        uhlm_model_free(m);
        if (bin && access(bin, X_OK) == 0) {
            CHECK(run_cli("'%s' generate -m '%s' -n 4 --temp 0 -t 1 >'%s' 2>'%s'", bin, p,
                          out, log) == 1);
            uint8_t *text = read_all(out, &n);
            CHECKF(n == 0, "generate printed %zu bytes for an overlapping tensor", n);
            free(text);
        }
    }
    free(f);
    unlink(p);
    unlink(log);
    unlink(out);
}

int main(void) {
    test_writer_roundtrip();
    test_all_value_types();
    test_malformed_header_and_tensors();
    test_malformed_kv();
    test_truncation_and_corruption();
    test_llama_mapping();
    test_stories_roundtrip();
    test_cli_convert();
    test_corrupt_model_cli();
    return check_report();
}
