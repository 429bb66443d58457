/* eval_common.c: see eval_common.h. */
#include "cli/eval_common.h"

#include <stdio.h>

#include "uhlm/harness.h"

int evc_check_pair(const char *cmd, const uhlm_model *slm, const uhlm_model *llm) {
    uhlm_error err = {{0}};
    if (uhlm_eval_check_pair(slm, llm, &err) == 0) return 0;
    fprintf(stderr, "uhlm %s: %s\n", cmd, err.msg);
    return -1;
}
