/* socket.h: the TCP plumbing of net/ (internal, not API), shared by the server, the remote
 * verifier, the load benchmarks and the tests, as redis keeps its in anet.c.
 *
 * Every socket it makes is non-blocking and close-on-exec, with TCP_NODELAY on connections
 * (the protocol is one small request per token: Nagle would add a delayed-ACK round to each).
 * The blocking-style calls take an absolute deadline on uhlm_now()'s clock and wait in
 * poll(), so no call can hang past it; they retry EINTR and never raise SIGPIPE. Each has a
 * uhlm_stream_ twin that takes a connection (tls.h: a socket, maybe with TLS on it) instead of
 * a plain fd: same contract, and a TLS read that must write first (or the reverse) waits for
 * that in the same poll against the same deadline. */
#ifndef UHLM_NET_SOCKET_H
#define UHLM_NET_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/tls.h"
#include "uhlm/common.h"
#include "uhlm/wire.h"

/* Outcomes of the deadline calls: 0, or one of these (err, when given, says more). */
enum {
    UHLM_SOCK_OK = 0,
    UHLM_SOCK_TIMEOUT = -1,   /* the deadline passed first */
    UHLM_SOCK_CLOSED = -2,    /* the peer closed the connection (EOF) */
    UHLM_SOCK_IO = -3,        /* a socket error (errno is kept) */
    UHLM_SOCK_BAD_FRAME = -4, /* an invalid frame header, or a frame that does not decode */
    UHLM_SOCK_NOMEM = -5      /* no memory for the frame */
};

/* O_NONBLOCK on fd; 0 or -1 (errno). */
int uhlm_sock_set_nonblock(int fd);

/* A listening socket on host (NULL: 127.0.0.1) and port (0: any free one), with
 * SO_REUSEADDR; *bound is the port it got. The fd, or -1 with err set. */
int uhlm_sock_listen(const char *host, int port, int *bound, uhlm_error *err);

/* 1 when every address host (NULL: 127.0.0.1) resolves to for listening is a loopback one
 * (127.0.0.0/8, ::1, ::ffff:127.x), 0 when any is not (0.0.0.0, ::, a real interface), -1
 * when it does not resolve. */
int uhlm_sock_is_loopback(const char *host);

/* accept(2) of one connection, set up as above. peer ("host:port") and addr (the numeric
 * host alone) are filled when not NULL ("?" when unknown). The fd, or -1 with accept's errno
 * (EAGAIN when none is waiting, EMFILE at the descriptor limit). */
int uhlm_sock_accept(int lfd, char *peer, size_t peer_cap, char *addr, size_t addr_cap);

/* A connection to host:port (port a number or service name) within timeout_s seconds for all
 * the addresses host resolves to; src, when not NULL, is the numeric local address to bind
 * first (tests and benchmarks play several hosts through 127.x.y.z). The fd, or -1 with err
 * naming host:port and the cause. */
int uhlm_sock_connect(const char *host, const char *port, const char *src, double timeout_s,
                      uhlm_error *err);

/* 1 when fd is ready for the poll events ev, 0 at the deadline, -1 on a poll error. */
int uhlm_sock_wait(int fd, short ev, double deadline);

/* Sends or receives exactly n bytes by the deadline. *bytes (when not NULL) grows by every
 * byte moved, also by those of a call that then fails. */
int uhlm_sock_send_all(int fd, const void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err);
int uhlm_sock_recv_all(int fd, void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err);

/* Reads until the peer closes (a reset counts as closed): the first cap bytes are kept in
 * buf, the rest dropped. How many were kept, or -1 at the deadline or on an error. */
ssize_t uhlm_sock_read_to_eof(int fd, void *buf, size_t cap, double deadline);

/* Sends b's bytes whole and empties b (also when sending fails). */
int uhlm_sock_send_buf(int fd, uhlm_wire_buf *b, double deadline, uint64_t *bytes, uhlm_error *err);

/* Reads one frame: *h is its header and in->data[0..h->len) its payload (in->len = h->len).
 * A frame over max_len payload bytes (0: the protocol's ceiling) is BAD_FRAME. in grows as
 * needed; a caller's fixed buffer may stand in (in->cap its size) when max_len <= in->cap,
 * as it is then never reallocated. */
int uhlm_sock_recv_frame(int fd, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                         uhlm_wire_header *h, uint64_t *bytes, uhlm_error *err);

/* uhlm_sock_recv_frame, then uhlm_wire_decode under lim (NULL: the protocol's limits) into m,
 * whose pointers then point into in. */
int uhlm_sock_recv_msg(int fd, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                       const uhlm_wire_limits *lim, uhlm_wire_msg *m, uint64_t *bytes,
                       uhlm_error *err);

/* The same calls on a link (tls.h), plain or TLS. */
int uhlm_stream_send_all(uhlm_stream *l, const void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err);
int uhlm_stream_recv_all(uhlm_stream *l, void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err);
int uhlm_stream_send_buf(uhlm_stream *l, uhlm_wire_buf *b, double deadline, uint64_t *bytes,
                       uhlm_error *err);
int uhlm_stream_recv_frame(uhlm_stream *l, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                         uhlm_wire_header *h, uint64_t *bytes, uhlm_error *err);
int uhlm_stream_recv_msg(uhlm_stream *l, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                       const uhlm_wire_limits *lim, uhlm_wire_msg *m, uint64_t *bytes,
                       uhlm_error *err);

#endif
