/* gguf.h: GGUF v2/v3 reader and writer (the llama.cpp file format).
 *
 * Reader: the file is memory-mapped read-only and fully validated at open time: magic,
 * version, counts, every key/value (all 13 value types, nested arrays of scalars or strings),
 * tensor infos (<= 4 dims, known type, sizes that do not overflow) and that every tensor's data
 * lies inside the file at an offset aligned to general.alignment (default 32). Any defect is a
 * clear error naming the file; nothing is read out of bounds afterwards. Strings point into the
 * mapping and are not NUL-terminated.
 *
 * Writer: builds the key/value list and tensor list in memory, then writes header, metadata,
 * tensor infos, padding and data in one pass, checking every write. */
#ifndef UHLM_GGUF_H
#define UHLM_GGUF_H

#include <stdint.h>
#include <stdio.h>
#include "uhlm/common.h"
#include "model/kernels/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UHLM_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define UHLM_GGUF_DEFAULT_ALIGNMENT 32

typedef enum uhlm_gguf_type {
    UHLM_GGUF_UINT8 = 0,
    UHLM_GGUF_INT8 = 1,
    UHLM_GGUF_UINT16 = 2,
    UHLM_GGUF_INT16 = 3,
    UHLM_GGUF_UINT32 = 4,
    UHLM_GGUF_INT32 = 5,
    UHLM_GGUF_FLOAT32 = 6,
    UHLM_GGUF_BOOL = 7,
    UHLM_GGUF_STRING = 8,
    UHLM_GGUF_ARRAY = 9,
    UHLM_GGUF_UINT64 = 10,
    UHLM_GGUF_INT64 = 11,
    UHLM_GGUF_FLOAT64 = 12
} uhlm_gguf_type;

typedef struct uhlm_gguf_str {
    uint64_t len;
    const char *s; /* not NUL-terminated */
} uhlm_gguf_str;

typedef struct uhlm_gguf_kv {
    uhlm_gguf_str key;
    uhlm_gguf_type type;
    /* scalars (type != ARRAY), widened: */
    union {
        uint64_t u;
        int64_t i;
        double f;
        uhlm_gguf_str str;
    } v;
    /* arrays: element type, count, and elements. For scalar element types `data` points at
     * the packed little-endian elements in the file; for STRING elements `strs` holds them. */
    uhlm_gguf_type arr_type;
    uint64_t arr_n;
    const void *data;
    uhlm_gguf_str *strs;
} uhlm_gguf_kv;

typedef struct uhlm_gguf_tensor {
    uhlm_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[4]; /* ne[0] is the fastest-varying (row length); unused dims are 1 */
    uhlm_type type;
    uint64_t offset; /* relative to the data section */
    const void *data;
    uint64_t nbytes;
} uhlm_gguf_tensor;

typedef struct uhlm_gguf uhlm_gguf;

uhlm_gguf *uhlm_gguf_open(const char *path, uhlm_error *err); /* mapped (UHLM_LOAD_MMAP) */
/* The whole file mapped or copied as mode says (see uhlm_load_mode in common.h). */
uhlm_gguf *uhlm_gguf_open_mode(const char *path, uhlm_load_mode mode, uhlm_error *err);
/* The file's bytes in memory, for uhlm_file_huge_bytes. */
const uhlm_mmap *uhlm_gguf_map(const uhlm_gguf *g);
void uhlm_gguf_close(uhlm_gguf *g);
uint32_t uhlm_gguf_version(const uhlm_gguf *g);
const char *uhlm_gguf_path(const uhlm_gguf *g);
uint64_t uhlm_gguf_n_kv(const uhlm_gguf *g);
const uhlm_gguf_kv *uhlm_gguf_kv_at(const uhlm_gguf *g, uint64_t i);
const uhlm_gguf_kv *uhlm_gguf_find_kv(const uhlm_gguf *g, const char *key); /* NULL if absent */
uint64_t uhlm_gguf_n_tensors(const uhlm_gguf *g);
const uhlm_gguf_tensor *uhlm_gguf_tensor_at(const uhlm_gguf *g, uint64_t i);
const uhlm_gguf_tensor *uhlm_gguf_find_tensor(const uhlm_gguf *g, const char *name);

/* Typed getters. Integers of any integer type convert when the value fits; floats accept
 * FLOAT32/FLOAT64. Return 0 on success, -1 if absent (err says "missing key") or of the wrong
 * type / out of range (err says so). */
int uhlm_gguf_get_int(const uhlm_gguf *g, const char *key, int64_t *out, uhlm_error *err);
int uhlm_gguf_get_float(const uhlm_gguf *g, const char *key, double *out, uhlm_error *err);
int uhlm_gguf_get_str(const uhlm_gguf *g, const char *key, uhlm_gguf_str *out, uhlm_error *err);

/* ---- writer ---- */
typedef struct uhlm_gguf_writer uhlm_gguf_writer;

uhlm_gguf_writer *uhlm_gguf_writer_new(uhlm_error *err); /* version 3, alignment 32 */
void uhlm_gguf_writer_free(uhlm_gguf_writer *w);
/* Keys and values are copied. */
int uhlm_gguf_set_u32(uhlm_gguf_writer *w, const char *key, uint32_t v);
int uhlm_gguf_set_i32(uhlm_gguf_writer *w, const char *key, int32_t v);
int uhlm_gguf_set_f32(uhlm_gguf_writer *w, const char *key, float v);
int uhlm_gguf_set_bool(uhlm_gguf_writer *w, const char *key, int v);
int uhlm_gguf_set_str(uhlm_gguf_writer *w, const char *key, const char *v);
int uhlm_gguf_set_arr_f32(uhlm_gguf_writer *w, const char *key, const float *v, uint64_t n);
int uhlm_gguf_set_arr_i32(uhlm_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
int uhlm_gguf_set_arr_str(uhlm_gguf_writer *w, const char *key, const char *const *v,
                          const size_t *lens, uint64_t n);
/* Tensor data is referenced, not copied: it must stay valid until uhlm_gguf_write returns.
 * ne[0] is the row length. */
int uhlm_gguf_add_tensor(uhlm_gguf_writer *w, const char *name, uhlm_type type, uint32_t n_dims,
                         const uint64_t *ne, const void *data, uint64_t nbytes);
int uhlm_gguf_write(uhlm_gguf_writer *w, const char *path, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
