/* fuzz_bpe.c: libFuzzer target for the byte-level BPE tokenizer (tokenizer.h, bpe.c).
 *
 * Byte 0 of the input picks the pre-tokenizer and the flags; then
 *  - bit 7 of byte 0 clear: the rest is text for a fixed vocabulary (the 256 characters of
 *    GPT-2's byte alphabet, a few merges and special tokens). Besides "no crash, no
 *    sanitizer report" it checks that tokenizing with parse_special off and decoding gives
 *    back the text whenever the text is well-formed UTF-8 (every byte has a token, so BPE
 *    encoding is lossless), and that a too-small id buffer reports the same count;
 *  - bit 7 set: the rest builds a vocabulary: lines up to the first NUL are tokens, lines
 *    after it merges ("left right"), and a short text after a second NUL is tokenized with
 *    it. Bad merges must be refused with an error, never crash.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc tests/fuzz/fuzz_bpe.c
 *        src/model/tokenizer/\*.c src/model/common.c -lm */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/tokenizer.h"

static const char *const PRES[4] = {"smollm", "llama-bpe", "qwen2", "gpt-2"};

static int byte_alpha(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (k == 0 || k > n - i) return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
            return 0;
        i += k;
    }
    return 1;
}

static uhlm_tokenizer *fixed_vocab(const char *pre) {
    static char store[300][12];
    const char *toks[300], *merges[8];
    size_t lens[300], mlens[8];
    int32_t types[300];
    int n = 0;
    unsigned extra = 256;
    for (unsigned b = 0; b < 256; b++) {
        unsigned c = byte_alpha(b) ? b : extra++;
        if (c < 0x80) store[n][0] = (char)c, lens[n] = 1;
        else store[n][0] = (char)(0xC0 | (c >> 6)), store[n][1] = (char)(0x80 | (c & 0x3F)), lens[n] = 2;
        toks[n] = store[n];
        types[n++] = UHLM_TOKTYPE_NORMAL;
    }
    static const char *const more[] = {"th", "the", "\xC4\xA0t", "\xC4\xA0th", "\xC4\xA0the", "in",
                                       "ing", "<|im_end|>", "<|user|>", "<|endoftext|>"};
    static const int32_t more_types[] = {1, 1, 1, 1, 1, 1, 1, 3, 4, 3};
    for (int i = 0; i < 10; i++) {
        toks[n] = more[i];
        lens[n] = strlen(more[i]);
        types[n++] = more_types[i];
    }
    static const char *const m[] = {"t h", "th e", "\xC4\xA0 t", "\xC4\xA0t h", "\xC4\xA0th e",
                                    "i n", "in g"};
    int nm = 7;
    for (int i = 0; i < nm; i++) merges[i] = m[i], mlens[i] = strlen(m[i]);
    uhlm_bpe_vocab v = {.n_tokens = n, .tokens = toks, .token_lens = lens, .types = types,
                         .n_merges = nm, .merges = merges, .merge_lens = mlens, .pre = pre,
                         .bos = -1, .eos = n - 1, .unk = -1, .pad = -1, .add_bos = -1, .add_eos = 0};
    uhlm_error err;
    return uhlm_tokenizer_from_bpe(&v, "fuzz", &err);
}

static void run_fixed(const uhlm_tokenizer *t, const uint8_t *d, size_t n, int special) {
    uhlm_error err;
    /* at most one token per byte; an ill-formed byte becomes U+FFFD, three bytes */
    int cap = 3 * (int)n + 4;
    int *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return;
    int k = uhlm_tokenize_special(t, (const char *)d, n, 0, 0, special, ids, cap, &err);
    if (k < 0 || k > cap) abort();
    int k2 = uhlm_tokenize_special(t, (const char *)d, n, 0, 0, special, ids, k / 2, &err);
    if (k2 != k) abort();
    k = uhlm_tokenize_special(t, (const char *)d, n, 0, 0, special, ids, cap, &err);
    /* streamed, as the text may hold NUL bytes */
    size_t pc = (size_t)uhlm_tokenizer_max_piece_len(t) + 16, got = 0;
    char *piece = malloc(pc), *text = malloc(4 * n + pc);
    if (!piece || !text) abort();
    uhlm_detok dt;
    uhlm_detok_init(&dt, t);
    for (int i = 0; i <= k; i++) {
        size_t m = i < k ? uhlm_detok_push(&dt, ids[i], piece, pc) : uhlm_detok_flush(&dt, piece, pc);
        if (got + m > 4 * n + pc) abort();
        memcpy(text + got, piece, m);
        got += m;
    }
    if (!special && utf8_valid(d, n) && (got != n || memcmp(text, d, n) != 0)) abort();
    free(piece);
    free(text);
    free(ids);
}

static void run_built(const uint8_t *d, size_t n, const char *pre) {
    const uint8_t *z1 = memchr(d, 0, n);
    if (!z1) return;
    const uint8_t *z2 = memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - d));
    const uint8_t *mend = z2 ? z2 : d + n;
    enum { MAXT = 256 };
    const char *toks[MAXT], *merges[MAXT];
    size_t lens[MAXT], mlens[MAXT];
    int nt = 0, nm = 0;
    for (const uint8_t *p = d; p <= z1 && nt < MAXT;) {
        const uint8_t *e = memchr(p, '\n', (size_t)(z1 - p));
        if (!e) e = z1;
        toks[nt] = (const char *)p, lens[nt++] = (size_t)(e - p);
        p = e + 1;
    }
    for (const uint8_t *p = z1 + 1; p < mend && nm < MAXT;) {
        const uint8_t *e = memchr(p, '\n', (size_t)(mend - p));
        if (!e) e = mend;
        merges[nm] = (const char *)p, mlens[nm++] = (size_t)(e - p);
        p = e + 1;
    }
    uhlm_bpe_vocab v = {.n_tokens = nt, .tokens = toks, .token_lens = lens, .n_merges = nm,
                         .merges = merges, .merge_lens = mlens, .pre = pre, .bos = -1,
                         .eos = -1, .unk = -1, .pad = -1, .add_bos = -1, .add_eos = -1};
    uhlm_error err;
    uhlm_tokenizer *t = uhlm_tokenizer_from_bpe(&v, "fuzz", &err);
    if (!t) {
        if (!err.msg[0]) abort(); /* refusals must say why */
        return;
    }
    if (z2) {
        size_t tl = (size_t)(d + n - (z2 + 1));
        int ids[512];
        int k = uhlm_tokenize_special(t, (const char *)z2 + 1, tl, 0, 0, 1, ids, 512, &err);
        if (k < -1) abort();
        if (k > 0) {
            char *s = uhlm_detokenize(t, ids, k < 512 ? k : 512);
            free(s);
        }
    }
    uhlm_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned sel = data[0];
    const char *pre = PRES[sel & 3];
    if (sel & 0x80) {
        run_built(data + 1, size - 1, pre);
        return 0;
    }
    uhlm_tokenizer *t = fixed_vocab(pre);
    if (!t) abort();
    run_fixed(t, data + 1, size - 1, (sel >> 2) & 1);
    uhlm_tokenizer_free(t);
    return 0;
}
