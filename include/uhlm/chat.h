/* chat.h: chat templates, detected and rendered as llama.cpp does without a Jinja engine.
 *
 * Detection follows llama.cpp's llm_chat_detect_template (src/llama-chat.cpp) on the GGUF
 * string tokenizer.chat_template: first an exact template name ("chatml", "llama2", ...), then
 * the same substring tests in the same order, so a template llama.cpp classifies as something
 * else (Phi-4's <|im_sep|> ChatML variant, Mistral's [SYSTEM_PROMPT], ...) is never taken for
 * one of ours. Supported kinds, with what llm_chat_apply_template renders for them:
 *
 *   chatml    <|im_start|>ROLE\nCONTENT<|im_end|>\n ... then <|im_start|>assistant\n
 *             (SmolLM2, Qwen). Like llama.cpp, no default system message is injected, even
 *             where the Jinja template would add one (SmolLM2's "You are a helpful AI
 *             assistant named SmolLM..."): pass it as the system message to get it.
 *   llama2    "[INST] " then per message: system -> CONTENT "\n" (llama2) or
 *             "<<SYS>>\nCONTENT\n<</SYS>>\n\n" (the -sys variants); user -> CONTENT " [/INST]";
 *             assistant -> CONTENT "</s>", after which a new turn opens with "[INST] " (or
 *             "<s>[INST] " for llama2-sys-bos). llama2-sys-strip trims every content. No
 *             assistant prefix is added (the turn already ends in [/INST]).
 *   llama3    <|start_header_id|>ROLE<|end_header_id|>\n\nTRIM(CONTENT)<|eot_id|> ... then
 *             <|start_header_id|>assistant<|end_header_id|>\n\n
 *   zephyr    <|ROLE|>\nCONTENT<|endoftext|>\n ... then <|assistant|>\n
 *             (llama.cpp takes HuggingFaceH4/zephyr's own Jinja template, which contains
 *             <|assistant|> and <|user|>, for glmedge, an earlier test in its chain; so do we)
 *
 * TRIM removes C-locale isspace() bytes at both ends, as llama.cpp's trim() does. The text is
 * tokenized with special-token parsing on (uhlm_chat_tokenize), so <|im_start|> etc. become
 * their control tokens; BOS is added when the vocabulary asks for it. */
#ifndef UHLM_CHAT_H
#define UHLM_CHAT_H

#include <stddef.h>
#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum uhlm_chat_kind {
    UHLM_CHAT_NONE = 0,  /* the model has no template */
    UHLM_CHAT_UNKNOWN,   /* a template llama.cpp's heuristics do not recognise */
    UHLM_CHAT_OTHER,     /* recognised by llama.cpp as a kind we do not render (name says which) */
    UHLM_CHAT_CHATML,
    UHLM_CHAT_LLAMA2,
    UHLM_CHAT_LLAMA2_SYS,
    UHLM_CHAT_LLAMA2_SYS_BOS,
    UHLM_CHAT_LLAMA2_SYS_STRIP,
    UHLM_CHAT_LLAMA3,
    UHLM_CHAT_ZEPHYR
} uhlm_chat_kind;

typedef struct uhlm_chat_template {
    uhlm_chat_kind kind;
    /* llama.cpp's name of the kind ("chatml", "llama2-sys", "phi3", ...; "none", "unknown") */
    const char *name;
} uhlm_chat_template;

/* Classifies template text (len bytes; NULL or empty gives NONE). */
UHLM_API uhlm_chat_template uhlm_chat_detect(const char *tmpl, size_t len);
/* The model's template (GGUF tokenizer.chat_template), classified. */
UHLM_API uhlm_chat_template uhlm_chat_model_template(const uhlm_model *m);
/* 1 for the kinds uhlm_chat_render can render. */
UHLM_API int uhlm_chat_supported(uhlm_chat_kind k);

typedef struct uhlm_chat_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} uhlm_chat_msg;

/* Renders n messages as llama.cpp's llm_chat_apply_template does, with the assistant prefix
 * when add_assistant is set. Returns malloc'd NUL-terminated text, or NULL (err says why:
 * an unsupported kind, or out of memory). */
UHLM_API char *uhlm_chat_render(uhlm_chat_kind k, const uhlm_chat_msg *msgs, int n, int add_assistant,
                       uhlm_error *err);

/* One exchange as the CLI uses it: an optional system message (NULL or "" for none), one user
 * turn and the assistant prefix, rendered with the model's template and tokenized with special
 * tokens parsed and BOS as the vocabulary says. Returns the number of ids (which may exceed cap,
 * as uhlm_tokenize), or -1 when the model has no supported template (err names what it found
 * and the supported kinds) or on error. */
UHLM_API int uhlm_chat_tokenize(const uhlm_model *m, const char *system, const char *user, int *ids,
                       int cap, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
