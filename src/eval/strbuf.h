/* strbuf.h (internal to src/eval): a growable text buffer for the report writers. Appends
 * after an allocation failure are dropped and remembered in oom, so a writer checks once at
 * the end instead of after every line. */
#ifndef UHLM_EVAL_STRBUF_H
#define UHLM_EVAL_STRBUF_H

#include <stddef.h>

#include "uhlm/common.h"

typedef struct ebuf {
    char *s;
    size_t len, cap;
    int oom;
} ebuf;
void eb_printf(ebuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void eb_free(ebuf *b);
/* Writes a CSV field, quoted when needed. */
void eb_csv_str(ebuf *b, const char *s);

/* Puts "PREFIX: " (printf-formatted) before the message already in err; -1. */
int eval_error_wrap(uhlm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
