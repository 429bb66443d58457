/* cmd_serve.c: `uhlm serve`, the LLM verification server (uhlm/server.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "uhlm/remote.h"
#include "uhlm/model.h"
#include "uhlm/server.h"
#include "uhlm/wire.h"

/* The self-pipe's write end, for the signal handler: the handler can reach nothing else,
 * and write() is async-signal-safe. Set once before the handlers are installed. */
static volatile sig_atomic_t stop_fd = -1;

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    char b = 1;
    if (stop_fd >= 0) {
        ssize_t r = write(stop_fd, &b, 1);
        (void)r;
    }
    errno = saved;
}

static const cli_command serve_cmd = {
    "serve", NULL,
    "Serves the LLM to devices (`uhlm run --server HOST:PORT`) over the wire protocol\n"
    "of docs/protocol.md: each device session verifies drafts against its own KV cache;\n"
    "requests from different devices that arrive within the batch window share one\n"
    "batched forward. Results are identical to in-process `uhlm run`. The admission and\n"
    "fairness options are described in docs/protocol.md section 5; their defaults suit a\n"
    "deployment.",
    "Logs go to stderr, one key=value line per event; the first is\n"
    "`event=listening ... port=N`. SIGINT/SIGTERM stop the server gracefully: queued\n"
    "requests are answered, devices get ERROR SHUTTING_DOWN, exit status 0.",
    0};

/* Writes --port-file, then serves until SIGINT/SIGTERM (or a fatal error): the exit status. */
static int serve_until_stopped(uhlm_server *s, const char *port_file) {
    uhlm_error err = {{0}};
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%d\n", uhlm_server_port(s)) < 0 || fclose(f) != 0) {
            fprintf(stderr, "uhlm serve: cannot write %s\n", port_file);
            return 1;
        }
    }
    stop_fd = uhlm_server_stop_fd(s);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = uhlm_server_run(s, &err);
    if (rc != 0) fprintf(stderr, "uhlm serve: %s\n", err.msg);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    stop_fd = -1;
    return rc ? 1 : 0;
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve";
    const char *model_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL, *auth_file = NULL,
               *port_file = NULL;
    uhlm_server_params sp = uhlm_server_default_params();
    long port = 7474, stats_port = -1, max_sessions = sp.max_sessions, max_ctx = 0,
         window = sp.batch_window_us, idle_s = sp.idle_timeout_ms / 1000, threads = 0;
    long max_conns = 0, max_pending = 0, per_addr = 0, stats_conns = 0, step_tokens = 0;
    double handshake_s = sp.handshake_timeout_ms / 1000.0,
           request_idle_s = sp.request_idle_timeout_ms / 1000.0;
    int quiet = 0, no_batching = 0, share_prefix = 0;
    const char *tls_cert = NULL, *tls_key = NULL;
    int insecure = 0;
    uhlm_load_mode load = UHLM_LOAD_AUTO;
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &model_arg, .help = "server model (the LLM)"},
        {.id = CLI_TOKENIZER, .dst = &tok_arg,
         .help = "tokenizer for llama2.c models; its fingerprint is what devices must match",
         .def = UHLM_DEFAULT_TOKENIZER " for a llama2.c model"},
        CLI_ARG(CLI_HOST, &sp.host),
        CLI_ARG(CLI_PORT, &port),
        CLI_ARG(CLI_AUTH_TOKEN_FILE, &auth_file),
        CLI_ARG(CLI_MAX_SESSIONS, &max_sessions),
        CLI_ARG(CLI_MAX_CTX, &max_ctx),
        CLI_ARG(CLI_BATCH_WINDOW_US, &window),
        CLI_ARG(CLI_NO_BATCHING, &no_batching),
        CLI_ARG(CLI_IDLE_TIMEOUT, &idle_s),
        {.id = CLI_STATS_PORT, .dst = &stats_port, .def = "none"},
        CLI_ARG(CLI_PORT_FILE, &port_file),
        CLI_ARG(CLI_QUIET, &quiet),
        CLI_ARG(CLI_HANDSHAKE_TIMEOUT, &handshake_s),
        CLI_ARG(CLI_REQUEST_IDLE_TIMEOUT, &request_idle_s),
        CLI_ARG(CLI_MAX_CONNS, &max_conns),
        CLI_ARG(CLI_MAX_PENDING, &max_pending),
        CLI_ARG(CLI_MAX_CONNS_PER_ADDR, &per_addr),
        CLI_ARG(CLI_STATS_MAX_CONNS, &stats_conns),
        CLI_ARG(CLI_STEP_TOKENS, &step_tokens),
        CLI_ARG(CLI_SHARE_PREFIX_CACHE, &share_prefix),
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &sp.simd),
        CLI_ARG(CLI_LOAD, &load),
        CLI_ARG(CLI_TLS_CERT, &tls_cert),
        CLI_ARG(CLI_TLS_KEY, &tls_key),
        CLI_ARG(CLI_INSECURE, &insecure),
    };
    int prc = cli_parse(&serve_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (prc != CLI_CONTINUE) return cli_exit_status(prc);
    if (no_batching) sp.batching = 0;
    if (share_prefix) sp.share_prefix_cache = 1;
    sp.tls_cert = tls_cert;
    sp.tls_key = tls_key;
    sp.insecure = insecure;
    if ((tls_cert != NULL) != (tls_key != NULL)) { /* before the model loads: fail fast */
        fprintf(stderr, "uhlm serve: --%s needs --%s\n", tls_cert ? "tls-cert" : "tls-key",
                tls_cert ? "tls-key" : "tls-cert");
        return 2;
    }
    char token[UHLM_WIRE_MAX_AUTH + 1];
    size_t token_len = 0;
    uhlm_error err = {{0}};
    if (auth_file && uhlm_remote_load_token(auth_file, token, sizeof token, &token_len, &err)) {
        fprintf(stderr, "uhlm serve: --auth-token-file: %s\n", err.msg);
        return 1;
    }
    /* a vocabulary is needed: without it there is no fingerprint to hold devices to */
    uhlm_model *m = cli_load_model(cmd, model_arg, tok_arg, load, NULL);
    if (!m) return 1;
    sp.port = (int)port;
    sp.stats_port = (int)stats_port;
    sp.max_sessions = (int)max_sessions;
    sp.max_ctx = (int)max_ctx;
    sp.batch_window_us = (int)window;
    sp.idle_timeout_ms = (int)(idle_s * 1000 > 2000000000L ? 2000000000L : idle_s * 1000);
    sp.n_threads = (int)threads;
    sp.handshake_timeout_ms = (int)(handshake_s * 1000 + 0.5);
    sp.request_idle_timeout_ms = request_idle_s > 0 ? (int)(request_idle_s * 1000 + 0.5) : -1;
    if (request_idle_s > 0 && sp.request_idle_timeout_ms < 1) sp.request_idle_timeout_ms = 1;
    sp.max_conns = (int)max_conns;
    sp.max_pending = (int)max_pending;
    sp.max_conns_per_addr = (int)per_addr;
    sp.max_stats_conns = (int)stats_conns;
    sp.step_tokens = (int)step_tokens;
    sp.auth = token_len ? (const uint8_t *)token : NULL;
    sp.auth_len = token_len;
    sp.log = quiet ? NULL : uhlm_log_file;
    sp.log_user = stderr;
    uhlm_server *s = uhlm_server_new(m, &sp, &err);
    if (!s) {
        fprintf(stderr, "uhlm serve: %s\n", err.msg);
        uhlm_model_free(m);
        return 1;
    }
    int rc = serve_until_stopped(s, port_file);
    uhlm_server_free(s);
    uhlm_model_free(m);
    return rc;
}
