/* bench_net.c: the load benchmarks' devices on loopback (see bench_net.h). */
#include "bench_net.h"

#include <math.h>
#include <stdio.h>

#include "net/socket.h"

int bench_connect(int port, const char *src, double timeout_s, uhlm_error *err) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    return uhlm_sock_connect("127.0.0.1", ps, src, timeout_s, err);
}

int bench_send_frame(int fd, uhlm_wire_buf *b) {
    return uhlm_sock_send_buf(fd, b, INFINITY, NULL, NULL) == 0 ? 0 : -1;
}

int bench_recv_frame(int fd, uint8_t *pay, uint32_t cap, uhlm_wire_msg *m, double timeout_s) {
    uhlm_wire_buf in = {pay, 0, cap}; /* fixed: never reallocated (socket.h) */
    return uhlm_sock_recv_msg(fd, uhlm_now() + timeout_s, &in, cap, NULL, m, NULL, NULL) == 0
               ? (int)m->type
               : -1;
}
