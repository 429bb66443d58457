/* server.c: the multi-session verification server (server.h, docs/protocol.md).
 *
 * Shape: one thread, one poll() loop. Each connection is a small state machine that reads
 * exactly one frame at a time (header, then the payload it announced) into its own buffer,
 * and is not read again until its reply has been sent, so the protocol's lock-step is also
 * the server's back-pressure. VERIFY and GENERATE are validated completely when they arrive
 * (so a refusal has no effect) and queued; the compute step turns the queue into one
 * uhlm_decode and the replies. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "uhlm/sampler.h"
#include "uhlm/server.h"
#include "uhlm/tokenizer.h"
#include "uhlm/verify.h"
#include "uhlm/wire.h"

#define LAT_RING 4096   /* latency samples kept for the percentiles */
#define HTTP_MAX_REQ 4096
#define CLOSE_GRACE_S 1.0 /* how long a closing connection may take to drain its last frame */
#define N_HIST 8          /* batch-size buckets: 1, 2, 4, ..., 64, +Inf */

enum { K_DEVICE, K_HTTP };
enum { CS_HELLO, CS_READY };

typedef struct session {
    int in_use;
    int seq; /* the ctx sequence (== index in the slot array) */
    uint64_t id;
    uint32_t mode;
    uhlm_sampling s;
    int *committed; /* max_ctx; beyond n_committed: a queued request's staged catch-up */
    int n_committed;
    float *x; /* the queued VERIFY's decoded x̃ */
    uint64_t n_verify, n_accept;
} session;

/* The one request a connection may have in the compute queue. */
typedef struct job {
    int active;
    uint16_t type; /* VERIFY or GENERATE */
    uint32_t request_id;
    int n_catchup; /* staged at committed[n_committed ..] until the first forward */
    int first;     /* the catch-up has not been fed yet */
    int draft, greedy;
    uint64_t draw_seed;
    int n_gen, stop_eos, start, n_out; /* GENERATE */
    double t_arrive, ready_at;
    uhlm_wire_cost cost;
} job;

typedef struct conn {
    int fd, kind, state, dead, closing;
    int draining; /* closing, write side shut: reading until EOF so the close sends no RST */
    uint64_t id;
    char peer[64];
    uint8_t hdr[UHLM_WIRE_HEADER_SIZE];
    size_t hdr_got;
    uhlm_wire_header h;
    int in_payload, skipping; /* skipping: an UNKNOWN_TYPE payload being discarded */
    uint8_t *pay;
    size_t pay_cap, pay_got;
    double last_rx, close_deadline;
    uhlm_wire_buf out;
    size_t out_off;
    session *sess;
    job job;
} conn;

struct uhlm_server {
    uhlm_server_params p;
    const uhlm_model *m;
    uhlm_ctx *ctx;
    int V, n_ctx;
    uint64_t fingerprint;
    char model_name[256];
    uhlm_wire_limits lim, lim_open;
    uint32_t max_frame, max_batch_tokens;
    int lfd, sfd, stop_r, stop_w;
    int bound_port, bound_stats_port;
    session *slots;
    conn **conns;
    int n_conns;
    struct pollfd *pfds;
    conn **pconn; /* conn of each pollfd, NULL for the server's own fds */
    uhlm_batch_entry *batch;
    float *logits, *y;
    conn **qjobs;
    int *kvb, *seqtok; /* per queued job: cache length before the step, tokens fed */
    uint64_t next_conn_id, next_session_id, nonce_state;
    double t_start;
    /* stats */
    uint64_t c_conns, c_sessions, c_verify, c_accept, c_gen_tokens, c_forwards, c_batched;
    uint64_t c_batch_tokens, c_errors, c_opens;
    uint64_t err_by_code[UHLM_WIRE_E_MAX + 1];
    uint64_t hist[N_HIST];
    double lat[LAT_RING];
    uint64_t n_lat;
};

/* ------------------------------------------------------------------ logging */

static void logf_(uhlm_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(uhlm_server *s, const char *fmt, ...) {
    if (!s->p.log) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[1024];
    int n = snprintf(line, sizeof line, "ts=%lld.%03ld ", (long long)ts.tv_sec,
                     ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* one fputs per line so that lines from several processes sharing stderr stay whole */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = 0;
    }
    fputs(line, s->p.log);
    fflush(s->p.log);
}

/* Untrusted text (client names, error details) as a log value with no spaces or quotes. */
static void log_safe(char *dst, size_t cap, const char *src, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[j++] = (ch > 32 && ch < 127 && ch != '"' && ch != '=') ? (char)ch : '_';
    }
    dst[j] = 0;
}

/* ------------------------------------------------------------------ helpers */

uhlm_server_params uhlm_server_default_params(void) {
    uhlm_server_params p;
    memset(&p, 0, sizeof p);
    p.host = NULL;
    p.port = 0;
    p.stats_port = -1;
    p.max_sessions = 16;
    p.batch_window_us = 1000;
    p.batching = 1;
    p.idle_timeout_ms = 60000;
    return p;
}

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int listen_on(const char *host, int port, int *bound, uhlm_error *err) {
    char pstr[16];
    snprintf(pstr, sizeof pstr, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host ? host : "127.0.0.1", pstr, &hints, &res);
    if (gai != 0)
        return uhlm_set_error(err, "server: cannot resolve %s: %s", host ? host : "127.0.0.1",
                              gai_strerror(gai));
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
            set_nonblock(fd) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return uhlm_set_error(err, "server: cannot listen on %s:%d: %s",
                              host ? host : "127.0.0.1", port, strerror(e));
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

/* ------------------------------------------------------------------ lifecycle */

void uhlm_server_free(uhlm_server *s) {
    if (!s) return;
    for (int i = 0; i < s->n_conns; i++) {
        conn *c = s->conns[i];
        if (c->fd >= 0) close(c->fd);
        free(c->pay);
        uhlm_wire_buf_free(&c->out);
        free(c);
    }
    if (s->slots)
        for (int i = 0; i < s->p.max_sessions; i++) {
            free(s->slots[i].committed);
            free(s->slots[i].x);
        }
    free(s->slots);
    free(s->conns);
    free(s->pfds);
    free(s->pconn);
    free(s->batch);
    free(s->logits);
    free(s->y);
    free(s->qjobs);
    free(s->kvb);
    free(s->seqtok);
    if (s->lfd >= 0) close(s->lfd);
    if (s->sfd >= 0) close(s->sfd);
    if (s->stop_r >= 0) close(s->stop_r);
    if (s->stop_w >= 0) close(s->stop_w);
    uhlm_ctx_free(s->ctx);
    free(s);
}

uhlm_server *uhlm_server_new(const uhlm_model *llm, const uhlm_server_params *p,
                             uhlm_error *err) {
    if (p->max_sessions < 1 || p->max_sessions > 4096) {
        uhlm_set_error(err, "server: max sessions %d outside [1, 4096]", p->max_sessions);
        return NULL;
    }
    if (p->batch_window_us < 0 || p->idle_timeout_ms < 0 || p->max_ctx < 0 || p->max_conns < 0 ||
        p->auth_len > UHLM_WIRE_MAX_AUTH) {
        uhlm_set_error(err, "server: negative window, timeout or context, or auth token over %u "
                            "bytes", UHLM_WIRE_MAX_AUTH);
        return NULL;
    }
    uhlm_server *s = calloc(1, sizeof *s);
    if (!s) {
        uhlm_set_error(err, "server: out of memory");
        return NULL;
    }
    s->p = *p;
    if (s->p.max_conns == 0) s->p.max_conns = 2 * p->max_sessions + 8;
    s->lfd = s->sfd = s->stop_r = s->stop_w = -1;
    s->bound_stats_port = -1;
    s->m = llm;
    s->V = llm->cfg.vocab_size;
    s->fingerprint = llm->tok ? uhlm_tokenizer_fingerprint(llm->tok) : 0;
    const char *base = strrchr(llm->path, '/');
    snprintf(s->model_name, sizeof s->model_name, "%.255s", base ? base + 1 : llm->path);
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_seq = p->max_sessions;
    cp.n_ctx = p->max_ctx;
    cp.n_threads = p->n_threads;
    s->ctx = uhlm_ctx_new(llm, &cp, err);
    if (!s->ctx) goto fail;
    s->n_ctx = uhlm_ctx_n_ctx(s->ctx);
    s->max_batch_tokens = (uint32_t)s->n_ctx < UHLM_WIRE_MAX_TOKENS ? (uint32_t)s->n_ctx
                                                                    : UHLM_WIRE_MAX_TOKENS;
    {
        /* big enough for a dense f32 x plus a full catch-up list, never more: every
         * connection may hold one frame of this size */
        uint64_t need = 4ull * (uint64_t)s->V + 4ull * s->max_batch_tokens + 4096;
        if (need < UHLM_WIRE_MIN_FRAME) need = UHLM_WIRE_MIN_FRAME;
        if (need > UHLM_WIRE_MAX_FRAME) need = UHLM_WIRE_MAX_FRAME;
        s->max_frame = (uint32_t)need;
    }
    s->lim = (uhlm_wire_limits){s->max_frame, s->max_batch_tokens, (uint32_t)s->V};
    /* OPEN is decoded at the protocol ceiling so that an over-long prompt gets CTX_FULL */
    s->lim_open = (uhlm_wire_limits){s->max_frame, UHLM_WIRE_MAX_TOKENS, (uint32_t)s->V};
    int S = p->max_sessions, C = s->n_ctx, MC = s->p.max_conns;
    s->slots = calloc((size_t)S, sizeof *s->slots);
    s->conns = calloc((size_t)MC, sizeof *s->conns);
    s->pfds = calloc((size_t)MC + 3, sizeof *s->pfds);
    s->pconn = calloc((size_t)MC + 3, sizeof *s->pconn);
    s->batch = malloc(sizeof(uhlm_batch_entry) * (size_t)S * (size_t)C);
    s->logits = malloc(sizeof(float) * (size_t)S * (size_t)s->V);
    s->y = malloc(sizeof(float) * (size_t)s->V);
    s->qjobs = calloc((size_t)MC, sizeof *s->qjobs);
    s->kvb = calloc((size_t)MC, sizeof *s->kvb);
    s->seqtok = calloc((size_t)MC, sizeof *s->seqtok);
    if (!s->slots || !s->conns || !s->pfds || !s->pconn || !s->batch || !s->logits || !s->y ||
        !s->qjobs || !s->kvb || !s->seqtok) {
        uhlm_set_error(err, "server: out of memory (%d sessions x %d positions)", S, C);
        goto fail;
    }
    for (int i = 0; i < S; i++) {
        s->slots[i].seq = i;
        s->slots[i].committed = malloc(sizeof(int) * (size_t)C);
        s->slots[i].x = malloc(sizeof(float) * (size_t)s->V);
        if (!s->slots[i].committed || !s->slots[i].x) {
            uhlm_set_error(err, "server: out of memory (session buffers)");
            goto fail;
        }
    }
    int pfd[2];
    if (pipe(pfd) != 0) {
        uhlm_set_error(err, "server: pipe: %s", strerror(errno));
        goto fail;
    }
    s->stop_r = pfd[0];
    s->stop_w = pfd[1];
    if (set_nonblock(s->stop_r) != 0 || set_nonblock(s->stop_w) != 0 ||
        fcntl(s->stop_r, F_SETFD, FD_CLOEXEC) != 0 || fcntl(s->stop_w, F_SETFD, FD_CLOEXEC) != 0) {
        uhlm_set_error(err, "server: pipe flags: %s", strerror(errno));
        goto fail;
    }
    s->lfd = listen_on(p->host, p->port, &s->bound_port, err);
    if (s->lfd < 0) goto fail;
    if (p->stats_port >= 0) {
        s->sfd = listen_on(p->host, p->stats_port, &s->bound_stats_port, err);
        if (s->sfd < 0) goto fail;
    }
    s->t_start = uhlm_now();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->nonce_state = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                           ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)s);
    return s;
fail:
    uhlm_server_free(s);
    return NULL;
}

int uhlm_server_port(const uhlm_server *s) { return s->bound_port; }
int uhlm_server_stats_port(const uhlm_server *s) { return s->bound_stats_port; }
int uhlm_server_stop_fd(const uhlm_server *s) { return s->stop_w; }

void uhlm_server_stop(uhlm_server *s) {
    char b = 1;
    /* a full pipe already holds a stop request, so a failed write loses nothing */
    ssize_t r = write(s->stop_w, &b, 1);
    (void)r;
}

/* ------------------------------------------------------------------ connections */

static void session_release(uhlm_server *s, conn *c, const char *why) {
    session *ss = c->sess;
    if (!ss) return;
    logf_(s, "event=session_end conn=%llu session=%llu seq=%d n_past=%d verifications=%llu "
             "accepted=%llu reason=%s",
          (unsigned long long)c->id, (unsigned long long)ss->id, ss->seq, ss->n_committed,
          (unsigned long long)ss->n_verify, (unsigned long long)ss->n_accept, why);
    ss->in_use = 0;
    c->sess = NULL;
    /* the KV cache stays: its recorded tokens let a later OPEN reuse the common prefix */
}

static void conn_kill(uhlm_server *s, conn *c, const char *why) {
    if (c->dead) return;
    c->job.active = 0; /* staged catch-up was never committed, so nothing to undo */
    session_release(s, c, why);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->dead = 1;
    logf_(s, "event=disconnect conn=%llu peer=%s reason=%s", (unsigned long long)c->id, c->peer,
          why);
}

/* Sends what can be sent now; the rest waits for POLLOUT. */
static void conn_flush(uhlm_server *s, conn *c) {
    while (!c->dead && c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            conn_kill(s, c, "send_failed");
            return;
        }
    }
    if (c->dead) return;
    c->out.len = 0;
    c->out_off = 0;
    if (c->closing && !c->draining) {
        /* closing a socket with unread input makes the kernel send RST, which can destroy
         * the ERROR frame before the peer reads it: shut the write side, drain, then close */
        c->draining = 1;
        if (shutdown(c->fd, SHUT_WR) != 0) conn_kill(s, c, "shutdown_failed");
    }
}

static void conn_drain(uhlm_server *s, conn *c) {
    uint8_t sink[4096];
    for (;;) {
        ssize_t r = recv(c->fd, sink, sizeof sink, 0);
        if (r > 0) continue;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_kill(s, c, c->kind == K_HTTP ? "stats_served" : "closed_after_error");
        return;
    }
}

static void send_error(uhlm_server *s, conn *c, int code, int fatal, uint32_t rid,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_error(uhlm_server *s, conn *c, int code, int fatal, uint32_t rid,
                       const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->c_errors++;
    if (code > 0 && code <= UHLM_WIRE_E_MAX) s->err_by_code[code]++;
    char safe[160];
    log_safe(safe, sizeof safe, msg, strlen(msg));
    logf_(s, "event=error conn=%llu peer=%s code=%s fatal=%d request=%u detail=%s",
          (unsigned long long)c->id, c->peer, uhlm_wire_code_name((unsigned)code), fatal,
          (unsigned)rid, safe);
    uhlm_error e;
    if (uhlm_wire_encode_error(&c->out, (uint16_t)code, fatal ? UHLM_WIRE_EF_FATAL : 0, rid, &e,
                               "%s", msg) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    if (fatal) {
        session_release(s, c, "fatal_error");
        c->closing = 1;
        c->close_deadline = uhlm_now() + CLOSE_GRACE_S;
    }
    conn_flush(s, c);
}

static void accept_conns(uhlm_server *s, int lfd, int kind) {
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(lfd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                logf_(s, "event=accept_failed error=%d", errno);
            return;
        }
        char peer[64] = "?";
        char hbuf[48], sbuf[8];
        if (getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof hbuf, sbuf, sizeof sbuf,
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
            snprintf(peer, sizeof peer, "%s:%s", hbuf, sbuf);
        if (set_nonblock(fd) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (s->n_conns >= s->p.max_conns) {
            /* best effort: a full server says why before it hangs up */
            uhlm_wire_buf b = {0};
            uhlm_error e;
            if (kind == K_DEVICE &&
                uhlm_wire_encode_error(&b, UHLM_WIRE_E_BUSY, UHLM_WIRE_EF_FATAL, 0, &e,
                                       "server full: %d connections", s->p.max_conns) == 0) {
                ssize_t w = send(fd, b.data, b.len, MSG_NOSIGNAL);
                (void)w;
            }
            uhlm_wire_buf_free(&b);
            close(fd);
            s->c_errors++;
            s->err_by_code[UHLM_WIRE_E_BUSY]++;
            logf_(s, "event=refused peer=%s reason=too_many_connections max=%d", peer,
                  s->p.max_conns);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            logf_(s, "event=refused peer=%s reason=out_of_memory", peer);
            continue;
        }
        c->fd = fd;
        c->kind = kind;
        c->state = CS_HELLO;
        c->id = ++s->next_conn_id;
        c->last_rx = uhlm_now();
        memcpy(c->peer, peer, sizeof peer);
        s->conns[s->n_conns++] = c;
        if (kind == K_DEVICE) s->c_conns++;
        logf_(s, "event=connect conn=%llu peer=%s kind=%s", (unsigned long long)c->id, peer,
              kind == K_DEVICE ? "device" : "stats");
    }
}

/* ------------------------------------------------------------------ requests */

static int count_open_sessions(const uhlm_server *s) {
    int n = 0;
    for (int i = 0; i < s->p.max_sessions; i++) n += s->slots[i].in_use;
    return n;
}

static void reply_done(uhlm_server *s, conn *c, double t_arrive) {
    double now = uhlm_now();
    s->lat[s->n_lat++ % LAT_RING] = now - t_arrive;
    c->last_rx = now; /* the device's silence starts when it has its answer */
    conn_flush(s, c);
}

static void on_hello(uhlm_server *s, conn *c, const uhlm_wire_hello *h) {
    char client[80];
    log_safe(client, sizeof client, h->client.p, h->client.len);
    if (h->version != UHLM_WIRE_VERSION) {
        send_error(s, c, UHLM_WIRE_E_BAD_VERSION, 1, 0, "protocol version %u, this server speaks %d",
                   (unsigned)h->version, UHLM_WIRE_VERSION);
        return;
    }
    if (s->p.auth && s->p.auth_len > 0) {
        /* constant time in the secret's length, whatever the device sent */
        unsigned diff = h->auth.len != s->p.auth_len;
        for (size_t i = 0; i < s->p.auth_len; i++) {
            uint8_t got = i < h->auth.len ? h->auth.p[i] : 0;
            diff |= (unsigned)(got ^ s->p.auth[i]);
        }
        if (diff) {
            send_error(s, c, UHLM_WIRE_E_AUTH, 1, 0, "authentication failed");
            return;
        }
    }
    if (h->vocab_size != (uint32_t)s->V ||
        (h->fingerprint != 0 && s->fingerprint != 0 && h->fingerprint != s->fingerprint)) {
        send_error(s, c, UHLM_WIRE_E_VOCAB_MISMATCH, 1, 0,
                   "vocabulary mismatch: device %u tokens fingerprint %016llx, server %d tokens "
                   "fingerprint %016llx",
                   (unsigned)h->vocab_size, (unsigned long long)h->fingerprint, s->V,
                   (unsigned long long)s->fingerprint);
        return;
    }
    uhlm_wire_welcome w;
    memset(&w, 0, sizeof w);
    w.version = UHLM_WIRE_VERSION;
    w.fingerprint = s->fingerprint;
    w.vocab_size = (uint32_t)s->V;
    w.n_ctx = (uint32_t)s->n_ctx;
    w.max_sessions = (uint32_t)s->p.max_sessions;
    w.max_frame = s->max_frame;
    w.max_batch_tokens = s->max_batch_tokens;
    w.idle_timeout_ms = (uint32_t)s->p.idle_timeout_ms;
    w.payload_kinds = UHLM_WIRE_KINDS_ALL;
    s->nonce_state = mix64(s->nonce_state + 0x9e3779b97f4a7c15ULL);
    w.nonce = s->nonce_state;
    w.model = uhlm_wire_cstr(s->model_name);
    uhlm_error e;
    if (uhlm_wire_encode_welcome(&c->out, &w, &e) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    c->state = CS_READY;
    logf_(s, "event=hello conn=%llu peer=%s client=%s nonce=%016llx", (unsigned long long)c->id,
          c->peer, client, (unsigned long long)w.nonce);
    conn_flush(s, c);
}

static void on_open(uhlm_server *s, conn *c, const uhlm_wire_open *o) {
    double t0 = uhlm_now();
    uhlm_sampling smp = {o->temp, (int)o->top_k, o->top_p};
    uhlm_error e;
    if (o->top_k > (uint32_t)s->V) smp.top_k = s->V; /* top-k >= V is "off" either way */
    if (uhlm_sampling_check(&smp, &e) != 0) {
        send_error(s, c, UHLM_WIRE_E_BAD_PAYLOAD, 0, 0, "%s", e.msg);
        return;
    }
    int n = (int)o->prompt.n;
    if (n > s->n_ctx) {
        send_error(s, c, UHLM_WIRE_E_CTX_FULL, 0, 0, "prompt of %d tokens, the context holds %d",
                   n, s->n_ctx);
        return;
    }
    /* An OPEN replaces this connection's session; otherwise take the free sequence whose
     * cache shares the longest prefix with the prompt (a resync after a reconnect then
     * costs almost nothing). */
    session *ss = c->sess;
    int best_lcp = -1;
    if (!ss) {
        for (int i = 0; i < s->p.max_sessions; i++) {
            session *cand = &s->slots[i];
            if (cand->in_use) continue;
            int kv = uhlm_seq_len(s->ctx, i), l = 0;
            const int *ct = uhlm_seq_tokens(s->ctx, i);
            while (l < kv && l < n - 1 && ct && (uint32_t)ct[l] == uhlm_wire_token_at(&o->prompt, (uint32_t)l))
                l++;
            if (l > best_lcp) {
                best_lcp = l;
                ss = cand;
            }
        }
        if (!ss) {
            send_error(s, c, UHLM_WIRE_E_BUSY, 0, 0, "all %d sessions are in use",
                       s->p.max_sessions);
            return;
        }
    } else {
        session_release(s, c, "reopened");
    }
    uhlm_wire_tokens_copy(&o->prompt, ss->committed);
    int kv = uhlm_seq_len(s->ctx, ss->seq), lcp = 0;
    const int *cached = uhlm_seq_tokens(s->ctx, ss->seq);
    while (lcp < kv && lcp < n - 1 && cached[lcp] == ss->committed[lcp]) lcp++;
    uhlm_wire_opened op;
    memset(&op, 0, sizeof op);
    int todo = n - 1 - lcp;
    if (uhlm_seq_truncate(s->ctx, ss->seq, lcp, &e) != 0) goto internal;
    if (todo > 0) {
        for (int i = 0; i < todo; i++)
            s->batch[i] = (uhlm_batch_entry){ss->seq, lcp + i, ss->committed[lcp + i], 0};
        if (uhlm_decode(s->ctx, s->batch, todo, NULL, NULL, &e) != 0) goto internal;
        op.cost.forward_calls = 1;
        op.cost.seq_tokens = (uint32_t)todo;
        op.cost.batch_size = 1;
        op.cost.batch_tokens = (uint32_t)todo;
    }
    ss->in_use = 1;
    ss->id = ++s->next_session_id;
    ss->mode = o->mode;
    ss->s = smp;
    ss->n_committed = n;
    ss->n_verify = ss->n_accept = 0;
    c->sess = ss;
    s->c_sessions++;
    op.session_id = ss->id;
    op.n_ctx = (uint32_t)s->n_ctx;
    op.n_past = (uint32_t)n;
    op.cost.llm_ns = (uint64_t)((uhlm_now() - t0) * 1e9);
    if (uhlm_wire_encode_opened(&c->out, &op, &e) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    logf_(s, "event=open conn=%llu session=%llu seq=%d mode=%s n_prompt=%d reused=%d temp=%g "
             "top_k=%d top_p=%g",
          (unsigned long long)c->id, (unsigned long long)ss->id, ss->seq,
          ss->mode == UHLM_WIRE_MODE_VERIFY ? "verify" : "generate", n, lcp, (double)smp.temp,
          smp.top_k, (double)smp.top_p);
    conn_flush(s, c);
    return;
internal:
    /* the cache may have been cut back; the session is gone but the cache stays consistent */
    send_error(s, c, UHLM_WIRE_E_INTERNAL, 0, 0, "prefill failed: %s", e.msg);
}

/* Checks common to VERIFY and GENERATE; 0 when the request may be queued. */
static int check_request(uhlm_server *s, conn *c, uint16_t type, uint32_t rid, uint32_t pos,
                         uint32_t n_catchup) {
    session *ss = c->sess;
    if (!ss) {
        send_error(s, c, UHLM_WIRE_E_NOT_OPEN, 0, rid, "%s without an open session",
                   uhlm_wire_type_name(type));
        return -1;
    }
    uint32_t want = type == UHLM_WIRE_VERIFY ? UHLM_WIRE_MODE_VERIFY : UHLM_WIRE_MODE_GENERATE;
    if (ss->mode != want) {
        send_error(s, c, UHLM_WIRE_E_BAD_STATE, 0, rid, "%s in a %s session",
                   uhlm_wire_type_name(type), ss->mode == UHLM_WIRE_MODE_VERIFY ? "verify" : "generate");
        return -1;
    }
    if (pos != (uint32_t)ss->n_committed) {
        send_error(s, c, UHLM_WIRE_E_DESYNC, 0, rid, "pos %u, the session holds %d", (unsigned)pos,
                   ss->n_committed);
        return -1;
    }
    if ((uint64_t)pos + n_catchup + 1 > (uint64_t)s->n_ctx) {
        send_error(s, c, UHLM_WIRE_E_CTX_FULL, 0, rid,
                   "pos %u + %u catch-up + 1 exceeds the context of %d", (unsigned)pos,
                   (unsigned)n_catchup, s->n_ctx);
        return -1;
    }
    return 0;
}

static void queue_job(conn *c, uint16_t type, uint32_t rid, const uhlm_wire_tokens *catchup,
                      uint64_t draw_seed) {
    job *j = &c->job;
    memset(j, 0, sizeof *j);
    j->active = 1;
    j->type = type;
    j->request_id = rid;
    j->first = 1;
    j->n_catchup = (int)catchup->n;
    j->draw_seed = draw_seed;
    j->t_arrive = j->ready_at = uhlm_now();
    uhlm_wire_tokens_copy(catchup, c->sess->committed + c->sess->n_committed);
}

static void on_verify(uhlm_server *s, conn *c, const uhlm_wire_verify *v) {
    if (check_request(s, c, UHLM_WIRE_VERIFY, v->request_id, v->pos, v->catchup.n) != 0) return;
    session *ss = c->sess;
    int greedy = ss->s.temp == 0.0f;
    if ((v->flags & UHLM_WIRE_VF_GREEDY) && !greedy) {
        send_error(s, c, UHLM_WIRE_E_BAD_PAYLOAD, 0, v->request_id,
                   "GREEDY flag in a session with temperature %g", (double)ss->s.temp);
        return;
    }
    if (!greedy) {
        uhlm_payload_spec spec = {(uhlm_payload_kind)v->kind, (int)v->k, v->prob_bits};
        uhlm_error e;
        if (uhlm_verify_decode_x(&spec, v->x.p, v->x.len, s->V, (int)v->draft, ss->x, &e) != 0) {
            send_error(s, c, UHLM_WIRE_E_BAD_PROBS, 0, v->request_id, "%s", e.msg);
            return;
        }
    }
    queue_job(c, UHLM_WIRE_VERIFY, v->request_id, &v->catchup, v->draw_seed);
    c->job.draft = (int)v->draft;
    c->job.greedy = greedy;
}

static void on_generate(uhlm_server *s, conn *c, const uhlm_wire_generate *g) {
    if (check_request(s, c, UHLM_WIRE_GENERATE, g->request_id, g->pos, g->catchup.n) != 0)
        return;
    queue_job(c, UHLM_WIRE_GENERATE, g->request_id, &g->catchup, g->draw_seed);
    c->job.n_gen = (int)g->n_gen;
    c->job.stop_eos = (g->flags & UHLM_WIRE_GF_STOP_EOS) != 0;
    c->job.start = (int)g->pos + (int)g->catchup.n;
}

size_t uhlm_server_stats_text(const uhlm_server *s, char *buf, size_t cap);

static void on_frame(uhlm_server *s, conn *c) {
    uint16_t type = c->h.type;
    const uint8_t *p = c->pay;
    size_t n = c->h.len;
    uhlm_wire_msg m;
    uhlm_error e;
    /* the request id of a VERIFY/GENERATE is its first field: echo it even when the rest
     * does not decode, so the device can match the ERROR */
    uint32_t rid = 0;
    if ((type == UHLM_WIRE_VERIFY || type == UHLM_WIRE_GENERATE) && n >= 4)
        rid = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    if (c->state == CS_HELLO) {
        if (type != UHLM_WIRE_HELLO) {
            send_error(s, c, UHLM_WIRE_E_BAD_STATE, 1, 0, "%s before HELLO",
                       uhlm_wire_type_name(type));
            return;
        }
        int rc = uhlm_wire_decode(type, p, n, &s->lim, &m, &e);
        if (rc != 0) {
            send_error(s, c, -rc, 1, 0, "%s", e.msg);
            return;
        }
        on_hello(s, c, &m.u.hello);
        return;
    }
    switch (type) {
    case UHLM_WIRE_HELLO:
        send_error(s, c, UHLM_WIRE_E_BAD_STATE, 0, 0, "second HELLO");
        return;
    case UHLM_WIRE_WELCOME: case UHLM_WIRE_OPENED: case UHLM_WIRE_VERDICT:
    case UHLM_WIRE_GENERATED: case UHLM_WIRE_STATS: case UHLM_WIRE_ERROR: case UHLM_WIRE_PONG:
        send_error(s, c, UHLM_WIRE_E_BAD_STATE, 0, 0, "%s is a server message",
                   uhlm_wire_type_name(type));
        return;
    default:
        break;
    }
    int rc = uhlm_wire_decode(type, p, n, type == UHLM_WIRE_OPEN ? &s->lim_open : &s->lim, &m, &e);
    if (rc != 0) {
        send_error(s, c, -rc, 0, rid, "%s", e.msg);
        return;
    }
    switch (type) {
    case UHLM_WIRE_OPEN:
        on_open(s, c, &m.u.open);
        break;
    case UHLM_WIRE_VERIFY:
        on_verify(s, c, &m.u.verify);
        break;
    case UHLM_WIRE_GENERATE:
        on_generate(s, c, &m.u.generate);
        break;
    case UHLM_WIRE_CLOSE:
        session_release(s, c, "close");
        if (uhlm_wire_encode_empty(&c->out, UHLM_WIRE_CLOSE, &e) != 0) {
            conn_kill(s, c, "out_of_memory");
            return;
        }
        conn_flush(s, c);
        break;
    case UHLM_WIRE_PING:
        if (uhlm_wire_encode_ping(&c->out, UHLM_WIRE_PONG, m.u.nonce, &e) != 0) {
            conn_kill(s, c, "out_of_memory");
            return;
        }
        conn_flush(s, c);
        break;
    case UHLM_WIRE_STATS_REQ: {
        size_t need = uhlm_server_stats_text(s, NULL, 0) + 1;
        char *text = malloc(need);
        if (!text) {
            send_error(s, c, UHLM_WIRE_E_INTERNAL, 0, 0, "out of memory");
            return;
        }
        uhlm_server_stats_text(s, text, need);
        int r = uhlm_wire_encode_stats(&c->out, text, strlen(text), &e);
        free(text);
        if (r != 0) {
            send_error(s, c, UHLM_WIRE_E_INTERNAL, 0, 0, "stats: %s", e.msg);
            return;
        }
        conn_flush(s, c);
        break;
    }
    default:
        send_error(s, c, UHLM_WIRE_E_UNKNOWN_TYPE, 0, 0, "type %u", (unsigned)type);
        break;
    }
}

/* ------------------------------------------------------------------ reading */

static int wants_read(const conn *c) {
    return !c->dead && !c->closing && !c->job.active && c->out.len == 0;
}

static void http_request(uhlm_server *s, conn *c) {
    size_t tl = uhlm_server_stats_text(s, NULL, 0);
    char head[160];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      tl);
    uhlm_error e;
    if (hl < 0 || uhlm_wire_buf_reserve(&c->out, (size_t)hl + tl + 1, &e) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    memcpy(c->out.data, head, (size_t)hl);
    uhlm_server_stats_text(s, (char *)c->out.data + hl, tl + 1);
    c->out.len = (size_t)hl + tl;
    c->closing = 1;
    c->close_deadline = uhlm_now() + CLOSE_GRACE_S;
    conn_flush(s, c);
}

static void http_read(uhlm_server *s, conn *c) {
    if (!c->pay && !(c->pay = malloc(HTTP_MAX_REQ))) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    c->pay_cap = HTTP_MAX_REQ;
    for (;;) {
        ssize_t r = recv(c->fd, c->pay + c->pay_got, c->pay_cap - c->pay_got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) {
            conn_kill(s, c, r == 0 ? "eof" : "recv_failed");
            return;
        }
        c->pay_got += (size_t)r;
        int done = c->pay_got == c->pay_cap;
        for (size_t i = 3; i < c->pay_got && !done; i++)
            done = !memcmp(c->pay + i - 3, "\r\n\r\n", 4) || !memcmp(c->pay + i - 1, "\n\n", 2);
        if (done) {
            http_request(s, c);
            return;
        }
    }
}

static void conn_read(uhlm_server *s, conn *c) {
    if (c->kind == K_HTTP) {
        http_read(s, c);
        return;
    }
    while (wants_read(c)) {
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
        ssize_t r = want ? recv(c->fd, dst, want, 0) : 0;
        if (want && r < 0 && errno == EINTR) continue;
        if (want && r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (want && r <= 0) {
            int mid = c->hdr_got > 0 || c->in_payload;
            conn_kill(s, c, r < 0 ? "recv_failed" : mid ? "vanished_mid_frame" : "eof");
            return;
        }
        if (!c->in_payload) {
            c->hdr_got += (size_t)r;
            if (c->hdr_got < UHLM_WIRE_HEADER_SIZE) continue;
            uhlm_error e;
            int rc = uhlm_wire_frame_header_parse(c->hdr, UHLM_WIRE_HEADER_SIZE, &c->h,
                                                  s->max_frame, &e);
            c->hdr_got = 0;
            c->pay_got = 0;
            if (rc == -UHLM_WIRE_E_UNKNOWN_TYPE) {
                c->in_payload = 1;
                c->skipping = 1;
            } else if (rc != 0) {
                send_error(s, c, -rc, 1, 0, "%s", e.msg);
                return;
            } else {
                if (c->h.len > c->pay_cap) {
                    uint8_t *np = realloc(c->pay, c->h.len);
                    if (!np) {
                        send_error(s, c, UHLM_WIRE_E_INTERNAL, 1, 0, "out of memory");
                        return;
                    }
                    c->pay = np;
                    c->pay_cap = c->h.len;
                }
                c->in_payload = 1;
                c->skipping = 0;
            }
        } else {
            c->pay_got += (size_t)r;
        }
        if (c->in_payload && c->pay_got == c->h.len) {
            c->in_payload = 0;
            c->last_rx = uhlm_now();
            if (c->skipping) {
                c->skipping = 0;
                send_error(s, c, UHLM_WIRE_E_UNKNOWN_TYPE, c->state == CS_HELLO, 0,
                           "unknown message type %u", (unsigned)c->h.type);
            } else {
                on_frame(s, c);
            }
        }
    }
}

/* ------------------------------------------------------------------ compute */

static int hist_bucket(int n) {
    int b = 0;
    while (b < N_HIST - 1 && n > (1 << b)) b++;
    return b;
}

/* Undoes a failed step of job j: the cache goes back to kv_before and a first step's
 * catch-up is uncommitted, so the session is as before the step. */
static void job_fail(uhlm_server *s, conn *c, int kv_before, const char *what) {
    session *ss = c->sess;
    uhlm_error e;
    if (uhlm_seq_len(s->ctx, ss->seq) > kv_before) uhlm_seq_truncate(s->ctx, ss->seq, kv_before, &e);
    c->job.active = 0;
    send_error(s, c, UHLM_WIRE_E_INTERNAL, 0, c->job.request_id, "%s", what);
}

/* One forward over the pending tokens (and, on a first step, the catch-up) of every job in
 * q[0..nq), then one decision per job. A failed forward refuses the requests (INTERNAL, no
 * effect) but is not fatal for the server: it is an allocation failure, not corruption. */
static int compute_step(uhlm_server *s, conn **q, int nq) {
    int n = 0;
    int *kvb = s->kvb, *seqtok = s->seqtok;
    for (int i = 0; i < nq; i++) {
        session *ss = q[i]->sess;
        job *j = &q[i]->job;
        int kv = uhlm_seq_len(s->ctx, ss->seq);
        int end = ss->n_committed + (j->first ? j->n_catchup : 0);
        kvb[i] = kv;
        seqtok[i] = end - kv;
        for (int p = kv; p < end; p++) s->batch[n++] = (uhlm_batch_entry){ss->seq, p, ss->committed[p], 0};
        s->batch[n - 1].logits = 1;
    }
    double t0 = uhlm_now();
    uhlm_error e;
    if (uhlm_decode(s->ctx, s->batch, n, s->logits, NULL, &e) != 0) {
        /* nothing changed in the cache; every request in the batch is refused */
        for (int i = 0; i < nq; i++) job_fail(s, q[i], kvb[i], e.msg);
        logf_(s, "event=forward_failed batch=%d tokens=%d", nq, n);
        return 0;
    }
    double dt = uhlm_now() - t0;
    s->c_forwards++;
    s->c_batched += (uint64_t)nq;
    s->c_batch_tokens += (uint64_t)n;
    s->hist[hist_bucket(nq)]++;
    for (int i = 0; i < nq; i++) {
        conn *c = q[i];
        session *ss = c->sess;
        job *j = &c->job;
        const float *row = s->logits + (size_t)i * (size_t)s->V;
        double td = uhlm_now();
        if (j->first) ss->n_committed += j->n_catchup;
        int pos = ss->n_committed;
        j->cost.forward_calls++;
        j->cost.seq_tokens += (uint32_t)seqtok[i];
        j->cost.batch_size = (uint32_t)nq;
        j->cost.batch_tokens = (uint32_t)n;
        if (j->type == UHLM_WIRE_VERIFY) {
            uhlm_verify_result vr;
            if (uhlm_verify_logits(&ss->s, row, j->greedy ? NULL : ss->x, s->V, j->draft,
                                   j->draw_seed, pos, s->y, &vr, &e) != 0) {
                if (j->first) ss->n_committed -= j->n_catchup;
                job_fail(s, c, kvb[i], e.msg);
                continue;
            }
            j->first = 0;
            ss->committed[ss->n_committed++] = vr.token;
            j->cost.llm_ns += (uint64_t)((dt + uhlm_now() - td) * 1e9);
            uhlm_wire_verdict vd;
            memset(&vd, 0, sizeof vd);
            vd.request_id = j->request_id;
            vd.token = (uint32_t)vr.token;
            vd.flags = (vr.accepted ? UHLM_WIRE_DF_ACCEPTED : 0) | (vr.y_ge_x ? UHLM_WIRE_DF_Y_GE_X : 0);
            vd.y_d = (float)vr.y_d;
            vd.x_d = (float)vr.x_d;
            vd.beta = (float)vr.beta;
            vd.cost = j->cost;
            vd.n_past = (uint32_t)ss->n_committed;
            ss->n_verify++;
            ss->n_accept += (uint64_t)vr.accepted;
            s->c_verify++;
            s->c_accept += (uint64_t)vr.accepted;
            j->active = 0;
            if (uhlm_wire_encode_verdict(&c->out, &vd, NULL, &e) != 0) {
                conn_kill(s, c, "out_of_memory");
                continue;
            }
            reply_done(s, c, j->t_arrive);
        } else {
            int tok = uhlm_generate_token(&ss->s, row, s->V, j->draw_seed, pos, s->y, &e);
            if (tok < 0) {
                if (j->first) ss->n_committed -= j->n_catchup;
                job_fail(s, c, kvb[i], e.msg);
                continue;
            }
            j->first = 0;
            ss->committed[ss->n_committed++] = tok;
            j->n_out++;
            s->c_gen_tokens++;
            j->cost.llm_ns += (uint64_t)((dt + uhlm_now() - td) * 1e9);
            if (j->n_out < j->n_gen && !(j->stop_eos && uhlm_tokenizer_is_eog(s->m->tok, tok)) &&
                ss->n_committed < s->n_ctx) {
                /* stays queued, ready at once: its next token joins the next forward */
                j->ready_at = -1e300;
                continue;
            }
            uhlm_wire_generated gd;
            memset(&gd, 0, sizeof gd);
            gd.request_id = j->request_id;
            gd.tokens.ids = ss->committed + j->start;
            gd.tokens.n = (uint32_t)j->n_out;
            gd.cost = j->cost;
            gd.n_past = (uint32_t)ss->n_committed;
            j->active = 0;
            if (uhlm_wire_encode_generated(&c->out, &gd, NULL, &e) != 0) {
                conn_kill(s, c, "out_of_memory");
                continue;
            }
            reply_done(s, c, j->t_arrive);
        }
    }
    return 0;
}

/* Runs the queue if it is due (or at once when force); otherwise lowers *next_deadline to
 * when it will be. */
static int maybe_compute(uhlm_server *s, int force, double *next_deadline) {
    int nq = 0;
    double oldest = 1e300;
    for (int i = 0; i < s->n_conns; i++) {
        conn *c = s->conns[i];
        if (c->dead || !c->job.active) continue;
        s->qjobs[nq++] = c;
        if (c->job.ready_at < oldest) oldest = c->job.ready_at;
    }
    if (nq == 0) return 0;
    if (!s->p.batching) {
        /* one forward per request, oldest first; a multi-token GENERATE runs to its end */
        for (int i = 0; i < nq; i++)
            while (s->qjobs[i]->job.active && !s->qjobs[i]->dead)
                compute_step(s, &s->qjobs[i], 1);
        return 0;
    }
    double due = oldest + s->p.batch_window_us * 1e-6;
    double now = uhlm_now();
    if (!force && nq < count_open_sessions(s) && now < due) {
        if (due < *next_deadline) *next_deadline = due;
        return 0;
    }
    compute_step(s, s->qjobs, nq);
    /* a multi-token GENERATE is still queued and due at once: do not sleep in poll */
    for (int i = 0; i < nq; i++)
        if (!s->qjobs[i]->dead && s->qjobs[i]->job.active) *next_deadline = 0;
    return 0;
}

/* ------------------------------------------------------------------ main loop */

static void reap(uhlm_server *s) {
    int k = 0;
    for (int i = 0; i < s->n_conns; i++) {
        conn *c = s->conns[i];
        if (c->dead) {
            free(c->pay);
            uhlm_wire_buf_free(&c->out);
            free(c);
        } else {
            s->conns[k++] = c;
        }
    }
    s->n_conns = k;
}

static void check_timeouts(uhlm_server *s, double now, double *next_deadline) {
    double idle = s->p.idle_timeout_ms * 1e-3;
    for (int i = 0; i < s->n_conns; i++) {
        conn *c = s->conns[i];
        if (c->dead) continue;
        if (c->closing) {
            if (now >= c->close_deadline) conn_kill(s, c, "close_timeout");
            else if (c->close_deadline < *next_deadline) *next_deadline = c->close_deadline;
            continue;
        }
        if (idle <= 0 || c->job.active) continue;
        double dl = c->last_rx + (c->kind == K_HTTP && idle > 5.0 ? 5.0 : idle);
        if (now >= dl) {
            if (c->kind == K_HTTP) conn_kill(s, c, "timeout");
            else
                send_error(s, c, UHLM_WIRE_E_TIMEOUT, 1, 0, "no complete frame for %d ms",
                           s->p.idle_timeout_ms);
        } else if (dl < *next_deadline) {
            *next_deadline = dl;
        }
    }
}

int uhlm_server_run(uhlm_server *s, uhlm_error *err) {
    logf_(s, "event=listening host=%s port=%d stats_port=%d model=%s vocab=%d n_ctx=%d "
             "max_sessions=%d max_conns=%d batching=%d batch_window_us=%d idle_timeout_ms=%d "
             "max_frame=%u auth=%s",
          s->p.host ? s->p.host : "127.0.0.1", s->bound_port, s->bound_stats_port, s->model_name,
          s->V, s->n_ctx, s->p.max_sessions, s->p.max_conns, s->p.batching, s->p.batch_window_us,
          s->p.idle_timeout_ms, (unsigned)s->max_frame, s->p.auth_len ? "on" : "off");
    int stopping = 0, rc = 0;
    double shutdown_deadline = 0;
    for (;;) {
        double next = 1e300;
        maybe_compute(s, stopping, &next);
        if (stopping == 1) {
            /* in-flight work is done (maybe_compute forced it); tell everyone, then drain */
            int busy = 0;
            for (int i = 0; i < s->n_conns; i++) busy |= !s->conns[i]->dead && s->conns[i]->job.active;
            if (!busy) {
                for (int i = 0; i < s->n_conns; i++) {
                    conn *c = s->conns[i];
                    if (c->dead || c->closing) continue;
                    if (c->kind == K_DEVICE)
                        send_error(s, c, UHLM_WIRE_E_SHUTTING_DOWN, 1, 0, "server stopping");
                    else
                        conn_kill(s, c, "shutdown");
                }
                stopping = 2;
                shutdown_deadline = uhlm_now() + CLOSE_GRACE_S;
            }
        }
        double now = uhlm_now();
        check_timeouts(s, now, &next);
        reap(s);
        if (stopping == 2 && (s->n_conns == 0 || now >= shutdown_deadline)) break;
        int np = 0;
        s->pfds[np] = (struct pollfd){s->stop_r, POLLIN, 0};
        s->pconn[np++] = NULL;
        if (!stopping) {
            s->pfds[np] = (struct pollfd){s->lfd, POLLIN, 0};
            s->pconn[np++] = NULL;
            if (s->sfd >= 0) {
                s->pfds[np] = (struct pollfd){s->sfd, POLLIN, 0};
                s->pconn[np++] = NULL;
            }
        }
        for (int i = 0; i < s->n_conns; i++) {
            conn *c = s->conns[i];
            short ev = 0;
            if ((!stopping && wants_read(c)) || c->draining) ev |= POLLIN;
            if (c->out.len > c->out_off) ev |= POLLOUT;
            s->pfds[np] = (struct pollfd){c->fd, ev, 0};
            s->pconn[np++] = c;
        }
        if (stopping == 2 && shutdown_deadline < next) next = shutdown_deadline;
        int timeout = -1;
        if (next < 1e299) {
            double ms = (next - uhlm_now()) * 1e3;
            timeout = ms <= 0 ? 0 : ms > 60000 ? 60000 : (int)ms + 1;
        }
        int pr = poll(s->pfds, (nfds_t)np, timeout);
        if (pr < 0) {
            if (errno == EINTR) continue;
            uhlm_set_error(err, "server: poll: %s", strerror(errno));
            rc = -1;
            break;
        }
        for (int i = 0; i < np && pr > 0; i++) {
            short re = s->pfds[i].revents;
            if (!re) continue;
            conn *c = s->pconn[i];
            if (!c) {
                if (s->pfds[i].fd == s->stop_r) {
                    char b[64];
                    while (read(s->stop_r, b, sizeof b) > 0) {
                    }
                    if (!stopping) {
                        logf_(s, "event=stopping conns=%d", s->n_conns);
                        stopping = 1;
                    }
                } else {
                    accept_conns(s, s->pfds[i].fd, s->pfds[i].fd == s->lfd ? K_DEVICE : K_HTTP);
                }
                continue;
            }
            if (c->dead) continue;
            if (re & POLLOUT) conn_flush(s, c);
            if (c->dead) continue;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                if (c->draining) conn_drain(s, c);
                else if (wants_read(c)) conn_read(s, c);
                else if (re & (POLLHUP | POLLERR)) conn_kill(s, c, "hangup");
            }
        }
    }
    for (int i = 0; i < s->n_conns; i++) conn_kill(s, s->conns[i], "shutdown");
    reap(s);
    logf_(s, "event=stopped verifications=%llu forward_calls=%llu",
          (unsigned long long)s->c_verify, (unsigned long long)s->c_forwards);
    return rc;
}

/* ------------------------------------------------------------------ stats */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct sbuf {
    char *p;
    size_t cap, len;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *dst = b->len < b->cap ? b->p + b->len : NULL;
    size_t room = b->len < b->cap ? b->cap - b->len : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
}

static void metric(sbuf *b, const char *name, const char *type, const char *help, double v) {
    sb_printf(b, "# HELP uhlm_server_%s %s\n# TYPE uhlm_server_%s %s\nuhlm_server_%s %.9g\n", name,
              help, name, type, name, v);
}

size_t uhlm_server_stats_text(const uhlm_server *s, char *buf, size_t cap) {
    sbuf b = {buf, cap, 0};
    if (cap) buf[0] = 0;
    int open_conns = 0;
    for (int i = 0; i < s->n_conns; i++) open_conns += !s->conns[i]->dead && s->conns[i]->kind == K_DEVICE;
    metric(&b, "uptime_seconds", "gauge", "Seconds since the server started.", uhlm_now() - s->t_start);
    metric(&b, "connections_open", "gauge", "Device connections open now.", open_conns);
    metric(&b, "connections_total", "counter", "Device connections accepted.", (double)s->c_conns);
    metric(&b, "sessions_open", "gauge", "Sessions (KV-cache sequences) in use.", count_open_sessions(s));
    metric(&b, "sessions_max", "gauge", "Sessions the server holds at once.", s->p.max_sessions);
    metric(&b, "sessions_total", "counter", "Sessions opened.", (double)s->c_sessions);
    metric(&b, "verifications_total", "counter", "VERIFY requests answered with a VERDICT.", (double)s->c_verify);
    metric(&b, "accepted_total", "counter", "Drafts accepted.", (double)s->c_accept);
    metric(&b, "acceptance_rate", "gauge", "accepted_total / verifications_total (0 when none).",
           s->c_verify ? (double)s->c_accept / (double)s->c_verify : 0.0);
    metric(&b, "generated_tokens_total", "counter", "Tokens produced for GENERATE.", (double)s->c_gen_tokens);
    metric(&b, "forward_calls_total", "counter", "Batched LLM forwards for VERIFY/GENERATE (prefills excluded).",
           (double)s->c_forwards);
    metric(&b, "batch_tokens_total", "counter", "Tokens through those forwards.", (double)s->c_batch_tokens);
    metric(&b, "batch_size_mean", "gauge", "Requests per forward, mean.",
           s->c_forwards ? (double)s->c_batched / (double)s->c_forwards : 0.0);
    sb_printf(&b, "# HELP uhlm_server_batch_size Requests per forward.\n# TYPE uhlm_server_batch_size histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < N_HIST; i++) {
        cum += s->hist[i];
        if (i < N_HIST - 1) sb_printf(&b, "uhlm_server_batch_size_bucket{le=\"%d\"} %llu\n", 1 << i, (unsigned long long)cum);
        else sb_printf(&b, "uhlm_server_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    sb_printf(&b, "uhlm_server_batch_size_sum %llu\nuhlm_server_batch_size_count %llu\n",
              (unsigned long long)s->c_batched, (unsigned long long)s->c_forwards);
    size_t nl = s->n_lat < LAT_RING ? (size_t)s->n_lat : LAT_RING;
    sb_printf(&b, "# HELP uhlm_server_request_latency_seconds VERIFY/GENERATE from arrival to reply, last %d requests.\n"
                  "# TYPE uhlm_server_request_latency_seconds summary\n", LAT_RING);
    double *tmp = nl ? malloc(nl * sizeof(double)) : NULL;
    if (tmp) {
        memcpy(tmp, s->lat, nl * sizeof(double));
        qsort(tmp, nl, sizeof(double), cmp_double);
        const double qs[] = {0.5, 0.9, 0.99};
        for (int i = 0; i < 3; i++) {
            size_t k = (size_t)(qs[i] * (double)(nl - 1) + 0.5);
            sb_printf(&b, "uhlm_server_request_latency_seconds{quantile=\"%g\"} %.9g\n", qs[i], tmp[k]);
        }
        free(tmp);
    }
    sb_printf(&b, "uhlm_server_request_latency_seconds_count %llu\n", (unsigned long long)s->n_lat);
    sb_printf(&b, "# HELP uhlm_server_errors_total ERROR frames sent, by code.\n# TYPE uhlm_server_errors_total counter\n");
    for (int i = 1; i <= UHLM_WIRE_E_MAX; i++)
        if (s->err_by_code[i])
            sb_printf(&b, "uhlm_server_errors_total{code=\"%s\"} %llu\n", uhlm_wire_code_name((unsigned)i),
                      (unsigned long long)s->err_by_code[i]);
    return b.len;
}

void uhlm_server_get_counters(const uhlm_server *s, uhlm_server_counters *o) {
    memset(o, 0, sizeof *o);
    o->connections = s->c_conns;
    o->sessions_opened = s->c_sessions;
    o->verifications = s->c_verify;
    o->accepted = s->c_accept;
    o->generated_tokens = s->c_gen_tokens;
    o->forward_calls = s->c_forwards;
    o->batched_requests = s->c_batched;
    o->errors = s->c_errors;
    o->open_sessions = count_open_sessions(s);
    for (int i = 0; i < s->n_conns; i++) o->open_conns += !s->conns[i]->dead && s->conns[i]->kind == K_DEVICE;
}
