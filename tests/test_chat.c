/* test_chat.c: chat-template detection and rendering against llama.cpp.
 *
 * tests/fixtures/chat_templates.json holds what llama.cpp's llama_chat_apply_template returns
 * for templates of every kind uhlm renders and some it does not (written by
 * scripts/make_chat_fixtures.py). Every case whose template llama.cpp renders must be detected
 * as a kind that uhlm renders identically, or as a kind uhlm names and refuses; a template
 * llama.cpp does not recognise must be "unknown". The kinds of the named templates and of
 * SmolLM2's and Qwen2's Jinja templates are checked by name, and the special-token
 * tokenization of a rendered ChatML prompt is checked on a small vocabulary. */
#include <cjson/cJSON.h>

#include "check.h"
#include "uhlm/chat.h"
#include "uhlm/tokenizer.h"

static char *slurp(const char *rel) {
    static const char *const dirs[] = {NULL, ".", ".."};
    char path[1024];
    const char *src = getenv("UHLM_SOURCE_DIR");
    for (int i = 0; i < 3; i++) {
        const char *d = i == 0 ? src : dirs[i];
        if (!d) continue;
        snprintf(path, sizeof path, "%s/%s", d, rel);
        if (access(path, R_OK) != 0) continue;
        char *buf;
        size_t len;
        uhlm_error err;
        if (uhlm_read_file(path, "fixture", &buf, &len, &err) == 0) return buf;
    }
    fprintf(stderr, "fixture %s not found (set UHLM_SOURCE_DIR)\n", rel);
    return NULL;
}

static void check_fixture(void) {
    char *buf = slurp("tests/fixtures/chat_templates.json");
    CHECK(buf != NULL);
    if (!buf) return;
    cJSON *arr = cJSON_Parse(buf);
    free(buf);
    CHECK(cJSON_IsArray(arr));
    int n_rendered = 0, n_other = 0, n_unknown = 0, i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, arr) {
        const char *t = cJSON_GetObjectItem(c, "template")->valuestring;
        const cJSON *msgs = cJSON_GetObjectItem(c, "messages");
        const cJSON *exp = cJSON_GetObjectItem(c, "expected");
        int add = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_assistant"));
        uhlm_chat_template k = uhlm_chat_detect(t, strlen(t));
        if (cJSON_IsNull(exp)) {
            CHECKF(k.kind == UHLM_CHAT_UNKNOWN, "case %d: llama.cpp does not know it, we say %s", i,
                   k.name);
            n_unknown++;
        } else if (!uhlm_chat_supported(k.kind)) {
            CHECKF(k.kind == UHLM_CHAT_OTHER, "case %d: kind %d", i, (int)k.kind);
            n_other++;
        } else {
            uhlm_chat_msg m[8];
            int nm = 0;
            const cJSON *pair;
            cJSON_ArrayForEach(pair, msgs) {
                if (nm == 8) break;
                m[nm].role = cJSON_GetArrayItem(pair, 0)->valuestring;
                m[nm].content = cJSON_GetArrayItem(pair, 1)->valuestring;
                nm++;
            }
            uhlm_error err = {{0}};
            char *out = uhlm_chat_render(k.kind, m, nm, add, &err);
            CHECKF(out && !strcmp(out, exp->valuestring), "case %d (%s): got [%s] want [%s]", i,
                   k.name, out ? out : err.msg, exp->valuestring);
            free(out);
            n_rendered++;
        }
        i++;
    }
    cJSON_Delete(arr);
    printf("chat fixture: %d rendered like llama.cpp, %d of other kinds, %d unknown\n", n_rendered,
           n_other, n_unknown);
    CHECK(n_rendered >= 100 && n_other >= 16 && n_unknown >= 8);
}

static const char *kind_name(const char *t) { return uhlm_chat_detect(t, strlen(t)).name; }

static void check_detection(void) {
    static const char *const smollm2 =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
        "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
        "'<|im_start|>assistant\\n' }}{% endif %}";
    CHECK(uhlm_chat_detect(smollm2, strlen(smollm2)).kind == UHLM_CHAT_CHATML);
    CHECK(uhlm_chat_detect(NULL, 0).kind == UHLM_CHAT_NONE);
    CHECK(uhlm_chat_detect("", 0).kind == UHLM_CHAT_NONE);
    CHECK(!strcmp(kind_name("chatml"), "chatml"));
    CHECK(!strcmp(kind_name("llama3"), "llama3"));
    CHECK(!strcmp(kind_name("gemma"), "gemma"));
    CHECK(uhlm_chat_detect("gemma", 5).kind == UHLM_CHAT_OTHER);
    CHECK(!strcmp(kind_name("x<|im_start|>y<|im_sep|>"), "phi4"));
    CHECK(!strcmp(kind_name("[INST] <<SYS>>"), "llama2-sys"));
    CHECK(!strcmp(kind_name("bos_token + '[INST] <<SYS>>"), "llama2-sys-bos"));
    CHECK(!strcmp(kind_name("[INST] content.strip()"), "llama2-sys-strip"));
    CHECK(!strcmp(kind_name("mistral"), "llama2")); /* llama.cpp: a "mistral..." prefix */
    CHECK(!strcmp(kind_name("<|start_header_id|><|end_header_id|>"), "llama3"));
    CHECK(!strcmp(kind_name("<|user|><|endoftext|>"), "zephyr"));
    CHECK(!strcmp(kind_name("<|user|><|assistant|><|endoftext|>"), "glmedge"));
    CHECK(!strcmp(kind_name("plain text"), "unknown"));
    /* the length bounds the search: a marker past len is not seen */
    CHECK(uhlm_chat_detect("ab<|im_start|>", 2).kind == UHLM_CHAT_UNKNOWN);
    uhlm_error err = {{0}};
    uhlm_chat_msg m = {"user", "hi"};
    CHECK(uhlm_chat_render(UHLM_CHAT_OTHER, &m, 1, 1, &err) == NULL && err.msg[0]);
    char *e = uhlm_chat_render(UHLM_CHAT_CHATML, NULL, 0, 0, &err);
    CHECK(e && e[0] == '\0');
    free(e);
}

/* Special tokens of a rendered prompt become single ids; the text around them is encoded as
 * plain text. The vocabulary: bytes, a few words and ChatML's two markers as control tokens. */
static void check_special_tokenize(void) {
    const char *pieces[] = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "\xe2\x96\x81",
                            "u",     "s",   "e",    "r",            "\n",         "h",
                            "i",     "us",  "er",   "user",         "\xe2\x96\x81user"};
    int n = (int)(sizeof pieces / sizeof *pieces);
    size_t lens[32];
    float scores[32];
    int32_t types[32];
    for (int i = 0; i < n; i++) {
        lens[i] = strlen(pieces[i]);
        scores[i] = (float)-i;
        types[i] = i == 0 ? UHLM_TOKTYPE_UNKNOWN : i <= 4 ? UHLM_TOKTYPE_CONTROL : UHLM_TOKTYPE_NORMAL;
    }
    uhlm_error err = {{0}};
    uhlm_tokenizer *t = uhlm_tokenizer_from_arrays(n, pieces, lens, scores, types, 1, "test", &err);
    CHECKF(t != NULL, "%s", err.msg);
    if (!t) return;
    const char *text = "<|im_start|>user\nhi<|im_end|>\n";
    int ids[64];
    int k = uhlm_tokenize_special(t, text, strlen(text), 0, 0, 1, ids, 64, &err);
    CHECKF(k > 3 && ids[0] == 3, "k %d first %d", k, k > 0 ? ids[0] : -1);
    int seen_end = 0;
    for (int i = 0; i < k; i++) seen_end += ids[i] == 4;
    CHECK(seen_end == 1);
    /* without parsing, the markers are text: no control ids */
    k = uhlm_tokenize_special(t, text, strlen(text), 0, 0, 0, ids, 64, &err);
    int ctl = 0;
    for (int i = 0; i < k; i++) ctl += ids[i] == 3 || ids[i] == 4;
    CHECK(k > 0 && ctl == 0);
    CHECK(uhlm_tokenizer_find(t, "<|im_end|>", 10) == 4);
    CHECK(uhlm_tokenizer_find(t, "nope", 4) < 0);
    uhlm_tokenizer_free(t);
}

int main(void) {
    check_fixture();
    check_detection();
    check_special_tokenize();
    return check_report();
}
