/* eval_common.c: see eval_common.h. */
#include "cli/eval_common.h"

#include <stdio.h>

#include "cli/cli.h"
#include "uhlm/harness.h"

int evc_check_pair(const char *cmd, const uhlm_model *slm, const uhlm_model *llm,
                   const char *slm_arg, const char *llm_arg) {
    uhlm_error err = {{0}};
    if (uhlm_eval_check_pair(slm, llm, &err) == 0) return 0;
    fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
    cli_pair_hint(cmd, slm_arg, llm_arg);
    return -1;
}
