/* check.h: the tiny test harness shared by tests/test_*.c.
 *
 * CHECK records a failure and carries on, so one run shows every broken assertion. A test
 * program ends with `return check_report();`, which prints "N passed, N failed" and returns
 * nonzero on any failure. uhlm_test_model_path finds ../shared/models the way the CLI does. */
#ifndef UHLM_TEST_CHECK_H
#define UHLM_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_pass_, check_fail_;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (cond) {                                                                      \
            check_pass_++;                                                               \
        } else {                                                                         \
            check_fail_++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

#define CHECKF(cond, ...)                                                                \
    do {                                                                                 \
        if (cond) {                                                                      \
            check_pass_++;                                                               \
        } else {                                                                         \
            check_fail_++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

static inline int check_report(void) {
    printf("%d passed, %d failed\n", check_pass_, check_fail_);
    return check_fail_ ? 1 : 0;
}

/* Resolves a file in the shared models folder: $UHLM_MODELS, ./models, ../shared/models
 * relative to the source tree. Returns a static buffer; exits 77-free: a missing model is a
 * hard failure, because the models are part of the test environment. */
static inline const char *uhlm_test_model_path(const char *name) {
    static char buf[8][1024];
    static int slot;
    char *out = buf[slot++ & 7];
    const char *env = getenv("UHLM_MODELS");
    const char *src = getenv("UHLM_SOURCE_DIR");
    const char *cands[4];
    int nc = 0;
    if (env) cands[nc++] = env;
    cands[nc++] = "models";
    if (src) {
        static char s1[1024];
        snprintf(s1, sizeof s1, "%s/../shared/models", src);
        cands[nc++] = s1;
    }
    cands[nc++] = "../shared/models";
    for (int i = 0; i < nc; i++) {
        snprintf(out, 1024, "%s/%s", cands[i], name);
        if (access(out, R_OK) == 0) return out;
    }
    fprintf(stderr, "test model %s not found (set UHLM_MODELS)\n", name);
    exit(2);
}

static inline const char *uhlm_test_tmpdir(void) {
    const char *t = getenv("TMPDIR");
    return t ? t : "/tmp";
}

#endif
