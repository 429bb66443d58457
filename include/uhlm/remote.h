/* remote.h: the verifier interface (verifier.h) over TCP, speaking the wire protocol
 * (docs/protocol.md) to `uhlm serve`. The device loop cannot tell it from the in-process
 * verifier: with the same seed a remote run produces the same tokens (protocol §6).
 *
 * Connection life cycle. The first call that needs the server (normally info(), from
 * uhlm_device_new) connects, sends HELLO with the device's vocabulary fingerprint and the auth
 * token, and reads WELCOME's limits. open() sends OPEN; verify() and generate() send VERIFY
 * and GENERATE with pos = the committed length; close() sends CLOSE and keeps the connection
 * for the next session. Every reply must arrive within the read timeout; a connection whose
 * reply was late is closed and never reused, because a late VERDICT would commit a token the
 * device did not use (protocol §5).
 *
 * Fallback and resynchronisation (protocol §10). The verifier keeps its own copy of the
 * committed context (the prompt, every catch-up list and every token the server decided).
 * When the server cannot be reached (connect failure, refused or reset connection, EOF, read
 * timeout, a fatal ERROR, DESYNC, BUSY, NOT_OPEN, a non-fatal INTERNAL), an outage begins. A
 * request that fails on a connection that had been idle (the server's idle timeout, a
 * restarted server) is first retried once at once on a fresh connection. Then, for the
 * fallback window (fallback_after_s, counted from the outage's first failure), the request
 * waits: it reconnects with exponential backoff and jitter and is sent again, on a session
 * re-OPENed with the committed context (the resync below), so the device blocks for at most
 * the window plus one connect (or read) timeout, and a server that is back within it, or
 * another backend behind a balancer, answers the very request that failed. Only when the
 * window has run out does the operation return UHLM_VERIFIER_UNAVAILABLE with nothing
 * committed, and the device carries on with the SLM; from then until a request is answered
 * again, operations no longer wait: they try to reconnect when the backoff delay has passed
 * and otherwise return UHLM_VERIFIER_UNAVAILABLE at once, without touching the network, so
 * generation is stalled at most once per outage. The first request after a reconnect
 * re-OPENs the session with the committed context plus the request's catch-up (the device's
 * unverified tokens, none when the window bridged the outage), then sends the request with an
 * empty catch-up: from then on the run is what it would have been on an unbroken connection,
 * given the same context. With require, the window ends in an error instead (see require);
 * and when the very first connection (info()) fails, a device with require waits out the
 * window there, one without starts at once and its first request waits.
 *
 * A server that cannot serve the session leaves the verifier unavailable until the next
 * open(), with one log line: CTX_FULL, a context longer than WELCOME's n_ctx, BAD_PAYLOAD, a
 * payload kind WELCOME does not list. info() sets ctx_fallback: the server's n_ctx bounds what
 * it verifies, not the run of a device with an SLM. Errors that would repeat on any server
 * (BAD_TOKEN, BAD_PROBS, a frame size the server does not take) return -1; so does a refused
 * HELLO (AUTH, VOCAB_MISMATCH, BAD_VERSION) on the very first
 * connection, where it is a configuration error rather than an outage. After a successful
 * first connection, such refusals count as unavailability.
 *
 * TLS (tls_ca or tls_insecure): each connection runs a TLS 1.3 handshake before HELLO. A
 * certificate that does not verify (OpenSSL's reason is in the message), or a server that
 * answers in the plain protocol, is a configuration error like a refused HELLO (-1 on the
 * first connection); a server that closes or stalls mid-handshake is an outage like any
 * other (within the connect timeout, never a hang).
 *
 * I/O: non-blocking sockets driven by poll(2) against deadlines, send with MSG_NOSIGNAL (no
 * SIGPIPE), EINTR and partial transfers handled. Not thread-safe: one device, one verifier. */
#ifndef UHLM_REMOTE_H
#define UHLM_REMOTE_H

#include "common.h"
#include "verifier.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called with one line (no newline) when the link changes state: the first connection fails,
 * a connection is lost, a reconnect succeeds. Never called per token. */
/* The library-wide log callback (common.h); the old name stays for existing callers. */
typedef uhlm_log_fn uhlm_remote_log_fn;

typedef struct uhlm_remote_params {
    const char *host; /* name or numeric address; copied */
    const char *port; /* service name or number; copied */
    const void *auth; /* auth token bytes (copied), at most UHLM_WIRE_MAX_AUTH; may be NULL */
    size_t auth_len;
    int n_vocab;          /* the device's vocabulary: HELLO, and info() while unreachable */
    uint64_t fingerprint; /* uhlm_tokenizer_fingerprint of that vocabulary */
    const char *client;   /* name for the server's logs; NULL: "uhlm-device"; copied */
    double connect_timeout_s; /* per attempt, TCP connect + HELLO/WELCOME; > 0 */
    double read_timeout_s;    /* per reply, including the server's LLM time; > 0 */
    double backoff_min_s;     /* first reconnect delay; > 0 */
    double backoff_max_s;     /* the delay doubles up to this; >= backoff_min_s */
    uint64_t jitter_seed;     /* seeds the backoff jitter */
    uhlm_remote_log_fn log;   /* may be NULL */
    void *log_user;
    /* nonzero: never go on with the SLM alone: whatever would answer UHLM_VERIFIER_UNAVAILABLE
     * (server unreachable or lost after the fallback window, context full, payload
     * refused) is an error instead (`uhlm run --require-server`, and `uhlm run --mode llm`
     * with a server). A SHUTTING_DOWN from the server is logged (with its reason) either way. */
    int require;
    /* The fallback window, in seconds, >= 0 (see "Fallback and resynchronisation" above): how
     * long one outage may hold a request before the device goes on with the SLM alone. Within
     * it a request that met a lost connection or an unreachable server waits out each backoff
     * delay and is sent again on a fresh connection and a re-OPENed session, so a server
     * restarted (or a balancer's other backend found) within the window costs no unverified
     * token. 0: the behaviour before the window existed, falling back at once (after the one
     * immediate retry of a stale connection). With require it delays the error instead. */
    double fallback_after_s;
    /* Optional (common.h): polled every 50 ms while a request waits in the fallback window.
     * When it answers nonzero the wait ends at once: the request returns
     * UHLM_VERIFIER_UNAVAILABLE (the device's cancel check then stops the run at the next
     * token), or under require an error saying it was interrupted. NULL: the wait runs out. */
    uhlm_cancel_fn cancel;
    void *cancel_user;
    /* TLS 1.3 to a server started with a certificate (`uhlm serve --tls-cert`); both unset:
     * plain TCP. The handshake is part of the connection attempt (connect_timeout_s). */
    const char *tls_ca;   /* PEM CA file: the server's chain must verify against it and its
                           * certificate must name host (DNS or IP SAN); copied */
    int tls_insecure;     /* with tls_ca NULL: TLS without any verification (tests only: the
                           * link is encrypted but anyone on the path can impersonate the
                           * server) */
} uhlm_remote_params;

/* connect 3 s, read 30 s (a 7B prefill on a CPU server takes seconds), backoff 0.05 s
 * doubling to 2 s, a fallback window of 10 s; everything else zero. */
UHLM_API uhlm_remote_params uhlm_remote_default_params(void);

/* Counters since uhlm_remote_new (not reset by open). */
typedef struct uhlm_remote_stats {
    uint64_t connects;         /* handshakes (HELLO -> WELCOME) completed */
    uint64_t reconnects;       /* of those, the ones after a lost or failed connection */
    uint64_t connect_failures; /* connection attempts that failed */
    uint64_t losses;           /* established connections lost (EOF, reset, timeout, ERROR) */
    uint64_t opens;            /* OPENs accepted */
    uint64_t resyncs;          /* of those, re-OPENs that restored a lost session's context */
    uint64_t resync_tokens;    /* tokens those re-OPENs carried */
    uint64_t unavailable;      /* operations that returned UHLM_VERIFIER_UNAVAILABLE */
    uint64_t requests;         /* request frames answered (a frame lost with its connection
                                  may never have reached the server, so it is not counted) */
    uint64_t bytes_sent;       /* bytes of frames that got a reply (HELLO and requests) */
    uint64_t bytes_received;
    double rtt_s;              /* wall time from sending a request to reading its reply */
} uhlm_remote_stats;

/* Creates the verifier; connects lazily (see above), so this succeeds with the server down.
 * NULL on bad parameters or allocation failure. */
UHLM_API uhlm_verifier *uhlm_remote_new(const uhlm_remote_params *p, uhlm_error *err);

/* 0 and the counters, or -1 when v is not a remote verifier. */
UHLM_API int uhlm_remote_get_stats(uhlm_verifier *v, uhlm_remote_stats *out);

/* Splits "HOST:PORT", "[V6ADDR]:PORT" or ":PORT" (host "127.0.0.1") into NUL-terminated
 * parts. The port must be 1..65535. 0 or -1. */
UHLM_API int uhlm_remote_parse_addr(const char *s, char *host, size_t host_cap, char *port,
                           size_t port_cap, uhlm_error *err);

/* Reads an auth token file, for the device and the server alike: the token is the file's
 * first line without its line end (CR or LF) and trailing spaces or tabs, 1..UHLM_WIRE_MAX_AUTH
 * bytes, NUL-terminated here for convenience; buf holds cap >= UHLM_WIRE_MAX_AUTH + 1 bytes.
 * 0 or -1. */
UHLM_API int uhlm_remote_load_token(const char *path, char *buf, size_t cap, size_t *len,
                           uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
