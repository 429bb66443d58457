/* test_input_edges.c: input files that are almost right.
 *
 * - a llama2.c tokenizer.bin cut exactly between two records: the file holds no token count,
 *   so without a model's vocabulary size only its structure can tell. `uhlm tokenize -z` used
 *   to accept such a file (a smaller vocabulary, silently) while `generate` refused it. The
 *   loader now checks what llama2.c's export guarantees: max_token_length is the longest
 *   piece's length, so a cut before the first longest piece fails (a later cut still cannot
 *   be seen; the test counts those exactly);
 * - a prompt with \u0000 (or a raw NUL byte) inside a string used to be cut at the NUL
 *   silently; now the file is refused, naming the line. */
#include <stdint.h>
#include <sys/wait.h>

#include "check.h"
#include "uhlm/prompts.h"
#include "uhlm/tokenizer.h"

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(b, cap);
            if (!nb) break;
            b = nb;
        }
        size_t k = fread(b + *n, 1, cap - *n, f);
        if (k == 0) break;
        *n += k;
    }
    fclose(f);
    return b;
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Byte offsets where each record starts, and the end. */
static size_t record_offsets(const char *b, size_t n, size_t *off, size_t cap) {
    size_t o = 4, k = 0;
    while (o + 8 <= n && k < cap) {
        off[k++] = o;
        int32_t l;
        memcpy(&l, b + o + 4, 4);
        o += 8 + (size_t)l;
    }
    if (k < cap) off[k] = o;
    return k;
}

static void test_tokenizer_cut(const char *name, int vocab) {
    size_t n = 0;
    char *good = slurp(uhlm_test_model_path(name), &n);
    CHECK(good != NULL);
    if (!good) return;
    size_t *off = malloc(sizeof *off * (size_t)(vocab + 1));
    if (!off) exit(2);
    CHECK(record_offsets(good, n, off, (size_t)vocab + 1) == (size_t)vocab && off[vocab] == n);
    char path[512];
    snprintf(path, sizeof path, "%s/uhlm_test_edges_%d.bin", uhlm_test_tmpdir(), (int)getpid());
    int accepted = 0, tried = 0, msg_ok = 0;
    /* every cut between records, the whole file excluded */
    for (int keep = 1; keep < vocab; keep += vocab > 1000 ? 97 : 1) {
        CHECK(write_file(path, good, off[keep]) == 0);
        uhlm_error err = {{0}};
        uhlm_tokenizer *t = uhlm_tokenizer_load_bin(path, 0, &err);
        tried++;
        if (t) {
            accepted++;
            uhlm_tokenizer_free(t);
        } else if (strstr(err.msg, path) && strstr(err.msg, "cut short")) {
            msg_ok++;
        } else {
            fprintf(stderr, "%s cut after %d tokens: %s\n", name, keep, err.msg);
        }
    }
    /* What the structure cannot tell: cuts that keep a longest piece. Those are counted, and
     * must be exactly the cuts after the first longest piece. */
    int32_t maxlen;
    memcpy(&maxlen, good, 4);
    int first_max = -1;
    for (int i = 0; i < vocab && first_max < 0; i++) {
        int32_t l;
        memcpy(&l, good + off[i] + 4, 4);
        if (l == maxlen) first_max = i;
    }
    int undetectable = 0;
    for (int keep = 1; keep < vocab; keep += vocab > 1000 ? 97 : 1) undetectable += keep > first_max;
    CHECKF(accepted == undetectable, "%s: %d of %d cuts accepted, %d expected", name, accepted,
           tried, undetectable);
    CHECKF(msg_ok == tried - undetectable, "%s: %d of %d messages say 'cut short'", name, msg_ok,
           tried - undetectable);
    /* the whole file still loads, with and without the expected size */
    uhlm_error err = {{0}};
    CHECK(write_file(path, good, n) == 0);
    uhlm_tokenizer *t = uhlm_tokenizer_load_bin(path, 0, &err);
    CHECKF(t && uhlm_tokenizer_vocab_size(t) == vocab, "%s", err.msg);
    uhlm_tokenizer_free(t);
    t = uhlm_tokenizer_load_bin(path, vocab, &err);
    CHECKF(t != NULL, "%s", err.msg);
    uhlm_tokenizer_free(t);
    /* a max_token_length larger than any piece: not written by llama2.c's export */
    int32_t big = maxlen + 1;
    memcpy(good, &big, 4);
    CHECK(write_file(path, good, n) == 0);
    t = uhlm_tokenizer_load_bin(path, 0, &err);
    CHECKF(!t && strstr(err.msg, "max_token_length"), "%s", t ? "loaded" : err.msg);
    uhlm_tokenizer_free(t);
    remove(path);
    free(off);
    free(good);
}

/* The CLI: tok512.bin cut after 300 tokens (before its longest pieces, at 374 and 376). */
static void test_tokenize_cli(void) {
    const char *bin = getenv("UHLM_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "test_tokenize_cli: skipped (UHLM_BIN not set; run through ctest)\n");
        return;
    }
    size_t n = 0;
    char *good = slurp(uhlm_test_model_path("tok512.bin"), &n);
    if (!good) return;
    size_t off[513];
    record_offsets(good, n, off, 513);
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/uhlm_test_edges_cli_%d.bin", uhlm_test_tmpdir(), (int)getpid());
    CHECK(write_file(path, good, off[300]) == 0);
    snprintf(cmd, sizeof cmd, "'%s' tokenize -z '%s' 'Once upon a time' >/dev/null 2>&1", bin, path);
    int st = system(cmd);
    CHECKF(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "tokenize -z of a cut file: status %d",
           st);
    snprintf(cmd, sizeof cmd, "'%s' generate -z '%s' -n 2 >/dev/null 2>&1", bin, path);
    st = system(cmd);
    CHECKF(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "generate -z of a cut file: status %d",
           st);
    remove(path);
    free(good);
}

static void expect_prompts_fail(const char *text, size_t len, const char *want) {
    uhlm_prompt_set s;
    uhlm_error err = {{0}};
    int rc = uhlm_prompts_parse(text, len, "p.jsonl", &s, &err);
    CHECKF(rc != 0 && strstr(err.msg, want) && strstr(err.msg, "p.jsonl"),
           "expected '%s', got %s: %s (prompt '%s')", want, rc ? "error" : "success", err.msg,
           rc ? "" : s.items[0].text);
    if (rc == 0) uhlm_prompts_free(&s);
}

static void test_prompt_nul(void) {
    const char jl[] = "{\"id\": \"a\", \"prompt\": \"fine\"}\n"
                      "{\"id\": \"b\", \"prompt\": \"cut\\u0000 here\"}\n";
    expect_prompts_fail(jl, sizeof jl - 1, "line 2: a NUL character (\\u0000) in a string");
    const char arr[] = "[\n{\"instruction\": \"x\", \"input\": \"y\\u0000z\"}\n]";
    expect_prompts_fail(arr, sizeof arr - 1, "line 2: a NUL character (\\u0000) in a string");
    const char id[] = "{\"id\": \"a\\u0000b\", \"prompt\": \"p\"}";
    expect_prompts_fail(id, sizeof id - 1, "line 1: a NUL character");
    const char later[] = "\n\n{\"id\": \"a\", \"prompt\": \"x\\u0000\"}";
    expect_prompts_fail(later, sizeof later - 1, "line 3: a NUL character");
    const char raw[] = "{\"id\": \"a\", \"prompt\": \"raw\0byte\"}";
    expect_prompts_fail(raw, sizeof raw - 1, "line 1: a NUL byte");
    /* an escaped backslash followed by u0000 is text, not a NUL */
    const char ok[] = "{\"id\": \"a\", \"prompt\": \"C:\\\\u0000 \\\"q\\\\\\\\\\\" \\\\\"}";
    uhlm_prompt_set s;
    uhlm_error err = {{0}};
    CHECKF(uhlm_prompts_parse(ok, sizeof ok - 1, "ok.jsonl", &s, &err) == 0, "%s", err.msg);
    if (s.n == 1) CHECKF(!strcmp(s.items[0].text, "C:\\u0000 \"q\\\\\" \\"), "%s", s.items[0].text);
    uhlm_prompts_free(&s);
    /* \u0001 and other escapes are kept as text */
    const char one[] = "{\"id\": \"a\", \"prompt\": \"x\\u0001y\\u00e9\"}";
    CHECKF(uhlm_prompts_parse(one, sizeof one - 1, "one.jsonl", &s, &err) == 0, "%s", err.msg);
    if (s.n == 1) CHECK(!strcmp(s.items[0].text, "x\001y\xc3\xa9"));
    uhlm_prompts_free(&s);
}

int main(void) {
    test_tokenizer_cut("tok512.bin", 512);
    test_tokenizer_cut("tokenizer.bin", 32000);
    test_tokenize_cli();
    test_prompt_nul();
    return check_report();
}
