/* test_remote.c: the remote verifier (uhlm/remote.h) against a scripted fake server in a
 * thread, no models needed. A simulated device keeps its context and pending tokens exactly as
 * device.c does; after every scenario the server's committed context must equal the device's
 * committed prefix token for token (nothing lost, nothing duplicated). Scenarios: the normal
 * path, the connection closed mid-request, DESYNC, garbage, a stalled reply (read timeout), a
 * connection closed while idle (reconnect without falling back), CTX_FULL (SLM alone for the
 * rest of the session), BAD_PAYLOAD or an encoding missing from WELCOME (the same), a server
 * context of 1 (the same), the require parameter (those, and an unreachable server, become
 * hard errors), a non-fatal BAD_PROBS (hard error), AUTH at first contact (hard error),
 * an unreachable server, GENERATE; plus address and token-file parsing. */
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "net/socket.h"
#include "uhlm/remote.h"
#include "uhlm/wire.h"

#define VOCAB 512
#define FP 0x1234abcdULL
#define NCTX 200

enum { F_NONE, F_CLOSE, F_DESYNC, F_GARBAGE, F_STALL, F_IDLE_CLOSE, F_CTXFULL, F_BADPROBS, F_AUTH,
       F_BADPAYLOAD };

typedef struct fake {
    int lfd, port;
    atomic_int stop;
    int fault, fault_at; /* fault on the fault_at-th VERIFY/GENERATE (1-based) */
    uint32_t welcome_ctx, welcome_kinds; /* what WELCOME advertises when nonzero */
    int down_for;        /* after the fault, refuse this many connections */
    /* observed */
    int requests, conns, opens, last_open_n;
    int ctx[NCTX + 8], n_past;
} fake;

/* The fake's waits: a device that stops talking ends its connection instead of hanging the
 * test. */
#define FAKE_WAIT_S 30.0

static void wr(int fd, uhlm_wire_buf *b) {
    uhlm_sock_send_buf(fd, b, uhlm_now() + FAKE_WAIT_S, NULL, NULL);
}

/* Serves one connection; returns when it ends. */
static void serve_conn(fake *f, int fd) {
    uhlm_wire_buf out = {0}, in = {0};
    uhlm_wire_limits lim = {0, 0, VOCAB};
    uhlm_error err;
    uhlm_wire_msg m;
    while (uhlm_sock_recv_msg(fd, uhlm_now() + FAKE_WAIT_S, &in, 0, &lim, &m, NULL, &err) == 0) {
        if (m.type == UHLM_WIRE_HELLO) {
            if (f->fault == F_AUTH) {
                uhlm_wire_encode_error(&out, UHLM_WIRE_E_AUTH, UHLM_WIRE_EF_FATAL, 0, &err, "no");
                wr(fd, &out);
                break;
            }
            uhlm_wire_welcome w = {1, FP, VOCAB, f->welcome_ctx ? f->welcome_ctx : NCTX, 4,
                                   UHLM_WIRE_MAX_FRAME, 1024, 0,
                                   f->welcome_kinds ? f->welcome_kinds : 7, 99,
                                   uhlm_wire_cstr("fake")};
            uhlm_wire_encode_welcome(&out, &w, &err);
        } else if (m.type == UHLM_WIRE_OPEN) {
            f->opens++;
            f->last_open_n = (int)m.u.open.prompt.n;
            uhlm_wire_tokens_copy(&m.u.open.prompt, f->ctx);
            f->n_past = (int)m.u.open.prompt.n;
            uhlm_wire_opened o = {1, NCTX, (uint32_t)f->n_past, {1000, 1, (uint32_t)f->n_past, 1, 1}};
            uhlm_wire_encode_opened(&out, &o, &err);
        } else if (m.type == UHLM_WIRE_VERIFY || m.type == UHLM_WIRE_GENERATE) {
            int is_v = m.type == UHLM_WIRE_VERIFY;
            uint32_t id = is_v ? m.u.verify.request_id : m.u.generate.request_id;
            uint32_t pos = is_v ? m.u.verify.pos : m.u.generate.pos;
            const uhlm_wire_tokens *cu = is_v ? &m.u.verify.catchup : &m.u.generate.catchup;
            int fault = ++f->requests == f->fault_at ? f->fault : F_NONE;
            if (fault == F_CLOSE) break;
            if (fault == F_GARBAGE) {
                if (uhlm_sock_send_all(fd, "garbage garbage!", 16, uhlm_now() + FAKE_WAIT_S, NULL,
                                       NULL) != 0)
                    break;
                continue;
            }
            if (fault == F_STALL) usleep(300 * 1000);
            if (fault == F_DESYNC || fault == F_CTXFULL || fault == F_BADPROBS ||
                fault == F_BADPAYLOAD || pos != (uint32_t)f->n_past) {
                int code = fault == F_CTXFULL      ? UHLM_WIRE_E_CTX_FULL
                           : fault == F_BADPROBS   ? UHLM_WIRE_E_BAD_PROBS
                           : fault == F_BADPAYLOAD ? UHLM_WIRE_E_BAD_PAYLOAD
                                                   : UHLM_WIRE_E_DESYNC;
                uhlm_wire_encode_error(&out, (uint16_t)code, 0, id, &err, "scripted");
                wr(fd, &out);
                continue;
            }
            uhlm_wire_tokens_copy(cu, f->ctx + f->n_past);
            f->n_past += (int)cu->n;
            if (is_v) {
                uint32_t tok = m.u.verify.draft % 3 == 0 ? 5 : m.u.verify.draft; /* some rejections */
                f->ctx[f->n_past++] = (int)tok;
                uhlm_wire_verdict v = {.request_id = id, .token = (int)tok,
                                       .accepted = tok == m.u.verify.draft, .y_d = 0.5, .x_d = 0.5,
                                       .cost = {2000, 1, cu->n + 1, 1, cu->n + 1},
                                       .n_past = f->n_past};
                uhlm_wire_encode_verdict(&out, &v, &lim, &err);
            } else {
                int toks[4] = {11, 12, 13, 14};
                uint32_t n = m.u.generate.n_gen < 4 ? m.u.generate.n_gen : 4;
                for (uint32_t i = 0; i < n; i++) f->ctx[f->n_past++] = toks[i];
                uhlm_wire_generated g = {id, {toks, NULL, n}, {3000, n, n, 1, n}, (uint32_t)f->n_past};
                uhlm_wire_encode_generated(&out, &g, &lim, &err);
            }
            if (fault == F_IDLE_CLOSE) {
                wr(fd, &out);
                usleep(20 * 1000);
                break;
            }
        } else if (m.type == UHLM_WIRE_CLOSE) {
            uhlm_wire_encode_empty(&out, UHLM_WIRE_CLOSE, &err);
        } else {
            break;
        }
        wr(fd, &out);
    }
    uhlm_wire_buf_free(&in);
    uhlm_wire_buf_free(&out);
}

static void *fake_main(void *arg) {
    fake *f = arg;
    while (!atomic_load(&f->stop)) {
        /* short waits, so that the stop flag is seen */
        if (uhlm_sock_wait(f->lfd, POLLIN, uhlm_now() + 0.05) <= 0) continue;
        int fd = uhlm_sock_accept(f->lfd, NULL, 0, NULL, 0);
        if (fd < 0) continue;
        f->conns++;
        if (f->requests >= f->fault_at && f->down_for > 0) {
            f->down_for--; /* "down": the connection closes before WELCOME */
            close(fd);
            continue;
        }
        serve_conn(f, fd);
        close(fd);
    }
    return NULL;
}

static int fake_start(fake *f, pthread_t *th, int fault, int fault_at, int down_for) {
    memset(f, 0, sizeof *f);
    f->fault = fault;
    f->fault_at = fault_at;
    f->down_for = down_for;
    f->lfd = uhlm_sock_listen("127.0.0.1", 0, &f->port, NULL);
    if (f->lfd < 0) return -1;
    return pthread_create(th, NULL, fake_main, f);
}

static void fake_stop(fake *f, pthread_t th) {
    atomic_store(&f->stop, 1);
    shutdown(f->lfd, SHUT_RDWR); /* wakes the wait for a connection at once */
    pthread_join(th, NULL);
    close(f->lfd);
}

/* The test client's parameters; ps (16 bytes) holds the port's text. window: the fallback
 * window (0: fall back at once, the behaviour most checks here pin). */
static uhlm_remote_params client_params(char *ps, int port, int require, double window) {
    snprintf(ps, 16, "%d", port);
    uhlm_remote_params p = uhlm_remote_default_params();
    p.host = "127.0.0.1";
    p.port = ps;
    p.n_vocab = VOCAB;
    p.fingerprint = FP;
    p.connect_timeout_s = 0.5;
    p.read_timeout_s = 0.1;
    p.backoff_min_s = 0.001;
    p.backoff_max_s = 0.004;
    p.require = require;
    p.fallback_after_s = window;
    return p;
}

static uhlm_verifier *client_win(int port, int require, double window, uhlm_error *err) {
    char ps[16];
    uhlm_remote_params p = client_params(ps, port, require, window);
    return uhlm_remote_new(&p, err);
}

static uhlm_verifier *client_req(int port, int require, uhlm_error *err) {
    return client_win(port, require, 0.0, err);
}

static uhlm_verifier *client(int port, uhlm_error *err) { return client_req(port, 0, err); }

/* The device side, as device.c keeps it. */
typedef struct dev {
    int toks[NCTX + 64];
    int n, sent, unverified, verified, hard, last_rc;
} dev;

static int dev_step(uhlm_verifier *v, dev *d, int skips, int greedy) {
    for (int i = 0; i < skips; i++, d->n++) d->toks[d->n] = 20 + (d->n * 7) % 400;
    int draft = 30 + (d->n * 13) % 400;
    uint8_t x[VOCAB * 4];
    float *xf = (float *)x;
    for (int i = 0; i < VOCAB; i++) xf[i] = 1.0f / VOCAB;
    uhlm_verify_req r = {d->toks + d->sent, d->n - d->sent, draft, {UHLM_PAYLOAD_F32, 0, 0},
                         greedy ? NULL : x, greedy ? 0 : sizeof x, 77};
    uhlm_verdict vd;
    uhlm_error err;
    int rc = uhlm_verifier_verify(v, &r, &vd, &err);
    d->last_rc = rc;
    if (rc == 0) {
        d->toks[d->n++] = vd.token;
        d->sent = d->n;
        d->verified++;
        if (vd.n_past != d->n) d->hard++;
    } else if (rc == UHLM_VERIFIER_UNAVAILABLE) {
        d->toks[d->n++] = draft;
        d->unverified++;
    } else {
        d->hard++;
    }
    return rc;
}

static int dev_open(uhlm_verifier *v, dev *d, float temp) {
    memset(d, 0, sizeof *d);
    for (int i = 0; i < 5; i++) d->toks[d->n++] = 1 + i;
    uhlm_sampling s = {temp, 0, 1.0f};
    uhlm_opened o;
    uhlm_error err;
    int rc = uhlm_verifier_open(v, d->toks, d->n, &s, 42, &o, &err);
    if (rc == 0) d->sent = d->n;
    return rc;
}

/* the server's committed context is the device's committed prefix */
static int consistent(const fake *f, const dev *d) {
    return f->n_past == d->sent && memcmp(f->ctx, d->toks, sizeof(int) * (size_t)d->sent) == 0;
}

/* Runs 40 steps (skipping 0..2 tokens before each) against a fake with one fault, with a
 * fallback window of window seconds. */
static void scenario_win(const char *name, int fault, int fault_at, int down_for, int expect_unv,
                         double window) {
    fake f;
    pthread_t th;
    uhlm_error err;
    CHECK(fake_start(&f, &th, fault, fault_at, down_for) == 0);
    uhlm_verifier *v = client_win(f.port, 0, window, &err);
    CHECK(v);
    if (!v) return;
    uhlm_verifier_info info;
    CHECK(uhlm_verifier_info_get(v, &info, &err) == 0 && info.n_vocab == VOCAB &&
          info.n_ctx == NCTX && info.ctx_fallback && info.fingerprint == FP);
    dev d;
    CHECK(dev_open(v, &d, 0.0f) == 0);
    for (int i = 0; i < 40; i++) {
        dev_step(v, &d, i % 3, 1);
        if (d.unverified && i < 39) usleep(2000); /* let the backoff pass sometimes */
    }
    for (int i = 0; i < 50 && d.last_rc != 0; i++) {
        usleep(10 * 1000);
        dev_step(v, &d, 1, 1);
    }
    uhlm_remote_stats st;
    CHECK(uhlm_remote_get_stats(v, &st) == 0);
    CHECKF(d.hard == 0, "%s: %d hard errors", name, d.hard);
    CHECKF(expect_unv ? d.unverified > 0 : d.unverified == 0, "%s: %d unverified", name,
           d.unverified);
    CHECKF(d.verified > 0 && d.last_rc == 0, "%s: verification resumed", name);
    CHECKF(consistent(&f, &d), "%s: server n_past %d, device committed %d", name, f.n_past,
           d.sent);
    if (fault != F_NONE)
        CHECKF(st.losses >= 1 && st.resyncs >= 1 && st.reconnects >= 1,
               "%s: losses %llu resyncs %llu reconnects %llu", name,
               (unsigned long long)st.losses, (unsigned long long)st.resyncs,
               (unsigned long long)st.reconnects);
    else
        CHECK(st.losses == 0 && st.connects == 1 && st.opens == 1 && st.unavailable == 0);
    uhlm_verifier_close(v);
    uhlm_verifier_free(v);
    fake_stop(&f, th);
    printf("%-12s window %g s: verified %d unverified %d connects %llu resyncs %llu\n", name,
           window, d.verified, d.unverified, (unsigned long long)st.connects,
           (unsigned long long)st.resyncs);
}

static void scenario(const char *name, int fault, int fault_at, int down_for, int expect_unv) {
    scenario_win(name, fault, fault_at, down_for, expect_unv, 0.0);
}

static void test_scenarios(void) {
    scenario("normal", F_NONE, 0, 0, 0);
    scenario("close", F_CLOSE, 10, 3, 1);
    /* a DESYNC or garbage on a working connection: reconnect and resync at once */
    scenario("desync", F_DESYNC, 10, 0, 0);
    scenario("garbage", F_GARBAGE, 10, 0, 0);
    /* ... unless the server then stays away */
    scenario("garbage-down", F_GARBAGE, 10, 3, 1);
    scenario("stall", F_STALL, 10, 0, 1);
    /* a connection the server closed while the device was quiet is replaced at once */
    scenario("idle-close", F_IDLE_CLOSE, 10, 0, 0);
    /* with a fallback window the same outages cost no unverified token: the failed request
     * waits, reconnects and is answered on a resynchronised session */
    scenario_win("close", F_CLOSE, 10, 3, 0, 2.0);
    scenario_win("garbage-down", F_GARBAGE, 10, 3, 0, 2.0);
    scenario_win("stall", F_STALL, 10, 0, 0, 2.0);
}

static int cancel_after_3(void *user) { return ++*(int *)user > 3; }

/* A server that stays away: the window holds the first request for about its length (not
 * much more: the connect is refused at once), then every request falls back at once. */
static void test_window_expires(void) {
    fake f;
    pthread_t th;
    uhlm_error err;
    CHECK(fake_start(&f, &th, F_NONE, 0, 0) == 0);
    int port = f.port;
    fake_stop(&f, th);
    uhlm_verifier *v = client_win(port, 0, 0.3, &err);
    uhlm_verifier_info info;
    CHECK(v && uhlm_verifier_info_get(v, &info, &err) == 0);
    dev d;
    CHECK(dev_open(v, &d, 0.0f) == 0);
    double t0 = uhlm_now();
    CHECK(dev_step(v, &d, 0, 1) == UHLM_VERIFIER_UNAVAILABLE);
    double held = uhlm_now() - t0;
    CHECKF(held >= 0.25 && held < 1.5, "the window held the request %.3f s (want ~0.3)", held);
    t0 = uhlm_now();
    for (int i = 0; i < 50; i++) CHECK(dev_step(v, &d, 0, 1) == UHLM_VERIFIER_UNAVAILABLE);
    CHECKF(uhlm_now() - t0 < 0.5, "after the window, requests waited %.3f s", uhlm_now() - t0);
    uhlm_verifier_free(v);
    /* with require, the error comes after the window and names it */
    v = client_win(port, 1, 0.3, &err);
    t0 = uhlm_now();
    CHECK(v && uhlm_verifier_info_get(v, &info, &err) == -1 && strstr(err.msg, "fallback window"));
    held = uhlm_now() - t0;
    CHECKF(held >= 0.25 && held < 1.5, "require: the window held info %.3f s", held);
    uhlm_verifier_free(v);
    /* the cancel callback ends a wait at once (here on its fourth poll, ~150 ms in): the
     * request falls back, or under require fails saying it was interrupted */
    for (int req = 0; req <= 1; req++) {
        char ps[16];
        uhlm_remote_params cp = client_params(ps, port, req, 30.0);
        int polls = 0;
        cp.cancel = cancel_after_3;
        cp.cancel_user = &polls;
        v = uhlm_remote_new(&cp, &err);
        t0 = uhlm_now();
        if (req) {
            CHECK(v && uhlm_verifier_info_get(v, &info, &err) == -1 && strstr(err.msg, "interrupted"));
        } else {
            CHECK(v && uhlm_verifier_info_get(v, &info, &err) == 0 && dev_open(v, &d, 0.0f) == 0);
            CHECK(dev_step(v, &d, 0, 1) == UHLM_VERIFIER_UNAVAILABLE);
        }
        CHECKF(uhlm_now() - t0 < 2.0 && polls > 3, "cancelled wait: %.3f s, %d polls",
               uhlm_now() - t0, polls);
        uhlm_verifier_free(v);
    }
    /* out-of-range windows are refused */
    uhlm_remote_params rp = uhlm_remote_default_params();
    CHECK(rp.fallback_after_s == 10.0);
    rp.host = "127.0.0.1";
    rp.port = "1";
    rp.n_vocab = VOCAB;
    rp.fallback_after_s = -1;
    CHECK(uhlm_remote_new(&rp, &err) == NULL && strstr(err.msg, "fallback window"));
    rp.fallback_after_s = NAN;
    CHECK(uhlm_remote_new(&rp, &err) == NULL);
}

static void test_ctx_full_and_hard_errors(void) {
    fake f;
    pthread_t th;
    uhlm_error err;
    dev d;
    /* CTX_FULL: unavailable, then no more network until the next open */
    CHECK(fake_start(&f, &th, F_CTXFULL, 3, 0) == 0);
    uhlm_verifier *v = client(f.port, &err);
    CHECK(v && dev_open(v, &d, 0.0f) == 0);
    for (int i = 0; i < 6; i++) dev_step(v, &d, 1, 1);
    CHECK(d.verified == 2 && d.unverified == 4 && f.requests == 3 && d.hard == 0);
    CHECK(dev_open(v, &d, 0.0f) == 0 && dev_step(v, &d, 0, 1) == 0);
    uhlm_verifier_free(v);
    fake_stop(&f, th);
    /* a non-fatal BAD_PROBS would repeat on any server: a hard error */
    CHECK(fake_start(&f, &th, F_BADPROBS, 2, 0) == 0);
    v = client(f.port, &err);
    CHECK(v && dev_open(v, &d, 1.0f) == 0);
    CHECK(dev_step(v, &d, 0, 0) == 0);
    CHECK(dev_step(v, &d, 0, 0) == -1 && d.hard == 1);
    uhlm_verifier_free(v);
    fake_stop(&f, th);
    /* BAD_PAYLOAD: the server cannot take this encoding, so it would refuse every request;
     * like CTX_FULL the device goes on with the SLM alone (it used to be a hard error, and
     * `uhlm run --server` exited 1) */
    CHECK(fake_start(&f, &th, F_BADPAYLOAD, 3, 0) == 0);
    v = client(f.port, &err);
    CHECK(v && dev_open(v, &d, 0.0f) == 0);
    for (int i = 0; i < 6; i++) dev_step(v, &d, 1, 1);
    CHECKF(d.verified == 2 && d.unverified == 4 && f.requests == 3 && d.hard == 0,
           "BAD_PAYLOAD: verified %d unverified %d requests %d hard %d", d.verified, d.unverified,
           f.requests, d.hard);
    uhlm_verifier_free(v);
    fake_stop(&f, th);
    /* a server that does not list the encoding in WELCOME: the same, without asking it */
    CHECK(fake_start(&f, &th, F_NONE, 0, 0) == 0);
    f.welcome_kinds = UHLM_WIRE_KIND_BIT(UHLM_PAYLOAD_TOPK);
    v = client(f.port, &err);
    CHECK(v && dev_open(v, &d, 0.0f) == 0);
    for (int i = 0; i < 4; i++) dev_step(v, &d, 1, 1);
    CHECKF(d.verified == 0 && d.unverified == 4 && f.requests == 0 && d.hard == 0,
           "payload kinds: verified %d unverified %d requests %d hard %d", d.verified,
           d.unverified, f.requests, d.hard);
    uhlm_verifier_free(v);
    fake_stop(&f, th);
    /* a server advertising a context of 1 cannot hold the prompt: the device's own context is
     * not cut to it (the device exited 1 on every prompt); the session runs on the SLM alone */
    CHECK(fake_start(&f, &th, F_NONE, 0, 0) == 0);
    f.welcome_ctx = 1;
    v = client(f.port, &err);
    uhlm_verifier_info info1;
    CHECK(v && uhlm_verifier_info_get(v, &info1, &err) == 0);
    CHECKF(info1.n_ctx == 1 && info1.ctx_fallback, "n_ctx %d", info1.n_ctx);
    CHECK(v && dev_open(v, &d, 0.0f) == 0);
    for (int i = 0; i < 4; i++) dev_step(v, &d, 1, 1);
    CHECKF(d.verified == 0 && d.unverified == 4 && f.opens == 0 && d.hard == 0,
           "n_ctx 1: verified %d unverified %d opens %d hard %d", d.verified, d.unverified,
           f.opens, d.hard);
    uhlm_verifier_free(v);
    fake_stop(&f, th);
    /* --require-server: the same refusal is a hard error, naming its cause */
    CHECK(fake_start(&f, &th, F_BADPAYLOAD, 2, 0) == 0);
    v = client_req(f.port, 1, &err);
    CHECK(v && dev_open(v, &d, 0.0f) == 0);
    CHECK(dev_step(v, &d, 0, 1) == 0);
    {
        uhlm_verify_req r = {NULL, 0, 7, {UHLM_PAYLOAD_F32, 0, 0}, NULL, 0, 1};
        uhlm_verdict vd;
        int rc = uhlm_verifier_verify(v, &r, &vd, &err);
        CHECKF(rc == -1 && strstr(err.msg, "BAD_PAYLOAD") && strstr(err.msg, "--require-server"),
               "require, BAD_PAYLOAD: rc %d: %s", rc, err.msg);
    }
    uhlm_verifier_free(v);
    fake_stop(&f, th);
    /* ... and a server that cannot be reached is an error at first contact */
    CHECK(fake_start(&f, &th, F_NONE, 0, 0) == 0);
    int dead_port = f.port;
    fake_stop(&f, th);
    v = client_req(dead_port, 1, &err);
    uhlm_verifier_info info2;
    CHECKF(v && uhlm_verifier_info_get(v, &info2, &err) == -1 && strstr(err.msg, "--require-server"),
           "require, unreachable: %s", err.msg);
    uhlm_verifier_free(v);
    /* AUTH at first contact: info fails with the server's word */
    CHECK(fake_start(&f, &th, F_AUTH, 0, 0) == 0);
    v = client(f.port, &err);
    uhlm_verifier_info info;
    CHECK(v && uhlm_verifier_info_get(v, &info, &err) == -1 && strstr(err.msg, "AUTH"));
    uhlm_verifier_free(v);
    fake_stop(&f, th);
}

static void test_unreachable_and_generate(void) {
    fake f;
    pthread_t th;
    uhlm_error err;
    CHECK(fake_start(&f, &th, F_NONE, 0, 0) == 0);
    int port = f.port;
    fake_stop(&f, th); /* the port is free now */
    uhlm_verifier *v = client(port, &err);
    uhlm_verifier_info info;
    CHECK(v && uhlm_verifier_info_get(v, &info, &err) == 0 && info.n_vocab == VOCAB &&
          strstr(info.model, "unreachable"));
    dev d;
    CHECK(dev_open(v, &d, 0.0f) == 0);
    double t0 = uhlm_now();
    for (int i = 0; i < 150; i++) {
        int rc = dev_step(v, &d, 0, 1);
        CHECKF(rc == UHLM_VERIFIER_UNAVAILABLE, "step %d: rc %d", i, rc);
    }
    CHECK(uhlm_now() - t0 < 2.0); /* backoff: most calls do not touch the network */
    uhlm_remote_stats st;
    CHECK(uhlm_remote_get_stats(v, &st) == 0 && st.connect_failures >= 1 &&
          st.connect_failures < 150 && st.unavailable == 150);
    uhlm_verifier_free(v);

    CHECK(fake_start(&f, &th, F_NONE, 0, 0) == 0);
    v = client(f.port, &err);
    CHECK(v && dev_open(v, &d, 1.0f) == 0);
    int cu[2] = {40, 41}, out[8];
    uhlm_generate_req g = {cu, 2, 3, 1, 5};
    uhlm_generated go;
    CHECK(uhlm_verifier_generate(v, &g, out, &go, &err) == 0 && go.n == 3 && out[0] == 11 &&
          go.n_past == 10 && f.n_past == 10 && f.ctx[5] == 40 && go.forward_calls == 4);
    uhlm_verifier_free(v);
    fake_stop(&f, th);
}

static void test_parsing(void) {
    char h[64], p[8];
    uhlm_error err;
    CHECK(uhlm_remote_parse_addr("example.org:7474", h, sizeof h, p, sizeof p, &err) == 0 &&
          !strcmp(h, "example.org") && !strcmp(p, "7474"));
    CHECK(uhlm_remote_parse_addr("[::1]:80", h, sizeof h, p, sizeof p, &err) == 0 &&
          !strcmp(h, "::1") && !strcmp(p, "80"));
    CHECK(uhlm_remote_parse_addr(":9", h, sizeof h, p, sizeof p, &err) == 0 &&
          !strcmp(h, "127.0.0.1"));
    CHECK(uhlm_remote_parse_addr("host", h, sizeof h, p, sizeof p, &err) == -1);
    CHECK(uhlm_remote_parse_addr("host:0", h, sizeof h, p, sizeof p, &err) == -1);
    CHECK(uhlm_remote_parse_addr("host:70000", h, sizeof h, p, sizeof p, &err) == -1);
    CHECK(uhlm_remote_parse_addr("host:12x", h, sizeof h, p, sizeof p, &err) == -1);
    CHECK(uhlm_remote_parse_addr("[::1:80", h, sizeof h, p, sizeof p, &err) == -1);

    char path[512], tok[UHLM_WIRE_MAX_AUTH + 1];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/uhlm_test_token_%d", uhlm_test_tmpdir(), (int)getpid());
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("s3cret \r\n\n", f);
        fclose(f);
        CHECK(uhlm_remote_load_token(path, tok, sizeof tok, &n, &err) == 0 && n == 6 &&
              !strcmp(tok, "s3cret"));
        f = fopen(path, "wb");
        if (f) {
            fputs("\n", f);
            fclose(f);
        }
        CHECK(uhlm_remote_load_token(path, tok, sizeof tok, &n, &err) == -1);
        remove(path);
    }
    CHECK(uhlm_remote_load_token("/nonexistent/token", tok, sizeof tok, &n, &err) == -1 &&
          strstr(err.msg, "/nonexistent/token"));
    uhlm_remote_params rp = uhlm_remote_default_params();
    CHECK(uhlm_remote_new(&rp, &err) == NULL); /* no address */
    rp.host = "127.0.0.1";
    rp.port = "1";
    rp.n_vocab = 0;
    CHECK(uhlm_remote_new(&rp, &err) == NULL);
    rp.n_vocab = 10;
    rp.read_timeout_s = 0;
    CHECK(uhlm_remote_new(&rp, &err) == NULL);
}

int main(void) {
    test_parsing();
    test_scenarios();
    test_window_expires();
    test_ctx_full_and_hard_errors();
    test_unreachable_and_generate();
    return check_report();
}
