/* cmd_serve.c: `uhlm serve`, the LLM verification server (uhlm/server.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
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

static void help(FILE *f) {
    fprintf(f,
            "usage: uhlm serve [-m LLM] [-z TOKENIZER] [--host H] [--port P]\n"
            "                  [--auth-token-file F] [--max-sessions N] [--max-ctx N]\n"
            "                  [--batch-window-us U] [--no-batching] [--idle-timeout S]\n"
            "                  [--stats-port P] [--port-file F] [-t THREADS] [--quiet]\n"
            "                  [--handshake-timeout S] [--request-idle-timeout S]\n"
            "                  [--max-conns N] [--max-pending N] [--max-conns-per-addr N]\n"
            "                  [--stats-max-conns N] [--step-tokens N] [--share-prefix-cache]\n\n"
            "Serves the LLM to devices (`uhlm run --server HOST:PORT`) over the wire protocol\n"
            "of docs/protocol.md: each device session verifies drafts against its own KV cache;\n"
            "requests from different devices that arrive within the batch window share one\n"
            "batched forward. Results are identical to in-process `uhlm run`.\n\n"
            "  -m LLM               server model (default %s)\n"
            "  -z TOKENIZER         tokenizer for llama2.c models (default %s); its fingerprint\n"
            "                       is what devices must match\n"
            "  --host H             bind address (default 127.0.0.1; 0.0.0.0 for all)\n"
            "  --port P             TCP port (default 7474; 0 = any free port)\n"
            "  --auth-token-file F  shared secret devices must present (first line of F)\n"
            "  --max-sessions N     sessions (KV caches) at once (default 16)\n"
            "  --max-ctx N          positions per session (default: the model's context)\n"
            "  --batch-window-us U  how long a request waits for others to batch with\n"
            "                       (default 1000)\n"
            "  --no-batching        one forward per request (for comparison)\n"
            "  --idle-timeout S     drop connections silent for S seconds, 0 = never (default 60)\n"
            "  --stats-port P       plain-text /metrics over HTTP on this port (0 = any)\n"
            "  --port-file F        write the bound port to F once listening (for scripts)\n"
            "  -t THREADS           model threads (default: all CPUs)\n"
            "  --quiet              no log lines\n\n"
            "Admission and fairness (docs/protocol.md §5; the defaults suit a deployment):\n"
            "  --handshake-timeout S     HELLO must be complete S seconds after connecting\n"
            "                            (default 5)\n"
            "  --request-idle-timeout S  close connections that send no OPEN, VERIFY, GENERATE\n"
            "                            or CLOSE for S seconds (PINGs do not count), freeing\n"
            "                            their session; 0 = never (default 300)\n"
            "  --max-conns N             connections past HELLO (default 2 x sessions + 8)\n"
            "  --max-pending N           connections still before HELLO; when full, a newcomer\n"
            "                            replaces the oldest of the address holding the most\n"
            "                            (default: max-sessions, at least 16)\n"
            "  --max-conns-per-addr N    connections from one address (default: max-sessions,\n"
            "                            at least 8)\n"
            "  --stats-max-conns N       stats-port connections (default 4)\n"
            "  --step-tokens N           tokens one compute step shares among the queued\n"
            "                            requests; a long prompt or catch-up takes its share per\n"
            "                            step beyond its address's burst credit (a context per\n"
            "                            10 s), so it cannot stall the others (default 64)\n"
            "  --share-prefix-cache      let any device's OPEN reuse the KV cache another device\n"
            "                            left (single-tenant deployments only: OPENED's cost and\n"
            "                            timing then tell a client how much of its prompt others\n"
            "                            sent). Default: reuse within one tenant only, i.e. the\n"
            "                            same auth token, or without auth the same address\n\n"
            "Logs go to stderr, one key=value line per event; the first is\n"
            "`event=listening ... port=N`. SIGINT/SIGTERM stop the server gracefully: queued\n"
            "requests are answered, devices get ERROR SHUTTING_DOWN, exit status 0.\n",
            UHLM_DEFAULT_LLM, UHLM_DEFAULT_TOKENIZER);
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
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--no-batching")) {
            sp.batching = 0;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--share-prefix-cache")) {
            sp.share_prefix_cache = 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "-z") || !strcmp(a, "--host") ||
                   !strcmp(a, "--port") || !strcmp(a, "--auth-token-file") ||
                   !strcmp(a, "--max-sessions") || !strcmp(a, "--max-ctx") ||
                   !strcmp(a, "--batch-window-us") || !strcmp(a, "--idle-timeout") ||
                   !strcmp(a, "--stats-port") || !strcmp(a, "--port-file") || !strcmp(a, "-t") ||
                   !strcmp(a, "--handshake-timeout") || !strcmp(a, "--request-idle-timeout") ||
                   !strcmp(a, "--max-conns") || !strcmp(a, "--max-pending") ||
                   !strcmp(a, "--max-conns-per-addr") || !strcmp(a, "--stats-max-conns") ||
                   !strcmp(a, "--step-tokens")) {
            if (!(v = cli_need_arg(cmd, argc, argv, &i))) return 2;
            int bad = 0;
            if (!strcmp(a, "-m")) model_arg = v;
            else if (!strcmp(a, "-z")) tok_arg = v;
            else if (!strcmp(a, "--host")) sp.host = v;
            else if (!strcmp(a, "--auth-token-file")) auth_file = v;
            else if (!strcmp(a, "--port-file")) port_file = v;
            else if (!strcmp(a, "--port")) bad = cli_parse_int(cmd, a, v, 0, 65535, &port);
            else if (!strcmp(a, "--stats-port")) bad = cli_parse_int(cmd, a, v, 0, 65535, &stats_port);
            else if (!strcmp(a, "--max-sessions")) bad = cli_parse_int(cmd, a, v, 1, 4096, &max_sessions);
            else if (!strcmp(a, "--max-ctx")) bad = cli_parse_int(cmd, a, v, 1, 1 << 24, &max_ctx);
            else if (!strcmp(a, "--batch-window-us")) bad = cli_parse_int(cmd, a, v, 0, 10000000, &window);
            else if (!strcmp(a, "--idle-timeout")) bad = cli_parse_int(cmd, a, v, 0, 2000000, &idle_s);
            else if (!strcmp(a, "--handshake-timeout")) bad = cli_parse_float(cmd, a, v, 0.001, 3600, &handshake_s);
            else if (!strcmp(a, "--request-idle-timeout")) bad = cli_parse_float(cmd, a, v, 0, 2000000, &request_idle_s);
            else if (!strcmp(a, "--max-conns")) bad = cli_parse_int(cmd, a, v, 1, 65536, &max_conns);
            else if (!strcmp(a, "--max-pending")) bad = cli_parse_int(cmd, a, v, 1, 65536, &max_pending);
            else if (!strcmp(a, "--max-conns-per-addr")) bad = cli_parse_int(cmd, a, v, 1, 65536, &per_addr);
            else if (!strcmp(a, "--stats-max-conns")) bad = cli_parse_int(cmd, a, v, 1, 1024, &stats_conns);
            else if (!strcmp(a, "--step-tokens")) bad = cli_parse_int(cmd, a, v, 1, 1 << 20, &step_tokens);
            else bad = cli_parse_int(cmd, a, v, 0, 1024, &threads);
            if (bad) return 2;
        } else {
            fprintf(stderr, "uhlm serve: unknown option '%s' (see 'uhlm serve --help')\n", a);
            return 2;
        }
    }
    char token[UHLM_WIRE_MAX_AUTH + 1];
    size_t token_len = 0;
    uhlm_error err = {{0}};
    if (auth_file && uhlm_remote_load_token(auth_file, token, sizeof token, &token_len, &err)) {
        fprintf(stderr, "uhlm serve: --auth-token-file: %s\n", err.msg);
        return 1;
    }
    /* a vocabulary is needed: without it there is no fingerprint to hold devices to */
    uhlm_model *m = cli_load_model(cmd, model_arg, tok_arg, NULL);
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
    sp.log = quiet ? NULL : stderr;
    uhlm_server *s = uhlm_server_new(m, &sp, &err);
    if (!s) {
        fprintf(stderr, "uhlm serve: %s\n", err.msg);
        uhlm_model_free(m);
        return 1;
    }
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%d\n", uhlm_server_port(s)) < 0 || fclose(f) != 0) {
            fprintf(stderr, "uhlm serve: cannot write %s\n", port_file);
            uhlm_server_free(s);
            uhlm_model_free(m);
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
    uhlm_server_free(s);
    uhlm_model_free(m);
    return rc ? 1 : 0;
}
