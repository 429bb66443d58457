/* log.c: log lines of net/ (log.h). */
#include "net/log.h"

#include <string.h>
#include <time.h>

int uhlm_log_enabled(const uhlm_log_sink *k) { return k->fn != NULL; }

void uhlm_log_vprintf(const uhlm_log_sink *k, uint64_t suppressed, const char *fmt, va_list ap) {
    if (!uhlm_log_enabled(k)) return;
    char line[1024];
    int n = 0;
    if (k->stamp) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        n = snprintf(line, sizeof line, "ts=%lld.%03ld ", (long long)ts.tv_sec,
                     ts.tv_nsec / 1000000);
    }
    if (n >= 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = strlen(line);
    if (suppressed && len + 40 < sizeof line)
        len += (size_t)snprintf(line + len, sizeof line - len, " suppressed=%llu",
                                (unsigned long long)suppressed);
    k->fn(k->user, line);
}

void uhlm_log_file(void *file, const char *msg) {
    if (!file) return;
    char line[1100];
    size_t len = strlen(msg);
    if (len + 2 > sizeof line) len = sizeof line - 2; /* longer than any line log.c makes */
    memcpy(line, msg, len);
    line[len] = '\n';
    line[len + 1] = 0;
    /* one fputs per line so that lines from several processes sharing stderr stay whole */
    fputs(line, (FILE *)file);
    fflush((FILE *)file);
}

void uhlm_log_printf(const uhlm_log_sink *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    uhlm_log_vprintf(k, 0, fmt, ap);
    va_end(ap);
}

int uhlm_lograte_allow(uhlm_lograte *r, double now) {
    if (now - r->t0 >= UHLM_LOG_WINDOW_S) {
        r->t0 = now;
        r->n = 0;
    }
    if (r->n < UHLM_LOG_BURST) {
        r->n++;
        return 1;
    }
    r->suppressed++;
    return 0;
}

void uhlm_log_safe(char *dst, size_t cap, const char *src, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[j++] = (ch > 32 && ch < 127 && ch != '"' && ch != '=') ? (char)ch : '_';
    }
    dst[j] = 0;
}
