/* log.h: log lines of net/ (internal, not API): the server's structured events and the remote
 * verifier's notices, one formatter for both, plus the server's per-kind rate limits.
 *
 * A sink is the caller's uhlm_log_fn (common.h) and its user pointer; every line reaches it
 * whole, without a newline. The server's sink stamps each line (`ts=SECONDS.MILLIS ` first,
 * part of its documented line format); the remote verifier's lines are bare. A sink without
 * a function drops every line. uhlm_log_file (common.h) is the callback that writes to a FILE. */
#ifndef UHLM_NET_LOG_H
#define UHLM_NET_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "uhlm/common.h"

typedef struct uhlm_log_sink {
    uhlm_log_fn fn; /* NULL: silent */
    void *user;
    int stamp;      /* 1: each line starts with `ts=SECONDS.MILLIS ` (wall clock) */
} uhlm_log_sink;

/* One line from fmt; `suppressed` > 0 appends ` suppressed=N`, how many lines of its kind a
 * rate limit left out before it. */
void uhlm_log_vprintf(const uhlm_log_sink *k, uint64_t suppressed, const char *fmt, va_list ap);
void uhlm_log_printf(const uhlm_log_sink *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* 1 when the sink writes anywhere, so callers can skip building a line nobody reads. */
int uhlm_log_enabled(const uhlm_log_sink *k);

/* A token bucket in its simplest form: UHLM_LOG_BURST lines per UHLM_LOG_WINDOW_S seconds,
 * the rest counted. Zero-initialised is ready. */
#define UHLM_LOG_BURST 5
#define UHLM_LOG_WINDOW_S 1.0
typedef struct uhlm_lograte {
    double t0;
    int n;
    uint64_t suppressed; /* since the last line of this kind that was written */
} uhlm_lograte;

/* 1 when a line of this kind may be written at `now`; otherwise counts it as suppressed. */
int uhlm_lograte_allow(uhlm_lograte *r, double now);

/* Untrusted text (client names, error details) as a log value: at most cap-1 bytes, every
 * byte that is not printable ASCII, a space, a quote or '=' replaced by '_'. */
void uhlm_log_safe(char *dst, size_t cap, const char *src, size_t n);

#endif
