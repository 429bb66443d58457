/* test_tls.c: the TLS module (src/net/tls.h) on socket pairs with tiny buffers, so that every
 * read and write meets SSL_ERROR_WANT_READ / WANT_WRITE: a throwaway CA and certificates made
 * with OpenSSL's API in a temporary folder; contexts and their errors (missing files, a key
 * that is not the certificate's, no CA); a handshake and 1 MiB each way through the deadline
 * calls of socket.h with the byte counters; an idle link with nothing to read; EOF; a wrong
 * CA and a wrong host name (OpenSSL's reasons); a plain uhlm peer named as such; a silent
 * peer hits the deadline. The server side runs in a thread, driving its handshake and I/O
 * with the non-blocking calls and poll, as the server's event loop does. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "net/socket.h"
#include "net/tls.h"

static char dir[] = "/tmp/uhlm_test_tls.XXXXXX";

static void path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *v) {
    X509V3_CTX c;
    X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, nid, v);
    CHECK(e && X509_add_ext(x, e, -1) == 1);
    X509_EXTENSION_free(e);
}

/* A P-256 key and a certificate for cn with san, signed by (ik, ix) or self-signed as a CA;
 * written to NAME.key and NAME.pem. */
static void make(const char *name, const char *cn, const char *san, EVP_PKEY *ik, X509 *ix,
                 EVP_PKEY **ko, X509 **xo) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    CHECK(k && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1 + (long)(strlen(name) * 7));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ix ? X509_get_subject_name(ix) : n);
    if (!ix) add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    if (san) add_ext(x, ix ? ix : x, NID_subject_alt_name, san);
    CHECK(X509_sign(x, ik ? ik : k, EVP_sha256()) > 0);
    char p[256];
    path(p, sizeof p, name);
    size_t L = strlen(p);
    snprintf(p + L, sizeof p - L, ".key");
    FILE *f = fopen(p, "w");
    CHECK(f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
    if (f) fclose(f);
    snprintf(p + L, sizeof p - L, ".pem");
    f = fopen(p, "w");
    CHECK(f && PEM_write_X509(f, x) == 1);
    if (f) fclose(f);
    *ko = k;
    *xo = x;
}

/* ------------------------------------------------------------------ the server thread */

enum { BIG = 1 << 20 };

typedef struct srv {
    uhlm_tls_ctx *ctx;
    int fd;
    int mode; /* 0: TLS echo of BIG bytes, then one byte later, then close; 1: handshake only;
               * 2: a plain uhlm frame instead of TLS; 3: silent */
    int hs_rc;
    char hs_err[256];
    uint8_t *buf;
    int fd_done; /* main tells the thread to go on (mode 0) */
} srv;

static int drive(uhlm_stream *l, srv *s) {
    uhlm_error e = {{0}};
    double dl = uhlm_now() + 5.0;
    for (;;) {
        short want = 0;
        int rc = uhlm_tls_handshake(l, &want, &e);
        if (rc != UHLM_TLS_AGAIN) {
            s->hs_rc = rc;
            snprintf(s->hs_err, sizeof s->hs_err, "%.200s", e.msg);
            return rc;
        }
        if (uhlm_sock_wait(l->fd, want, dl) <= 0) return s->hs_rc = -9;
    }
}

static void *server_main(void *arg) {
    srv *s = arg;
    if (s->mode == 3) return NULL;
    if (s->mode == 2) {
        uhlm_sock_wait(s->fd, POLLIN, uhlm_now() + 5.0);
        static const char frame[] = "UHLM\1\0\14\0\0\0\0\0";
        ssize_t w = send(s->fd, frame, 12, MSG_NOSIGNAL);
        (void)w;
        return NULL;
    }
    uhlm_stream l = {s->fd, uhlm_tls_accept_new(s->ctx, s->fd)};
    if (!l.ssl || drive(&l, s) != UHLM_TLS_DONE || s->mode == 1) {
        uhlm_stream_tls_end(&l);
        return NULL;
    }
    uhlm_error e;
    uint64_t n = 0;
    double dl = uhlm_now() + 20.0;
    if (uhlm_stream_recv_all(&l, s->buf, BIG, dl, &n, &e) == 0 && n == BIG &&
        uhlm_stream_send_all(&l, s->buf, BIG, dl, &n, &e) == 0) {
        while (!__atomic_load_n(&s->fd_done, __ATOMIC_ACQUIRE)) usleep(1000);
        uint8_t one = 42;
        uhlm_stream_send_all(&l, &one, 1, dl, NULL, &e);
    }
    uhlm_stream_tls_end(&l); /* close_notify: the device reads EOF */
    return NULL;
}

/* A socket pair with small buffers, both ends non-blocking; the thread serves fds[1]. */
static void start(srv *s, uhlm_tls_ctx *ctx, int mode, int fds[2], pthread_t *t) {
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    for (int i = 0; i < 2; i++) {
        int small = 4096;
        setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        CHECK(uhlm_sock_set_nonblock(fds[i]) == 0);
    }
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->fd = fds[1];
    s->mode = mode;
    s->buf = malloc(BIG);
    CHECK(s->buf != NULL);
    CHECK(pthread_create(t, NULL, server_main, s) == 0);
}

static void finish(srv *s, int fds[2], pthread_t t) {
    __atomic_store_n(&s->fd_done, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    close(fds[0]);
    close(fds[1]);
    free(s->buf);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    EVP_PKEY *cak, *ca2k, *sk, *ok;
    X509 *cax, *ca2x, *sx, *ox;
    make("ca", "test CA", NULL, NULL, NULL, &cak, &cax);
    make("ca2", "other CA", NULL, NULL, NULL, &ca2k, &ca2x);
    make("srv", "localhost", "DNS:localhost,IP:127.0.0.1", cak, cax, &sk, &sx);
    make("other", "elsewhere", "DNS:elsewhere.example", cak, cax, &ok, &ox);
    char ca[256], ca2[256], crt[256], key[256], okey[256], nope[256];
    path(ca, sizeof ca, "ca.pem");
    path(ca2, sizeof ca2, "ca2.pem");
    path(crt, sizeof crt, "srv.pem");
    path(key, sizeof key, "srv.key");
    path(okey, sizeof okey, "other.key");
    path(nope, sizeof nope, "nope.pem");

    /* contexts and their errors */
    uhlm_error e = {{0}};
    CHECK(uhlm_tls_server_ctx(nope, key, &e) == NULL);
    CHECKF(strstr(e.msg, "TLS certificate") && strstr(e.msg, nope) &&
               strstr(e.msg, "No such file"),
           "%s", e.msg);
    CHECK(uhlm_tls_server_ctx(crt, okey, &e) == NULL);
    CHECKF(strstr(e.msg, "does not match the certificate"), "%s", e.msg);
    CHECK(uhlm_tls_server_ctx(crt, crt, &e) == NULL);
    CHECKF(strstr(e.msg, "not a usable PEM private key"), "%s", e.msg);
    CHECK(uhlm_tls_client_ctx(NULL, 0, &e) == NULL);
    CHECK(uhlm_tls_client_ctx(key, 0, &e) == NULL);
    CHECKF(strstr(e.msg, "TLS CA file") && strstr(e.msg, key), "%s", e.msg);
    uhlm_tls_ctx *sctx = uhlm_tls_server_ctx(crt, key, &e);
    CHECKF(sctx != NULL, "%s", e.msg);
    uhlm_tls_ctx *cctx = uhlm_tls_client_ctx(ca, 0, &e);
    uhlm_tls_ctx *wrong = uhlm_tls_client_ctx(ca2, 0, &e);
    uhlm_tls_ctx *blind = uhlm_tls_client_ctx(NULL, 1, &e);
    CHECK(cctx && wrong && blind);
    if (!sctx || !cctx || !wrong || !blind) return check_report();

    /* 1 MiB each way through 4 KiB buffers: every call meets WANT_READ/WANT_WRITE */
    int fds[2];
    pthread_t t;
    srv s;
    start(&s, sctx, 0, fds, &t);
    uhlm_stream l = {-1, NULL};
    int rc = uhlm_tls_connect(cctx, fds[0], "localhost", "test", uhlm_now() + 5.0, &l, &e);
    CHECKF(rc == 0 && l.ssl, "connect: %s", e.msg);
    if (rc == 0) {
        CHECK(uhlm_stream_idle_readable(&l) == 0); /* no tickets, nothing unasked */
        uint8_t *out = malloc(BIG), *in = malloc(BIG);
        CHECK(out && in);
        for (size_t i = 0; i < BIG; i++) out[i] = (uint8_t)(i * 2654435761u >> 13);
        uint64_t sent = 0, got = 0;
        CHECK(uhlm_stream_send_all(&l, out, BIG, uhlm_now() + 20.0, &sent, &e) == 0 && sent == BIG);
        CHECKF(uhlm_stream_recv_all(&l, in, BIG, uhlm_now() + 20.0, &got, &e) == 0 && got == BIG,
               "%s", e.msg);
        CHECK(memcmp(in, out, BIG) == 0);
        __atomic_store_n(&s.fd_done, 1, __ATOMIC_RELEASE);
        CHECK(uhlm_sock_wait(l.fd, POLLIN, uhlm_now() + 5.0) == 1);
        uint8_t one = 0;
        CHECK(uhlm_stream_recv_all(&l, &one, 1, uhlm_now() + 5.0, NULL, &e) == 0 && one == 42);
        /* then close_notify: EOF, and an idle link that reports it */
        CHECK(uhlm_stream_recv_all(&l, &one, 1, uhlm_now() + 5.0, NULL, &e) == UHLM_SOCK_CLOSED);
        CHECK(uhlm_stream_idle_readable(&l) == 1);
        free(out);
        free(in);
    }
    uhlm_stream_tls_end(&l);
    finish(&s, fds, t);

    /* --tls-insecure's context takes any certificate */
    start(&s, sctx, 1, fds, &t);
    CHECK(uhlm_tls_connect(blind, fds[0], "anything.example", "test", uhlm_now() + 5.0, &l,
                           &e) == 0);
    uhlm_stream_tls_end(&l);
    finish(&s, fds, t);

    /* verification failures say why, and are REJECTED (configuration, not an outage) */
    start(&s, sctx, 1, fds, &t);
    rc = uhlm_tls_connect(wrong, fds[0], "localhost", "test", uhlm_now() + 5.0, &l, &e);
    CHECKF(rc == UHLM_TLS_REJECTED && !l.ssl &&
           strstr(e.msg, "certificate verification failed: unable to get local issuer"),
           "rc %d: %s", rc, e.msg);
    finish(&s, fds, t);
    start(&s, sctx, 1, fds, &t);
    rc = uhlm_tls_connect(cctx, fds[0], "verifier.example", "test", uhlm_now() + 5.0, &l, &e);
    CHECKF(rc == UHLM_TLS_REJECTED && strstr(e.msg, "certificate verification failed") &&
           strstr(e.msg, "ostname mismatch"), "rc %d: %s", rc, e.msg);
    finish(&s, fds, t);
    start(&s, sctx, 1, fds, &t);
    rc = uhlm_tls_connect(cctx, fds[0], "127.0.0.1", "test", uhlm_now() + 5.0, &l, &e);
    CHECKF(rc == 0, "IP SAN: rc %d: %s", rc, e.msg); /* an address checks the IP SAN */
    uhlm_stream_tls_end(&l);
    finish(&s, fds, t);

    /* a plain uhlm peer is named; a silent one hits the deadline */
    start(&s, sctx, 2, fds, &t);
    rc = uhlm_tls_connect(cctx, fds[0], "localhost", "7474", uhlm_now() + 5.0, &l, &e);
    CHECKF(rc == UHLM_TLS_REJECTED && strstr(e.msg, "localhost:7474 is not a TLS server"),
           "rc %d: %s", rc, e.msg);
    finish(&s, fds, t);
    start(&s, sctx, 3, fds, &t);
    double t0 = uhlm_now();
    rc = uhlm_tls_connect(cctx, fds[0], "localhost", "7474", t0 + 0.3, &l, &e);
    double took = uhlm_now() - t0;
    CHECKF(rc == UHLM_TLS_FAILED && strstr(e.msg, "timed out") && took >= 0.25 && took < 2.0,
           "rc %d in %.2f s: %s", rc, took, e.msg);
    finish(&s, fds, t);

    /* the server side of a plain peer: its first bytes are recognised */
    start(&s, sctx, 3, fds, &t);
    static const char hello[] = "UHLM\1\0\1\0\4\0\0\0abcd";
    CHECK(send(fds[0], hello, sizeof hello - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof hello - 1));
    uhlm_stream sl = {fds[1], uhlm_tls_accept_new(sctx, fds[1])};
    short want;
    CHECK(uhlm_sock_wait(fds[1], POLLIN, uhlm_now() + 2.0) == 1);
    rc = uhlm_tls_handshake(&sl, &want, &e);
    CHECKF(rc == UHLM_TLS_REJECTED && uhlm_tls_peer_spoke_plain(&sl), "rc %d: %s", rc, e.msg);
    uhlm_stream_tls_end(&sl);
    finish(&s, fds, t);

    uhlm_tls_ctx_free(sctx);
    uhlm_tls_ctx_free(cctx);
    uhlm_tls_ctx_free(wrong);
    uhlm_tls_ctx_free(blind);
    EVP_PKEY *keys[] = {cak, ca2k, sk, ok};
    X509 *certs[] = {cax, ca2x, sx, ox};
    for (int i = 0; i < 4; i++) {
        EVP_PKEY_free(keys[i]);
        X509_free(certs[i]);
    }
    const char *names[] = {"ca.pem", "ca.key", "ca2.pem", "ca2.key", "srv.pem", "srv.key",
                           "other.pem", "other.key"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[256];
        path(p, sizeof p, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return check_report();
}
