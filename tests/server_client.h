/* server_client.h: a raw wire-protocol client and an in-process server thread, shared by the
 * server tests (test_server*.c). Everything is static: each test includes what it uses. */
#ifndef UHLM_TEST_SERVER_CLIENT_H
#define UHLM_TEST_SERVER_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "uhlm/server.h"
#include "uhlm/wire.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

/* ------------------------------------------------------------------ raw client */

/* A loopback connection from source address src (any 127.x.y.z: Linux routes the whole /8 to
 * lo, so tests can play several hosts); NULL = the kernel's choice. */
static int tc_connect_from(const char *src, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (src) {
        struct sockaddr_in b;
        memset(&b, 0, sizeof b);
        b.sin_family = AF_INET;
        if (inet_pton(AF_INET, src, &b.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&b, sizeof b) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int tc_connect(int port) { return tc_connect_from(NULL, port); }

static int send_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* A received frame; the payload buffer backs the decoded message's pointers. */
typedef struct frame {
    uint8_t pay[1 << 16];
    uhlm_wire_msg m;
    int type; /* -1: EOF or error */
} frame;

static int recv_frame(int fd, frame *f) {
    uint8_t h[UHLM_WIRE_HEADER_SIZE];
    uhlm_wire_header hd;
    uhlm_error e;
    f->type = -1;
    if (recv_all(fd, h, sizeof h) != 0) return -1;
    if (uhlm_wire_frame_header_parse(h, sizeof h, &hd, sizeof f->pay, &e) != 0) return -1;
    if (recv_all(fd, f->pay, hd.len) != 0) return -1;
    if (uhlm_wire_decode(hd.type, f->pay, hd.len, NULL, &f->m, &e) != 0) {
        fprintf(stderr, "client: undecodable %s: %s\n", uhlm_wire_type_name(hd.type), e.msg);
        return -1;
    }
    f->type = hd.type;
    return f->type;
}

static int send_buf(int fd, uhlm_wire_buf *b) {
    int rc = send_all(fd, b->data, b->len);
    b->len = 0;
    return rc;
}

/* Waits for EOF (the server closed this connection); 0 when it came. */
static int expect_eof(int fd) {
    uint8_t b[256];
    for (;;) {
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0) return 0;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno == ECONNRESET ? 0 : -1;
    }
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
