/* bench_gemv.c: `uhlm bench gemv`, the one-token matrix kernels alone on a model's own weights.
 *
 * A decode step is the matmuls plus attention, norms, RoPE and SwiGLU; `uhlm bench` times the
 * whole step. This times only the step's matrix products, exactly as the forward pass calls
 * them (query/key/value together, wo, gate/up together, down, per layer, then the classifier)
 * with one activation row, so that
 *   - the kernels' rate can be compared with a plain read of the same bytes, measured in the
 *     same process on the same threads (the "bound" a one-token kernel can reach);
 *   - 1 and N threads alternate within one run and one set of pages, so their ratio is taken
 *     under the same load (this machine is shared; absolute figures move between runs);
 *   - the difference to the full step shows what the rest of the step costs.
 * It also checks that the outputs of 1 and N threads are bit-identical (they must be: each
 * output element is one thread's, in a fixed order), and fails when they are not. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

typedef struct {
    const uhlm_model *m;
    uhlm_simd simd;
    float *x, *y, *scratch_raw;
    void *scratch;
    float *ys[4];
} gemv_state;

/* One decode step's matrix products; returns the weight bytes they read. */
static double step_matmuls(gemv_state *s, uhlm_pool *pool) {
    const uhlm_model *m = s->m;
    double bytes = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_out[3] = {s->ys[0], s->ys[1], s->ys[2]};
        uhlm_matmul_multi(s->simd, pool, qkv, qkv_out, 3, s->x, 1, s->scratch);
        uhlm_matmul(s->simd, pool, &L->wo, s->x, 1, s->ys[3], s->scratch);
        const uhlm_tensor *up[2] = {&L->w1, &L->w3};
        float *const up_out[2] = {s->ys[0], s->ys[1]};
        uhlm_matmul_multi(s->simd, pool, up, up_out, 2, s->x, 1, s->scratch);
        /* the down projection's input is hidden wide: the start of x, which is that wide */
        uhlm_matmul(s->simd, pool, &L->w2, s->x, 1, s->ys[2], s->scratch);
        bytes += (double)(uhlm_tensor_nbytes(&L->wq) + uhlm_tensor_nbytes(&L->wk) +
                          uhlm_tensor_nbytes(&L->wv) + uhlm_tensor_nbytes(&L->wo) +
                          uhlm_tensor_nbytes(&L->w1) + uhlm_tensor_nbytes(&L->w2) +
                          uhlm_tensor_nbytes(&L->w3));
    }
    uhlm_matmul(s->simd, pool, &m->w.output, s->x, 1, s->y, s->scratch);
    return bytes + (double)uhlm_tensor_nbytes(&m->w.output);
}

/* A plain read of every weight matrix the step reads, in the same order, on the pool. */
typedef struct {
    const uint64_t *p;
    uint64_t *sinks; /* one per thread, a cache line apart */
} rd_job;

/* 16-byte lanes of the read: SSE2 at least on every x86-64, and GCC's generic vectors
 * elsewhere */
typedef unsigned long long rd_vec __attribute__((vector_size(16)));

static void rd_task(void *arg, int64_t b, int64_t e, int tid) {
    const rd_job *j = arg;
    /* four independent xor chains in registers, one 64-byte line per iteration: integer, so
     * nothing waits on an add latency (an array of accumulators went through the stack) */
    rd_vec a0 = {0, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0};
    for (int64_t i = b; i < e; i++) {
        const unsigned char *p = (const unsigned char *)j->p + (size_t)i * 64;
        rd_vec v0, v1, v2, v3;
        memcpy(&v0, p, 16);
        memcpy(&v1, p + 16, 16);
        memcpy(&v2, p + 32, 16);
        memcpy(&v3, p + 48, 16);
        a0 ^= v0;
        a1 ^= v1;
        a2 ^= v2;
        a3 ^= v3;
    }
    const rd_vec s = a0 ^ a1 ^ a2 ^ a3;
    j->sinks[(size_t)tid * 8] ^= s[0] ^ s[1];
}

static void read_tensor(uhlm_pool *pool, const uhlm_tensor *W, uint64_t *sinks) {
    const size_t n = uhlm_tensor_nbytes(W) / 64; /* whole 64-byte lines; a tail is noise */
    rd_job j = {W->data, sinks};
    uhlm_pool_run(pool, rd_task, &j, (int64_t)n, 1024);
}

static void step_reads(const uhlm_model *m, uhlm_pool *pool, uint64_t *sinks) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w3, &L->w2};
        for (int i = 0; i < 7; i++) read_tensor(pool, ts[i], sinks);
    }
    read_tensor(pool, &m->w.output, sinks);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double best(const double *v, int n) {
    double b = 0;
    for (int i = 0; i < n; i++) b = v[i] > b ? v[i] : b;
    return b;
}

/* CPU seconds of the calling thread: with one thread all the work is there, and time the
 * thread spent descheduled (other processes on a shared machine) does not count */
static double thread_cpu_s(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define GEMV_MAX_REPS 1000

/* Per thread count: steps/s of the matmuls and bytes/s of the plain read, one per rep. */
typedef struct {
    double mm[GEMV_MAX_REPS], rd[GEMV_MAX_REPS];
    double cpu[GEMV_MAX_REPS]; /* 1 thread: steps per CPU second */
} gemv_series;

static int run_model(const bench_gemv_params *p, const char *path, bench_report *rep) {
    uhlm_error err = {{0}};
    uhlm_model_params mp = uhlm_model_default_params();
    mp.load = p->load;
    uhlm_model *m = uhlm_model_load_params(path, NULL, &mp, &err);
    if (!m) {
        fprintf(stderr, "uhlm bench gemv: %s\n", err.msg);
        return 1;
    }
    const uhlm_config *c = &m->cfg;
    uhlm_simd simd = uhlm_simd_resolve(p->simd);
    if (!uhlm_simd_supported(simd)) {
        fprintf(stderr, "uhlm bench gemv: SIMD level %s is not supported by this CPU\n",
                uhlm_simd_name(simd));
        uhlm_model_free(m);
        return 1;
    }
    const int nt = (int)p->threads;
    uhlm_pool *pools[2] = {uhlm_pool_new(1, &err), NULL};
    if (pools[0]) pools[1] = uhlm_pool_new(nt, &err);
    /* the widest vector a product takes or gives: hidden, vocab or dim */
    size_t w = (size_t)c->hidden_dim;
    if ((size_t)c->vocab_size > w) w = (size_t)c->vocab_size;
    if ((size_t)c->dim > w) w = (size_t)c->dim;
    size_t scr = uhlm_matmul_scratch(&m->w.output, 1);
    for (int l = 0; l < c->n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (int i = 0; i < 7; i++) {
            const size_t s = uhlm_matmul_scratch(ts[i], 1);
            scr = s > scr ? s : scr;
        }
    }
    gemv_state s = {m, simd, malloc(w * sizeof(float)), malloc(w * sizeof(float)), NULL, NULL,
                    {NULL}};
    s.scratch = s.scratch_raw = aligned_alloc(64, (scr + 63) / 64 * 64 + 64);
    float *y1 = malloc(w * sizeof(float));
    uint64_t *sinks = calloc((size_t)(nt > 1 ? nt : 1) * 8, sizeof(uint64_t));
    gemv_series *ser = calloc(2, sizeof *ser);
    int ok = pools[0] && pools[1] && s.x && s.y && s.scratch && y1 && sinks && ser;
    for (int i = 0; i < 4 && ok; i++) ok = (s.ys[i] = malloc(w * sizeof(float))) != NULL;
    int rc = 0;
    if (!ok) {
        fprintf(stderr, "uhlm bench gemv: %s\n", pools[0] && pools[1] ? "out of memory" : err.msg);
        rc = 1;
        goto done;
    }
    uhlm_rng rng;
    uhlm_rng_seed(&rng, 7);
    for (size_t i = 0; i < w; i++) s.x[i] = (float)(uhlm_rng_uniform(&rng) * 2.0 - 1.0);
    /* warm-up (page faults of the mapped file) and the identity check of the outputs */
    double wbytes = step_matmuls(&s, pools[0]);
    memcpy(y1, s.y, (size_t)c->vocab_size * sizeof(float));
    step_matmuls(&s, pools[1]);
    const int identical = memcmp(y1, s.y, (size_t)c->vocab_size * sizeof(float)) == 0;
    step_reads(m, pools[0], sinks);
    /* steps per rep: about 0.2 s of work at 1 thread, at least one */
    double t = uhlm_now();
    step_matmuls(&s, pools[0]);
    t = uhlm_now() - t;
    int steps = t > 0 ? (int)(0.2 / t) : 1;
    if (steps < 1) steps = 1;
    if (steps > 1000) steps = 1000;
    const int reps = (int)p->reps;
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 2; k++) {
            /* alternate which thread count goes first, so neither always follows the other */
            const int q = (r % 2) ? 1 - k : k;
            t = uhlm_now();
            const double c0 = thread_cpu_s();
            for (int i = 0; i < steps; i++) step_matmuls(&s, pools[q]);
            ser[q].mm[r] = steps / (uhlm_now() - t);
            ser[q].cpu[r] = steps / (thread_cpu_s() - c0);
            t = uhlm_now();
            for (int i = 0; i < steps; i++) step_reads(m, pools[q], sinks);
            ser[q].rd[r] = steps * wbytes / (uhlm_now() - t);
        }
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    double mm_best[2], mm_med[2], rd_best[2], rd_med[2];
    const double cpu_best = best(ser[0].cpu, reps);
    for (int q = 0; q < 2; q++) {
        mm_best[q] = best(ser[q].mm, reps);
        rd_best[q] = best(ser[q].rd, reps);
        mm_med[q] = median(ser[q].mm, reps);
        rd_med[q] = median(ser[q].rd, reps);
    }
    /* per-rep ratios: the two thread counts of one rep ran seconds apart */
    double ratio[GEMV_MAX_REPS];
    for (int r = 0; r < reps; r++) ratio[r] = ser[1].mm[r] / ser[0].mm[r];
    const double ratio_med = median(ratio, reps), ratio_best = best(ratio, reps);
    for (int q = 0; q < 2; q++) {
        const int threads = q ? nt : 1;
        if (p->format != BENCH_TABLE) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", name);
            cJSON_AddStringToObject(o, "weight_type", uhlm_type_name(m->wtype));
            cJSON_AddStringToObject(o, "simd", uhlm_simd_name(simd));
            cJSON_AddNumberToObject(o, "threads", threads);
            cJSON_AddNumberToObject(o, "reps", reps);
            cJSON_AddNumberToObject(o, "weight_bytes_per_step", wbytes);
            cJSON_AddNumberToObject(o, "matmul_steps_per_s_best", mm_best[q]);
            cJSON_AddNumberToObject(o, "matmul_steps_per_s_median", mm_med[q]);
            cJSON_AddNumberToObject(o, "matmul_bytes_per_s_best", mm_best[q] * wbytes);
            cJSON_AddNumberToObject(o, "read_bytes_per_s_best", rd_best[q]);
            cJSON_AddNumberToObject(o, "read_bytes_per_s_median", rd_med[q]);
            cJSON_AddNumberToObject(o, "fraction_of_read_best", mm_best[q] * wbytes / rd_best[q]);
            cJSON_AddNumberToObject(o, "fraction_of_read_median", mm_med[q] * wbytes / rd_med[q]);
            if (!q) /* the kernels' own rate, free of descheduling */
                cJSON_AddNumberToObject(o, "matmul_steps_per_cpu_s_best", cpu_best);
            if (q) {
                cJSON_AddNumberToObject(o, "speedup_median", ratio_med);
                cJSON_AddNumberToObject(o, "speedup_best", ratio_best);
            }
            cJSON_AddBoolToObject(o, "identical_across_threads", identical);
            bench_report_add(rep, o);
        } else {
            char cpu[32] = "";
            if (!q) snprintf(cpu, sizeof cpu, "%.1f", cpu_best);
            printf("%-24s %-5s %-6s %3d %8.1f %9.1f %9.1f %8.2f %8.2f %6.1f%% %6.1f%% %8s %s\n",
                   name, uhlm_type_name(m->wtype), uhlm_simd_name(simd), threads, wbytes / 1e6,
                   mm_best[q], mm_med[q], mm_best[q] * wbytes / 1e9, rd_best[q] / 1e9,
                   100.0 * mm_best[q] * wbytes / rd_best[q],
                   100.0 * mm_med[q] * wbytes / rd_med[q],
                   cpu, identical ? "yes" : "NO");
            if (q) printf("%-24s speedup %d/1 threads: median %.2f, best %.2f (per-rep ratios)\n",
                          "", nt, ratio_med, ratio_best);
        }
    }
    fflush(stdout);
    if (!identical) {
        fprintf(stderr, "uhlm bench gemv: %s: outputs of 1 and %d threads differ\n", name, nt);
        rc = 1;
    }
done:
    for (int i = 0; i < 4; i++) free(s.ys[i]);
    free(s.x);
    free(s.y);
    free(s.scratch_raw);
    free(y1);
    free(sinks);
    free(ser);
    uhlm_pool_free(pools[0]);
    uhlm_pool_free(pools[1]);
    uhlm_model_free(m);
    return rc;
}

int bench_gemv(const bench_gemv_params *p) {
    if (p->reps > GEMV_MAX_REPS) {
        fprintf(stderr, "uhlm bench gemv: at most %d reps\n", GEMV_MAX_REPS);
        return 2;
    }
    if (p->format == BENCH_TABLE)
        printf("%-24s %-5s %-6s %3s %8s %9s %9s %8s %8s %7s %7s %8s %s\n", "model", "type", "simd",
               "thr", "MB/step", "steps/s", "median", "GB/s", "rd GB/s", "of rd", "med",
               "/cpu-s", "same bits");
    int rc = 0;
    bench_report rep;
    bench_report_init(&rep, "gemv", p->format);
    for (int i = 0; i < p->n_models; i++)
        if (run_model(p, p->models[i], &rep) != 0) rc = 1;
    if (bench_report_end(&rep) != 0) rc = 1;
    return rc;
}
