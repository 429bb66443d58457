/* tokenizer_compat.c: TEMPORARY SentencePiece-only stand-ins for the special-token API that the
 * bpe branch adds to tokenizer.h (ids from the fixed Llama layout, special tokens found by
 * scanning the vocabulary). Delete this file when merging bpe. */
#include <stdlib.h>
#include <string.h>

#include "uhlm/tokenizer.h"

int uhlm_tokenizer_bos(const uhlm_tokenizer *t) {
    (void)t;
    return UHLM_TOKEN_BOS;
}

int uhlm_tokenizer_eos(const uhlm_tokenizer *t) {
    (void)t;
    return UHLM_TOKEN_EOS;
}

int uhlm_tokenizer_add_bos(const uhlm_tokenizer *t) {
    (void)t;
    return 1;
}

int uhlm_tokenizer_is_eog(const uhlm_tokenizer *t, int id) {
    (void)t;
    return id == UHLM_TOKEN_EOS;
}

int uhlm_tokenizer_find(const uhlm_tokenizer *t, const char *piece, size_t len) {
    int n = uhlm_tokenizer_vocab_size(t);
    for (int i = 0; i < n; i++) {
        size_t pl = 0;
        const char *p = uhlm_tokenizer_piece(t, i, &pl);
        if (p && pl == len && memcmp(p, piece, len) == 0) return i;
    }
    return -1;
}

/* Control and user-defined pieces split the text; each raw fragment is encoded on its own
 * (with SentencePiece's dummy prefix, as llama.cpp does after a special token). */
int uhlm_tokenize_special(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                          int add_eos, int parse_special, int *ids, int cap, uhlm_error *err) {
    if (!parse_special) return uhlm_tokenize(t, text, len, add_bos, add_eos, ids, cap, err);
    int V = uhlm_tokenizer_vocab_size(t), ns = 0;
    int *sp = malloc(sizeof(int) * (size_t)(V > 0 ? V : 1));
    if (!sp) return uhlm_set_error(err, "out of memory");
    for (int i = 0; i < V; i++) {
        int ty = uhlm_tokenizer_type(t, i);
        size_t pl = 0;
        uhlm_tokenizer_piece(t, i, &pl);
        if ((ty == UHLM_TOKTYPE_CONTROL || ty == UHLM_TOKTYPE_USER) && pl > 0) sp[ns++] = i;
    }
    int n = 0;
    if (add_bos) {
        if (n < cap) ids[n] = UHLM_TOKEN_BOS;
        n++;
    }
    size_t seg = 0, i = 0;
    while (i <= len) {
        int hit = -1;
        size_t hl = 0;
        for (int k = 0; k < ns && i < len; k++) {
            size_t pl = 0;
            const char *p = uhlm_tokenizer_piece(t, sp[k], &pl);
            if (pl > hl && pl <= len - i && memcmp(text + i, p, pl) == 0) {
                hit = sp[k];
                hl = pl;
            }
        }
        if (hit < 0 && i < len) {
            i++;
            continue;
        }
        if (i > seg) {
            int room = cap - n > 0 ? cap - n : 0;
            int r = uhlm_tokenize(t, text + seg, i - seg, 0, 0, room ? ids + n : NULL, room, err);
            if (r < 0) {
                free(sp);
                return -1;
            }
            n += r;
        }
        if (hit < 0) break;
        if (n < cap) ids[n] = hit;
        n++;
        i += hl;
        seg = i;
    }
    if (add_eos) {
        if (n < cap) ids[n] = UHLM_TOKEN_EOS;
        n++;
    }
    free(sp);
    return n;
}
