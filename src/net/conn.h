/* conn.h: a connection of the server (internal, not API): its state, shared by server.c
 * (accepting, the handlers, the compute queue) and metrics.c (the HTTP endpoint), and its
 * transport in conn.c: sending the queued reply, the incremental reader of one frame, and
 * draining before close.
 *
 * The transport calls never call back into the server: each says what happened (a frame is
 * whole, the peer is gone, ...) and server.c acts on it, so the frame reader can be driven by
 * any loop, and by the in-memory transport of the fuzz seam (server_internal.h). */
#ifndef UHLM_NET_CONN_H
#define UHLM_NET_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/log.h"
#include "net/tls.h"
#include "uhlm/sampler.h"
#include "uhlm/wire.h"

enum { K_DEVICE, K_HTTP };
enum { CS_HELLO, CS_READY };
/* rate-limited log kinds of a connection */
enum { LK_ERROR, LK_SESSION, LK_N };

/* A connection's session: an engine session (engine.h: the committed context, the KV
 * cache, the pending request) plus what the protocol adds. */
typedef struct session {
    int sid; /* the engine's session id, -1 when none */
    uint64_t id;
    uint32_t mode;
    uhlm_sampling s;
    uint64_t n_verify, n_accept;
} session;

/* The one request a connection may have in the compute queue. */
typedef struct job {
    int active;
    uint16_t type; /* OPEN (its prefill), VERIFY or GENERATE */
    uint32_t request_id;
    double t_arrive, ready_at;
} job;

typedef struct conn {
    int fd, kind, state, dead, closing;
    /* TLS (a server with a certificate; device connections only): ssl is the connection's
     * OpenSSL object, tls_hs is set until its handshake is done (the handshake is part of
     * the pending state: HELLO's deadline and the pending budget cover it). rd_want and
     * wr_want: the poll event the last blocked read / write waits for (a TLS read may need
     * the socket writable, and the reverse); POLLIN / POLLOUT on a plain connection. */
    struct ssl_st *ssl;
    int tls_hs;
    short rd_want, wr_want;
    int draining; /* closing, write side shut: reading until EOF so the close sends no RST */
    uint64_t id;
    uint64_t tenant; /* who may reuse whose prefix cache (Privacy in server.h) */
    char peer[64];
    char addr[48];             /* the peer's numeric address, for the per-address limit */
    double t_accept, last_req; /* last_req: last OPEN/VERIFY/GENERATE/CLOSE, or HELLO */
    uhlm_lograte lr[LK_N];
    uint64_t log_suppressed;
    /* test-only in-memory transport (server_internal.h): fd is -1, input comes from mem_in
     * and replies are appended to mem_out instead of sent */
    const uint8_t *mem_in;
    size_t mem_len, mem_off;
    uhlm_wire_buf *mem_out;
    uint8_t hdr[UHLM_WIRE_HEADER_SIZE];
    size_t hdr_got;
    uhlm_wire_header h;
    int in_payload, skipping; /* skipping: an UNKNOWN_TYPE payload being discarded */
    uint8_t *pay;
    size_t pay_cap, pay_got;
    double last_rx, close_deadline;
    uhlm_wire_buf out;
    size_t out_off;
    session sess;
    job job;
    int credit_slot; /* where its address's credit was last found in s->credits (a hint) */
} conn;

/* recv() (or its TLS equivalent), or the test transport's copy from memory (EAGAIN when it is
 * used up). */
ssize_t uhlm_conn_recv(conn *c, void *dst, size_t want);

/* Sends what can be sent of c->out now: 0 when all of it went (c->out is empty again), 1 when
 * the rest must wait for POLLOUT, -1 when the connection failed (*why). The test transport
 * takes everything at once. */
int uhlm_conn_send(conn *c, const char **why);

/* What uhlm_conn_read_frame found. */
enum {
    UHLM_CONN_AGAIN,   /* no whole frame yet: read again when the socket is readable */
    UHLM_CONN_FRAME,   /* c->h and c->pay[0..c->h.len) hold one frame */
    UHLM_CONN_SKIPPED, /* a frame of unknown type c->h.type was read and discarded */
    UHLM_CONN_BAD,     /* an invalid header, or no memory: *code and err say which */
    UHLM_CONN_GONE     /* EOF or a receive error (*why) */
};

/* Reads toward one frame of at most max_frame payload bytes, and stops at its end: a
 * connection is read one frame per loop turn, so one busy client cannot keep the loop to
 * itself. */
int uhlm_conn_read_frame(conn *c, uint32_t max_frame, int *code, uhlm_error *err, const char **why);

/* Reads and drops input after the write side is shut (so that the close sends no RST): 0
 * while more may come, 1 at EOF or an error, when the connection may be closed. */
int uhlm_conn_drain(conn *c);

/* One step of c's TLS handshake (c->tls_hs set): 0 when done (tls_hs cleared), 1 when it
 * waits for the socket (rd_want says for what), -1 when it failed (err says why; *plain is set
 * when the peer spoke the plain protocol instead, its first bytes consumed). */
int uhlm_conn_tls_step(conn *c, int *plain, uhlm_error *err);

/* Decrypted input waiting inside the TLS object, which poll() cannot see. */
int uhlm_conn_tls_pending(const conn *c);

/* Ends TLS on c (close_notify if the socket takes it) and closes its socket; fd is -1 after. */
void uhlm_conn_close(conn *c);

/* Closes c's socket (if still open) and frees c with its buffers. */
void uhlm_conn_free(conn *c);

#endif
