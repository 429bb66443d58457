/* test_server.c: the verification server (uhlm/server.h) against raw-socket clients.
 *
 * 1. Exactness under load: 16 devices (threads, each with its own SLM context) run the real
 *    device loop concurrently against one server through a minimal wire-protocol verifier
 *    written here, in every mode; each output must equal the in-process run with the same
 *    seed, and the server must actually have batched across devices.
 * 2. Bad input (docs/protocol.md §8, issue 4): every case on its own raw connection while a
 *    well-behaved device G stays connected; after each case G verifies again and its verdict
 *    must equal the in-process verifier's for the same request (so no session was
 *    corrupted). The server runs in this process, so the sanitizer build also checks it for
 *    leaks and memory errors.
 * 3. Graceful shutdown: a queued multi-token GENERATE is answered in full before every
 *    device gets ERROR SHUTTING_DOWN and uhlm_server_run returns 0. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "net/server_internal.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"
#include "uhlm/server.h"
#include "uhlm/tokenizer.h"
#include "uhlm/wire.h"
#include "server_client.h"

#define N_DEV 16
#define N_GEN 40

/* ------------------------------------------------------------------ a minimal wire verifier */

typedef struct netver {
    uhlm_verifier base;
    int fd;
    uint32_t mode;
    int n_vocab, n_ctx;
    uint64_t fp;
    uint32_t n_past, rid;
    frame f;
    uhlm_wire_buf out;
} netver;

static int nv_info(uhlm_verifier *v, uhlm_verifier_info *o, uhlm_error *err) {
    (void)err;
    netver *s = v->impl;
    memset(o, 0, sizeof *o);
    o->n_vocab = s->n_vocab;
    o->n_ctx = s->n_ctx;
    o->fingerprint = s->fp;
    snprintf(o->model, sizeof o->model, "remote");
    return 0;
}

static int nv_reply(netver *s, int want, uhlm_error *err) {
    if (send_buf(s->fd, &s->out) != 0 || recv_frame(s->fd, &s->f) < 0)
        return uhlm_set_error(err, "netver: connection lost");
    if (s->f.type == UHLM_WIRE_ERROR)
        return uhlm_set_error(err, "netver: ERROR %s: %.*s", uhlm_wire_code_name(s->f.m.u.error.code),
                              (int)s->f.m.u.error.msg.len, s->f.m.u.error.msg.p);
    if (s->f.type != want) return uhlm_set_error(err, "netver: unexpected %s", uhlm_wire_type_name((unsigned)s->f.type));
    return 0;
}

static int nv_open(uhlm_verifier *v, const int *prompt, int n, const uhlm_sampling *smp,
                   uint64_t seed, uhlm_opened *out, uhlm_error *err) {
    netver *s = v->impl;
    uhlm_wire_open o = {s->mode, smp->temp, (uint32_t)smp->top_k, smp->top_p, seed, {prompt, NULL, (uint32_t)n}};
    if (uhlm_wire_encode_open(&s->out, &o, NULL, err) != 0) return -1;
    if (nv_reply(s, UHLM_WIRE_OPENED, err) != 0) return -1;
    memset(out, 0, sizeof *out);
    s->n_past = s->f.m.u.opened.n_past;
    out->n_past = (int)s->n_past;
    out->forward_calls = (int)s->f.m.u.opened.cost.forward_calls;
    out->batch_tokens = (int)s->f.m.u.opened.cost.batch_tokens;
    return 0;
}

static int nv_verify(uhlm_verifier *v, const uhlm_verify_req *r, uhlm_verdict *out, uhlm_error *err) {
    netver *s = v->impl;
    uhlm_wire_verify q;
    memset(&q, 0, sizeof q);
    q.request_id = ++s->rid;
    q.flags = r->x ? 0 : UHLM_WIRE_VF_GREEDY;
    q.pos = s->n_past;
    q.catchup = (uhlm_wire_tokens){r->catchup, NULL, (uint32_t)r->n_catchup};
    q.draft = (uint32_t)r->draft;
    q.draw_seed = r->draw_seed;
    if (r->x) {
        q.kind = (uint8_t)r->enc.kind;
        q.prob_bits = (uint8_t)r->enc.prob_bits;
        q.k = (uint32_t)r->enc.k;
        q.x = (uhlm_wire_bytes){r->x, (uint32_t)r->x_len};
    }
    if (uhlm_wire_encode_verify(&s->out, &q, NULL, err) != 0) return -1;
    if (nv_reply(s, UHLM_WIRE_VERDICT, err) != 0) return -1;
    const uhlm_wire_verdict *d = &s->f.m.u.verdict;
    if (d->request_id != q.request_id) return uhlm_set_error(err, "netver: request id mismatch");
    *out = *d; /* the wire's verdict is the verifier's (one type) */
    s->n_past = d->n_past;
    return 0;
}

static int nv_generate(uhlm_verifier *v, const uhlm_generate_req *r, int *tokens,
                       uhlm_generated *out, uhlm_error *err) {
    netver *s = v->impl;
    uhlm_wire_generate q = {++s->rid, r->stop_eos ? UHLM_WIRE_GF_STOP_EOS : 0, s->n_past,
                            {r->catchup, NULL, (uint32_t)r->n_catchup}, (uint32_t)r->n_gen, r->draw_seed};
    if (uhlm_wire_encode_generate(&s->out, &q, NULL, err) != 0) return -1;
    if (nv_reply(s, UHLM_WIRE_GENERATED, err) != 0) return -1;
    const uhlm_wire_generated *g = &s->f.m.u.generated;
    memset(out, 0, sizeof *out);
    out->n = (int)g->tokens.n;
    uhlm_wire_tokens_copy(&g->tokens, tokens);
    out->forward_calls = (int)g->cost.forward_calls;
    out->batch_tokens = (int)g->cost.seq_tokens;
    out->n_past = (int)g->n_past;
    s->n_past = g->n_past;
    return 0;
}

static void nv_close(uhlm_verifier *v) {
    netver *s = v->impl;
    uhlm_error e;
    if (uhlm_wire_encode_empty(&s->out, UHLM_WIRE_CLOSE, &e) == 0) nv_reply(s, UHLM_WIRE_CLOSE, &e);
}

static void nv_destroy(uhlm_verifier *v) {
    netver *s = v->impl;
    close(s->fd);
    uhlm_wire_buf_free(&s->out);
    free(s);
}

static const uhlm_verifier_ops nv_ops = {nv_info, nv_open, nv_verify, nv_generate, nv_close, nv_destroy};

static uhlm_verifier *netver_new(int port, uint32_t mode, const uhlm_model *m) {
    netver *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.ops = &nv_ops;
    s->base.impl = s;
    s->mode = mode;
    s->fd = tc_connect(port);
    if (s->fd < 0 || do_hello(s->fd, NULL, (uint32_t)uhlm_model_config(m)->vocab_size,
                              uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(m)), &s->f) != UHLM_WIRE_WELCOME) {
        if (s->fd >= 0) close(s->fd);
        free(s);
        return NULL;
    }
    s->n_vocab = (int)s->f.m.u.welcome.vocab_size;
    s->n_ctx = (int)s->f.m.u.welcome.n_ctx;
    s->fp = s->f.m.u.welcome.fingerprint;
    return &s->base;
}

/* ------------------------------------------------------------------ 1. 16 devices */

typedef struct devcase {
    int port;
    const uhlm_model *slm, *llm;
    uhlm_device_params dp;
    int prompt[8];
    int n_prompt;
    uint64_t seed;
    int out[512];
    int n_out, accepted, rejected;
    int ok;
    char err[512];
} devcase;

/* Runs one device against v (remote when port > 0, else in-process). */
static void run_device(devcase *dc, uhlm_verifier *v) {
    uhlm_error err = {{0}};
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    uhlm_ctx *slm = dc->dp.policy.mode == UHLM_MODE_LLM ? NULL : uhlm_ctx_new(dc->slm, &cp, &err);
    uhlm_device *d = NULL;
    dc->ok = 0;
    if ((dc->dp.policy.mode != UHLM_MODE_LLM && !slm) || !v ||
        !(d = uhlm_device_new(slm, 0, v, NULL, &dc->dp, &err)) ||
        uhlm_device_start(d, dc->prompt, dc->n_prompt, dc->seed, &err) != 0 ||
        uhlm_device_run(d, &err) < 0) {
        snprintf(dc->err, sizeof dc->err, "%s", v ? err.msg : "no verifier");
    } else {
        int n;
        const int *t = uhlm_device_tokens(d, &n);
        dc->n_out = n < 512 ? n : 512;
        memcpy(dc->out, t, sizeof(int) * (size_t)dc->n_out);
        dc->accepted = uhlm_device_get_stats(d)->accepted;
        dc->rejected = uhlm_device_get_stats(d)->rejected;
        dc->ok = 1;
    }
    uhlm_device_free(d);
    uhlm_ctx_free(slm);
}

static void *dev_thread(void *arg) {
    devcase *dc = arg;
    uint32_t mode = dc->dp.policy.mode == UHLM_MODE_LLM ? UHLM_WIRE_MODE_GENERATE : UHLM_WIRE_MODE_VERIFY;
    uhlm_verifier *v = netver_new(dc->port, mode, dc->llm);
    run_device(dc, v);
    uhlm_verifier_free(v);
    return NULL;
}

static void test_sixteen_devices(const uhlm_model *slm, const uhlm_model *llm) {
    uhlm_server_params p = uhlm_server_default_params();
    p.max_sessions = N_DEV;
    p.batch_window_us = 3000;
    p.n_threads = 2;
    srv x;
    if (srv_start(&x, llm, &p) != 0) {
        CHECK(0);
        return;
    }
    int port = uhlm_server_port(x.s);
    static devcase ref[N_DEV], got[N_DEV];
    for (int i = 0; i < N_DEV; i++) {
        devcase *dc = &ref[i];
        memset(dc, 0, sizeof *dc);
        dc->slm = slm;
        dc->llm = llm;
        dc->dp = uhlm_device_default_params();
        dc->dp.n_gen = N_GEN;
        switch (i % 5) {
        case 0: dc->dp.policy.mode = UHLM_MODE_HLM; dc->dp.sampling.temp = 0.8f; break;
        case 1:
            dc->dp.policy.mode = UHLM_MODE_UHLM;
            dc->dp.policy.u_th = 0.3;
            dc->dp.payload = (uhlm_payload_spec){UHLM_PAYLOAD_TOPK, 16, 8};
            break;
        case 2: dc->dp.policy.mode = UHLM_MODE_HLM; dc->dp.sampling.temp = 0.0f; break;
        case 3: dc->dp.policy.mode = UHLM_MODE_LLM; dc->dp.sampling.temp = 0.9f; break;
        default:
            dc->dp.policy.mode = UHLM_MODE_RAND;
            dc->dp.policy.skip_prob = 0.5;
            dc->dp.payload = (uhlm_payload_spec){UHLM_PAYLOAD_F16, 0, 0};
            dc->dp.sampling.top_k = 40;
            break;
        }
        dc->n_prompt = 1 + i % 4;
        dc->prompt[0] = UHLM_TOKEN_BOS;
        for (int k = 1; k < dc->n_prompt; k++) dc->prompt[k] = 3 + (i * 37 + k * 11) % 500;
        dc->seed = 1000 + (uint64_t)i;
        got[i] = ref[i];
        got[i].port = port;
    }
    /* references: the in-process verifier, one device at a time */
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    uhlm_error err;
    for (int i = 0; i < N_DEV; i++) {
        uhlm_verifier *v = uhlm_verifier_inproc_new(llm, &cp, &err);
        run_device(&ref[i], v);
        uhlm_verifier_free(v);
        CHECKF(ref[i].ok, "reference %d: %s", i, ref[i].err);
    }
    pthread_t th[N_DEV];
    for (int i = 0; i < N_DEV; i++) CHECK(pthread_create(&th[i], NULL, dev_thread, &got[i]) == 0);
    for (int i = 0; i < N_DEV; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N_DEV; i++) {
        CHECKF(got[i].ok, "device %d: %s", i, got[i].err);
        CHECKF(got[i].n_out == ref[i].n_out &&
                   !memcmp(got[i].out, ref[i].out, sizeof(int) * (size_t)ref[i].n_out),
               "device %d (mode %s): remote output differs from in-process", i,
               uhlm_mode_name(ref[i].dp.policy.mode));
        CHECKF(got[i].accepted == ref[i].accepted && got[i].rejected == ref[i].rejected,
               "device %d: accepted %d/%d rejected %d/%d", i, got[i].accepted, ref[i].accepted,
               got[i].rejected, ref[i].rejected);
    }
    srv_stop(&x);
    CHECK(x.rc == 0);
    uhlm_server_counters c;
    uhlm_server_get_counters(x.s, &c);
    printf("16 devices: %llu verifications, %llu generated, %llu forwards, mean batch %.2f\n",
           (unsigned long long)c.verifications, (unsigned long long)c.generated_tokens,
           (unsigned long long)c.forward_calls,
           c.forward_calls ? (double)c.batched_requests / (double)c.forward_calls : 0.0);
    CHECK(c.verifications > 0 && c.generated_tokens > 0);
    CHECKF(c.batched_requests > c.forward_calls, "no cross-device batching happened");
    CHECK(c.open_sessions == 0 && c.open_conns == 0);
    uhlm_server_free(x.s);
}

/* ------------------------------------------------------------------ 2. bad input */

#define AUTH "sekrit-token"
#define BAD_CTX 64

typedef struct good {
    int fd;
    uhlm_verifier *ref; /* in-process mirror of G's session */
    int n_past;
    uint32_t rid;
    uint64_t seed;
    frame f;
} good;

static void f32_uniform(uint8_t *x, int V) {
    float p = 1.0f / (float)V;
    uint32_t u;
    memcpy(&u, &p, 4);
    for (int i = 0; i < V; i++) {
        x[4 * i] = (uint8_t)u;
        x[4 * i + 1] = (uint8_t)(u >> 8);
        x[4 * i + 2] = (uint8_t)(u >> 16);
        x[4 * i + 3] = (uint8_t)(u >> 24);
    }
}

/* Encodes a VERIFY with fully chosen fields into b. */
static void enc_verify(uhlm_wire_buf *b, uint32_t rid, uint32_t pos, const int *cu, uint32_t ncu,
                       uint32_t draft, uint8_t kind, uint8_t bits, uint32_t k, const uint8_t *x,
                       uint32_t xl, uint32_t flags) {
    /* built by hand: the encoder would refuse some of the bad values the tests need */
    uhlm_wire_buf tmp = {0};
    uhlm_error e;
    size_t n = 4 * 3 + 4 + 4 * (size_t)ncu + 4 + 8 + 4 + 4 + 4 + xl;
    uhlm_wire_buf_reserve(&tmp, n + 12, &e);
    uint8_t *p = tmp.data;
    uhlm_wire_header_write(p, UHLM_WIRE_VERIFY, (uint32_t)n);
    p += 12;
#define PUT32(v) do { uint32_t v_ = (v); p[0] = (uint8_t)v_; p[1] = (uint8_t)(v_ >> 8); p[2] = (uint8_t)(v_ >> 16); p[3] = (uint8_t)(v_ >> 24); p += 4; } while (0)
    PUT32(rid);
    PUT32(flags);
    PUT32(pos);
    PUT32(ncu);
    for (uint32_t i = 0; i < ncu; i++) PUT32((uint32_t)cu[i]);
    PUT32(draft);
    PUT32(0);
    PUT32(0); /* draw_seed 0 */
    *p++ = kind;
    *p++ = bits;
    *p++ = 0;
    *p++ = 0;
    PUT32(k);
    PUT32(xl);
#undef PUT32
    if (xl) memcpy(p, x, xl);
    tmp.len = n + 12;
    uhlm_wire_buf_reserve(b, tmp.len, &e);
    memcpy(b->data + b->len, tmp.data, tmp.len);
    b->len += tmp.len;
    uhlm_wire_buf_free(&tmp);
}

/* G verifies one draft with a uniform f32 x and the given catch-up; the verdict must match
 * the in-process mirror. */
static void good_check(good *g, const uhlm_model *llm, int draft, const int *cu, int ncu) {
    int V = uhlm_model_config(llm)->vocab_size;
    uint8_t *x = malloc(4 * (size_t)V);
    if (!x) return;
    f32_uniform(x, V);
    uhlm_wire_buf b = {0};
    uhlm_wire_verify q;
    memset(&q, 0, sizeof q);
    q.request_id = ++g->rid;
    q.pos = (uint32_t)g->n_past;
    q.catchup = (uhlm_wire_tokens){cu, NULL, (uint32_t)ncu};
    q.draft = (uint32_t)draft;
    q.draw_seed = g->seed;
    q.kind = UHLM_WIRE_ENC_F32;
    q.x = (uhlm_wire_bytes){x, 4u * (uint32_t)V};
    uhlm_error e;
    CHECK(uhlm_wire_encode_verify(&b, &q, NULL, &e) == 0);
    CHECK(send_buf(g->fd, &b) == 0);
    uhlm_wire_buf_free(&b);
    int t = recv_frame(g->fd, &g->f);
    CHECKF(t == UHLM_WIRE_VERDICT, "good client: got %d (%s)", t,
           t == UHLM_WIRE_ERROR ? uhlm_wire_code_name(g->f.m.u.error.code) : "");
    uhlm_verify_req r = {cu, ncu, draft, {UHLM_PAYLOAD_F32, 0, 0}, x, 4u * (size_t)V, g->seed};
    uhlm_verdict rv;
    CHECK(uhlm_verifier_verify(g->ref, &r, &rv, &e) == 0);
    if (t == UHLM_WIRE_VERDICT) {
        const uhlm_wire_verdict *d = &g->f.m.u.verdict;
        CHECK(d->request_id == q.request_id);
        CHECKF((int)d->token == rv.token && d->y_d == (float)rv.y_d && (int)d->n_past == rv.n_past,
               "good client: verdict %u y %g n_past %u, in-process %d y %g n_past %d",
               (unsigned)d->token, (double)d->y_d, (unsigned)d->n_past, rv.token, rv.y_d, rv.n_past);
        g->n_past = (int)d->n_past;
    }
    g->seed++;
    free(x);
}

static void ping(int fd, frame *f) {
    uhlm_wire_buf b = {0};
    uhlm_error e;
    uhlm_wire_encode_ping(&b, UHLM_WIRE_PING, 42, &e);
    send_buf(fd, &b);
    uhlm_wire_buf_free(&b);
    CHECK(recv_frame(fd, f) == UHLM_WIRE_PONG && f->m.u.nonce == 42);
}

/* Sleeps about ms while G and `other` keep their connections alive. */
static void wait_pinging(good *g, int other, int ms) {
    frame *f = malloc(sizeof *f);
    for (int t = 0; f && t < ms; t += 100) {
        usleep(100 * 1000);
        ping(g->fd, &g->f);
        ping(other, f);
    }
    free(f);
}

/* A fresh connection that has said HELLO (with the right token). */
static int ready_conn(int port, const uhlm_model *llm, frame *f) {
    int fd = tc_connect(port);
    CHECK(fd >= 0);
    int t = do_hello(fd, AUTH, (uint32_t)uhlm_model_config(llm)->vocab_size, uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(llm)), f);
    CHECK(t == UHLM_WIRE_WELCOME);
    return fd;
}

/* Sends raw bytes on a fresh connection and expects ERROR code (fatal: then EOF). */
static void raw_case(const char *name, int port, const void *bytes, size_t n, int code, int fatal,
                     frame *f) {
    int fd = tc_connect(port);
    CHECK(fd >= 0);
    CHECK(send_all(fd, bytes, n) == 0);
    int t = recv_frame(fd, f);
    CHECKF(t == UHLM_WIRE_ERROR && is_error(f, code, fatal), "%s: got type %d code %s", name, t,
           t == UHLM_WIRE_ERROR ? uhlm_wire_code_name(f->m.u.error.code) : "-");
    if (fatal) CHECKF(expect_eof(fd) == 0, "%s: connection not closed", name);
    close(fd);
}

static void test_bad_input(const uhlm_model *llm) {
    uhlm_server_params p = uhlm_server_default_params();
    p.max_sessions = 2;
    p.max_ctx = BAD_CTX;
    p.idle_timeout_ms = 1500;
    p.batch_window_us = 400000; /* long: lets the shutdown test catch a request in the queue */
    p.auth = (const uint8_t *)AUTH;
    p.auth_len = strlen(AUTH);
    p.stats_port = 0;
    p.n_threads = 1;
    p.log = getenv("UHLM_TEST_SERVER_LOG") ? uhlm_log_file : NULL;
    p.log_user = stderr;
    srv x;
    if (srv_start(&x, llm, &p) != 0) {
        CHECK(0);
        return;
    }
    int port = uhlm_server_port(x.s);
    int V = uhlm_model_config(llm)->vocab_size;
    uint64_t fp = uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(llm));
    static frame f;
    uhlm_error e;

    /* the well-behaved device and its in-process mirror */
    good g;
    memset(&g, 0, sizeof g);
    g.seed = 99;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = BAD_CTX;
    g.ref = uhlm_verifier_inproc_new(llm, &cp, &e);
    CHECK(g.ref != NULL);
    g.fd = ready_conn(port, llm, &g.f);
    CHECK(g.f.m.u.welcome.n_ctx == BAD_CTX && g.f.m.u.welcome.max_sessions == 2 &&
          g.f.m.u.welcome.vocab_size == (uint32_t)V && g.f.m.u.welcome.fingerprint == fp);
    int gp[3] = {1, 40, 41};
    CHECK(do_open(g.fd, UHLM_WIRE_MODE_VERIFY, 1.0f, gp, 3, &g.f) == UHLM_WIRE_OPENED);
    uhlm_sampling smp = {1.0f, 0, 1.0f};
    uhlm_opened op;
    CHECK(uhlm_verifier_open(g.ref, gp, 3, &smp, 7, &op, &e) == 0);
    g.n_past = 3;
    int cu2[2] = {60, 61};
    good_check(&g, llm, 5, cu2, 2);

    /* garbage; wrong magic; wrong version */
    const char *garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_case("garbage", port, garbage, strlen(garbage), UHLM_WIRE_E_BAD_MAGIC, 1, &f);
    good_check(&g, llm, 6, NULL, 0);
    uint8_t h[32];
    uhlm_wire_header_write(h, UHLM_WIRE_HELLO, 0);
    h[0] = 'X';
    raw_case("magic", port, h, 12, UHLM_WIRE_E_BAD_MAGIC, 1, &f);
    uhlm_wire_header_write(h, UHLM_WIRE_HELLO, 0);
    h[4] = 2;
    raw_case("version", port, h, 12, UHLM_WIRE_E_BAD_VERSION, 1, &f);
    good_check(&g, llm, 7, NULL, 0);

    /* 4 GiB announced; a truncated payload (HELLO of 5 bytes) */
    uhlm_wire_header_write(h, UHLM_WIRE_HELLO, 0xffffffffu);
    raw_case("4GiB", port, h, 12, UHLM_WIRE_E_TOO_LARGE, 1, &f);
    uhlm_wire_header_write(h, UHLM_WIRE_HELLO, 5);
    memset(h + 12, 0, 5);
    h[12] = 1; /* version 1, flags 0, then the fingerprint is cut short */
    raw_case("truncated payload", port, h, 17, UHLM_WIRE_E_BAD_FRAME, 1, &f);
    /* a frame before HELLO */
    uhlm_wire_header_write(h, UHLM_WIRE_STATS_REQ, 0);
    raw_case("before hello", port, h, 12, UHLM_WIRE_E_BAD_STATE, 1, &f);
    good_check(&g, llm, 8, NULL, 0);

    /* wrong / missing auth, other vocabulary */
    int fd = tc_connect(port);
    CHECK(do_hello(fd, "wrong-token!", (uint32_t)V, fp, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_AUTH, 1));
    CHECK(expect_eof(fd) == 0);
    close(fd);
    fd = tc_connect(port);
    CHECK(do_hello(fd, NULL, (uint32_t)V, fp, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_AUTH, 1));
    close(fd);
    fd = tc_connect(port);
    CHECK(do_hello(fd, AUTH, 32000, fp, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_VOCAB_MISMATCH, 1));
    close(fd);
    fd = tc_connect(port);
    CHECK(do_hello(fd, AUTH, (uint32_t)V, fp ^ 1, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_VOCAB_MISMATCH, 1));
    close(fd);
    good_check(&g, llm, 9, NULL, 0);

    /* after HELLO: unknown type (not fatal), VERIFY before OPEN, a second HELLO, a server
     * message, STATS */
    fd = ready_conn(port, llm, &f);
    uhlm_wire_header_write(h, 99, 3);
    CHECK(send_all(fd, h, 15) == 0);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_UNKNOWN_TYPE, 0));
    ping(fd, &f);
    uhlm_wire_buf b = {0};
    uint8_t *xu = malloc(4 * (size_t)V);
    CHECK(xu != NULL);
    if (!xu) return;
    f32_uniform(xu, V);
    enc_verify(&b, 77, 3, NULL, 0, 5, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_NOT_OPEN, 0) &&
          f.m.u.error.request_id == 77);
    uhlm_wire_hello hh = {1, fp, (uint32_t)V, {(const uint8_t *)AUTH, (uint32_t)strlen(AUTH)}, uhlm_wire_cstr("x")};
    uhlm_wire_encode_hello(&b, &hh, &e);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_STATE, 0));
    uhlm_wire_encode_ping(&b, UHLM_WIRE_PONG, 1, &e);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_STATE, 0));
    uhlm_wire_encode_empty(&b, UHLM_WIRE_STATS_REQ, &e);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_STATS);
    if (f.type == UHLM_WIRE_STATS) {
        char text[8192];
        snprintf(text, sizeof text, "%.*s", (int)f.m.u.text.len, f.m.u.text.p);
        CHECK(strstr(text, "uhlm_server_verifications_total") && strstr(text, "uhlm_server_acceptance_rate") &&
              strstr(text, "uhlm_server_batch_size_bucket") && strstr(text, "quantile=\"0.99\"") &&
              strstr(text, "uhlm_server_sessions_open 1"));
    }
    good_check(&g, llm, 10, NULL, 0);

    /* token ids >= vocab: in an OPEN prompt, a draft, a catch-up */
    int badp[2] = {1, V};
    CHECK(do_open(fd, UHLM_WIRE_MODE_VERIFY, 1.0f, badp, 2, &f) == UHLM_WIRE_ERROR &&
          is_error(&f, UHLM_WIRE_E_BAD_TOKEN, 0));
    int okp[2] = {1, 20};
    CHECK(do_open(fd, UHLM_WIRE_MODE_VERIFY, 1.0f, okp, 2, &f) == UHLM_WIRE_OPENED);
    enc_verify(&b, 1, 2, NULL, 0, (uint32_t)V + 88, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_TOKEN, 0));
    int badcu[2] = {3, 1 << 30};
    enc_verify(&b, 2, 2, badcu, 2, 5, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_TOKEN, 0));
    good_check(&g, llm, 11, NULL, 0);

    /* probabilities: NaN, Inf, negative, not summing to 1, wrong length, zero at the draft */
    const float bad_vals[] = {NAN, INFINITY, -0.5f};
    for (int i = 0; i < 3; i++) {
        uint8_t *xb = malloc(4 * (size_t)V);
        if (!xb) break;
        f32_uniform(xb, V);
        memcpy(xb + 4 * 9, &bad_vals[i], 4); /* little-endian host */
        enc_verify(&b, 3, 2, NULL, 0, 5, 0, 0, 0, xb, 4u * (uint32_t)V, 0);
        send_buf(fd, &b);
        CHECKF(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_PROBS, 0), "bad value %d", i);
        free(xb);
    }
    {
        uint8_t *xb = malloc(4 * (size_t)V);
        float q = 2.0f / (float)V; /* sums to 2 */
        for (int i = 0; xb && i < V; i++) memcpy(xb + 4 * i, &q, 4);
        if (xb) {
            enc_verify(&b, 4, 2, NULL, 0, 5, 0, 0, 0, xb, 4u * (uint32_t)V, 0);
            send_buf(fd, &b);
            CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_PROBS, 0));
            enc_verify(&b, 5, 2, NULL, 0, 5, 0, 0, 0, xb, 4u * (uint32_t)V - 4, 0);
            send_buf(fd, &b);
            CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_PROBS, 0));
            float one = 1.0f, zero = 0.0f;
            for (int i = 0; i < V; i++) memcpy(xb + 4 * i, &zero, 4);
            memcpy(xb + 4 * 9, &one, 4);
            enc_verify(&b, 6, 2, NULL, 0, 5, 0, 0, 0, xb, 4u * (uint32_t)V, 0);
            send_buf(fd, &b);
            CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_PROBS, 0));
        }
        free(xb);
    }
    /* topk K > vocab; an unknown kind; GREEDY at temperature 1 */
    enc_verify(&b, 7, 2, NULL, 0, 5, 2, 8, (uint32_t)V + 1, xu, 16, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_PAYLOAD, 0));
    enc_verify(&b, 8, 2, NULL, 0, 5, 7, 0, 0, xu, 16, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_PAYLOAD, 0));
    enc_verify(&b, 9, 2, NULL, 0, 5, 0, 0, 0, NULL, 0, UHLM_WIRE_VF_GREEDY);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_PAYLOAD, 0));
    /* desync; positions past --max-ctx (VERIFY and OPEN); GENERATE in a verify session */
    enc_verify(&b, 10, 5, NULL, 0, 5, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_DESYNC, 0));
    int longcu[BAD_CTX];
    for (int i = 0; i < BAD_CTX; i++) longcu[i] = 3;
    enc_verify(&b, 11, 2, longcu, BAD_CTX - 2, 5, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_CTX_FULL, 0));
    int longp[BAD_CTX + 1];
    for (int i = 0; i <= BAD_CTX; i++) longp[i] = 3;
    CHECK(do_open(fd, UHLM_WIRE_MODE_VERIFY, 1.0f, longp, BAD_CTX + 1, &f) == UHLM_WIRE_ERROR &&
          is_error(&f, UHLM_WIRE_E_CTX_FULL, 0));
    uhlm_wire_generate gq = {12, 0, 2, {NULL, NULL, 0}, 1, 0};
    uhlm_wire_encode_generate(&b, &gq, NULL, &e);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_BAD_STATE, 0));
    /* after all those refusals this connection's session is intact: pos is still 2 */
    enc_verify(&b, 13, 2, NULL, 0, 5, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_VERDICT && f.m.u.verdict.n_past == 3);
    good_check(&g, llm, 12, NULL, 0);

    /* more sessions than allowed: G and fd hold both; a third gets BUSY until one closes */
    int fd3 = ready_conn(port, llm, &f);
    CHECK(do_open(fd3, UHLM_WIRE_MODE_VERIFY, 1.0f, okp, 2, &f) == UHLM_WIRE_ERROR &&
          is_error(&f, UHLM_WIRE_E_BUSY, 0));
    uhlm_wire_encode_empty(&b, UHLM_WIRE_CLOSE, &e);
    send_buf(fd, &b);
    CHECK(recv_frame(fd, &f) == UHLM_WIRE_CLOSE);
    CHECK(do_open(fd3, UHLM_WIRE_MODE_GENERATE, 0.0f, okp, 2, &f) == UHLM_WIRE_OPENED);
    good_check(&g, llm, 13, NULL, 0);

    /* connects and sends nothing / vanishes mid-frame (then silence, then gone) */
    int silent = tc_connect(port);
    int half = ready_conn(port, llm, &f);
    enc_verify(&b, 14, 2, NULL, 0, 5, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    CHECK(send_all(half, b.data, 20) == 0);
    b.len = 0;
    int gone = ready_conn(port, llm, &f);
    enc_verify(&b, 15, 2, NULL, 0, 5, 0, 0, 0, xu, 4u * (uint32_t)V, 0);
    CHECK(send_all(gone, b.data, 30) == 0);
    b.len = 0;
    close(gone);
    wait_pinging(&g, fd3, 2000);
    CHECK(recv_frame(silent, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_TIMEOUT, 1));
    CHECK(expect_eof(silent) == 0);
    CHECK(recv_frame(half, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_TIMEOUT, 1));
    close(silent);
    close(half);
    close(fd);
    good_check(&g, llm, 14, NULL, 0);

    /* the stats port speaks enough HTTP for curl and Prometheus */
    int hs = tc_connect(uhlm_server_stats_port(x.s));
    const char *get = "GET /metrics HTTP/1.0\r\n\r\n";
    CHECK(hs >= 0 && send_all(hs, get, strlen(get)) == 0);
    char resp[16384] = {0};
    CHECK(hs >= 0 && read_to_eof(hs, resp, sizeof resp) > 0);
    CHECK(strncmp(resp, "HTTP/1.0 200", 12) == 0 && strstr(resp, "uhlm_server_errors_total{code=\"BAD_PROBS\"}"));
    if (hs >= 0) close(hs);

    /* graceful shutdown: fd3's 20-token GENERATE sits in the batch window (G's session is
     * open and idle) when the stop comes; it is answered in full, then SHUTTING_DOWN */
    uhlm_wire_generate gen = {21, 0, 2, {NULL, NULL, 0}, 20, 5};
    uhlm_wire_encode_generate(&b, &gen, NULL, &e);
    send_buf(fd3, &b);
    usleep(100 * 1000);
    uhlm_server_stop(x.s);
    CHECK(recv_frame(fd3, &f) == UHLM_WIRE_GENERATED && f.m.u.generated.tokens.n == 20 &&
          f.m.u.generated.n_past == 22);
    CHECK(recv_frame(fd3, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_SHUTTING_DOWN, 1));
    CHECK(recv_frame(g.fd, &f) == UHLM_WIRE_ERROR && is_error(&f, UHLM_WIRE_E_SHUTTING_DOWN, 1));
    pthread_join(x.th, NULL);
    CHECKF(x.rc == 0, "server: %s", x.err.msg);
    uhlm_server_counters c;
    uhlm_server_get_counters(x.s, &c);
    CHECK(c.open_conns == 0 && c.open_sessions == 0 && c.errors >= 30);
    close(fd3);
    close(g.fd);
    uhlm_wire_buf_free(&b);
    free(xu);
    uhlm_verifier_free(g.ref);
    uhlm_server_free(x.s);
}

int main(void) {
    uhlm_error err;
    const char *tok = uhlm_test_model_path("tok512.bin");
    uhlm_model *llm = uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"), tok, &err);
    uhlm_model *slm = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"), tok, &err);
    if (!llm || !slm) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t = uhlm_now();
    test_bad_input(llm);
    printf("bad input: %.1f s\n", uhlm_now() - t);
    t = uhlm_now();
    test_sixteen_devices(slm, llm);
    printf("16 devices: %.1f s\n", uhlm_now() - t);
    uhlm_model_free(slm);
    uhlm_model_free(llm);
    return check_report();
}
