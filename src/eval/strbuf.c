/* strbuf.c: see strbuf.h. */
#include "eval/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eb_printf(ebuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && (size_t)k < room) {
            b->len += (size_t)k;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + (size_t)k + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

void eb_free(ebuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

void eb_csv_str(ebuf *b, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        eb_printf(b, "%s", s);
        return;
    }
    eb_printf(b, "\"");
    for (const char *p = s; *p; p++) eb_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    eb_printf(b, "\"");
}

int eval_error_wrap(uhlm_error *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    uhlm_error inner = *err;
    return uhlm_set_error(err, "%s: %s", prefix, inner.msg);
}
