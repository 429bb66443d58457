/* api_openai.h: the OpenAI API's requests and answers over one hybrid device, for
 * `uhlm run --listen` (docs/openai.md). No HTTP here: api_http.c is the transport, and this
 * file's functions take a request body and hand back JSON text or SSE bytes.
 *
 * A request is parsed and validated first (api_request_parse: 400s, with no model time
 * spent), then, while the caller holds the one device model, generated (api_gen_*): the
 * device loop of `uhlm run`, a fresh uhlm_device per request over the contexts and verifier
 * `run` opened, so the same prompt, seed and sampling give `uhlm run`'s text. */
#ifndef UHLM_CLI_API_OPENAI_H
#define UHLM_CLI_API_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include "uhlm/common.h"
#include "uhlm/device.h"
#include "uhlm/model.h"
#include "uhlm/verifier.h"

/* What every request runs on: borrowed from `uhlm run`, alive while the listener is. */
typedef struct api_backend {
    const uhlm_model *slm;
    uhlm_ctx *slm_ctx;
    uhlm_verifier *ver;      /* NULL in slm mode */
    uhlm_ctx *shadow;        /* --shadow's LLM context, or NULL */
    uhlm_device_params dp;   /* the command line's; a request sets n_gen and sampling */
    uint64_t seed;           /* a request without "seed" uses this one */
    int n_ctx;               /* the device's context (SLM and verifier), prompt included */
    const char *server;      /* --server HOST:PORT, or NULL when verifying in process */
    const char *model_name;  /* the SLM file's base name: /v1/models' id */
} api_backend;

typedef enum api_kind { API_CHAT, API_COMPLETIONS } api_kind;

/* The cancel callback's answers (any nonzero stops the device before its next token). */
enum { API_GO = 0, API_CANCEL_SHUTDOWN = 1, API_CANCEL_GONE = 2 };

/* {"error":{"message":...,"type":...,"param":...,"code":...}}, malloc'd; param and code may be
 * NULL (JSON null). NULL when out of memory. */
char *api_error_json(const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef struct api_request api_request;

/* Parses and checks a request body, renders chat messages with the SLM's template and
 * tokenizes the prompt. NULL on a bad request, with *status (400, or 500 when out of memory)
 * and *err_json (malloc'd) set. */
api_request *api_request_parse(const api_backend *b, api_kind kind, const char *body, size_t len,
                               int *status, char **err_json);
int api_request_stream(const api_request *r);
void api_request_free(api_request *r);

typedef struct api_gen api_gen;

/* Starts generating r (owned from here on, also on failure): a device on b's contexts,
 * prefilled. cancel (answering API_GO, API_CANCEL_SHUTDOWN or API_CANCEL_GONE) is polled
 * before each token. serial makes the response id unique. NULL with *status and *err_json. */
api_gen *api_gen_new(const api_backend *b, api_request *r, uhlm_cancel_fn cancel,
                     void *cancel_user, uint64_t serial, int *status, char **err_json);
void api_gen_free(api_gen *g);

/* Non-streaming: generates to the end. Returns the response JSON with *status 200, an error
 * JSON with its status (502 when the verification server failed, 503 when shutting down), or
 * NULL (*status 0) when the client went away. malloc'd. */
char *api_gen_run(api_gen *g, int *status);

/* Streaming, before the response status is sent: makes the first token, so that a failure to
 * start (a verification server that is down under --require-server) is an HTTP error. 0, or
 * -1 with *status and *err_json (NULL *err_json and status 0: the client went away). */
int api_gen_prime(api_gen *g, int *status, char **err_json);
/* Streaming: the next bytes of the event stream (chat.completion.chunk or text_completion
 * events, the final one with finish_reason and the hybrid stats, the usage event when asked,
 * then the DONE event), valid until the next call. 1 with *data and *len set, 0 at the end, -1 when
 * the client went away (or memory ran out): stop sending. */
int api_gen_stream_next(api_gen *g, const char **data, size_t *len);

/* One line for the log: "N tokens, finish_reason F", or how it was cut short ("client gone",
 * "shutting down", "failed with S"). */
void api_gen_describe(const api_gen *g, char *buf, size_t cap);

#endif
