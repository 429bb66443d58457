/* chat.c: chat-template detection and rendering (uhlm/chat.h), after llama.cpp's
 * src/llama-chat.cpp (llm_chat_detect_template, llm_chat_apply_template). */
#include "uhlm/chat.h"
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/tokenizer.h"

/* ------------------------------------------------------------------ detection */

typedef struct {
    const char *s;
    size_t n;
} span;

static int has(span t, const char *needle) {
    size_t k = strlen(needle);
    if (k == 0) return 1;
    for (size_t i = 0; i + k <= t.n; i++)
        if (t.s[i] == needle[0] && memcmp(t.s + i, needle, k) == 0) return 1;
    return 0;
}

static uhlm_chat_template tmpl(uhlm_chat_kind k, const char *name) {
    uhlm_chat_template r = {k, name};
    return r;
}

static uhlm_chat_template other(const char *name) { return tmpl(UHLM_CHAT_OTHER, name); }

/* llama.cpp's LLM_CHAT_TEMPLATES: a template string may simply be one of these names. */
static const char *const known_names[] = {
    "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1",
    "mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4",
    "falcon3", "zephyr", "monarch", "gemma", "orion", "openchat", "vicuna", "vicuna-orca",
    "deepseek", "deepseek2", "deepseek3", "deepseek-ocr", "command-r", "llama3", "chatglm3",
    "chatglm4", "glmedge", "minicpm", "exaone3", "exaone4", "exaone-moe", "rwkv-world", "granite",
    "granite-4.0", "granite-4.1", "gigachat", "megrez", "yandex", "bailing", "bailing-think",
    "bailing2", "llama4", "smolvlm", "hunyuan-moe", "gpt-oss", "hunyuan-dense", "hunyuan-vl",
    "kimi-k2", "seed_oss", "grok-2", "pangu-embedded", "solar-open"};

static uhlm_chat_kind kind_of_name(const char *name) {
    static const struct {
        const char *name;
        uhlm_chat_kind kind;
    } ours[] = {{"chatml", UHLM_CHAT_CHATML},
                {"llama2", UHLM_CHAT_LLAMA2},
                {"llama2-sys", UHLM_CHAT_LLAMA2_SYS},
                {"llama2-sys-bos", UHLM_CHAT_LLAMA2_SYS_BOS},
                {"llama2-sys-strip", UHLM_CHAT_LLAMA2_SYS_STRIP},
                {"llama3", UHLM_CHAT_LLAMA3},
                {"zephyr", UHLM_CHAT_ZEPHYR}};
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
        if (!strcmp(name, ours[i].name)) return ours[i].kind;
    return UHLM_CHAT_OTHER;
}

uhlm_chat_template uhlm_chat_detect(const char *s, size_t len) {
    if (!s || len == 0) return tmpl(UHLM_CHAT_NONE, "none");
    span t = {s, len};
    for (size_t i = 0; i < sizeof known_names / sizeof *known_names; i++) {
        size_t k = strlen(known_names[i]);
        if (k == len && memcmp(s, known_names[i], k) == 0)
            return tmpl(kind_of_name(known_names[i]), known_names[i]);
    }
    /* the chain of llm_chat_detect_template, in its order */
    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>")) return other("phi4");
        if (has(t, "<end_of_utterance>")) return other("smolvlm");
        return tmpl(UHLM_CHAT_CHATML, "chatml");
    }
    if ((len >= 7 && memcmp(s, "mistral", 7) == 0) || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) return other("mistral-v7");
        if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            if (has(t, " [INST]")) return other("mistral-v1");
            if (has(t, "\"[INST]\"")) return other("mistral-v3-tekken");
            return other("mistral-v3");
        }
        if (has(t, "content.strip()")) return tmpl(UHLM_CHAT_LLAMA2_SYS_STRIP, "llama2-sys-strip");
        if (has(t, "bos_token + '[INST]")) return tmpl(UHLM_CHAT_LLAMA2_SYS_BOS, "llama2-sys-bos");
        if (has(t, "<<SYS>>")) return tmpl(UHLM_CHAT_LLAMA2_SYS, "llama2-sys");
        return tmpl(UHLM_CHAT_LLAMA2, "llama2");
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return other("phi3");
    if (has(t, "[gMASK]<sop>")) return other("chatglm4");
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) {
        if (has(t, "<|tool_declare|>")) return other("exaone-moe");
        return other(has(t, "</s>") ? "falcon3" : "glmedge");
    }
    if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>")) return other("glmedge");
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return tmpl(UHLM_CHAT_ZEPHYR, "zephyr");
    if (has(t, "bos_token + message['role']")) return other("monarch");
    if (has(t, "<start_of_turn>")) return other("gemma");
    if (has(t, "'\\n\\nAssistant: ' + eos_token")) return other("orion");
    if (has(t, "GPT4 Correct ")) return other("openchat");
    if (has(t, "USER: ") && has(t, "ASSISTANT: "))
        return other(has(t, "SYSTEM: ") ? "vicuna-orca" : "vicuna");
    if (has(t, "### Instruction:") && has(t, "<|EOT|>")) return other("deepseek");
    if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>")) return other("command-r");
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>"))
        return tmpl(UHLM_CHAT_LLAMA3, "llama3");
    /* after Llama 3 nothing we render can match; the rest of llama.cpp's chain is only named */
    if (has(t, "[gMASK]sop")) return other("chatglm3");
    if (has(t, "<\xe7\x94\xa8\xe6\x88\xb7>")) return other("minicpm"); /* <用户> */
    if (has(t, "'Assistant: ' + message['content'] + eos_token")) return other("deepseek2");
    if (has(t, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && has(t, "<\xef\xbd\x9c" "User\xef\xbd\x9c>"))
        return other("deepseek3");
    if (has(t, "[|system|]") && has(t, "[|assistant|]") && has(t, "[|endofturn|]"))
        return other(has(t, "[|tool|]") ? "exaone4" : "exaone3");
    if (has(t, "rwkv-world") || has(t, "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}"))
        return other("rwkv-world");
    if (has(t, "<|start_of_role|>")) return other("granite");
    if (has(t, "<|role_start|>")) return other("megrez");
    if (has(t, "<role>ASSISTANT</role>")) return other("bailing");
    if (has(t, "<|header_start|>") && has(t, "<|header_end|>")) return other("llama4");
    if (has(t, "<|endofuserprompt|>")) return other("dots1");
    if (has(t, "<|extra_0|>") && has(t, "<|extra_4|>")) return other("hunyuan-moe");
    if (has(t, "<|start|>") && has(t, "<|channel|>")) return other("gpt-oss");
    if (has(t, "<|im_assistant|>assistant<|im_middle|>")) return other("kimi-k2");
    if (has(t, "<seed:bos>")) return other("seed_oss");
    if (has(t, "<|begin|>") && has(t, "<|end|>") && has(t, "<|content|>")) return other("solar-open");
    return tmpl(UHLM_CHAT_UNKNOWN, "unknown");
}

uhlm_chat_template uhlm_chat_model_template(const uhlm_model *m) {
    return uhlm_chat_detect(m->chat_template, m->chat_template_len);
}

int uhlm_chat_supported(uhlm_chat_kind k) {
    return k == UHLM_CHAT_CHATML || k == UHLM_CHAT_LLAMA2 || k == UHLM_CHAT_LLAMA2_SYS ||
           k == UHLM_CHAT_LLAMA2_SYS_BOS || k == UHLM_CHAT_LLAMA2_SYS_STRIP ||
           k == UHLM_CHAT_LLAMA3 || k == UHLM_CHAT_ZEPHYR;
}

/* ------------------------------------------------------------------ rendering */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* llama.cpp's trim(): isspace() in the C locale, which is exactly these six bytes */
static int c_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static void put_trimmed(sbuf *b, const char *s) {
    size_t a = 0, z = strlen(s);
    while (a < z && c_space((unsigned char)s[a])) a++;
    while (z > a && c_space((unsigned char)s[z - 1])) z--;
    put_n(b, s + a, z - a);
}

static void render_llama2(sbuf *b, uhlm_chat_kind k, const uhlm_chat_msg *msgs, int n) {
    const int sys = k != UHLM_CHAT_LLAMA2, bos_inside = k == UHLM_CHAT_LLAMA2_SYS_BOS,
              strip = k == UHLM_CHAT_LLAMA2_SYS_STRIP;
    int inside = 1; /* the first "[INST] " is written up front: no BOS at the beginning */
    put(b, "[INST] ");
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role, *c = msgs[i].content;
        if (!inside) {
            inside = 1;
            put(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (!strcmp(role, "system")) {
            if (sys) put(b, "<<SYS>>\n");
            strip ? put_trimmed(b, c) : put(b, c);
            put(b, sys ? "\n<</SYS>>\n\n" : "\n");
        } else if (!strcmp(role, "user")) {
            strip ? put_trimmed(b, c) : put(b, c);
            put(b, " [/INST]");
        } else {
            strip ? put_trimmed(b, c) : put(b, c);
            put(b, "</s>");
            inside = 0;
        }
    }
}

char *uhlm_chat_render(uhlm_chat_kind k, const uhlm_chat_msg *msgs, int n, int add_assistant,
                       uhlm_error *err) {
    if (!uhlm_chat_supported(k)) {
        uhlm_set_error(err, "cannot render chat template kind %d", (int)k);
        return NULL;
    }
    sbuf b = {NULL, 0, 0, 0};
    put(&b, ""); /* an empty conversation still gives a string */
    switch (k) {
    case UHLM_CHAT_CHATML:
        for (int i = 0; i < n; i++) {
            put(&b, "<|im_start|>");
            put(&b, msgs[i].role);
            put(&b, "\n");
            put(&b, msgs[i].content);
            put(&b, "<|im_end|>\n");
        }
        if (add_assistant) put(&b, "<|im_start|>assistant\n");
        break;
    case UHLM_CHAT_LLAMA3:
        for (int i = 0; i < n; i++) {
            put(&b, "<|start_header_id|>");
            put(&b, msgs[i].role);
            put(&b, "<|end_header_id|>\n\n");
            put_trimmed(&b, msgs[i].content);
            put(&b, "<|eot_id|>");
        }
        if (add_assistant) put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case UHLM_CHAT_ZEPHYR:
        for (int i = 0; i < n; i++) {
            put(&b, "<|");
            put(&b, msgs[i].role);
            put(&b, "|>\n");
            put(&b, msgs[i].content);
            put(&b, "<|endoftext|>\n");
        }
        if (add_assistant) put(&b, "<|assistant|>\n");
        break;
    default: render_llama2(&b, k, msgs, n); break;
    }
    if (b.oom) {
        free(b.s);
        uhlm_set_error(err, "out of memory rendering a chat prompt");
        return NULL;
    }
    return b.s;
}

int uhlm_chat_tokenize(const uhlm_model *m, const char *system, const char *user, int *ids,
                       int cap, uhlm_error *err) {
    uhlm_chat_template t = uhlm_chat_model_template(m);
    if (!uhlm_chat_supported(t.kind)) {
        if (t.kind == UHLM_CHAT_NONE)
            return uhlm_set_error(err, "%s has no chat template (tokenizer.chat_template)",
                                  m->path);
        return uhlm_set_error(err,
                              "%s: chat template '%s' is not supported (supported: chatml, "
                              "llama2, llama3, zephyr)",
                              m->path, t.name);
    }
    if (!m->tok) return uhlm_set_error(err, "%s: no tokenizer", m->path);
    uhlm_chat_msg msgs[2];
    int n = 0;
    if (system && system[0]) msgs[n++] = (uhlm_chat_msg){"system", system};
    msgs[n++] = (uhlm_chat_msg){"user", user};
    char *text = uhlm_chat_render(t.kind, msgs, n, 1, err);
    if (!text) return -1;
    int r = uhlm_tokenize_special(m->tok, text, strlen(text), uhlm_tokenizer_add_bos(m->tok), 0, 1,
                                  ids, cap, err);
    free(text);
    return r;
}
