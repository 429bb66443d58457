/* api_http.h: the HTTP front end of `uhlm run --listen` (docs/openai.md), on GNU
 * libmicrohttpd. It lives in the `uhlm` executable only: libuhlm does not depend on it.
 *
 * Routes: POST /v1/chat/completions and /v1/completions (api_openai.h), GET /v1/models and
 * /health. One device model, so one request generates at a time; up to max_queue more wait
 * for it, beyond that 503. SIGINT or SIGTERM stop the listener: waiting requests get 503,
 * the one generating is cut before its next token, and the call returns 0. */
#ifndef UHLM_CLI_API_HTTP_H
#define UHLM_CLI_API_HTTP_H

#include "cli/api_openai.h"

/* Request bodies above this are refused with 413. */
#define API_MAX_BODY (1u << 20)

/* Blocks SIGINT, SIGTERM and SIGPIPE in the calling thread and every thread it starts from
 * then on (they stay blocked): call it before the models' thread pools start, so that
 * api_serve's sigwait, and no thread's default action, takes the stop signal. */
void api_block_signals(void);

/* Serves b on listen ("[HOST:]PORT", "[V6ADDR]:PORT"; host 127.0.0.1 by default; port 0 takes
 * any free port) until SIGINT or SIGTERM. Writes the bound port to port_file (when not NULL)
 * once listening. Returns the exit status: 0 after a signal, 2 for a bad address, 1 when the
 * listener cannot start (after "uhlm run: ..." on stderr). The signals stay blocked. */
int api_serve(const api_backend *b, const char *listen, const char *port_file, int max_queue);

#endif
