/* fuzz_prompts.c: libFuzzer target for the prompt-set reader (uhlm/prompts.h): JSONL
 * objects {"id","prompt"}, JSON arrays and Alpaca records, then the train/test split.
 *
 * The input is the file, parsed from memory (uhlm_prompts_parse) and, every fourth input,
 * through the file path (uhlm_prompts_load). An accepted set must hold at least one prompt,
 * every prompt a non-empty text and a unique id with no NUL inside; the split of a set must
 * put every prompt in exactly one part.
 * fuzz-max-len: 8192
 *
 * Built with -DUHLM_FUZZ_SEEDGEN, it writes seeds: JSONL, arrays, Alpaca records, and files
 * one edit away from valid. */
#include "fuzz_common.h"
#include "uhlm/prompts.h"

#ifndef UHLM_FUZZ_SEEDGEN

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uhlm_prompt_set s;
    uhlm_error err;
    int rc = uhlm_prompts_parse((const char *)data, size, "fuzz.jsonl", &s, &err);
    if (size % 4 == 0) {
        const char *path = fuzz_as_file(data, size);
        uhlm_prompt_set s2;
        uhlm_error err2;
        int rc2 = uhlm_prompts_load(path, &s2, &err2);
        fuzz_require((rc == 0) == (rc2 == 0), "load and parse disagree");
        if (rc2 == 0) {
            fuzz_require(s2.n == s.n, "load and parse disagree on the count");
            uhlm_prompts_free(&s2);
        }
    }
    if (rc != 0) {
        fuzz_require(s.n == 0 && s.items == NULL, "a failed parse left prompts");
        fuzz_require(strstr(err.msg, "fuzz.jsonl") != NULL, "error message without the name");
        return 0;
    }
    fuzz_require(s.n >= 1, "an empty set accepted");
    for (int i = 0; i < s.n; i++) {
        fuzz_require(s.items[i].id && s.items[i].text && s.items[i].text[0], "empty prompt");
        for (int j = i + 1; j < s.n && j < i + 64; j++)
            fuzz_require(strcmp(s.items[i].id, s.items[j].id) != 0, "duplicate id accepted");
    }
    double frac = (size % 11) / 10.0;
    uhlm_prompt_set tr, te;
    if (uhlm_prompts_split(&s, frac, 1, &tr, &err) == 0) {
        if (uhlm_prompts_split(&s, frac, 0, &te, &err) == 0) {
            fuzz_require(tr.n + te.n == s.n, "the split loses or duplicates prompts");
            uhlm_prompts_free(&te);
        }
        uhlm_prompts_free(&tr);
    }
    uhlm_prompts_free(&s);
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN */

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static const char *files[] = {
        "{\"id\": \"a\", \"prompt\": \"Once upon a time\"}\n"
        "{\"id\": \"b\", \"prompt\": \"The little dog\"}\n\n"
        "{\"id\": 3, \"prompt\": \"caf\\u00e9 \\ud83d\\ude00\"}\n",
        "\xef\xbb\xbf[{\"instruction\": \"Write a story.\", \"input\": \"\", \"output\": \"x\"},\n"
        " {\"instruction\": \"Summarise\", \"input\": \"a long text\"},\n"
        " {\"id\": \"p\", \"prompt\": \"plain\"}]",
        "[{\"instruction\": \"x\", \"input\": null}]",
        "{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n",
        "{\"id\": \"a\", \"prompt\": \"\"}\n",
        "{\"id\": \"a\", \"prompt\": \"x\\u0000y\"}\n",
        "{\"prompt\": \"no id\"}\r\n{\"prompt\": \"second\"}\r\n",
        "[]",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "prompts-%zu", i);
        fuzz_write_seed(argv[1], name, files[i], strlen(files[i]));
    }
    return 0;
}

#endif
