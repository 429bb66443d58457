/* gguf_edit.h: for tests that write variants of a GGUF file (a key changed or dropped, a tensor
 * added): copy_kv copies one key/value of an open file into a writer, under the given key. */
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

#endif
