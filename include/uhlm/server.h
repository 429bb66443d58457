/* server.h: the multi-session LLM verification server (docs/protocol.md, DESIGN §6).
 *
 * One thread runs everything: a poll() event loop over the listening socket, the optional
 * stats socket and every connection, and, between polls, the compute step. There are no
 * locks because nothing is shared between threads; the model's own thread pool (-t) does
 * the parallel arithmetic inside uhlm_decode.
 *
 * Sessions. The server is transport and scheduling in front of a verification engine
 * (engine.h) with max_sessions sessions, the same engine the in-process verifier is: an
 * open session holds one sequence (its KV cache) and its committed context, with the
 * engine's invariant: the cache holds committed[0 .. n-1), so every request is one forward
 * over the pending token plus the catch-up. Sequences never share mutable state, so
 * sessions are isolated; a refused request changes nothing.
 *
 * Cross-device batching. A VERIFY, GENERATE or OPEN that passes validation is queued. The queue is
 * flushed when the batch window (measured from the oldest queued request) has passed, or at
 * once when every open session has a request queued (nobody else can join). A flush is ONE
 * engine flush: one uhlm_decode over the catch-up tokens of every queued request, with
 * logits on each request's last entry; each request is then decided by the engine exactly
 * as in process, with the same draw seeds and positions. Because the forward computes each entry's row
 * independently of the others in the batch, replies are bit-identical to in-process mode.
 * A GENERATE of n_gen > 1 stays queued and takes part in one flush per token. With
 * batching off, every request is its own forward (one step per loop turn).
 *
 * OPEN takes a free session at once, reusing the longest cached prefix of its tenant
 * (Privacy below); the rest of the prompt is prefilled in the queue, with the others (Fair
 * compute below), and OPENED goes out when it is done.
 *
 * Robustness. Frames are bounded before anything is allocated (max_frame); a connection is
 * not read while it has a request queued or a reply unsent, so a client cannot make the
 * server buffer more than one frame and one reply, and at most one of its requests is ever
 * in flight (the lock-step of the protocol, enforced); at most one frame per connection is
 * read per loop turn. Connections that send no complete frame for idle_timeout_ms
 * (including a stalled half frame) get ERROR TIMEOUT and are closed. Protocol errors follow
 * docs/protocol.md §8: fatal ones close the connection after the ERROR frame, the others
 * leave the session as it was.
 *
 * Fair compute. OPEN's prefill is queued and batched like VERIFY. One compute step feeds
 * every queued request at least one token; when their tokens together exceed step_tokens,
 * each gets step_tokens / (requests) of them per step (at least one) plus what its address's
 * burst credit allows (a context's worth, earned back over 10 s), and the rest waits for the
 * next step. So a device that opens or catches up now and then does it at once, while a
 * flood of prompts, from one address or through reconnects, cannot hold up the others. Results are unchanged: the cache entries do not depend
 * on how the tokens were split.
 *
 * Admission. Connections that have not finished HELLO ("pending") have their own budget
 * (max_pending) and must finish within handshake_timeout_ms (or idle_timeout_ms if shorter);
 * when a new one arrives and the budget, or its address's share (max_conns_per_addr), is
 * full, the oldest pending connection of the address holding the most of them is dropped
 * with ERROR BUSY. So silent connections can delay nobody for long, and the max_conns
 * places past HELLO are only reachable through HELLO (with auth on: with the token). A HELLO
 * that finds max_conns taken gets ERROR BUSY (fatal). The stats port has its own budget
 * (max_stats_conns; a new reader replaces the oldest). At the descriptor limit (EMFILE) the
 * server drops the oldest pending connection to make room, or else stops accepting until a
 * connection closes (at most a second), instead of spinning.
 *
 * Privacy. A released session's KV cache stays for reuse by a later OPEN that shares its
 * prefix, but only by the same tenant: with auth on, the holders of the token; without
 * auth, the same peer address (so a device that reconnects still resynchronises cheaply;
 * clients sharing an address, behind one NAT or on one host, need auth to be kept apart).
 * Another tenant's OPEN takes a free cache as if it were empty, so neither OPENED's cost
 * nor its timing says anything about what others sent.
 * share_prefix_cache = 1 makes every client one tenant (single-tenant deployments).
 *
 * Shutdown. uhlm_server_stop (async-signal-safe) makes uhlm_server_run stop accepting,
 * finish every queued request (their replies are sent), send ERROR SHUTTING_DOWN to every
 * connection, flush for at most a second and return 0.
 *
 * TLS. With tls_cert and tls_key, the device port speaks TLS 1.3 only (OpenSSL): every
 * connection begins with a TLS handshake, run by the event loop like the frames (non-blocking:
 * a client that stalls mid-handshake delays nobody) and bounded like HELLO (it counts as
 * pending, within handshake_timeout_ms). A device that speaks the plain protocol to a TLS
 * server gets a plain fatal ERROR BAD_VERSION saying the server speaks TLS only. The stats
 * port stays plain HTTP (for load balancers' health checks). Files that cannot be read or
 * parsed, or a key that does not match the certificate, make uhlm_server_new fail, naming
 * the file.
 *
 * Exposure. A host that is not a loopback address (0.0.0.0, ::, an interface's address) is
 * refused unless the server has both TLS and an auth token, or insecure is set: the error
 * says which of the two is missing and how to override.
 *
 * The auth token is compared in constant time (padded to UHLM_WIRE_MAX_AUTH, compared whole,
 * the lengths alongside).
 *
 * Logs: one line per event to params.log (a uhlm_log_fn, with params.log_user; NULL: silent),
 * `ts=SECONDS.MILLIS event=NAME key=value ...` (ts: wall clock, part of the line); the first is
 * `event=listening ... port=N`, with the port actually bound. uhlm_log_file with a FILE * as
 * log_user writes them one per line (what `uhlm serve` does on stderr). Repeating events
 * are rate-limited per connection and kind (errors, session opens) and globally for the
 * accept path: at most 5 lines a second each; a line after a gap says `suppressed=N`, and
 * a connection's disconnect line `log_suppressed=N`, its total.
 *
 * Stats (STATS message, --stats-port, uhlm_server_stats_text): /metrics-style plain text,
 * metric names prefixed uhlm_server_ and documented in the text's # HELP lines. The stats
 * port serves it as GET /metrics and answers GET /health with 200 until a stop is requested,
 * then 503 until uhlm_server_run returns (docs/protocol.md, "The stats port"). */
#ifndef UHLM_SERVER_H
#define UHLM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_server_params {
    const char *host;        /* bind address (numeric or name); NULL = 127.0.0.1 */
    int port;                /* 0 = chosen by the kernel (see uhlm_server_port) */
    int stats_port;          /* -1 = no stats listener; 0 = kernel-chosen */
    const uint8_t *auth;     /* shared secret; NULL or auth_len 0 = accept any token */
    size_t auth_len;         /* <= UHLM_WIRE_MAX_AUTH */
    int max_sessions;        /* sequences in the LLM context, >= 1 */
    int max_conns;           /* device connections past HELLO; 0 = 2 * max_sessions + 8 */
    int max_ctx;             /* positions per session; 0 = the model's seq_len */
    int batch_window_us;     /* how long a queued request waits for others, >= 0 */
    int batching;            /* 0 = one forward per request (for comparison) */
    int idle_timeout_ms;     /* no complete frame for this long: closed; 0 = none */
    int n_threads;           /* model thread pool; 0 = all CPUs */
    uhlm_log_fn log;         /* structured log lines (common.h); NULL = none */
    void *log_user;          /* passed to log; uhlm_log_file takes a FILE * here */
    /* Admission control (see "Admission" above); 0 = the default in brackets. */
    int handshake_timeout_ms;    /* HELLO must be complete this long after connecting [5000] */
    int request_idle_timeout_ms; /* past HELLO, no OPEN/VERIFY/GENERATE/CLOSE (PING and
                                  * STATS_REQ do not count) for this long: closed, its
                                  * session freed [300000]; -1 = none */
    int max_pending;             /* connections that have not finished HELLO
                                  * [max(16, max_sessions)] */
    int max_conns_per_addr;      /* device connections from one address [max(8, max_sessions)] */
    int max_stats_conns;         /* stats-port connections [4] */
    int step_tokens;             /* tokens one compute step shares among its requests [64] */
    int share_prefix_cache;      /* 1: an OPEN may reuse any client's cached prefix (one
                                  * tenant); 0: only its own tenant's (see "Privacy") */
    uhlm_simd simd;              /* the model context's kernels [UHLM_SIMD_AUTO (0): the best
                                  * the CPU has] */
    /* TLS 1.3 on the device port (see "TLS" above); both NULL: plain TCP. */
    const char *tls_cert;        /* PEM certificate (chain) file; needs tls_key */
    const char *tls_key;         /* PEM private key file matching tls_cert */
    int insecure;                /* 1: allow a non-loopback host without TLS or without auth
                                  * (see "Exposure" above); 0: uhlm_server_new refuses it */
} uhlm_server_params;

/* 127.0.0.1, kernel port, no stats, no auth, 16 sessions, model context, 1000 us window,
 * batching on, 60 s idle timeout, all CPUs, no log, admission defaults, no prefix sharing. */
UHLM_API uhlm_server_params uhlm_server_default_params(void);

typedef struct uhlm_server uhlm_server;

/* Binds and listens (so the ports are known on return). llm is borrowed and must outlive
 * the server; its tokenizer, if attached, gives the fingerprint HELLO is checked against
 * (without one, only the vocabulary size is compared). */
UHLM_API uhlm_server *uhlm_server_new(const uhlm_model *llm, const uhlm_server_params *p,
                             uhlm_error *err);
UHLM_API int uhlm_server_port(const uhlm_server *s);
UHLM_API int uhlm_server_stats_port(const uhlm_server *s); /* -1 without a stats listener */

/* Serves until uhlm_server_stop. 0 after a graceful stop, -1 on a fatal error (poll or the
 * model failing), with err. Call from one thread at a time. */
UHLM_API int uhlm_server_run(uhlm_server *s, uhlm_error *err);

/* Asks a running (or about to run) server to stop. Safe from a signal handler and from any
 * thread: it only write()s one byte to the server's self-pipe. */
UHLM_API void uhlm_server_stop(uhlm_server *s);
/* The write end of that pipe, for a signal handler that cannot reach s: write one byte. */
UHLM_API int uhlm_server_stop_fd(const uhlm_server *s);

/* The stats text, NUL-terminated, truncated to cap. Returns the full length (like
 * snprintf). Only from the thread running the server, or when it is not running. */
UHLM_API size_t uhlm_server_stats_text(const uhlm_server *s, char *buf, size_t cap);

/* Closes every socket and frees everything. s may be NULL. */
UHLM_API void uhlm_server_free(uhlm_server *s);

#ifdef __cplusplus
}
#endif
#endif
