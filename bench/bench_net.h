/* bench_net.h: the load benchmarks' (bench serve, bench soak) devices on loopback, over the
 * socket module (src/net/socket.h) with the benchmarks' timeouts. */
#ifndef UHLM_BENCH_NET_H
#define UHLM_BENCH_NET_H

#include <stdint.h>

#include "uhlm/wire.h"

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
