/* cmd_tokenize.c: `uhlm tokenize`, the token ids (and pieces) of a text.
 *
 * Useful to check prompts against SentencePiece / llama.cpp and to see why two vocabularies
 * disagree. The vocabulary comes from a model (-m: GGUF embeds one, SentencePiece or byte-level
 * BPE, and a vocab-only GGUF works too; llama2.c files take -z or fall back to the default
 * tokenizer like `uhlm generate`) or from a llama2.c tokenizer.bin alone (-z). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "uhlm/model.h"
#include "uhlm/tokenizer.h"

static const cli_command tokenize_cmd = {
    "tokenize", "(-m MODEL | -z TOKENIZER) TEXT...",
    "Prints the token ids of TEXT (the arguments joined by single spaces; '-' alone reads\n"
    "standard input), encoded exactly as SentencePiece (Llama 2 vocabularies) or\n"
    "llama.cpp (byte-level BPE: SmolLM2, Llama 3, Qwen 2) encodes it. Options come before\n"
    "the text, so a text may start with '-' (or put -- before it).",
    "Exit status: 0 ok, 1 a file could not be loaded or the text not encoded,\n"
    "2 usage error.",
    1};

/* A piece made readable: ' ' as U+2581 (SentencePiece's own spelling), control bytes and
 * backslash escaped so every token stays on one line. */
/* Length of the well-formed UTF-8 character at s, 0 if none starts there. */
static size_t utf8_ok(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
             : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (k == 0 || k > n) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return k;
}

static char *display_piece(const char *p, size_t n) {
    char *s = malloc(4 * n + 1), *o = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        size_t k = c >= 0x80 ? utf8_ok((const unsigned char *)p + i, n - i) : 1;
        if (k > 1) {
            memcpy(o, p + i, k);
            o += k;
            i += k - 1;
        } else if (k == 0) {
            o += sprintf(o, "\\x%02X", c);
        } else if (c == ' ') {
            memcpy(o, "\xE2\x96\x81", 3);
            o += 3;
        } else if (c == '\n') {
            memcpy(o, "\\n", 2);
            o += 2;
        } else if (c == '\t') {
            memcpy(o, "\\t", 2);
            o += 2;
        } else if (c == '\r') {
            memcpy(o, "\\r", 2);
            o += 2;
        } else if (c == '\\') {
            memcpy(o, "\\\\", 2);
            o += 2;
        } else if (c < 0x20 || c == 0x7f) {
            o += sprintf(o, "\\x%02X", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o = '\0';
    return s;
}

/* The piece as shown: SentencePiece pieces as stored, BPE pieces as the bytes they stand for. */
static char *shown_piece(const uhlm_tokenizer *tok, int id) {
    size_t pl;
    const char *p = uhlm_tokenizer_piece(tok, id, &pl);
    if (uhlm_tokenizer_kind(tok) != UHLM_VOCAB_BPE) return display_piece(p ? p : "", p ? pl : 0);
    size_t n = uhlm_tokenizer_token_text(tok, id, NULL, 0);
    char *b = malloc(n ? n : 1);
    if (!b) return NULL;
    uhlm_tokenizer_token_text(tok, id, b, n);
    char *d = display_piece(b, n);
    free(b);
    return d;
}

static int print_json(const uhlm_tokenizer *tok, const int *ids, int n, int pieces) {
    cJSON *arr = cJSON_CreateArray();
    int ok = arr != NULL;
    for (int i = 0; ok && i < n; i++) {
        if (!pieces) {
            cJSON *v = cJSON_CreateNumber(ids[i]);
            ok = v && cJSON_AddItemToArray(arr, v);
            continue;
        }
        char *disp = shown_piece(tok, ids[i]);
        cJSON *o = cJSON_CreateObject();
        ok = disp && o && cJSON_AddNumberToObject(o, "id", ids[i]) &&
             cJSON_AddStringToObject(o, "piece", disp);
        free(disp);
        if (o && !(ok && cJSON_AddItemToArray(arr, o))) {
            cJSON_Delete(o);
            ok = 0;
        }
    }
    if (!ok) {
        cJSON_Delete(arr);
        fprintf(stderr, "uhlm tokenize: out of memory\n");
        return 1;
    }
    return cli_print_json("tokenize", arr) == 0 ? 0 : 1;
}

static int print_plain(const uhlm_tokenizer *tok, const int *ids, int n, int pieces) {
    for (int i = 0; i < n; i++) {
        if (!pieces) {
            printf(i ? " %d" : "%d", ids[i]);
            continue;
        }
        char *disp = shown_piece(tok, ids[i]);
        if (!disp) {
            fprintf(stderr, "uhlm tokenize: out of memory\n");
            return 1;
        }
        printf("%d\t%s\n", ids[i], disp);
        free(disp);
    }
    if (!pieces) putchar('\n');
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize", *model_arg = NULL, *tok_arg = NULL;
    int bos = -1, no_bos = 0, special = 0, pieces = 0, json = 0, first_text = -1;
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &model_arg,
         .help = "take the vocabulary of a model (GGUF, also vocab-only, or llama2.c with -z; a "
                 "llama2.c model without -z uses " UHLM_DEFAULT_TOKENIZER ")"},
        {.id = CLI_TOKENIZER, .dst = &tok_arg,
         .help = "llama2.c tokenizer.bin (alone, or overriding the model's)"},
        CLI_ARG(CLI_NO_BOS, &no_bos),
        CLI_ARG(CLI_SPECIAL, &special),
        CLI_ARG(CLI_PIECES, &pieces),
        {.id = CLI_JSON, .dst = &json,
         .help = "a JSON array of ids, or of {\"id\", \"piece\"} objects with --pieces"},
    };
    int prc = cli_parse(&tokenize_cmd, args, sizeof args / sizeof args[0], argc, argv,
                        &first_text);
    if (prc != CLI_CONTINUE) return cli_exit_status(prc);
    if (no_bos) bos = 0;
    if (first_text < 0 || first_text >= argc) {
        fprintf(stderr, "uhlm tokenize: no TEXT given (see 'uhlm tokenize --help')\n");
        return 2;
    }
    if (!model_arg && !tok_arg) {
        fprintf(stderr, "uhlm tokenize: give a model (-m) or a tokenizer (-z) "
                        "(see 'uhlm tokenize --help')\n");
        return 2;
    }
    /* options are only recognised before the text, so a text may start with '-' */
    char *text = NULL;
    size_t len = 0;
    if (argc - first_text == 1 && !strcmp(argv[first_text], "-")) {
        if (!(text = cli_read_stdin(cmd, &len))) return 1;
    } else {
        for (int i = first_text; i < argc; i++) len += strlen(argv[i]) + 1;
        text = malloc(len + 1);
        if (!text) {
            fprintf(stderr, "uhlm tokenize: out of memory\n");
            return 1;
        }
        len = 0;
        for (int i = first_text; i < argc; i++) {
            if (i > first_text) text[len++] = ' ';
            size_t k = strlen(argv[i]);
            memcpy(text + len, argv[i], k);
            len += k;
        }
        text[len] = '\0';
    }

    uhlm_error err = {{0}};
    char mpath[1024], tpath[1024];
    uhlm_model *m = NULL;
    uhlm_tokenizer *own = NULL;
    const uhlm_tokenizer *tok = NULL;
    int *ids = NULL, rc = 1;
    const char *tp = tok_arg ? cli_find_model_file(tok_arg, tpath, sizeof tpath) : NULL;
    if (model_arg) {
        cli_find_model_file(model_arg, mpath, sizeof mpath);
    }
    if (model_arg && !tp && cli_is_gguf(mpath)) {
        /* the vocabulary alone: vocab-only files have no weights to load */
        if (!(own = uhlm_tokenizer_load_gguf(mpath, &err))) {
            fprintf(stderr, "uhlm tokenize: %s\n", err.msg);
            goto done;
        }
        tok = own;
    } else if (model_arg) {
        if (!(m = uhlm_model_load(mpath, tp, &err))) {
            fprintf(stderr, "uhlm tokenize: %s\n", err.msg);
            goto done;
        }
        if (!uhlm_model_tokenizer(m)) {
            /* a llama2.c checkpoint has no vocabulary: the same default as `uhlm generate` */
            uhlm_tokenizer *t = uhlm_tokenizer_load_bin(
                cli_find_model_file(UHLM_DEFAULT_TOKENIZER, tpath, sizeof tpath), 0, &err);
            if (!t || uhlm_model_attach_tokenizer(m, t, &err) != 0) {
                fprintf(stderr,
                        "uhlm tokenize: %s is a llama2.c file and needs a tokenizer (-z): %s\n",
                        mpath, err.msg);
                goto done;
            }
        }
        tok = uhlm_model_tokenizer(m);
    } else {
        if (!(own = uhlm_tokenizer_load_bin(tp, 0, &err))) {
            fprintf(stderr, "uhlm tokenize: %s\n", err.msg);
            goto done;
        }
        tok = own;
    }

    if (bos < 0) bos = uhlm_tokenizer_add_bos(tok);
    /* a first guess that fits almost any text, then the exact size if it did not */
    int cap = len < 1000000 ? (int)len + 8 : 1000008;
    ids = malloc(sizeof(int) * (size_t)cap);
    int n = ids ? uhlm_tokenize_special(tok, text, len, bos, 0, special, ids, cap, &err) : -2;
    if (n > cap) {
        free(ids);
        cap = n;
        ids = malloc(sizeof(int) * (size_t)cap);
        n = ids ? uhlm_tokenize_special(tok, text, len, bos, 0, special, ids, cap, &err) : -2;
    }
    if (n == -2) {
        fprintf(stderr, "uhlm tokenize: out of memory\n");
        goto done;
    }
    if (n < 0) {
        fprintf(stderr, "uhlm tokenize: %s\n", err.msg);
        goto done;
    }
    rc = json ? print_json(tok, ids, n, pieces) : print_plain(tok, ids, n, pieces);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "uhlm tokenize: error writing the output\n");
        rc = 1;
    }
done:
    free(ids);
    free(text);
    uhlm_tokenizer_free(own);
    uhlm_model_free(m);
    return rc;
}
