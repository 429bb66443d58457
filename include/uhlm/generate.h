/* generate.h: hybrid generation in one call (model pair + prompt + parameters -> text).
 *
 *   uhlm_error err;
 *   uhlm_model *slm = uhlm_model_load("stories-slm-0.28M.bin", "tok512.bin", &err);
 *   uhlm_model *llm = uhlm_model_load("stories-llm-2.76M.bin", "tok512.bin", &err);
 *   uhlm_generate_params p = uhlm_generate_default_params();
 *   p.device.n_gen = 64;
 *   char *text = NULL;
 *   uhlm_device_report rep;
 *   if (uhlm_generate(slm, llm, "Once upon a time", &p, &text, &rep, &err) == 0)
 *       printf("%s\n(TR %.3f)\n", text, uhlm_stats_tr(&rep.stats));
 *   free(text);
 *
 * It is what `uhlm run` does in process: an SLM context, an in-process verifier on the LLM
 * (same context parameters), a device (device.h) driven to the end. So the same seed and
 * parameters give the same tokens as `uhlm run` and as every other place the device runs
 * (remote server included). For a server, a shadow LLM, streaming to a socket or several
 * generations on one context, use device.h and verifier.h directly. */
#ifndef UHLM_GENERATE_H
#define UHLM_GENERATE_H

#include <stdint.h>

#include "common.h"
#include "device.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_generate_params {
    uhlm_device_params device; /* mode, sampling, payload, uncertainty, channel, n_gen */
    uint64_t seed;
    uhlm_ctx_params ctx;       /* for both contexts (threads, SIMD level, n_ctx) */
    int add_bos;               /* -1: the vocabulary's flag (uhlm_tokenizer_add_bos) */
    uhlm_token_cb on_token;    /* optional: each final token as it comes (device.h) */
    void *on_token_user;
    uhlm_cancel_fn cancel;     /* optional: polled before each token (common.h) */
    void *cancel_user;
} uhlm_generate_params;

/* uhlm_device_default_params(), seed 0, uhlm_ctx_default_params(), add_bos -1, no callbacks. */
UHLM_API uhlm_generate_params uhlm_generate_default_params(void);

/* Generates from `prompt` (tokenized with the SLM's vocabulary, or the LLM's in llm mode).
 * slm may be NULL in llm mode and llm NULL in slm mode; both are borrowed, and must share one
 * vocabulary. *text receives the generated text only (not the prompt; end-of-generation
 * tokens are not printed), malloc'd and NUL-terminated: free() it. report, if not NULL,
 * receives the run's parameters and statistics. Returns 0; -1 on error (err says, *text is
 * NULL); UHLM_CANCELLED when the cancel callback stopped it (*text holds what was generated,
 * report->stats.stop is "cancelled"). */
UHLM_API int uhlm_generate(const uhlm_model *slm, const uhlm_model *llm, const char *prompt,
                           const uhlm_generate_params *p, char **text, uhlm_device_report *report,
                           uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
