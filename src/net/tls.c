/* tls.c: TLS 1.3 under net/'s connections (tls.h). */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/socket.h"
#include "uhlm/wire.h"

struct uhlm_tls_ctx {
    SSL_CTX *ssl;
    BIO_METHOD *meth; /* the socket BIO below; per context, so there is no global of ours */
    int verify;       /* a client context that checks the server's certificate and name */
};

/* ------------------------------------------------------------------ the socket BIO */

/* What the BIO keeps: the socket, whether recv saw EOF (OpenSSL asks, to tell a clean close
 * from a truncated record), and the first bytes the peer sent (a plain uhlm peer's "UHLM"). */
typedef struct link_bio {
    int fd, eof;
    uint8_t first[4];
    int n_first;
} link_bio;

static int bio_read(BIO *b, char *buf, int n) {
    link_bio *d = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0) return 0;
    ssize_t k;
    do k = recv(d->fd, buf, (size_t)n, 0);
    while (k < 0 && errno == EINTR);
    if (k > 0) {
        for (ssize_t i = 0; i < k && d->n_first < (int)sizeof d->first; i++)
            d->first[d->n_first++] = (uint8_t)buf[i];
        return (int)k;
    }
    if (k == 0) {
        d->eof = 1;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
    return -1;
}

static int bio_write(BIO *b, const char *buf, int n) {
    link_bio *d = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0) return 0;
    ssize_t k;
    do k = send(d->fd, buf, (size_t)n, MSG_NOSIGNAL);
    while (k < 0 && errno == EINTR);
    if (k >= 0) return (int)k;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
    return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    link_bio *d = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* every write went straight to the socket */
    case BIO_CTRL_EOF: return d ? d->eof : 1;
    default: return 0;
    }
}

static int bio_destroy(BIO *b) {
    free(BIO_get_data(b));
    BIO_set_data(b, NULL);
    BIO_set_init(b, 0);
    return 1;
}

static BIO *bio_on(uhlm_tls_ctx *ctx, int fd) {
    link_bio *d = calloc(1, sizeof *d);
    BIO *b = d ? BIO_new(ctx->meth) : NULL;
    if (!b) {
        free(d);
        return NULL;
    }
    d->fd = fd;
    BIO_set_data(b, d);
    BIO_set_init(b, 1);
    return b;
}

/* ------------------------------------------------------------------ errors */

void uhlm_stream_error(char *buf, size_t cap) {
    unsigned long e, first = 0;
    while ((e = ERR_get_error()) != 0)
        if (!first) first = e;
    const char *r = first ? ERR_reason_error_string(first) : NULL;
    if (first && r)
        snprintf(buf, cap, "%s", r);
    else if (first)
        snprintf(buf, cap, "OpenSSL error %lx", first);
    else
        snprintf(buf, cap, "%s", errno ? strerror(errno) : "the connection ended");
}

/* err = prefix: the OpenSSL reason (the queue is emptied). */
static void set_ssl_error(uhlm_error *err, const char *prefix) {
    char why[200];
    uhlm_stream_error(why, sizeof why);
    uhlm_set_error(err, "%s: %s", prefix, why);
}

/* ------------------------------------------------------------------ contexts */

static uhlm_tls_ctx *ctx_new(int server, uhlm_error *err) {
    if (OPENSSL_init_ssl(0, NULL) != 1) {
        set_ssl_error(err, "TLS: OpenSSL initialisation failed");
        return NULL;
    }
    uhlm_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        uhlm_set_error(err, "TLS: out of memory");
        return NULL;
    }
    c->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    int idx = BIO_get_new_index();
    c->meth = idx > 0 ? BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "uhlm socket") : NULL;
    if (!c->ssl || !c->meth || !BIO_meth_set_read(c->meth, bio_read) ||
        !BIO_meth_set_write(c->meth, bio_write) || !BIO_meth_set_ctrl(c->meth, bio_ctrl) ||
        !BIO_meth_set_destroy(c->meth, bio_destroy) ||
        !SSL_CTX_set_min_proto_version(c->ssl, TLS1_3_VERSION)) {
        set_ssl_error(err, "TLS: cannot set up a context");
        uhlm_tls_ctx_free(c);
        return NULL;
    }
    SSL_CTX_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    /* partial writes: the server's event loop sends what the socket takes; moving buffer:
     * a reply may be appended to (and so reallocated) while its start waits for POLLOUT */
    SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
    return c;
}

/* 0 when path can be opened for reading, else err names it and the cause. */
static int readable(const char *what, const char *path, uhlm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return uhlm_set_error(err, "%s %s: %s", what, path, strerror(errno));
    fclose(f);
    return 0;
}

uhlm_tls_ctx *uhlm_tls_server_ctx(const char *cert_file, const char *key_file, uhlm_error *err) {
    if (!cert_file || !key_file) {
        uhlm_set_error(err, "TLS: a server needs both a certificate and a key file");
        return NULL;
    }
    if (readable("TLS certificate", cert_file, err) || readable("TLS key", key_file, err))
        return NULL;
    uhlm_tls_ctx *c = ctx_new(1, err);
    if (!c) return NULL;
    char what[600];
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(c->ssl, cert_file) != 1) {
        snprintf(what, sizeof what, "TLS certificate %.500s: not a usable PEM certificate",
                 cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof what, "TLS key %.250s does not match the certificate %.250s",
                     key_file, cert_file);
        else
            snprintf(what, sizeof what, "TLS key %.500s: not a usable PEM private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c->ssl) != 1) {
        snprintf(what, sizeof what,
                 "TLS key %.250s does not match the certificate %.250s", key_file, cert_file);
        goto fail;
    }
    /* nothing resumes sessions, and a ticket is a message the device would have to read on
     * a link that is otherwise silent between requests */
    SSL_CTX_set_num_tickets(c->ssl, 0);
    return c;
fail:
    set_ssl_error(err, what);
    uhlm_tls_ctx_free(c);
    return NULL;
}

uhlm_tls_ctx *uhlm_tls_client_ctx(const char *ca_file, int insecure, uhlm_error *err) {
    if (!ca_file && !insecure) {
        uhlm_set_error(err, "TLS: a client needs a CA file to verify the server (or insecure)");
        return NULL;
    }
    if (ca_file && readable("TLS CA file", ca_file, err)) return NULL;
    uhlm_tls_ctx *c = ctx_new(0, err);
    if (!c) return NULL;
    if (ca_file) {
        ERR_clear_error();
        if (SSL_CTX_load_verify_locations(c->ssl, ca_file, NULL) != 1) {
            char what[600];
            snprintf(what, sizeof what, "TLS CA file %.500s: no usable PEM certificate", ca_file);
            set_ssl_error(err, what);
            uhlm_tls_ctx_free(c);
            return NULL;
        }
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        c->verify = 1;
    } else {
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
    }
    return c;
}

void uhlm_tls_ctx_free(uhlm_tls_ctx *c) {
    if (!c) return;
    SSL_CTX_free(c->ssl);
    BIO_meth_free(c->meth);
    free(c);
}

/* ------------------------------------------------------------------ connections */

static SSL *ssl_on(uhlm_tls_ctx *ctx, int fd) {
    SSL *s = SSL_new(ctx->ssl);
    BIO *b = s ? bio_on(ctx, fd) : NULL;
    if (!b) {
        SSL_free(s);
        return NULL;
    }
    SSL_set_bio(s, b, b);
    return s;
}

struct ssl_st *uhlm_tls_accept_new(uhlm_tls_ctx *ctx, int fd) {
    SSL *s = ssl_on(ctx, fd);
    if (s) SSL_set_accept_state(s);
    return s;
}

int uhlm_tls_peer_spoke_plain(const uhlm_stream *l) {
    if (!l->ssl) return 0;
    const link_bio *d = BIO_get_data(SSL_get_rbio(l->ssl));
    return d && d->n_first == 4 && memcmp(d->first, UHLM_WIRE_MAGIC, 4) == 0;
}

int uhlm_tls_handshake(uhlm_stream *l, short *want, uhlm_error *err) {
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(l->ssl);
    if (rc == 1) return UHLM_TLS_DONE;
    int e = SSL_get_error(l->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return UHLM_TLS_AGAIN;
    }
    if (uhlm_tls_peer_spoke_plain(l)) {
        ERR_clear_error();
        uhlm_set_error(err, "the peer speaks the plain uhlm protocol, not TLS");
        return UHLM_TLS_REJECTED;
    }
    long vr = SSL_get_verify_result(l->ssl);
    if (vr != X509_V_OK) {
        ERR_clear_error();
        uhlm_set_error(err, "certificate verification failed: %s",
                       X509_verify_cert_error_string(vr));
        return UHLM_TLS_REJECTED;
    }
    const link_bio *d = BIO_get_data(SSL_get_rbio(l->ssl));
    if ((e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN || (d && d->eof)) &&
        ERR_peek_error() == 0) {
        uhlm_set_error(err, "the peer closed the connection during the TLS handshake%s%s",
                       errno ? ": " : "", errno ? strerror(errno) : "");
        return UHLM_TLS_FAILED;
    }
    set_ssl_error(err, "TLS handshake failed");
    return UHLM_TLS_FAILED;
}

static int is_ip(const char *host) {
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

int uhlm_tls_connect(uhlm_tls_ctx *ctx, int fd, const char *host, const char *port,
                     double deadline, uhlm_stream *l, uhlm_error *err) {
    l->fd = fd;
    l->ssl = ssl_on(ctx, fd);
    if (!l->ssl) {
        uhlm_set_error(err, "TLS: out of memory");
        return UHLM_TLS_FAILED;
    }
    /* SSL_set1_host takes an IP address too (checked against the certificate's IP SANs);
     * SNI carries names only (RFC 6066) */
    if ((ctx->verify && SSL_set1_host(l->ssl, host) != 1) ||
        (!is_ip(host) && SSL_set_tlsext_host_name(l->ssl, host) != 1)) {
        set_ssl_error(err, "TLS: cannot set the server name");
        uhlm_stream_tls_end(l);
        return UHLM_TLS_FAILED;
    }
    SSL_set_connect_state(l->ssl);
    for (;;) {
        short want = POLLIN;
        uhlm_error e = {{0}};
        int rc = uhlm_tls_handshake(l, &want, &e);
        if (rc == UHLM_TLS_DONE) return 0;
        if (rc == UHLM_TLS_AGAIN) {
            int w = uhlm_sock_wait(fd, want, deadline);
            if (w > 0) continue;
            uhlm_set_error(err, "TLS handshake with %s:%s %s", host, port,
                           w == 0 ? "timed out (is the server speaking TLS?)" : "failed: poll");
            rc = UHLM_TLS_FAILED;
        } else if (rc == UHLM_TLS_REJECTED && uhlm_tls_peer_spoke_plain(l)) {
            uhlm_set_error(err,
                           "%s:%s is not a TLS server (it answered in the plain uhlm protocol): "
                           "start it with --tls-cert/--tls-key, or connect without "
                           "--tls-ca/--tls-insecure",
                           host, port);
        } else {
            uhlm_set_error(err, "TLS handshake with %s:%s: %s", host, port, e.msg);
        }
        SSL_free(l->ssl); /* no close_notify: the handshake never finished */
        l->ssl = NULL;
        return rc;
    }
}

/* A failed SSL_read/SSL_write (k <= 0) as recv/send would report it. */
static ssize_t ssl_fail(uhlm_stream *l, int k, int reading, short *want) {
    int saved = errno;
    switch (SSL_get_error(l->ssl, k)) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        if (reading) return 0;
        errno = EPIPE;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && saved == 0) {
            if (reading) return 0;
            saved = EPIPE;
        }
        errno = saved ? saved : EPROTO;
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

ssize_t uhlm_stream_read(uhlm_stream *l, void *p, size_t n, short *want) {
    *want = POLLIN;
    if (!l->ssl) return recv(l->fd, p, n, 0);
    ERR_clear_error();
    errno = 0;
    int k = SSL_read(l->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    return k > 0 ? k : ssl_fail(l, k, 1, want);
}

ssize_t uhlm_stream_write(uhlm_stream *l, const void *p, size_t n, short *want) {
    *want = POLLOUT;
    if (!l->ssl) return send(l->fd, p, n, MSG_NOSIGNAL);
    ERR_clear_error();
    errno = 0;
    int k = SSL_write(l->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    return k > 0 ? k : ssl_fail(l, k, 0, want);
}

int uhlm_stream_pending(const uhlm_stream *l) { return l->ssl && SSL_has_pending(l->ssl); }

int uhlm_stream_idle_readable(uhlm_stream *l) {
    if (l->ssl && (SSL_pending(l->ssl) > 0 || (SSL_get_shutdown(l->ssl) & SSL_RECEIVED_SHUTDOWN)))
        return 1;
    struct pollfd pfd = {l->fd, POLLIN, 0};
    int n;
    do n = poll(&pfd, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0) return 0;
    if (n < 0 || !l->ssl) return 1;
    /* a TLS record that carries no data (a session ticket, a key update) is not an answer */
    char b;
    ERR_clear_error();
    int k = SSL_peek(l->ssl, &b, 1);
    if (k > 0) return 1;
    int e = SSL_get_error(l->ssl, k);
    ERR_clear_error();
    return e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
}

void uhlm_stream_tls_end(uhlm_stream *l) {
    if (!l->ssl) return;
    if (SSL_is_init_finished(l->ssl)) (void)SSL_shutdown(l->ssl);
    ERR_clear_error();
    SSL_free(l->ssl);
    l->ssl = NULL;
}
