/* bench_net.c: the plumbing of the load benchmarks (see bench_net.h). */
#include "bench_net.h"

#include <math.h>
#include <stdio.h>

#include "net/socket.h"

static void *server_main(void *arg) {
    bench_server *b = arg;
    b->rc = uhlm_server_run(b->s, &b->err);
    return NULL;
}

int bench_server_start(bench_server *b) {
    return pthread_create(&b->th, NULL, server_main, b) == 0 ? 0 : -1;
}

void bench_server_stop(bench_server *b) {
    uhlm_server_stop(b->s);
    pthread_join(b->th, NULL);
}

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
