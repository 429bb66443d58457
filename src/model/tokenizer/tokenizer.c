/* tokenizer.c: SentencePiece-compatible BPE for Llama vocabularies (see tokenizer.h).
 *
 * Encoding follows the SentencePiece library (normalizer.cc, bpe_model.cc and
 * sentencepiece_processor.cc) for a BPE model whose normalizer is `identity` with
 * add_dummy_prefix = true, remove_extra_whitespaces = false and escape_whitespaces = true,
 * which is what Llama-2's tokenizer.model and the llama2.c vocabularies use:
 *   1. normalization: a non-empty text gets one leading space; every byte that does not start
 *      a well-formed UTF-8 character becomes U+FFFD (one per byte, as SentencePiece does); the
 *      space mark U+2581 in the input is the same as ' ' (pieces store ' ' for it);
 *   2. the text is split into characters (a user-defined piece matched first is one frozen
 *      symbol);
 *   3. the adjacent pair whose concatenation is a normal/user/unused piece with the highest
 *      score is merged, leftmost on ties, until none is left (a heap of candidate pairs and a
 *      linked list of symbols: O(n log n));
 *   4. merged pieces of UNUSED type are split back into the parts they were merged from;
 *   5. a symbol that is not a piece becomes one <0xNN> token per byte when the vocabulary has
 *      byte pieces, else one UNK (a run of unknown symbols gives a single UNK).
 * Not handled: NFKC or any other precompiled normalization table (Llama's is identity),
 * remove_extra_whitespaces, treat_whitespace_as_suffix, BPE dropout, and user-defined pieces
 * that contain spaces or U+2581 (SentencePiece matches those against the raw text).
 *
 * Decoding: control tokens produce nothing, UNKNOWN tokens produce " \u2047 " as
 * SentencePiece does, byte tokens are joined into UTF-8. The leading space of the first
 * visible piece of a sequence (or after a BOS) is dropped. Invalid byte sequences become one
 * U+FFFD per maximal ill-formed subpart (the Unicode recommendation, as Python's decoder does);
 * SentencePiece instead writes one U+FFFD per byte there, which only matters for byte
 * sequences a tokenizer never produces from valid text.
 *
 * A tokenizer is immutable after loading, so one can be shared by threads. */
#include "uhlm/tokenizer.h"
#include "tok_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No real vocabulary comes near this; the bound keeps lengths in 32 bits and lets a corrupt
 * header fail early instead of asking for gigabytes. */
#define MAX_PIECE_BYTES 65536

static const char UNK_SURFACE[] = " \xE2\x81\x87 "; /* " ⁇ ", SentencePiece's unk_surface */
static const char REPLACEMENT[] = "\xEF\xBF\xBD";     /* U+FFFD */

/* ------------------------------------------------------------------------------------------ */
/* small helpers */

static uint64_t hash_bytes(const char *s, size_t n) { return uhlm_fnv1a(UHLM_FNV_INIT, s, n); }

/* Id of a mergeable piece (NORMAL, USER, UNUSED) equal to s[0..n), or -1. */
static int lookup(const uhlm_tokenizer *t, const char *s, size_t n) {
    if (n == 0 || n > (size_t)t->max_len) return -1;
    size_t i = (size_t)hash_bytes(s, n) & t->mask;
    for (;;) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->blob + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->mask;
    }
}

/* Value of a "<0xNN>" piece, or -1. SentencePiece writes these with upper-case hex. */
static int byte_piece_value(const char *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int infer_type(const char *p, size_t n) {
    if (n == 5 && memcmp(p, "<unk>", 5) == 0) return UHLM_TOKTYPE_UNKNOWN;
    if ((n == 3 && memcmp(p, "<s>", 3) == 0) || (n == 4 && memcmp(p, "</s>", 4) == 0))
        return UHLM_TOKTYPE_CONTROL;
    if (byte_piece_value(p, n) >= 0) return UHLM_TOKTYPE_BYTE;
    return UHLM_TOKTYPE_NORMAL;
}

/* Length of the well-formed UTF-8 character at s (n > 0 bytes available), or 0 when s[0]
 * does not start one. Mirrors SentencePiece's DecodeUTF8: no overlongs, no surrogates,
 * nothing above U+10FFFF. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
#define TRAIL(x) (((x) & 0xC0) == 0x80)
    if ((c & 0xE0) == 0xC0) {
        if (n < 2 || !TRAIL(s[1])) return 0;
        unsigned cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return cp >= 0x80 ? 2 : 0;
    }
    if ((c & 0xF0) == 0xE0) {
        if (n < 3 || !TRAIL(s[1]) || !TRAIL(s[2])) return 0;
        unsigned cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) ? 3 : 0;
    }
    if ((c & 0xF8) == 0xF0) {
        if (n < 4 || !TRAIL(s[1]) || !TRAIL(s[2]) || !TRAIL(s[3])) return 0;
        unsigned cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
                      (s[3] & 0x3Fu);
        return cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
    }
#undef TRAIL
    return 0;
}

/* SentencePiece splits the normalized (hence well-formed) text by the lead byte alone. */
static size_t one_char_len(unsigned char c) {
    static const unsigned char tab[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return tab[c >> 4];
}

static void put_u32(unsigned char b[4], uint32_t v) {
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------------------------------------------ */
/* construction */

void uhlm_tokenizer_free(uhlm_tokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->slots);
    free(t->special);
    uhlm_bpe_free(t->bpe);
    free(t);
}

/* Builds a tokenizer from pieces as stored in a file. sp_space_mark: pieces use U+2581 for
 * space. llama2c_ctl: llama2.c writes BOS/EOS as "\n<s>\n" and "\n</s>\n" for display; they
 * are stored as "<s>"/"</s>" so the same vocabulary has one fingerprint whether it came from
 * tokenizer.bin or GGUF. */
uhlm_tokenizer *uhlm_tok_build(int n, const char *const *pieces, const size_t *lens,
                               const float *scores, const int32_t *types, int sp_space_mark,
                               int llama2c_ctl, int raw_types, const char *what, uhlm_error *err) {
    if (!what) what = "tokenizer";
    if (n <= 0) {
        uhlm_set_error(err, "%s: empty vocabulary", what);
        return NULL;
    }
    if (!pieces || !lens) {
        uhlm_set_error(err, "%s: no pieces given", what);
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] > MAX_PIECE_BYTES) {
            uhlm_set_error(err, "%s: token %d is %zu bytes long (at most %d allowed)", what, i,
                           lens[i], MAX_PIECE_BYTES);
            return NULL;
        }
        if (!pieces[i] && lens[i]) {
            uhlm_set_error(err, "%s: token %d has no text", what, i);
            return NULL;
        }
        if (scores && isnan(scores[i])) {
            uhlm_set_error(err, "%s: token %d has a NaN score", what, i);
            return NULL;
        }
        if (types && (types[i] < 0 || types[i] > UHLM_TOKTYPE_BYTE)) {
            uhlm_set_error(err, "%s: token %d has invalid type %d", what, i, (int)types[i]);
            return NULL;
        }
        total += lens[i];
    }
    uhlm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        uhlm_set_error(err, "%s: out of memory", what);
        return NULL;
    }
    t->n = n;
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    t->mask = cap - 1;
    t->blob = malloc(total ? total : 1);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->score = malloc((size_t)n * sizeof *t->score);
    t->type = malloc((size_t)n);
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->blob || !t->off || !t->len || !t->score || !t->type || !t->slots) {
        uhlm_tokenizer_free(t);
        uhlm_set_error(err, "%s: out of memory for a %d-token vocabulary", what, n);
        return NULL;
    }
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        const char *p = pieces[i];
        size_t l = lens[i];
        if (llama2c_ctl && l == 5 && memcmp(p, "\n<s>\n", 5) == 0) p = "<s>", l = 3;
        if (llama2c_ctl && l == 6 && memcmp(p, "\n</s>\n", 6) == 0) p = "</s>", l = 4;
        t->off[i] = pos;
        char *dst = t->blob + pos;
        size_t k = 0;
        for (size_t j = 0; j < l;) {
            if (sp_space_mark && j + 3 <= l && (unsigned char)p[j] == 0xE2 &&
                (unsigned char)p[j + 1] == 0x96 && (unsigned char)p[j + 2] == 0x81) {
                dst[k++] = ' ';
                j += 3;
            } else {
                dst[k++] = p[j++];
            }
        }
        t->len[i] = (uint32_t)k;
        pos += k;
        if ((int)k > t->max_len) t->max_len = (int)k;
        t->score[i] = scores ? scores[i] : 0.0f;
        int ty = types ? (int)types[i] : raw_types ? UHLM_TOKTYPE_NORMAL : 0;
        /* GGUF's "undefined" (0) and files without types get the conventional meaning */
        t->type[i] = (unsigned char)(ty || raw_types ? ty : infer_type(dst, k));
    }
    t->unk_id = -1;
    for (int i = 0; i < n && t->unk_id < 0; i++)
        if (t->type[i] == UHLM_TOKTYPE_UNKNOWN) t->unk_id = i;
    if (t->unk_id < 0) t->unk_id = UHLM_TOKEN_UNK < n ? UHLM_TOKEN_UNK : 0;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (size_t i = 0; i <= t->mask; i++) t->slots[i] = -1;
    for (int i = 0; i < n; i++) {
        const char *p = t->blob + t->off[i];
        int ty = t->type[i];
        if (ty == UHLM_TOKTYPE_BYTE) {
            int v = byte_piece_value(p, t->len[i]);
            if (v >= 0 && t->byte_id[v] < 0) t->byte_id[v] = i;
            t->byte_fallback = 1;
        }
        if (ty == UHLM_TOKTYPE_UNUSED) t->has_unused = 1;
        if (ty != UHLM_TOKTYPE_NORMAL && ty != UHLM_TOKTYPE_USER && ty != UHLM_TOKTYPE_UNUSED)
            continue;
        if (t->len[i] == 0) continue; /* can never be the concatenation of two symbols */
        if (ty == UHLM_TOKTYPE_USER && (int)t->len[i] > t->max_user_len)
            t->max_user_len = (int)t->len[i];
        /* the first of duplicate pieces wins, as in SentencePiece's InsertIfNotPresent */
        size_t h = (size_t)hash_bytes(p, t->len[i]) & t->mask;
        int dup = 0;
        while (t->slots[h] >= 0) {
            int o = t->slots[h];
            if (t->len[o] == t->len[i] && memcmp(t->blob + t->off[o], p, t->len[i]) == 0) {
                dup = 1;
                break;
            }
            h = (h + 1) & t->mask;
        }
        if (!dup) t->slots[h] = i;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) t->byte_id[b] = t->unk_id;
    if (!raw_types && uhlm_tok_set_special(t, t->type, UHLM_TOKTYPE_CONTROL, UHLM_TOKTYPE_USER,
                                           UHLM_TOKTYPE_UNKNOWN) != 0) {
        uhlm_tokenizer_free(t);
        uhlm_set_error(err, "%s: out of memory for a %d-token vocabulary", what, n);
        return NULL;
    }

    unsigned char b4[4];
    uint64_t fp = UHLM_FNV_INIT;
    put_u32(b4, (uint32_t)n);
    fp = uhlm_fnv1a(fp, b4, 4);
    for (int i = 0; i < n; i++) {
        put_u32(b4, t->len[i]);
        fp = uhlm_fnv1a(fp, b4, 4);
        fp = uhlm_fnv1a(fp, t->blob + t->off[i], t->len[i]);
        uint32_t bits;
        memcpy(&bits, &t->score[i], 4);
        put_u32(b4, bits);
        fp = uhlm_fnv1a(fp, b4, 4);
        put_u32(b4, t->type[i]);
        fp = uhlm_fnv1a(fp, b4, 4);
    }
    t->fp = fp;
    return t;
}

typedef struct {
    int id;
    uint32_t len;
} spec_key;

static int cmp_spec(const void *a, const void *b) {
    const spec_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int uhlm_tok_set_special(uhlm_tokenizer *t, const unsigned char *cls, unsigned a, unsigned b,
                         unsigned c) {
    int ns = 0;
    for (int id = 0; id < t->n; id++) {
        unsigned k = cls[id];
        if (t->len[id] > 0 && (k == a || k == b || k == c)) ns++;
    }
    spec_key *keys = malloc((size_t)(ns ? ns : 1) * sizeof *keys);
    free(t->special);
    t->special = malloc((size_t)(ns ? ns : 1) * sizeof *t->special);
    if (!keys || !t->special) {
        free(keys);
        return -1;
    }
    ns = 0;
    for (int id = 0; id < t->n; id++) {
        unsigned k = cls[id];
        if (t->len[id] > 0 && (k == a || k == b || k == c)) keys[ns++] = (spec_key){id, t->len[id]};
    }
    qsort(keys, (size_t)ns, sizeof *keys, cmp_spec);
    for (int i = 0; i < ns; i++) t->special[i] = keys[i].id;
    t->n_special = ns;
    free(keys);
    return 0;
}

uhlm_tokenizer *uhlm_tokenizer_from_arrays(int n, const char *const *pieces, const size_t *lens,
                                           const float *scores, const int32_t *types,
                                           int sp_space_mark, const char *what, uhlm_error *err) {
    return uhlm_tok_build(n, pieces, lens, scores, types, sp_space_mark, 0, 0, what, err);
}

uhlm_tokenizer *uhlm_tokenizer_load_bin(const char *path, int vocab_size, uhlm_error *err) {
    if (!path) {
        uhlm_set_error(err, "tokenizer: no file name given");
        return NULL;
    }
    if (vocab_size < 0) {
        uhlm_set_error(err, "%s: invalid vocabulary size %d", path, vocab_size);
        return NULL;
    }
    uhlm_mmap m;
    if (uhlm_mmap_open(&m, path, err) != 0) return NULL;
    const uint8_t *d = m.data;
    size_t sz = m.size;
    uhlm_tokenizer *t = NULL;
    const char **pieces = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    if (sz >= 4 && memcmp(d, "GGUF", 4) == 0) {
        uhlm_set_error(err, "%s: is a GGUF file, not a llama2.c tokenizer.bin", path);
        goto done;
    }
    if (sz < 4) {
        uhlm_set_error(err, "%s: truncated: %zu bytes, too short for the tokenizer header", path,
                       sz);
        goto done;
    }
    int32_t maxlen = (int32_t)rd_u32(d);
    if (maxlen < 0 || maxlen > MAX_PIECE_BYTES) {
        uhlm_set_error(err, "%s: invalid max_token_length %d: not a llama2.c tokenizer.bin?",
                       path, (int)maxlen);
        goto done;
    }
    /* first pass validates and counts, so the second can allocate exactly */
    size_t off = 4;
    int count = 0;
    while (vocab_size ? count < vocab_size : off < sz) {
        if (off == sz) {
            uhlm_set_error(err, "%s: holds %d tokens, but the vocabulary size is %d", path, count,
                           vocab_size);
            goto done;
        }
        if (sz - off < 8) {
            uhlm_set_error(err, "%s: truncated: token %d is cut off at byte %zu", path, count, off);
            goto done;
        }
        int32_t l = (int32_t)rd_u32(d + off + 4);
        if (l < 0) {
            uhlm_set_error(err, "%s: token %d has a negative length (%d) at byte %zu", path, count,
                           (int)l, off + 4);
            goto done;
        }
        if (l > maxlen) {
            uhlm_set_error(err, "%s: token %d is %d bytes long, more than max_token_length %d",
                           path, count, (int)l, (int)maxlen);
            goto done;
        }
        if ((size_t)l > sz - off - 8) {
            uhlm_set_error(err, "%s: truncated: token %d needs %d bytes, %zu are left", path, count,
                           (int)l, sz - off - 8);
            goto done;
        }
        off += 8 + (size_t)l;
        if (++count == INT_MAX) break;
    }
    if (off != sz) {
        uhlm_set_error(err, "%s: %zu bytes follow the %d tokens expected: the file holds a "
                       "different vocabulary size",
                       path, sz - off, count);
        goto done;
    }
    if (count == 0) {
        uhlm_set_error(err, "%s: no tokens", path);
        goto done;
    }
    pieces = malloc((size_t)count * sizeof *pieces);
    lens = malloc((size_t)count * sizeof *lens);
    scores = malloc((size_t)count * sizeof *scores);
    if (!pieces || !lens || !scores) {
        uhlm_set_error(err, "%s: out of memory for %d tokens", path, count);
        goto done;
    }
    off = 4;
    for (int i = 0; i < count; i++) {
        uint32_t bits = rd_u32(d + off);
        memcpy(&scores[i], &bits, 4);
        lens[i] = rd_u32(d + off + 4);
        pieces[i] = (const char *)d + off + 8;
        off += 8 + lens[i];
    }
    t = uhlm_tok_build(count, pieces, lens, scores, NULL, 0, 1, 0, path, err);
done:
    free(pieces);
    free(lens);
    free(scores);
    uhlm_mmap_close(&m);
    return t;
}

/* ------------------------------------------------------------------------------------------ */
/* accessors */

int uhlm_tokenizer_vocab_size(const uhlm_tokenizer *t) { return t ? t->n : 0; }

const char *uhlm_tokenizer_piece(const uhlm_tokenizer *t, int id, size_t *len) {
    if (!t || id < 0 || id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return t->blob + t->off[id];
}

float uhlm_tokenizer_score(const uhlm_tokenizer *t, int id) {
    return t && id >= 0 && id < t->n ? t->score[id] : 0.0f;
}

int uhlm_tokenizer_type(const uhlm_tokenizer *t, int id) {
    return t && id >= 0 && id < t->n ? t->type[id] : 0;
}

int uhlm_tokenizer_max_piece_len(const uhlm_tokenizer *t) { return t ? t->max_len : 0; }

uint64_t uhlm_tokenizer_fingerprint(const uhlm_tokenizer *t) { return t ? t->fp : 0; }

uhlm_vocab_kind uhlm_tokenizer_kind(const uhlm_tokenizer *t) {
    return t ? t->kind : UHLM_VOCAB_SPM;
}

#define IS_BPE(t) ((t) && (t)->kind == UHLM_VOCAB_BPE)

/* A NULL tokenizer (a llama2.c model loaded without one) answers with llama2.c's fixed ids,
 * so callers need no special case for it. */
int uhlm_tokenizer_bos(const uhlm_tokenizer *t) {
    if (IS_BPE(t)) return uhlm_bpe_bos(t);
    return !t || UHLM_TOKEN_BOS < t->n ? UHLM_TOKEN_BOS : -1;
}

int uhlm_tokenizer_eos(const uhlm_tokenizer *t) {
    if (IS_BPE(t)) return uhlm_bpe_eos(t);
    return !t || UHLM_TOKEN_EOS < t->n ? UHLM_TOKEN_EOS : -1;
}

int uhlm_tokenizer_unk(const uhlm_tokenizer *t) {
    if (IS_BPE(t)) return uhlm_bpe_unk(t);
    return t ? t->unk_id : -1;
}

int uhlm_tokenizer_pad(const uhlm_tokenizer *t) { return IS_BPE(t) ? uhlm_bpe_pad(t) : -1; }

int uhlm_tokenizer_add_bos(const uhlm_tokenizer *t) {
    if (IS_BPE(t)) return uhlm_bpe_add_bos(t);
    return uhlm_tokenizer_bos(t) >= 0;
}

int uhlm_tokenizer_add_eos(const uhlm_tokenizer *t) { return IS_BPE(t) ? uhlm_bpe_add_eos(t) : 0; }

int uhlm_tokenizer_is_eog(const uhlm_tokenizer *t, int id) {
    if (IS_BPE(t)) return uhlm_bpe_is_eog(t, id);
    return id == uhlm_tokenizer_eos(t);
}

int uhlm_tokenizer_find(const uhlm_tokenizer *t, const char *piece, size_t len) {
    if (!t || (!piece && len)) return -1;
    if (IS_BPE(t)) return uhlm_bpe_find(t, piece, len);
    /* the lookup hash holds mergeable pieces only; others are few enough to scan */
    int id = lookup(t, piece, len);
    if (id >= 0) return id;
    for (int i = 0; i < t->n; i++)
        if (t->len[i] == len && memcmp(t->blob + t->off[i], piece, len) == 0) return i;
    return -1;
}

const char *uhlm_tokenizer_pre(const uhlm_tokenizer *t) { return IS_BPE(t) ? uhlm_bpe_pre(t) : ""; }

int uhlm_tokenizer_n_merges(const uhlm_tokenizer *t) { return IS_BPE(t) ? uhlm_bpe_n_merges(t) : 0; }

const char *uhlm_tokenizer_merge(const uhlm_tokenizer *t, int i, size_t *len) {
    if (IS_BPE(t)) return uhlm_bpe_merge(t, i, len);
    if (len) *len = 0;
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding */

typedef struct {
    uint32_t start, len; /* bytes of the normalized text; len 0 = merged away */
    int prev, next;
    int freeze;
} sym;

typedef struct {
    const uhlm_tokenizer *t;
    const char *norm;
    sym *s;
    uhlm_tok_heap heap;
    uint32_t *split; /* UNUSED piece id -> length of the left part it was merged from */
    int *ids, cap, count;
    int prev_unk;
    int oom;
} enc;

/* Heap order: higher key first, then the leftmost pair. SentencePiece (bpe_model.cc's
 * comparator) uses key = score; llama.cpp's BPE key = -rank (bpe.c). */
static int better(const uhlm_tok_pair *a, const uhlm_tok_pair *b) {
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

int uhlm_tok_heap_push(uhlm_tok_heap *h, uhlm_tok_pair p) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        uhlm_tok_pair *na = realloc(h->a, nc * sizeof *na);
        if (!na) return -1;
        h->a = na;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!better(&p, &h->a[up])) break;
        h->a[i] = h->a[up];
        i = up;
    }
    h->a[i] = p;
    return 0;
}

uhlm_tok_pair uhlm_tok_heap_pop(uhlm_tok_heap *h) {
    uhlm_tok_pair top = h->a[0], last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&h->a[c + 1], &h->a[c])) c++;
        if (!better(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n) h->a[i] = last;
    return top;
}

static void maybe_add_pair(enc *e, int l, int r) {
    if (l < 0 || r < 0 || e->s[l].freeze || e->s[r].freeze) return;
    uint32_t size = e->s[l].len + e->s[r].len;
    int id = lookup(e->t, e->norm + e->s[l].start, size);
    if (id < 0) return;
    if (uhlm_tok_heap_push(&e->heap, (uhlm_tok_pair){e->t->score[id], l, r, size}) != 0) e->oom = 1;
    /* remembers how an unused piece was formed, to undo it afterwards (rev_merge) */
    if (e->split && e->t->type[id] == UHLM_TOKTYPE_UNUSED) e->split[id] = e->s[l].len;
}

static void emit(enc *e, int id) {
    if (e->count < e->cap) e->ids[e->count] = id;
    e->count++;
}

/* One final piece, with SentencePiece's byte fallback and merging of unknown runs. */
static void emit_piece(enc *e, uint32_t start, uint32_t len) {
    int id = lookup(e->t, e->norm + start, len);
    int is_unk = id < 0;
    if (is_unk && e->t->byte_fallback) {
        for (uint32_t i = 0; i < len; i++)
            emit(e, e->t->byte_id[(unsigned char)e->norm[start + i]]);
    } else if (!(is_unk && e->prev_unk)) {
        emit(e, is_unk ? e->t->unk_id : id);
    }
    e->prev_unk = is_unk;
}

/* Splits UNUSED pieces back into their parts, depth first, left to right. */
static void resegment(enc *e, uint32_t start, uint32_t len) {
    if (!e->split) {
        emit_piece(e, start, len);
        return;
    }
    uint32_t stack_local[64][2];
    uint32_t (*stack)[2] = stack_local;
    size_t n = 0, cap = 64;
    stack[n][0] = start;
    stack[n][1] = len;
    n++;
    while (n > 0) {
        n--;
        uint32_t s = stack[n][0], l = stack[n][1];
        int id = lookup(e->t, e->norm + s, l);
        uint32_t k = id >= 0 && e->t->type[id] == UHLM_TOKTYPE_UNUSED ? e->split[id] : 0;
        if (k == 0 || k >= l) {
            emit_piece(e, s, l);
            continue;
        }
        if (n + 2 > cap) {
            size_t nc = cap * 2;
            uint32_t(*ns)[2] = stack == stack_local ? malloc(nc * sizeof *ns)
                                                    : realloc(stack, nc * sizeof *ns);
            if (!ns) {
                e->oom = 1;
                break;
            }
            if (stack == stack_local) memcpy(ns, stack_local, sizeof stack_local);
            stack = ns;
            cap = nc;
        }
        stack[n][0] = s + k; /* right part, popped second */
        stack[n][1] = l - k;
        n++;
        stack[n][0] = s;
        stack[n][1] = k;
        n++;
    }
    if (stack != stack_local) free(stack);
}

int uhlm_tokenize(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos,
                  int *ids, int cap, uhlm_error *err) {
    return uhlm_tokenize_special(t, text, len, add_bos, add_eos, 0, ids, cap, err);
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0 || nn > hn) return NULL;
    const char *end = h + hn - nn + 1;
    for (const char *p = h; p < end;) {
        p = memchr(p, nd[0], (size_t)(end - p));
        if (!p) return NULL;
        if (memcmp(p, nd, nn) == 0) return p;
        p++;
    }
    return NULL;
}

int uhlm_tok_partition(const uhlm_tokenizer *t, const char *text, size_t len, const int *special,
                       int n_special, int (*skip)(const uhlm_tokenizer *, int, void *), void *ctx,
                       uhlm_frag **out, size_t *nout) {
    size_t nf = len ? 1 : 0, capf = 16;
    uhlm_frag *fr = malloc(capf * sizeof *fr), *nfr = NULL;
    if (!fr) return -1;
    if (nf) fr[0] = (uhlm_frag){0, len, -1};
    for (int si = 0; si < n_special && nf; si++) {
        int sid = special[si];
        if (skip && skip(t, sid, ctx)) continue;
        const char *st = t->blob + t->off[sid];
        size_t sl = t->len[sid];
        int any = 0;
        for (size_t i = 0; i < nf && !any; i++)
            any = fr[i].id < 0 && find_bytes(text + fr[i].start, fr[i].len, st, sl) != NULL;
        if (!any) continue;
        size_t k = 0, capn = nf + 16;
        nfr = malloc(capn * sizeof *nfr);
        if (!nfr) goto oom;
        for (size_t i = 0; i < nf; i++) {
            size_t s0 = fr[i].start, rem = fr[i].len;
            const char *m;
            /* leftmost occurrences, each search going on right of the last */
            while (fr[i].id < 0 && rem && (m = find_bytes(text + s0, rem, st, sl)) != NULL) {
                size_t at = (size_t)(m - text);
                if (k + 3 > capn) {
                    capn *= 2;
                    uhlm_frag *g = realloc(nfr, capn * sizeof *g);
                    if (!g) goto oom;
                    nfr = g;
                }
                if (at > s0) nfr[k++] = (uhlm_frag){s0, at - s0, -1};
                nfr[k++] = (uhlm_frag){at, sl, sid};
                rem -= at - s0 + sl;
                s0 = at + sl;
            }
            if (k + 1 > capn) {
                capn *= 2;
                uhlm_frag *g = realloc(nfr, capn * sizeof *g);
                if (!g) goto oom;
                nfr = g;
            }
            if (fr[i].id >= 0) nfr[k++] = fr[i];
            else if (rem) nfr[k++] = (uhlm_frag){s0, rem, -1};
        }
        free(fr);
        fr = nfr;
        nfr = NULL;
        nf = k;
    }
    *out = fr;
    *nout = nf;
    return 0;
oom:
    free(fr);
    free(nfr);
    return -1;
}

static int spm_tokenize(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                        int add_eos, int *ids, int cap, uhlm_error *err);

/* llama.cpp's SPM path with parse_special: special pieces cut out first, then every text
 * fragment encoded on its own. Each fragment follows the start or a special token, so each
 * gets the dummy-prefix space, as llama.cpp's is_prev_special gives it. */
static int spm_tokenize_special(const uhlm_tokenizer *t, const char *text, size_t len,
                                int add_bos, int add_eos, int *ids, int cap, uhlm_error *err) {
    if (!text && len) return uhlm_set_error(err, "tokenize: no text");
    if (cap < 0 || (cap > 0 && !ids)) return uhlm_set_error(err, "tokenize: invalid id buffer");
    if ((add_bos && UHLM_TOKEN_BOS >= t->n) || (add_eos && UHLM_TOKEN_EOS >= t->n))
        return uhlm_set_error(err, "tokenize: the %d-token vocabulary has no BOS/EOS", t->n);
    uhlm_frag *fr;
    size_t nf;
    if (uhlm_tok_partition(t, text, len, t->special, t->n_special, NULL, NULL, &fr, &nf) != 0)
        return uhlm_set_error(err, "tokenize: out of memory");
    long long count = 0;
    if (add_bos) {
        if (count < cap) ids[count] = UHLM_TOKEN_BOS;
        count++;
    }
    for (size_t i = 0; i < nf; i++) {
        if (fr[i].id >= 0) {
            if (count < cap) ids[count] = fr[i].id;
            count++;
            continue;
        }
        int room = count < cap ? cap - (int)count : 0;
        int k = spm_tokenize(t, text + fr[i].start, fr[i].len, 0, 0, room ? ids + count : NULL,
                             room, err);
        if (k < 0) {
            free(fr);
            return -1;
        }
        count += k;
    }
    free(fr);
    if (add_eos) {
        if (count < cap) ids[count] = UHLM_TOKEN_EOS;
        count++;
    }
    if (count > INT_MAX) return uhlm_set_error(err, "tokenize: too many tokens");
    return (int)count;
}

int uhlm_tokenize_special(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                          int add_eos, int parse_special, int *ids, int cap, uhlm_error *err) {
    if (!t) return uhlm_set_error(err, "tokenize: no tokenizer");
    if (IS_BPE(t))
        return uhlm_bpe_tokenize(t, text, len, add_bos, add_eos, parse_special, ids, cap, err);
    if (parse_special) return spm_tokenize_special(t, text, len, add_bos, add_eos, ids, cap, err);
    return spm_tokenize(t, text, len, add_bos, add_eos, ids, cap, err);
}

/* SentencePiece's encoding (see the top of the file). */
static int spm_tokenize(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                        int add_eos, int *ids, int cap, uhlm_error *err) {
    if (!text && len) return uhlm_set_error(err, "tokenize: no text");
    if (cap < 0 || (cap > 0 && !ids)) return uhlm_set_error(err, "tokenize: invalid id buffer");
    if (len > (size_t)(INT_MAX / 4))
        return uhlm_set_error(err, "tokenize: text of %zu bytes is too long", len);
    if ((add_bos && UHLM_TOKEN_BOS >= t->n) || (add_eos && UHLM_TOKEN_EOS >= t->n))
        return uhlm_set_error(err, "tokenize: the %d-token vocabulary has no BOS/EOS", t->n);
    enc e = {0};
    e.t = t;
    e.ids = ids;
    e.cap = cap;
    if (add_bos) emit(&e, UHLM_TOKEN_BOS);
    if (len == 0) {
        if (add_eos) emit(&e, UHLM_TOKEN_EOS);
        return e.count;
    }
    const unsigned char *in = (const unsigned char *)text;
    char *norm = malloc(3 * len + 1);
    if (!norm) return uhlm_set_error(err, "tokenize: out of memory");
    /* normalization: dummy prefix, U+2581 == space, ill-formed bytes -> U+FFFD */
    size_t nl = 0;
    norm[nl++] = ' ';
    for (size_t i = 0; i < len;) {
        size_t k = utf8_char_len(in + i, len - i);
        if (k == 0) {
            memcpy(norm + nl, REPLACEMENT, 3);
            nl += 3;
            i++;
        } else if (k == 3 && in[i] == 0xE2 && in[i + 1] == 0x96 && in[i + 2] == 0x81) {
            norm[nl++] = ' ';
            i += 3;
        } else {
            memcpy(norm + nl, in + i, k);
            nl += k;
            i += k;
        }
    }
    e.norm = norm;
    e.s = malloc(nl * sizeof *e.s);
    if (t->has_unused) e.split = calloc((size_t)t->n, sizeof *e.split);
    if (!e.s || (t->has_unused && !e.split)) {
        e.oom = 1;
        goto done;
    }
    int ns = 0;
    for (size_t p = 0; p < nl;) {
        size_t k = 0;
        int frz = 0;
        if (t->max_user_len) {
            size_t lmax = (size_t)t->max_user_len < nl - p ? (size_t)t->max_user_len : nl - p;
            for (size_t l = lmax; l >= 1 && !k; l--) {
                int id = lookup(t, norm + p, l);
                if (id >= 0 && t->type[id] == UHLM_TOKTYPE_USER) k = l, frz = 1;
            }
        }
        if (!k) {
            k = one_char_len((unsigned char)norm[p]);
            if (k > nl - p) k = nl - p;
        }
        e.s[ns] = (sym){(uint32_t)p, (uint32_t)k, ns - 1, -1, frz};
        if (ns > 0) e.s[ns - 1].next = ns;
        ns++;
        p += k;
    }
    for (int i = 1; i < ns; i++) maybe_add_pair(&e, i - 1, i);
    while (e.heap.n > 0 && !e.oom) {
        uhlm_tok_pair top = uhlm_tok_heap_pop(&e.heap);
        sym *l = &e.s[top.left], *r = &e.s[top.right];
        /* stale: one side was merged away or grew since the pair was queued */
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) e.s[r->next].prev = top.left;
        r->len = 0;
        maybe_add_pair(&e, l->prev, top.left);
        maybe_add_pair(&e, top.left, l->next);
    }
    if (e.oom) goto done;
    for (int i = 0; i != -1 && !e.oom; i = e.s[i].next) resegment(&e, e.s[i].start, e.s[i].len);
    if (add_eos) emit(&e, UHLM_TOKEN_EOS);
done:
    free(norm);
    free(e.s);
    free(e.heap.a);
    free(e.split);
    if (e.oom) return uhlm_set_error(err, "tokenize: out of memory");
    return e.count;
}

/* ------------------------------------------------------------------------------------------ */
/* decoding */

typedef struct {
    char *p;
    size_t cap, n; /* n excludes the NUL */
    int full;
} outbuf;

/* Appends what fits, never cutting a UTF-8 character in two; after the first cut nothing
 * more is written, so the output is always a prefix of the real text. */
static void put(outbuf *o, const char *s, size_t n) {
    if (o->full || n == 0) return;
    size_t room = o->cap - 1 - o->n;
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
        o->full = 1;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

/* Total length of the UTF-8 sequence a lead byte starts; 0 if it can start none. */
static int lead_len(unsigned c) {
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

static void flush_pending(uhlm_detok *d, outbuf *o) {
    if (d->npend) put(o, REPLACEMENT, 3);
    d->npend = 0;
}

static void feed_byte(uhlm_detok *d, unsigned b, outbuf *o) {
    for (;;) {
        if (d->npend == 0) {
            if (b < 0x80) {
                char c = (char)b;
                put(o, &c, 1);
            } else if (lead_len(b)) {
                d->pend[d->npend++] = (unsigned char)b;
            } else {
                put(o, REPLACEMENT, 3);
            }
            return;
        }
        unsigned lead = d->pend[0], lo = 0x80, hi = 0xBF;
        if (d->npend == 1) {
            if (lead == 0xE0) lo = 0xA0;
            if (lead == 0xED) hi = 0x9F;
            if (lead == 0xF0) lo = 0x90;
            if (lead == 0xF4) hi = 0x8F;
        }
        if (b < lo || b > hi) {
            flush_pending(d, o); /* the held prefix is one ill-formed subpart; retry b alone */
            continue;
        }
        d->pend[d->npend++] = (unsigned char)b;
        if (d->npend == lead_len(lead)) {
            put(o, (const char *)d->pend, (size_t)d->npend);
            d->npend = 0;
        }
        return;
    }
}

void uhlm_detok_init(uhlm_detok *d, const uhlm_tokenizer *t) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->tok = t;
    /* a sequence starts as if after BOS: SentencePiece drops the dummy-prefix space there */
    d->prev = UHLM_TOKEN_BOS;
}

typedef struct {
    uhlm_detok *d;
    outbuf *o;
} byte_sink;

static void sink_byte(void *ctx, unsigned b) {
    byte_sink *s = ctx;
    feed_byte(s->d, b, s->o);
}

size_t uhlm_detok_push(uhlm_detok *d, int id, char *out, size_t cap) {
    if (!out || cap == 0) return 0;
    out[0] = '\0';
    if (!d || !d->tok || id < 0 || id >= d->tok->n) return 0;
    const uhlm_tokenizer *t = d->tok;
    outbuf o = {out, cap, 0, 0};
    if (t->kind == UHLM_VOCAB_BPE) {
        /* bytes go through the UTF-8 assembler, so a character split across tokens is held */
        byte_sink s = {d, &o};
        uhlm_bpe_decode(t, id, 0, sink_byte, &s);
        out[o.n] = '\0';
        return o.n;
    }
    const char *p = t->blob + t->off[id];
    size_t l = t->len[id];
    int ty = t->type[id], bv;
    if (ty == UHLM_TOKTYPE_BYTE && (bv = byte_piece_value(p, l)) >= 0) {
        feed_byte(d, (unsigned)bv, &o);
        d->prev = id == UHLM_TOKEN_BOS ? -1 : id;
    } else {
        flush_pending(d, &o);
        if (ty == UHLM_TOKTYPE_CONTROL) {
            /* invisible; a BOS starts a new document (llama2.c), others keep the state */
            if (id == UHLM_TOKEN_BOS) d->prev = UHLM_TOKEN_BOS;
        } else if (ty == UHLM_TOKTYPE_UNKNOWN) {
            put(&o, UNK_SURFACE, sizeof UNK_SURFACE - 1);
            d->prev = id == UHLM_TOKEN_BOS ? -1 : id;
        } else if (l > 0) {
            if (d->prev == UHLM_TOKEN_BOS && p[0] == ' ') p++, l--;
            put(&o, p, l);
            d->prev = id == UHLM_TOKEN_BOS ? -1 : id;
        }
    }
    out[o.n] = '\0';
    return o.n;
}

size_t uhlm_detok_flush(uhlm_detok *d, char *out, size_t cap) {
    if (!out || cap == 0) return 0;
    out[0] = '\0';
    if (!d) return 0;
    outbuf o = {out, cap, 0, 0};
    flush_pending(d, &o);
    out[o.n] = '\0';
    return o.n;
}

typedef struct {
    char *buf;
    size_t cap, n;
} raw_sink;

static void sink_raw(void *ctx, unsigned b) {
    raw_sink *s = ctx;
    if (s->n < s->cap) s->buf[s->n] = (char)b;
    s->n++;
}

size_t uhlm_tokenizer_token_text(const uhlm_tokenizer *t, int id, char *buf, size_t cap) {
    if (!t || id < 0 || id >= t->n || (!buf && cap)) return 0;
    raw_sink s = {buf, cap, 0};
    if (t->kind == UHLM_VOCAB_BPE) {
        uhlm_bpe_decode(t, id, 1, sink_raw, &s);
        return s.n;
    }
    const char *p = t->blob + t->off[id];
    int bv = t->type[id] == UHLM_TOKTYPE_BYTE ? byte_piece_value(p, t->len[id]) : -1;
    if (bv >= 0) {
        sink_raw(&s, (unsigned)bv);
        return s.n;
    }
    for (uint32_t i = 0; i < t->len[id]; i++) sink_raw(&s, (unsigned char)p[i]);
    return s.n;
}

char *uhlm_detokenize(const uhlm_tokenizer *t, const int *ids, int n) {
    if (!t || (n > 0 && !ids)) return NULL;
    size_t pcap = (size_t)t->max_len + 16, cap = 256, len = 0;
    char *piece = malloc(pcap), *s = malloc(cap);
    if (!piece || !s) {
        free(piece);
        free(s);
        return NULL;
    }
    uhlm_detok d;
    uhlm_detok_init(&d, t);
    for (int i = 0; i <= n; i++) {
        size_t k = i < n ? uhlm_detok_push(&d, ids[i], piece, pcap)
                         : uhlm_detok_flush(&d, piece, pcap);
        if (len + k + 1 > cap) {
            size_t nc = cap * 2 > len + k + 1 ? cap * 2 : len + k + 1;
            char *ns = realloc(s, nc);
            if (!ns) {
                free(piece);
                free(s);
                return NULL;
            }
            s = ns;
            cap = nc;
        }
        memcpy(s + len, piece, k);
        len += k;
    }
    s[len] = '\0';
    free(piece);
    return s;
}
