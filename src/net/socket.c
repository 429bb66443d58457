/* socket.c: the TCP plumbing of net/ (socket.h). */
#include "net/socket.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int uhlm_sock_set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void set_nodelay(int fd) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int uhlm_sock_listen(const char *host, int port, int *bound, uhlm_error *err) {
    const char *h = host ? host : "127.0.0.1";
    char pstr[16];
    snprintf(pstr, sizeof pstr, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(h, pstr, &hints, &res);
    if (gai != 0) return uhlm_set_error(err, "server: cannot resolve %s: %s", h, gai_strerror(gai));
    int fd = -1, e = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0 &&
            uhlm_sock_set_nonblock(fd) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return uhlm_set_error(err, "server: cannot listen on %s:%d: %s", h, port, strerror(e));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        e = errno;
        close(fd);
        return uhlm_set_error(err, "server: getsockname: %s", strerror(e));
    }
    *bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int uhlm_sock_is_loopback(const char *host) {
    if (!host) return 1;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, "0", &hints, &res) != 0) return -1;
    int lo = 1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            uint32_t v = ntohl(((const struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr);
            lo &= (v >> 24) == 127;
        } else if (a->ai_family == AF_INET6) {
            const struct in6_addr *v = &((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
            lo &= IN6_IS_ADDR_LOOPBACK(v) || (IN6_IS_ADDR_V4MAPPED(v) && v->s6_addr[12] == 127);
        } else {
            lo = 0;
        }
    }
    freeaddrinfo(res);
    return lo;
}

int uhlm_sock_accept(int lfd, char *peer, size_t peer_cap, char *addr, size_t addr_cap) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd;
    do fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    char hbuf[48] = "?", sbuf[8];
    int named = getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof hbuf, sbuf, sizeof sbuf,
                            NI_NUMERICHOST | NI_NUMERICSERV) == 0;
    if (!named) snprintf(hbuf, sizeof hbuf, "?");
    if (peer && named)
        snprintf(peer, peer_cap, "%s:%s", hbuf, sbuf);
    else if (peer)
        snprintf(peer, peer_cap, "?");
    if (addr) snprintf(addr, addr_cap, "%s", hbuf);
    set_nodelay(fd);
    return fd;
}

int uhlm_sock_wait(int fd, short ev, double deadline) {
    for (;;) {
        double left = deadline - uhlm_now();
        if (left <= 0.0) return 0;
        double ms = ceil(left * 1000.0);
        struct pollfd pfd = {fd, ev, 0};
        int n = poll(&pfd, 1, ms > (double)INT_MAX ? INT_MAX : (int)ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n > 0) return 1;
    }
}

/* Binds fd to the numeric local address src (any port). */
static int bind_source(int fd, int family, const char *src) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    if (getaddrinfo(src, "0", &hints, &res) != 0) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    int rc = bind(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return rc;
}

/* Connects fd (non-blocking) to a by the deadline: 0, 1 at the deadline, -1 (errno). */
static int connect_by(int fd, const struct addrinfo *a, double deadline) {
    int rc;
    do rc = connect(fd, a->ai_addr, a->ai_addrlen);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) return 0;
    if (errno != EINPROGRESS) return -1;
    int w = uhlm_sock_wait(fd, POLLOUT, deadline);
    if (w == 0) return 1;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
    errno = soerr;
    return soerr ? -1 : 0;
}

int uhlm_sock_connect(const char *host, const char *port, const char *src, double timeout_s,
                      uhlm_error *err) {
    double deadline = uhlm_now() + timeout_s;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        return uhlm_set_error(err, "cannot resolve %s:%s: %s", host, port, gai_strerror(gai));
    int fd = -1;
    uhlm_set_error(err, "cannot connect to %s:%s", host, port);
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            uhlm_set_error(err, "socket: %s", strerror(errno));
            continue;
        }
        if (uhlm_sock_set_nonblock(fd) != 0) {
            uhlm_set_error(err, "fcntl: %s", strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        if (src && bind_source(fd, a->ai_family, src) != 0) {
            uhlm_set_error(err, "bind to %s: %s", src, strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        int rc = connect_by(fd, a, deadline);
        if (rc == 1) {
            uhlm_set_error(err, "connect to %s:%s timed out after %g s", host, port, timeout_s);
            close(fd);
            fd = -1;
            break; /* the deadline covers all addresses */
        }
        if (rc < 0) {
            uhlm_set_error(err, "connect to %s:%s: %s", host, port, strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        break;
    }
    freeaddrinfo(res);
    if (fd >= 0) set_nodelay(fd);
    return fd;
}

/* Moves exactly n bytes by the deadline: sends them when out, else receives them. A TLS link
 * may need the other direction's readiness first (want), which the wait honours. */
static int move_all(uhlm_stream *l, uint8_t *p, size_t n, int out, double deadline,
                    uint64_t *bytes, uhlm_error *err) {
    while (n > 0) {
        short want = out ? POLLOUT : POLLIN;
        ssize_t k = out ? uhlm_stream_write(l, p, n, &want) : uhlm_stream_read(l, p, n, &want);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            if (bytes) *bytes += (uint64_t)k;
            continue;
        }
        if (k == 0 && !out) {
            uhlm_set_error(err, "the peer closed the connection");
            return UHLM_SOCK_CLOSED;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = uhlm_sock_wait(l->fd, want, deadline);
            if (w > 0) continue;
            if (w == 0) {
                uhlm_set_error(err, "%s timed out", out ? "send" : "receive");
                return UHLM_SOCK_TIMEOUT;
            }
        }
        if (l->ssl && errno == EPROTO) {
            char why[200];
            uhlm_stream_error(why, sizeof why);
            uhlm_set_error(err, "TLS %s: %s", out ? "send" : "receive", why);
        } else {
            uhlm_set_error(err, "%s: %s", out ? "send" : "recv", strerror(errno));
        }
        return UHLM_SOCK_IO;
    }
    return UHLM_SOCK_OK;
}

int uhlm_stream_send_all(uhlm_stream *l, const void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err) {
    /* move_all only reads through p when sending */
    return move_all(l, (uint8_t *)(uintptr_t)p, n, 1, deadline, bytes, err);
}

int uhlm_stream_recv_all(uhlm_stream *l, void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err) {
    return move_all(l, p, n, 0, deadline, bytes, err);
}

int uhlm_sock_send_all(int fd, const void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err) {
    uhlm_stream l = {fd, NULL};
    return uhlm_stream_send_all(&l, p, n, deadline, bytes, err);
}

int uhlm_sock_recv_all(int fd, void *p, size_t n, double deadline, uint64_t *bytes,
                       uhlm_error *err) {
    uhlm_stream l = {fd, NULL};
    return uhlm_stream_recv_all(&l, p, n, deadline, bytes, err);
}

ssize_t uhlm_sock_read_to_eof(int fd, void *buf, size_t cap, double deadline) {
    uint8_t sink[4096], *b = buf;
    size_t got = 0;
    for (;;) {
        uint8_t *dst = got < cap ? b + got : sink;
        size_t room = got < cap ? cap - got : sizeof sink;
        ssize_t k = recv(fd, dst, room, 0);
        if (k > 0) {
            if (got < cap) got += (size_t)k;
            continue;
        }
        if (k == 0 || errno == ECONNRESET) return (ssize_t)got;
        if (errno == EINTR) continue;
        if ((errno != EAGAIN && errno != EWOULDBLOCK) || uhlm_sock_wait(fd, POLLIN, deadline) <= 0)
            return -1;
    }
}

int uhlm_stream_send_buf(uhlm_stream *l, uhlm_wire_buf *b, double deadline, uint64_t *bytes,
                       uhlm_error *err) {
    int rc = uhlm_stream_send_all(l, b->data, b->len, deadline, bytes, err);
    b->len = 0;
    return rc;
}

int uhlm_stream_recv_frame(uhlm_stream *l, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                         uhlm_wire_header *h, uint64_t *bytes, uhlm_error *err) {
    uint8_t hdr[UHLM_WIRE_HEADER_SIZE];
    int rc = uhlm_stream_recv_all(l, hdr, sizeof hdr, deadline, bytes, err);
    if (rc != UHLM_SOCK_OK) return rc;
    uhlm_error e = {{0}};
    if (uhlm_wire_frame_header_parse(hdr, sizeof hdr, h, max_len, &e) != 0) {
        uhlm_set_error(err, "bad frame: %s", e.msg);
        return UHLM_SOCK_BAD_FRAME;
    }
    in->len = 0;
    if (uhlm_wire_buf_reserve(in, h->len, &e) != 0) {
        uhlm_set_error(err, "out of memory for a %u-byte frame", (unsigned)h->len);
        return UHLM_SOCK_NOMEM;
    }
    if (h->len > 0 && (rc = uhlm_stream_recv_all(l, in->data, h->len, deadline, bytes, err)) != 0)
        return rc;
    in->len = h->len;
    return UHLM_SOCK_OK;
}

int uhlm_stream_recv_msg(uhlm_stream *l, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                       const uhlm_wire_limits *lim, uhlm_wire_msg *m, uint64_t *bytes,
                       uhlm_error *err) {
    uhlm_wire_header h;
    int rc = uhlm_stream_recv_frame(l, deadline, in, max_len, &h, bytes, err);
    if (rc != UHLM_SOCK_OK) return rc;
    uhlm_error e = {{0}};
    if (uhlm_wire_decode(h.type, in->data, h.len, lim, m, &e) != 0) {
        uhlm_set_error(err, "bad %s: %s", uhlm_wire_type_name(h.type), e.msg);
        return UHLM_SOCK_BAD_FRAME;
    }
    return UHLM_SOCK_OK;
}

int uhlm_sock_send_buf(int fd, uhlm_wire_buf *b, double deadline, uint64_t *bytes,
                       uhlm_error *err) {
    uhlm_stream l = {fd, NULL};
    return uhlm_stream_send_buf(&l, b, deadline, bytes, err);
}

int uhlm_sock_recv_frame(int fd, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                         uhlm_wire_header *h, uint64_t *bytes, uhlm_error *err) {
    uhlm_stream l = {fd, NULL};
    return uhlm_stream_recv_frame(&l, deadline, in, max_len, h, bytes, err);
}

int uhlm_sock_recv_msg(int fd, double deadline, uhlm_wire_buf *in, uint32_t max_len,
                       const uhlm_wire_limits *lim, uhlm_wire_msg *m, uint64_t *bytes,
                       uhlm_error *err) {
    uhlm_stream l = {fd, NULL};
    return uhlm_stream_recv_msg(&l, deadline, in, max_len, lim, m, bytes, err);
}
