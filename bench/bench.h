/* bench.h: the benchmarks behind `uhlm bench` and its subcommands.
 *
 * Each bench takes its parameters already parsed (the CLI's option table does that, in
 * src/cli/cmd_bench.c, the only includer of this header) and model paths already resolved;
 * bench/ itself uses only the library's headers. Each returns the exit status (0 ok, 1 a
 * failed run, 2 a parameter the model rules out) after writing its results to stdout in the
 * format asked for and its progress and errors to stderr. */
#ifndef UHLM_BENCH_H
#define UHLM_BENCH_H

#include <stdint.h>

#include "model/kernels/quant.h"

typedef struct cJSON cJSON;

/* How results are printed: a table (bench only), one JSON document, or JSON Lines (one
 * object per line, each printed as soon as it is measured). */
typedef enum bench_format { BENCH_TABLE, BENCH_JSON, BENCH_JSONL } bench_format;

/* The results of one bench. With BENCH_JSON they are kept and printed at the end as one
 * document {"bench": NAME, "results": [...]}; with BENCH_JSONL each is printed at once. */
typedef struct bench_report {
    const char *name; /* "decode", "serve", ... */
    bench_format format;
    cJSON *results; /* BENCH_JSON: the results so far */
    int failed;     /* a result could not be printed (out of memory) */
} bench_report;
void bench_report_init(bench_report *r, const char *name, bench_format format);
/* Takes o (which may be NULL after a failed allocation: then the report is marked failed). */
void bench_report_add(bench_report *r, cJSON *o);
/* Prints the document for BENCH_JSON and frees what is kept; -1 if any result was lost. */
int bench_report_end(bench_report *r);

/* The longest context `bench serve` and `bench batch` give a session by default: a device's
 * session is a short prompt and up to a few hundred tokens, so 256, or 90% of the model's
 * context when that is less. */
static inline int bench_default_ctx_max(int seq_len) {
    return seq_len * 9 / 10 < 256 ? seq_len * 9 / 10 : 256;
}

/* `uhlm bench`: prompt and decode speed against the memory-bandwidth bound (bench.c). */
typedef struct bench_decode_params {
    const char *const *models; /* resolved paths */
    int n_models;
    long threads, n_prompt, n_gen, reps;
    uhlm_simd simd;
    bench_format format;
    uhlm_load_mode load;
} bench_decode_params;
int bench_decode(const bench_decode_params *p);

/* `uhlm bench gemv`: a model's one-token matrix products alone, 1 and N threads alternating,
 * against a plain read of the same weights (bench_gemv.c). */
typedef struct bench_gemv_params {
    const char *const *models; /* resolved paths */
    int n_models;
    long threads, reps;
    uhlm_simd simd;
    bench_format format;
    uhlm_load_mode load;
} bench_gemv_params;
int bench_gemv(const bench_gemv_params *p);

/* `uhlm bench uncertainty`: each uncertainty method's cost next to one SLM forward. */
typedef struct bench_uncertainty_params {
    const char *model, *tokenizer; /* resolved; tokenizer may be NULL */
    long samples, reps, threads;
    uhlm_simd simd;
    bench_format format; /* JSON or JSONL */
} bench_uncertainty_params;
int bench_uncertainty(const bench_uncertainty_params *p);

/* `uhlm bench serve`: server verifications/s against concurrent devices (bench_serve.c). */
typedef struct bench_serve_params {
    const char *model, *tokenizer; /* resolved */
    const int *devices;            /* device counts of the runs */
    int n_devices;
    const char *payload; /* as given: f32, f16, topk:K[:B] */
    double seconds, temp;
    long window, threads, catchup, ctx_min, ctx_max; /* ctx_max < 0: bench_default_ctx_max */
    int compare;                                     /* also the runs without batching */
    bench_format format;
} bench_serve_params;
int bench_serve(const bench_serve_params *p);

/* `uhlm bench batch`: one forward over S sequences against S forwards (bench_batch.c). */
typedef struct bench_batch_params {
    const char *model, *tokenizer; /* resolved; tokenizer may be NULL */
    const int *seqs;
    int n_seqs;
    long threads, ctx_min, ctx_max, rounds; /* ctx_max < 0: bench_default_ctx_max */
    uhlm_simd simd;
    bench_format format;
} bench_batch_params;
int bench_batch(const bench_batch_params *p);

/* `uhlm bench soak`: honest devices' throughput with and without attackers (bench_soak.c). */
typedef struct bench_soak_params {
    const char *model, *tokenizer; /* resolved */
    long devices, idle, pipeliners, garbage, threads;
    double seconds, read_timeout;
    const char *log_path; /* NULL: no log kept */
    bench_format format;
} bench_soak_params;
int bench_soak(const bench_soak_params *p);

#endif
