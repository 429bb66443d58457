/* cli_chat.c: the --chat checks shared by generate, run, eval and calibrate (see cli.h). */
#include <stdio.h>

#include "cli/cli.h"
#include "uhlm/chat.h"

int cli_check_chat(const char *cmd, const uhlm_model *m) {
    uhlm_chat_template t = uhlm_chat_model_template(m);
    if (uhlm_chat_supported(t.kind)) return 0;
    if (t.kind == UHLM_CHAT_NONE)
        fprintf(stderr,
                "uhlm %s: --chat: %s has no chat template (GGUF tokenizer.chat_template); "
                "drop --chat to use the prompt as plain text\n",
                cmd, m->path);
    else
        fprintf(stderr,
                "uhlm %s: --chat: %s has a chat template of kind '%s', which is not supported "
                "(supported: chatml, llama2, llama3, zephyr); drop --chat to use the prompt as "
                "plain text\n",
                cmd, m->path, t.name);
    return -1;
}
