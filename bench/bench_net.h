/* bench_net.h: the framed blocking socket I/O that the load benchmarks (bench serve, bench soak)
 * use to play devices against a uhlm server on loopback. */
#ifndef UHLM_BENCH_NET_H
#define UHLM_BENCH_NET_H

#include <stdint.h>

#include "uhlm/wire.h"

/* Sends b's bytes whole (retrying on EINTR, no SIGPIPE) and empties b. 0 or -1. */
int bench_send_frame(int fd, uhlm_wire_buf *b);
/* Reads one frame of at most cap payload bytes into pay and decodes it into m. Its type, or -1
 * on EOF, timeout, an error or an undecodable frame. */
int bench_recv_frame(int fd, uint8_t *pay, uint32_t cap, uhlm_wire_msg *m);

#endif
