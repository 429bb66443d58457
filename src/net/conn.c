/* conn.c: a server connection's transport (conn.h). */
#include "net/conn.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

ssize_t uhlm_conn_recv(conn *c, void *dst, size_t want) {
    if (!c->mem_out) {
        uhlm_stream l = {c->fd, c->ssl};
        return uhlm_stream_read(&l, dst, want, &c->rd_want);
    }
    size_t n = c->mem_len - c->mem_off < want ? c->mem_len - c->mem_off : want;
    if (n == 0) {
        errno = EAGAIN;
        return -1;
    }
    memcpy(dst, c->mem_in + c->mem_off, n);
    c->mem_off += n;
    return (ssize_t)n;
}

int uhlm_conn_send(conn *c, const char **why) {
    if (c->mem_out) {
        uhlm_error e;
        size_t n = c->out.len - c->out_off;
        if (n && uhlm_wire_buf_reserve(c->mem_out, n, &e) != 0) {
            *why = "out_of_memory";
            return -1;
        }
        if (n) memcpy(c->mem_out->data + c->mem_out->len, c->out.data + c->out_off, n);
        c->mem_out->len += n;
        c->out_off = c->out.len;
    }
    uhlm_stream l = {c->fd, c->ssl};
    while (c->out_off < c->out.len) {
        ssize_t w = uhlm_stream_write(&l, c->out.data + c->out_off, c->out.len - c->out_off,
                                    &c->wr_want);
        if (w > 0) {
            c->out_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 1;
        } else {
            *why = "send_failed";
            return -1;
        }
    }
    c->out.len = 0;
    c->out_off = 0;
    return 0;
}

/* A whole header is in c->hdr: parse it and get ready for its payload. */
static int header_done(conn *c, uint32_t max_frame, int *code, uhlm_error *err) {
    int rc = uhlm_wire_frame_header_parse(c->hdr, UHLM_WIRE_HEADER_SIZE, &c->h, max_frame, err);
    c->hdr_got = 0;
    c->pay_got = 0;
    if (rc == -UHLM_WIRE_E_UNKNOWN_TYPE) {
        c->in_payload = 1;
        c->skipping = 1;
        return 0;
    }
    if (rc != 0) {
        *code = -rc;
        return -1;
    }
    if (c->h.len > c->pay_cap) {
        uint8_t *np = realloc(c->pay, c->h.len);
        if (!np) {
            *code = UHLM_WIRE_E_INTERNAL;
            uhlm_set_error(err, "out of memory");
            return -1;
        }
        c->pay = np;
        c->pay_cap = c->h.len;
    }
    c->in_payload = 1;
    c->skipping = 0;
    return 0;
}

int uhlm_conn_read_frame(conn *c, uint32_t max_frame, int *code, uhlm_error *err,
                         const char **why) {
    for (;;) {
        uint8_t *dst;
        size_t want;
        uint8_t sink[4096];
        if (!c->in_payload) {
            dst = c->hdr + c->hdr_got;
            want = UHLM_WIRE_HEADER_SIZE - c->hdr_got;
        } else if (c->skipping) {
            dst = sink;
            want = c->h.len - c->pay_got < sizeof sink ? c->h.len - c->pay_got : sizeof sink;
        } else {
            dst = c->pay + c->pay_got;
            want = c->h.len - c->pay_got;
        }
        ssize_t r = want ? uhlm_conn_recv(c, dst, want) : 0;
        if (want && r < 0 && errno == EINTR) continue;
        if (want && r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return UHLM_CONN_AGAIN;
        if (want && r <= 0) {
            int mid = c->hdr_got > 0 || c->in_payload;
            *why = r < 0 ? (c->ssl && errno == EPROTO ? "tls_error" : "recv_failed")
                         : mid ? "vanished_mid_frame" : "eof";
            return UHLM_CONN_GONE;
        }
        if (!c->in_payload) {
            c->hdr_got += (size_t)r;
            if (c->hdr_got < UHLM_WIRE_HEADER_SIZE) continue;
            if (header_done(c, max_frame, code, err) != 0) return UHLM_CONN_BAD;
        } else {
            c->pay_got += (size_t)r;
        }
        if (c->in_payload && c->pay_got == c->h.len) {
            c->in_payload = 0;
            c->last_rx = uhlm_now();
            if (!c->skipping) return UHLM_CONN_FRAME;
            c->skipping = 0;
            return UHLM_CONN_SKIPPED;
        }
    }
}

int uhlm_conn_drain(conn *c) {
    uint8_t sink[4096];
    for (;;) {
        ssize_t r = recv(c->fd, sink, sizeof sink, 0);
        if (r > 0) continue;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return 1;
    }
}

int uhlm_conn_tls_step(conn *c, int *plain, uhlm_error *err) {
    uhlm_stream l = {c->fd, c->ssl};
    *plain = 0;
    int rc = uhlm_tls_handshake(&l, &c->rd_want, err);
    if (rc == UHLM_TLS_DONE) {
        c->tls_hs = 0;
        c->rd_want = POLLIN;
        return 0;
    }
    if (rc == UHLM_TLS_AGAIN) return 1;
    *plain = uhlm_tls_peer_spoke_plain(&l);
    return -1;
}

int uhlm_conn_tls_pending(const conn *c) {
    uhlm_stream l = {c->fd, c->ssl};
    return !c->tls_hs && uhlm_stream_pending(&l);
}

void uhlm_conn_close(conn *c) {
    uhlm_stream l = {c->fd, c->ssl};
    uhlm_stream_tls_end(&l); /* close_notify only after a finished handshake */
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

void uhlm_conn_free(conn *c) {
    uhlm_conn_close(c);
    free(c->pay);
    uhlm_wire_buf_free(&c->out);
    free(c);
}
