/* metrics.h: the server's counters as /metrics-style text (Prometheus exposition format 0.0.4)
 * and the HTTP endpoint that serves it on --stats-port (internal, not API; server.h
 * documents what a reader sees).
 *
 * The text is rendered from a view the server fills at one instant, so this module knows
 * nothing of the server's tables: sizing a buffer and filling it from the same view give the
 * same text. */
#ifndef UHLM_NET_METRICS_H
#define UHLM_NET_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"
#include "net/server_internal.h"
#include "uhlm/server.h"

#define LAT_RING 4096     /* latency samples kept for the percentiles */
#define N_HIST 8          /* batch-size buckets: 1, 2, 4, ..., 64, +Inf */
#define HTTP_MAX_REQ 4096 /* a stats reader's request, headers included */

typedef struct uhlm_metrics_view {
    uhlm_server_counters c;
    double uptime_s;
    int pending_conns, max_sessions;
    uint64_t batch_tokens;
    const uint64_t *hist;        /* [N_HIST] forwards by batch size */
    const double *lat;           /* [LAT_RING] request latencies, a ring */
    uint64_t n_lat;              /* latencies recorded in all */
    const uint64_t *err_by_code; /* [UHLM_WIRE_E_MAX + 1] ERROR frames sent */
    int stopping;                /* a stop was requested: /health answers 503 from then on */
} uhlm_metrics_view;

/* The text into buf (at most cap bytes with its NUL; none when cap is 0); its whole length. */
size_t uhlm_metrics_text(const uhlm_metrics_view *v, char *buf, size_t cap);

/* Reads a stats reader's request into c->pay (the end of its headers, or HTTP_MAX_REQ bytes,
 * is all that is waited for: a body is never read). 1 when it is whole, 0 when more
 * is to come, -1 when the reader is gone or memory ran out (*why says which). */
int uhlm_http_read_request(conn *c, const char **why);

/* The HTTP/1.0 response to the request in c->pay, queued in c->out: GET /metrics, the text of
 * v (200); GET /health, 200 "ok" while the server accepts sessions, 503 "stopping" once a stop
 * was requested (a server answers nothing before its model is loaded, so the model's state
 * needs no flag); another path 404, another method 405, a request line that does not parse
 * 400. 0, or -1 out of memory. */
int uhlm_http_respond(conn *c, const uhlm_metrics_view *v);

#endif
