/* test_chat.c: chat-template detection and rendering against llama.cpp.
 *
 * tests/fixtures/chat_templates.json holds what llama.cpp's llama_chat_apply_template returns
 * for templates of every kind uhlm renders and some it does not (written by
 * scripts/make_chat_fixtures.py). Every case whose template llama.cpp renders must be detected
 * as a kind that uhlm renders identically, or as a kind uhlm names and refuses; a template
 * llama.cpp does not recognise must be "unknown". The kinds of the named templates and of
 * SmolLM2's and Qwen2's Jinja templates are checked by name. uhlm_chat_tokenize gives
 * llama.cpp's ids for prompts in the templates of the Qwen2 vocabulary and of SmolLM2
 * (tests/fixtures/chat_tokens.json; skipped when scripts/setup.sh has not fetched them). */
#include <cjson/cJSON.h>

#include "check.h"
#include "model/model_internal.h"
#include "uhlm/chat.h"
#include "model/format/gguf.h"
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

/* models/ (scripts/setup.sh) or $UHLM_MODELS: NULL when the file is not there */
static const char *find_model(const char *name, char *buf, size_t cap) {
    const char *src = getenv("UHLM_SOURCE_DIR");
    const char *dirs[] = {getenv("UHLM_MODELS"), "models", "../models", src};
    for (int i = 0; i < 4; i++) {
        if (!dirs[i]) continue;
        snprintf(buf, cap, i == 3 ? "%s/models/%s" : "%s/%s", dirs[i], name);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

/* A rendered chat prompt, tokenized with special tokens parsed, gives llama.cpp's ids
 * (tests/fixtures/chat_tokens.json) for the real vocabularies, when they are present. The
 * template comes from the file, as uhlm_chat_tokenize reads it from a model. */
static void check_chat_tokens(void) {
    char *buf = slurp("tests/fixtures/chat_tokens.json");
    CHECK(buf != NULL);
    if (!buf) return;
    cJSON *arr = cJSON_Parse(buf);
    free(buf);
    const cJSON *c;
    int checked = 0, skipped = 0;
    cJSON_ArrayForEach(c, arr) {
        const char *name = cJSON_GetObjectItem(c, "model")->valuestring;
        char path[1024];
        if (!find_model(name, path, sizeof path)) {
            skipped++;
            continue;
        }
        uhlm_error err = {{0}};
        uhlm_gguf *g = uhlm_gguf_open(path, &err);
        uhlm_tokenizer *t = g ? uhlm_tokenizer_load_gguf(path, &err) : NULL;
        CHECKF(t != NULL, "%s", err.msg);
        const uhlm_gguf_kv *ct = g ? uhlm_gguf_find_kv(g, "tokenizer.chat_template") : NULL;
        if (t && ct) {
            uhlm_model m;
            memset(&m, 0, sizeof m);
            snprintf(m.path, sizeof m.path, "%s", path);
            m.tok = t;
            m.chat_template = ct->v.str.s;
            m.chat_template_len = (size_t)ct->v.str.len;
            const cJSON *sys = cJSON_GetObjectItem(c, "system");
            const char *user = cJSON_GetObjectItem(c, "user")->valuestring;
            const cJSON *want = cJSON_GetObjectItem(c, "ids");
            int ids[512];
            int n = uhlm_chat_tokenize(&m, cJSON_IsString(sys) ? sys->valuestring : NULL, user,
                                       ids, 512, &err);
            int same = n == cJSON_GetArraySize(want);
            for (int i = 0; same && i < n; i++)
                same = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
            CHECKF(same, "%s: '%s': %d ids (%s), want %d", name, user, n, n < 0 ? err.msg : "",
                   cJSON_GetArraySize(want));
            checked++;
        }
        uhlm_tokenizer_free(t);
        uhlm_gguf_close(g);
    }
    cJSON_Delete(arr);
    if (skipped) printf("SKIP: %d chat tokenizations (vocabulary files not found)\n", skipped);
    printf("chat tokens: %d prompts tokenized like llama.cpp\n", checked);
}

int main(void) {
    check_fixture();
    check_detection();
    check_chat_tokens();
    return check_report();
}
