/* server_internal.h: a test-only seam into the server's connection handling (server.c), for
 * tests/fuzz/fuzz_server.c. Not part of the public API.
 *
 * An in-memory connection has no socket: the bytes given to uhlm_server_test_feed are what
 * the server reads, and every byte it would send is appended to the caller's buffer. Frame
 * assembly, the handlers, admission state, the compute queue and the replies are the very
 * code a TCP connection goes through; only recv() and send() are replaced (in conn.c). The server must
 * not be running (uhlm_server_run) at the same time. */
#ifndef UHLM_SERVER_INTERNAL_H
#define UHLM_SERVER_INTERNAL_H

#include "net/conn.h"
#include "uhlm/server.h"
#include "uhlm/wire.h"

typedef conn uhlm_server_conn;

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
