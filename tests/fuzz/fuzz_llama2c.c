/* fuzz_llama2c.c: libFuzzer target for the llama2.c checkpoint loader (v0 legacy, v1 fp32, v2
 * int8 groups), through uhlm_model_load.
 *
 * The input is the file. A checkpoint that loads must be usable: its shape passes the
 * loader's own checks and one row of every matrix (and the classifier) is read back.
 * fuzz-max-len: 16384
 *
 * Built with -DUHLM_FUZZ_SEEDGEN, it writes seeds: tiny checkpoints of each version, with a
 * shared and an unshared classifier. */
#include "fuzz_common.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "model/kernels/quant.h"

/* dim 8, hidden 16, 1 layer, 2 heads, 2 kv heads, vocab 4, seq_len 4, v2 group 8 */
enum { D = 8, H = 16, L = 1, NH = 2, V = 4, S = 4, GROUP = 8 };

#ifndef UHLM_FUZZ_SEEDGEN

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_as_file(data, size);
    uhlm_error err;
    uhlm_model *m = uhlm_model_load(path, NULL, &err);
    if (!m) {
        fuzz_require(strstr(err.msg, path) != NULL, "error message without the path");
        return 0;
    }
    const uhlm_config *c = uhlm_model_config(m);
    fuzz_require(c->dim > 0 && c->n_layers > 0 && c->vocab_size > 0 && c->n_heads > 0 &&
                     c->dim % c->n_heads == 0 && c->n_kv_heads > 0 &&
                     c->n_heads % c->n_kv_heads == 0,
                 "a loaded config is inconsistent");
    float *row = malloc(sizeof(float) * (size_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim));
    fuzz_require(row != NULL, "out of memory");
    uhlm_tensor_row(&m->w.tok_embd, m->w.tok_embd.rows - 1, row);
    uhlm_tensor_row(&m->w.output, m->w.output.rows - 1, row);
    for (int l = 0; l < c->n_layers; l++) {
        const uhlm_layer *ly = &m->w.layers[l];
        const uhlm_tensor *ts[7] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w1, &ly->w2, &ly->w3};
        for (int k = 0; k < 7; k++) uhlm_tensor_row(ts[k], ts[k]->rows - 1, row);
        (void)ly->attn_norm[c->dim - 1];
        (void)ly->ffn_norm[c->dim - 1];
    }
    (void)m->w.out_norm[c->dim - 1];
    free(row);
    uhlm_model_free(m);
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN */

typedef struct {
    uint8_t p[16384];
    size_t n;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->n + n > sizeof b->p) exit(1);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_i32(bytes *b, int32_t v) { put(b, &v, 4); }

static void put_floats(bytes *b, size_t n, float v) {
    for (size_t i = 0; i < n; i++) put(b, &v, 4);
}

static void build(bytes *b, int version, int shared) {
    b->n = 0;
    int32_t hdr[7] = {D, H, L, NH, NH, shared || version ? V : -V, S};
    if (version == 0) {
        for (int i = 0; i < 7; i++) put_i32(b, hdr[i]);
    } else {
        put_i32(b, 0x616b3432);
        put_i32(b, version);
        for (int i = 0; i < 7; i++) put_i32(b, hdr[i]);
        uint8_t sh = (uint8_t)(shared != 0), z = 0;
        put(b, &sh, 1);
        if (version == 2) put_i32(b, GROUP);
        while (b->n < 256) put(b, &z, 1);
    }
    size_t mats[8] = {V * D, D * D, D * D, D * D, D * D, H * D, D * H, H * D};
    if (version == 0) {
        put_floats(b, mats[0], 0.01f);
        put_floats(b, D, 1.0f);
        for (int k = 1; k <= 4; k++) put_floats(b, mats[k], 0.02f);
        put_floats(b, D, 1.0f);
        for (int k = 5; k <= 7; k++) put_floats(b, mats[k], 0.02f);
        put_floats(b, D, 1.0f);
        put_floats(b, (size_t)S * (D / NH), 0.5f);
        if (!shared) put_floats(b, mats[0], 0.01f);
        return;
    }
    put_floats(b, 3 * D, 1.0f); /* attention, ffn and final norms */
    size_t nm = shared ? 8 : 9;
    for (size_t k = 0; k < nm; k++) {
        size_t n = mats[k < 8 ? k : 0];
        if (version == 1) {
            put_floats(b, n, 0.02f);
        } else {
            for (size_t i = 0; i < n; i++) {
                int8_t v = (int8_t)((int)(i % 7) - 3);
                put(b, &v, 1);
            }
        }
    }
    if (version == 2)
        for (size_t k = 0; k < nm; k++) put_floats(b, mats[k < 8 ? k : 0] / GROUP, 0.01f);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static bytes b;
    for (int version = 0; version <= 2; version++)
        for (int shared = 0; shared <= 1; shared++) {
            build(&b, version, shared);
            char name[32];
            snprintf(name, sizeof name, "v%d-%s.bin", version, shared ? "shared" : "unshared");
            fuzz_write_seed(argv[1], name, b.p, b.n);
        }
    return 0;
}

#endif
