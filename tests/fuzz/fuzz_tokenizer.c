/* fuzz_tokenizer.c: libFuzzer target for the vocabulary loaders (uhlm/tokenizer.h): the
 * llama2.c tokenizer.bin reader and the GGUF-array constructor, then encoding and decoding.
 *
 * Input: byte 0 selects the loader and the expected vocabulary size, byte 1 the length of a
 * text (up to 255 bytes) that follows; the rest is the tokenizer.bin (selector even) or a
 * list of pieces for uhlm_tokenizer_from_arrays (odd: each piece a length byte and its bytes,
 * then a score byte and a type byte). A loaded vocabulary encodes the text and decodes every
 * id (fuzz_exercise_tokenizer).
 * fuzz-max-len: 16384
 *
 * Built with -DUHLM_FUZZ_SEEDGEN, it writes seeds: tok512.bin (found like the tests find it)
 * with texts, and small piece lists. */
#include "fuzz_common.h"
#include "uhlm/tokenizer.h"

#ifndef UHLM_FUZZ_SEEDGEN

static uhlm_tokenizer *from_arrays(const uint8_t *p, size_t n, int sp_mark) {
    enum { MAXP = 600 };
    const char *pieces[MAXP];
    size_t lens[MAXP];
    float scores[MAXP];
    int32_t types[MAXP];
    int k = 0;
    size_t o = 0;
    while (o < n && k < MAXP) {
        size_t l = p[o++];
        if (l > n - o) break;
        pieces[k] = (const char *)p + o;
        lens[k] = l;
        o += l;
        scores[k] = o < n ? -(float)p[o++] : 0.0f;
        types[k] = o < n ? p[o++] % 8 : 1;
        k++;
    }
    if (k == 0) return NULL;
    uhlm_error err;
    return uhlm_tokenizer_from_arrays(k, pieces, lens, scores, sp_mark ? types : NULL, sp_mark,
                                      "fuzz", &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint8_t sel = data[0];
    size_t tl = data[1];
    if (tl > size - 2) tl = size - 2;
    const char *text = (const char *)data + 2;
    const uint8_t *rest = data + 2 + tl;
    size_t rn = size - 2 - tl;
    uhlm_tokenizer *t = NULL;
    if (sel % 2 == 0) {
        static const int sizes[4] = {0, 0, 512, 3};
        const char *path = fuzz_as_file(rest, rn);
        uhlm_error err;
        t = uhlm_tokenizer_load_bin(path, sizes[(sel >> 1) & 3], &err);
        if (!t) fuzz_require(strstr(err.msg, path) != NULL, "error message without the path");
    } else {
        t = from_arrays(rest, rn, (sel >> 1) & 1);
    }
    if (!t) return 0;
    fuzz_exercise_tokenizer(t, text, tl);
    uhlm_tokenizer_free(t);
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN */

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static const char *texts[] = {"Once upon a time, there was a little girl.",
                                  "caf\xc3\xa9 \xf0\x9f\x98\x80 \xff bytes", ""};
    const char *models = getenv("UHLM_MODELS");
    char path[1024];
    snprintf(path, sizeof path, "%s/tok512.bin", models ? models : "models");
    FILE *f = fopen(path, "rb");
    static uint8_t buf[16384];
    size_t n = 0;
    if (f) {
        n = fread(buf + 300, 1, sizeof buf - 300, f);
        fclose(f);
    } else {
        fprintf(stderr, "seedgen: %s not found (set UHLM_MODELS); tokenizer.bin seeds skipped\n",
                path);
    }
    for (int i = 0; i < 3 && n > 0; i++) {
        size_t tl = strlen(texts[i]);
        uint8_t sel = (uint8_t)(i == 1 ? 4 : 0); /* 0: any size, 4: exactly 512 */
        uint8_t *p = buf + 300 - 2 - tl;
        p[0] = sel;
        p[1] = (uint8_t)tl;
        memcpy(p + 2, texts[i], tl);
        char name[32];
        snprintf(name, sizeof name, "tok512-%d", i);
        fuzz_write_seed(argv[1], name, p, n + 2 + tl);
    }
    /* piece lists: <unk> <s> </s>, byte tokens, words with U+2581 */
    static const char *pieces[] = {"<unk>", "<s>", "</s>", "<0x41>", "<0xC3>", "<0xA9>",
                                   "\xe2\x96\x81hi", "\xe2\x96\x81", "a", "b", "ab", "hi"};
    static const uint8_t types[] = {2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1};
    uint8_t arr[512];
    size_t o = 0;
    const char *txt = "hi ab \xc3\xa9";
    arr[o++] = 3; /* from_arrays with types and U+2581 */
    arr[o++] = (uint8_t)strlen(txt);
    memcpy(arr + o, txt, strlen(txt));
    o += strlen(txt);
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        size_t l = strlen(pieces[i]);
        arr[o++] = (uint8_t)l;
        memcpy(arr + o, pieces[i], l);
        o += l;
        arr[o++] = (uint8_t)i;
        arr[o++] = types[i];
    }
    fuzz_write_seed(argv[1], "arrays-typed", arr, o);
    arr[0] = 1; /* the same pieces, types inferred, no U+2581 */
    fuzz_write_seed(argv[1], "arrays-inferred", arr, o);
    return 0;
}

#endif
