/* server.c: the multi-session verification server (server.h, docs/protocol.md).
 *
 * Shape: one thread, one poll() loop. Each connection is a small state machine that reads
 * exactly one frame at a time (header, then the payload it announced) into its own buffer,
 * and is not read again until its reply has been sent, so the protocol's lock-step is also
 * the server's back-pressure. OPEN, VERIFY and GENERATE are validated completely when they
 * arrive (the protocol's checks here, the rest by the engine when it takes the request, so
 * a refusal has no effect) and queued; the compute step turns the queue into one engine
 * flush (engine.h: one uhlm_decode, each request's share of it: fair compute) and the
 * replies. Sessions, the KV caches, prefix reuse, the forward and the verdicts are the
 * engine's; this file is transport and scheduling. At most one frame
 * per connection is read per loop turn; connections are served before new ones are
 * accepted (admission control, server.h).
 *
 * TLS (tls_cert/tls_key): every device connection starts with a non-blocking TLS handshake,
 * driven by the same loop as the frames (a silent or slow TLS client waits in poll like any
 * other, under HELLO's deadline and the pending budget), then carries the same frames.
 *
 * Beside it: socket.c (listening, accepting), conn.c (a connection's reply sending, frame
 * reader and drain), tls.c (TLS on a connection), metrics.c (the /metrics text and the stats
 * port's HTTP), log.c (log lines and their rate limits). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "uhlm/engine.h"
#include "model/mix64.h"
#include "net/conn.h"
#include "net/log.h"
#include "net/metrics.h"
#include "net/server_internal.h"
#include "net/socket.h"
#include "net/tls.h"
#include "uhlm/sampler.h"
#include "uhlm/server.h"
#include "uhlm/tokenizer.h"
#include "uhlm/wire.h"

#define CLOSE_GRACE_S 1.0 /* how long a closing connection may take to drain its last frame */
#define ACCEPT_BURST 64   /* connections accepted per loop turn, per listening socket */
#define ACCEPT_PAUSE_S 1.0 /* at the descriptor limit with nothing to drop: accepting pauses */
#define HTTP_DEADLINE_S 5.0  /* a stats reader's whole request, at most */
#define CREDIT_REFILL_S 10.0 /* seconds to earn a whole context of burst credit back */

/* rate-limited log kinds of the accept path (a connection's own: conn.h) */
enum { GK_ACCEPT_FAILED, GK_REFUSED, GK_EVICTED, GK_CONNECT, GK_N };


/* An address's burst credit (fair compute): tokens its requests may feed beyond their share
 * of a full step. Refilled at CREDIT_REFILL_S per context, capped at one context. */
typedef struct addr_credit {
    char addr[48];
    double tokens, t; /* t: last refill; also the age for replacing entries */
} addr_credit;

struct uhlm_server {
    uhlm_server_params p;
    const uhlm_model *m;
    uhlm_engine *eng; /* sessions, batching, forward pass and verdicts */
    uhlm_tls_ctx *tls; /* NULL: plain TCP */
    int V, n_ctx;
    uint64_t fingerprint;
    char model_name[256];
    uhlm_wire_limits lim, lim_open;
    uint32_t max_frame, max_batch_tokens;
    int lfd, sfd, stop_r, stop_w;
    int stop_requested; /* from the stop request to the exit: /health says 503 */
    int bound_port, bound_stats_port;
    conn **conns;
    int n_conns, conn_cap;
    int spare_fd;            /* held in reserve: closed to make room at the descriptor limit */
    double accept_resume_at; /* accepting paused until then (descriptor limit) */
    uhlm_lograte glr[GK_N];
    addr_credit *credits; /* per address, kept after its connections close */
    int n_credits, credits_cap;
    struct pollfd *pfds;
    conn **pconn; /* conn of each pollfd, NULL for the server's own fds */
    conn **qjobs;
    int *qsid, *qfeed; /* per queued job: engine session, tokens it may feed this step */
    int *ids;          /* n_ctx: a prompt or catch-up list as ints for the engine */
    uint64_t next_conn_id, next_session_id, nonce_state;
    double t_start;
    uhlm_log_sink log; /* params.log and log_user, stamped */
    /* stats */
    uint64_t c_conns, c_sessions, c_verify, c_accept, c_gen_tokens, c_forwards, c_batched;
    uint64_t c_batch_tokens, c_errors;
    uint64_t c_evicted, c_refused, c_timeouts, c_log_suppressed;
    uint64_t err_by_code[UHLM_WIRE_E_MAX + 1];
    uint64_t hist[N_HIST];
    double lat[LAT_RING];
    uint64_t n_lat;
};

/* ------------------------------------------------------------------ logging */

/* A line through limiter r (a connection's, or a global one); the line that follows a gap
 * says how many were left out. */
static void log_limited(uhlm_server *s, uhlm_lograte *r, uint64_t *conn_total, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void log_limited(uhlm_server *s, uhlm_lograte *r, uint64_t *conn_total, const char *fmt,
                        ...) {
    if (!uhlm_log_enabled(&s->log)) return;
    if (!uhlm_lograte_allow(r, uhlm_now())) {
        s->c_log_suppressed++;
        if (conn_total) (*conn_total)++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    uhlm_log_vprintf(&s->log, r->suppressed, fmt, ap);
    va_end(ap);
    r->suppressed = 0;
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
    p.handshake_timeout_ms = 5000;
    p.request_idle_timeout_ms = 300000;
    return p;
}

/* Without auth, a device's tenant is its address (FNV-1a, mixed), never 0 or 1 (those are
 * "everyone" and "the token holders"), so a device that reconnects from the same address
 * still resynchronises from its cached prefix while other hosts cannot probe it. */
static uint64_t address_tenant(const char *addr) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    h = uhlm_mix64(h);
    return h < 2 ? h + 2 : h;
}

/* ------------------------------------------------------------------ lifecycle */

void uhlm_server_free(uhlm_server *s) {
    if (!s) return;
    for (int i = 0; i < s->n_conns; i++) uhlm_conn_free(s->conns[i]);
    free(s->conns);
    free(s->pfds);
    free(s->pconn);
    free(s->qjobs);
    free(s->qsid);
    free(s->qfeed);
    free(s->ids);
    free(s->credits);
    if (s->spare_fd >= 0) close(s->spare_fd);
    if (s->lfd >= 0) close(s->lfd);
    if (s->sfd >= 0) close(s->sfd);
    if (s->stop_r >= 0) close(s->stop_r);
    if (s->stop_w >= 0) close(s->stop_w);
    uhlm_engine_free(s->eng);
    uhlm_tls_ctx_free(s->tls);
    free(s);
}

uhlm_server *uhlm_server_new(const uhlm_model *llm, const uhlm_server_params *p,
                             uhlm_error *err) {
    if (p->max_sessions < 1 || p->max_sessions > 4096) {
        uhlm_set_error(err, "server: max sessions %d outside [1, 4096]", p->max_sessions);
        return NULL;
    }
    if (p->batch_window_us < 0 || p->idle_timeout_ms < 0 || p->max_ctx < 0 || p->max_conns < 0 ||
        p->handshake_timeout_ms < 0 || p->request_idle_timeout_ms < -1 || p->max_pending < 0 ||
        p->max_conns_per_addr < 0 || p->max_stats_conns < 0 || p->step_tokens < 0 ||
        p->auth_len > UHLM_WIRE_MAX_AUTH) {
        uhlm_set_error(err, "server: negative window, timeout, limit or context, or auth token "
                            "over %u bytes", UHLM_WIRE_MAX_AUTH);
        return NULL;
    }
    if (p->max_conns > 65536 || p->max_pending > 65536 || p->max_stats_conns > 1024) {
        uhlm_set_error(err, "server: max conns %d / pending %d / stats conns %d: too many",
                       p->max_conns, p->max_pending, p->max_stats_conns);
        return NULL;
    }
    if ((p->tls_cert != NULL) != (p->tls_key != NULL)) {
        uhlm_set_error(err, "server: TLS needs both a certificate (--tls-cert) and its key "
                            "(--tls-key); only the %s was given",
                       p->tls_cert ? "certificate" : "key");
        return NULL;
    }
    if (!p->insecure) {
        int lo = uhlm_sock_is_loopback(p->host);
        int tls = p->tls_cert != NULL, auth = p->auth && p->auth_len > 0;
        if (lo < 0) {
            uhlm_set_error(err, "server: cannot resolve the bind address %s", p->host);
            return NULL;
        }
        if (!lo && (!tls || !auth)) {
            uhlm_set_error(err,
                           "server: refusing to listen on %s, which is not a loopback address, "
                           "without %s%s%s: devices on the network %s. Give %s%s%s, or "
                           "--insecure (uhlm_server_params.insecure) to serve like this anyway",
                           p->host, tls ? "" : "TLS", !tls && !auth ? " and without " : "",
                           auth ? "" : "an auth token",
                           !tls ? "would send their tokens and text in the clear"
                                : "could use the server without a secret",
                           tls ? "" : "--tls-cert FILE --tls-key FILE",
                           !tls && !auth ? " and " : "", auth ? "" : "--auth-token-file FILE");
            return NULL;
        }
    }
    uhlm_server *s = calloc(1, sizeof *s);
    if (!s) {
        uhlm_set_error(err, "server: out of memory");
        return NULL;
    }
    s->p = *p;
    s->log = (uhlm_log_sink){p->log, p->log_user, 1};
    if (s->p.max_conns == 0) s->p.max_conns = 2 * p->max_sessions + 8;
    if (s->p.handshake_timeout_ms == 0) s->p.handshake_timeout_ms = 5000;
    if (s->p.request_idle_timeout_ms == 0) s->p.request_idle_timeout_ms = 300000;
    if (s->p.max_pending == 0) s->p.max_pending = p->max_sessions > 16 ? p->max_sessions : 16;
    if (s->p.max_conns_per_addr == 0)
        s->p.max_conns_per_addr = p->max_sessions > 8 ? p->max_sessions : 8;
    if (s->p.max_stats_conns == 0) s->p.max_stats_conns = 4;
    if (s->p.step_tokens == 0) s->p.step_tokens = 64;
    /* every connection kind has its own budget; one more place for the test transport */
    s->conn_cap = s->p.max_conns + s->p.max_pending + s->p.max_stats_conns + 1;
    s->lfd = s->sfd = s->stop_r = s->stop_w = s->spare_fd = -1;
    s->bound_stats_port = -1;
    s->m = llm;
    s->V = uhlm_model_config(llm)->vocab_size;
    s->fingerprint = uhlm_model_tokenizer(llm) ? uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(llm)) : 0;
    const char *base = strrchr(uhlm_model_path(llm), '/');
    snprintf(s->model_name, sizeof s->model_name, "%.255s", base ? base + 1 : uhlm_model_path(llm));
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_seq = p->max_sessions;
    cp.n_ctx = p->max_ctx;
    cp.n_threads = p->n_threads;
    cp.simd = p->simd;
    s->eng = uhlm_engine_new(llm, &cp, err);
    if (!s->eng) goto fail;
    s->n_ctx = uhlm_engine_n_ctx(s->eng);
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
    int S = p->max_sessions, C = s->n_ctx, MC = s->conn_cap;
    s->conns = calloc((size_t)MC, sizeof *s->conns);
    s->pfds = calloc((size_t)MC + 3, sizeof *s->pfds);
    s->pconn = calloc((size_t)MC + 3, sizeof *s->pconn);
    s->qjobs = calloc((size_t)MC, sizeof *s->qjobs);
    s->qsid = calloc((size_t)MC, sizeof *s->qsid);
    s->qfeed = calloc((size_t)MC, sizeof *s->qfeed);
    s->ids = malloc(sizeof(int) * (size_t)C);
    s->credits_cap = 2 * MC + 64;
    s->credits = calloc((size_t)s->credits_cap, sizeof *s->credits);
    if (!s->conns || !s->pfds || !s->pconn || !s->qjobs || !s->qsid || !s->qfeed || !s->ids ||
        !s->credits) {
        uhlm_set_error(err, "server: out of memory (%d sessions x %d positions)", S, C);
        goto fail;
    }
    int pfd[2];
    if (pipe(pfd) != 0) {
        uhlm_set_error(err, "server: pipe: %s", strerror(errno));
        goto fail;
    }
    s->stop_r = pfd[0];
    s->stop_w = pfd[1];
    if (uhlm_sock_set_nonblock(s->stop_r) != 0 || uhlm_sock_set_nonblock(s->stop_w) != 0 ||
        fcntl(s->stop_r, F_SETFD, FD_CLOEXEC) != 0 || fcntl(s->stop_w, F_SETFD, FD_CLOEXEC) != 0) {
        uhlm_set_error(err, "server: pipe flags: %s", strerror(errno));
        goto fail;
    }
    /* the reserve descriptor: at EMFILE it is closed so that one connection can be accepted
     * and dropped (or room made), then taken again */
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (p->tls_cert) {
        uhlm_error te = {{0}};
        if (!(s->tls = uhlm_tls_server_ctx(p->tls_cert, p->tls_key, &te))) {
            uhlm_set_error(err, "server: %s", te.msg);
            goto fail;
        }
    }
    s->lfd = uhlm_sock_listen(p->host, p->port, &s->bound_port, err);
    if (s->lfd < 0) goto fail;
    if (p->stats_port >= 0) {
        s->sfd = uhlm_sock_listen(p->host, p->stats_port, &s->bound_stats_port, err);
        if (s->sfd < 0) goto fail;
    }
    s->t_start = uhlm_now();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->nonce_state = uhlm_mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
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
    session *ss = &c->sess;
    if (ss->sid < 0) return;
    int n_past = 0;
    uhlm_engine_committed(s->eng, ss->sid, &n_past);
    log_limited(s, &c->lr[LK_SESSION], &c->log_suppressed,
                "event=session_end conn=%llu session=%llu seq=%d n_past=%d verifications=%llu "
                "accepted=%llu reason=%s",
                (unsigned long long)c->id, (unsigned long long)ss->id, ss->sid, n_past,
                (unsigned long long)ss->n_verify, (unsigned long long)ss->n_accept, why);
    /* the KV cache stays: the engine lets a later OPEN of the same tenant reuse its prefix */
    uhlm_engine_close(s->eng, ss->sid);
    ss->sid = -1;
}

static void conn_kill(uhlm_server *s, conn *c, const char *why) {
    if (c->dead) return;
    c->job.active = 0; /* staged catch-up was never committed, so nothing to undo */
    session_release(s, c, why);
    uhlm_conn_close(c);
    c->dead = 1;
    s->accept_resume_at = 0; /* a descriptor is free again */
    if (!uhlm_log_enabled(&s->log)) return;
    /* connections that never got past HELLO come and go under one global limit (a flood of
     * them must not flood the log); a device's disconnect is always logged */
    uhlm_lograte *r = c->kind == K_HTTP || c->state == CS_HELLO ? &s->glr[GK_CONNECT] : NULL;
    if (r && !uhlm_lograte_allow(r, uhlm_now())) {
        s->c_log_suppressed++;
        return;
    }
    char extra[80] = "";
    int k = 0;
    if (c->log_suppressed)
        k = snprintf(extra, sizeof extra, " log_suppressed=%llu", (unsigned long long)c->log_suppressed);
    if (r && r->suppressed && k >= 0 && (size_t)k < sizeof extra)
        snprintf(extra + k, sizeof extra - (size_t)k, " suppressed=%llu",
                 (unsigned long long)r->suppressed);
    if (r) r->suppressed = 0;
    uhlm_log_printf(&s->log, "event=disconnect conn=%llu peer=%s reason=%s%s",
                    (unsigned long long)c->id, c->peer, why, extra);
}

/* Input after the write side is shut goes nowhere; EOF ends the connection. */
static void conn_drain(uhlm_server *s, conn *c) {
    if (uhlm_conn_drain(c))
        conn_kill(s, c, c->kind == K_HTTP ? "stats_served" : "closed_after_error");
}

/* Sends what can be sent now; the rest waits for POLLOUT. */
static void conn_flush(uhlm_server *s, conn *c) {
    const char *why = "";
    if (c->dead) return;
    int rc = uhlm_conn_send(c, &why);
    if (rc < 0) conn_kill(s, c, why);
    if (rc != 0 || !c->closing) return;
    if (c->mem_out) {
        conn_kill(s, c, "closed_after_error");
    } else if (!c->draining) {
        /* closing a socket with unread input makes the kernel send RST, which can destroy
         * the ERROR frame before the peer reads it: shut the write side, drain, then close */
        c->draining = 1;
        if (c->ssl) { /* close_notify, then the drain goes on below TLS */
            uhlm_stream l = {c->fd, c->ssl};
            uhlm_stream_tls_end(&l);
            c->ssl = NULL;
        }
        if (shutdown(c->fd, SHUT_WR) != 0) conn_kill(s, c, "shutdown_failed");
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
    if (code == UHLM_WIRE_E_TIMEOUT) s->c_timeouts++;
    if (c->tls_hs) { /* no frame can go through an unfinished TLS handshake */
        conn_kill(s, c,
                  code == UHLM_WIRE_E_TIMEOUT ? "tls_handshake_timeout" : "tls_handshake_cut");
        return;
    }
    char safe[160];
    uhlm_log_safe(safe, sizeof safe, msg, strlen(msg));
    log_limited(s, &c->lr[LK_ERROR], &c->log_suppressed,
                "event=error conn=%llu peer=%s code=%s fatal=%d request=%u detail=%s",
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

/* Best effort, for a connection about to be closed at once: a fatal ERROR BUSY saying why,
 * if the socket takes it now. */
static void tell_busy(int fd, struct ssl_st *ssl, const char *why) {
    uhlm_wire_buf b = {0};
    uhlm_error e;
    if (uhlm_wire_encode_error(&b, UHLM_WIRE_E_BUSY, UHLM_WIRE_EF_FATAL, 0, &e, "%s", why) == 0) {
        uhlm_stream l = {fd, ssl};
        short want;
        ssize_t w = uhlm_stream_write(&l, b.data, b.len, &want); /* the socket never blocks */
        (void)w;
    }
    uhlm_wire_buf_free(&b);
}

static int is_pending(const conn *c) { return !c->dead && c->kind == K_DEVICE && c->state == CS_HELLO; }

/* Live connections of a kind: pending (before HELLO) or past it, optionally from one address. */
static int count_conns(const uhlm_server *s, int kind, int state, const char *addr) {
    int n = 0;
    for (int i = 0; i < s->n_conns; i++) {
        const conn *c = s->conns[i];
        if (c->dead || c->kind != kind || (state >= 0 && c->state != state)) continue;
        if (!addr || !strcmp(c->addr, addr)) n++;
    }
    return n;
}

/* The connection to drop for a newcomer: a stats reader, the oldest one; a device, the
 * oldest pending connection from addr, or (addr NULL) from the address that holds the most
 * pending connections, so that one address flooding the budget only displaces itself. */
static conn *admission_victim(const uhlm_server *s, int kind, const char *addr) {
    conn *best = NULL;
    int best_n = 0;
    for (int i = 0; i < s->n_conns; i++) {
        conn *c = s->conns[i];
        if (c->dead || c->kind != kind || (kind == K_DEVICE && !is_pending(c))) continue;
        if (addr && strcmp(c->addr, addr)) continue;
        int n = kind == K_DEVICE && !addr ? count_conns(s, K_DEVICE, CS_HELLO, c->addr) : 1;
        if (n > best_n || (n == best_n && c->t_accept < best->t_accept)) {
            best = c;
            best_n = n;
        }
    }
    return best;
}

static void reap(uhlm_server *s);
static void conn_read(uhlm_server *s, conn *c);

static void evict(uhlm_server *s, conn *v, const char *why) {
    s->c_evicted++;
    log_limited(s, &s->glr[GK_EVICTED], NULL, "event=evicted conn=%llu peer=%s reason=%s",
                (unsigned long long)v->id, v->peer, why);
    /* (a connection still in its TLS handshake can only be closed) */
    if (v->kind == K_DEVICE && v->fd >= 0 && !v->tls_hs) tell_busy(v->fd, v->ssl, why);
    conn_kill(s, v, "evicted");
}

static void refuse(uhlm_server *s, int fd, const char *peer, int kind, const char *why) {
    s->c_refused++;
    s->c_errors += kind == K_DEVICE;
    s->err_by_code[UHLM_WIRE_E_BUSY] += kind == K_DEVICE;
    /* a TLS client could not read a plain frame, and there is no handshake yet */
    if (kind == K_DEVICE && !s->tls) tell_busy(fd, NULL, why);
    close(fd);
    log_limited(s, &s->glr[GK_REFUSED], NULL, "event=refused peer=%s reason=%s", peer, why);
}

/* Makes room for a new connection of this kind from addr (admission control, server.h);
 * 0 when it may be added, -1 when it must be refused (its address is full of connections
 * past HELLO). Dropped connections are reaped by the caller. */
static int admit(uhlm_server *s, int kind, const char *addr, const char **why) {
    if (kind == K_HTTP) {
        *why = "stats connections full";
        conn *v = count_conns(s, K_HTTP, -1, NULL) >= s->p.max_stats_conns
                      ? admission_victim(s, K_HTTP, NULL) : NULL;
        if (v) evict(s, v, *why);
        return 0;
    }
    for (;;) {
        const char *a = NULL;
        if (count_conns(s, K_DEVICE, -1, addr) >= s->p.max_conns_per_addr) {
            *why = "too many connections from this address";
            a = addr;
        } else if (count_conns(s, K_DEVICE, CS_HELLO, NULL) >= s->p.max_pending) {
            *why = "too many connections waiting for HELLO";
        } else {
            return 0;
        }
        conn *v = admission_victim(s, K_DEVICE, a);
        if (!v) return -1;
        /* a device that connected in the same burst may have its HELLO waiting unread:
         * read it first, and drop only a connection that really has said nothing */
        if (v->fd >= 0) conn_read(s, v);
        if (is_pending(v) && !v->closing) evict(s, v, *why);
        else if (is_pending(v)) conn_kill(s, v, "evicted");
    }
}


/* accept() failed with EMFILE/ENFILE. The listening socket stays readable, so retrying at
 * once would spin: make room by dropping the oldest pending connection if there is one,
 * otherwise pause accepting until a connection closes (conn_kill) or ACCEPT_PAUSE_S. 1 when
 * room was made and accept may be retried. */
static int at_fd_limit(uhlm_server *s, int err) {
    conn *v = admission_victim(s, K_DEVICE, NULL);
    log_limited(s, &s->glr[GK_ACCEPT_FAILED], NULL, "event=accept_failed error=%s action=%s",
                err == EMFILE ? "EMFILE" : "ENFILE", v ? "evict_pending" : "pause");
    if (v) {
        evict(s, v, "descriptor limit");
        reap(s);
        return 1;
    }
    s->accept_resume_at = uhlm_now() + ACCEPT_PAUSE_S;
    return 0;
}

static conn *conn_new(uhlm_server *s, int fd, int kind, const char *peer, const char *addr) {
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->kind = kind;
    c->state = CS_HELLO;
    c->id = ++s->next_conn_id;
    c->sess.sid = -1;
    c->rd_want = POLLIN;
    c->wr_want = POLLOUT;
    c->t_accept = c->last_rx = c->last_req = uhlm_now();
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    s->conns[s->n_conns++] = c;
    if (kind == K_DEVICE) s->c_conns++;
    return c;
}

static void accept_conns(uhlm_server *s, int lfd, int kind) {
    int fd_retry = 1;
    for (int k = 0; k < ACCEPT_BURST; k++) {
        char peer[64], hbuf[48];
        int fd = uhlm_sock_accept(lfd, peer, sizeof peer, hbuf, sizeof hbuf);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && fd_retry && at_fd_limit(s, errno)) {
                fd_retry = 0; /* one eviction per turn: the rest wait in the backlog */
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EMFILE && errno != ENFILE)
                log_limited(s, &s->glr[GK_ACCEPT_FAILED], NULL, "event=accept_failed error=%d",
                            errno);
            return;
        }
        const char *why = "";
        if (admit(s, kind, hbuf, &why) != 0) {
            refuse(s, fd, peer, kind, why);
            continue;
        }
        reap(s); /* the evicted connection's place is needed now */
        conn *c = s->n_conns < s->conn_cap ? conn_new(s, fd, kind, peer, hbuf) : NULL;
        if (!c) {
            refuse(s, fd, peer, kind, s->n_conns < s->conn_cap ? "out of memory" : "table full");
            continue;
        }
        log_limited(s, &s->glr[GK_CONNECT], NULL, "event=connect conn=%llu peer=%s kind=%s",
                    (unsigned long long)c->id, peer, kind == K_DEVICE ? "device" : "stats");
        if (kind == K_DEVICE && s->tls) {
            if (!(c->ssl = uhlm_tls_accept_new(s->tls, fd))) {
                conn_kill(s, c, "out_of_memory");
                continue;
            }
            c->tls_hs = 1;
        }
        /* a device sends HELLO right after connecting: read it now, so that it is past the
         * handshake before the next newcomer could displace it */
        conn_read(s, c);
    }
}

/* ------------------------------------------------------------------ requests */

static int count_open_sessions(const uhlm_server *s) { return uhlm_engine_n_open(s->eng); }

static void reply_done(uhlm_server *s, conn *c, double t_arrive) {
    double now = uhlm_now();
    s->lat[s->n_lat++ % LAT_RING] = now - t_arrive;
    c->last_rx = c->last_req = now; /* the device's silence starts when it has its answer */
    conn_flush(s, c);
}

static void on_hello(uhlm_server *s, conn *c, const uhlm_wire_hello *h) {
    char client[80];
    uhlm_log_safe(client, sizeof client, h->client.p, h->client.len);
    if (h->version != UHLM_WIRE_VERSION) {
        send_error(s, c, UHLM_WIRE_E_BAD_VERSION, 1, 0, "protocol version %u, this server speaks %d",
                   (unsigned)h->version, UHLM_WIRE_VERSION);
        return;
    }
    if (s->p.auth && s->p.auth_len > 0) {
        /* constant time: both sides padded to the protocol's maximum and compared whole, the
         * lengths compared alongside, so neither the secret's length nor how much of it a
         * guess got right shows in the time taken */
        uint8_t want[UHLM_WIRE_MAX_AUTH], got[UHLM_WIRE_MAX_AUTH];
        size_t n_got = h->auth.len < sizeof got ? h->auth.len : sizeof got;
        memset(want, 0, sizeof want);
        memset(got, 0, sizeof got);
        memcpy(want, s->p.auth, s->p.auth_len);
        if (n_got) memcpy(got, h->auth.p, n_got);
        int diff = CRYPTO_memcmp(want, got, sizeof want) != 0;
        diff |= h->auth.len != s->p.auth_len;
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
    if (count_conns(s, K_DEVICE, CS_READY, NULL) >= s->p.max_conns) {
        s->c_refused++;
        send_error(s, c, UHLM_WIRE_E_BUSY, 1, 0, "server full: %d connections", s->p.max_conns);
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
    s->nonce_state = uhlm_mix64(s->nonce_state + 0x9e3779b97f4a7c15ULL);
    w.nonce = s->nonce_state;
    w.model = uhlm_wire_cstr(s->model_name);
    uhlm_error e;
    if (uhlm_wire_encode_welcome(&c->out, &w, &e) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    c->state = CS_READY;
    c->last_req = uhlm_now();
    /* the tenant whose prefix caches this connection may reuse (Privacy in server.h): one
     * secret makes its holders one tenant; without auth, the peer address is all there is */
    c->tenant = s->p.share_prefix_cache ? 0 : s->p.auth_len ? 1 : address_tenant(c->addr);
    uhlm_log_printf(&s->log, "event=hello conn=%llu peer=%s client=%s nonce=%016llx",
                    (unsigned long long)c->id, c->peer, client, (unsigned long long)w.nonce);
    conn_flush(s, c);
}



/* The OPEN's prefill is done (or was not needed): the session is open, OPENED goes out. */
static void open_done(uhlm_server *s, conn *c, const uhlm_engine_result *r) {
    session *ss = &c->sess;
    job *j = &c->job;
    uhlm_error e;
    j->active = 0;
    s->c_sessions++;
    uhlm_wire_opened op;
    memset(&op, 0, sizeof op);
    op.session_id = ss->id;
    op.n_ctx = (uint32_t)s->n_ctx;
    op.n_past = (uint32_t)r->n_past;
    op.cost = r->cost;
    if (uhlm_wire_encode_opened(&c->out, &op, &e) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    log_limited(s, &c->lr[LK_SESSION], &c->log_suppressed,
                "event=open conn=%llu session=%llu seq=%d mode=%s n_prompt=%d reused=%d "
                "temp=%g top_k=%d top_p=%g",
                (unsigned long long)c->id, (unsigned long long)ss->id, ss->sid,
                ss->mode == UHLM_WIRE_MODE_VERIFY ? "verify" : "generate", r->n_past, r->reused,
                (double)ss->s.temp, ss->s.top_k, (double)ss->s.top_p);
    reply_done(s, c, j->t_arrive);
}

/* The wire code for an engine refusal. */
static int engine_code(int rc) {
    switch (-rc) {
    case UHLM_ENGINE_E_INVALID: return UHLM_WIRE_E_BAD_PAYLOAD;
    case UHLM_ENGINE_E_NO_SESSION: return UHLM_WIRE_E_NOT_OPEN;
    case UHLM_ENGINE_E_BAD_TOKEN: return UHLM_WIRE_E_BAD_TOKEN;
    case UHLM_ENGINE_E_BAD_PROBS: return UHLM_WIRE_E_BAD_PROBS;
    case UHLM_ENGINE_E_CTX_FULL: return UHLM_WIRE_E_CTX_FULL;
    case UHLM_ENGINE_E_BUSY: return UHLM_WIRE_E_BUSY;
    case UHLM_ENGINE_E_PENDING: return UHLM_WIRE_E_BAD_STATE;
    default: return UHLM_WIRE_E_INTERNAL;
    }
}

/* OPEN: takes an engine session and its cache now; the prefill is queued and batched like
 * the other requests (compute_step), so that a long prompt cannot stall the other devices. */
static void on_open(uhlm_server *s, conn *c, const uhlm_wire_open *o) {
    uhlm_sampling smp = {o->temp, (int)o->top_k, o->top_p};
    uhlm_error e;
    if (o->top_k > (uint32_t)s->V) smp.top_k = s->V; /* top-k >= V is "off" either way */
    /* checked before the old session goes: a refused OPEN leaves it as it was */
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
    /* An OPEN replaces this connection's session; the engine then picks the free cache of
     * this tenant with the longest common prefix (a resync after a reconnect costs little) */
    session_release(s, c, "reopened");
    uhlm_wire_tokens_copy(&o->prompt, s->ids);
    uhlm_engine_open_req req = {s->ids, n, smp, c->tenant};
    int sid = uhlm_engine_open(s->eng, &req, &e);
    if (sid < 0) {
        send_error(s, c, engine_code(sid), 0, 0, "%s", e.msg);
        return;
    }
    session *ss = &c->sess;
    ss->sid = sid;
    ss->id = ++s->next_session_id;
    ss->mode = o->mode;
    ss->s = smp;
    ss->n_verify = ss->n_accept = 0;
    job *j = &c->job;
    memset(j, 0, sizeof *j);
    j->type = UHLM_WIRE_OPEN;
    j->t_arrive = j->ready_at = uhlm_now();
    uhlm_engine_result r;
    if (uhlm_engine_take(s->eng, sid, &r)) {
        open_done(s, c, &r); /* the cached prefix covers the prompt */
        return;
    }
    j->active = 1;
}

/* The protocol's checks common to VERIFY and GENERATE (the engine checks the rest); 0 when
 * the request may go to the engine. */
static int check_request(uhlm_server *s, conn *c, uint16_t type, uint32_t rid, uint32_t pos) {
    session *ss = &c->sess;
    if (ss->sid < 0) {
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
    int n_past = 0;
    uhlm_engine_committed(s->eng, ss->sid, &n_past);
    if (pos != (uint32_t)n_past) {
        send_error(s, c, UHLM_WIRE_E_DESYNC, 0, rid, "pos %u, the session holds %d", (unsigned)pos,
                   n_past);
        return -1;
    }
    return 0;
}

/* The engine took the request: it joins the compute queue. */
static void queue_job(conn *c, uint16_t type, uint32_t rid) {
    job *j = &c->job;
    memset(j, 0, sizeof *j);
    j->active = 1;
    j->type = type;
    j->request_id = rid;
    j->t_arrive = j->ready_at = uhlm_now();
}

static void on_verify(uhlm_server *s, conn *c, const uhlm_wire_verify *v) {
    if (check_request(s, c, UHLM_WIRE_VERIFY, v->request_id, v->pos) != 0) return;
    int greedy = c->sess.s.temp == 0.0f;
    if ((v->flags & UHLM_WIRE_VF_GREEDY) && !greedy) {
        send_error(s, c, UHLM_WIRE_E_BAD_PAYLOAD, 0, v->request_id,
                   "GREEDY flag in a session with temperature %g", (double)c->sess.s.temp);
        return;
    }
    uhlm_wire_tokens_copy(&v->catchup, s->ids);
    uhlm_verify_req r = {s->ids, (int)v->catchup.n, (int)v->draft,
                         {(uhlm_payload_kind)v->kind, (int)v->k, v->prob_bits},
                         v->x.p, v->x.len, v->draw_seed};
    uhlm_error e;
    int rc = uhlm_engine_submit_verify(s->eng, c->sess.sid, &r, v->request_id, &e);
    if (rc < 0) {
        send_error(s, c, engine_code(rc), 0, v->request_id, "%s", e.msg);
        return;
    }
    queue_job(c, UHLM_WIRE_VERIFY, v->request_id);
}

static void on_generate(uhlm_server *s, conn *c, const uhlm_wire_generate *g) {
    if (check_request(s, c, UHLM_WIRE_GENERATE, g->request_id, g->pos) != 0) return;
    uhlm_wire_tokens_copy(&g->catchup, s->ids);
    uhlm_generate_req r = {s->ids, (int)g->catchup.n, (int)g->n_gen,
                           (g->flags & UHLM_WIRE_GF_STOP_EOS) != 0, g->draw_seed};
    uhlm_error e;
    int rc = uhlm_engine_submit_generate(s->eng, c->sess.sid, &r, g->request_id, &e);
    if (rc < 0) {
        send_error(s, c, engine_code(rc), 0, g->request_id, "%s", e.msg);
        return;
    }
    queue_job(c, UHLM_WIRE_GENERATE, g->request_id);
}

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
    if (type == UHLM_WIRE_OPEN || type == UHLM_WIRE_VERIFY || type == UHLM_WIRE_GENERATE ||
        type == UHLM_WIRE_CLOSE)
        c->last_req = uhlm_now(); /* work, unlike PING: resets the request idle timeout */
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

static void metrics_view(const uhlm_server *s, uhlm_metrics_view *v);

/* A stats reader: its request, then the answer (/metrics, /health: metrics.h), then the
 * connection closes. */
static void http_read(uhlm_server *s, conn *c) {
    const char *why = "";
    int rc = uhlm_http_read_request(c, &why);
    if (rc <= 0) {
        if (rc < 0) conn_kill(s, c, why);
        return;
    }
    uhlm_metrics_view v;
    metrics_view(s, &v);
    if (uhlm_http_respond(c, &v) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    c->closing = 1;
    c->close_deadline = uhlm_now() + CLOSE_GRACE_S;
    conn_flush(s, c);
}

/* One step of c's TLS handshake; 1 when it is done and frames may be read. A device that
 * speaks the plain protocol to a TLS server is told so in a plain ERROR (its HELLO frame is
 * cut, so the error is the fatal answer to it); any other failure closes the connection. */
static int tls_step(uhlm_server *s, conn *c) {
    int plain = 0;
    uhlm_error e = {{0}};
    int rc = uhlm_conn_tls_step(c, &plain, &e);
    if (rc >= 0) return rc == 0;
    char safe[160];
    uhlm_log_safe(safe, sizeof safe, e.msg, strlen(e.msg));
    log_limited(s, &c->lr[LK_ERROR], &c->log_suppressed,
                "event=tls_error conn=%llu peer=%s detail=%s", (unsigned long long)c->id,
                c->peer, safe);
    if (!plain) {
        conn_kill(s, c, "tls_handshake_failed");
        return 0;
    }
    uhlm_stream l = {c->fd, c->ssl};
    uhlm_stream_tls_end(&l);
    c->ssl = NULL;
    c->tls_hs = 0;
    send_error(s, c, UHLM_WIRE_E_BAD_VERSION, 1, 0,
               "this server speaks TLS only: connect with --tls-ca FILE (or --tls-insecure, "
               "for tests)");
    return 0;
}

/* Reads at most one frame (the per-turn budget of a connection: one busy client cannot
 * keep the loop to itself) and handles it. */
static void conn_read(uhlm_server *s, conn *c) {
    if (c->kind == K_HTTP) {
        http_read(s, c);
        return;
    }
    if (c->tls_hs && !c->dead && !tls_step(s, c)) return;
    if (!wants_read(c)) return;
    int code = 0;
    const char *why = "";
    uhlm_error e;
    switch (uhlm_conn_read_frame(c, s->max_frame, &code, &e, &why)) {
    case UHLM_CONN_FRAME: on_frame(s, c); break;
    case UHLM_CONN_SKIPPED:
        send_error(s, c, UHLM_WIRE_E_UNKNOWN_TYPE, c->state == CS_HELLO, 0,
                   "unknown message type %u", (unsigned)c->h.type);
        break;
    case UHLM_CONN_BAD: send_error(s, c, code, 1, 0, "%s", e.msg); break;
    case UHLM_CONN_GONE: conn_kill(s, c, why); break;
    default: break; /* UHLM_CONN_AGAIN: the rest of the frame is still on its way */
    }
}

/* ------------------------------------------------------------------ compute */

static int hist_bucket(int n) {
    int b = 0;
    while (b < N_HIST - 1 && n > (1 << b)) b++;
    return b;
}

/* A request the engine refused after all (a failed forward): the engine rolled the session
 * back (a failed prefill closed it); the device gets INTERNAL. */
static void job_fail(uhlm_server *s, conn *c, const uhlm_engine_result *r) {
    job *j = &c->job;
    j->active = 0;
    if (j->type == UHLM_WIRE_OPEN) {
        session_release(s, c, "prefill_failed");
        send_error(s, c, UHLM_WIRE_E_INTERNAL, 0, 0, "%s", r->error);
        return;
    }
    send_error(s, c, UHLM_WIRE_E_INTERNAL, 0, j->request_id, "%s", r->error);
}


/* Tokens each request may feed in this step, before its credit: all when they fit in
 * step_tokens, else an equal share of it, at least one (every request moves on every step). */
static int step_share(const uhlm_server *s, conn **q, int nq) {
    long need = 0;
    for (int i = 0; i < nq; i++) need += uhlm_engine_pending(s->eng, q[i]->sess.sid);
    if (need <= s->p.step_tokens) return s->n_ctx;
    int share = s->p.step_tokens / nq;
    return share > 0 ? share : 1;
}

/* c's address's credit, refilled up to now. An address seen for the first time starts with a
 * full context; the table keeps addresses after their connections close (reconnecting does
 * not refill it), and when full replaces the one least recently refilled. */
static addr_credit *credit_of(uhlm_server *s, conn *c, double now) {
    addr_credit *e = NULL;
    if (c->credit_slot < s->n_credits && !strcmp(s->credits[c->credit_slot].addr, c->addr))
        e = &s->credits[c->credit_slot];
    for (int i = 0; !e && i < s->n_credits; i++)
        if (!strcmp(s->credits[i].addr, c->addr)) e = &s->credits[c->credit_slot = i];
    if (!e) {
        int slot = 0;
        if (s->n_credits < s->credits_cap)
            slot = s->n_credits++;
        else
            for (int i = 1; i < s->n_credits; i++)
                if (s->credits[i].t < s->credits[slot].t) slot = i;
        e = &s->credits[c->credit_slot = slot];
        snprintf(e->addr, sizeof e->addr, "%s", c->addr);
        e->tokens = s->n_ctx;
        e->t = now;
    }
    e->tokens += (now - e->t) * s->n_ctx / CREDIT_REFILL_S;
    if (e->tokens > s->n_ctx) e->tokens = s->n_ctx;
    e->t = now;
    return e;
}

/* How many of its `need` tokens a request feeds in a step whose share is `share`. Past the
 * share it spends its address's credit: a device that opens or catches up now and then
 * (every address starts with a context of credit and earns one back in CREDIT_REFILL_S)
 * does so at once, while a client that sends nothing but prompts, from one address or
 * through reconnects, is held to its share once its credit is spent. */
static int job_feed(uhlm_server *s, conn *c, int need, int share, double now) {
    if (need <= share) return need;
    addr_credit *e = credit_of(s, c, now);
    int allowed = share + (int)e->tokens, feed = need < allowed ? need : allowed;
    e->tokens -= feed - share;
    return feed;
}

/* A VERIFY the engine decided: the VERDICT, its result as is. */
static void verdict_done(uhlm_server *s, conn *c, const uhlm_engine_result *r) {
    session *ss = &c->sess;
    job *j = &c->job;
    uhlm_error e;
    ss->n_verify++;
    ss->n_accept += (uint64_t)r->verdict.accepted;
    s->c_verify++;
    s->c_accept += (uint64_t)r->verdict.accepted;
    j->active = 0;
    if (uhlm_wire_encode_verdict(&c->out, &r->verdict, NULL, &e) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    reply_done(s, c, j->t_arrive);
}

/* A GENERATE the engine finished: GENERATED. */
static void generated_done(uhlm_server *s, conn *c, const uhlm_engine_result *r) {
    job *j = &c->job;
    uhlm_error e;
    s->c_gen_tokens += (uint64_t)r->n_tokens;
    uhlm_wire_generated gd;
    memset(&gd, 0, sizeof gd);
    gd.request_id = r->request_id;
    gd.tokens.ids = r->tokens;
    gd.tokens.n = (uint32_t)r->n_tokens;
    gd.cost = r->cost;
    gd.n_past = (uint32_t)r->n_past;
    j->active = 0;
    if (uhlm_wire_encode_generated(&c->out, &gd, NULL, &e) != 0) {
        conn_kill(s, c, "out_of_memory");
        return;
    }
    reply_done(s, c, j->t_arrive);
}

/* One engine flush over the queued requests q[0..nq): each feeds its share of tokens
 * (step_share, job_feed: an OPEN's prompt, a catch-up, the pending token) in ONE forward,
 * and the requests whose tokens are all in get their replies. A request that did not stays
 * queued, due at once. A failed forward refuses the requests (INTERNAL, no effect) but is
 * not fatal for the server: it is an allocation failure, not corruption. */
static int compute_step(uhlm_server *s, conn **q, int nq) {
    const int share = step_share(s, q, nq);
    const double now = uhlm_now();
    for (int i = 0; i < nq; i++) {
        s->qsid[i] = q[i]->sess.sid;
        s->qfeed[i] = job_feed(s, q[i], uhlm_engine_pending(s->eng, s->qsid[i]), share, now);
    }
    uhlm_error e;
    int n = uhlm_engine_flush(s->eng, s->qsid, s->qfeed, nq, &e);
    if (n < 0)
        log_limited(s, &s->glr[GK_REFUSED], NULL, "event=forward_failed batch=%d", nq);
    if (n > 0) {
        s->c_forwards++;
        s->c_batched += (uint64_t)nq;
        s->c_batch_tokens += (uint64_t)n;
        s->hist[hist_bucket(nq)]++;
    }
    for (int i = 0; i < nq; i++) {
        conn *c = q[i];
        uhlm_engine_result r;
        if (!uhlm_engine_take(s->eng, s->qsid[i], &r)) {
            c->job.ready_at = -1e300; /* more tokens to feed: the next step takes them */
            continue;
        }
        switch (r.kind) {
        case UHLM_ENGINE_OPENED: open_done(s, c, &r); break;
        case UHLM_ENGINE_VERDICT: verdict_done(s, c, &r); break;
        case UHLM_ENGINE_GENERATED: generated_done(s, c, &r); break;
        default: job_fail(s, c, &r); break;
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
        /* one forward per request and step, oldest first */
        for (int i = 0; i < nq; i++)
            if (s->qjobs[i]->job.active && !s->qjobs[i]->dead) compute_step(s, &s->qjobs[i], 1);
    } else {
        double due = oldest + s->p.batch_window_us * 1e-6;
        double now = uhlm_now();
        if (!force && nq < count_open_sessions(s) && now < due) {
            if (due < *next_deadline) *next_deadline = due;
            return 0;
        }
        compute_step(s, s->qjobs, nq);
    }
    /* a request with more steps to go is due at once: do not sleep in poll */
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
            uhlm_conn_free(c);
        } else {
            s->conns[k++] = c;
        }
    }
    s->n_conns = k;
}

/* The earliest of a connection's deadlines that apply, and what it is for. */
static double conn_deadline(const uhlm_server *s, const conn *c, const char **what, int *ms) {
    double dl = 1e300;
#define EARLIER(t, w, m) do { if ((t) < dl) { dl = (t); *what = (w); *ms = (m); } } while (0)
    if (s->p.idle_timeout_ms > 0)
        EARLIER(c->last_rx + s->p.idle_timeout_ms * 1e-3, "no complete frame", s->p.idle_timeout_ms);
    if (c->kind == K_HTTP) {
        EARLIER(c->t_accept + HTTP_DEADLINE_S, "no request", (int)(HTTP_DEADLINE_S * 1e3));
        EARLIER(c->t_accept + s->p.handshake_timeout_ms * 1e-3, "no request", s->p.handshake_timeout_ms);
    } else if (c->state == CS_HELLO) {
        EARLIER(c->t_accept + s->p.handshake_timeout_ms * 1e-3, "no HELLO", s->p.handshake_timeout_ms);
    } else if (s->p.request_idle_timeout_ms > 0) {
        EARLIER(c->last_req + s->p.request_idle_timeout_ms * 1e-3,
                "no OPEN, VERIFY, GENERATE or CLOSE", s->p.request_idle_timeout_ms);
    }
#undef EARLIER
    return dl;
}

static void check_timeouts(uhlm_server *s, double now, double *next_deadline) {
    for (int i = 0; i < s->n_conns; i++) {
        conn *c = s->conns[i];
        if (c->dead) continue;
        if (c->closing) {
            if (now >= c->close_deadline) conn_kill(s, c, "close_timeout");
            else if (c->close_deadline < *next_deadline) *next_deadline = c->close_deadline;
            continue;
        }
        if (c->job.active) continue;
        const char *what = "";
        int ms = 0;
        double dl = conn_deadline(s, c, &what, &ms);
        if (now >= dl) {
            if (c->kind == K_HTTP || c->tls_hs) {
                s->c_timeouts++;
                conn_kill(s, c, c->tls_hs ? "tls_handshake_timeout" : "timeout");
            } else {
                send_error(s, c, UHLM_WIRE_E_TIMEOUT, 1, 0, "%s for %d ms", what, ms);
            }
        } else if (dl < *next_deadline) {
            *next_deadline = dl;
        }
    }
}

int uhlm_server_run(uhlm_server *s, uhlm_error *err) {
    uhlm_log_printf(
        &s->log,
        "event=listening host=%s port=%d stats_port=%d model=%s vocab=%d n_ctx=%d "
        "max_sessions=%d max_conns=%d batching=%d batch_window_us=%d idle_timeout_ms=%d "
        "max_frame=%u auth=%s handshake_timeout_ms=%d request_idle_timeout_ms=%d "
        "max_pending=%d max_conns_per_addr=%d max_stats_conns=%d step_tokens=%d "
        "share_prefix_cache=%d tls=%s",
        s->p.host ? s->p.host : "127.0.0.1", s->bound_port, s->bound_stats_port, s->model_name,
        s->V, s->n_ctx, s->p.max_sessions, s->p.max_conns, s->p.batching, s->p.batch_window_us,
        s->p.idle_timeout_ms, (unsigned)s->max_frame, s->p.auth_len ? "on" : "off",
        s->p.handshake_timeout_ms, s->p.request_idle_timeout_ms, s->p.max_pending,
        s->p.max_conns_per_addr, s->p.max_stats_conns, s->p.step_tokens, s->p.share_prefix_cache,
        s->tls ? "on" : "off");
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
                    /* a stats reader stays: it is answered (/health with 503) until the exit */
                    if (c->kind == K_DEVICE)
                        send_error(s, c, UHLM_WIRE_E_SHUTTING_DOWN, 1, 0, "server stopping");
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
        if (now < s->accept_resume_at) {
            if (s->accept_resume_at < next) next = s->accept_resume_at;
        } else {
            if (!stopping) {
                s->pfds[np] = (struct pollfd){s->lfd, POLLIN, 0};
                s->pconn[np++] = NULL;
            }
            /* while stopping too, so that a load balancer's health check sees 503, not silence */
            if (s->sfd >= 0) {
                s->pfds[np] = (struct pollfd){s->sfd, POLLIN, 0};
                s->pconn[np++] = NULL;
            }
        }
        int tls_ready = 0; /* input decrypted already: poll cannot see it */
        for (int i = 0; i < s->n_conns; i++) {
            conn *c = s->conns[i];
            short ev = 0;
            if (c->tls_hs)
                ev |= c->rd_want;
            else if (((!stopping || c->kind == K_HTTP) && wants_read(c)) || c->draining)
                ev |= c->ssl ? c->rd_want : POLLIN;
            /* a device that hangs up while its request is queued: free its session now */
            if (c->kind == K_DEVICE && !c->draining) ev |= POLLRDHUP;
            if (c->out.len > c->out_off) ev |= c->ssl ? c->wr_want : POLLOUT;
            if (c->ssl && !stopping && wants_read(c) && uhlm_conn_tls_pending(c)) tls_ready = 1;
            s->pfds[np] = (struct pollfd){c->fd, ev, 0};
            s->pconn[np++] = c;
        }
        if (stopping == 2 && shutdown_deadline < next) next = shutdown_deadline;
        if (tls_ready) next = 0;
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
        /* connections first, then the listening sockets: a device's HELLO that is already
         * here is read before newcomers could displace its connection (admission), and
         * accepting (which reaps) comes after the last use of pconn */
        for (int i = 0; i < np && (pr > 0 || tls_ready); i++) {
            short re = s->pfds[i].revents;
            conn *c = s->pconn[i];
            if (!c || c->dead) continue;
            if (c->ssl && !stopping && wants_read(c) && uhlm_conn_tls_pending(c)) re |= POLLIN;
            if (!re) continue;
            if (c->ssl && (re & (POLLIN | POLLOUT))) {
                /* a blocked TLS read may wait for POLLOUT and a blocked write for POLLIN:
                 * either readiness retries both */
                if (c->out.len > c->out_off) conn_flush(s, c);
                if (!c->dead && (c->tls_hs || wants_read(c))) conn_read(s, c);
                if (!c->dead && !c->draining && (re & POLLRDHUP) && !wants_read(c) && !c->tls_hs)
                    conn_kill(s, c, "hangup");
                continue;
            }
            if (re & POLLOUT) conn_flush(s, c);
            if (c->dead) continue;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                if (c->draining) conn_drain(s, c);
                else if (wants_read(c) || c->tls_hs) conn_read(s, c);
                else if (re & (POLLHUP | POLLERR)) conn_kill(s, c, "hangup");
            }
            if (!c->dead && !c->draining && (re & POLLRDHUP) && !wants_read(c)) {
                conn_kill(s, c, "hangup");
            }
        }
        for (int i = 0; i < np && pr > 0; i++) {
            if (!s->pfds[i].revents || s->pconn[i]) continue;
            if (s->pfds[i].fd == s->stop_r) {
                char b[64];
                while (read(s->stop_r, b, sizeof b) > 0) {
                }
                if (!stopping) {
                    uhlm_log_printf(&s->log, "event=stopping conns=%d", s->n_conns);
                    stopping = 1;
                    s->stop_requested = 1;
                }
            } else if (!stopping || s->pfds[i].fd == s->sfd) {
                accept_conns(s, s->pfds[i].fd, s->pfds[i].fd == s->lfd ? K_DEVICE : K_HTTP);
            }
        }
    }
    for (int i = 0; i < s->n_conns; i++) conn_kill(s, s->conns[i], "shutdown");
    reap(s);
    uhlm_log_printf(&s->log, "event=stopped verifications=%llu forward_calls=%llu",
                    (unsigned long long)s->c_verify, (unsigned long long)s->c_forwards);
    return rc;
}

/* ------------------------------------------------------------------ stats */

/* The counters at this instant, for the metrics text. */
static void metrics_view(const uhlm_server *s, uhlm_metrics_view *v) {
    uhlm_server_get_counters(s, &v->c);
    v->uptime_s = uhlm_now() - s->t_start;
    v->pending_conns = count_conns(s, K_DEVICE, CS_HELLO, NULL);
    v->max_sessions = s->p.max_sessions;
    v->batch_tokens = s->c_batch_tokens;
    v->hist = s->hist;
    v->lat = s->lat;
    v->n_lat = s->n_lat;
    v->err_by_code = s->err_by_code;
    v->stopping = s->stop_requested;
}

size_t uhlm_server_stats_text(const uhlm_server *s, char *buf, size_t cap) {
    uhlm_metrics_view v;
    metrics_view(s, &v);
    return uhlm_metrics_text(&v, buf, cap);
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
    o->evicted = s->c_evicted;
    o->refused = s->c_refused;
    o->timeouts = s->c_timeouts;
    o->log_suppressed = s->c_log_suppressed;
    for (int i = 0; i < s->n_conns; i++) o->open_conns += !s->conns[i]->dead && s->conns[i]->kind == K_DEVICE;
}

/* ------------------------------------------------------------------ test seam (server_internal.h) */

uhlm_server_conn *uhlm_server_test_conn(uhlm_server *s) {
    if (s->n_conns >= s->conn_cap) return NULL;
    return conn_new(s, -1, K_DEVICE, "memory", "memory");
}

int uhlm_server_test_feed(uhlm_server *s, uhlm_server_conn *c, const uint8_t *data, size_t n,
                          uhlm_wire_buf *out) {
    c->mem_in = data;
    c->mem_len = n;
    c->mem_off = 0;
    c->mem_out = out;
    while (!c->dead) {
        if (c->job.active) {
            double next = 1e300;
            maybe_compute(s, 1, &next);
        } else if (c->mem_off < c->mem_len && wants_read(c)) {
            conn_read(s, c);
        } else {
            break;
        }
    }
    int closed = c->dead;
    c->mem_in = NULL;
    c->mem_len = c->mem_off = 0;
    if (closed) reap(s);
    return closed;
}

void uhlm_server_test_close(uhlm_server *s, uhlm_server_conn *c) {
    conn_kill(s, c, "eof");
    reap(s);
}
