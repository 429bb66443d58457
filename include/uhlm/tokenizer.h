/* tokenizer.h: the two vocabulary kinds GGUF models use, with llama.cpp's behaviour.
 *
 * UHLM_VOCAB_SPM: SentencePiece-style BPE as Llama uses it (described below).
 * UHLM_VOCAB_BPE: byte-level BPE (GGUF tokenizer.ggml.model = "gpt2": SmolLM2, Llama 3, Qwen 2).
 * Text is split by the pre-tokenizer named in tokenizer.ggml.pre ("smollm", "llama-bpe",
 * "qwen2", ... see uhlm_tokenizer_from_bpe), each word's bytes are mapped to GPT-2's printable
 * byte alphabet and merged by the rank of tokenizer.ggml.merges; pieces are stored as in the
 * file (byte alphabet) and decoded back to bytes. Special/added tokens (CONTROL and
 * USER_DEFINED types) are matched in raw text first as llama.cpp's tokenizer_st_partition does
 * (USER_DEFINED always, CONTROL only with parse_special). Ids equal llama.cpp's llama_tokenize.
 *
 * SPM details:
 * Pieces are stored with ' ' for the SentencePiece space mark U+2581 ("▁"), as llama2.c's
 * tokenizer.bin does; GGUF pieces are converted on the way in and out. Encoding reproduces the
 * SentencePiece library's ids for Llama vocabularies: a dummy-prefix space, score-ordered
 * merges (highest score first, leftmost on ties), and byte fallback (<0xNN>) for characters
 * outside the vocabulary. BOS = 1, EOS = 2, UNK = 0. */
#ifndef UHLM_TOKENIZER_H
#define UHLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UHLM_TOKEN_UNK 0
#define UHLM_TOKEN_BOS 1
#define UHLM_TOKEN_EOS 2

/* SentencePiece / GGUF token types */
enum {
    UHLM_TOKTYPE_NORMAL = 1,
    UHLM_TOKTYPE_UNKNOWN = 2,
    UHLM_TOKTYPE_CONTROL = 3,
    UHLM_TOKTYPE_USER = 4,
    UHLM_TOKTYPE_UNUSED = 5,
    UHLM_TOKTYPE_BYTE = 6
};

typedef struct uhlm_tokenizer uhlm_tokenizer;

typedef enum uhlm_vocab_kind { UHLM_VOCAB_SPM = 0, UHLM_VOCAB_BPE = 1 } uhlm_vocab_kind;

/* A byte-level BPE vocabulary as GGUF stores it. Arrays are read, not kept. Initialize by
 * field name: ids are -1 when absent, flags -1 for the default. */
typedef struct uhlm_bpe_vocab {
    int n_tokens;
    const char *const *tokens; /* pieces in GPT-2's byte alphabet ("\xC4\xA0the" for " the") */
    const size_t *token_lens;
    const int32_t *types;      /* UHLM_TOKTYPE_*; NULL: all NORMAL */
    int n_merges;
    const char *const *merges; /* "left right", rank = index */
    const size_t *merge_lens;
    const char *pre;           /* pre-tokenizer name; NULL or "" = "default" (refused) */
    int bos, eos, unk, pad;    /* -1: none */
    int add_bos, add_eos;      /* -1: llama.cpp's default for the pre type */
    /* more end-of-generation ids (GGUF eot/eom/fim_pad/fim_rep/fim_sep_token_id), besides
     * eos and the texts llama.cpp recognises; out-of-range ids are ignored, as llama.cpp */
    const int *eog_ids;
    int n_eog_ids;
} uhlm_bpe_vocab;

/* Builds a BPE tokenizer. Refused with an error naming the value: an unsupported pre-tokenizer,
 * a merge that is not "left right" with both sides in the vocabulary, ids out of range. */
UHLM_API uhlm_tokenizer *uhlm_tokenizer_from_bpe(const uhlm_bpe_vocab *v, const char *what,
                                        uhlm_error *err);

/* llama2.c tokenizer.bin. vocab_size 0 reads entries until the end of the file; otherwise
 * exactly vocab_size entries must be present. */
UHLM_API uhlm_tokenizer *uhlm_tokenizer_load_bin(const char *path, int vocab_size, uhlm_error *err);

/* From parallel arrays (GGUF metadata). pieces[i] has lens[i] bytes and uses U+2581 for
 * space when sp_space_mark is nonzero. types may be NULL (types are then inferred: <unk>,
 * <s>, </s>, <0xNN>). `what` names the source in error messages. */
UHLM_API uhlm_tokenizer *uhlm_tokenizer_from_arrays(int n, const char *const *pieces, const size_t *lens,
                                           const float *scores, const int32_t *types,
                                           int sp_space_mark, const char *what, uhlm_error *err);
/* The vocabulary embedded in a GGUF file (a model or a vocab-only file), either kind. */
UHLM_API uhlm_tokenizer *uhlm_tokenizer_load_gguf(const char *path, uhlm_error *err);
UHLM_API void uhlm_tokenizer_free(uhlm_tokenizer *t);

UHLM_API int uhlm_tokenizer_vocab_size(const uhlm_tokenizer *t);
/* Raw piece with ' ' for U+2581; not NUL-terminated. NULL for an out-of-range id. */
UHLM_API const char *uhlm_tokenizer_piece(const uhlm_tokenizer *t, int id, size_t *len);
UHLM_API float uhlm_tokenizer_score(const uhlm_tokenizer *t, int id);
UHLM_API int uhlm_tokenizer_type(const uhlm_tokenizer *t, int id);
UHLM_API int uhlm_tokenizer_max_piece_len(const uhlm_tokenizer *t);
/* A hash of every piece, score and type: equal vocabularies have equal fingerprints. */
UHLM_API uint64_t uhlm_tokenizer_fingerprint(const uhlm_tokenizer *t);

/* Special ids and flags. A NULL tokenizer (llama2.c model without one) answers as llama2.c:
 * BOS 1, EOS 2, add_bos 1, end of generation = EOS. */
UHLM_API uhlm_vocab_kind uhlm_tokenizer_kind(const uhlm_tokenizer *t);
UHLM_API int uhlm_tokenizer_bos(const uhlm_tokenizer *t);      /* id, -1 if none */
UHLM_API int uhlm_tokenizer_eos(const uhlm_tokenizer *t);      /* id, -1 if none */
UHLM_API int uhlm_tokenizer_unk(const uhlm_tokenizer *t);      /* id, -1 if none */
UHLM_API int uhlm_tokenizer_pad(const uhlm_tokenizer *t);      /* id, -1 if none */
/* 1 if prompts get BOS (GGUF add_bos_token; SPM/llama2.c default 1) */
UHLM_API int uhlm_tokenizer_add_bos(const uhlm_tokenizer *t);
UHLM_API int uhlm_tokenizer_add_eos(const uhlm_tokenizer *t);  /* GGUF add_eos_token; default 0 */
/* End of generation, as llama.cpp's special_eog_ids: eos, eot, <|im_end|>, <|eot_id|>,
 * <|endoftext|>, ... For SPM vocabularies: EOS (2). */
UHLM_API int uhlm_tokenizer_is_eog(const uhlm_tokenizer *t, int id);
/* Exact piece text (as stored: GPT-2 byte alphabet for BPE, ' ' for U+2581 for SPM) -> id,
 * -1 if absent. The first of duplicate pieces wins. */
UHLM_API int uhlm_tokenizer_find(const uhlm_tokenizer *t, const char *piece, size_t len);
/* BPE pre-tokenizer name ("smollm", ...), "" for SPM */
UHLM_API const char *uhlm_tokenizer_pre(const uhlm_tokenizer *t);
/* BPE merges in rank order ("left right"); 0 / NULL for SPM or an out-of-range index. */
UHLM_API int uhlm_tokenizer_n_merges(const uhlm_tokenizer *t);
UHLM_API const char *uhlm_tokenizer_merge(const uhlm_tokenizer *t, int i, size_t *len);

/* Encodes len bytes of text. Returns the number of ids (which may exceed cap: then only cap
 * were written and the caller should retry with a larger buffer), or -1 on error. */
UHLM_API int uhlm_tokenize(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos,
                  int *ids, int cap, uhlm_error *err);
/* uhlm_tokenize with llama.cpp's parse_special: special/added token text in `text` becomes
 * those ids (both kinds; for SPM each text fragment then gets the dummy-prefix space, as
 * llama.cpp does). uhlm_tokenize = parse_special 0; BPE USER_DEFINED pieces are matched
 * either way.
 * add_bos/add_eos add the ids whatever the vocabulary's flags say; an error if it has none. */
UHLM_API int uhlm_tokenize_special(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                          int add_eos, int parse_special, int *ids, int cap, uhlm_error *err);

/* Streaming decoder: turns ids into valid UTF-8. Byte tokens are joined; an incomplete UTF-8
 * sequence is held until it completes; invalid bytes become U+FFFD. SPM: the leading space of
 * the first piece after BOS is dropped, as SentencePiece does. Control tokens decode to
 * nothing (llama.cpp's token_to_piece with special = false; so do BPE UNKNOWN/UNUSED tokens);
 * BPE pieces are mapped back from GPT-2's byte alphabet, USER_DEFINED ones copied as they are. */
typedef struct uhlm_detok {
    const uhlm_tokenizer *tok;
    int prev;
    unsigned char pend[8];
    int npend;
} uhlm_detok;

UHLM_API void uhlm_detok_init(uhlm_detok *d, const uhlm_tokenizer *t);
/* Appends the text for `id` to out (NUL-terminated, cap >= 1); returns bytes written
 * (excluding the NUL). Output is truncated safely at cap. A piece is at most
 * uhlm_tokenizer_max_piece_len + 8 bytes, so cap of that size never truncates. */
UHLM_API size_t uhlm_detok_push(uhlm_detok *d, int id, char *out, size_t cap);
/* Emits U+FFFD for any held incomplete sequence. */
UHLM_API size_t uhlm_detok_flush(uhlm_detok *d, char *out, size_t cap);

/* The bytes id stands for, as llama.cpp's token_to_piece with special = true: special tokens
 * as written, BPE pieces mapped back from the byte alphabet (possibly part of a UTF-8
 * character), SPM pieces with ' ' for U+2581 and <0xNN> as its byte. Writes at most cap
 * bytes (no NUL) and returns the full length; 0 for an invalid id. */
UHLM_API size_t uhlm_tokenizer_token_text(const uhlm_tokenizer *t, int id, char *buf, size_t cap);

/* Whole-sequence convenience: malloc'd NUL-terminated text, NULL on allocation failure. */
UHLM_API char *uhlm_detokenize(const uhlm_tokenizer *t, const int *ids, int n);

#ifdef __cplusplus
}
#endif
#endif
