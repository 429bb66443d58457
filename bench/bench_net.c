/* bench_net.c: framed blocking socket I/O of the load benchmarks (see bench_net.h). */
#include "bench_net.h"

#include <errno.h>
#include <sys/socket.h>

int bench_send_frame(int fd, uhlm_wire_buf *b) {
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    b->len = 0;
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

int bench_recv_frame(int fd, uint8_t *pay, uint32_t cap, uhlm_wire_msg *m) {
    uint8_t h[UHLM_WIRE_HEADER_SIZE];
    uhlm_wire_header hd;
    uhlm_error e;
    if (read_all(fd, h, sizeof h) != 0 ||
        uhlm_wire_frame_header_parse(h, sizeof h, &hd, cap, &e) != 0 ||
        read_all(fd, pay, hd.len) != 0 || uhlm_wire_decode(hd.type, pay, hd.len, NULL, m, &e) != 0)
        return -1;
    return hd.type;
}
