/* harness_internal.h (internal to src/eval): the harness's state, shared by the runs
 * (harness.c) and the report writers (report.c). */
#ifndef UHLM_EVAL_HARNESS_INTERNAL_H
#define UHLM_EVAL_HARNESS_INTERNAL_H

#include "uhlm/harness.h"

struct uhlm_eval_harness {
    uhlm_eval_opts o; /* snr[] ends with the sweep's SNR when the grid lacks it */
    int n_snr_report; /* the SNRs asked for; n_snr may hold one more */
    int k_sweep;      /* index of the sweep's SNR */
    uhlm_model *slm, *llm;
    uhlm_ctx *slm_ctx, *shadow, *qctx;
    uhlm_verifier *ver;
    int own_ver;
    const uhlm_prompt_set *ps;
    int n_prompts;
    int **ids; /* prompt token ids */
    int *np;
    uint64_t *seeds;
    int n_ctx, D;
    float *ref_emb; /* n_prompts x D: the reference set's embeddings */
    int have_ref_emb;
    int **ref_greedy; /* the greedy reference set's tokens */
    int *ref_greedy_n;
    int have_ref_greedy;
    float *emb; /* scratch D */
    /* the token callback's state during one run */
    uhlm_msglog log;
    uhlm_calib_samples *rec;
    int oom;
};

#endif
