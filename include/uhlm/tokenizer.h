/* tokenizer.h: SentencePiece-style BPE as Llama uses it.
 *
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

/* llama2.c tokenizer.bin. vocab_size 0 reads entries until the end of the file; otherwise
 * exactly vocab_size entries must be present. */
uhlm_tokenizer *uhlm_tokenizer_load_bin(const char *path, int vocab_size, uhlm_error *err);

/* From parallel arrays (GGUF metadata). pieces[i] has lens[i] bytes and uses U+2581 for
 * space when sp_space_mark is nonzero. types may be NULL (types are then inferred: <unk>,
 * <s>, </s>, <0xNN>). `what` names the source in error messages. */
uhlm_tokenizer *uhlm_tokenizer_from_arrays(int n, const char *const *pieces, const size_t *lens,
                                           const float *scores, const int32_t *types,
                                           int sp_space_mark, const char *what, uhlm_error *err);
void uhlm_tokenizer_free(uhlm_tokenizer *t);

int uhlm_tokenizer_vocab_size(const uhlm_tokenizer *t);
/* Raw piece with ' ' for U+2581; not NUL-terminated. NULL for an out-of-range id. */
const char *uhlm_tokenizer_piece(const uhlm_tokenizer *t, int id, size_t *len);
float uhlm_tokenizer_score(const uhlm_tokenizer *t, int id);
int uhlm_tokenizer_type(const uhlm_tokenizer *t, int id);
int uhlm_tokenizer_max_piece_len(const uhlm_tokenizer *t);
/* A hash of every piece, score and type: equal vocabularies have equal fingerprints. */
uint64_t uhlm_tokenizer_fingerprint(const uhlm_tokenizer *t);

/* Encodes len bytes of text. Returns the number of ids (which may exceed cap: then only cap
 * were written and the caller should retry with a larger buffer), or -1 on error. */
int uhlm_tokenize(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos,
                  int *ids, int cap, uhlm_error *err);

/* Streaming decoder: turns ids into valid UTF-8. Byte tokens are joined; an incomplete UTF-8
 * sequence is held until it completes; invalid bytes become U+FFFD. The leading space of the
 * first piece after BOS is dropped, as SentencePiece does. Control tokens decode to nothing. */
typedef struct uhlm_detok {
    const uhlm_tokenizer *tok;
    int prev;
    unsigned char pend[8];
    int npend;
} uhlm_detok;

void uhlm_detok_init(uhlm_detok *d, const uhlm_tokenizer *t);
/* Appends the text for `id` to out (NUL-terminated, cap >= 1); returns bytes written
 * (excluding the NUL). Output is truncated safely at cap. A piece is at most
 * uhlm_tokenizer_max_piece_len + 8 bytes, so cap of that size never truncates. */
size_t uhlm_detok_push(uhlm_detok *d, int id, char *out, size_t cap);
/* Emits U+FFFD for any held incomplete sequence. */
size_t uhlm_detok_flush(uhlm_detok *d, char *out, size_t cap);

/* Whole-sequence convenience: malloc'd NUL-terminated text, NULL on allocation failure. */
char *uhlm_detokenize(const uhlm_tokenizer *t, const int *ids, int n);

/* ---- special tokens and end of generation ----
 * TEMPORARY (branch arch): SentencePiece-only stand-ins for the API the bpe branch adds here;
 * implemented in tokenizer_compat.c, both to be dropped in favour of bpe's on merge. */
int uhlm_tokenizer_bos(const uhlm_tokenizer *t);
int uhlm_tokenizer_eos(const uhlm_tokenizer *t);
int uhlm_tokenizer_add_bos(const uhlm_tokenizer *t);
int uhlm_tokenizer_is_eog(const uhlm_tokenizer *t, int id);
int uhlm_tokenizer_find(const uhlm_tokenizer *t, const char *piece, size_t len);
int uhlm_tokenize_special(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                          int add_eos, int parse_special, int *ids, int cap, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
