/* gguf_edit.h: for tests that write variants of a GGUF file (a key changed or dropped, a tensor
 * dropped or duplicated): copy_kv copies one key/value of an open file into a writer, under the
 * given key; gguf_rewrite copies a whole file with the edits of a gguf_edit. */
#ifndef UHLM_TEST_GGUF_EDIT_H
#define UHLM_TEST_GGUF_EDIT_H

#include <stdlib.h>
#include <string.h>

#include "model/format/gguf.h"

static int copy_kv(uhlm_gguf_writer *w, const uhlm_gguf_kv *kv, const char *key) {
    switch (kv->type) {
    case UHLM_GGUF_UINT32: return uhlm_gguf_set_u32(w, key, (uint32_t)kv->v.u);
    case UHLM_GGUF_INT32: return uhlm_gguf_set_i32(w, key, (int32_t)kv->v.i);
    case UHLM_GGUF_FLOAT32: return uhlm_gguf_set_f32(w, key, (float)kv->v.f);
    case UHLM_GGUF_BOOL: return uhlm_gguf_set_bool(w, key, (int)kv->v.u);
    case UHLM_GGUF_STRING: {
        char *s = malloc(kv->v.str.len + 1);
        if (!s) return -1;
        memcpy(s, kv->v.str.s, kv->v.str.len);
        s[kv->v.str.len] = '\0';
        int rc = uhlm_gguf_set_str(w, key, s);
        free(s);
        return rc;
    }
    case UHLM_GGUF_ARRAY: {
        uint64_t n = kv->arr_n;
        if (kv->arr_type == UHLM_GGUF_STRING) {
            const char **v = malloc(sizeof *v * n);
            size_t *l = malloc(sizeof *l * n);
            if (!v || !l) return -1;
            for (uint64_t i = 0; i < n; i++) {
                v[i] = kv->strs[i].s;
                l[i] = (size_t)kv->strs[i].len;
            }
            int rc = uhlm_gguf_set_arr_str(w, key, v, l, n);
            free(v);
            free(l);
            return rc;
        }
        void *tmp = malloc(4 * n);
        if (!tmp) return -1;
        memcpy(tmp, kv->data, 4 * n);
        int rc = kv->arr_type == UHLM_GGUF_FLOAT32 ? uhlm_gguf_set_arr_f32(w, key, tmp, n)
                                                   : uhlm_gguf_set_arr_i32(w, key, tmp, n);
        free(tmp);
        return rc;
    }
    default: return -1;
    }
}

/* What gguf_rewrite changes; every field may be left zero. */
typedef struct gguf_edit {
    const char *drop_keys[2];  /* keys left out (a key to replace is dropped here and added by
                                  add_kvs) */
    const char *drop_tensor;   /* a tensor left out */
    const char *dup_tensor;    /* a tensor also written, right after itself, ... */
    const char *dup_as;        /* ... under this name */
    int (*add_kvs)(uhlm_gguf_writer *w, const void *user); /* after the copied keys; 0 or -1 */
    const void *user;
} gguf_edit;

static int gguf_edit_drops(const gguf_edit *e, const char *key) {
    for (int k = 0; k < 2; k++)
        if (e->drop_keys[k] && !strcmp(key, e->drop_keys[k])) return 1;
    return 0;
}

/* Writes src's keys and tensors to out with e's edits. 0, or -1 with a message on stderr. */
static int gguf_rewrite(const char *src, const char *out, const gguf_edit *e) {
    uhlm_error err = {{0}};
    uhlm_gguf *g = uhlm_gguf_open(src, &err);
    if (!g) {
        fprintf(stderr, "gguf_rewrite: %s\n", err.msg);
        return -1;
    }
    uhlm_gguf_writer *w = uhlm_gguf_writer_new(&err);
    int rc = w ? 0 : -1;
    char key[256];
    for (uint64_t i = 0; rc == 0 && i < uhlm_gguf_n_kv(g); i++) {
        const uhlm_gguf_kv *kv = uhlm_gguf_kv_at(g, i);
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.s);
        if (!gguf_edit_drops(e, key)) rc = copy_kv(w, kv, key);
    }
    if (rc == 0 && e->add_kvs) rc = e->add_kvs(w, e->user);
    for (uint64_t i = 0; rc == 0 && i < uhlm_gguf_n_tensors(g); i++) {
        const uhlm_gguf_tensor *t = uhlm_gguf_tensor_at(g, i);
        snprintf(key, sizeof key, "%.*s", (int)t->name.len, t->name.s);
        if (e->drop_tensor && !strcmp(key, e->drop_tensor)) continue;
        rc = uhlm_gguf_add_tensor(w, key, t->type, t->n_dims, t->ne, t->data, t->nbytes);
        if (rc == 0 && e->dup_tensor && !strcmp(key, e->dup_tensor))
            rc = uhlm_gguf_add_tensor(w, e->dup_as, t->type, t->n_dims, t->ne, t->data, t->nbytes);
    }
    if (rc == 0) rc = uhlm_gguf_write(w, out, &err);
    if (rc) fprintf(stderr, "gguf_rewrite: %s\n", err.msg[0] ? err.msg : "a key or tensor was refused");
    uhlm_gguf_writer_free(w);
    uhlm_gguf_close(g);
    return rc;
}

#endif
