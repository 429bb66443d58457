/* bpe.c: byte-level BPE (GGUF tokenizer.ggml.model = "gpt2"), equal to llama.cpp's
 * llm_tokenizer_bpe for the pre-tokenizers named below (see tokenizer.h).
 *
 * Encoding, as llama.cpp's llama_vocab::impl::tokenize does it:
 *   1. special-token partition (tokenizer_st_partition): every CONTROL, USER_DEFINED and
 *      UNKNOWN piece, longest first, is cut out of the raw text fragments wherever it occurs
 *      (leftmost first); CONTROL and UNKNOWN pieces only with parse_special;
 *   2. each remaining fragment is decoded to code points (an ill-formed byte becomes U+FFFD,
 *      one per byte; no overlong/surrogate checks, as unicode_cpts_from_utf8) and split into
 *      words by the pre-tokenizer's regex, hand-written here as llama.cpp's unicode.cpp does:
 *        gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *        llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *               ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *        qwen2  as llama3 with \p{N} for \p{N}{1,3}
 *      "smollm" (and starcoder etc.) first isolates every \p{N} code point, then applies gpt2
 *      inside the pieces; a lookahead never sees past the piece it works in;
 *   3. a word's UTF-8 bytes are mapped to GPT-2's printable byte alphabet; with ignore_merges
 *      (llama3) a word that is a piece is one token; otherwise its characters are merged
 *      pairwise, lowest merge rank first (leftmost on ties), with a heap and a linked list:
 *      O(n log n) in the word length;
 *   4. a final symbol that is no piece is emitted byte by byte where a one-byte piece exists.
 * Code point classes come from llama.cpp's own tables (bpe_unicode.c).
 *
 * Special ids, add_bos/add_eos defaults, the text-based CONTROL overrides and the
 * end-of-generation set follow llama_vocab::impl::load. Differences: a merge naming pieces
 * that are not in the vocabulary is an error here (llama.cpp keeps it, unusable); where a
 * vocabulary holds several texts for the same FIM role, all are end-of-generation here
 * (llama.cpp picks one by hash-map order); code points above U+10FFFF (from F5..F7 lead
 * bytes) become U+FFFD per byte (llama.cpp throws). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_unicode.h"
#include "tok_internal.h"

/* llama.cpp's token attributes (llama_token_attr), a bit set */
enum {
    ATTR_UNDEFINED = 1 << 0,
    ATTR_UNKNOWN = 1 << 1,
    ATTR_UNUSED = 1 << 2,
    ATTR_NORMAL = 1 << 3,
    ATTR_CONTROL = 1 << 4,
    ATTR_USER = 1 << 5,
    ATTR_BYTE = 1 << 6
};

enum { PRE_GPT2, PRE_SMOLLM, PRE_LLAMA3, PRE_QWEN2 };

/* tokenizer.ggml.pre values and the splitter llama.cpp uses for them (llama-vocab.cpp) */
static const struct {
    const char *name;
    int pre, ignore_merges, add_bos;
} PRE_TYPES[] = {
    {"smollm", PRE_SMOLLM, 0, 0},    {"starcoder", PRE_SMOLLM, 0, 0},
    {"refact", PRE_SMOLLM, 0, 0},    {"command-r", PRE_SMOLLM, 0, 0},
    {"codeshell", PRE_SMOLLM, 0, 0}, {"exaone", PRE_SMOLLM, 0, 0},
    {"minerva-7b", PRE_SMOLLM, 0, 0}, {"gpt-2", PRE_GPT2, 0, 0},
    {"phi-2", PRE_GPT2, 0, 0},       {"jina-es", PRE_GPT2, 0, 0},
    {"jina-de", PRE_GPT2, 0, 0},     {"gigachat", PRE_GPT2, 0, 0},
    {"jina-v2-es", PRE_GPT2, 0, 0},  {"jina-v2-de", PRE_GPT2, 0, 0},
    {"mpt", PRE_GPT2, 0, 0},         {"olmo", PRE_GPT2, 0, 0},
    {"jais", PRE_GPT2, 0, 0},        {"trillion", PRE_GPT2, 0, 0},
    {"exaone4", PRE_GPT2, 0, 0},     {"llama3", PRE_LLAMA3, 1, 1},
    {"llama-v3", PRE_LLAMA3, 1, 1},  {"llama-bpe", PRE_LLAMA3, 1, 1},
    {"falcon3", PRE_LLAMA3, 1, 1},   {"falcon-h1", PRE_LLAMA3, 1, 1},
    {"pixtral", PRE_LLAMA3, 1, 1},   {"midm-2.0", PRE_LLAMA3, 1, 1},
    {"lfm2", PRE_LLAMA3, 1, 1},      {"dbrx", PRE_LLAMA3, 0, 0},
    {"smaug-bpe", PRE_LLAMA3, 0, 0}, {"chatglm-bpe", PRE_LLAMA3, 0, 0},
    {"qwen2", PRE_QWEN2, 0, 0},      {"deepseek-r1-qwen", PRE_QWEN2, 0, 0},
    {"megrez", PRE_QWEN2, 0, 0},     {"stablelm2", PRE_QWEN2, 0, 0},
    {"hunyuan", PRE_QWEN2, 0, 0},
};

/* texts llama.cpp turns into CONTROL tokens and end-of-generation ids (impl::load) */
static const char *const EOT_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
    "<end_of_utterance>"};
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~["};
/* FIM pad/repo/file-sep tokens: also CONTROL and end of generation */
static const char *const FIM_EOG_TEXTS[] = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>",
    "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>", "<|eom_id|>"};
static const char *const FIM_CTL_TEXTS[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
    "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", "<|fim_suffix|>", "<fim-suffix>",
    "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<SUF>", "\xE2\x96\x81<SUF>",
    "<|code_suffix|>", "<|suffix|>", "<|fim_middle|>", "<fim-middle>", "<fim_middle>",
    "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>",
    "<|middle|>"};

typedef struct {
    uint64_t key; /* (left id << 32 | right id) + 1; 0 = empty */
    int32_t rank;
} rank_slot;

struct uhlm_bpe {
    int pre, ignore_merges;
    char pre_name[48];
    int bos, eos, unk, pad;
    int add_bos, add_eos;
    unsigned char *attr;
    unsigned char *eog; /* one flag per id */
    int32_t *tslots;    /* every piece -> id (the last of duplicates, as token_to_id) */
    size_t tmask;
    rank_slot *rslots;
    size_t rmask;
    int n_merges;
    char *mblob;
    size_t *moff;
    uint32_t *mlen;
    int byte_tok[256]; /* id of the one-byte piece, -1 */
};

/* GPT-2's byte -> code point map (bytes_to_unicode) */
static uint32_t byte_cpt(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256 + n;
}

int uhlm_bpe_byte_of_cpt(uint32_t cpt) {
    if ((cpt >= 0x21 && cpt <= 0x7E) || (cpt >= 0xA1 && cpt <= 0xAC) || (cpt >= 0xAE && cpt <= 0xFF))
        return (int)cpt;
    if (cpt < 256 || cpt >= 256 + 68) return -1;
    unsigned n = cpt - 256;
    for (unsigned c = 0; c < 256; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) &&
            n-- == 0)
            return (int)c;
    return -1;
}

static size_t put_utf8(uint32_t cpt, unsigned char *o) {
    if (cpt < 0x80) {
        o[0] = (unsigned char)cpt;
        return 1;
    }
    if (cpt < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cpt >> 6));
        o[1] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 2;
    }
    if (cpt < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cpt >> 12));
        o[1] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cpt >> 18));
    o[1] = (unsigned char)(0x80 | ((cpt >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cpt & 0x3F));
    return 4;
}

/* One code point as llama.cpp's unicode_cpt_from_utf8 reads it (no overlong or surrogate
 * checks); returns the bytes used, 0 when s[0] starts no sequence it accepts. */
static size_t get_cpt(const unsigned char *s, size_t n, uint32_t *cpt) {
    unsigned c = s[0];
#define TRAIL(x) (((x) & 0xC0) == 0x80)
    if (!(c & 0x80)) {
        *cpt = c;
        return 1;
    }
    if (!(c & 0x40)) return 0;
    if (!(c & 0x20)) {
        if (n < 2 || !TRAIL(s[1])) return 0;
        *cpt = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (!(c & 0x10)) {
        if (n < 3 || !TRAIL(s[1]) || !TRAIL(s[2])) return 0;
        *cpt = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if (!(c & 0x08)) {
        if (n < 4 || !TRAIL(s[1]) || !TRAIL(s[2]) || !TRAIL(s[3])) return 0;
        *cpt = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return *cpt <= 0x10FFFF ? 4 : 0;
    }
#undef TRAIL
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* lookups */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

int uhlm_bpe_find(const uhlm_tokenizer *t, const char *s, size_t n) {
    const uhlm_bpe *b = t->bpe;
    if (n > (size_t)t->max_len) return -1;
    size_t i = (size_t)uhlm_fnv1a(UHLM_FNV_INIT, s, n) & b->tmask;
    for (;;) {
        int32_t id = b->tslots[i];
        if (id < 0) return -1;
        if (t->len[id] == n && (n == 0 || memcmp(t->blob + t->off[id], s, n) == 0)) return id;
        i = (i + 1) & b->tmask;
    }
}

static int find_rank(const uhlm_bpe *b, int l, int r) {
    if (l < 0 || r < 0 || !b->rslots) return -1;
    uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
    size_t i = (size_t)mix64(key) & b->rmask;
    for (;;) {
        const rank_slot *s = &b->rslots[i];
        if (s->key == 0) return -1;
        if (s->key == key) return s->rank;
        i = (i + 1) & b->rmask;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* construction */

void uhlm_bpe_free(uhlm_bpe *b) {
    if (!b) return;
    free(b->attr);
    free(b->eog);
    free(b->tslots);
    free(b->rslots);
    free(b->mblob);
    free(b->moff);
    free(b->mlen);
    free(b);
}

static int piece_is(const uhlm_tokenizer *t, int id, const char *s) {
    size_t n = strlen(s);
    return t->len[id] == n && memcmp(t->blob + t->off[id], s, n) == 0;
}

static int in_list(const uhlm_tokenizer *t, int id, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (piece_is(t, id, list[i])) return 1;
    return 0;
}

/* Printable copy of (part of) a value for an error message. */
static void show(char *dst, size_t cap, const char *s, size_t n) {
    size_t k = 0, i = 0;
    /* room for one escape, "..." and the NUL */
    for (; i < n && k + 8 <= cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F) dst[k++] = (char)c;
        else k += (size_t)snprintf(dst + k, cap - k, "\\x%02X", c);
    }
    if (i < n) memcpy(dst + k, "...", 3), k += 3;
    dst[k] = '\0';
}

/* Which PRE_TYPES entry the vocabulary's pre-tokenizer is, after checking the parts of the
 * vocabulary that uhlm_tok_build does not: -1 (error set) when one is invalid. */
static int check_bpe_vocab(const uhlm_bpe_vocab *v, const char *pre, const char *what,
                           uhlm_error *err) {
    int pi = -1;
    for (size_t i = 0; i < sizeof PRE_TYPES / sizeof PRE_TYPES[0] && pi < 0; i++)
        if (strcmp(PRE_TYPES[i].name, pre) == 0) pi = (int)i;
    if (pi < 0) {
        char buf[64];
        show(buf, sizeof buf, pre, strlen(pre));
        uhlm_set_error(err,
                       "%s: tokenizer.ggml.pre = '%s' is not a supported pre-tokenizer (supported: "
                       "smollm, llama-bpe, qwen2 and the types that share their rules)",
                       what, buf);
        return -1;
    }
    if (v->n_merges < 0 || (v->n_merges > 0 && (!v->merges || !v->merge_lens))) {
        uhlm_set_error(err, "%s: tokenizer.ggml.merges: invalid merge list", what);
        return -1;
    }
    if (v->types)
        for (int i = 0; i < v->n_tokens; i++)
            if (v->types[i] < 0 || v->types[i] > UHLM_TOKTYPE_BYTE) {
                uhlm_set_error(err, "%s: tokenizer.ggml.token_type[%d] = %d is not a token type",
                               what, i, (int)v->types[i]);
                return -1;
            }
    return pi;
}

static int bpe_oom(const char *what, uhlm_error *err) {
    return uhlm_set_error(err, "%s: out of memory for the BPE vocabulary", what);
}

/* The piece -> id hash, each token's attributes from its type, and the id of every single
 * byte. -1 (error set) when out of memory. */
static int index_pieces(uhlm_tokenizer *t, uhlm_bpe *b, const char *what, uhlm_error *err) {
    int n = t->n;
    b->attr = malloc((size_t)n);
    b->eog = calloc((size_t)n, 1);
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    b->tmask = cap - 1;
    b->tslots = malloc(cap * sizeof *b->tslots);
    if (!b->attr || !b->eog || !b->tslots) return bpe_oom(what, err);
    for (size_t i = 0; i < cap; i++) b->tslots[i] = -1;
    for (int id = 0; id < n; id++) {
        const char *p = t->blob + t->off[id];
        size_t l = t->len[id];
        size_t h = (size_t)uhlm_fnv1a(UHLM_FNV_INIT, p, l) & b->tmask;
        while (b->tslots[h] >= 0) {
            int o = b->tslots[h];
            if (t->len[o] == l && (l == 0 || memcmp(t->blob + t->off[o], p, l) == 0)) break;
            h = (h + 1) & b->tmask;
        }
        b->tslots[h] = id; /* a later duplicate replaces the earlier one */
        static const unsigned char type_attr[] = {ATTR_UNDEFINED, ATTR_NORMAL, ATTR_UNKNOWN,
                                                  ATTR_CONTROL,   ATTR_USER,   ATTR_UNUSED,
                                                  ATTR_BYTE};
        b->attr[id] = type_attr[t->type[id]];
    }
    for (int c = 0; c < 256; c++) {
        unsigned char one = (unsigned char)c;
        b->byte_tok[c] = uhlm_bpe_find(t, (const char *)&one, 1);
    }
    return 0;
}

/* The merges and their (left id, right id) -> rank hash. *blob_len gets the bytes of all
 * merges. -1 (error set) on an invalid merge or out of memory. */
static int load_merges(uhlm_tokenizer *t, uhlm_bpe *b, const uhlm_bpe_vocab *v, size_t *blob_len,
                       const char *what, uhlm_error *err) {
    /* merges: "left right", split at the first space after the first byte (llama.cpp) */
    b->n_merges = v->n_merges;
    size_t total = 0;
    for (int i = 0; i < v->n_merges; i++) total += v->merge_lens[i];
    b->mblob = malloc(total ? total : 1);
    b->moff = malloc(((size_t)v->n_merges + 1) * sizeof *b->moff);
    b->mlen = malloc(((size_t)v->n_merges + 1) * sizeof *b->mlen);
    size_t rcap = 16;
    while (rcap < (size_t)v->n_merges * 2) rcap *= 2;
    b->rmask = rcap - 1;
    b->rslots = calloc(rcap, sizeof *b->rslots);
    if (!b->mblob || !b->moff || !b->mlen || !b->rslots) return bpe_oom(what, err);
    size_t pos = 0;
    for (int i = 0; i < v->n_merges; i++) {
        const char *m = v->merges[i];
        size_t ml = v->merge_lens[i];
        if (ml > UINT32_MAX || (!m && ml))
            return uhlm_set_error(err, "%s: tokenizer.ggml.merges[%d] is invalid", what, i);
        const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
        int l = sp ? uhlm_bpe_find(t, m, (size_t)(sp - m)) : -1;
        int r = sp ? uhlm_bpe_find(t, sp + 1, ml - (size_t)(sp - m) - 1) : -1;
        if (l < 0 || r < 0) {
            char buf[96];
            show(buf, sizeof buf, m, ml);
            return uhlm_set_error(err,
                                  sp ? "%s: tokenizer.ggml.merges[%d] = '%s' names a piece that "
                                       "is not in the vocabulary"
                                     : "%s: tokenizer.ggml.merges[%d] = '%s' is not two pieces "
                                       "separated by a space",
                                  what, i, buf);
        }
        if (ml) memcpy(b->mblob + pos, m, ml);
        b->moff[i] = pos;
        b->mlen[i] = (uint32_t)ml;
        pos += ml;
        uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
        size_t h = (size_t)mix64(key) & b->rmask;
        while (b->rslots[h].key && b->rslots[h].key != key) h = (h + 1) & b->rmask;
        if (!b->rslots[h].key) b->rslots[h] = (rank_slot){key, i}; /* the first rank wins */
    }
    *blob_len = pos;
    return 0;
}

/* BOS, EOS, UNK, PAD and whether BOS/EOS are added. -1 (error set) when an id is outside the
 * vocabulary or an added token does not exist. */
static int set_special_ids(uhlm_bpe *b, const uhlm_bpe_vocab *v, int n, int pi, const char *what,
                           uhlm_error *err) {
    /* special ids: llama.cpp's BPE defaults are 11 for BOS and EOS */
    int ids[4] = {v->bos, v->eos, v->unk, v->pad};
    static const char *const id_keys[4] = {"bos_token_id", "eos_token_id", "unknown_token_id",
                                           "padding_token_id"};
    for (int k = 0; k < 4; k++) {
        if (ids[k] >= n || ids[k] < -1)
            return uhlm_set_error(err, "%s: tokenizer.ggml.%s = %d is outside the %d-token "
                                  "vocabulary", what, id_keys[k], ids[k], n);
        if (ids[k] < 0 && k < 2 && 11 < n) ids[k] = 11;
    }
    b->bos = ids[0], b->eos = ids[1], b->unk = ids[2], b->pad = ids[3];
    b->add_bos = v->add_bos >= 0 ? v->add_bos != 0 : PRE_TYPES[pi].add_bos;
    b->add_eos = v->add_eos > 0;
    if ((b->add_bos && b->bos < 0) || (b->add_eos && b->eos < 0))
        return uhlm_set_error(err, "%s: add_%s_token is set but the vocabulary has no such token",
                              what, b->add_bos && b->bos < 0 ? "bos" : "eos");
    return 0;
}

/* Text-based attribute overrides and the end-of-generation set (llama_vocab::impl::load). */
static void mark_eog(const uhlm_tokenizer *t, uhlm_bpe *b, const uhlm_bpe_vocab *v) {
    const int n = t->n;
    int has_return = 0, has_call = 0, has_flush = 0, end_id = -1, has_s_marker = 0, s_id = -1;
    for (int id = 0; id < n; id++) {
        int eot = in_list(t, id, EOT_TEXTS, sizeof EOT_TEXTS / sizeof *EOT_TEXTS);
        int fim_eog = in_list(t, id, FIM_EOG_TEXTS, sizeof FIM_EOG_TEXTS / sizeof *FIM_EOG_TEXTS);
        int fim = in_list(t, id, FIM_CTL_TEXTS, sizeof FIM_CTL_TEXTS / sizeof *FIM_CTL_TEXTS);
        int eog = in_list(t, id, EOG_TEXTS, sizeof EOG_TEXTS / sizeof *EOG_TEXTS);
        if (eot || fim_eog || fim || eog) b->attr[id] |= ATTR_CONTROL;
        if (eog || fim_eog) b->eog[id] = 1;
        if (piece_is(t, id, "<|channel|>") || piece_is(t, id, "<|message|>") ||
            piece_is(t, id, "<|start|>") || piece_is(t, id, "<|constrain|>"))
            b->attr[id] = ATTR_USER;
    }
    if (b->eos >= 0) b->eog[b->eos] = 1;
    for (int i = 0; i < v->n_eog_ids && v->eog_ids; i++)
        if (v->eog_ids[i] >= 0 && v->eog_ids[i] < n) b->eog[v->eog_ids[i]] = 1;
    for (int id = 0; id < n; id++) {
        if (!b->eog[id]) continue;
        if (piece_is(t, id, "<|return|>")) has_return = 1;
        else if (piece_is(t, id, "<|call|>") || piece_is(t, id, "<|calls|>")) has_call = 1;
        else if (piece_is(t, id, "<|flush|>")) has_flush = 1;
        else if (piece_is(t, id, "<|end|>")) end_id = id;
        if (piece_is(t, id, "<|tool_response>") || piece_is(t, id, "<|plamo:eos|>")) has_s_marker = 1;
        else if (piece_is(t, id, "</s>")) s_id = id;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        b->eog[end_id] = 0;
        b->attr[end_id] = ATTR_USER;
    }
    if (has_s_marker && s_id >= 0) {
        b->eog[s_id] = 0;
        b->attr[s_id] = ATTR_NORMAL;
    }
}

/* The special-token cache (CONTROL, USER and UNKNOWN pieces, longest first) and the
 * fingerprint. -1 (error set) when out of memory. */
static int finish_bpe(uhlm_tokenizer *t, uhlm_bpe *b, size_t blob_len, const char *what,
                      uhlm_error *err) {
    const int n = t->n;
    unsigned char *cls = malloc((size_t)n);
    if (!cls) return bpe_oom(what, err);
    for (int id = 0; id < n; id++) cls[id] = (b->attr[id] & (ATTR_CONTROL | ATTR_USER | ATTR_UNKNOWN)) != 0;
    int rcs = uhlm_tok_set_special(t, cls, 1, 1, 1);
    free(cls);
    if (rcs != 0) return bpe_oom(what, err);
    /* the fingerprint covers what makes BPE ids differ: kind, pre, merges, attributes */
    uint64_t fp = uhlm_fnv1a(t->fp, "bpe", 3);
    fp = uhlm_fnv1a(fp, b->pre_name, strlen(b->pre_name) + 1);
    fp = uhlm_fnv1a(fp, b->mblob, blob_len);
    for (int i = 0; i < b->n_merges; i++) fp = uhlm_fnv1a(fp, &b->mlen[i], sizeof b->mlen[i]);
    fp = uhlm_fnv1a(fp, b->attr, (size_t)n);
    int flags[6] = {b->bos, b->eos, b->unk, b->pad, b->add_bos, b->add_eos};
    t->fp = uhlm_fnv1a(fp, flags, sizeof flags);
    return 0;
}

uhlm_tokenizer *uhlm_tokenizer_from_bpe(const uhlm_bpe_vocab *v, const char *what,
                                        uhlm_error *err) {
    if (!what) what = "tokenizer";
    if (!v) {
        uhlm_set_error(err, "%s: no vocabulary given", what);
        return NULL;
    }
    const char *pre = v->pre && v->pre[0] ? v->pre : "default";
    const int pi = check_bpe_vocab(v, pre, what, err);
    if (pi < 0) return NULL;
    uhlm_tokenizer *t = uhlm_tok_build(v->n_tokens, v->tokens, v->token_lens, NULL, v->types, 0, 0,
                                       1, what, err);
    if (!t) return NULL;
    t->kind = UHLM_VOCAB_BPE;
    uhlm_bpe *b = calloc(1, sizeof *b);
    t->bpe = b;
    if (!b) {
        bpe_oom(what, err);
        goto fail;
    }
    b->pre = PRE_TYPES[pi].pre;
    b->ignore_merges = PRE_TYPES[pi].ignore_merges;
    snprintf(b->pre_name, sizeof b->pre_name, "%s", pre);
    size_t blob_len = 0;
    if (index_pieces(t, b, what, err) != 0 || load_merges(t, b, v, &blob_len, what, err) != 0 ||
        set_special_ids(b, v, t->n, pi, what, err) != 0)
        goto fail;
    mark_eog(t, b, v);
    if (finish_bpe(t, b, blob_len, what, err) != 0) goto fail;
    return t;
fail:
    uhlm_tokenizer_free(t);
    return NULL;
}

int uhlm_bpe_bos(const uhlm_tokenizer *t) { return t->bpe->bos; }
int uhlm_bpe_eos(const uhlm_tokenizer *t) { return t->bpe->eos; }
int uhlm_bpe_unk(const uhlm_tokenizer *t) { return t->bpe->unk; }
int uhlm_bpe_pad(const uhlm_tokenizer *t) { return t->bpe->pad; }
int uhlm_bpe_add_bos(const uhlm_tokenizer *t) { return t->bpe->add_bos; }
int uhlm_bpe_add_eos(const uhlm_tokenizer *t) { return t->bpe->add_eos; }
int uhlm_bpe_is_eog(const uhlm_tokenizer *t, int id) {
    return id >= 0 && id < t->n && t->bpe->eog[id];
}
const char *uhlm_bpe_pre(const uhlm_tokenizer *t) { return t->bpe->pre_name; }
int uhlm_bpe_n_merges(const uhlm_tokenizer *t) { return t->bpe->n_merges; }
const char *uhlm_bpe_merge(const uhlm_tokenizer *t, int i, size_t *len) {
    const uhlm_bpe *b = t->bpe;
    if (i < 0 || i >= b->n_merges) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = b->mlen[i];
    return b->mblob + b->moff[i];
}

/* ------------------------------------------------------------------------------------------ */
/* decoding */

void uhlm_bpe_decode(const uhlm_tokenizer *t, int id, int special,
                     void (*sink)(void *, unsigned), void *ctx) {
    const uhlm_bpe *b = t->bpe;
    unsigned a = b->attr[id];
    const unsigned char *p = (const unsigned char *)t->blob + t->off[id];
    size_t l = t->len[id];
    if (!special && (a & (ATTR_CONTROL | ATTR_UNKNOWN))) return;
    if (a & (ATTR_USER | ATTR_CONTROL | ATTR_UNKNOWN)) {
        for (size_t i = 0; i < l; i++) sink(ctx, p[i]);
        return;
    }
    if (a & ATTR_NORMAL) {
        for (size_t i = 0; i < l;) {
            uint32_t cpt = 0xFFFD;
            size_t k = get_cpt(p + i, l - i, &cpt);
            i += k ? k : 1;
            int byte = uhlm_bpe_byte_of_cpt(cpt);
            if (byte >= 0) {
                sink(ctx, (unsigned)byte);
                continue;
            }
            /* llama_decode_text's marker for a character outside the byte alphabet */
            char buf[32];
            unsigned char u[4];
            size_t ul = put_utf8(cpt, u);
            int m = snprintf(buf, sizeof buf, "[UNK_BYTE_0x");
            for (size_t j = 0; j < ul; j++) m += snprintf(buf + m, sizeof buf - (size_t)m, "%02x", u[j]);
            for (int j = 0; j < m; j++) sink(ctx, (unsigned char)buf[j]);
            for (size_t j = 0; j < l; j++) sink(ctx, p[j]);
            sink(ctx, ']');
        }
        return;
    }
    if (a & ATTR_BYTE && l >= 5) {
        /* "<0xNN>": strtol of the two hex digits, as token_to_byte */
        char hex[3] = {(char)p[3], (char)p[4], 0};
        sink(ctx, (unsigned)(strtol(hex, NULL, 16) & 0xFF));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pre-tokenizers: cut cpt[ini, end) into words, appending each word's end to *ends */

typedef struct {
    const uint32_t *cpt;
    const unsigned char *cls;
    size_t *ends;
    size_t nends, capends;
    int oom;
} split;

#define OUT_OF_RANGE 0xFFFFFFFFu

static void add_end(split *s, size_t end) {
    if (s->nends == s->capends) {
        size_t nc = s->capends ? s->capends * 2 : 64;
        size_t *ne = realloc(s->ends, nc * sizeof *ne);
        if (!ne) {
            s->oom = 1;
            return;
        }
        s->ends = ne;
        s->capends = nc;
    }
    s->ends[s->nends++] = end;
}

typedef struct {
    split *s;
    size_t ini, end, prev;
} range;

static uint32_t rc(const range *r, size_t pos) {
    return pos >= r->ini && pos < r->end ? r->s->cpt[pos] : OUT_OF_RANGE;
}
static unsigned rf(const range *r, size_t pos) {
    return pos >= r->ini && pos < r->end ? r->s->cls[pos] : 0;
}
static size_t tok_to(range *r, size_t end) {
    size_t len = end - r->prev;
    if (len > 0) add_end(r->s, end);
    r->prev = end;
    return len;
}

#define L_ UHLM_UC_LETTER
#define N_ UHLM_UC_NUMBER
#define S_ UHLM_UC_SPACE
#define A_ UHLM_UC_ANY

static uint32_t lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at pos (fold: in any case): its length, 0 if none */
static size_t contraction_at(const range *r, size_t pos, int fold) {
    if (rc(r, pos) != '\'' || pos + 1 >= r->end) return 0;
    uint32_t nx = rc(r, pos + 1);
    if (fold) nx = lower_ascii(nx);
    if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') return 2;
    if (pos + 2 >= r->end) return 0;
    uint32_t nn = rc(r, pos + 2);
    if (fold) nn = lower_ascii(nn);
    if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) return 3;
    return 0;
}

/* The last alternatives of both patterns, \s+(?!\S)|\s+, for the nws white-space code points
 * at pos (a run followed by more text leaves its last one to the next word); with none, the
 * code point stands alone. Returns the new position. */
static size_t spaces_at(range *r, size_t pos, size_t nws) {
    if (nws > 1 && rc(r, pos + nws) != OUT_OF_RANGE) pos += nws - 1;
    else if (nws > 0) pos += nws;
    else pos++;
    tok_to(r, pos);
    return pos;
}

static void split_gpt2(split *s, size_t ini, size_t end) {
    range r = {s, ini, end, ini};
    for (size_t pos = ini; pos < end;) {
        uint32_t cpt = rc(&r, pos);
        unsigned f = rf(&r, pos);
        size_t cl = contraction_at(&r, pos, 0);
        if (cl) {
            pos += tok_to(&r, pos + cl);
            continue;
        }
        unsigned f2 = cpt == ' ' ? rf(&r, pos + 1) : f;
        if (f2 & L_) {
            pos += cpt == ' ';
            while (f2 & L_) f2 = rf(&r, ++pos);
            tok_to(&r, pos);
            continue;
        }
        if (f2 & N_) {
            pos += cpt == ' ';
            while (f2 & N_) f2 = rf(&r, ++pos);
            tok_to(&r, pos);
            continue;
        }
        if (!(f2 & (S_ | L_ | N_)) && f2) {
            pos += cpt == ' ';
            while (!(f2 & (S_ | L_ | N_)) && f2) f2 = rf(&r, ++pos);
            tok_to(&r, pos);
            continue;
        }
        size_t nws = 0;
        while (rf(&r, pos + nws) & S_) nws++;
        pos = spaces_at(&r, pos, nws);
    }
}

/* llama3 (max_digits 3) and qwen2 (max_digits 1) */
static void split_llama3(split *s, size_t ini, size_t end, size_t max_digits) {
    range r = {s, ini, end, ini};
    for (size_t pos = ini; pos < end;) {
        uint32_t cpt = rc(&r, pos);
        unsigned f = rf(&r, pos);
        size_t cl = contraction_at(&r, pos, 1);
        if (cl) {
            pos += tok_to(&r, pos + cl);
            continue;
        }
        if (!(cpt == '\r' || cpt == '\n' || (f & N_))) {
            if ((f & L_) || (rf(&r, pos + 1) & L_)) {
                pos++;
                while (rf(&r, pos) & L_) pos++;
                tok_to(&r, pos);
                continue;
            }
        }
        if (f & N_) {
            size_t first = pos;
            while (rf(&r, pos) & N_) {
                if (++pos - first >= max_digits) {
                    tok_to(&r, pos);
                    first = pos;
                }
            }
            tok_to(&r, pos);
            continue;
        }
        unsigned f2 = cpt == ' ' ? rf(&r, pos + 1) : f;
        if (!(f2 & (S_ | L_ | N_)) && f) {
            pos += cpt == ' ';
            while (!(f2 & (S_ | L_ | N_)) && f2) f2 = rf(&r, ++pos);
            uint32_t c2 = rc(&r, pos);
            while (c2 == '\r' || c2 == '\n') c2 = rc(&r, ++pos);
            tok_to(&r, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (rf(&r, pos + nws) & S_) {
            uint32_t c2 = rc(&r, pos + nws);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* \s*[\r\n]+ */
            pos = last_rn;
            tok_to(&r, pos);
            continue;
        }
        pos = spaces_at(&r, pos, nws);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* encoding */

typedef struct {
    uint32_t start, len; /* bytes of the word; len 0 = merged away */
    int prev, next;
    int id;              /* piece id of the symbol's text, -1 if none */
} bsym;

typedef struct {
    const uhlm_tokenizer *t;
    int *ids, cap, count;
    /* reusable buffers */
    unsigned char *word;
    size_t capword;
    bsym *sym;
    size_t capsym;
    uhlm_tok_heap heap;
    int oom;
} benc;

static void bemit(benc *e, int id) {
    if (e->count < e->cap) e->ids[e->count] = id;
    if (e->count < INT_MAX) e->count++;
}

static void add_bigram(benc *e, int l, int r) {
    if (l < 0 || r < 0) return;
    int rank = find_rank(e->t->bpe, e->sym[l].id, e->sym[r].id);
    if (rank < 0) return;
    /* lowest rank first: the heap pops the highest key */
    uhlm_tok_pair p = {-(double)rank, l, r, e->sym[l].len + e->sym[r].len};
    if (uhlm_tok_heap_push(&e->heap, p) != 0) e->oom = 1;
}

static void bpe_word(benc *e, size_t wl) {
    const uhlm_tokenizer *t = e->t;
    const char *w = (const char *)e->word;
    if (t->bpe->ignore_merges) {
        int id = uhlm_bpe_find(t, w, wl);
        if (id >= 0) {
            bemit(e, id);
            return;
        }
    }
    if (wl > e->capsym) {
        bsym *ns = realloc(e->sym, wl * sizeof *ns);
        if (!ns) {
            e->oom = 1;
            return;
        }
        e->sym = ns;
        e->capsym = wl;
    }
    static const unsigned char clen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int ns = 0;
    for (size_t off = 0; off < wl;) {
        size_t k = clen[e->word[off] >> 4];
        if (k > wl - off) k = wl - off;
        e->sym[ns] = (bsym){(uint32_t)off, (uint32_t)k, ns - 1, off + k == wl ? -1 : ns + 1,
                            uhlm_bpe_find(t, w + off, k)};
        ns++;
        off += k;
    }
    e->heap.n = 0;
    for (int i = 1; i < ns; i++) add_bigram(e, i - 1, i);
    while (e->heap.n > 0 && !e->oom) {
        uhlm_tok_pair p = uhlm_tok_heap_pop(&e->heap);
        bsym *l = &e->sym[p.left], *r = &e->sym[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.size) continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) e->sym[r->next].prev = p.left;
        l->id = uhlm_bpe_find(t, w + l->start, l->len);
        add_bigram(e, l->prev, p.left);
        add_bigram(e, p.left, l->next);
    }
    for (int i = 0; i < ns; i++) {
        const bsym *s = &e->sym[i];
        if (s->len == 0) continue;
        if (s->id >= 0) {
            bemit(e, s->id);
            continue;
        }
        for (uint32_t j = 0; j < s->len; j++) {
            int id = t->bpe->byte_tok[e->word[s->start + j]];
            if (id >= 0) bemit(e, id);
        }
    }
}

/* Pre-tokenizes and encodes one raw-text fragment. */
static int encode_text(benc *e, const unsigned char *in, size_t n) {
    const uhlm_bpe *b = e->t->bpe;
    uint32_t *cpt = malloc((n ? n : 1) * sizeof *cpt);
    unsigned char *cls = malloc(n ? n : 1);
    split s = {cpt, cls, NULL, 0, 0, 0};
    size_t nc = 0;
    if (!cpt || !cls) goto oom;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = get_cpt(in + i, n - i, &c);
        if (k == 0) c = 0xFFFD, k = 1;
        cpt[nc] = c;
        cls[nc] = (unsigned char)uhlm_bpe_class(c);
        nc++;
        i += k;
    }
    if (b->pre == PRE_SMOLLM) {
        /* first regex "\p{N}": every number code point is a piece of its own */
        size_t from = 0;
        for (size_t i = 0; i < nc; i++)
            if (cls[i] & UHLM_UC_NUMBER && !(cls[i] & UHLM_UC_SPACE)) {
                if (i > from) split_gpt2(&s, from, i);
                split_gpt2(&s, i, i + 1);
                from = i + 1;
            }
        if (from < nc) split_gpt2(&s, from, nc);
    } else if (b->pre == PRE_GPT2) {
        split_gpt2(&s, 0, nc);
    } else {
        split_llama3(&s, 0, nc, b->pre == PRE_LLAMA3 ? 3 : 1);
    }
    if (s.oom) goto oom;
    size_t from = 0;
    for (size_t wi = 0; wi < s.nends && !e->oom; wi++) {
        size_t to = s.ends[wi];
        /* a code point is at most 4 UTF-8 bytes, each at most 2 in the byte alphabet */
        size_t need = (to - from) * 8;
        if (need > e->capword) {
            unsigned char *nw = realloc(e->word, need);
            if (!nw) goto oom;
            e->word = nw;
            e->capword = need;
        }
        size_t wl = 0;
        for (size_t i = from; i < to; i++) {
            unsigned char u[4];
            size_t ul = put_utf8(cpt[i], u);
            for (size_t j = 0; j < ul; j++) wl += put_utf8(byte_cpt(u[j]), e->word + wl);
        }
        bpe_word(e, wl);
        from = to;
    }
    free(cpt);
    free(cls);
    free(s.ends);
    return e->oom ? -1 : 0;
oom:
    free(cpt);
    free(cls);
    free(s.ends);
    e->oom = 1;
    return -1;
}

/* Without parse_special only USER pieces are cut out (llama.cpp's tokenizer_st_partition). */
static int skip_special(const uhlm_tokenizer *t, int id, void *ctx) {
    return !*(const int *)ctx && (t->bpe->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN));
}

int uhlm_bpe_tokenize(const uhlm_tokenizer *t, const char *text, size_t len, int add_bos,
                      int add_eos, int parse_special, int *ids, int cap, uhlm_error *err) {
    const uhlm_bpe *b = t->bpe;
    if (!text && len) return uhlm_set_error(err, "tokenize: no text");
    if (cap < 0 || (cap > 0 && !ids)) return uhlm_set_error(err, "tokenize: invalid id buffer");
    if (len > (size_t)(INT_MAX / 4))
        return uhlm_set_error(err, "tokenize: text of %zu bytes is too long", len);
    if ((add_bos && b->bos < 0) || (add_eos && b->eos < 0))
        return uhlm_set_error(err, "tokenize: the vocabulary has no %s token",
                              add_bos && b->bos < 0 ? "BOS" : "EOS");
    benc e = {0};
    e.t = t;
    e.ids = ids;
    e.cap = cap;
    if (add_bos) bemit(&e, b->bos);
    uhlm_frag *fr;
    size_t nf;
    if (uhlm_tok_partition(t, text, len, t->special, t->n_special, skip_special, &parse_special,
                           &fr, &nf) != 0) {
        fr = NULL;
        goto oom;
    }
    for (size_t i = 0; i < nf && !e.oom; i++) {
        if (fr[i].id >= 0) bemit(&e, fr[i].id);
        else encode_text(&e, (const unsigned char *)text + fr[i].start, fr[i].len);
    }
    if (e.oom) goto oom;
    if (add_eos) bemit(&e, b->eos);
    free(fr);
    free(e.word);
    free(e.sym);
    free(e.heap.a);
    if (e.count == INT_MAX) return uhlm_set_error(err, "tokenize: too many tokens");
    return e.count;
oom:
    free(fr);
    free(e.word);
    free(e.sym);
    free(e.heap.a);
    return uhlm_set_error(err, "tokenize: out of memory");
}
