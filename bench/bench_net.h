/* bench_net.h: the plumbing of the load benchmarks (bench serve, bench soak): the server in a
 * thread of the same process, and devices on loopback over the socket module
 * (src/net/socket.h) with the benchmarks' timeouts. */
#ifndef UHLM_BENCH_NET_H
#define UHLM_BENCH_NET_H

#include <pthread.h>
#include <stdint.h>

#include "uhlm/server.h"
#include "uhlm/wire.h"

/* A server in a thread of this process: uhlm_server_run(s) until bench_server_stop. */
typedef struct bench_server {
    uhlm_server *s; /* made by the caller; freed by the caller after the stop */
    pthread_t th;
    int rc; /* uhlm_server_run's, with err */
    uhlm_error err;
} bench_server;

/* Starts the thread; 0 or -1. */
int bench_server_start(bench_server *b);
/* Stops the server and waits for its thread. */
void bench_server_stop(bench_server *b);

/* A connection to the server at 127.0.0.1:port from source address src (NULL: the kernel's
 * choice; any 127.x.y.z plays another host), within timeout_s. The fd, or -1 (err says why). */
int bench_connect(int port, const char *src, double timeout_s, uhlm_error *err);
/* Sends b's bytes whole and empties b; as a device with a blocking socket, it waits as long as
 * the server takes to read them. 0 or -1. */
int bench_send_frame(int fd, uhlm_wire_buf *b);
/* Reads one frame of at most cap payload bytes into pay and decodes it into m, within
 * timeout_s. Its type, or -1 on EOF, timeout, an error or an undecodable frame. */
int bench_recv_frame(int fd, uint8_t *pay, uint32_t cap, uhlm_wire_msg *m, double timeout_s);

#endif
