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

int bench_serve(const bench_serve_params *p) {
    const char *payload = p->payload;
    const double seconds = p->seconds, temp = p->temp;
    const long window = p->window, threads = p->threads, catchup = p->catchup,
               ctx_min = p->ctx_min;
    long ctx_max = p->ctx_max;
    const int compare = p->compare, *counts = p->devices, nc = p->n_devices;
    uhlm_payload_spec enc;
    uhlm_error err = {{0}};
    if (uhlm_payload_parse(payload, &enc, &err) != 0) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        return 2;
    }
    uhlm_model *m = uhlm_model_load(p->model, p->tokenizer, &err);
    if (!m) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        return 1;
    }
    bench_report rep;
    bench_report_init(&rep, "serve", p->format);
    int V = uhlm_model_config(m)->vocab_size, rc = 0;
    if (ctx_max < 0) ctx_max = bench_default_ctx_max(uhlm_model_config(m)->seq_len);
    if (ctx_min > ctx_max || ctx_max + catchup + 1 > uhlm_model_config(m)->seq_len) {
        fprintf(stderr,
                "uhlm bench serve: need ctx-min <= ctx-max and ctx-max + catchup + 1 <= the "
                "model's context %d (got %ld, %ld, %ld)\n",
                uhlm_model_config(m)->seq_len, ctx_min, ctx_max, catchup);
        uhlm_model_free(m);
        return 2;
    }
    if (uhlm_payload_check(&enc, V, &err) != 0) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        uhlm_model_free(m);
        return 2;
    }
    /* a Zipf-like x over the vocabulary, encoded once; drafts are drawn from its x̃ */
    float *x = malloc(sizeof(float) * (size_t)V), *xt = malloc(sizeof(float) * (size_t)V);
    size_t xl = uhlm_payload_bytes(&enc, V);
    uint8_t *xb = malloc(xl);
    int max_dev = 1;
    for (int i = 0; i < nc; i++) max_dev = counts[i] > max_dev ? counts[i] : max_dev;
    bclient *cl = calloc((size_t)max_dev, sizeof *cl);
    pthread_t *th = calloc((size_t)max_dev, sizeof *th);
    if (!x || !xt || !xb || !cl || !th) {
        fprintf(stderr, "uhlm bench serve: out of memory\n");
        rc = 1;
        goto out;
    }
    double sum = 0;
    for (int i = 0; i < V; i++) sum += x[i] = 1.0f / (float)(1 + (i * 7919) % V);
    for (int i = 0; i < V; i++) x[i] = (float)(x[i] / sum);
    if (uhlm_payload_encode(&enc, x, V, xb, xl, &err) < 0 ||
        uhlm_payload_decode(&enc, xb, xl, V, xt, &err) != 0) {
        fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    double base_rate[2] = {0, 0};
    for (int batching = 1; batching >= (compare ? 0 : 1); batching--) {
        for (int ci = 0; ci < nc; ci++) {
            int nd = counts[ci];
            uhlm_server_params sp = uhlm_server_default_params();
            sp.max_sessions = nd;
            sp.batching = batching;
            sp.batch_window_us = (int)window;
            sp.n_threads = (int)threads;
            bench_server sr = {0};
            sr.s = uhlm_server_new(m, &sp, &err);
            if (!sr.s) {
                fprintf(stderr, "uhlm bench serve: %s\n", err.msg);
                rc = 1;
                goto out;
            }
            if (bench_server_start(&sr) != 0) {
                uhlm_server_free(sr.s);
                rc = 1;
                goto out;
            }
            atomic_int stop, ready;
            atomic_init(&stop, 0);
            atomic_init(&ready, 0);
            int started = 0;
            for (int i = 0; i < nd; i++) {
                /* device i starts in the middle of its 1/nd of the range: the same mean
                 * context for any number of devices, however short the run */
                const int start =
                    (int)(ctx_min + (2 * (long)i + 1) * (ctx_max - ctx_min) / (2 * (long)nd));
                cl[i] = (bclient){uhlm_server_port(sr.s), m, xb, xl, xt, enc, (float)temp,
                                  (int)catchup, start, (int)ctx_min, (int)ctx_max, &stop,
                                  &ready, 1000 + (uint64_t)i, 0, 0, 0, 0, {0}};
                if (pthread_create(&th[i], NULL, bclient_main, &cl[i]) != 0) break;
                started++;
            }
            /* warm-up excluded: the devices' first sessions (a prefill each) open, then the
             * count starts from a snapshot taken after a short settling time */
            fprintf(stderr, "uhlm bench serve: %d device%s, batching %s: opening sessions...\n",
                    nd, nd == 1 ? "" : "s", batching ? "on" : "off");
            while (atomic_load(&ready) < started) usleep(10 * 1000);
            usleep(200 * 1000);
            uhlm_server_counters c1;
            uint64_t v0 = 0;
            for (int i = 0; i < started; i++) v0 += __atomic_load_n(&cl[i].n_verify, __ATOMIC_RELAXED);
            double t0 = uhlm_now();
            usleep((useconds_t)(seconds * 1e6));
            uint64_t v1 = 0;
            for (int i = 0; i < started; i++) v1 += __atomic_load_n(&cl[i].n_verify, __ATOMIC_RELAXED);
            double dt = uhlm_now() - t0;
            atomic_store(&stop, 1);
            for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
            bench_server_stop(&sr);
            uhlm_server_get_counters(sr.s, &c1);
            uint64_t nv = 0, na = 0;
            double lat = 0;
            int failed = 0;
            for (int i = 0; i < started; i++) {
                nv += cl[i].n_verify;
                na += cl[i].n_accept;
                lat += cl[i].lat_sum;
                if (cl[i].failed) {
                    failed++;
                    fprintf(stderr, "uhlm bench serve: device %d: %s\n", i, cl[i].err);
                }
            }
            double rate = (double)(v1 - v0) / dt;
            /* "one device's rate": the 1-device run (or, without one, the first run per device) */
            if (nd == 1 || base_rate[batching] == 0) base_rate[batching] = rate / nd;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "bench", "serve");
            cJSON_AddNumberToObject(o, "devices", nd);
            cJSON_AddBoolToObject(o, "batching", batching);
            cJSON_AddNumberToObject(o, "batch_window_us", (double)window);
            cJSON_AddNumberToObject(o, "server_threads", (double)threads);
            cJSON_AddStringToObject(o, "payload", payload);
            cJSON_AddNumberToObject(o, "catchup", (double)catchup);
            cJSON_AddNumberToObject(o, "ctx_min", (double)ctx_min);
            cJSON_AddNumberToObject(o, "ctx_max", (double)ctx_max);
            cJSON_AddNumberToObject(o, "seconds", dt);
            cJSON_AddNumberToObject(o, "verifications_per_s", rate);
            cJSON_AddNumberToObject(o, "speedup_vs_1_device", base_rate[batching] > 0 ? rate / base_rate[batching] : 0);
            cJSON_AddNumberToObject(o, "verifications_total", (double)nv);
            cJSON_AddNumberToObject(o, "llm_forward_calls", (double)c1.forward_calls);
            cJSON_AddNumberToObject(o, "verifications_per_forward",
                                    c1.forward_calls ? (double)c1.batched_requests / (double)c1.forward_calls : 0);
            cJSON_AddNumberToObject(o, "acceptance_rate", nv ? (double)na / (double)nv : 0);
            cJSON_AddNumberToObject(o, "mean_latency_ms", nv ? 1e3 * lat / (double)nv : 0);
            cJSON_AddNumberToObject(o, "failed_devices", failed);
            bench_report_add(&rep, o);
            uhlm_server_free(sr.s);
            if (failed || started < nd || sr.rc != 0) rc = 1;
        }
    }
out:
    if (bench_report_end(&rep) != 0) rc = 1;
    free(x);
    free(xt);
    free(xb);
    free(cl);
    free(th);
    uhlm_model_free(m);
    return rc;
}
