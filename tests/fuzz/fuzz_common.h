/* fuzz_common.h: helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * The loaders under test take a path (they map or read a regular file), so an input is handed
 * to them as a file: a memfd (an anonymous regular file in memory, no disk traffic) rewritten
 * for each input and named by its /proc/self/fd path. A target is one process, so the one
 * descriptor is kept for the whole run.
 *
 * Seed writers (built with -DUHLM_FUZZ_SEEDGEN) use fuzz_write_seed; targets that load a
 * vocabulary run it through fuzz_exercise_tokenizer. */
#ifndef UHLM_FUZZ_COMMON_H
#define UHLM_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uhlm/tokenizer.h"

/* Rewrites the in-memory file with data and returns its path (valid until the next call). */
static inline const char *fuzz_as_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("uhlm-fuzz", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t k = pwrite(fd, data + off, size - off, (off_t)off);
        if (k <= 0) abort();
        off += (size_t)k;
    }
    return path;
}

/* Aborts (a finding) when cond is false: the contract a target checks beyond "no crash". */
static inline void fuzz_require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz: contract violated: %s\n", what);
        abort();
    }
}

/* Writes one seed file dir/name; exits on failure (seed writers only). */
static inline void fuzz_write_seed(const char *dir, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write seed %s\n", path);
        exit(1);
    }
}

/* Encodes text with t and decodes the ids again: every id must be in the vocabulary, the
 * decoder must produce valid output for every id, and nothing may crash or leak. */
static inline void fuzz_exercise_tokenizer(const uhlm_tokenizer *t, const char *text, size_t len) {
    int V = uhlm_tokenizer_vocab_size(t);
    fuzz_require(V > 0, "empty vocabulary loaded");
    (void)uhlm_tokenizer_fingerprint(t);
    int ids[512];
    uhlm_error err;
    int n = uhlm_tokenize(t, text, len, 1, 0, ids, 512, &err);
    if (n < 0) return;
    if (n > 512) n = 512;
    for (int i = 0; i < n; i++) fuzz_require(ids[i] >= 0 && ids[i] < V, "token id out of range");
    char *s = uhlm_detokenize(t, ids, n);
    fuzz_require(s != NULL, "detokenize failed");
    free(s);
    /* every id through the streaming decoder, including the first and last few */
    uhlm_detok d;
    uhlm_detok_init(&d, t);
    size_t cap = (size_t)uhlm_tokenizer_max_piece_len(t) + 8;
    char *out = malloc(cap);
    fuzz_require(out != NULL, "out of memory");
    for (int id = 0; id < V && id < 300; id++) {
        size_t k = uhlm_detok_push(&d, id, out, cap);
        fuzz_require(k < cap && out[k] == '\0', "detok_push wrote past its piece bound");
    }
    (void)uhlm_detok_flush(&d, out, cap);
    free(out);
}

#endif
