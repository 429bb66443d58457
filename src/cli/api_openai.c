/* api_openai.c: see api_openai.h. Field mapping and limits: docs/openai.md. */
#include "cli/api_openai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_report.h"
#include "uhlm/chat.h"
#include "uhlm/tokenizer.h"

/* OpenAI takes at most four stop sequences */
#define API_MAX_STOP 4
#define API_MAX_TOKENS (1 << 24)


struct api_request {
    api_kind kind;
    int stream, include_usage;
    char *model; /* echoed; the SLM's name when the request names none */
    int *ids;
    int n_ids;
    long max_tokens; /* 0: the command line's -n */
    double temperature, top_p;
    long top_k;
    uint64_t seed;
    char *stop[API_MAX_STOP];
    int n_stop;
};

void api_request_free(api_request *r) {
    if (!r) return;
    free(r->model);
    free(r->ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r);
}

int api_request_stream(const api_request *r) { return r->stream; }

static char *error_vjson(const char *type, const char *param, const char *code, const char *fmt,
                         va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    if (!e) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *api_error_json(const char *type, const char *param, const char *code, const char *fmt,
                     ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = error_vjson(type, param, code, fmt, ap);
    va_end(ap);
    return s;
}

/* Sets a 400 invalid_request_error naming param; returns NULL for the caller to pass on. */
static void *bad_request(int *status, char **err_json, const char *param, const char *code,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void *bad_request(int *status, char **err_json, const char *param, const char *code,
                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    *err_json = error_vjson("invalid_request_error", param, code, fmt, ap);
    va_end(ap);
    *status = *err_json ? 400 : 500;
    return NULL;
}

/* A field that is absent or JSON null is not given (as OpenAI treats null). */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

/* A number field in [lo, hi]: 1 given, 0 absent, -1 after the 400. */
static int get_number(const cJSON *o, const char *name, double lo, double hi, double *out,
                      int *status, char **err_json) {
    const cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) || f->valuedouble < lo ||
        f->valuedouble > hi) {
        bad_request(status, err_json, name, "invalid_value", "'%s' must be a number in [%g, %g]",
                    name, lo, hi);
        return -1;
    }
    *out = f->valuedouble;
    return 1;
}

static int get_int(const cJSON *o, const char *name, double lo, double hi, double *out,
                   int *status, char **err_json) {
    const cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || f->valuedouble < lo ||
        f->valuedouble > hi) {
        bad_request(status, err_json, name, "invalid_value",
                    "'%s' must be an integer in [%.0f, %.0f]", name, lo, hi);
        return -1;
    }
    *out = f->valuedouble;
    return 1;
}

static int get_bool(const cJSON *o, const char *name, int *out, int *status, char **err_json) {
    const cJSON *f = field(o, name);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) {
        bad_request(status, err_json, name, "invalid_type", "'%s' must be true or false", name);
        return -1;
    }
    *out = cJSON_IsTrue(f);
    return 1;
}

/* "stop": a string or a list of up to four; empty strings stop nothing and are dropped. */
static int get_stop(const cJSON *o, api_request *r, int *status, char **err_json) {
    const cJSON *f = field(o, "stop");
    if (!f) return 0;
    if (cJSON_IsString(f)) {
        if (!f->valuestring[0]) return 0;
        if (!(r->stop[0] = strdup(f->valuestring))) goto oom;
        r->n_stop = 1;
        return 0;
    }
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) > API_MAX_STOP) {
        bad_request(status, err_json, "stop", "invalid_type",
                    "'stop' must be a string or a list of at most %d strings", API_MAX_STOP);
        return -1;
    }
    const cJSON *s;
    cJSON_ArrayForEach(s, f) {
        if (!cJSON_IsString(s)) {
            bad_request(status, err_json, "stop", "invalid_type",
                        "'stop' must be a string or a list of at most %d strings", API_MAX_STOP);
            return -1;
        }
        if (!s->valuestring[0]) continue;
        if (!(r->stop[r->n_stop] = strdup(s->valuestring))) goto oom;
        r->n_stop++;
    }
    return 0;
oom:
    *status = 500;
    *err_json = api_error_json("server_error", NULL, NULL, "out of memory");
    return -1;
}

/* A message's text: a string, or a list of {"type": "text", "text": ...} parts joined. */
static char *message_text(const cJSON *c, int i, int *status, char **err_json) {
    if (!c) return strdup("");
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c))
        return bad_request(status, err_json, "messages", "invalid_type",
                           "messages[%d].content must be a string or a list of text parts", i);
    cli_text b;
    if (cli_text_init(&b, 0) != 0) return NULL;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
            !cJSON_IsString(text)) {
            cli_text_free(&b);
            return bad_request(status, err_json, "messages", "invalid_type",
                               "messages[%d].content: only {\"type\": \"text\", \"text\": ...} "
                               "parts are supported",
                               i);
        }
        if (cli_text_add(&b, text->valuestring, strlen(text->valuestring)) != 0) {
            cli_text_free(&b);
            return NULL;
        }
    }
    return b.buf;
}

/* The chat messages rendered with the SLM's template: malloc'd text, or NULL after the error. */
static char *render_chat(const api_backend *b, const cJSON *root, int *status, char **err_json) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) < 1)
        return bad_request(status, err_json, "messages", "invalid_type",
                           "'messages' must be a non-empty list of {\"role\", \"content\"}");
    uhlm_chat_template t = uhlm_chat_model_template(b->slm);
    if (!uhlm_chat_supported(t.kind))
        return bad_request(status, err_json, "messages", "no_chat_template",
                           t.kind == UHLM_CHAT_NONE
                               ? "model %s has no chat template (GGUF tokenizer.chat_template): "
                                 "use /v1/completions with a plain prompt"
                               : "model %s has a chat template of kind '%s', which is not "
                                 "supported (chatml, llama2, llama3, zephyr): use "
                                 "/v1/completions with a plain prompt",
                           b->model_name, t.name);
    int n = cJSON_GetArraySize(msgs);
    uhlm_chat_msg *m = calloc((size_t)n, sizeof *m);
    char **texts = calloc((size_t)n, sizeof *texts);
    char *out = NULL;
    if (!m || !texts) goto oom;
    for (int i = 0; i < n; i++) {
        const cJSON *msg = cJSON_GetArrayItem(msgs, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) {
            bad_request(status, err_json, "messages", "invalid_type",
                        "messages[%d] must be an object with a string 'role'", i);
            goto done;
        }
        const char *rn = role->valuestring;
        /* "developer" is OpenAI's newer name for the system role */
        if (!strcmp(rn, "developer")) rn = "system";
        if (strcmp(rn, "system") && strcmp(rn, "user") && strcmp(rn, "assistant")) {
            bad_request(status, err_json, "messages", "invalid_value",
                        "messages[%d].role '%.64s' is not supported (system, developer, user, "
                        "assistant)",
                        i, role->valuestring);
            goto done;
        }
        *status = 0;
        texts[i] = message_text(field(msg, "content"), i, status, err_json);
        if (!texts[i]) {
            if (*status) goto done;
            goto oom;
        }
        m[i] = (uhlm_chat_msg){rn, texts[i]};
    }
    uhlm_error err = {{0}};
    if (!(out = uhlm_chat_render(t.kind, m, n, 1, &err))) {
        *status = 500;
        *err_json = api_error_json("server_error", NULL, NULL, "%s", err.msg);
    }
    goto done;
oom:
    *status = 500;
    *err_json = api_error_json("server_error", NULL, NULL, "out of memory");
done:
    for (int i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
    free(m);
    return out;
}

/* Tokenizes the prompt into r->ids: chat text with special tokens parsed, as `run --chat`;
 * plain text as `run -p`. */
static int tokenize(const api_backend *b, api_request *r, const char *text, int chat,
                    int *status, char **err_json) {
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(b->slm);
    uhlm_error err = {{0}};
    if (!(r->ids = malloc(sizeof(int) * ((size_t)b->n_ctx + 1)))) {
        *status = 500;
        *err_json = api_error_json("server_error", NULL, NULL, "out of memory");
        return -1;
    }
    int np = uhlm_tokenize_special(tok, text, strlen(text), uhlm_tokenizer_add_bos(tok), 0, chat,
                                   r->ids, b->n_ctx + 1, &err);
    if (np < 0) {
        bad_request(status, err_json, chat ? "messages" : "prompt", NULL, "%s", err.msg);
        return -1;
    }
    if (np >= b->n_ctx) {
        bad_request(status, err_json, chat ? "messages" : "prompt", "context_length_exceeded",
                    "the prompt is %d tokens; the context holds %d, one of them for the answer",
                    np, b->n_ctx);
        return -1;
    }
    if (np == 0) {
        bad_request(status, err_json, "prompt", "invalid_value",
                    "the prompt is empty and the vocabulary adds no BOS: nothing to continue");
        return -1;
    }
    r->n_ids = np;
    return 0;
}

api_request *api_request_parse(const api_backend *b, api_kind kind, const char *body, size_t len,
                               int *status, char **err_json) {
    *status = 0;
    *err_json = NULL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) return bad_request(status, err_json, NULL, "invalid_json",
                                  "the request body is not valid JSON");
    api_request *r = calloc(1, sizeof *r);
    char *text = NULL;
    if (!r) {
        *status = 500;
        *err_json = api_error_json("server_error", NULL, NULL, "out of memory");
        goto fail;
    }
    r->kind = kind;
    r->temperature = b->dp.sampling.temp;
    r->top_p = b->dp.sampling.top_p;
    r->top_k = b->dp.sampling.top_k;
    r->seed = b->seed;
    if (!cJSON_IsObject(root)) {
        bad_request(status, err_json, NULL, "invalid_json", "the request body must be a JSON object");
        goto fail;
    }
    const cJSON *model = field(root, "model");
    if (model && !cJSON_IsString(model)) {
        bad_request(status, err_json, "model", "invalid_type", "'model' must be a string");
        goto fail;
    }
    if (!(r->model = strdup(model ? model->valuestring : b->model_name))) goto oom;
    double v;
    int rc;
    if ((rc = get_int(root, "n", 1, 1e9, &v, status, err_json)) < 0) goto fail;
    if (rc && v != 1) {
        bad_request(status, err_json, "n", "invalid_value",
                    "'n' must be 1: one device model gives one choice per request");
        goto fail;
    }
    /* max_completion_tokens is the chat API's newer name; it wins over max_tokens */
    if ((rc = get_int(root, "max_tokens", 1, API_MAX_TOKENS, &v, status, err_json)) < 0) goto fail;
    if (rc) r->max_tokens = (long)v;
    if ((rc = get_int(root, "max_completion_tokens", 1, API_MAX_TOKENS, &v, status, err_json)) < 0)
        goto fail;
    if (rc) r->max_tokens = (long)v;
    if ((rc = get_number(root, "temperature", 0, 2, &v, status, err_json)) < 0) goto fail;
    if (rc) r->temperature = v;
    if ((rc = get_number(root, "top_p", 1e-9, 1, &v, status, err_json)) < 0) goto fail;
    if (rc) r->top_p = v;
    if ((rc = get_int(root, "top_k", 0, API_MAX_TOKENS, &v, status, err_json)) < 0) goto fail;
    if (rc) r->top_k = (long)v;
    /* integers a double holds exactly: JSON numbers reach cJSON as doubles */
    if ((rc = get_int(root, "seed", 0, 9007199254740992.0, &v, status, err_json)) < 0) goto fail;
    if (rc) r->seed = (uint64_t)v;
    if (get_bool(root, "stream", &r->stream, status, err_json) < 0) goto fail;
    const cJSON *so = field(root, "stream_options");
    if (so && !cJSON_IsObject(so)) {
        bad_request(status, err_json, "stream_options", "invalid_type",
                    "'stream_options' must be an object");
        goto fail;
    }
    if (so && get_bool(so, "include_usage", &r->include_usage, status, err_json) < 0) goto fail;
    if (get_stop(root, r, status, err_json) < 0) goto fail;

    if (kind == API_CHAT) {
        if (!(text = render_chat(b, root, status, err_json))) goto fail;
    } else {
        /* a string, or a list of one string (the list form asks for one choice per prompt) */
        const cJSON *p = field(root, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
            cJSON_IsString(cJSON_GetArrayItem(p, 0)))
            p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p)) {
            bad_request(status, err_json, "prompt", "invalid_type",
                        "'prompt' must be a string (or a list of one string)");
            goto fail;
        }
        if (!(text = strdup(p->valuestring))) goto oom;
    }
    if (tokenize(b, r, text, kind == API_CHAT, status, err_json) != 0) goto fail;
    free(text);
    cJSON_Delete(root);
    return r;
oom:
    *status = 500;
    *err_json = api_error_json("server_error", NULL, NULL, "out of memory");
fail:
    free(text);
    api_request_free(r);
    cJSON_Delete(root);
    return NULL;
}

/* ---- generation ---- */

typedef enum { S_ROLE, S_GEN, S_FINAL, S_USAGE, S_DONE, S_END } stream_state;

struct api_gen {
    const api_backend *b;
    api_request *r;
    uhlm_device *dev;
    uhlm_cancel_fn cancel;
    void *cancel_user;
    uhlm_detok dt;
    char *piece;
    size_t maxp;
    cli_text text;       /* the answer so far (cut at a stop sequence) */
    size_t emitted;      /* bytes of text already streamed */
    size_t stop_checked; /* text before this offset holds no stop sequence */
    int done;
    const char *finish;  /* "stop" or "length" once done */
    int failed;          /* an error or a cancel ended it: fail_status and fail_json say */
    int fail_status;
    char *fail_json;
    char id[64];
    long created;
    stream_state ss;
    cli_text out;        /* the stream's current event */
};

void api_gen_free(api_gen *g) {
    if (!g) return;
    uhlm_device_free(g->dev);
    api_request_free(g->r);
    free(g->piece);
    cli_text_free(&g->text);
    cli_text_free(&g->out);
    free(g->fail_json);
    free(g);
}

api_gen *api_gen_new(const api_backend *b, api_request *r, uhlm_cancel_fn cancel,
                     void *cancel_user, uint64_t serial, int *status, char **err_json) {
    uhlm_error err = {{0}};
    *status = 500;
    *err_json = NULL;
    api_gen *g = calloc(1, sizeof *g);
    if (!g) {
        api_request_free(r);
        *err_json = api_error_json("server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    g->b = b;
    g->r = r;
    g->cancel = cancel;
    g->cancel_user = cancel_user;
    g->created = (long)time(NULL);
    snprintf(g->id, sizeof g->id, "%s-uhlm%lx%06llx", r->kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long)g->created, (unsigned long long)serial);
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(b->slm);
    g->maxp = (size_t)uhlm_tokenizer_max_piece_len(tok) + 16;
    if (!(g->piece = malloc(g->maxp)) || cli_text_init(&g->text, 0) != 0 ||
        cli_text_init(&g->out, 0) != 0) {
        *err_json = api_error_json("server_error", NULL, NULL, "out of memory");
        goto fail;
    }
    uhlm_device_params dp = b->dp;
    if (r->max_tokens) dp.n_gen = (int)r->max_tokens;
    dp.sampling = (uhlm_sampling){(float)r->temperature, (int)r->top_k, (float)r->top_p};
    if (!(g->dev = uhlm_device_new(b->slm_ctx, 0, b->ver, b->shadow, &dp, &err)) ||
        uhlm_device_start(g->dev, r->ids, r->n_ids, r->seed, &err) != 0) {
        *err_json = api_error_json("server_error", NULL, NULL, "%s", err.msg);
        goto fail;
    }
    uhlm_device_set_cancel(g->dev, cancel, cancel_user);
    /* the prompt goes through the detokenizer as in `uhlm run`, so the first piece of the
     * answer decodes the same (SentencePiece drops the leading space only after BOS) */
    uhlm_detok_init(&g->dt, tok);
    for (int i = 0; i < r->n_ids; i++) uhlm_detok_push(&g->dt, r->ids[i], g->piece, g->maxp);
    *status = 200;
    return g;
fail:
    api_gen_free(g);
    return NULL;
}

/* Cuts the text at the first stop sequence, if one has appeared: then the answer is done. */
static void check_stop(api_gen *g) {
    const api_request *r = g->r;
    size_t best = (size_t)-1;
    for (int i = 0; i < r->n_stop; i++) {
        size_t n = strlen(r->stop[i]);
        size_t from = g->stop_checked >= n ? g->stop_checked - n + 1 : 0;
        for (size_t p = from; p + n <= g->text.len; p++)
            if (!memcmp(g->text.buf + p, r->stop[i], n)) {
                if (p < best) best = p;
                break;
            }
    }
    g->stop_checked = g->text.len;
    if (best == (size_t)-1) return;
    g->text.len = best;
    g->text.buf[best] = '\0';
    g->done = 1;
    g->finish = "stop";
    /* closes the verifier session now rather than at the response's end */
    uhlm_device_finish(g->dev);
}

static void fail(api_gen *g, int status, char *json) {
    g->failed = 1;
    g->fail_status = json ? status : 0;
    free(g->fail_json);
    g->fail_json = json;
}

/* One token. 1 a token (the text may have grown), 0 done, -1 failed (or cancelled). */
static int gen_step(api_gen *g) {
    if (g->failed) return -1;
    if (g->done) return 0;
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(g->b->slm);
    uhlm_error err = {{0}};
    int t;
    int r = uhlm_device_step(g->dev, &t, &err);
    if (r == 1) {
        if (uhlm_tokenizer_is_eog(tok, t)) return 1;
        size_t k = uhlm_detok_push(&g->dt, t, g->piece, g->maxp);
        if (cli_text_add(&g->text, g->piece, k) != 0) {
            fail(g, 500, api_error_json("server_error", NULL, NULL, "out of memory"));
            return -1;
        }
        check_stop(g);
        return 1;
    }
    if (r == 0) {
        size_t k = uhlm_detok_flush(&g->dt, g->piece, g->maxp);
        if (cli_text_add(&g->text, g->piece, k) != 0) {
            fail(g, 500, api_error_json("server_error", NULL, NULL, "out of memory"));
            return -1;
        }
        check_stop(g);
        if (!g->done) {
            const char *why = uhlm_device_get_stats(g->dev)->stop;
            g->finish = why && !strcmp(why, "eos") ? "stop" : "length";
            g->done = 1;
        }
        return 0;
    }
    if (r == UHLM_CANCELLED) {
        if (g->cancel(g->cancel_user) == API_CANCEL_GONE)
            fail(g, 0, NULL);
        else
            fail(g, 503, api_error_json("server_error", NULL, "shutting_down",
                                        "the server is shutting down; the answer was cut after "
                                        "%d tokens",
                                        uhlm_device_get_stats(g->dev)->generated));
        return -1;
    }
    /* with a server, what fails mid-run is the link to it: --require-server (or llm mode)
     * refuses to go on with the SLM alone */
    if (g->b->server)
        fail(g, 502, api_error_json("server_error", NULL, "verifier_unavailable",
                                    "verification server %s: %s", g->b->server, err.msg));
    else
        fail(g, 500, api_error_json("server_error", NULL, NULL, "%s", err.msg));
    return -1;
}

/* The hybrid statistics: the report `uhlm run --json` prints (cli_report.h), the same keys. */
static cJSON *hybrid_json(const api_gen *g) {
    uhlm_device_report rep;
    uhlm_device_get_report(g->dev, &rep);
    cJSON *o = cli_device_report_json(&rep);
    if (!o) return NULL;
    /* a stop sequence ends the answer before the device stops on its own */
    if (!rep.stats.stop) cJSON_ReplaceItemInObject(o, "stop", cJSON_CreateString("stop_sequence"));
    if (g->b->server) cJSON_AddStringToObject(o, "server", g->b->server);
    return o;
}

static cJSON *usage_json(const api_gen *g) {
    const uhlm_device_stats *s = uhlm_device_get_stats(g->dev);
    cJSON *u = cJSON_CreateObject();
    if (!u) return NULL;
    cJSON_AddNumberToObject(u, "prompt_tokens", s->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", s->generated);
    cJSON_AddNumberToObject(u, "total_tokens", s->prompt_tokens + s->generated);
    cJSON *h = hybrid_json(g);
    if (h) cJSON_AddItemToObject(u, "uhlm", h);
    return u;
}

/* The envelope every response and event shares. */
static cJSON *envelope(const api_gen *g, const char *object) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", g->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)g->created);
    cJSON_AddStringToObject(o, "model", g->r->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "uhlm");
    return o;
}

char *api_gen_run(api_gen *g, int *status) {
    int r;
    while ((r = gen_step(g)) == 1) {
    }
    if (r < 0) {
        *status = g->fail_status;
        char *j = g->fail_json;
        g->fail_json = NULL;
        return j;
    }
    int chat = g->r->kind == API_CHAT;
    cJSON *o = envelope(g, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    if (c && cJSON_AddItemToArray(choices, c)) {
        cJSON_AddNumberToObject(c, "index", 0);
        if (chat) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", g->text.buf);
        } else {
            cJSON_AddStringToObject(c, "text", g->text.buf);
        }
        cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", g->finish);
    }
    cJSON *u = usage_json(g);
    if (u) cJSON_AddItemToObject(o, "usage", u);
    char *s = u && c ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    *status = s ? 200 : 500;
    return s ? s : api_error_json("server_error", NULL, NULL, "out of memory");
}

int api_gen_prime(api_gen *g, int *status, char **err_json) {
    if (gen_step(g) >= 0) return 0;
    *status = g->fail_status;
    *err_json = g->fail_json;
    g->fail_json = NULL;
    return -1;
}

/* The longest tail of the text that could begin a stop sequence: not streamed yet. */
static size_t held_back(const api_gen *g) {
    size_t hold = 0;
    for (int i = 0; i < g->r->n_stop && !g->done; i++) {
        size_t n = strlen(g->r->stop[i]);
        for (size_t k = n - 1 < g->text.len ? n - 1 : g->text.len; k > hold; k--)
            if (!memcmp(g->text.buf + g->text.len - k, g->r->stop[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Puts "data: JSON\n\n" for o (deleted) into g->out. */
static int event(api_gen *g, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    g->out.len = 0;
    int rc = !s || cli_text_add(&g->out, "data: ", 6) || cli_text_add(&g->out, s, strlen(s)) ||
             cli_text_add(&g->out, "\n\n", 2);
    free(s);
    return rc ? -1 : 0;
}

/* One event with one choice: a delta (content may be NULL: role only, or empty for the
 * final event), and finish_reason when finish is set. */
static cJSON *chunk(const api_gen *g, const char *content, size_t len, int role,
                    const char *finish) {
    int chat = g->r->kind == API_CHAT;
    cJSON *o = envelope(g, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    if (!c || !cJSON_AddItemToArray(choices, c)) {
        cJSON_Delete(c);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddNumberToObject(c, "index", 0);
    char *text = malloc(len + 1);
    if (!text) {
        cJSON_Delete(o);
        return NULL;
    }
    if (len) memcpy(text, content, len);
    text[len] = '\0';
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (content) cJSON_AddStringToObject(d, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text);
    }
    free(text);
    cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    return o;
}

static int error_event(api_gen *g) {
    g->out.len = 0;
    const char *j = g->fail_json ? g->fail_json : "{\"error\":{\"message\":\"failed\"}}";
    return cli_text_add(&g->out, "data: ", 6) || cli_text_add(&g->out, j, strlen(j)) ||
                   cli_text_add(&g->out, "\n\n", 2)
               ? -1
               : 0;
}

int api_gen_stream_next(api_gen *g, const char **data, size_t *len) {
    for (;;) {
        int rc = 0;
        switch (g->ss) {
        case S_ROLE:
            g->ss = S_GEN;
            if (g->r->kind != API_CHAT) continue;
            rc = event(g, chunk(g, "", 0, 1, NULL));
            break;
        case S_GEN: {
            size_t safe = g->text.len - held_back(g);
            if (safe > g->emitted) {
                rc = event(g, chunk(g, g->text.buf + g->emitted, safe - g->emitted, 0, NULL));
                g->emitted = safe;
                break;
            }
            if (g->done) {
                g->ss = S_FINAL;
                continue;
            }
            if (gen_step(g) < 0) {
                /* an error or a shutdown is told in the stream; a client that left hears
                 * nothing more */
                if (!g->fail_json) return -1;
                g->ss = S_DONE;
                rc = error_event(g);
                break;
            }
            continue;
        }
        case S_FINAL: {
            g->ss = g->r->include_usage ? S_USAGE : S_DONE;
            cJSON *o = chunk(g, NULL, 0, 0, g->finish);
            cJSON *h = o ? hybrid_json(g) : NULL;
            if (h) cJSON_AddItemToObject(o, "uhlm", h);
            rc = event(g, h ? o : NULL);
            if (!h) cJSON_Delete(o);
            break;
        }
        case S_USAGE: {
            g->ss = S_DONE;
            int chat = g->r->kind == API_CHAT;
            cJSON *o = envelope(g, chat ? "chat.completion.chunk" : "text_completion");
            cJSON *u = o && cJSON_AddArrayToObject(o, "choices") ? usage_json(g) : NULL;
            if (u) cJSON_AddItemToObject(o, "usage", u);
            rc = event(g, u ? o : NULL);
            if (!u) cJSON_Delete(o);
            break;
        }
        case S_DONE:
            g->ss = S_END;
            g->out.len = 0;
            rc = cli_text_add(&g->out, "data: [DONE]\n\n", 14);
            break;
        case S_END:
            return 0;
        }
        if (rc != 0) return -1;
        *data = g->out.buf;
        *len = g->out.len;
        return 1;
    }
}

void api_gen_describe(const api_gen *g, char *buf, size_t cap) {
    int n = uhlm_device_get_stats(g->dev)->generated;
    if (g->failed)
        snprintf(buf, cap, "cut after %d tokens: %s", n,
                 !g->fail_status          ? "client gone"
                 : g->fail_status == 503 ? "shutting down"
                                         : "failed");
    else if (g->done)
        snprintf(buf, cap, "%d tokens, finish_reason %s", n, g->finish);
    else
        snprintf(buf, cap, "cut after %d tokens: client gone", n);
}
