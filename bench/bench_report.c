/* bench_report.c: one JSON document or JSON Lines for every bench (see bench.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

void bench_report_init(bench_report *r, const char *name, bench_format format) {
    r->name = name;
    r->format = format;
    r->results = NULL;
    r->failed = 0;
}

/* One line on stdout, flushed so a reader sees each result as it is measured. */
static int print_line(const char *name, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    if (!s) {
        fprintf(stderr, "uhlm bench %s: out of memory\n", name);
        return -1;
    }
    int ok = puts(s) >= 0 && fflush(stdout) == 0;
    cJSON_free(s);
    if (!ok) fprintf(stderr, "uhlm bench %s: error writing the output\n", name);
    return ok ? 0 : -1;
}

void bench_report_add(bench_report *r, cJSON *o) {
    if (r->format == BENCH_JSON && o) {
        if (!r->results && !(r->results = cJSON_CreateArray())) {
            r->failed = 1;
            cJSON_Delete(o);
            return;
        }
        cJSON_AddItemToArray(r->results, o);
        return;
    }
    if (!o || print_line(r->name, o) != 0) r->failed = 1;
    cJSON_Delete(o);
}

int bench_report_end(bench_report *r) {
    if (r->format == BENCH_JSON) {
        cJSON *doc = cJSON_CreateObject(), *res = r->results ? r->results : cJSON_CreateArray();
        r->results = NULL;
        if (doc && res && cJSON_AddStringToObject(doc, "bench", r->name)) {
            cJSON_AddItemToObject(doc, "results", res);
            res = NULL;
            if (print_line(r->name, doc) != 0) r->failed = 1;
        } else {
            fprintf(stderr, "uhlm bench %s: out of memory\n", r->name);
            r->failed = 1;
        }
        cJSON_Delete(res);
        cJSON_Delete(doc);
    }
    return r->failed ? -1 : 0;
}
