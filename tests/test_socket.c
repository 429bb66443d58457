/* test_socket.c: the socket module (src/net/socket.h) that the server, the remote verifier,
 * the benchmarks and the tests share, on loopback: listen and accept with the peer's address,
 * connect from a chosen source address, a refused connection, one frame through a fixed
 * buffer with the byte counters, the deadlines of receive and send, a frame over the size
 * limit, EOF in the middle of a frame, and reading to EOF. */
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "net/socket.h"
#include "uhlm/wire.h"

/* A connected pair on loopback: *cl the client end, *sv the server's; the listening fd. */
static int pair(const char *src, int *cl, int *sv, char *addr, size_t addr_cap) {
    uhlm_error e;
    int port = 0;
    int lfd = uhlm_sock_listen("127.0.0.1", 0, &port, &e);
    CHECKF(lfd >= 0 && port > 0, "listen: %s", e.msg);
    if (lfd < 0) return -1;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    *cl = uhlm_sock_connect("127.0.0.1", ps, src, 2.0, &e);
    CHECKF(*cl >= 0, "connect: %s", e.msg);
    CHECK(uhlm_sock_wait(lfd, POLLIN, uhlm_now() + 2.0) == 1);
    char peer[64];
    *sv = uhlm_sock_accept(lfd, peer, sizeof peer, addr, addr_cap);
    CHECK(*sv >= 0 && strncmp(peer, addr, strlen(addr)) == 0 && strchr(peer, ':'));
    return lfd;
}

static void test_frame_and_counters(void) {
    int cl = -1, sv = -1;
    char addr[48] = "";
    int lfd = pair(NULL, &cl, &sv, addr, sizeof addr);
    CHECK(lfd >= 0 && !strcmp(addr, "127.0.0.1"));
    uhlm_wire_buf b = {0};
    uhlm_error e;
    CHECK(uhlm_wire_encode_ping(&b, UHLM_WIRE_PING, 0x1234567890abcdefULL, &e) == 0);
    size_t n = b.len;
    uint64_t sent = 0, got = 0;
    CHECK(uhlm_sock_send_buf(cl, &b, uhlm_now() + 2.0, &sent, &e) == UHLM_SOCK_OK);
    CHECK(b.len == 0 && sent == n);
    /* a caller's fixed buffer stands in for a growing one */
    uint8_t pay[64];
    uhlm_wire_buf in = {pay, 0, sizeof pay};
    uhlm_wire_msg m;
    CHECKF(uhlm_sock_recv_msg(sv, uhlm_now() + 2.0, &in, sizeof pay, NULL, &m, &got, &e) == 0, "%s",
           e.msg);
    CHECK(in.data == pay && got == n && m.type == UHLM_WIRE_PING &&
          m.u.nonce == 0x1234567890abcdefULL);

    /* nothing more is coming: the deadline ends the wait, and not much later */
    double t0 = uhlm_now();
    int rc = uhlm_sock_recv_msg(sv, t0 + 0.1, &in, sizeof pay, NULL, &m, NULL, &e);
    double dt = uhlm_now() - t0;
    CHECKF(rc == UHLM_SOCK_TIMEOUT && dt >= 0.09 && dt < 1.5, "rc %d after %g s", rc, dt);

    /* a frame announcing more than the limit is refused from its header */
    uint8_t hdr[UHLM_WIRE_HEADER_SIZE];
    uhlm_wire_header_write(hdr, UHLM_WIRE_PING, 1000);
    CHECK(uhlm_sock_send_all(cl, hdr, sizeof hdr, uhlm_now() + 2.0, NULL, NULL) == 0);
    CHECK(uhlm_sock_recv_msg(sv, uhlm_now() + 2.0, &in, sizeof pay, NULL, &m, NULL, &e) ==
          UHLM_SOCK_BAD_FRAME);

    /* a growing buffer takes it; the peer then vanishes in the middle of the next frame */
    uhlm_wire_buf grow = {0};
    uhlm_wire_header h;
    uint8_t body[1000] = {0};
    uhlm_wire_header_write(hdr, UHLM_WIRE_PING, 1000);
    CHECK(uhlm_sock_send_all(cl, hdr, sizeof hdr, uhlm_now() + 2.0, NULL, NULL) == 0);
    CHECK(uhlm_sock_send_all(cl, body, sizeof body, uhlm_now() + 2.0, NULL, NULL) == 0);
    CHECK(uhlm_sock_recv_frame(sv, uhlm_now() + 2.0, &grow, 0, &h, NULL, &e) == 0 &&
          h.len == 1000 && grow.len == 1000 && grow.cap >= 1000);
    CHECK(uhlm_sock_send_all(cl, hdr, sizeof hdr, uhlm_now() + 2.0, NULL, NULL) == 0);
    CHECK(uhlm_sock_send_all(cl, body, 10, uhlm_now() + 2.0, NULL, NULL) == 0);
    close(cl);
    CHECK(uhlm_sock_recv_frame(sv, uhlm_now() + 2.0, &grow, 0, &h, NULL, &e) == UHLM_SOCK_CLOSED);
    uhlm_wire_buf_free(&grow);
    uhlm_wire_buf_free(&b);
    close(sv);
    close(lfd);
}

/* Nobody reads: the send buffers fill and the deadline ends the send. */
static void test_send_deadline(void) {
    int cl = -1, sv = -1;
    char addr[48];
    int lfd = pair(NULL, &cl, &sv, addr, sizeof addr);
    size_t n = 64u << 20;
    uint8_t *big = calloc(1, n);
    uint64_t sent = 0;
    uhlm_error e;
    double t0 = uhlm_now();
    int rc = big ? uhlm_sock_send_all(cl, big, n, t0 + 0.2, &sent, &e) : -99;
    double dt = uhlm_now() - t0;
    CHECKF(rc == UHLM_SOCK_TIMEOUT && sent > 0 && sent < n && dt < 2.0, "rc %d, %llu bytes, %g s",
           rc, (unsigned long long)sent, dt);
    free(big);
    close(cl);
    close(sv);
    close(lfd);
}

static void test_source_refused_eof(void) {
    /* a chosen source address is what the server sees (Linux routes 127/8 to lo) */
    int cl = -1, sv = -1;
    char addr[48] = "";
    int lfd = pair("127.0.0.7", &cl, &sv, addr, sizeof addr);
    CHECKF(!strcmp(addr, "127.0.0.7"), "accepted from %s", addr);

    /* reading to EOF keeps what fits and drops the rest */
    const char *msg = "hello, world";
    CHECK(uhlm_sock_send_all(sv, msg, strlen(msg), uhlm_now() + 2.0, NULL, NULL) == 0);
    close(sv);
    char got[6] = {0};
    CHECK(uhlm_sock_read_to_eof(cl, got, 5, uhlm_now() + 2.0) == 5 && !memcmp(got, "hello", 5));
    close(cl);

    /* a port nobody listens on any more: refused, and said so */
    int port = 0;
    uhlm_error e;
    int l2 = uhlm_sock_listen(NULL, 0, &port, &e);
    CHECK(l2 >= 0);
    close(l2);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    e.msg[0] = 0;
    CHECK(uhlm_sock_connect("127.0.0.1", ps, NULL, 2.0, &e) == -1);
    CHECKF(strstr(e.msg, "connect to 127.0.0.1:") && strstr(e.msg, "refused"), "%s", e.msg);
    close(lfd);
}

int main(void) {
    test_frame_and_counters();
    test_send_deadline();
    test_source_refused_eof();
    return check_report();
}
