/* tok_internal.h: the tokenizer's representation, shared by tokenizer.c (SentencePiece and
 * everything common) and bpe.c (byte-level BPE). Not part of the public API. */
#ifndef UHLM_TOK_INTERNAL_H
#define UHLM_TOK_INTERNAL_H

#include "uhlm/tokenizer.h"

typedef struct uhlm_bpe uhlm_bpe; /* bpe.c */

struct uhlm_tokenizer {
    int n;
    char *blob;       /* every piece back to back */
    size_t *off;      /* piece i starts at blob + off[i] */
    uint32_t *len;
    float *score;
    unsigned char *type;
    int max_len;
    int unk_id;
    int byte_id[256];     /* <0xNN> pieces; unk_id where the vocabulary lacks one */
    int byte_fallback;    /* the vocabulary has byte pieces */
    int has_unused;
    int max_user_len;     /* longest USER piece, 0 when there are none */
    int32_t *slots;       /* open-addressing hash of mergeable pieces -> id, -1 empty */
    size_t mask;
    uint64_t fp;
    uhlm_vocab_kind kind;
    uhlm_bpe *bpe;        /* UHLM_VOCAB_BPE only */
    int *special;         /* pieces matched in raw text (parse_special), longest first */
    int n_special;
};

/* A candidate merge of two adjacent symbols; the heap pops the highest key first, the leftmost
 * pair on ties (SentencePiece: key = score; BPE: key = -rank). */
typedef struct {
    double key;
    int left, right;
    uint32_t size; /* bytes of the merged text, to spot stale entries */
} uhlm_tok_pair;

typedef struct {
    uhlm_tok_pair *a;
    size_t n, cap;
} uhlm_tok_heap;

int uhlm_tok_heap_push(uhlm_tok_heap *h, uhlm_tok_pair p); /* -1 when out of memory */
uhlm_tok_pair uhlm_tok_heap_pop(uhlm_tok_heap *h);          /* h->n > 0 */

/* A piece of the input: raw text [start, start+len) when id < 0, else a special token. */
typedef struct {
    size_t start, len;
    int id;
} uhlm_frag;

/* llama.cpp's tokenizer_st_partition: each special piece in turn (those skip() does not
 * reject) is cut out of every raw fragment wherever it occurs. *out is malloc'd. 0, or -1 when
 * out of memory. */
int uhlm_tok_partition(const uhlm_tokenizer *t, const char *text, size_t len, const int *special,
                       int n_special, int (*skip)(const uhlm_tokenizer *, int, void *), void *ctx,
                       uhlm_frag **out, size_t *nout);
/* Sets t->special to the non-empty ids whose class cls[id] is a, b or c, longest first (ties
 * by id; llama.cpp's unstable sort leaves them unordered). 0, or -1 when out of memory. */
int uhlm_tok_set_special(uhlm_tokenizer *t, const unsigned char *cls, unsigned a, unsigned b,
                         unsigned c);

/* bpe.c */
void uhlm_bpe_free(uhlm_bpe *b);
int uhlm_bpe_bos(const uhlm_tokenizer *t);
int uhlm_bpe_eos(const uhlm_tokenizer *t);
int uhlm_bpe_unk(const uhlm_tokenizer *t);
int uhlm_bpe_pad(const uhlm_tokenizer *t);
int uhlm_bpe_add_bos(const uhlm_tokenizer *t);
int uhlm_bpe_add_eos(const uhlm_tokenizer *t);
int uhlm_bpe_is_eog(const uhlm_tokenizer *t, int id);
int uhlm_bpe_find(const uhlm_tokenizer *t, const char *s, size_t n);
const char *uhlm_bpe_pre(const uhlm_tokenizer *t);
int uhlm_bpe_n_merges(const uhlm_tokenizer *t);
const char *uhlm_bpe_merge(const uhlm_tokenizer *t, int i, size_t *len);
int uhlm_bpe_tokenize(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                      int add_eos, int parse_special, int *ids, int cap, uhlm_error *err);
/* Feeds the bytes of id's text to sink as llama.cpp's token_to_piece(special). */
void uhlm_bpe_decode(const uhlm_tokenizer *t, int id, int special,
                     void (*sink)(void *, unsigned), void *ctx);
/* The byte a code point of GPT-2's byte alphabet stands for, -1 if none. */
int uhlm_bpe_byte_of_cpt(uint32_t cpt);

/* tokenizer.c: builds the piece store shared by both kinds. raw_types: types are kept as given
 * (NULL = all NORMAL), nothing is inferred from the piece text (BPE, as llama.cpp). */
uhlm_tokenizer *uhlm_tok_build(int n, const char *const *pieces, const size_t *lens,
                               const float *scores, const int32_t *types, int sp_space_mark,
                               int llama2c_ctl, int raw_types, const char *what, uhlm_error *err);

#endif
