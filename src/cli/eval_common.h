/* eval_common.h: what `uhlm calibrate`, `uhlm eval` and `uhlm embed` share on the command
 * line (kept out of cli.h, which every subcommand includes). The harness itself is library
 * code: uhlm/harness.h and uhlm/calib_samples.h. */
#ifndef UHLM_CLI_EVAL_COMMON_H
#define UHLM_CLI_EVAL_COMMON_H

#include "uhlm/model.h"

/* 0 when the two models share a vocabulary, else prints why as "uhlm CMD: ..." (and, when one
 * of slm_arg and llm_arg is a default model, how to name a pair) and returns -1. */
int evc_check_pair(const char *cmd, const uhlm_model *slm, const uhlm_model *llm,
                   const char *slm_arg, const char *llm_arg);

#endif
