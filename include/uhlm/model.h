/* model.h: Llama models (llama2.c checkpoints and GGUF) and the batched forward pass.
 *
 * A uhlm_model is read-only weights plus hyperparameters; it can be shared by any number of
 * contexts. A uhlm_ctx holds everything mutable for inference: per-sequence KV caches, scratch
 * buffers, a thread pool and the kernel level. Two models or two sessions in one process never
 * share mutable state.
 *
 * The forward entry point uhlm_decode takes a batch of (sequence, position, token) entries in
 * the spirit of llama.cpp's llama_batch. Within a call, entries of one sequence must come in
 * order with consecutive positions starting at that sequence's current length: the cache only
 * ever grows by appending, and uhlm_seq_truncate rolls it back. Logits are returned only for
 * entries that ask for them. Prefill, one-token decode, catch-up and multi-sequence batches all
 * use this one path; the weights are streamed once per call. */
#ifndef UHLM_MODEL_H
#define UHLM_MODEL_H

#include <stdint.h>
#include "common.h"
#include "types.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Architectures (GGUF general.architecture). Zero is `llama`, so a zeroed config is one. */
typedef enum uhlm_arch { UHLM_ARCH_LLAMA = 0, UHLM_ARCH_QWEN2 = 1 } uhlm_arch;

/* How RoPE pairs the elements of a head (llama.cpp's LLAMA_ROPE_TYPE_*): NORM rotates adjacent
 * pairs (2i, 2i+1), the layout of Meta's checkpoints and of llama-arch GGUFs (whose converter
 * permutes Hugging Face's q/k rows into it); NEOX rotates (i, i + head_dim/2), as qwen2 does.
 * Zero is NORM. */
typedef enum uhlm_rope_type { UHLM_ROPE_NORM = 0, UHLM_ROPE_NEOX = 1 } uhlm_rope_type;

typedef struct uhlm_config {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    /* dim / n_heads unless the file says otherwise (attention.key_length); the query and
     * attention-output width is n_heads * head_dim, the key/value width n_kv_heads * head_dim */
    int head_dim;
    float rope_theta; /* 10000 for llama2.c */
    float norm_eps;   /* 1e-5 for llama2.c */
    int shared_classifier;
    uhlm_arch arch;
    uhlm_rope_type rope_type;
    /* linear RoPE scaling: positions are multiplied by this (1 / rope.scaling.factor); 0 and 1
     * both mean none */
    float rope_freq_scale;
} uhlm_config;


typedef enum uhlm_format {
    UHLM_FORMAT_LLAMA2C_V0 = 0,
    UHLM_FORMAT_LLAMA2C_V1 = 1,
    UHLM_FORMAT_LLAMA2C_V2 = 2,
    UHLM_FORMAT_GGUF = 3
} uhlm_format;

/* Opaque: read it through the accessors below. */
typedef struct uhlm_model uhlm_model;

/* Detects the format from the file's first bytes. A llama2.c file carries no vocabulary:
 * pass tokenizer_path (or NULL to leave the model without one). For GGUF, tokenizer_path overrides the
 * embedded vocabulary. A tokenizer whose size disagrees with the model is refused. */
UHLM_API uhlm_model *uhlm_model_load(const char *path, const char *tokenizer_path, uhlm_error *err);

typedef struct uhlm_model_params {
    uhlm_load_mode load; /* AUTO (default), MMAP or COPY: see uhlm_load_mode in common.h */
} uhlm_model_params;
UHLM_API uhlm_model_params uhlm_model_default_params(void);
/* uhlm_model_load with parameters; uhlm_model_load uses uhlm_model_default_params(). */
UHLM_API uhlm_model *uhlm_model_load_params(const char *path, const char *tokenizer_path,
                                            const uhlm_model_params *params, uhlm_error *err);
UHLM_API void uhlm_model_free(uhlm_model *m);
UHLM_API const char *uhlm_format_name(uhlm_format f);
UHLM_API const char *uhlm_arch_name(uhlm_arch a); /* "llama", "qwen2" */
UHLM_API const char *uhlm_rope_type_name(uhlm_rope_type t); /* "norm", "neox" */
/* The GGUF architectures this engine runs, for messages: "llama, qwen2". */
#define UHLM_SUPPORTED_ARCHS "llama, qwen2"
/* Accessors. The config and tokenizer live as long as the model. */
UHLM_API const uhlm_config *uhlm_model_config(const uhlm_model *m);
/* The vocabulary: embedded (GGUF) or attached; NULL for a llama2.c model loaded without one. */
UHLM_API const uhlm_tokenizer *uhlm_model_tokenizer(const uhlm_model *m);
UHLM_API int uhlm_model_n_vocab(const uhlm_model *m); /* = uhlm_model_config(m)->vocab_size */
UHLM_API const char *uhlm_model_path(const uhlm_model *m); /* as given to uhlm_model_load */
UHLM_API uhlm_format uhlm_model_format(const uhlm_model *m);
UHLM_API uhlm_type uhlm_model_weight_type(const uhlm_model *m); /* the type of the big matrices */
/* 1 for random weights (convert --random-shape, GGUF uhlm.synthetic): speed benchmarks only */
UHLM_API int uhlm_model_is_synthetic(const uhlm_model *m);
/* How the weights were brought into memory: UHLM_LOAD_MMAP or UHLM_LOAD_COPY. */
UHLM_API uhlm_load_mode uhlm_model_load_mode(const uhlm_model *m);
/* Bytes of the model's file that huge pages back now, or -1 where that cannot be read. */
UHLM_API int64_t uhlm_model_huge_bytes(const uhlm_model *m);
UHLM_API uint64_t uhlm_model_file_bytes(const uhlm_model *m); /* the model file's size */
/* GGUF tokenizer.chat_template, not NUL-terminated (*len bytes); NULL and 0 when the file has
 * none. See uhlm/chat.h. */
UHLM_API const char *uhlm_model_chat_template(const uhlm_model *m, size_t *len);
/* Bytes of weights read for one token (all matrices + classifier + norms). */
UHLM_API uint64_t uhlm_model_weight_bytes(const uhlm_model *m);
/* The draft vocabulary: the tokens the classifier scores, strictly increasing, *n of them; every
 * other token's logit is -inf. NULL (and *n = vocab_size) when it scores the whole vocabulary.
 * A GGUF carries one as the int32 array uhlm.output_token_ids, with one output.weight row per
 * listed token: a drafter can spend its compute on layers instead of on a 49k-row head, and
 * speculative verification stays exact whatever the draft distribution is. */
UHLM_API const int32_t *uhlm_model_output_tokens(const uhlm_model *m, int *n);
/* Restricts the classifier to ids (n of them, strictly increasing, each scored by the current
 * classifier), copying the kept rows (dequantized to f32 only for llama2.c's group-quantized
 * type; other types keep their bytes, so kept logits are unchanged). Call it before creating
 * contexts on m. 0, or -1 with m unchanged. */
UHLM_API int uhlm_model_keep_output_tokens(uhlm_model *m, const int32_t *ids, int n,
                                           uhlm_error *err);
/* Takes ownership of tok, even on error. */
UHLM_API int uhlm_model_attach_tokenizer(uhlm_model *m, uhlm_tokenizer *tok, uhlm_error *err);

/* Writes m (whose tokenizer must be set) as a GGUF `llama` file with its big
 * matrices in `type` (F32, F16, Q8_0, Q4_0; norms stay F32). Only `llama` models without
 * biases can be written. */
UHLM_API int uhlm_gguf_save_llama(const uhlm_model *m, uhlm_type type, const char *path, uhlm_error *err);

/* ---- inference context ---- */

/* How the forward pass rounds. DEFAULT is uhlm's own kernels (fastest; the SIMD levels differ
 * by float rounding only). GGML reproduces the float operations of llama.cpp's CPU backend
 * (ggml 0.25.3 as built by llama-cpp-python 0.3.36 for an AVX-512 VNNI x86-64 CPU; 1 thread,
 * F32 KV cache, no flash attention) bit for bit, in portable C: the same activation
 * quantizer, products in the same SIMD lanes, the same FMAs and reductions, so that greedy
 * decoding gives llama.cpp's tokens, token for token. It exists because small models such as
 * SmolLM2 amplify any one-ulp rounding difference into visibly different text, so agreement
 * with llama.cpp cannot be had within a tolerance. It is several times slower than DEFAULT and
 * supports `llama` models with F16, Q8_0 or Q4_1 matrices (uhlm_ctx_new refuses others).
 * A batch passed to one uhlm_decode call plays the role of one llama.cpp ubatch (prefill uses
 * llama.cpp's batched kernels when it has two or more entries), so decode a prompt in one
 * call, as llama.cpp does with n_batch >= the prompt length. */
typedef enum uhlm_numerics { UHLM_NUMERICS_DEFAULT = 0, UHLM_NUMERICS_GGML = 1 } uhlm_numerics;
UHLM_API const char *uhlm_numerics_name(uhlm_numerics n); /* "default", "ggml" */
UHLM_API int uhlm_numerics_from_name(const char *name, uhlm_numerics *out); /* 0 ok, -1 unknown */

typedef struct uhlm_ctx_params {
    int n_seq;     /* sequences (each with its own KV cache); default 1 */
    int n_ctx;     /* positions per sequence; 0 = model seq_len */
    int n_threads; /* 0 = all CPUs */
    int max_batch; /* entries per internal chunk; 0 = 256. Longer batches are chunked. */
    uhlm_simd simd; /* AUTO picks the best the CPU has */
    uhlm_numerics numerics; /* DEFAULT (0), or GGML: llama.cpp's rounding, see above */
} uhlm_ctx_params;

typedef struct uhlm_ctx uhlm_ctx;

UHLM_API uhlm_ctx_params uhlm_ctx_default_params(void);
UHLM_API uhlm_ctx *uhlm_ctx_new(const uhlm_model *m, const uhlm_ctx_params *p, uhlm_error *err);
UHLM_API void uhlm_ctx_free(uhlm_ctx *c);
UHLM_API const uhlm_model *uhlm_ctx_model(const uhlm_ctx *c);
UHLM_API int uhlm_ctx_n_ctx(const uhlm_ctx *c);
UHLM_API int uhlm_ctx_n_seq(const uhlm_ctx *c);
UHLM_API uhlm_simd uhlm_ctx_simd(const uhlm_ctx *c);
/* The context's threads since it was made: loops handed to them, stalls (the caller waited
 * far longer for a descheduled thread's share than its own took), and loops the caller then
 * ran alone for a while (see threadpool.c). All 0 with one thread. For benchmarks: stalls
 * mean another process held a core, and the multi-thread figure is partly a 1-thread one. */
typedef struct uhlm_ctx_thread_stats {
    int64_t parallel_runs, stalls, solo_runs;
} uhlm_ctx_thread_stats;
UHLM_API uhlm_ctx_thread_stats uhlm_ctx_thread_stats_get(const uhlm_ctx *c);

typedef struct uhlm_batch_entry {
    int seq;
    int pos;
    int token;
    int logits; /* nonzero: return this entry's logits */
} uhlm_batch_entry;

/* Runs the batch. logits receives vocab_size floats per entry with logits != 0, in entry
 * order (may be NULL if none ask). hidden, if not NULL, likewise receives the final
 * RMS-normed hidden state (dim floats) of those entries. On error (bad seq, token, position,
 * position past n_ctx, or a non-finite logit from corrupt weights) nothing is changed. */
UHLM_API int uhlm_decode(uhlm_ctx *c, const uhlm_batch_entry *e, int n, float *logits, float *hidden,
                uhlm_error *err);

UHLM_API int uhlm_seq_len(const uhlm_ctx *c, int seq);
/* The tokens stored in seq's cache, in position order (uhlm_seq_len of them). */
UHLM_API const int *uhlm_seq_tokens(const uhlm_ctx *c, int seq);
/* Keeps positions < pos (0 clears). pos > len is an error. */
UHLM_API int uhlm_seq_truncate(uhlm_ctx *c, int seq, int pos, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
