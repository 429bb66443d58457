/* bench_serve.c: `uhlm bench serve`, aggregate verification throughput of `uhlm serve` for a
 * growing number of concurrent devices, with and without cross-device batching.
 *
 * The server runs in this process on a loopback port (its own thread, exactly the code of
 * `uhlm serve`); each device is a thread with its own TCP connection speaking the wire
 * protocol: HELLO, OPEN, then VERIFY after VERIFY as fast as the replies come (lock-step, as a
 * real device), re-opening when its context is full. Devices draw nothing from an SLM: the
 * point is the server, so a device's x̃ is a fixed distribution and only the draft changes.
 * One JSON object per (devices, batching) on stdout. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_net.h"
#include "bench.h"
#include "net/server_internal.h"
#include "uhlm/model.h"
#include "uhlm/payload.h"
#include "uhlm/sampler.h"
#include "uhlm/server.h"
#include "uhlm/tokenizer.h"
#include "uhlm/wire.h"

typedef struct bclient {
    int port;
    const uhlm_model *m;
    const uint8_t *x; /* encoded x̃, shared read-only */
    size_t x_len;
    const float *xt; /* decoded x̃, to draw drafts from */
    uhlm_payload_spec enc;
    float temp;
    int catchup;
    int ctx_start, ctx_min, ctx_max; /* first context, and the range it cycles through */
    atomic_int *stop;
    atomic_int *ready; /* devices past their first OPEN (or failed) */
    uint64_t seed;
    /* results */
    uint64_t n_verify, n_accept;
    double lat_sum;
    int failed;
    char err[256];
} bclient;

#define BCLIENT_TIMEOUT_S 30.0 /* a device gives up on a reply after this long */

static void *bclient_main(void *arg) {
    bclient *c = arg;
    uhlm_wire_buf b = {0};
    uhlm_wire_msg m;
    uhlm_error e;
    uint8_t *pay = malloc(1 << 16);
    int *cu = malloc(sizeof(int) * (size_t)(c->catchup + 1));
    int *prompt = malloc(sizeof(int) * (size_t)c->ctx_max);
    int opened = 0;
    int fd = -1;
    if (!pay || !cu || !prompt) {
        snprintf(c->err, sizeof c->err, "out of memory");
        goto fail;
    }
    if ((fd = bench_connect(c->port, NULL, BCLIENT_TIMEOUT_S, &e)) < 0) {
        snprintf(c->err, sizeof c->err, "%.200s", e.msg);
        goto fail;
    }
    int V = uhlm_model_config(c->m)->vocab_size;
    uhlm_wire_hello h = {1, uhlm_model_tokenizer(c->m) ? uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(c->m)) : 0, (uint32_t)V,
                         {NULL, 0}, uhlm_wire_cstr("bench")};
    if (uhlm_wire_encode_hello(&b, &h, &e) != 0 || bench_send_frame(fd, &b) != 0 ||
        bench_recv_frame(fd, pay, 1u << 16, &m, BCLIENT_TIMEOUT_S) != UHLM_WIRE_WELCOME) {
        snprintf(c->err, sizeof c->err, "HELLO refused");
        goto fail;
    }
    int n_ctx = (int)m.u.welcome.n_ctx;
    uhlm_rng rng;
    uhlm_rng_seed(&rng, c->seed);
    if (c->ctx_max + c->catchup + 1 > n_ctx) {
        snprintf(c->err, sizeof c->err, "context %d plus a step does not fit the server's %d",
                 c->ctx_max, n_ctx);
        goto fail;
    }
    uint32_t pos = 0, rid = 0;
    while (!atomic_load(c->stop)) {
        /* the first session starts at ctx_start; later ones at ctx_min, when the last step
         * would pass ctx_max, so every device cycles through the same range of contexts */
        if (!opened || (int)pos + c->catchup + 1 > c->ctx_max) {
            const int plen = opened ? c->ctx_min : c->ctx_start;
            prompt[0] = UHLM_TOKEN_BOS;
            for (int i = 1; i < plen; i++)
                prompt[i] = 3 + (int)(uhlm_rng_u64(&rng) % (uint64_t)(V - 3));
            uhlm_wire_open o = {UHLM_WIRE_MODE_VERIFY, c->temp, 0, 1.0f, c->seed,
                                {prompt, NULL, (uint32_t)plen}};
            if (uhlm_wire_encode_open(&b, &o, NULL, &e) != 0 || bench_send_frame(fd, &b) != 0 ||
                bench_recv_frame(fd, pay, 1u << 16, &m, BCLIENT_TIMEOUT_S) != UHLM_WIRE_OPENED) {
                snprintf(c->err, sizeof c->err, "OPEN refused");
                goto fail;
            }
            pos = m.u.opened.n_past;
            if (!opened) atomic_fetch_add(c->ready, 1);
            opened = 1;
        }
        for (int i = 0; i < c->catchup; i++) cu[i] = 3 + (int)(uhlm_rng_u64(&rng) % (uint64_t)(V - 3));
        uhlm_wire_verify q;
        memset(&q, 0, sizeof q);
        q.request_id = ++rid;
        q.pos = pos;
        q.catchup = (uhlm_wire_tokens){cu, NULL, (uint32_t)c->catchup};
        q.draw_seed = c->seed;
        if (c->temp == 0.0f) {
            q.flags = UHLM_WIRE_VF_GREEDY;
            q.draft = (uint32_t)(uhlm_rng_u64(&rng) % (uint64_t)V);
        } else {
            q.draft = (uint32_t)uhlm_sample(c->xt, V, &rng);
            q.kind = (uint8_t)c->enc.kind;
            q.prob_bits = (uint8_t)c->enc.prob_bits;
            q.k = (uint32_t)c->enc.k;
            q.x = (uhlm_wire_bytes){c->x, (uint32_t)c->x_len};
        }
        double t0 = uhlm_now();
        if (uhlm_wire_encode_verify(&b, &q, NULL, &e) != 0 || bench_send_frame(fd, &b) != 0 ||
            bench_recv_frame(fd, pay, 1u << 16, &m, BCLIENT_TIMEOUT_S) != UHLM_WIRE_VERDICT) {
            snprintf(c->err, sizeof c->err, "VERIFY failed");
            goto fail;
        }
        c->lat_sum += uhlm_now() - t0;
        __atomic_fetch_add(&c->n_verify, 1, __ATOMIC_RELAXED);
        c->n_accept += m.u.verdict.accepted;
        pos = m.u.verdict.n_past;
    }
    uhlm_wire_encode_empty(&b, UHLM_WIRE_CLOSE, &e);
    if (bench_send_frame(fd, &b) == 0) bench_recv_frame(fd, pay, 1u << 16, &m, BCLIENT_TIMEOUT_S);
    goto done;
fail:
    c->failed = 1;
    if (!opened) atomic_fetch_add(c->ready, 1);
done:
    if (fd >= 0) close(fd);
    uhlm_wire_buf_free(&b);
    free(pay);
    free(cu);
    free(prompt);
    return NULL;
}

/* What every (devices, batching) point of one run shares. */
typedef struct {
    const bench_serve_params *p;
    long ctx_max; /* p->ctx_max, or the default for the model */
    uhlm_model *m;
    uhlm_payload_spec enc;
    const uint8_t *xb; /* encoded x̃ */
    size_t xl;
    const float *xt; /* decoded x̃ */
    bclient *cl;     /* one per device, for the largest count */
    pthread_t *th;
    double base_rate[2]; /* one device's rate, without and with batching */
    bench_report rep;
} serve_run;

/* A Zipf-like x over the vocabulary, encoded once; drafts are drawn from its x̃. */
static int make_payload(const uhlm_payload_spec *enc, int V, float *x, uint8_t *xb, size_t xl,
                        float *xt, uhlm_error *err) {
    double sum = 0;
    for (int i = 0; i < V; i++) sum += x[i] = 1.0f / (float)(1 + (i * 7919) % V);
    for (int i = 0; i < V; i++) x[i] = (float)(x[i] / sum);
    if (uhlm_payload_encode(enc, x, V, xb, xl, err) < 0 ||
        uhlm_payload_decode(enc, xb, xl, V, xt, err) != 0)
        return -1;
    return 0;
}

/* The figures of one (devices, batching) point. */
typedef struct {
    int nd, batching, failed;
    double seconds, rate;
    uint64_t n_verify, n_accept;
    double lat_sum;
    uhlm_server_counters c;
} serve_point;

static void report_point(serve_run *r, const serve_point *pt) {
    const bench_serve_params *p = r->p;
    const double rate = pt->rate;
    const int batching = pt->batching;
    const uint64_t nv = pt->n_verify, na = pt->n_accept;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", "serve");
    cJSON_AddNumberToObject(o, "devices", pt->nd);
    cJSON_AddBoolToObject(o, "batching", batching);
    cJSON_AddNumberToObject(o, "batch_window_us", (double)p->window);
    cJSON_AddNumberToObject(o, "server_threads", (double)p->threads);
    cJSON_AddStringToObject(o, "payload", p->payload);
    cJSON_AddNumberToObject(o, "catchup", (double)p->catchup);
    cJSON_AddNumberToObject(o, "ctx_min", (double)p->ctx_min);
    cJSON_AddNumberToObject(o, "ctx_max", (double)r->ctx_max);
    cJSON_AddNumberToObject(o, "seconds", pt->seconds);
    cJSON_AddNumberToObject(o, "verifications_per_s", rate);
    cJSON_AddNumberToObject(o, "speedup_vs_1_device", r->base_rate[batching] > 0 ? rate / r->base_rate[batching] : 0);
    cJSON_AddNumberToObject(o, "verifications_total", (double)nv);
    cJSON_AddNumberToObject(o, "llm_forward_calls", (double)pt->c.forward_calls);
    cJSON_AddNumberToObject(o, "verifications_per_forward",
                            pt->c.forward_calls ? (double)pt->c.batched_requests / (double)pt->c.forward_calls : 0);
    cJSON_AddNumberToObject(o, "acceptance_rate", nv ? (double)na / (double)nv : 0);
    cJSON_AddNumberToObject(o, "mean_latency_ms", nv ? 1e3 * pt->lat_sum / (double)nv : 0);
    cJSON_AddNumberToObject(o, "failed_devices", pt->failed);
    bench_report_add(&r->rep, o);
}

/* Starts nd device threads against the server on port; returns how many started. */
static int start_devices(serve_run *r, int nd, int port, atomic_int *stop, atomic_int *ready) {
    const bench_serve_params *p = r->p;
    const long ctx_min = p->ctx_min, ctx_max = r->ctx_max;
    int started = 0;
    for (int i = 0; i < nd; i++) {
        /* device i starts in the middle of its 1/nd of the range: the same mean
         * context for any number of devices, however short the run */
        const int start =
            (int)(ctx_min + (2 * (long)i + 1) * (ctx_max - ctx_min) / (2 * (long)nd));
        r->cl[i] = (bclient){port, r->m, r->xb, r->xl, r->xt, r->enc, (float)p->temp,
                             (int)p->catchup, start, (int)ctx_min, (int)ctx_max, stop,
                             ready, 1000 + (uint64_t)i, 0, 0, 0, 0, {0}};
        if (pthread_create(&r->th[i], NULL, bclient_main, &r->cl[i]) != 0) break;
        started++;
    }
    return started;
}

/* One (devices, batching) point: a server, nd devices, the timed window, the report.
 * 0 when it ran clean, 1 when it ran with failures, -1 when the server did not start. */
static int run_point(serve_run *r, int nd, int batching, uhlm_error *err) {
    const bench_serve_params *p = r->p;
    uhlm_server_params sp = uhlm_server_default_params();
    sp.max_sessions = nd;
    sp.batching = batching;
    sp.batch_window_us = (int)p->window;
    sp.n_threads = (int)p->threads;
    bench_server sr = {0};
    sr.s = uhlm_server_new(r->m, &sp, err);
    if (!sr.s) {
        fprintf(stderr, "uhlm bench serve: %s\n", err->msg);
        return -1;
    }
    if (bench_server_start(&sr) != 0) {
        uhlm_server_free(sr.s);
        return -1;
    }
    atomic_int stop, ready;
    atomic_init(&stop, 0);
    atomic_init(&ready, 0);
    const int started = start_devices(r, nd, uhlm_server_port(sr.s), &stop, &ready);
    /* warm-up excluded: the devices' first sessions (a prefill each) open, then the
     * count starts from a snapshot taken after a short settling time */
    fprintf(stderr, "uhlm bench serve: %d device%s, batching %s: opening sessions...\n",
            nd, nd == 1 ? "" : "s", batching ? "on" : "off");
    while (atomic_load(&ready) < started) usleep(10 * 1000);
    usleep(200 * 1000);
    serve_point pt = {nd, batching, 0, 0, 0, 0, 0, 0, {0}};
    uint64_t v0 = 0;
    for (int i = 0; i < started; i++) v0 += __atomic_load_n(&r->cl[i].n_verify, __ATOMIC_RELAXED);
    double t0 = uhlm_now();
    usleep((useconds_t)(p->seconds * 1e6));
    uint64_t v1 = 0;
    for (int i = 0; i < started; i++) v1 += __atomic_load_n(&r->cl[i].n_verify, __ATOMIC_RELAXED);
    pt.seconds = uhlm_now() - t0;
    atomic_store(&stop, 1);
    for (int i = 0; i < started; i++) pthread_join(r->th[i], NULL);
    bench_server_stop(&sr);
    uhlm_server_get_counters(sr.s, &pt.c);
    for (int i = 0; i < started; i++) {
        pt.n_verify += r->cl[i].n_verify;
        pt.n_accept += r->cl[i].n_accept;
        pt.lat_sum += r->cl[i].lat_sum;
        if (r->cl[i].failed) {
            pt.failed++;
            fprintf(stderr, "uhlm bench serve: device %d: %s\n", i, r->cl[i].err);
        }
    }
    pt.rate = (double)(v1 - v0) / pt.seconds;
    /* "one device's rate": the 1-device run (or, without one, the first run per device) */
    if (nd == 1 || r->base_rate[batching] == 0) r->base_rate[batching] = pt.rate / nd;
    report_point(r, &pt);
    uhlm_server_free(sr.s);
    return pt.failed || started < nd || sr.rc != 0 ? 1 : 0;
}

int bench_serve(const bench_serve_params *p) {
    serve_run r;
    memset(&r, 0, sizeof r);
    r.p = p;
    const long catchup = p->catchup, ctx_min = p->ctx_min;
    const int *counts = p->devices, nc = p->n_devices;
    uhlm_error err = {{0}};
    if (uhlm_payload_parse(p->payload, &r.enc, &err) != 0) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        return 2;
    }
    uhlm_model *m = r.m = uhlm_model_load(p->model, p->tokenizer, &err);
    if (!m) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        return 1;
    }
    bench_report_init(&r.rep, "serve", p->format);
    int V = uhlm_model_config(m)->vocab_size, rc = 0;
    r.ctx_max = p->ctx_max < 0 ? bench_default_ctx_max(uhlm_model_config(m)->seq_len) : p->ctx_max;
    if (ctx_min > r.ctx_max || r.ctx_max + catchup + 1 > uhlm_model_config(m)->seq_len) {
        fprintf(stderr,
                "uhlm bench serve: need ctx-min <= ctx-max and ctx-max + catchup + 1 <= the "
                "model's context %d (got %ld, %ld, %ld)\n",
                uhlm_model_config(m)->seq_len, ctx_min, r.ctx_max, catchup);
        uhlm_model_free(m);
        return 2;
    }
    if (uhlm_payload_check(&r.enc, V, &err) != 0) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        uhlm_model_free(m);
        return 2;
    }
    float *x = malloc(sizeof(float) * (size_t)V), *xt = malloc(sizeof(float) * (size_t)V);
    size_t xl = uhlm_payload_bytes(&r.enc, V);
    uint8_t *xb = malloc(xl);
    int max_dev = 1;
    for (int i = 0; i < nc; i++) max_dev = counts[i] > max_dev ? counts[i] : max_dev;
    r.cl = calloc((size_t)max_dev, sizeof *r.cl);
    r.th = calloc((size_t)max_dev, sizeof *r.th);
    r.xb = xb, r.xl = xl, r.xt = xt;
    if (!x || !xt || !xb || !r.cl || !r.th) {
        fprintf(stderr, "uhlm bench serve: out of memory\n");
        rc = 1;
        goto out;
    }
    if (make_payload(&r.enc, V, x, xb, xl, xt, &err) != 0) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    for (int batching = 1; batching >= (p->compare ? 0 : 1); batching--)
        for (int ci = 0; ci < nc; ci++) {
            const int prc = run_point(&r, counts[ci], batching, &err);
            if (prc != 0) rc = 1;
            if (prc < 0) goto out;
        }
out:
    if (bench_report_end(&r.rep) != 0) rc = 1;
    free(x);
    free(xt);
    free(xb);
    free(r.cl);
    free(r.th);
    uhlm_model_free(m);
    return rc;
}
