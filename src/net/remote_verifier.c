/* remote_verifier.c: the verifier interface over the wire protocol (uhlm/remote.h).
 *
 * Invariants between operations:
 *   ctx[0..n_ctx_tok) is the committed context as the device sees it (verifier.h);
 *   srv_open means the server holds a session on fd in mode srv_mode whose n_past is
 *   exactly n_ctx_tok. Any failure clears srv_open, so a later request re-OPENs rather than
 *   trust a session whose state is unknown.
 * The OPEN is lazy: open() only records the prompt, because the protocol's OPEN names the
 * session mode (verify or generate) and the interface learns it from the first request. The
 * first request's reply then carries the prefill cost too, so totals match the in-process
 * verifier, and the request sequence on an unbroken connection is the in-process one
 * (OPEN(prompt), then VERIFY with the catch-up), which keeps the LLM's arithmetic identical. */
#include "uhlm/remote.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/log.h"
#include "net/socket.h"
#include "net/tls.h"
#include "uhlm/channel.h"
#include "uhlm/sampler.h"
#include "uhlm/wire.h"

/* Outcomes of the internal steps. RV_LOST: the connection is unusable (the caller drops it and
 * decides between an immediate retry and backoff). RV_REFUSED: the server refused HELLO.
 * RV_DOWN: no connection now (the attempt failed, or the backoff delay has not passed): worth
 * another try within the fallback window. RV_UNAV: answer UHLM_VERIFIER_UNAVAILABLE without
 * further ado (this server cannot serve the session). RV_FAIL: a hard error. */
enum { RV_OK = 0, RV_LOST = 1, RV_REFUSED = 2, RV_UNAV = 3, RV_DOWN = 4, RV_FAIL = -1 };

enum { Q_VERIFY, Q_GENERATE };

typedef struct remote {
    uhlm_verifier base;
    uhlm_remote_params p; /* host/port/client/auth point at the copies below */
    char *host, *port, *client;
    uint8_t *auth;
    int fd; /* -1: not connected */
    int ever_connected, troubled, fail_logged;
    int timed_out; /* the last loss was a timeout: an overloaded server, not a stale socket */
    int counting_request; /* the frame in flight is a request (for st.requests) */
    uint64_t unanswered_bytes; /* sent since the last reply: counted once a reply shows they arrived */
    /* from WELCOME */
    uhlm_wire_limits lim;
    uint32_t payload_kinds, srv_n_ctx, srv_vocab;
    uint64_t srv_fp;
    char model[256];
    /* session */
    int want_open, srv_open, srv_mode, lost_session, disabled;
    uhlm_sampling s;
    uint64_t seed;
    int *ctx, *scratch;
    int n_ctx_tok;
    size_t ctx_cap, scratch_cap;
    uint32_t next_req;
    double next_attempt, backoff;
    /* The current outage: when the first failure since the last answered request happened
     * (0: none), and whether its fallback window has run out, after which requests no longer
     * wait for the server (fallback_after_s in remote.h). */
    double outage_since;
    int fell_back;
    char last_fail[sizeof ((uhlm_error *)0)->msg]; /* the last connect failure's message */
    uhlm_rng jitter;
    uhlm_wire_buf out, in;
    uhlm_log_sink log; /* the log callback of p */
    uhlm_remote_stats st;
    /* TLS (tls_ca or tls_insecure): the context, and the connection's TLS object on fd */
    uhlm_tls_ctx *tls;
    struct ssl_st *ssl;
    char *tls_ca;
} remote;

/* The connection, plain or TLS, for the socket.h calls. */
#define LINK(r) (&(uhlm_stream){(r)->fd, (r)->ssl})

/* One request of the device, with what it picks up on the way. */
typedef struct req {
    int type; /* Q_* */
    const int *catchup;
    int n_catchup;
    const uhlm_verify_req *vr;
    const uhlm_generate_req *gr;
    uhlm_verdict *vout;
    uhlm_generated *gout;
    int *gtokens;
    uhlm_wire_cost oc; /* an OPEN sent for this request */
    int opened;
    int folded; /* catch-up tokens that went into that OPEN's prompt */
} req;

static const uhlm_verifier_ops remote_ops;

static remote *self_of(uhlm_verifier *v) { return (remote *)v->impl; }

/* ---------- sockets ---------- */

/* Maps a failed socket call to an outcome; the device-facing messages name the server. */
static int io_failed(remote *r, int rc, uhlm_error *err) {
    if (rc == UHLM_SOCK_NOMEM) return RV_FAIL;
    if (rc == UHLM_SOCK_TIMEOUT) r->timed_out = 1;
    if (rc == UHLM_SOCK_CLOSED) uhlm_set_error(err, "the server closed the connection");
    return RV_LOST;
}

static int send_out(remote *r, double deadline, uhlm_error *err) {
    int rc = uhlm_stream_send_buf(LINK(r), &r->out, deadline, &r->unanswered_bytes, err);
    if (rc != UHLM_SOCK_OK) r->unanswered_bytes = 0;
    return rc == UHLM_SOCK_OK ? RV_OK : io_failed(r, rc, err);
}

/* Reads one frame and decodes it into m (which then points into r->in). Anything malformed
 * from the server means the stream cannot be trusted: RV_LOST. */
static int recv_msg(remote *r, double deadline, const uhlm_wire_limits *lim, uhlm_wire_msg *m,
                    uhlm_error *err) {
    int rc = uhlm_stream_recv_msg(LINK(r), deadline, &r->in, 0, lim, m, &r->st.bytes_received, err);
    if (rc == UHLM_SOCK_TIMEOUT)
        uhlm_set_error(err, "no reply within the read timeout of %g s", r->p.read_timeout_s);
    /* a request counts as sent only when its reply arrived: bytes written into a connection
     * that then dropped may never have reached the server */
    if (rc == UHLM_SOCK_OK) {
        r->st.bytes_sent += r->unanswered_bytes;
        r->st.requests += r->counting_request;
    }
    r->unanswered_bytes = 0;
    r->counting_request = 0;
    return rc == UHLM_SOCK_OK ? RV_OK : io_failed(r, rc, err);
}

/* Sends r->out and reads the reply. */
static int round_trip(remote *r, const uhlm_wire_limits *lim, uhlm_wire_msg *m, uhlm_error *err) {
    double t0 = uhlm_now();
    int rc = send_out(r, t0 + r->p.read_timeout_s, err);
    if (rc != RV_OK) return rc;
    r->counting_request = 1;
    rc = recv_msg(r, uhlm_now() + r->p.read_timeout_s, lim, m, err);
    r->st.rtt_s += uhlm_now() - t0;
    return rc;
}

static void drop_fd(remote *r) {
    uhlm_stream l = {r->fd, r->ssl};
    uhlm_stream_tls_end(&l);
    r->ssl = NULL;
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->srv_open = 0;
    r->unanswered_bytes = 0;
    r->counting_request = 0;
}

/* True while requests wait for the server rather than fall back: a window is configured and
 * the current outage (if any) has not used it up. */
static int window_open(const remote *r) { return r->p.fallback_after_s > 0 && !r->fell_back; }

/* Notes a failure: the first one since the last answered request starts the outage, and
 * with it the fallback window. */
static void outage(remote *r) {
    if (r->outage_since == 0) r->outage_since = uhlm_now();
}

/* A connection that was working is gone. */
static void lose(remote *r, const char *why) {
    drop_fd(r);
    r->st.losses++;
    r->troubled = 1;
    int fresh = r->outage_since == 0;
    outage(r);
    if (r->want_open) r->lost_session = 1;
    if (r->p.require) return;
    if (window_open(r)) {
        if (fresh) /* one line per outage: the retries within the window are not news */
            uhlm_log_printf(&r->log,
                            "lost the server %s:%s: %s; retrying for up to %g s before "
                            "generating with the SLM alone",
                            r->host, r->port, why, r->p.fallback_after_s);
    } else
        uhlm_log_printf(&r->log,
                        "lost the server %s:%s: %s; generating with the SLM alone until it is back",
                        r->host, r->port, why);
}

/* Within the fallback window of the current outage: waits until the next connection attempt
 * is due (the window's end at the latest, so that the last attempt falls inside it) and
 * returns 1. Without a window, or once it has run out, 0: the caller falls back.
 * UHLM_CANCELLED when the cancel callback asked to stop waiting (polled every 50 ms, so that
 * Ctrl-C is not held up for a whole window). */
static int window_wait(remote *r) {
    if (!window_open(r)) return 0;
    outage(r);
    double end = r->outage_since + r->p.fallback_after_s, now = uhlm_now();
    if (now >= end) return 0;
    double t = r->next_attempt < end ? r->next_attempt : end;
    for (; now < t; now = uhlm_now()) {
        if (r->p.cancel && r->p.cancel(r->p.cancel_user)) return UHLM_CANCELLED;
        uhlm_sleep_s(t - now < 0.05 ? t - now : 0.05);
    }
    if (r->next_attempt > t) r->next_attempt = t;
    return 1;
}

/* Why a request gave up waiting, before the cause in err (or the last connect failure's when
 * err has none): the window ran out, or the cancel callback ended the wait. */
static void window_error(remote *r, int cancelled, uhlm_error *err) {
    char cause[sizeof err->msg];
    snprintf(cause, sizeof cause, "%s", err->msg[0] ? err->msg : r->last_fail);
    if (cancelled)
        uhlm_set_error(err, "interrupted while waiting for the server: %.400s", cause);
    else
        uhlm_set_error(err, "no server within the fallback window of %g s: %.400s",
                       r->p.fallback_after_s, cause);
}

/* Schedules the next connection attempt: exponential backoff with jitter in [1/2, 1]. */
static void note_failure(remote *r) {
    double d = r->backoff * (0.5 + 0.5 * uhlm_rng_uniform(&r->jitter));
    r->next_attempt = uhlm_now() + d;
    r->backoff = fmin(r->backoff * 2.0, r->p.backoff_max_s);
    r->troubled = 1;
}

/* Connects and runs HELLO -> WELCOME. On success fd is set and the limits are known. */
static int handshake(remote *r, uhlm_error *err) {
    double deadline = uhlm_now() + r->p.connect_timeout_s;
    int fd = uhlm_sock_connect(r->host, r->port, NULL, r->p.connect_timeout_s, err);
    if (fd < 0) return RV_LOST;
    if (r->tls) {
        uhlm_stream l;
        int trc = uhlm_tls_connect(r->tls, fd, r->host, r->port, deadline, &l, err);
        if (trc != 0) {
            close(fd);
            /* a certificate that does not verify, or a plain server, is configuration */
            return trc == UHLM_TLS_REJECTED ? RV_REFUSED : RV_LOST;
        }
        r->ssl = l.ssl;
    }
    r->fd = fd;
    uhlm_wire_hello h = {UHLM_WIRE_VERSION, r->p.fingerprint, (uint32_t)r->p.n_vocab,
                         {r->auth, (uint32_t)r->p.auth_len}, uhlm_wire_cstr(r->client)};
    uhlm_error e2 = {{0}};
    if (uhlm_wire_encode_hello(&r->out, &h, &e2) != 0) {
        drop_fd(r);
        return uhlm_set_error(err, "HELLO: %s", e2.msg);
    }
    int rc = send_out(r, deadline, err);
    uhlm_wire_msg m;
    if (rc == RV_OK) rc = recv_msg(r, deadline, NULL, &m, err);
    if (rc == RV_OK && m.type == UHLM_WIRE_ERROR) {
        unsigned c = m.u.error.code;
        uhlm_set_error(err, "%s:%s refused the connection: %s: %.*s", r->host, r->port,
                       uhlm_wire_code_name(c), (int)m.u.error.msg.len, m.u.error.msg.p);
        rc = (c == UHLM_WIRE_E_AUTH || c == UHLM_WIRE_E_VOCAB_MISMATCH ||
              c == UHLM_WIRE_E_BAD_VERSION)
                 ? RV_REFUSED
                 : RV_LOST;
    } else if (rc == RV_OK && m.type != UHLM_WIRE_WELCOME) {
        uhlm_set_error(err, "%s:%s answered HELLO with %s", r->host, r->port,
                       uhlm_wire_type_name(m.type));
        rc = RV_LOST;
    } else if (rc == RV_OK) {
        const uhlm_wire_welcome *w = &m.u.welcome;
        if (w->version != UHLM_WIRE_VERSION) {
            uhlm_set_error(err, "%s:%s speaks protocol version %u, this device %u", r->host,
                           r->port, (unsigned)w->version, (unsigned)UHLM_WIRE_VERSION);
            rc = RV_REFUSED;
        } else if (w->vocab_size != (uint32_t)r->p.n_vocab ||
                   (w->fingerprint && r->p.fingerprint && w->fingerprint != r->p.fingerprint)) {
            uhlm_set_error(err,
                           "vocabulary mismatch: the server %s:%s has %u tokens (fingerprint "
                           "%016llx), this device %d (fingerprint %016llx)",
                           r->host, r->port, (unsigned)w->vocab_size,
                           (unsigned long long)w->fingerprint, r->p.n_vocab,
                           (unsigned long long)r->p.fingerprint);
            rc = RV_REFUSED;
        } else {
            r->lim = (uhlm_wire_limits){w->max_frame, w->max_batch_tokens, w->vocab_size};
            r->payload_kinds = w->payload_kinds;
            r->srv_n_ctx = w->n_ctx;
            r->srv_vocab = w->vocab_size;
            r->srv_fp = w->fingerprint;
            snprintf(r->model, sizeof r->model, "%.*s", (int)w->model.len,
                     w->model.p ? w->model.p : "");
        }
    }
    if (rc != RV_OK) {
        drop_fd(r);
        return rc;
    }
    r->st.connects++;
    if (r->troubled) {
        r->st.reconnects++;
        uhlm_log_printf(&r->log, "reconnected to %s:%s", r->host, r->port);
    }
    r->ever_connected = 1;
    r->troubled = r->fail_logged = 0;
    r->backoff = r->p.backoff_min_s;
    r->srv_open = 0;
    return RV_OK;
}

/* True when the idle connection has something to read: in lock-step nothing may arrive
 * unasked, so it is EOF or an unsolicited fatal ERROR (the server's idle timeout, shutdown). */
static int peer_closed(remote *r) { return uhlm_stream_idle_readable(LINK(r)); }

/* Why the idle connection ended, into why: an ERROR the server left (SHUTTING_DOWN, its idle
 * timeout) is read and named, so the device can say the server is stopping and why. A server
 * that says it is shutting down is reported even under require, where nothing else is logged
 * for a lost connection. */
static void closed_why(remote *r, char *why, size_t cap) {
    uhlm_wire_msg m;
    uhlm_error e = {{0}};
    snprintf(why, cap, "the server closed the connection");
    if (uhlm_stream_recv_msg(LINK(r), uhlm_now() + 0.2, &r->in, 0, NULL, &m, &r->st.bytes_received,
                           &e) != UHLM_SOCK_OK ||
        m.type != UHLM_WIRE_ERROR)
        return;
    snprintf(why, cap, "the server closed the connection: %s: %.*s",
             uhlm_wire_code_name(m.u.error.code), (int)m.u.error.msg.len,
             m.u.error.msg.p ? m.u.error.msg.p : "");
    if (m.u.error.code == UHLM_WIRE_E_SHUTTING_DOWN)
        uhlm_log_printf(&r->log, "the server %s:%s is shutting down: %.*s", r->host, r->port,
                        (int)m.u.error.msg.len, m.u.error.msg.p ? m.u.error.msg.p : "");
}

/* Gives up on the server for the rest of this session (until the next open): it cannot serve
 * this session's requests, however often they are sent. */
static int disable(remote *r, const char *why, uhlm_error *err) {
    r->disabled = 1;
    if (why != err->msg) uhlm_set_error(err, "%s", why);
    if (!r->p.require)
        uhlm_log_printf(&r->log, "%s; generating with the SLM alone until the end of this run",
                        why);
    return RV_UNAV;
}

/* The error that replaces UNAVAILABLE under the require parameter; err holds the cause. */
static int required(remote *r, uhlm_error *err) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg[0] ? err->msg : "unavailable");
    return uhlm_set_error(err,
                          "the server %s:%s cannot verify: %s (verification required, by "
                          "--require-server or --mode llm: no SLM text in its place)",
                          r->host, r->port, why);
}

/* Maps an ERROR reply to an outcome. Codes that mean "this server or connection, now" are
 * losses; codes that say this server cannot serve this session (its context is full, it does
 * not take this payload encoding) end verification for the session, and the device goes on
 * with the SLM alone; codes that would repeat anywhere (a malformed request) are hard errors. */
static int error_outcome(remote *r, const char *what, const uhlm_wire_errmsg *e, uhlm_error *err) {
    unsigned c = e->code;
    uhlm_set_error(err, "the server refused %s: %s: %.*s", what, uhlm_wire_code_name(c),
                   (int)e->msg.len, e->msg.p);
    if (c == UHLM_WIRE_E_SHUTTING_DOWN)
        uhlm_log_printf(&r->log, "the server %s:%s is shutting down: %.*s", r->host, r->port,
                        (int)e->msg.len, e->msg.p ? e->msg.p : "");
    if (c == UHLM_WIRE_E_CTX_FULL || c == UHLM_WIRE_E_BAD_PAYLOAD) return disable(r, err->msg, err);
    if ((e->flags & UHLM_WIRE_EF_FATAL) || c == UHLM_WIRE_E_DESYNC || c == UHLM_WIRE_E_NOT_OPEN ||
        c == UHLM_WIRE_E_BUSY || c == UHLM_WIRE_E_INTERNAL || c == UHLM_WIRE_E_TIMEOUT ||
        c == UHLM_WIRE_E_SHUTTING_DOWN)
        return RV_LOST;
    return RV_FAIL;
}

static int grow_ints(int **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    int *q = realloc(*p, sizeof(int) * c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void cost_add(uhlm_wire_cost *a, const uhlm_wire_cost *b) {
    a->llm_ns += b->llm_ns;
    a->forward_calls += b->forward_calls;
    a->seq_tokens += b->seq_tokens;
    a->batch_size = b->batch_size; /* of the last forward */
    a->batch_tokens = b->batch_tokens;
}

/* OPENs a session for q: the committed context, plus q's catch-up when resynchronising (so a
 * lost session's pending tokens need not fit one catch-up list). */
static int do_open(remote *r, req *q, uhlm_error *err) {
    uint32_t mode = q->type == Q_GENERATE ? UHLM_WIRE_MODE_GENERATE : UHLM_WIRE_MODE_VERIFY;
    int fold = r->lost_session || (uint32_t)q->n_catchup > r->lim.max_tokens;
    int n = r->n_ctx_tok + (fold ? q->n_catchup : 0);
    const int *prompt = r->ctx;
    if (fold && q->n_catchup > 0) {
        if (grow_ints(&r->scratch, &r->scratch_cap, (size_t)n) != 0)
            return uhlm_set_error(err, "remote verifier: out of memory");
        memcpy(r->scratch, r->ctx, sizeof(int) * (size_t)r->n_ctx_tok);
        memcpy(r->scratch + r->n_ctx_tok, q->catchup, sizeof(int) * (size_t)q->n_catchup);
        prompt = r->scratch;
    }
    uint32_t max_prompt = r->srv_n_ctx < UHLM_WIRE_MAX_TOKENS ? r->srv_n_ctx : UHLM_WIRE_MAX_TOKENS;
    if ((uint32_t)n > max_prompt) {
        char why[160];
        snprintf(why, sizeof why, "the context of %d tokens exceeds the server's %u", n,
                 (unsigned)max_prompt);
        return disable(r, why, err);
    }
    uhlm_wire_limits lim = {r->lim.max_frame, max_prompt, r->lim.vocab_size};
    uhlm_wire_open o = {mode, r->s.temp, (uint32_t)r->s.top_k, r->s.top_p, r->seed,
                        {prompt, NULL, (uint32_t)n}};
    uhlm_error e2 = {{0}};
    if (uhlm_wire_encode_open(&r->out, &o, &lim, &e2) != 0)
        return uhlm_set_error(err, "OPEN: %s", e2.msg);
    uhlm_wire_msg m;
    int rc = round_trip(r, &r->lim, &m, err);
    if (rc != RV_OK) return rc;
    if (m.type == UHLM_WIRE_ERROR) return error_outcome(r, "OPEN", &m.u.error, err);
    if (m.type != UHLM_WIRE_OPENED || m.u.opened.n_past != (uint32_t)n) {
        uhlm_set_error(err, "the server answered OPEN of %d tokens with %s (n_past %u)", n,
                       uhlm_wire_type_name(m.type),
                       m.type == UHLM_WIRE_OPENED ? (unsigned)m.u.opened.n_past : 0u);
        return RV_LOST;
    }
    r->srv_open = 1;
    r->srv_mode = (int)mode;
    r->st.opens++;
    if (r->lost_session) {
        r->st.resyncs++;
        r->st.resync_tokens += (uint64_t)n;
        r->lost_session = 0;
        uhlm_log_printf(&r->log, "resynchronised: reopened the session with %d tokens", n);
    }
    cost_add(&q->oc, &m.u.opened.cost);
    q->opened = 1;
    q->folded = fold ? q->n_catchup : 0;
    return RV_OK;
}

/* Makes sure a connection and a session fit for q exist. */
static int ensure(remote *r, req *q, uhlm_error *err) {
    if (r->disabled) return RV_UNAV;
    char why[sizeof err->msg];
    why[0] = '\0';
    if (r->fd >= 0 && peer_closed(r)) {
        closed_why(r, why, sizeof why);
        lose(r, why);
        uhlm_set_error(err, "%s", why);
    }
    if (r->fd < 0) {
        if (uhlm_now() < r->next_attempt) {
            /* between attempts: the cause is the last failure's, kept from then */
            if (!err->msg[0]) snprintf(err->msg, sizeof err->msg, "%s", r->last_fail);
            return RV_DOWN;
        }
        int rc = handshake(r, err);
        if (rc == RV_FAIL || (rc == RV_REFUSED && !r->ever_connected)) return RV_FAIL;
        if (rc != RV_OK) {
            r->st.connect_failures++;
            note_failure(r);
            outage(r);
            if (why[0]) { /* the cause first: why the connection was gone */
                char now[sizeof err->msg];
                snprintf(now, sizeof now, "%s", err->msg);
                uhlm_set_error(err, "%.300s; reconnecting: %.300s", why, now);
            }
            snprintf(r->last_fail, sizeof r->last_fail, "%s", err->msg);
            /* within the fallback window the request waits; transact says when it gives up */
            if (!r->fail_logged && !r->p.require && !window_open(r))
                uhlm_log_printf(&r->log, "%s; retrying with backoff, SLM alone meanwhile",
                                err->msg);
            if (!window_open(r)) r->fail_logged = 1;
            return RV_DOWN;
        }
    }
    uint32_t mode = q->type == Q_GENERATE ? UHLM_WIRE_MODE_GENERATE : UHLM_WIRE_MODE_VERIFY;
    if (r->srv_open && r->srv_mode == (int)mode && (uint32_t)q->n_catchup <= r->lim.max_tokens)
        return RV_OK;
    return do_open(r, q, err);
}

static int commit(remote *r, const int *a, int na, const int *b, int nb, uhlm_error *err) {
    if (grow_ints(&r->ctx, &r->ctx_cap, (size_t)r->n_ctx_tok + (size_t)na + (size_t)nb) != 0) {
        r->srv_open = 0;
        return uhlm_set_error(err, "remote verifier: out of memory");
    }
    if (na) memcpy(r->ctx + r->n_ctx_tok, a, sizeof(int) * (size_t)na);
    r->n_ctx_tok += na;
    if (nb) memcpy(r->ctx + r->n_ctx_tok, b, sizeof(int) * (size_t)nb);
    r->n_ctx_tok += nb;
    return 0;
}

static int exchange_verify(remote *r, req *q, uhlm_error *err) {
    const uhlm_verify_req *vr = q->vr;
    int greedy = r->s.temp == 0.0f;
    if (!(r->payload_kinds & UHLM_WIRE_KIND_BIT((unsigned)vr->enc.kind))) {
        uhlm_set_error(err, "the server %s:%s does not accept this payload encoding (accepted "
                            "kinds: mask 0x%x)",
                       r->host, r->port, (unsigned)r->payload_kinds);
        return disable(r, err->msg, err);
    }
    int ncu = q->n_catchup - q->folded;
    uint32_t pos = (uint32_t)(r->n_ctx_tok + q->folded);
    uint32_t id = ++r->next_req ? r->next_req : ++r->next_req;
    uhlm_wire_verify m = {id,
                          greedy ? UHLM_WIRE_VF_GREEDY : 0u,
                          pos,
                          {q->catchup + q->folded, NULL, (uint32_t)ncu},
                          (uint32_t)vr->draft,
                          vr->draw_seed,
                          (uint8_t)vr->enc.kind,
                          (uint8_t)(vr->enc.kind == UHLM_PAYLOAD_TOPK ? vr->enc.prob_bits : 0),
                          (uint32_t)(vr->enc.kind == UHLM_PAYLOAD_TOPK ? vr->enc.k : 0),
                          {greedy ? NULL : vr->x, greedy ? 0u : (uint32_t)vr->x_len}};
    uhlm_error e2 = {{0}};
    int erc = uhlm_wire_encode_verify(&r->out, &m, &r->lim, &e2);
    if (erc != 0)
        return uhlm_set_error(err, "VERIFY for the server %s:%s: %s%s", r->host, r->port, e2.msg,
                              erc == -UHLM_WIRE_E_TOO_LARGE
                                  ? " (a smaller --payload, f16 or topk:K, fits)"
                                  : "");
    uhlm_wire_msg rep;
    int rc = round_trip(r, &r->lim, &rep, err);
    if (rc != RV_OK) return rc;
    if (rep.type == UHLM_WIRE_ERROR) return error_outcome(r, "VERIFY", &rep.u.error, err);
    const uhlm_wire_verdict *d = &rep.u.verdict;
    if (rep.type != UHLM_WIRE_VERDICT || d->request_id != id ||
        (uint32_t)d->n_past != pos + (uint32_t)ncu + 1 || d->accepted != (d->token == vr->draft)) {
        uhlm_set_error(err, "the server answered VERIFY %u with an inconsistent %s",
                       (unsigned)id, uhlm_wire_type_name(rep.type));
        return RV_LOST;
    }
    if (commit(r, q->catchup, q->n_catchup, &d->token, 1, err) != 0) return RV_FAIL;
    /* the verdict as the server sent it, with the cost of a (re)OPEN it needed added and the
     * context length in the device's terms (a folded catch-up went with the OPEN) */
    uhlm_verdict *o = q->vout;
    *o = *d;
    o->cost = q->oc;
    cost_add(&o->cost, &d->cost);
    o->n_past = r->n_ctx_tok;
    return RV_OK;
}

static int exchange_generate(remote *r, req *q, uhlm_error *err) {
    const uhlm_generate_req *gr = q->gr;
    int ncu = q->n_catchup - q->folded;
    uint32_t pos = (uint32_t)(r->n_ctx_tok + q->folded);
    uint32_t id = ++r->next_req ? r->next_req : ++r->next_req;
    uhlm_wire_generate m = {id,
                            gr->stop_eos ? UHLM_WIRE_GF_STOP_EOS : 0u,
                            pos,
                            {q->catchup + q->folded, NULL, (uint32_t)ncu},
                            (uint32_t)gr->n_gen,
                            gr->draw_seed};
    uhlm_error e2 = {{0}};
    if (uhlm_wire_encode_generate(&r->out, &m, &r->lim, &e2) != 0)
        return uhlm_set_error(err, "GENERATE for the server %s:%s: %s", r->host, r->port,
                              e2.msg);
    uhlm_wire_msg rep;
    int rc = round_trip(r, &r->lim, &rep, err);
    if (rc != RV_OK) return rc;
    if (rep.type == UHLM_WIRE_ERROR) return error_outcome(r, "GENERATE", &rep.u.error, err);
    const uhlm_wire_generated *g = &rep.u.generated;
    if (rep.type != UHLM_WIRE_GENERATED || g->request_id != id || g->tokens.n < 1 ||
        g->tokens.n > (uint32_t)gr->n_gen || g->n_past != pos + (uint32_t)ncu + g->tokens.n) {
        uhlm_set_error(err, "the server answered GENERATE %u with an inconsistent %s",
                       (unsigned)id, uhlm_wire_type_name(rep.type));
        return RV_LOST;
    }
    uhlm_wire_tokens_copy(&g->tokens, q->gtokens);
    if (commit(r, q->catchup, q->n_catchup, q->gtokens, (int)g->tokens.n, err) != 0) return RV_FAIL;
    uhlm_wire_cost c = q->oc;
    cost_add(&c, &g->cost);
    uhlm_generated *o = q->gout;
    memset(o, 0, sizeof *o);
    o->n = (int)g->tokens.n;
    o->llm_s = (double)c.llm_ns * 1e-9;
    o->forward_calls = (int)c.forward_calls;
    o->batch_tokens = (int)c.seq_tokens;
    o->n_past = r->n_ctx_tok;
    return RV_OK;
}

/* Runs q: connect and open as needed, exchange, and map trouble to UNAVAILABLE. A failure on
 * a connection that predates this call may just be a stale connection (the server's idle
 * timeout, a restart, a DESYNC): it is retried once at once. A timeout is not retried at once
 * (a server that is slow now would be slow again), and neither is a fresh connection's
 * failure: those back off. Within the fallback window of the outage (remote.h), q waits out
 * each backoff delay and is sent again on a fresh connection, re-OPENed with the committed
 * context (a resync), so a lost backend behind a balancer costs a reconnect, not a token
 * verified by nobody. Once the window has run out q falls back, and so does every request
 * until one is answered again: the device is never stalled twice for one outage. */
static int transact(remote *r, req *q, uhlm_error *err) {
    if (!r->want_open) return uhlm_set_error(err, "remote verifier: request without a session");
    if (q->n_catchup < 0 || (q->n_catchup > 0 && !q->catchup))
        return uhlm_set_error(err, "remote verifier: bad catch-up list");
    for (int i = 0; i < q->n_catchup; i++)
        if (q->catchup[i] < 0 || q->catchup[i] >= r->p.n_vocab)
            return uhlm_set_error(err, "remote verifier: catch-up token %d is %d, outside [0, %d)",
                                  i, q->catchup[i], r->p.n_vocab);
    char lost_why[sizeof err->msg];
    lost_why[0] = '\0';
    for (int attempt = 0;; attempt++) {
        err->msg[0] = '\0'; /* so that an UNAVAILABLE without a new cause says so (required) */
        int had_conn = r->fd >= 0;
        r->timed_out = 0;
        memset(&q->oc, 0, sizeof q->oc);
        q->opened = q->folded = 0;
        int rc = ensure(r, q, err);
        if (rc == RV_OK)
            rc = q->type == Q_VERIFY ? exchange_verify(r, q, err) : exchange_generate(r, q, err);
        if (rc == RV_OK) {
            r->outage_since = 0;
            r->fell_back = 0;
            return 0;
        }
        r->out.len = 0;
        r->srv_open = 0;
        if (rc == RV_FAIL) return -1;
        if (rc == RV_UNAV) { /* a server answered (it cannot serve this session): no outage */
            r->outage_since = 0;
            r->fell_back = 0;
        }
        if (rc == RV_LOST) {
            lose(r, err->msg);
            if (attempt == 0 && had_conn && !r->timed_out) {
                snprintf(lost_why, sizeof lost_why, "%s", err->msg);
                continue;
            }
            note_failure(r);
            snprintf(r->last_fail, sizeof r->last_fail, "%s", err->msg);
        }
        int w = rc != RV_UNAV ? window_wait(r) : 0;
        if (w > 0) continue;
        if (w == UHLM_CANCELLED) {
            window_error(r, 1, err);
            r->st.unavailable++;
            return r->p.require ? required(r, err) : UHLM_VERIFIER_UNAVAILABLE;
        }
        if (lost_why[0] && strstr(err->msg, lost_why) != err->msg) {
            /* the retry failed too: name the loss first, it is what the user needs to know */
            char now[sizeof err->msg];
            snprintf(now, sizeof now, "%s", err->msg);
            uhlm_set_error(err, "%.300s; retrying: %.300s", lost_why, now);
        }
        if (rc != RV_UNAV && window_open(r)) {
            /* the window ran out: say so once, with what the last attempt met */
            r->fell_back = 1;
            r->fail_logged = 1;
            window_error(r, 0, err);
            if (!r->p.require)
                uhlm_log_printf(&r->log,
                                "%s; generating with the SLM alone until the server %s:%s is back",
                                err->msg, r->host, r->port);
        }
        r->st.unavailable++;
        return r->p.require ? required(r, err) : UHLM_VERIFIER_UNAVAILABLE;
    }
}

/* ---------- the verifier operations ---------- */

static int rv_info(uhlm_verifier *v, uhlm_verifier_info *out, uhlm_error *err) {
    remote *r = self_of(v);
    memset(out, 0, sizeof *out);
    if (!r->ever_connected && r->fd < 0 && uhlm_now() >= r->next_attempt) {
        int rc, w = 0;
        /* a device that may not go on without the server waits out the window for it, as a
         * request would; one that may starts at once and lets its first request wait */
        for (;;) {
            rc = handshake(r, err);
            if (rc == RV_FAIL || rc == RV_REFUSED) return -1;
            if (rc == RV_OK) break;
            r->st.connect_failures++;
            note_failure(r);
            outage(r);
            snprintf(r->last_fail, sizeof r->last_fail, "%s", err->msg);
            if (!r->p.require || (w = window_wait(r)) <= 0) break;
        }
        if (rc != RV_OK) {
            if (r->p.require) {
                if (w == UHLM_CANCELLED || window_open(r))
                    window_error(r, w == UHLM_CANCELLED, err);
                return required(r, err);
            }
            if (window_open(r))
                uhlm_log_printf(&r->log,
                                "%s; retrying for up to %g s before generating with the SLM "
                                "alone",
                                err->msg, r->p.fallback_after_s);
            else
                uhlm_log_printf(&r->log,
                                "%s; generating with the SLM alone until the server answers",
                                err->msg);
            r->fail_logged = 1;
        }
    }
    /* A session that outgrows the server's context goes on with the SLM alone (do_open), as
     * when the server cannot be reached, so the server's context need not bound a device with
     * an SLM: a server advertising a context of 1 no longer makes every prompt fail. */
    out->ctx_fallback = 1;
    if (r->ever_connected) {
        out->n_vocab = (int)r->srv_vocab;
        out->fingerprint = r->srv_fp;
        out->n_ctx = r->srv_n_ctx > (uint32_t)INT_MAX ? INT_MAX : (int)r->srv_n_ctx;
        snprintf(out->model, sizeof out->model, "%.200s@%.30s:%.16s", r->model, r->host, r->port);
    } else {
        /* unknown until the server answers: the device's own vocabulary, no context limit */
        out->n_vocab = r->p.n_vocab;
        out->fingerprint = r->p.fingerprint;
        out->n_ctx = INT_MAX;
        snprintf(out->model, sizeof out->model, "%.200s:%.16s (unreachable)", r->host, r->port);
    }
    return 0;
}

static int rv_open(uhlm_verifier *v, const int *prompt, int n, const uhlm_sampling *s,
                   uint64_t seed, uhlm_opened *out, uhlm_error *err) {
    remote *r = self_of(v);
    r->want_open = r->srv_open = r->lost_session = r->disabled = 0;
    r->n_ctx_tok = 0;
    if (uhlm_sampling_check(s, err) != 0) return -1;
    if (n < 1 || !prompt) return uhlm_set_error(err, "remote verifier: empty prompt");
    for (int i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= r->p.n_vocab)
            return uhlm_set_error(err, "remote verifier: prompt token %d is %d, outside [0, %d)",
                                  i, prompt[i], r->p.n_vocab);
    if (grow_ints(&r->ctx, &r->ctx_cap, (size_t)n) != 0)
        return uhlm_set_error(err, "remote verifier: out of memory");
    memcpy(r->ctx, prompt, sizeof(int) * (size_t)n);
    r->n_ctx_tok = n;
    r->s = *s;
    r->seed = seed;
    r->want_open = 1;
    memset(out, 0, sizeof *out);
    out->n_past = n; /* the prefill cost arrives with the first request (see the top) */
    return 0;
}

static int rv_verify(uhlm_verifier *v, const uhlm_verify_req *vr, uhlm_verdict *out,
                     uhlm_error *err) {
    remote *r = self_of(v);
    if (vr->draft < 0 || vr->draft >= r->p.n_vocab)
        return uhlm_set_error(err, "remote verifier: draft %d outside [0, %d)", vr->draft,
                              r->p.n_vocab);
    req q;
    memset(&q, 0, sizeof q);
    q.type = Q_VERIFY;
    q.catchup = vr->catchup;
    q.n_catchup = vr->n_catchup;
    q.vr = vr;
    q.vout = out;
    return transact(r, &q, err);
}

static int rv_generate(uhlm_verifier *v, const uhlm_generate_req *gr, int *tokens,
                       uhlm_generated *out, uhlm_error *err) {
    remote *r = self_of(v);
    if (gr->n_gen < 1) return uhlm_set_error(err, "remote verifier: n_gen %d", gr->n_gen);
    req q;
    memset(&q, 0, sizeof q);
    q.type = Q_GENERATE;
    q.catchup = gr->catchup;
    q.n_catchup = gr->n_catchup;
    q.gr = gr;
    q.gout = out;
    q.gtokens = tokens;
    return transact(r, &q, err);
}

static void rv_close(uhlm_verifier *v) {
    remote *r = self_of(v);
    if (r->fd >= 0 && r->srv_open) {
        /* end the session but keep the connection for the next one; on any trouble the
         * connection goes, which frees the session on the server too */
        uhlm_error e = {{0}};
        uhlm_wire_msg m;
        if (uhlm_wire_encode_empty(&r->out, UHLM_WIRE_CLOSE, &e) != 0 ||
            round_trip(r, &r->lim, &m, &e) != RV_OK || m.type != UHLM_WIRE_CLOSE)
            drop_fd(r);
        r->out.len = 0;
    }
    r->want_open = r->srv_open = r->lost_session = r->disabled = 0;
}

static void rv_destroy(uhlm_verifier *v) {
    remote *r = self_of(v);
    drop_fd(r);
    free(r->host);
    free(r->port);
    free(r->client);
    free(r->auth);
    free(r->tls_ca);
    uhlm_tls_ctx_free(r->tls);
    free(r->ctx);
    free(r->scratch);
    uhlm_wire_buf_free(&r->in);
    uhlm_wire_buf_free(&r->out);
    free(r);
}

static const uhlm_verifier_ops remote_ops = {rv_info,     rv_open,  rv_verify,
                                             rv_generate, rv_close, rv_destroy};

/* ---------- public ---------- */

uhlm_remote_params uhlm_remote_default_params(void) {
    uhlm_remote_params p;
    memset(&p, 0, sizeof p);
    p.connect_timeout_s = 3.0;
    p.read_timeout_s = 30.0;
    p.backoff_min_s = 0.05;
    p.backoff_max_s = 2.0;
    p.fallback_after_s = 10.0;
    return p;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int positive(double x) { return x > 0.0 && isfinite(x); }

uhlm_verifier *uhlm_remote_new(const uhlm_remote_params *p, uhlm_error *err) {
    if (!p->host || !*p->host || !p->port || !*p->port) {
        uhlm_set_error(err, "remote verifier: no server address");
        return NULL;
    }
    if (p->n_vocab < 1 || (uint32_t)p->n_vocab > UHLM_WIRE_MAX_VOCAB) {
        uhlm_set_error(err, "remote verifier: vocabulary size %d", p->n_vocab);
        return NULL;
    }
    if (p->auth_len > UHLM_WIRE_MAX_AUTH || (p->auth_len && !p->auth)) {
        uhlm_set_error(err, "remote verifier: the auth token is %zu bytes (at most %u)",
                       p->auth_len, (unsigned)UHLM_WIRE_MAX_AUTH);
        return NULL;
    }
    if (!positive(p->connect_timeout_s) || !positive(p->read_timeout_s) ||
        !positive(p->backoff_min_s) || !positive(p->backoff_max_s) ||
        p->backoff_max_s < p->backoff_min_s) {
        uhlm_set_error(err, "remote verifier: timeouts and backoff must be finite and > 0 "
                            "(backoff max >= min)");
        return NULL;
    }
    if (!(p->fallback_after_s >= 0.0 && p->fallback_after_s <= 86400.0)) {
        uhlm_set_error(err, "remote verifier: the fallback window %g s is outside [0, 86400]",
                       p->fallback_after_s);
        return NULL;
    }
    const char *client = p->client ? p->client : "uhlm-device";
    if (strlen(client) > UHLM_WIRE_MAX_NAME) {
        uhlm_set_error(err, "remote verifier: client name longer than %u bytes",
                       (unsigned)UHLM_WIRE_MAX_NAME);
        return NULL;
    }
    remote *r = calloc(1, sizeof *r);
    if (!r) {
        uhlm_set_error(err, "remote verifier: out of memory");
        return NULL;
    }
    r->base.ops = &remote_ops;
    r->base.impl = r;
    r->fd = -1;
    r->p = *p;
    r->host = dup_str(p->host);
    r->port = dup_str(p->port);
    r->client = dup_str(client);
    r->auth = malloc(p->auth_len ? p->auth_len : 1);
    if (!r->host || !r->port || !r->client || !r->auth) {
        uhlm_set_error(err, "remote verifier: out of memory");
        rv_destroy(&r->base);
        return NULL;
    }
    if (p->auth_len) memcpy(r->auth, p->auth, p->auth_len);
    r->p.host = r->host;
    r->p.port = r->port;
    r->p.client = r->client;
    r->p.auth = r->auth;
    r->log = (uhlm_log_sink){p->log, p->log_user, 0};
    if (p->tls_ca || p->tls_insecure) {
        uhlm_error te = {{0}};
        r->tls_ca = p->tls_ca ? dup_str(p->tls_ca) : NULL;
        r->p.tls_ca = r->tls_ca;
        if ((p->tls_ca && !r->tls_ca) ||
            !(r->tls = uhlm_tls_client_ctx(r->tls_ca, !r->tls_ca, &te))) {
            uhlm_set_error(err, "remote verifier: %s", te.msg[0] ? te.msg : "out of memory");
            rv_destroy(&r->base);
            return NULL;
        }
    }
    r->backoff = p->backoff_min_s;
    uhlm_rng_seed(&r->jitter, p->jitter_seed);
    return &r->base;
}

int uhlm_remote_get_stats(uhlm_verifier *v, uhlm_remote_stats *out) {
    if (!v || v->ops != &remote_ops) return -1;
    *out = self_of(v)->st;
    return 0;
}

int uhlm_remote_parse_addr(const char *s, char *host, size_t host_cap, char *port,
                           size_t port_cap, uhlm_error *err) {
    const char *h = s, *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return uhlm_set_error(err, "bad server address '%s' (want [ADDR]:PORT)", s);
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return uhlm_set_error(err, "bad server address '%s' (want HOST:PORT)", s);
        hl = (size_t)(colon - s);
    }
    const char *ps = colon + 1;
    char *end = NULL;
    errno = 0;
    long pn = strtol(ps, &end, 10);
    if (!*ps || *end || errno || pn < 1 || pn > 65535)
        return uhlm_set_error(err, "bad port in server address '%s' (1..65535)", s);
    if (hl == 0) {
        h = "127.0.0.1";
        hl = strlen(h);
    }
    if (hl + 1 > host_cap || strlen(ps) + 1 > port_cap)
        return uhlm_set_error(err, "server address '%s' is too long", s);
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, ps, strlen(ps) + 1);
    return 0;
}

int uhlm_remote_load_token(const char *path, char *buf, size_t cap, size_t *len,
                           uhlm_error *err) {
    if (cap < UHLM_WIRE_MAX_AUTH + 1)
        return uhlm_set_error(err, "auth token buffer of %zu bytes is too small", cap);
    FILE *f = fopen(path, "rb");
    if (!f) return uhlm_set_error(err, "%s: %s", path, strerror(errno));
    /* one byte past the limit tells a too-long first line from one that just fits */
    size_t n = fread(buf, 1, UHLM_WIRE_MAX_AUTH + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) return uhlm_set_error(err, "%s: read error", path);
    size_t k = 0;
    while (k < n && buf[k] != '\n' && buf[k] != '\r') k++;
    /* trailing blanks are an editor's, not the secret's */
    while (k > 0 && k <= UHLM_WIRE_MAX_AUTH && (buf[k - 1] == ' ' || buf[k - 1] == '\t')) k--;
    if (k > UHLM_WIRE_MAX_AUTH)
        return uhlm_set_error(err, "%s: the auth token is longer than %u bytes", path,
                              (unsigned)UHLM_WIRE_MAX_AUTH);
    if (k == 0) return uhlm_set_error(err, "%s: the auth token is empty", path);
    buf[k] = '\0';
    *len = k;
    return 0;
}
