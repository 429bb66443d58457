/* cli_chat.c: the --chat checks shared by generate, run, eval and calibrate (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "uhlm/chat.h"
#include "uhlm/tokenizer.h"

int cli_check_chat(const char *cmd, const uhlm_model *m) {
    uhlm_chat_template t = uhlm_chat_model_template(m);
    if (uhlm_chat_supported(t.kind)) return 0;
    if (t.kind == UHLM_CHAT_NONE)
        fprintf(stderr,
                "uhlm %s: --chat: %s has no chat template (GGUF tokenizer.chat_template); "
                "drop --chat to use the prompt as plain text\n",
                cmd, uhlm_model_path(m));
    else
        fprintf(stderr,
                "uhlm %s: --chat: %s has a chat template of kind '%s', which is not supported "
                "(supported: chatml, llama2, llama3, zephyr); drop --chat to use the prompt as "
                "plain text\n",
                cmd, uhlm_model_path(m), t.name);
    return -1;
}

int cli_prompts_chat(const char *cmd, const uhlm_model *m, int no_chat) {
    uhlm_chat_template t = uhlm_chat_model_template(m);
    if (no_chat || !uhlm_chat_supported(t.kind)) return 0;
    fprintf(stderr,
            "uhlm %s: prompts are wrapped as user turns in the model's %s chat template "
            "(--no-chat: plain text)\n",
            cmd, t.name);
    return 1;
}

int cli_prompt_tokens(const uhlm_model *m, int chat, const char *text, int *ids, int cap,
                      uhlm_error *err) {
    if (chat) return uhlm_chat_tokenize(m, NULL, text, ids, cap, err);
    return uhlm_tokenize(uhlm_model_tokenizer(m), text, strlen(text), uhlm_tokenizer_add_bos(uhlm_model_tokenizer(m)), 0, ids, cap,
                         err);
}
