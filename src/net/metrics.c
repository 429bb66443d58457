/* metrics.c: the server's /metrics text and its HTTP endpoint (metrics.h). */
#include "net/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/wire.h"

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

/* The batch-size histogram and the latency summary. */
static void distributions(sbuf *b, const uhlm_metrics_view *v) {
    sb_printf(b, "# HELP uhlm_server_batch_size Requests per forward.\n# TYPE uhlm_server_batch_size histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < N_HIST; i++) {
        cum += v->hist[i];
        if (i < N_HIST - 1) sb_printf(b, "uhlm_server_batch_size_bucket{le=\"%d\"} %llu\n", 1 << i, (unsigned long long)cum);
        else sb_printf(b, "uhlm_server_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    sb_printf(b, "uhlm_server_batch_size_sum %llu\nuhlm_server_batch_size_count %llu\n",
              (unsigned long long)v->c.batched_requests, (unsigned long long)v->c.forward_calls);
    size_t nl = v->n_lat < LAT_RING ? (size_t)v->n_lat : LAT_RING;
    sb_printf(b, "# HELP uhlm_server_request_latency_seconds VERIFY/GENERATE from arrival to reply, last %d requests.\n"
                 "# TYPE uhlm_server_request_latency_seconds summary\n", LAT_RING);
    double *tmp = nl ? malloc(nl * sizeof(double)) : NULL;
    if (tmp) {
        memcpy(tmp, v->lat, nl * sizeof(double));
        qsort(tmp, nl, sizeof(double), cmp_double);
        const double qs[] = {0.5, 0.9, 0.99};
        for (int i = 0; i < 3; i++) {
            size_t k = (size_t)(qs[i] * (double)(nl - 1) + 0.5);
            sb_printf(b, "uhlm_server_request_latency_seconds{quantile=\"%g\"} %.9g\n", qs[i], tmp[k]);
        }
        free(tmp);
    }
    sb_printf(b, "uhlm_server_request_latency_seconds_count %llu\n", (unsigned long long)v->n_lat);
}

size_t uhlm_metrics_text(const uhlm_metrics_view *v, char *buf, size_t cap) {
    sbuf b = {buf, cap, 0};
    if (cap) buf[0] = 0;
    const uhlm_server_counters *c = &v->c;
    metric(&b, "uptime_seconds", "gauge", "Seconds since the server started.", v->uptime_s);
    metric(&b, "connections_open", "gauge", "Device connections open now.", c->open_conns);
    metric(&b, "connections_total", "counter", "Device connections accepted.", (double)c->connections);
    metric(&b, "connections_pending", "gauge", "Device connections that have not finished HELLO.",
           v->pending_conns);
    metric(&b, "connections_evicted_total", "counter",
           "Connections dropped to make room for newer ones (admission control).", (double)c->evicted);
    metric(&b, "connections_refused_total", "counter",
           "Connections refused: server full at HELLO, or too many from one address.", (double)c->refused);
    metric(&b, "connections_timed_out_total", "counter",
           "Connections closed by the handshake, idle or request timeout.", (double)c->timeouts);
    metric(&b, "log_lines_suppressed_total", "counter", "Log lines left out by the rate limits.",
           (double)c->log_suppressed);
    metric(&b, "sessions_open", "gauge", "Sessions (KV-cache sequences) in use.", c->open_sessions);
    metric(&b, "sessions_max", "gauge", "Sessions the server holds at once.", v->max_sessions);
    metric(&b, "sessions_total", "counter", "Sessions opened.", (double)c->sessions_opened);
    metric(&b, "verifications_total", "counter", "VERIFY requests answered with a VERDICT.", (double)c->verifications);
    metric(&b, "accepted_total", "counter", "Drafts accepted.", (double)c->accepted);
    metric(&b, "acceptance_rate", "gauge", "accepted_total / verifications_total (0 when none).",
           c->verifications ? (double)c->accepted / (double)c->verifications : 0.0);
    metric(&b, "generated_tokens_total", "counter", "Tokens produced for GENERATE.", (double)c->generated_tokens);
    metric(&b, "forward_calls_total", "counter", "Batched LLM forwards (VERIFY/GENERATE and the OPEN prefills batched with them).",
           (double)c->forward_calls);
    metric(&b, "batch_tokens_total", "counter", "Tokens through those forwards.", (double)v->batch_tokens);
    metric(&b, "batch_size_mean", "gauge", "Requests per forward, mean.",
           c->forward_calls ? (double)c->batched_requests / (double)c->forward_calls : 0.0);
    distributions(&b, v);
    sb_printf(&b, "# HELP uhlm_server_errors_total ERROR frames sent, by code.\n# TYPE uhlm_server_errors_total counter\n");
    for (int i = 1; i <= UHLM_WIRE_E_MAX; i++)
        if (v->err_by_code[i])
            sb_printf(&b, "uhlm_server_errors_total{code=\"%s\"} %llu\n", uhlm_wire_code_name((unsigned)i),
                      (unsigned long long)v->err_by_code[i]);
    return b.len;
}

int uhlm_http_read_request(conn *c, const char **why) {
    if (!c->pay && !(c->pay = malloc(HTTP_MAX_REQ))) {
        *why = "out_of_memory";
        return -1;
    }
    c->pay_cap = HTTP_MAX_REQ;
    for (;;) {
        ssize_t r = uhlm_conn_recv(c, c->pay + c->pay_got, c->pay_cap - c->pay_got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (r <= 0) {
            *why = r == 0 ? "eof" : "recv_failed";
            return -1;
        }
        c->pay_got += (size_t)r;
        int done = c->pay_got == c->pay_cap;
        for (size_t i = 3; i < c->pay_got && !done; i++)
            done = !memcmp(c->pay + i - 3, "\r\n\r\n", 4) || !memcmp(c->pay + i - 1, "\n\n", 2);
        if (done) return 1;
    }
}

/* The request line's method and path (the query left off) into m and path; 0, or -1 when the
 * line does not parse or a part does not fit. */
static int request_line(const char *req, size_t n, char *m, size_t mcap, char *path, size_t pcap) {
    size_t i = 0, k = 0;
    while (i < n && req[i] >= 'A' && req[i] <= 'Z' && k + 1 < mcap) m[k++] = req[i++];
    m[k] = 0;
    if (k == 0 || i >= n || req[i++] != ' ') return -1;
    k = 0;
    while (i < n && req[i] != ' ' && req[i] != '?' && req[i] != '\r' && req[i] != '\n' &&
           (unsigned char)req[i] > ' ' && k + 1 < pcap)
        path[k++] = req[i++];
    path[k] = 0;
    if (k == 0 || path[0] != '/' || i >= n) return -1;
    while (i < n && req[i] != ' ' && req[i] != '\r' && req[i] != '\n') i++; /* the query */
    if (i >= n || req[i++] != ' ' || n - i < 8 || memcmp(req + i, "HTTP/1.", 7) != 0) return -1;
    return 0;
}

/* The head and body into c->out; body is NULL when the metrics text of v is the body. */
static int respond(conn *c, int status, const char *reason, const char *extra, const char *ctype,
                   const char *body, const uhlm_metrics_view *v) {
    size_t tl = body ? strlen(body) : uhlm_metrics_text(v, NULL, 0);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.0 %d %s\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      status, reason, ctype, extra, tl);
    uhlm_error e;
    if (hl < 0 || (size_t)hl >= sizeof head ||
        uhlm_wire_buf_reserve(&c->out, (size_t)hl + tl + 1, &e) != 0)
        return -1;
    memcpy(c->out.data, head, (size_t)hl);
    if (body) memcpy(c->out.data + hl, body, tl);
    else uhlm_metrics_text(v, (char *)c->out.data + hl, tl + 1);
    c->out.len = (size_t)hl + tl;
    return 0;
}

int uhlm_http_respond(conn *c, const uhlm_metrics_view *v) {
    static const char plain[] = "text/plain; charset=utf-8";
    char m[16], path[64];
    if (request_line((const char *)c->pay, c->pay_got, m, sizeof m, path, sizeof path) != 0)
        return respond(c, 400, "Bad Request", "", plain, "bad request\n", NULL);
    if (strcmp(m, "GET") != 0)
        return respond(c, 405, "Method Not Allowed", "Allow: GET\r\n", plain,
                       "method not allowed\n", NULL);
    if (!strcmp(path, "/metrics"))
        return respond(c, 200, "OK", "", "text/plain; version=0.0.4", NULL, v);
    if (!strcmp(path, "/health"))
        return v->stopping
                   ? respond(c, 503, "Service Unavailable", "", plain, "stopping\n", NULL)
                   : respond(c, 200, "OK", "", plain, "ok\n", NULL);
    return respond(c, 404, "Not Found", "", plain, "not found: try /metrics or /health\n",
                   NULL);
}
