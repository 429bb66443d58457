/* eval_common.h: helpers shared by `uhlm calibrate`, `uhlm eval` and `uhlm embed` (kept out
 * of cli.h, which every subcommand includes). */
#ifndef UHLM_CLI_EVAL_COMMON_H
#define UHLM_CLI_EVAL_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "uhlm/calib.h"
#include "uhlm/device.h"
#include "uhlm/model.h"

/* A growable text buffer. Appends after an allocation failure are dropped and remembered in
 * oom, so a caller checks once at the end instead of after every line. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(sbuf *b);

/* 0 when the two models share a vocabulary, else prints why and returns -1. */
int evc_check_pair(const char *cmd, const uhlm_model *slm, const uhlm_model *llm);
/* A per-prompt seed from the run seed and the prompt id: results do not depend on the order
 * or the subset of prompts. */
uint64_t evc_prompt_seed(uint64_t seed, const char *id);
/* The calibration sample of a token event: 1 and *out for a verified token with finite u and
 * β, else 0. One definition, so calibrate and eval count the same tokens. */
int evc_calib_sample(const uhlm_token_event *ev, uhlm_calib_sample *out);
/* A growable array of calibration samples. An append that cannot grow it drops the sample
 * and sets oom, so a caller checks once after a prompt. */
typedef struct evc_samples {
    uhlm_calib_sample *s;
    size_t n, cap;
    int oom;
} evc_samples;
void evc_samples_push(evc_samples *a, const uhlm_calib_sample *smp);
/* Writes a CSV field, quoted when needed. */
void sb_csv_str(sbuf *b, const char *s);

#endif
