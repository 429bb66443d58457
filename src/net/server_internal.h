/* server_internal.h: the server's entry points for tests and benchmarks (server.c); not part
 * of the public API (the library exports none of them). In-tree users link libuhlm.a.
 *
 * Counters: raw totals the tests assert on and the benchmarks report; an embedder reads the
 * same figures, and more, through uhlm_server_stats_text (server.h).
 *
 * In-memory connections (tests/fuzz/fuzz_server.c): such a connection has no socket: the
 * bytes given to uhlm_server_test_feed are what the server reads, and every byte it would
 * send is appended to the caller's buffer. Frame assembly, the handlers, admission state, the
 * compute queue and the replies are the very code a TCP connection goes through; only recv()
 * and send() are replaced (in conn.c). The server must not be running (uhlm_server_run) at
 * the same time. */
#ifndef UHLM_SERVER_INTERNAL_H
#define UHLM_SERVER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "uhlm/server.h"
#include "uhlm/wire.h"

/* Only from the thread running the server, or when it is not running. */
typedef struct uhlm_server_counters {
    uint64_t connections, sessions_opened, verifications, accepted, generated_tokens;
    uint64_t forward_calls; /* compute-step forwards (VERIFY/GENERATE, and OPEN prefills
                             * batched with them; an OPEN whose prefix is cached needs none) */
    uint64_t batched_requests; /* request-steps summed over those forwards */
    uint64_t errors;          /* ERROR frames sent */
    int open_sessions, open_conns;
    uint64_t evicted;         /* pending connections dropped to make room (admission) */
    uint64_t refused;         /* connections refused at accept or HELLO (full, per address) */
    uint64_t timeouts;        /* connections closed by the handshake, idle or request timeout */
    uint64_t log_suppressed;  /* log lines left out by the rate limits */
} uhlm_server_counters;
void uhlm_server_get_counters(const uhlm_server *s, uhlm_server_counters *out);

typedef struct conn uhlm_server_conn; /* net/conn.h */

/* A new device connection as if just accepted (before HELLO); NULL when the table is full
 * or out of memory. */
uhlm_server_conn *uhlm_server_test_conn(uhlm_server *s);

/* Feeds data[0..n) to c as received bytes and runs everything it causes (frames, compute
 * steps until c's request is answered) until c needs more input; the replies are appended
 * to out. Returns 0 while c is open, 1 once the server has closed it (c is freed then). */
int uhlm_server_test_feed(uhlm_server *s, uhlm_server_conn *c, const uint8_t *data, size_t n,
                          uhlm_wire_buf *out);

/* The peer hangs up: c's session is released and c is freed. */
void uhlm_server_test_close(uhlm_server *s, uhlm_server_conn *c);

#endif
