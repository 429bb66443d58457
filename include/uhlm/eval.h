/* eval.h: the pieces of the evaluation harness that are not the command line.
 *
 * Link re-accounting. The SNR changes only the link times of an accounted run, never its
 * tokens or compute: the device's decisions do not read the clock. So a harness can run each
 * (mode, prompt) once, log every message's size in the order the device sent it, and replay
 * the log through a fresh channel for each SNR. The replay draws fading from the same
 * channel stream (seeded by the session seed, one draw per message with bits > 0, in message
 * order), so it gives bit-for-bit the link time a real run at that SNR would report.
 * The log is rebuilt from the per-token events: the session's OPEN (prompt ids,
 * n_prompt·⌈log2 V⌉ bits up) precedes the first event that sent anything; then each event
 * sent its uplink message (when up_bits > 0) and then its downlink (when down_bits > 0),
 * which is the order of device.c.
 *
 * Quality. The embedding of a text is the mean over its tokens of the model's final
 * RMS-normed hidden state (the input of the classifier), with BOS fed first and not pooled.
 * It is a cheap, model-native sentence vector; with the LLM as the embedder, two texts are
 * close when the LLM "reads" them alike. The NLL is the LLM's mean -log p(token | prefix)
 * at temperature 1, without top-k/top-p, over the generated tokens given the prompt. */
#ifndef UHLM_EVAL_H
#define UHLM_EVAL_H

#include "channel.h"
#include "common.h"
#include "device.h"
#include "model.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_msglog {
    uint64_t *msg; /* bits << 1 | (1 for downlink) */
    size_t n, cap;
    int opened;
    uint64_t open_bits;
} uhlm_msglog;

/* open_bits: the bits of the session's OPEN (n_prompt·⌈log2 V⌉). */
UHLM_API void uhlm_msglog_reset(uhlm_msglog *l, uint64_t open_bits);
UHLM_API void uhlm_msglog_free(uhlm_msglog *l);
UHLM_API int uhlm_msglog_push(uhlm_msglog *l, int down, uint64_t bits);
/* Adds the messages of one token event. -1 on allocation failure. */
UHLM_API int uhlm_msglog_event(uhlm_msglog *l, const uhlm_token_event *ev);
/* Replays the log through a channel with parameters p seeded with seed. */
UHLM_API void uhlm_msglog_replay(const uhlm_msglog *l, const uhlm_channel_params *p, uint64_t seed,
                        double *up_s, double *down_s);

/* out[0..dim): the mean-pooled embedding of tokens[0..n) (BOS is prepended; tokens past the
 * context are dropped; with n = 0 the BOS state itself). Uses and clears sequence 0 of ctx. */
UHLM_API int uhlm_embed_tokens(uhlm_ctx *ctx, const int *tokens, int n, float *out, uhlm_error *err);
UHLM_API double uhlm_cosine(const float *a, const float *b, int n);

/* Sum of -log p(tokens[i] | tokens[0..i)) for i in [start, n), start >= 1 (tokens[0] is
 * usually BOS). Uses and clears sequence 0 of ctx. */
UHLM_API int uhlm_sequence_nll(uhlm_ctx *ctx, const int *tokens, int n, int start, double *sum,
                      uhlm_error *err);

/* Writes data to path through path.tmp and rename(2), so a reader never sees half a file. */
UHLM_API int uhlm_write_file_atomic(const char *path, const char *data, size_t len, uhlm_error *err);

/* Progress of a long command on a stream (NULL: silent). On a TTY a bar with an ETA, redrawn
 * in place; anywhere else (a log file, a pipe) plain lines without carriage returns, one per
 * tenth of the work and at least one every 10 s between them, each with the elapsed time and
 * the ETA, and a last one from uhlm_progress_end. */
typedef struct uhlm_progress {
    FILE *f;
    int tty;
    long total, done;
    double t0, last;
    char label[64];
} uhlm_progress;
UHLM_API void uhlm_progress_init(uhlm_progress *p, FILE *f, long total, const char *label);
UHLM_API void uhlm_progress_step(uhlm_progress *p, long k);
UHLM_API void uhlm_progress_end(uhlm_progress *p);

#ifdef __cplusplus
}
#endif
#endif
