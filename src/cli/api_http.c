/* api_http.c: see api_http.h. libmicrohttpd runs a thread per connection, so a handler may
 * block while it waits for the model or generates, and a streamed answer is a response whose
 * content callback makes the next event (one token at a time) when MHD asks for more. */
#include "cli/api_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

typedef struct api_server {
    const api_backend *b;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy;      /* a request holds the model */
    int waiting;   /* requests waiting for it */
    int active;    /* requests not yet answered to the end (for the drain at shutdown) */
    int max_queue;
    uint64_t serial; /* response ids */
    atomic_int stopping;
} api_server;

/* What a generation polls before each token: the listener stopping, or its client gone. */
typedef struct watch {
    api_server *s;
    int fd;
} watch;

static int watch_cancel(void *user) {
    const watch *w = user;
    if (atomic_load(&w->s->stopping)) return API_CANCEL_SHUTDOWN;
    struct pollfd p = {.fd = w->fd, .events = POLLRDHUP};
    /* a peer that closed shows as RDHUP/HUP at once; no data is read */
    if (w->fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
        return API_CANCEL_GONE;
    return API_GO;
}

typedef enum { R_NONE, R_HEALTH, R_MODELS, R_CHAT, R_COMPLETIONS } route;

/* One request on a connection (MHD's con_cls). */
typedef struct conn_req {
    route rt;
    int post;      /* the route takes POST (else GET) */
    int too_large; /* the body passed API_MAX_BODY: dropped, answered 413 */
    char *body;
    size_t len;
    watch w;
} conn_req;

typedef struct stream_ctx {
    api_server *s;
    api_gen *g;
    watch w;
    const char *url;
    const char *data;
    size_t len, off;
} stream_ctx;

static route find_route(const char *url, int *post) {
    *post = 1;
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions")) return R_CHAT;
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions")) return R_COMPLETIONS;
    *post = 0;
    if (!strcmp(url, "/health")) return R_HEALTH;
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/models")) return R_MODELS;
    return R_NONE;
}

/* Queues json (malloc'd, taken) with status. NULL json: out of memory, a plain 500. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, char *json,
                                 const char *allow) {
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                              "\"param\":null,\"code\":null}}";
    struct MHD_Response *r =
        json ? MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                               MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(json);
        return MHD_NO;
    }
    if (!json) status = 500;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *type,
                                  const char *code, const char *allow, const char *msg) {
    return send_json(c, status, api_error_json(type, NULL, code, "%s", msg), allow);
}

static const char busy_why[] = "the model is busy and the queue is full; retry later";
static const char stopping_why[] = "the server is shutting down";

/* Waits for the model. 0: held; 503 with *why (busy_why or stopping_why); -1: the client left
 * while waiting. */
static int acquire(api_server *s, const watch *w, const char **why, uint64_t *serial) {
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->stopping)) {
        *why = stopping_why;
        rc = 503;
    } else if (s->busy && s->waiting >= s->max_queue) {
        *why = busy_why;
        rc = 503;
    }
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    s->waiting++;
    while (s->busy && !atomic_load(&s->stopping)) {
        /* wakes now and then to drop a waiter whose client has gone */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (s->busy && watch_cancel((void *)w) == API_CANCEL_GONE) {
            rc = -1;
            break;
        }
    }
    s->waiting--;
    if (rc == 0 && atomic_load(&s->stopping)) {
        *why = stopping_why;
        rc = 503;
    }
    if (rc == 0) {
        s->busy = 1;
        *serial = ++s->serial;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void release(api_server *s) {
    pthread_mutex_lock(&s->mu);
    s->busy = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream_ctx *sc = cls;
    if (sc->off == sc->len) {
        int r = api_gen_stream_next(sc->g, &sc->data, &sc->len);
        sc->off = 0;
        if (r == 0) return MHD_CONTENT_READER_END_OF_STREAM;
        if (r < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = sc->len - sc->off < max ? sc->len - sc->off : max;
    memcpy(out, sc->data + sc->off, n);
    sc->off += n;
    return (ssize_t)n;
}

/* The response is done with (sent, or its client gone): the model is free again. */
static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    char d[128];
    api_gen_describe(sc->g, d, sizeof d);
    fprintf(stderr, "uhlm run: POST %s (stream): %s\n", sc->url, d);
    api_gen_free(sc->g);
    release(sc->s);
    free(sc);
}

static enum MHD_Result generate(api_server *s, struct MHD_Connection *c, conn_req *q) {
    const api_backend *b = s->b;
    int status;
    char *ej;
    api_kind kind = q->rt == R_CHAT ? API_CHAT : API_COMPLETIONS;
    api_request *r = api_request_parse(b, kind, q->body ? q->body : "", q->len, &status, &ej);
    if (!r) return send_json(c, (unsigned)status, ej, NULL);
    int stream = api_request_stream(r);
    stream_ctx *sc = NULL;
    if (stream && !(sc = calloc(1, sizeof *sc))) {
        api_request_free(r);
        return send_json(c, 500, NULL, NULL);
    }
    watch *w = sc ? &sc->w : &q->w;
    *w = q->w;
    const char *why = NULL;
    uint64_t serial = 0;
    int rc = acquire(s, w, &why, &serial);
    if (rc != 0) {
        api_request_free(r);
        free(sc);
        if (rc < 0) return MHD_NO;
        return send_error(c, 503, "server_error",
                          why == busy_why ? "server_busy" : "shutting_down", NULL, why);
    }
    api_gen *g = api_gen_new(b, r, watch_cancel, w, serial, &status, &ej);
    if (g && stream && api_gen_prime(g, &status, &ej) != 0) {
        api_gen_free(g);
        g = NULL;
    }
    if (!g) {
        release(s);
        free(sc);
        return ej || status ? send_json(c, (unsigned)status, ej, NULL) : MHD_NO;
    }
    if (!stream) {
        char *json = api_gen_run(g, &status);
        char d[128];
        api_gen_describe(g, d, sizeof d);
        fprintf(stderr, "uhlm run: POST %s: %d, %s\n", kind == API_CHAT ? "/v1/chat/completions"
                                                                       : "/v1/completions",
                status, d);
        api_gen_free(g);
        release(s);
        return json || status ? send_json(c, (unsigned)status, json, NULL) : MHD_NO;
    }
    sc->s = s;
    sc->g = g;
    sc->url = kind == API_CHAT ? "/v1/chat/completions" : "/v1/completions";
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, sc,
                                          stream_free);
    if (!resp) {
        stream_free(sc);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    /* from here the response owns sc: stream_free runs when MHD is done with it */
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result get_route(api_server *s, struct MHD_Connection *c, route rt) {
    if (rt == R_HEALTH) {
        int stopping = atomic_load(&s->stopping);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", stopping ? "shutting down" : "ok");
        cJSON_AddStringToObject(o, "model", s->b->model_name);
        char *j = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return send_json(c, stopping ? 503 : 200, j, NULL);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON *m = cJSON_CreateObject();
    if (m && cJSON_AddItemToArray(data, m)) {
        cJSON_AddStringToObject(m, "id", s->b->model_name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "uhlm");
    }
    char *j = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return send_json(c, 200, j, NULL);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
    (void)version;
    api_server *s = cls;
    conn_req *q = *con_cls;
    if (!q) {
        if (!(q = calloc(1, sizeof *q))) return MHD_NO;
        *con_cls = q;
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);
        q->rt = find_route(url, &q->post);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        q->w = (watch){s, ci ? ci->connect_fd : -1};
        /* refused before the body is read (a client that sent Expect: 100-continue never
         * sends it) */
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > API_MAX_BODY) {
            q->too_large = 1;
            return send_error(c, 413, "invalid_request_error", "request_too_large", NULL,
                              "the request body is over the limit of 1 MiB");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!q->too_large && q->len + *upload_size > API_MAX_BODY) {
            q->too_large = 1;
            free(q->body);
            q->body = NULL;
            q->len = 0;
        }
        if (!q->too_large) {
            char *nb = realloc(q->body, q->len + *upload_size + 1);
            if (!nb) return MHD_NO;
            q->body = nb;
            memcpy(q->body + q->len, upload, *upload_size);
            q->len += *upload_size;
            q->body[q->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->too_large)
        return send_error(c, 413, "invalid_request_error", "request_too_large", NULL,
                          "the request body is over the limit of 1 MiB");
    if (q->rt == R_NONE) {
        char msg[300];
        snprintf(msg, sizeof msg, "no route %.200s (POST /v1/chat/completions, POST "
                                  "/v1/completions, GET /v1/models, GET /health)", url);
        return send_error(c, 404, "invalid_request_error", "not_found", NULL, msg);
    }
    int is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
    int is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    if (q->post ? !is_post : !is_get) {
        char msg[300];
        snprintf(msg, sizeof msg, "%.200s takes %s, not %.20s", url, q->post ? "POST" : "GET",
                 method);
        return send_error(c, 405, "invalid_request_error", "method_not_allowed",
                          q->post ? "POST" : "GET, HEAD", msg);
    }
    if (!q->post) return get_route(s, c, q->rt);
    return generate(s, c, q);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    api_server *s = cls;
    (void)c;
    (void)toe;
    conn_req *q = *con_cls;
    if (!q) return;
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(q->body);
    free(q);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = '\0';
    fprintf(stderr, "uhlm run: http: %s\n", line);
}

static void listener_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGPIPE);
}

void api_block_signals(void) {
    sigset_t set;
    listener_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* "[HOST:]PORT" or "[V6ADDR]:PORT" into host and port; -1 after the message. */
static int parse_listen(const char *a, char *host, size_t hcap, char *port, size_t pcap) {
    const char *colon = strrchr(a, ':');
    const char *p = colon ? colon + 1 : a;
    size_t hl = colon ? (size_t)(colon - a) : 0;
    const char *h = a;
    if (hl >= 2 && a[0] == '[' && a[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (!*p || *end || errno || v < 0 || v > 65535 || hl >= hcap || strlen(p) >= pcap) {
        fprintf(stderr,
                "uhlm run: invalid value for --listen: '%s' (expected [HOST:]PORT with PORT in "
                "[0, 65535])\n",
                a);
        return -1;
    }
    if (colon && hl == 0) {
        snprintf(host, hcap, "127.0.0.1");
    } else if (colon) {
        memcpy(host, h, hl);
        host[hl] = '\0';
    } else {
        snprintf(host, hcap, "127.0.0.1");
    }
    snprintf(port, pcap, "%ld", v);
    return 0;
}

static int write_port_file(const char *path, unsigned port) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return -1;
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int bad = fprintf(f, "%u\n", port) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

int api_serve(const api_backend *b, const char *listen, const char *port_file, int max_queue) {
    char host[256], port[16];
    if (parse_listen(listen, host, sizeof host, port, sizeof port) != 0) return 2;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "uhlm run: --listen %s: cannot resolve '%s': %s\n", listen, host,
                gai_strerror(gai));
        return 1;
    }
    api_server s = {.b = b, .max_queue = max_queue};
    atomic_init(&s.stopping, 0);
    if (pthread_mutex_init(&s.mu, NULL) != 0) {
        freeaddrinfo(ai);
        fprintf(stderr, "uhlm run: cannot create a mutex\n");
        return 1;
    }
    if (pthread_cond_init(&s.cv, NULL) != 0) {
        pthread_mutex_destroy(&s.mu);
        freeaddrinfo(ai);
        fprintf(stderr, "uhlm run: cannot create a condition variable\n");
        return 1;
    }
    /* the signals are taken by sigwait below, never by a handler: every thread started from
     * here (MHD's) inherits this mask, and api_block_signals did the same for the threads
     * started before (the models' pools), so no global flag is needed */
    sigset_t set;
    listener_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC; /* ITC: for MHD_quiesce_daemon */
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)atoi(port), NULL, NULL, handle, &s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, so MHD prints nothing itself */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, &s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(max_queue + 16),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    int rc = 0;
    if (!d) {
        fprintf(stderr, "uhlm run: --listen %s: cannot listen on %s port %s: %s\n", listen, host,
                port, strerror(errno));
        rc = 1;
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = di ? di->port : (unsigned)atoi(port);
    if (port_file && write_port_file(port_file, bound) != 0) {
        fprintf(stderr, "uhlm run: --port-file %s: cannot write it: %s\n", port_file,
                strerror(errno));
        rc = 1;
    } else {
        int loopback = !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") ||
                       !strcmp(host, "localhost");
        if (!loopback)
            fprintf(stderr, "uhlm run: warning: --listen %s: the API has no authentication; "
                            "whoever reaches this address can use the model\n", listen);
        fprintf(stderr,
                "uhlm run: serving the OpenAI API on http://%s%s%s:%u (POST "
                "/v1/chat/completions, /v1/completions; GET /v1/models, /health); model %s\n",
                strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", bound,
                b->model_name);
        int sig = 0;
        while (sigwait(&set, &sig) == 0 && sig == SIGPIPE) {
        }
        fprintf(stderr, "uhlm run: %s: stopping the listener\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    /* no new connections; waiting requests answer 503 and a generating one stops before its
     * next token (a stream ends with an error event and [DONE]). Those answers go out before
     * MHD_stop_daemon closes every connection, unless they take over 10 s. */
    MHD_socket lsock = MHD_quiesce_daemon(d);
    pthread_mutex_lock(&s.mu);
    atomic_store(&s.stopping, 1);
    pthread_cond_broadcast(&s.cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (s.active > 0 && pthread_cond_timedwait(&s.cv, &s.mu, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&s.mu);
    MHD_stop_daemon(d);
    if (lsock != MHD_INVALID_SOCKET) close(lsock);
out:
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return rc;
}
