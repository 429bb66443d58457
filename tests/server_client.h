/* server_client.h: a raw wire-protocol client and an in-process server thread, shared by the
 * server tests (test_server*.c). Everything is static: each test includes what it uses. */
#ifndef UHLM_TEST_SERVER_CLIENT_H
#define UHLM_TEST_SERVER_CLIENT_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net/socket.h"
#include "uhlm/server.h"
#include "uhlm/wire.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

/* ------------------------------------------------------------------ raw client */

/* Every wait of the raw client ends after this many seconds: a server that stops answering
 * fails the test instead of hanging it. */
#define TC_TIMEOUT_S 20.0

/* A loopback connection from source address src (any 127.x.y.z: Linux routes the whole /8 to
 * lo, so tests can play several hosts); NULL = the kernel's choice. */
static int tc_connect_from(const char *src, int port) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    return uhlm_sock_connect("127.0.0.1", ps, src, TC_TIMEOUT_S, NULL);
}

static int tc_connect(int port) { return tc_connect_from(NULL, port); }

static int send_all(int fd, const void *p, size_t n) {
    return uhlm_sock_send_all(fd, p, n, uhlm_now() + TC_TIMEOUT_S, NULL, NULL) == 0 ? 0 : -1;
}

/* A received frame; the payload buffer backs the decoded message's pointers. */
typedef struct frame {
    uint8_t pay[1 << 16];
    uhlm_wire_msg m;
    int type; /* -1: EOF or error */
} frame;

static int recv_frame(int fd, frame *f) {
    uhlm_wire_buf in = {f->pay, 0, sizeof f->pay}; /* fixed: never reallocated (socket.h) */
    uhlm_error e;
    f->type = -1;
    int rc = uhlm_sock_recv_msg(fd, uhlm_now() + TC_TIMEOUT_S, &in, sizeof f->pay, NULL, &f->m,
                                NULL, &e);
    if (rc == UHLM_SOCK_BAD_FRAME) fprintf(stderr, "client: %s\n", e.msg);
    if (rc != 0) return -1;
    f->type = f->m.type;
    return f->type;
}

static int send_buf(int fd, uhlm_wire_buf *b) {
    return uhlm_sock_send_buf(fd, b, uhlm_now() + TC_TIMEOUT_S, NULL, NULL) == 0 ? 0 : -1;
}

/* Everything until the server closes the connection, as a string in buf[0..cap); its length,
 * or -1 when no EOF came. */
static ssize_t read_to_eof(int fd, char *buf, size_t cap) {
    ssize_t n = uhlm_sock_read_to_eof(fd, buf, cap - 1, uhlm_now() + TC_TIMEOUT_S);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

/* Waits for EOF (the server closed this connection); 0 when it came. */
static int expect_eof(int fd) {
    return uhlm_sock_read_to_eof(fd, NULL, 0, uhlm_now() + TC_TIMEOUT_S) >= 0 ? 0 : -1;
}

static int do_hello(int fd, const char *auth, uint32_t vocab, uint64_t fp, frame *f) {
    uhlm_wire_buf b = {0};
    uhlm_error e;
    uhlm_wire_hello h = {1, fp, vocab, {(const uint8_t *)auth, auth ? (uint32_t)strlen(auth) : 0},
                         uhlm_wire_cstr("test")};
    int rc = uhlm_wire_encode_hello(&b, &h, &e) == 0 ? send_buf(fd, &b) : -1;
    uhlm_wire_buf_free(&b);
    return rc == 0 ? recv_frame(fd, f) : -1;
}

static int do_open(int fd, uint32_t mode, float temp, const int *prompt, uint32_t n, frame *f) {
    uhlm_wire_buf b = {0};
    uhlm_error e;
    uhlm_wire_open o = {mode, temp, 0, 1.0f, 7, {prompt, NULL, n}};
    int rc = uhlm_wire_encode_open(&b, &o, NULL, &e) == 0 ? send_buf(fd, &b) : -1;
    uhlm_wire_buf_free(&b);
    return rc == 0 ? recv_frame(fd, f) : -1;
}

static int is_error(const frame *f, int code, int fatal) {
    return f->type == UHLM_WIRE_ERROR && f->m.u.error.code == code &&
           !!(f->m.u.error.flags & UHLM_WIRE_EF_FATAL) == fatal;
}

/* ------------------------------------------------------------------ the server thread */

typedef struct srv {
    uhlm_server *s;
    pthread_t th;
    int rc;
    uhlm_error err;
} srv;

static void *srv_main(void *arg) {
    srv *x = arg;
    x->rc = uhlm_server_run(x->s, &x->err);
    return NULL;
}

static int srv_start(srv *x, const uhlm_model *m, const uhlm_server_params *p) {
    memset(x, 0, sizeof *x);
    x->s = uhlm_server_new(m, p, &x->err);
    if (!x->s) {
        fprintf(stderr, "server: %s\n", x->err.msg);
        return -1;
    }
    return pthread_create(&x->th, NULL, srv_main, x);
}

static void srv_stop(srv *x) {
    uhlm_server_stop(x->s);
    pthread_join(x->th, NULL);
}

#endif
