/* bench_soak.c: `uhlm bench soak`, honest devices' throughput while attackers hit the server.
 *
 * Two runs of the same length against a fresh `uhlm serve` (in this process, loopback, the
 * server's default admission settings): honest devices alone (the attack-free baseline),
 * then the same devices with an attacker mix that starts first, so the honest devices have
 * to get in under attack:
 *   - idle: connections that never send a byte, reconnected as soon as the server drops them;
 *   - pipeliners: connections that say HELLO, then send OPENs with long prompts 32 at a time
 *     without waiting for the replies;
 *   - garbage: connections that say HELLO, then stream invalid frames (unknown types) as
 *     fast as the server answers, plus connections that send non-protocol bytes.
 * Each honest device is a thread with its own connection and address (127.0.1.x; attackers
 * use 127.0.2.x), speaking the protocol in lock-step like `bench serve`: OPEN, VERIFY after
 * VERIFY, re-opening when its context is full. A VERIFY that does not end in a VERDICT (an
 * error, a lost connection, a refused connection, no reply within --read-timeout) is a token
 * the device would have had to keep unverified; the device then reconnects.
 *
 * One JSON object on stdout: verifications/s of the honest devices in each run, their
 * ratio (target >= 0.9), the honest devices' unverified tokens (target 0), what the
 * attackers got, the server's admission counters and how much it logged. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_net.h"
#include "bench.h"
#include "net/server_internal.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"
#include "uhlm/server.h"
#include "uhlm/tokenizer.h"
#include "uhlm/wire.h"

#define SOAK_PAY (1 << 16)
#define PIPE_DEPTH 32
#define SOAK_CONNECT_S 30.0 /* a connect that takes longer fails (the device retries) */
#define WARMUP_MAX_S 30.0

typedef struct soak {
    int port, V, n_ctx_max, ctx_min, ctx_max;
    uint64_t fp;
    double read_timeout;
    atomic_int stop;
    atomic_int opened; /* honest devices past their first OPEN */
} soak;

/* A loopback connection from source address 127.0.net.host. */
static int soak_connect(const soak *k, int net, int host) {
    char src[32];
    snprintf(src, sizeof src, "127.0.%d.%d", net, 1 + host % 250);
    return bench_connect(k->port, src, SOAK_CONNECT_S, NULL);
}

static int soak_hello(const soak *k, int fd, uint8_t *pay, uhlm_wire_msg *m) {
    uhlm_wire_buf b = {0};
    uhlm_error e;
    uhlm_wire_hello h = {1, k->fp, (uint32_t)k->V, {NULL, 0}, uhlm_wire_cstr("soak")};
    int ok = uhlm_wire_encode_hello(&b, &h, &e) == 0 && bench_send_frame(fd, &b) == 0 &&
             bench_recv_frame(fd, pay, SOAK_PAY, m, k->read_timeout) == UHLM_WIRE_WELCOME;
    uhlm_wire_buf_free(&b);
    return ok ? 0 : -1;
}

static void random_prompt(int *prompt, int n, int V, uhlm_rng *rng) {
    prompt[0] = UHLM_TOKEN_BOS;
    for (int i = 1; i < n; i++) prompt[i] = 3 + (int)(uhlm_rng_u64(rng) % (uint64_t)(V - 3));
}

/* ------------------------------------------------------------------ honest devices */

typedef struct honest {
    soak *k;
    int idx, ctx_start;
    uint64_t n_verify; /* atomic: read by the main thread while running */
    uint64_t unverified, reconnects;
} honest;

/* One connection's life: HELLO, then OPEN/VERIFY until stop (0) or a failure (-1). */
static int honest_session(honest *d, int fd, uint8_t *pay, int *prompt, uhlm_rng *rng, int *first) {
    soak *k = d->k;
    uhlm_wire_buf b = {0};
    uhlm_wire_msg m;
    uhlm_error e;
    int rc = -1;
    uint32_t pos = 0, rid = 0;
    int opened = 0;
    if (soak_hello(k, fd, pay, &m) != 0) goto out;
    while (!atomic_load(&k->stop)) {
        if (!opened || (int)pos + 1 > k->ctx_max) {
            int plen = *first ? d->ctx_start : k->ctx_min;
            random_prompt(prompt, plen, k->V, rng);
            uhlm_wire_open o = {UHLM_WIRE_MODE_VERIFY, 0.0f, 0, 1.0f, 1, {prompt, NULL, (uint32_t)plen}};
            if (uhlm_wire_encode_open(&b, &o, NULL, &e) != 0 || bench_send_frame(fd, &b) != 0 ||
                bench_recv_frame(fd, pay, SOAK_PAY, &m, k->read_timeout) != UHLM_WIRE_OPENED)
                goto out;
            pos = m.u.opened.n_past;
            opened = 1;
            if (*first) atomic_fetch_add(&k->opened, 1);
            *first = 0;
        }
        uhlm_wire_verify q;
        memset(&q, 0, sizeof q);
        q.request_id = ++rid;
        q.flags = UHLM_WIRE_VF_GREEDY;
        q.pos = pos;
        q.draft = (uint32_t)(uhlm_rng_u64(rng) % (uint64_t)k->V);
        if (uhlm_wire_encode_verify(&b, &q, NULL, &e) != 0 || bench_send_frame(fd, &b) != 0 ||
            bench_recv_frame(fd, pay, SOAK_PAY, &m, k->read_timeout) != UHLM_WIRE_VERDICT)
            goto out;
        __atomic_fetch_add(&d->n_verify, 1, __ATOMIC_RELAXED);
        pos = m.u.verdict.n_past;
    }
    rc = 0;
out:
    uhlm_wire_buf_free(&b);
    return rc;
}

static void *honest_main(void *arg) {
    honest *d = arg;
    soak *k = d->k;
    uint8_t *pay = malloc(SOAK_PAY);
    int *prompt = malloc(sizeof(int) * (size_t)k->ctx_max);
    uhlm_rng rng;
    uhlm_rng_seed(&rng, 1000 + (uint64_t)d->idx);
    int first = 1;
    while (pay && prompt && !atomic_load(&k->stop)) {
        int fd = soak_connect(k, 1, d->idx);
        int r = fd >= 0 ? honest_session(d, fd, pay, prompt, &rng, &first) : -1;
        if (fd >= 0) close(fd);
        if (r == 0 || atomic_load(&k->stop)) break;
        /* the step in flight (or the next one) ends unverified; a device retries with backoff */
        d->unverified++;
        d->reconnects++;
        usleep(50 * 1000);
    }
    free(pay);
    free(prompt);
    return NULL;
}

/* ------------------------------------------------------------------ attackers */

typedef struct attack {
    soak *k;
    int idx, n_idle;
    uint64_t done; /* idle: reconnects; pipeliner: OPENED received; garbage: ERRORs received */
} attack;

/* n_idle connections that send nothing; whatever the server does to one, it comes back. */
static void *idle_main(void *arg) {
    attack *a = arg;
    struct pollfd *p = calloc((size_t)a->n_idle, sizeof *p);
    if (!p) return NULL;
    for (int i = 0; i < a->n_idle; i++) p[i] = (struct pollfd){soak_connect(a->k, 2, i % 8), POLLIN, 0};
    while (!atomic_load(&a->k->stop)) {
        if (poll(p, (nfds_t)a->n_idle, 100) < 0 && errno != EINTR) break;
        for (int i = 0; i < a->n_idle; i++) {
            if (p[i].fd >= 0 && !p[i].revents) continue;
            if (p[i].fd >= 0) close(p[i].fd);
            p[i].fd = soak_connect(a->k, 2, i % 8);
            p[i].revents = 0;
            a->done++;
            if (p[i].fd < 0) usleep(1000);
        }
    }
    for (int i = 0; i < a->n_idle; i++)
        if (p[i].fd >= 0) close(p[i].fd);
    free(p);
    return NULL;
}

/* HELLO, then OPENs of long random prompts PIPE_DEPTH at a time, replies read afterwards. */
static void *pipeliner_main(void *arg) {
    attack *a = arg;
    soak *k = a->k;
    uint8_t *pay = malloc(SOAK_PAY);
    int plen = k->ctx_max;
    int *prompt = malloc(sizeof(int) * (size_t)plen);
    uhlm_rng rng;
    uhlm_rng_seed(&rng, 77 + (uint64_t)a->idx);
    uhlm_wire_buf b = {0};
    uhlm_wire_msg m;
    uhlm_error e;
    while (pay && prompt && !atomic_load(&k->stop)) {
        int fd = soak_connect(k, 2, 100 + a->idx);
        if (fd < 0 || soak_hello(k, fd, pay, &m) != 0) {
            if (fd >= 0) close(fd);
            usleep(10 * 1000);
            continue;
        }
        while (!atomic_load(&k->stop)) {
            for (int i = 0; i < PIPE_DEPTH; i++) {
                random_prompt(prompt, plen, k->V, &rng);
                uhlm_wire_open o = {UHLM_WIRE_MODE_VERIFY, 0.0f, 0, 1.0f, 1, {prompt, NULL, (uint32_t)plen}};
                uhlm_wire_encode_open(&b, &o, NULL, &e);
            }
            if (bench_send_frame(fd, &b) != 0) break;
            int i = 0, t = 0;
            for (; i < PIPE_DEPTH &&
                   (t = bench_recv_frame(fd, pay, SOAK_PAY, &m, k->read_timeout)) >= 0;
                 i++)
                a->done += t == UHLM_WIRE_OPENED;
            if (i < PIPE_DEPTH) break;
        }
        b.len = 0;
        close(fd);
    }
    uhlm_wire_buf_free(&b);
    free(pay);
    free(prompt);
    return NULL;
}

/* HELLO, then frames of an unknown type, 256 at a time; every other round, a connection
 * that sends non-protocol bytes (ERROR BAD_MAGIC, closed). */
static void *garbage_main(void *arg) {
    attack *a = arg;
    soak *k = a->k;
    uint8_t *pay = malloc(SOAK_PAY);
    uint8_t frames[256 * UHLM_WIRE_HEADER_SIZE];
    uhlm_wire_msg m;
    for (int i = 0; i < 256; i++) uhlm_wire_header_write(frames + i * UHLM_WIRE_HEADER_SIZE, 99, 0);
    while (pay && !atomic_load(&k->stop)) {
        int junk = soak_connect(k, 2, 150 + a->idx);
        if (junk >= 0) {
            const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            if (send(junk, get, strlen(get), MSG_NOSIGNAL) > 0)
                bench_recv_frame(junk, pay, SOAK_PAY, &m, k->read_timeout);
            close(junk);
        }
        int fd = soak_connect(k, 2, 200 + a->idx);
        if (fd < 0 || soak_hello(k, fd, pay, &m) != 0) {
            if (fd >= 0) close(fd);
            usleep(10 * 1000);
            continue;
        }
        for (int round = 0; round < 64 && !atomic_load(&k->stop); round++) {
            uhlm_wire_buf b = {frames, sizeof frames, sizeof frames};
            if (bench_send_frame(fd, &b) != 0) break;
            int i = 0;
            for (; i < 256 &&
                   bench_recv_frame(fd, pay, SOAK_PAY, &m, k->read_timeout) == UHLM_WIRE_ERROR;
                 i++)
                a->done++;
            if (i < 256) break;
        }
        close(fd);
    }
    free(pay);
    return NULL;
}

/* ------------------------------------------------------------------ one run */

typedef struct run_result {
    double rate, seconds;
    uint64_t verifications, unverified, reconnects;
    uint64_t idle_reconnects, opens_answered, garbage_answered;
    long log_bytes;
    uhlm_server_counters c;
    int ok;
} run_result;

typedef struct soak_cfg {
    const uhlm_model *m;
    int devices, idle, pipeliners, garbage, threads;
    double seconds, read_timeout;
    const char *log; /* the attack run's server log goes here (NULL: a temporary file) */
} soak_cfg;

static int soak_run(const soak_cfg *cfg, int attacked, run_result *out) {
    memset(out, 0, sizeof *out);
    FILE *log = attacked && cfg->log ? fopen(cfg->log, "w+") : tmpfile();
    uhlm_server_params sp = uhlm_server_default_params();
    /* a session for every honest device and every pipelining attacker: sessions are not
     * what this measures (with auth off anyone may take one) */
    sp.max_sessions = cfg->devices + (attacked ? cfg->pipeliners : 0);
    sp.n_threads = cfg->threads;
    sp.log = log ? uhlm_log_file : NULL;
    sp.log_user = log;
    uhlm_error err;
    bench_server st = {0};
    st.s = uhlm_server_new(cfg->m, &sp, &err);
    if (!st.s || !log) {
        fprintf(stderr, "uhlm bench soak: %s\n", st.s ? "no temporary file for the log" : err.msg);
        uhlm_server_free(st.s);
        if (log) fclose(log);
        return -1;
    }
    soak k;
    memset(&k, 0, sizeof k);
    k.port = uhlm_server_port(st.s);
    k.V = uhlm_model_config(cfg->m)->vocab_size;
    k.fp = uhlm_model_tokenizer(cfg->m) ? uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(cfg->m)) : 0;
    k.ctx_min = 8;
    k.ctx_max = bench_default_ctx_max(uhlm_model_config(cfg->m)->seq_len);
    k.read_timeout = cfg->read_timeout;
    atomic_init(&k.stop, 0);
    atomic_init(&k.opened, 0);
    if (bench_server_start(&st) != 0) {
        uhlm_server_free(st.s);
        fclose(log);
        return -1;
    }
    int na = attacked ? 1 + cfg->pipeliners + cfg->garbage : 0;
    attack *at = calloc((size_t)na + 1, sizeof *at);
    honest *hd = calloc((size_t)cfg->devices, sizeof *hd);
    pthread_t *ath = calloc((size_t)na + 1, sizeof *ath), *hth = calloc((size_t)cfg->devices, sizeof *hth);
    int n_at = 0, n_hd = 0;
    if (at && hd && ath && hth) {
        /* attackers first: the honest devices have to get in under attack */
        for (int i = 0; i < na; i++) {
            at[i] = (attack){&k, i, cfg->idle, 0};
            void *(*fn)(void *) = i == 0 ? idle_main : i <= cfg->pipeliners ? pipeliner_main : garbage_main;
            if (pthread_create(&ath[i], NULL, fn, &at[i]) != 0) break;
            n_at++;
        }
        if (attacked) usleep(300 * 1000);
        for (int i = 0; i < cfg->devices; i++) {
            hd[i] = (honest){&k, i,
                             (int)(k.ctx_min + (2L * i + 1) * (k.ctx_max - k.ctx_min) / (2L * cfg->devices)),
                             0, 0, 0};
            if (pthread_create(&hth[i], NULL, honest_main, &hd[i]) != 0) break;
            n_hd++;
        }
    }
    /* warm-up: every device's first OPEN (at most WARMUP_MAX_S: a device kept out by the
     * attack must not hide that), a moment to settle, then the measured interval */
    for (double t = uhlm_now(); atomic_load(&k.opened) < n_hd && uhlm_now() - t < WARMUP_MAX_S;)
        usleep(10 * 1000);
    usleep(300 * 1000);
    uint64_t v0 = 0, v1 = 0;
    for (int i = 0; i < n_hd; i++) v0 += __atomic_load_n(&hd[i].n_verify, __ATOMIC_RELAXED);
    double t0 = uhlm_now();
    usleep((useconds_t)(cfg->seconds * 1e6));
    for (int i = 0; i < n_hd; i++) v1 += __atomic_load_n(&hd[i].n_verify, __ATOMIC_RELAXED);
    out->seconds = uhlm_now() - t0;
    atomic_store(&k.stop, 1);
    for (int i = 0; i < n_hd; i++) pthread_join(hth[i], NULL);
    for (int i = 0; i < n_at; i++) pthread_join(ath[i], NULL);
    bench_server_stop(&st);
    out->verifications = v1 - v0;
    out->rate = (double)(v1 - v0) / out->seconds;
    for (int i = 0; i < n_hd; i++) {
        out->unverified += hd[i].unverified;
        out->reconnects += hd[i].reconnects;
    }
    for (int i = 0; i < n_at; i++) {
        if (i == 0) out->idle_reconnects = at[i].done;
        else if (i <= cfg->pipeliners) out->opens_answered += at[i].done;
        else out->garbage_answered += at[i].done;
    }
    uhlm_server_get_counters(st.s, &out->c);
    out->log_bytes = ftell(log);
    out->ok = st.rc == 0 && n_hd == cfg->devices && n_at == na;
    if (st.rc != 0) fprintf(stderr, "uhlm bench soak: server: %s\n", st.err.msg);
    uhlm_server_free(st.s);
    fclose(log);
    free(at);
    free(hd);
    free(ath);
    free(hth);
    return out->ok ? 0 : -1;
}

static void add_run(cJSON *o, const char *name, const run_result *r) {
    cJSON *x = cJSON_AddObjectToObject(o, name);
    if (!x) return;
    cJSON_AddNumberToObject(x, "seconds", r->seconds);
    cJSON_AddNumberToObject(x, "verifications_per_s", r->rate);
    cJSON_AddNumberToObject(x, "verifications", (double)r->verifications);
    cJSON_AddNumberToObject(x, "unverified_tokens", (double)r->unverified);
    cJSON_AddNumberToObject(x, "device_reconnects", (double)r->reconnects);
    cJSON_AddNumberToObject(x, "idle_reconnects", (double)r->idle_reconnects);
    cJSON_AddNumberToObject(x, "attacker_opens_answered", (double)r->opens_answered);
    cJSON_AddNumberToObject(x, "garbage_frames_answered", (double)r->garbage_answered);
    cJSON_AddNumberToObject(x, "server_forward_calls", (double)r->c.forward_calls);
    cJSON_AddNumberToObject(x, "server_evicted", (double)r->c.evicted);
    cJSON_AddNumberToObject(x, "server_refused", (double)r->c.refused);
    cJSON_AddNumberToObject(x, "server_timeouts", (double)r->c.timeouts);
    cJSON_AddNumberToObject(x, "server_log_bytes", (double)r->log_bytes);
    cJSON_AddNumberToObject(x, "server_log_suppressed", (double)r->c.log_suppressed);
}

int bench_soak(const bench_soak_params *p) {
    const char *mpath = p->model, *log_path = p->log_path;
    const long devices = p->devices, idle = p->idle, pipeliners = p->pipeliners,
               garbage = p->garbage, threads = p->threads;
    const double seconds = p->seconds, read_timeout = p->read_timeout;
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(mpath, p->tokenizer, &err);
    if (!m) {
        fprintf(stderr, "uhlm bench soak: %s\n", err.msg);
        return 1;
    }
    soak_cfg cfg = {m, (int)devices, (int)idle, (int)pipeliners, (int)garbage, (int)threads,
                    seconds, read_timeout, log_path};
    run_result base, att;
    fprintf(stderr, "uhlm bench soak: %ld honest devices alone...\n", devices);
    int rc = soak_run(&cfg, 0, &base);
    fprintf(stderr, "uhlm bench soak: under attack (%ld idle, %ld pipelining, %ld garbage)...\n",
            idle, pipeliners, garbage);
    rc |= soak_run(&cfg, 1, &att);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", "soak");
    cJSON_AddStringToObject(o, "model", mpath);
    cJSON_AddNumberToObject(o, "devices", (double)devices);
    cJSON_AddNumberToObject(o, "idle", (double)idle);
    cJSON_AddNumberToObject(o, "pipeliners", (double)pipeliners);
    cJSON_AddNumberToObject(o, "garbage", (double)garbage);
    cJSON_AddNumberToObject(o, "server_threads", (double)threads);
    cJSON_AddNumberToObject(o, "throughput_ratio", base.rate > 0 ? att.rate / base.rate : 0);
    cJSON_AddNumberToObject(o, "honest_unverified_tokens", (double)att.unverified);
    add_run(o, "baseline", &base);
    add_run(o, "attack", &att);
    bench_report rep;
    bench_report_init(&rep, "soak", p->format);
    bench_report_add(&rep, o);
    if (bench_report_end(&rep) != 0) rc = 1;
    uhlm_model_free(m);
    return rc ? 1 : 0;
}
