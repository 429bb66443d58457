/* tls.h: TLS 1.3 (OpenSSL) under net/'s connections (internal, not API).
 *
 * A connection is a uhlm_stream: its socket plus, when the link is encrypted, the OpenSSL
 * object on it. Plain and TLS links go through the same calls, so the deadline I/O of
 * socket.h (the device) and the server's non-blocking event loop (conn.c) do not care which
 * they hold. The calls never block: a TLS read or write that needs the socket to become
 * readable or writable first (OpenSSL's SSL_ERROR_WANT_READ / WANT_WRITE, which a read can
 * also need a write for, and the reverse) fails with errno EAGAIN and says which poll event
 * to wait for; the caller waits in its own poll, against its own deadline, and calls again.
 *
 * Contexts: one per server (certificate and key) and one per remote verifier (the CA it
 * trusts, or none with insecure). TLS 1.3 only; the server sends no session tickets (nothing
 * resumes sessions here, and a ticket arriving on an idle device link would look like data).
 * Sockets are written with send(MSG_NOSIGNAL) through a BIO of our own, so a peer that is gone
 * never raises SIGPIPE, as with the plain links. A peer that closes without close_notify is
 * EOF, like a plain one (the framing, not TLS, says whether a message was whole).
 *
 * Errors name what failed: the file (certificate, key, CA), OpenSSL's reason, and for a
 * failed verification OpenSSL's verify result string. The only global state is OpenSSL's own
 * (its initialisation, thread-safe and idempotent). */
#ifndef UHLM_NET_TLS_H
#define UHLM_NET_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "uhlm/common.h"

struct ssl_st; /* OpenSSL's SSL */

typedef struct uhlm_tls_ctx uhlm_tls_ctx;

/* One connection: fd, and ssl when encrypted (NULL: plain TCP). */
typedef struct uhlm_stream {
    int fd;
    struct ssl_st *ssl;
} uhlm_stream;

/* A server context from a PEM certificate (chain) file and a PEM private key file; NULL with
 * err naming the file that cannot be read or parsed, or saying the key does not match. */
uhlm_tls_ctx *uhlm_tls_server_ctx(const char *cert_file, const char *key_file, uhlm_error *err);

/* A client context that verifies the server's chain against the PEM CA file ca_file and its
 * name against the host connected to; with ca_file NULL and insecure set, one that verifies
 * nothing (tests only). NULL with err naming the file. */
uhlm_tls_ctx *uhlm_tls_client_ctx(const char *ca_file, int insecure, uhlm_error *err);

void uhlm_tls_ctx_free(uhlm_tls_ctx *ctx);

/* Server side: a TLS object on the accepted socket fd, in accept state; the handshake is
 * driven by uhlm_tls_handshake. NULL when out of memory. */
struct ssl_st *uhlm_tls_accept_new(uhlm_tls_ctx *ctx, int fd);

/* Outcomes of a handshake step. */
enum {
    UHLM_TLS_DONE = 0,
    UHLM_TLS_AGAIN = 1,    /* call again once fd has the event in *want */
    UHLM_TLS_FAILED = -1,  /* the peer is gone or spoke something else: err says which */
    UHLM_TLS_REJECTED = -2 /* the peer's certificate failed verification (err says why), or
                            * the peer is not speaking TLS: a configuration error */
};

/* One non-blocking step of the handshake of l (either side). */
int uhlm_tls_handshake(uhlm_stream *l, short *want, uhlm_error *err);

/* 1 when the first bytes the peer sent on l were a uhlm frame header ("UHLM"): a plain
 * device (or server) at the other end. */
int uhlm_tls_peer_spoke_plain(const uhlm_stream *l);

/* Device side: TLS on the connected socket fd to host (the name verified, and sent as SNI
 * when it is not an IP address), handshake done by the deadline (uhlm_now's clock). 0 with
 * l set up, or UHLM_TLS_FAILED / UHLM_TLS_REJECTED with err; fd stays open either way (the
 * caller owns it) and l->ssl is NULL after a failure. */
int uhlm_tls_connect(uhlm_tls_ctx *ctx, int fd, const char *host, const char *port,
                     double deadline, uhlm_stream *l, uhlm_error *err);

/* Non-blocking I/O on l, plain or TLS, like recv/send: bytes moved, 0 at EOF (read only), or
 * -1 with errno (EAGAIN: wait for *want, POLLIN or POLLOUT, then call again with the same
 * data; EPROTO: a TLS error, described by uhlm_stream_error). */
ssize_t uhlm_stream_read(uhlm_stream *l, void *p, size_t n, short *want);
ssize_t uhlm_stream_write(uhlm_stream *l, const void *p, size_t n, short *want);

/* Decrypted bytes already held by l's TLS object: they will not show in poll(). */
int uhlm_stream_pending(const uhlm_stream *l);

/* For an idle link in a lock-step protocol, where nothing may arrive unasked: 1 when the peer
 * sent data or closed (poll says readable and it is not just a TLS handshake message), 0 when
 * nothing is there. */
int uhlm_stream_idle_readable(uhlm_stream *l);

/* What the last failed TLS call on this thread said (OpenSSL's error queue, emptied), or
 * errno's text when the queue is empty. */
void uhlm_stream_error(char *buf, size_t cap);

/* Sends close_notify if the socket takes it now (never waits), frees the TLS object; the fd
 * stays open. Plain links: nothing. */
void uhlm_stream_tls_end(uhlm_stream *l);

#endif
