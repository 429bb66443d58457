/* model_internal.h: the layout of a loaded model, for the loaders, the forward pass, the
 * converter and the tests. Embedders see uhlm_model as opaque (uhlm/model.h). */
#ifndef UHLM_MODEL_INTERNAL_H
#define UHLM_MODEL_INTERNAL_H

#include "uhlm/model.h"
#include "model/kernels/quant.h"

typedef struct uhlm_layer {
    const float *attn_norm, *ffn_norm; /* dim floats each */
    uhlm_tensor wq, wk, wv, wo;        /* wq: dim x dim, wk/wv: kv_dim x dim, wo: dim x dim */
    uhlm_tensor w1, w2, w3;            /* gate: hidden x dim, down: dim x hidden, up: hidden x dim */
    const float *bq, *bk, *bv;         /* optional projection biases (qwen2), NULL when absent */
} uhlm_layer;

typedef struct uhlm_weights {
    uhlm_tensor tok_embd; /* vocab x dim */
    uhlm_layer *layers;   /* n_layers */
    const float *out_norm;
    uhlm_tensor output; /* n_out x dim; a copy of tok_embd's descriptor when shared */
    /* A draft vocabulary (GGUF uhlm.output_token_ids): the classifier scores only these n_out
     * tokens, strictly increasing, and every other token gets logit -inf (probability 0). A
     * drafter may do this to spend its compute on layers rather than on rows of a 49k-token
     * head (FR-Spec); speculative verification stays exact for any draft distribution. NULL
     * (and n_out = vocab_size) when the classifier covers the whole vocabulary. Owned. */
    int32_t *out_ids;
    int n_out;
} uhlm_weights;

typedef struct uhlm_gguf uhlm_gguf;

struct uhlm_model {
    uhlm_config cfg;
    uhlm_weights w;
    uhlm_format format;
    char path[1024];
    uhlm_mmap map;   /* llama2.c files */
    uhlm_gguf *gguf; /* GGUF files */
    uhlm_load_mode load; /* asked of the loaders: how the file is brought into memory */
    uhlm_tokenizer *tok; /* owned; embedded (GGUF) or attached with uhlm_model_attach_tokenizer */
    int synthetic;       /* random weights (convert --random-shape): for speed benchmarks only */
    uhlm_type wtype;     /* the type of the big matrices, for reporting */
    /* GGUF tokenizer.chat_template (points into the mapping, not NUL-terminated; NULL and 0
     * when the file has none): see uhlm/chat.h */
    const char *chat_template;
    size_t chat_template_len;
    void *owned_output; /* the classifier's rows after uhlm_model_keep_output_tokens, or NULL */
};

/* Internal loaders, used by uhlm_model_load (exposed for tests). */
int uhlm_llama2c_load(uhlm_model *m, uhlm_error *err); /* m->path, m->load set; fills cfg, w, map, format */
int uhlm_gguf_load_llama(uhlm_model *m, uhlm_error *err); /* m->path, m->load set; fills cfg, w, gguf, tok, format */

#endif
