/* gguf.c: GGUF v2/v3 reader and writer (see gguf.h).
 *
 * Layout (ggml docs/gguf.md): magic u32 "GGUF", version u32, n_tensors u64, n_kv u64; n_kv
 * key/values (string key, u32 value type, value); n_tensors tensor infos (string name, u32
 * n_dims, u64 ne[n_dims], u32 ggml type, u64 offset); zero padding to general.alignment; the
 * data section, in which every tensor's offset is a multiple of the alignment. Strings are a u64
 * length and that many bytes, no NUL. Everything is little-endian.
 *
 * The reader treats the file as hostile: every read goes through a bounds-checked cursor, every
 * count is bounded by the bytes left before anything is allocated for it, and all arithmetic on
 * sizes is overflow-checked. After a successful open the rest of the library may trust every
 * descriptor (a tensor's data lies inside the mapping, disjoint from every other tensor's, and
 * its size is type x shape; strings lie inside the file). v1 (32-bit counts) is refused. */
#include "model/format/gguf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian files with memcpy: a big-endian host needs byte swapping"
#endif

/* Tensor names are limited as in ggml (GGML_MAX_NAME = 64 including the NUL), so every file we
 * accept or write can also be loaded by llama.cpp. */
#define GGUF_MAX_NAME 63
#define GGUF_MAX_KEY 65535
/* Arrays of arrays are legal but never used by llama; the limit bounds the recursion. */
#define GGUF_MAX_DEPTH 8

struct uhlm_gguf {
    uhlm_mmap map;
    char *path;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    uhlm_gguf_kv *kv;
    uhlm_gguf_tensor *tensors;
    uint64_t *tensor_order; /* tensor indices sorted by name, for lookup by binary search */
};

/* ------------------------------------------------------------------ type tables */

static const char *value_type_name(uint32_t t) {
    static const char *names[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                  "int32", "float32", "bool",  "string", "array",
                                  "uint64", "int64", "float64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Bytes of one scalar element; 0 for STRING/ARRAY and unknown types. */
static uint64_t scalar_size(uint32_t t) {
    switch (t) {
    case UHLM_GGUF_UINT8:
    case UHLM_GGUF_INT8:
    case UHLM_GGUF_BOOL: return 1;
    case UHLM_GGUF_UINT16:
    case UHLM_GGUF_INT16: return 2;
    case UHLM_GGUF_UINT32:
    case UHLM_GGUF_INT32:
    case UHLM_GGUF_FLOAT32: return 4;
    case UHLM_GGUF_UINT64:
    case UHLM_GGUF_INT64:
    case UHLM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* ggml's type names, so an unsupported tensor type is reported the way users know it. */
static const char *ggml_type_name(uint32_t t) {
    static const char *names[] = {
        "f32",     "f16",    "q4_0",    "q4_1",  "q4_2 (removed)", "q4_3 (removed)",
        "q5_0",    "q5_1",   "q8_0",    "q8_1",  "q2_K",           "q3_K",
        "q4_K",    "q5_K",   "q6_K",    "q8_K",  "iq2_xxs",        "iq2_xs",
        "iq3_xxs", "iq1_s",  "iq4_nl",  "iq3_s", "iq2_s",          "iq4_xs",
        "i8",      "i16",    "i32",     "i64",   "f64",            "iq1_m",
        "bf16",    "q4_0_4_4 (removed)", "q4_0_4_8 (removed)", "q4_0_8_8 (removed)",
        "tq1_0",   "tq2_0"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Block geometry of the tensor types we support; kept here (rather than calling quant.c)
 * so the reader is self-contained and its validation cannot drift from what it accepts. */
static int tensor_type_info(uint32_t t, uint64_t *block, uint64_t *block_bytes) {
    switch (t) {
    case UHLM_TYPE_F32: *block = 1; *block_bytes = 4; return 0;
    case UHLM_TYPE_F16: *block = 1; *block_bytes = 2; return 0;
    case UHLM_TYPE_Q8_0: *block = UHLM_QK; *block_bytes = 2 + UHLM_QK; return 0;
    case UHLM_TYPE_Q4_0: *block = UHLM_QK; *block_bytes = 2 + UHLM_QK / 2; return 0;
    case UHLM_TYPE_Q4_1: *block = UHLM_QK; *block_bytes = 4 + UHLM_QK / 2; return 0;
    case UHLM_TYPE_Q5_0: *block = UHLM_QK; *block_bytes = 6 + UHLM_QK / 2; return 0;
    case UHLM_TYPE_Q5_1: *block = UHLM_QK; *block_bytes = 8 + UHLM_QK / 2; return 0;
    /* K-quants (ggml-common.h): 256-element super-blocks */
    case UHLM_TYPE_Q2_K: *block = 256; *block_bytes = 84; return 0;
    case UHLM_TYPE_Q3_K: *block = 256; *block_bytes = 110; return 0;
    case UHLM_TYPE_Q4_K: *block = 256; *block_bytes = 144; return 0;
    case UHLM_TYPE_Q5_K: *block = 256; *block_bytes = 176; return 0;
    case UHLM_TYPE_Q6_K: *block = 256; *block_bytes = 210; return 0;
    default: return -1;
    }
}

/* Checks shape and type and computes the byte size; msg receives a reason on failure. */
static int tensor_geometry(uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t *nbytes,
                           char *msg, size_t cap) {
    if (n_dims < 1 || n_dims > 4) {
        snprintf(msg, cap, "has %u dimensions (1 to 4 supported)", n_dims);
        return -1;
    }
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0) {
            snprintf(msg, cap, "has dimension %u of size 0", d);
            return -1;
        }
        if (ne[d] > (uint64_t)INT64_MAX || n > (uint64_t)INT64_MAX / ne[d]) {
            snprintf(msg, cap, "has too many elements (dimension product overflows)");
            return -1;
        }
        n *= ne[d];
    }
    uint64_t block, bb;
    if (tensor_type_info(type, &block, &bb) != 0) {
        snprintf(msg, cap,
                 "has unsupported tensor type %u (%s); supported: f32, f16, q8_0, q4_0, q4_1, "
                 "q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K",
                 type, ggml_type_name(type));
        return -1;
    }
    if (ne[0] % block != 0) {
        snprintf(msg, cap, "has row length %llu, not a multiple of the %s block size %llu",
                 (unsigned long long)ne[0], ggml_type_name(type), (unsigned long long)block);
        return -1;
    }
    if (n / block > UINT64_MAX / bb) {
        snprintf(msg, cap, "is too large (byte size overflows)");
        return -1;
    }
    *nbytes = n / block * bb;
    return 0;
}

/* ------------------------------------------------------------------ reader */

typedef struct {
    const uint8_t *base;
    uint64_t off, size;
    const char *path;
    uhlm_error *err;
    char what[160]; /* what is being read, for truncation messages */
} cursor;

static void set_what(cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_what(cursor *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what, sizeof c->what, fmt, ap);
    va_end(ap);
}

static uint64_t left(const cursor *c) {
    return c->size - c->off;
}

static const uint8_t *take(cursor *c, uint64_t n) {
    if (n > left(c)) {
        uhlm_set_error(c->err,
                       "%s: truncated file while reading %s (need %llu bytes at offset %llu, "
                       "file has %llu)",
                       c->path, c->what, (unsigned long long)n, (unsigned long long)c->off,
                       (unsigned long long)c->size);
        return NULL;
    }
    const uint8_t *p = c->base + c->off;
    c->off += n;
    return p;
}

static int rd_u32(cursor *c, uint32_t *v) {
    const uint8_t *p = take(c, 4);
    if (!p) return -1;
    memcpy(v, p, 4);
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v) {
    const uint8_t *p = take(c, 8);
    if (!p) return -1;
    memcpy(v, p, 8);
    return 0;
}

static int rd_str(cursor *c, uhlm_gguf_str *s) {
    uint64_t len;
    if (rd_u64(c, &len) != 0) return -1;
    if (len > left(c))
        return uhlm_set_error(c->err,
                              "%s: string length %llu at offset %llu runs past end of file while "
                              "reading %s (file has %llu bytes)",
                              c->path, (unsigned long long)len, (unsigned long long)(c->off - 8),
                              c->what, (unsigned long long)c->size);
    s->len = len;
    s->s = (const char *)take(c, len);
    return 0;
}

/* The key as printable text for messages (truncated, non-printables replaced). */
static const char *show(uhlm_gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.s[i];
        buf[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    buf[n] = '\0';
    return buf;
}

static int str_eq(uhlm_gguf_str a, const char *b) {
    size_t n = strlen(b);
    return a.len == n && memcmp(a.s, b, n) == 0;
}

static int str_cmp(uhlm_gguf_str a, uhlm_gguf_str b) {
    uint64_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.s, b.s, (size_t)n) : 0;
    if (r) return r;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int check_bool(cursor *c, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return uhlm_set_error(c->err, "%s: invalid bool value %u while reading %s", c->path,
                                  p[i], c->what);
    return 0;
}

/* Validates (and skips) one array body: element type, count, elements. Used for arrays nested
 * inside arrays, which are checked but not exposed element by element. */
static int skip_array(cursor *c, int depth) {
    if (depth > GGUF_MAX_DEPTH)
        return uhlm_set_error(c->err, "%s: arrays nested more than %d deep while reading %s",
                              c->path, GGUF_MAX_DEPTH, c->what);
    uint32_t t;
    uint64_t n;
    if (rd_u32(c, &t) != 0 || rd_u64(c, &n) != 0) return -1;
    uint64_t es = scalar_size(t);
    if (es) {
        if (n > left(c) / es)
            return uhlm_set_error(c->err,
                                  "%s: array of %llu %s elements runs past end of file while "
                                  "reading %s",
                                  c->path, (unsigned long long)n, value_type_name(t), c->what);
        const uint8_t *p = take(c, n * es);
        return t == UHLM_GGUF_BOOL ? check_bool(c, p, n) : 0;
    }
    if (t == UHLM_GGUF_STRING) {
        if (n > left(c) / 8)
            return uhlm_set_error(c->err, "%s: absurd string array length %llu while reading %s",
                                  c->path, (unsigned long long)n, c->what);
        for (uint64_t i = 0; i < n; i++) {
            uhlm_gguf_str s;
            if (rd_str(c, &s) != 0) return -1;
        }
        return 0;
    }
    if (t == UHLM_GGUF_ARRAY) {
        if (n > left(c) / 12)
            return uhlm_set_error(c->err, "%s: absurd nested array length %llu while reading %s",
                                  c->path, (unsigned long long)n, c->what);
        for (uint64_t i = 0; i < n; i++)
            if (skip_array(c, depth + 1) != 0) return -1;
        return 0;
    }
    return uhlm_set_error(c->err, "%s: unknown array element type %u while reading %s", c->path, t,
                          c->what);
}

static int read_kv(cursor *c, uint64_t idx, uhlm_gguf_kv *kv) {
    set_what(c, "key/value %llu", (unsigned long long)idx);
    if (rd_str(c, &kv->key) != 0) return -1;
    if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY)
        return uhlm_set_error(c->err, "%s: key/value %llu has a key of %llu bytes (1 to %d allowed)",
                              c->path, (unsigned long long)idx, (unsigned long long)kv->key.len,
                              GGUF_MAX_KEY);
    char kb[80];
    set_what(c, "key/value %llu ('%s')", (unsigned long long)idx, show(kv->key, kb, sizeof kb));
    uint32_t t;
    if (rd_u32(c, &t) != 0) return -1;
    if (t > UHLM_GGUF_FLOAT64)
        return uhlm_set_error(c->err, "%s: key '%s' has unknown value type %u", c->path, kb, t);
    kv->type = (uhlm_gguf_type)t;
    if (t == UHLM_GGUF_STRING) return rd_str(c, &kv->v.str);
    if (t != UHLM_GGUF_ARRAY) {
        uint64_t es = scalar_size(t);
        const uint8_t *p = take(c, es);
        if (!p) return -1;
        switch (t) {
        case UHLM_GGUF_UINT8: kv->v.u = p[0]; break;
        case UHLM_GGUF_INT8: kv->v.i = (int8_t)p[0]; break;
        case UHLM_GGUF_BOOL:
            if (check_bool(c, p, 1) != 0) return -1;
            kv->v.u = p[0];
            break;
        case UHLM_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
        case UHLM_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i = x; break; }
        case UHLM_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
        case UHLM_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i = x; break; }
        case UHLM_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f = x; break; }
        case UHLM_GGUF_UINT64: memcpy(&kv->v.u, p, 8); break;
        case UHLM_GGUF_INT64: memcpy(&kv->v.i, p, 8); break;
        default: memcpy(&kv->v.f, p, 8); break; /* FLOAT64 */
        }
        return 0;
    }
    uint32_t at;
    uint64_t n;
    if (rd_u32(c, &at) != 0 || rd_u64(c, &n) != 0) return -1;
    if (at > UHLM_GGUF_FLOAT64)
        return uhlm_set_error(c->err, "%s: key '%s' is an array of unknown element type %u",
                              c->path, kb, at);
    kv->arr_type = (uhlm_gguf_type)at;
    kv->arr_n = n;
    kv->data = c->base + c->off;
    uint64_t es = scalar_size(at);
    if (es) {
        if (n > left(c) / es)
            return uhlm_set_error(c->err,
                                  "%s: key '%s': array of %llu %s elements runs past end of file "
                                  "(%llu bytes left)",
                                  c->path, kb, (unsigned long long)n, value_type_name(at),
                                  (unsigned long long)left(c));
        const uint8_t *p = take(c, n * es);
        return at == UHLM_GGUF_BOOL ? check_bool(c, p, n) : 0;
    }
    if (at == UHLM_GGUF_STRING) {
        /* each string costs at least its 8-byte length, which bounds the allocation */
        if (n > left(c) / 8)
            return uhlm_set_error(c->err,
                                  "%s: key '%s': absurd string array length %llu (%llu bytes left)",
                                  c->path, kb, (unsigned long long)n, (unsigned long long)left(c));
        kv->strs = calloc(n ? (size_t)n : 1, sizeof *kv->strs);
        if (!kv->strs)
            return uhlm_set_error(c->err, "%s: out of memory reading key '%s'", c->path, kb);
        for (uint64_t i = 0; i < n; i++) {
            set_what(c, "key '%s' element %llu", kb, (unsigned long long)i);
            if (rd_str(c, &kv->strs[i]) != 0) return -1;
        }
        return 0;
    }
    /* array of arrays: every inner array costs at least its 12-byte header */
    if (n > left(c) / 12)
        return uhlm_set_error(c->err, "%s: key '%s': absurd nested array length %llu", c->path, kb,
                              (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        if (skip_array(c, 2) != 0) return -1;
    return 0;
}

static int read_tensor_info(cursor *c, uint64_t idx, uhlm_gguf_tensor *t) {
    set_what(c, "tensor info %llu", (unsigned long long)idx);
    if (rd_str(c, &t->name) != 0) return -1;
    if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME)
        return uhlm_set_error(c->err,
                              "%s: tensor info %llu has a name of %llu bytes (1 to %d allowed)",
                              c->path, (unsigned long long)idx, (unsigned long long)t->name.len,
                              GGUF_MAX_NAME);
    if (rd_u32(c, &t->n_dims) != 0) return -1;
    char nb[80];
    show(t->name, nb, sizeof nb);
    if (t->n_dims < 1 || t->n_dims > 4)
        return uhlm_set_error(c->err, "%s: tensor '%s' has %u dimensions (1 to 4 supported)",
                              c->path, nb, t->n_dims);
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (rd_u64(c, &t->ne[d]) != 0) return -1;
    uint32_t type;
    if (rd_u32(c, &type) != 0 || rd_u64(c, &t->offset) != 0) return -1;
    char msg[200];
    if (tensor_geometry(t->n_dims, t->ne, type, &t->nbytes, msg, sizeof msg) != 0)
        return uhlm_set_error(c->err, "%s: tensor '%s' %s", c->path, nb, msg);
    t->type = (uhlm_type)type;
    return 0;
}

/* Sorts indices of named items by name (heap sort: no recursion, no allocation). */
typedef uhlm_gguf_str (*name_fn)(const void *items, uint64_t i);

static uhlm_gguf_str kv_name(const void *items, uint64_t i) {
    return ((const uhlm_gguf_kv *)items)[i].key;
}

static uhlm_gguf_str tensor_name(const void *items, uint64_t i) {
    return ((const uhlm_gguf_tensor *)items)[i].name;
}

static void sift(uint64_t *a, uint64_t root, uint64_t n, const void *items, name_fn nf) {
    for (;;) {
        uint64_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && str_cmp(nf(items, a[child]), nf(items, a[child + 1])) < 0) child++;
        if (str_cmp(nf(items, a[root]), nf(items, a[child])) >= 0) return;
        uint64_t t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

static void sort_by_name(uint64_t *a, uint64_t n, const void *items, name_fn nf) {
    for (uint64_t i = 0; i < n; i++) a[i] = i;
    for (uint64_t i = n / 2; i-- > 0;) sift(a, i, n, items, nf);
    for (uint64_t end = n; end-- > 1;) {
        uint64_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift(a, 0, end, items, nf);
    }
}

void uhlm_gguf_close(uhlm_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    free(g->tensor_order);
    free(g->path);
    uhlm_mmap_close(&g->map);
    free(g);
}

/* Tensor data must be laid out as llama.cpp's gguf reader requires: in tensor-info order, each
 * region starting where the previous one ends, rounded up to the alignment. The bounds check
 * alone let a tensor whose type, shape or offset was altered read another tensor's bytes (and
 * generate print garbage); with this rule every region is disjoint, and every size equals
 * type x shape, since a larger or smaller size moves all later offsets. expect is where tensor
 * i must start. */
static int check_layout(const uhlm_gguf *g, uint64_t i, uint64_t expect, uhlm_error *err) {
    const uhlm_gguf_tensor *t = &g->tensors[i];
    if (t->offset == expect) return 0;
    char nb[80], pb[80];
    show(t->name, nb, sizeof nb);
    if (i == 0)
        return uhlm_set_error(err,
                              "%s: tensor '%s' data at offset %llu leaves %llu unused bytes at "
                              "the start of the data section (the first tensor starts at 0)",
                              g->path, nb, (unsigned long long)t->offset,
                              (unsigned long long)t->offset);
    const uhlm_gguf_tensor *p = &g->tensors[i - 1];
    show(p->name, pb, sizeof pb);
    if (t->offset < expect)
        return uhlm_set_error(err,
                              "%s: tensor '%s' data at offset %llu overlaps tensor '%s' (%s, %llu "
                              "bytes at offset %llu); tensor data must follow in order without "
                              "overlap: a corrupted type, shape or offset?",
                              g->path, nb, (unsigned long long)t->offset, pb,
                              ggml_type_name(p->type), (unsigned long long)p->nbytes,
                              (unsigned long long)p->offset);
    return uhlm_set_error(err,
                          "%s: tensor '%s' data at offset %llu leaves %llu unused bytes after "
                          "tensor '%s' (%s, %llu bytes at offset %llu, expected the next tensor "
                          "at %llu): its size does not match its type and shape, or an offset "
                          "was corrupted",
                          g->path, nb, (unsigned long long)t->offset,
                          (unsigned long long)(t->offset - expect), pb, ggml_type_name(p->type),
                          (unsigned long long)p->nbytes, (unsigned long long)p->offset,
                          (unsigned long long)expect);
}

static int parse(uhlm_gguf *g, uhlm_error *err) {
    cursor c;
    memset(&c, 0, sizeof c);
    c.base = g->map.data;
    c.size = g->map.size;
    c.path = g->path;
    c.err = err;
    set_what(&c, "header");
    uint32_t magic;
    if (rd_u32(&c, &magic) != 0) return -1;
    if (magic != UHLM_GGUF_MAGIC)
        return uhlm_set_error(err, "%s: bad magic 0x%08x (not a GGUF file)", g->path, magic);
    if (rd_u32(&c, &g->version) != 0) return -1;
    if (g->version == 1)
        return uhlm_set_error(err,
                              "%s: GGUF version 1 is not supported (only versions 2 and 3; "
                              "re-convert the model with a current llama.cpp)",
                              g->path);
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version;
        uint32_t sw = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
        return uhlm_set_error(err, "%s: unsupported GGUF version %u (only versions 2 and 3)%s",
                              g->path, v, sw >= 1 && sw <= 3 ? " - a big-endian file?" : "");
    }
    if (rd_u64(&c, &g->n_tensors) != 0 || rd_u64(&c, &g->n_kv) != 0) return -1;
    /* smallest possible encodings: a key/value is >= 13 bytes (8 length + 1 key byte + 4 type),
     * a tensor info >= 33 bytes (8 + 1 name byte + 4 + 8 + 4 + 8) */
    if (g->n_kv > left(&c) / 13)
        return uhlm_set_error(err, "%s: absurd key/value count %llu for a file of %llu bytes",
                              g->path, (unsigned long long)g->n_kv, (unsigned long long)c.size);
    if (g->n_tensors > left(&c) / 33)
        return uhlm_set_error(err, "%s: absurd tensor count %llu for a file of %llu bytes", g->path,
                              (unsigned long long)g->n_tensors, (unsigned long long)c.size);
    g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    g->tensor_order = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensor_order);
    if (!g->kv || !g->tensors || !g->tensor_order)
        return uhlm_set_error(err, "%s: out of memory", g->path);

    for (uint64_t i = 0; i < g->n_kv; i++)
        if (read_kv(&c, i, &g->kv[i]) != 0) return -1;
    if (g->n_kv > 1) {
        uint64_t *order = calloc((size_t)g->n_kv, sizeof *order);
        if (!order) return uhlm_set_error(err, "%s: out of memory", g->path);
        sort_by_name(order, g->n_kv, g->kv, kv_name);
        for (uint64_t i = 1; i < g->n_kv; i++)
            if (str_cmp(g->kv[order[i - 1]].key, g->kv[order[i]].key) == 0) {
                char kb[80];
                show(g->kv[order[i]].key, kb, sizeof kb);
                free(order);
                return uhlm_set_error(err, "%s: duplicate key '%s'", g->path, kb);
            }
        free(order);
    }

    g->alignment = UHLM_GGUF_DEFAULT_ALIGNMENT;
    const uhlm_gguf_kv *al = uhlm_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != UHLM_GGUF_UINT32)
            return uhlm_set_error(err, "%s: general.alignment has type %s, expected uint32",
                                  g->path, value_type_name(al->type));
        if (al->v.u == 0 || (al->v.u & (al->v.u - 1)) != 0)
            return uhlm_set_error(err,
                                  "%s: general.alignment %llu is not a nonzero power of two",
                                  g->path, (unsigned long long)al->v.u);
        g->alignment = (uint32_t)al->v.u;
    }

    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (read_tensor_info(&c, i, &g->tensors[i]) != 0) return -1;
    if (g->n_tensors > 0) {
        sort_by_name(g->tensor_order, g->n_tensors, g->tensors, tensor_name);
        for (uint64_t i = 1; i < g->n_tensors; i++)
            if (str_cmp(g->tensors[g->tensor_order[i - 1]].name,
                        g->tensors[g->tensor_order[i]].name) == 0) {
                char nb[80];
                return uhlm_set_error(err, "%s: duplicate tensor name '%s'", g->path,
                                      show(g->tensors[g->tensor_order[i]].name, nb, sizeof nb));
            }
    }

    /* data section: the end of the tensor infos rounded up to the alignment (the alignment is
     * at most 2^31 and the offset at most the file size, so this cannot overflow) */
    uint64_t a = g->alignment;
    uint64_t data_start = (c.off + a - 1) / a * a;
    uint64_t expect = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        uhlm_gguf_tensor *t = &g->tensors[i];
        char nb[80];
        show(t->name, nb, sizeof nb);
        if (t->offset % a != 0)
            return uhlm_set_error(err,
                                  "%s: tensor '%s' data offset %llu is not a multiple of the "
                                  "alignment %llu",
                                  g->path, nb, (unsigned long long)t->offset,
                                  (unsigned long long)a);
        uint64_t abs = t->offset > UINT64_MAX - data_start ? UINT64_MAX : data_start + t->offset;
        if (abs > c.size || t->nbytes > c.size - abs)
            return uhlm_set_error(err,
                                  "%s: tensor '%s' data runs past end of file (offset %llu + size "
                                  "%llu > file size %llu)",
                                  g->path, nb, (unsigned long long)abs,
                                  (unsigned long long)t->nbytes, (unsigned long long)c.size);
        if (check_layout(g, i, expect, err) != 0) return -1;
        /* nbytes fits in the file, so the rounding cannot overflow */
        expect = t->offset + (t->nbytes + a - 1) / a * a;
        t->data = c.base + abs;
    }
    return 0;
}

uhlm_gguf *uhlm_gguf_open(const char *path, uhlm_error *err) {
    return uhlm_gguf_open_mode(path, UHLM_LOAD_MMAP, err);
}

uhlm_gguf *uhlm_gguf_open_mode(const char *path, uhlm_load_mode mode, uhlm_error *err) {
    uhlm_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        uhlm_set_error(err, "%s: out of memory", path);
        return NULL;
    }
    g->path = strdup(path);
    if (!g->path) {
        free(g);
        uhlm_set_error(err, "%s: out of memory", path);
        return NULL;
    }
    if (uhlm_file_load(&g->map, path, mode, err) != 0 || parse(g, err) != 0) {
        uhlm_gguf_close(g);
        return NULL;
    }
    return g;
}

uint32_t uhlm_gguf_version(const uhlm_gguf *g) { return g->version; }
const uhlm_mmap *uhlm_gguf_map(const uhlm_gguf *g) { return &g->map; }
const char *uhlm_gguf_path(const uhlm_gguf *g) { return g->path; }
uint64_t uhlm_gguf_n_kv(const uhlm_gguf *g) { return g->n_kv; }
uint64_t uhlm_gguf_n_tensors(const uhlm_gguf *g) { return g->n_tensors; }

const uhlm_gguf_kv *uhlm_gguf_kv_at(const uhlm_gguf *g, uint64_t i) {
    return i < g->n_kv ? &g->kv[i] : NULL;
}

const uhlm_gguf_tensor *uhlm_gguf_tensor_at(const uhlm_gguf *g, uint64_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const uhlm_gguf_kv *uhlm_gguf_find_kv(const uhlm_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const uhlm_gguf_tensor *uhlm_gguf_find_tensor(const uhlm_gguf *g, const char *name) {
    uhlm_gguf_str key = {strlen(name), name};
    uint64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const uhlm_gguf_tensor *t = &g->tensors[g->tensor_order[mid]];
        int r = str_cmp(t->name, key);
        if (r == 0) return t;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static const uhlm_gguf_kv *need_kv(const uhlm_gguf *g, const char *key, uhlm_error *err) {
    const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(g, key);
    if (!kv) uhlm_set_error(err, "%s: missing key '%s'", g->path, key);
    return kv;
}

int uhlm_gguf_get_int(const uhlm_gguf *g, const char *key, int64_t *out, uhlm_error *err) {
    const uhlm_gguf_kv *kv = need_kv(g, key, err);
    if (!kv) return -1;
    switch (kv->type) {
    case UHLM_GGUF_UINT8:
    case UHLM_GGUF_UINT16:
    case UHLM_GGUF_UINT32:
    case UHLM_GGUF_UINT64:
        if (kv->v.u > (uint64_t)INT64_MAX)
            return uhlm_set_error(err, "%s: key '%s' value %llu is out of range", g->path, key,
                                  (unsigned long long)kv->v.u);
        *out = (int64_t)kv->v.u;
        return 0;
    case UHLM_GGUF_INT8:
    case UHLM_GGUF_INT16:
    case UHLM_GGUF_INT32:
    case UHLM_GGUF_INT64: *out = kv->v.i; return 0;
    default:
        return uhlm_set_error(err, "%s: key '%s' has type %s, expected an integer", g->path, key,
                              value_type_name(kv->type));
    }
}

int uhlm_gguf_get_float(const uhlm_gguf *g, const char *key, double *out, uhlm_error *err) {
    const uhlm_gguf_kv *kv = need_kv(g, key, err);
    if (!kv) return -1;
    if (kv->type != UHLM_GGUF_FLOAT32 && kv->type != UHLM_GGUF_FLOAT64)
        return uhlm_set_error(err, "%s: key '%s' has type %s, expected a float", g->path, key,
                              value_type_name(kv->type));
    *out = kv->v.f;
    return 0;
}

int uhlm_gguf_get_str(const uhlm_gguf *g, const char *key, uhlm_gguf_str *out, uhlm_error *err) {
    const uhlm_gguf_kv *kv = need_kv(g, key, err);
    if (!kv) return -1;
    if (kv->type != UHLM_GGUF_STRING)
        return uhlm_set_error(err, "%s: key '%s' has type %s, expected a string", g->path, key,
                              value_type_name(kv->type));
    *out = kv->v.str;
    return 0;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* the encoded value as it goes in the file (after the type) */
    size_t val_len;
} wkv;

typedef struct {
    char *name;
    uhlm_type type;
    uint32_t n_dims;
    uint64_t ne[4];
    const void *data;
    uint64_t nbytes;
} wtensor;

struct uhlm_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    /* The setters have no error argument, so the first failure is remembered here and
     * uhlm_gguf_write reports it rather than writing an incomplete file. */
    int failed;
    char why[256];
};

static int wfail(uhlm_gguf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int wfail(uhlm_gguf_writer *w, const char *fmt, ...) {
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->why, sizeof w->why, fmt, ap);
        va_end(ap);
    }
    w->failed = 1;
    return -1;
}

uhlm_gguf_writer *uhlm_gguf_writer_new(uhlm_error *err) {
    uhlm_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) uhlm_set_error(err, "out of memory creating a GGUF writer");
    return w;
}

void uhlm_gguf_writer_free(uhlm_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Stores key = (type, encoded value), replacing an earlier value of the same key, as ggml's
 * gguf_set_* do. Takes ownership of val. */
static int put_kv(uhlm_gguf_writer *w, const char *key, uint32_t type, uint8_t *val, size_t len) {
    if (!w) {
        free(val);
        return -1;
    }
    if (!val) return wfail(w, "out of memory storing key '%s'", key ? key : "(null)");
    if (!key || !key[0] || strlen(key) > GGUF_MAX_KEY) {
        free(val);
        return wfail(w, "invalid key (empty, NULL or longer than %d bytes)", GGUF_MAX_KEY);
    }
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].val_len = len;
            return 0;
        }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *nk = realloc(w->kv, nc * sizeof *nk);
        if (!nk) {
            free(val);
            return wfail(w, "out of memory storing key '%s'", key);
        }
        w->kv = nk;
        w->cap_kv = nc;
    }
    char *k = strdup(key);
    if (!k) {
        free(val);
        return wfail(w, "out of memory storing key '%s'", key);
    }
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return 0;
}

static uint8_t *dup_bytes(const void *p, size_t n) {
    uint8_t *b = malloc(n ? n : 1);
    if (b && n) memcpy(b, p, n);
    return b;
}

int uhlm_gguf_set_u32(uhlm_gguf_writer *w, const char *key, uint32_t v) {
    return put_kv(w, key, UHLM_GGUF_UINT32, dup_bytes(&v, 4), 4);
}

int uhlm_gguf_set_i32(uhlm_gguf_writer *w, const char *key, int32_t v) {
    return put_kv(w, key, UHLM_GGUF_INT32, dup_bytes(&v, 4), 4);
}

int uhlm_gguf_set_f32(uhlm_gguf_writer *w, const char *key, float v) {
    return put_kv(w, key, UHLM_GGUF_FLOAT32, dup_bytes(&v, 4), 4);
}

int uhlm_gguf_set_bool(uhlm_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return put_kv(w, key, UHLM_GGUF_BOOL, dup_bytes(&b, 1), 1);
}

int uhlm_gguf_set_str(uhlm_gguf_writer *w, const char *key, const char *v) {
    if (!w) return -1;
    if (!key) return wfail(w, "NULL key");
    if (!v) return wfail(w, "NULL string value for key '%s'", key);
    uint64_t n = strlen(v);
    uint8_t *b = malloc(8 + (size_t)n);
    if (b) {
        memcpy(b, &n, 8);
        memcpy(b + 8, v, (size_t)n);
    }
    return put_kv(w, key, UHLM_GGUF_STRING, b, 8 + (size_t)n);
}

/* Encodes an array of n scalars of es bytes each. */
static int set_arr_scalar(uhlm_gguf_writer *w, const char *key, uint32_t et, const void *v,
                          uint64_t n, size_t es) {
    if (!w) return -1;
    if (!key) return wfail(w, "NULL key");
    if (n && !v) return wfail(w, "NULL array for key '%s'", key);
    if (n > (SIZE_MAX - 12) / es) return wfail(w, "array for key '%s' is too large", key);
    size_t len = 12 + (size_t)n * es;
    uint8_t *b = malloc(len);
    if (b) {
        memcpy(b, &et, 4);
        memcpy(b + 4, &n, 8);
        if (n) memcpy(b + 12, v, (size_t)n * es);
    }
    return put_kv(w, key, UHLM_GGUF_ARRAY, b, len);
}

int uhlm_gguf_set_arr_f32(uhlm_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    return set_arr_scalar(w, key, UHLM_GGUF_FLOAT32, v, n, 4);
}

int uhlm_gguf_set_arr_i32(uhlm_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    return set_arr_scalar(w, key, UHLM_GGUF_INT32, v, n, 4);
}

int uhlm_gguf_set_arr_str(uhlm_gguf_writer *w, const char *key, const char *const *v,
                          const size_t *lens, uint64_t n) {
    if (!w) return -1;
    if (!key) return wfail(w, "NULL key");
    if (n && (!v || !lens)) return wfail(w, "NULL string array for key '%s'", key);
    size_t len = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (lens[i] && !v[i]) return wfail(w, "NULL string %llu for key '%s'", (unsigned long long)i, key);
        if (lens[i] > SIZE_MAX - 8 - len) return wfail(w, "string array for key '%s' is too large", key);
        len += 8 + lens[i];
    }
    uint8_t *b = malloc(len);
    if (b) {
        uint32_t et = UHLM_GGUF_STRING;
        memcpy(b, &et, 4);
        memcpy(b + 4, &n, 8);
        size_t o = 12;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t l = lens[i];
            memcpy(b + o, &l, 8);
            if (l) memcpy(b + o + 8, v[i], lens[i]);
            o += 8 + lens[i];
        }
    }
    return put_kv(w, key, UHLM_GGUF_ARRAY, b, len);
}

int uhlm_gguf_add_tensor(uhlm_gguf_writer *w, const char *name, uhlm_type type, uint32_t n_dims,
                         const uint64_t *ne, const void *data, uint64_t nbytes) {
    if (!w) return -1;
    if (!name || !name[0] || strlen(name) > GGUF_MAX_NAME)
        return wfail(w, "invalid tensor name (empty, NULL or longer than %d bytes)", GGUF_MAX_NAME);
    if (!ne || !data) return wfail(w, "tensor '%s': NULL shape or data", name);
    uint64_t want;
    char msg[200];
    if (tensor_geometry(n_dims, ne, (uint32_t)type, &want, msg, sizeof msg) != 0)
        return wfail(w, "tensor '%s' %s", name, msg);
    if (want != nbytes)
        return wfail(w, "tensor '%s': %llu bytes given, its shape and type need %llu", name,
                     (unsigned long long)nbytes, (unsigned long long)want);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return wfail(w, "duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, nc * sizeof *nt);
        if (!nt) return wfail(w, "out of memory adding tensor '%s'", name);
        w->t = nt;
        w->cap_t = nc;
    }
    char *nm = strdup(name);
    if (!nm) return wfail(w, "out of memory adding tensor '%s'", name);
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

typedef struct {
    FILE *f;
    uint64_t off;
    int failed;
} wout;

static void put(wout *o, const void *p, size_t n) {
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->failed = 1;
    o->off += n;
}

static void put_u32(wout *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(wout *o, uint64_t v) { put(o, &v, 8); }

static void put_pad(wout *o, uint64_t align) {
    static const uint8_t zeros[64];
    uint64_t pad = (align - o->off % align) % align;
    while (pad > 0 && !o->failed) {
        size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        put(o, zeros, n);
        pad -= n;
    }
}

int uhlm_gguf_write(uhlm_gguf_writer *w, const char *path, uhlm_error *err) {
    if (!w) return uhlm_set_error(err, "%s: no GGUF writer", path);
    if (w->failed) return uhlm_set_error(err, "%s: cannot write GGUF: %s", path, w->why);
    uint64_t align = UHLM_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, "general.alignment")) {
            uint32_t a = 0;
            if (w->kv[i].type == UHLM_GGUF_UINT32) memcpy(&a, w->kv[i].val, 4);
            if (a == 0 || (a & (a - 1)) != 0)
                return uhlm_set_error(err,
                                      "%s: general.alignment must be a uint32 nonzero power of two",
                                      path);
            align = a;
        }
    /* Write to a temporary name and rename, so a failed conversion never leaves a file that
     * looks complete at the requested path. */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return uhlm_set_error(err, "%s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.partial", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        uhlm_set_error(err, "%s: cannot create: %s", tmp, strerror(e));
        free(tmp);
        return -1;
    }
    wout o = {f, 0, 0};
    put_u32(&o, UHLM_GGUF_MAGIC);
    put_u32(&o, 3);
    put_u64(&o, (uint64_t)w->n_t);
    put_u64(&o, (uint64_t)w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kv[i].key);
        put_u64(&o, kl);
        put(&o, w->kv[i].key, (size_t)kl);
        put_u32(&o, w->kv[i].type);
        put(&o, w->kv[i].val, w->kv[i].val_len);
    }
    uint64_t data_off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t nl = strlen(t->name);
        put_u64(&o, nl);
        put(&o, t->name, (size_t)nl);
        put_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&o, t->ne[d]);
        put_u32(&o, (uint32_t)t->type);
        put_u64(&o, data_off);
        data_off += (t->nbytes + align - 1) / align * align;
    }
    if (w->n_t > 0) put_pad(&o, align);
    for (size_t i = 0; i < w->n_t && !o.failed; i++) {
        put(&o, w->t[i].data, (size_t)w->t[i].nbytes);
        put_pad(&o, align);
    }
    int e = o.failed ? errno : 0;
    int closed = fclose(f);
    if (!o.failed && closed != 0) {
        e = errno;
        o.failed = 1;
    }
    if (!o.failed && rename(tmp, path) != 0) {
        e = errno;
        uhlm_set_error(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    if (o.failed) {
        uhlm_set_error(err, "%s: write failed: %s", tmp, e ? strerror(e) : "I/O error");
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}
